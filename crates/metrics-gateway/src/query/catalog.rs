//! What the history holds: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/{name}/values` (each with `match[]`, `start`, `end`, `limit`),
//! `/api/v1/metadata` (from the pushed families' TYPE and HELP) and
//! `/api/v1/query_exemplars` (the gateway keeps no exemplars: always empty).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::{
    extract::{Path, State},
    response::Response,
};
use promql_engine::labels::Labels;

use super::exec::TRUNCATED;
use super::params::Params;
use super::response::{push_labels, push_str, ApiError, Success};
use super::QueryState;
use crate::model::MetricType;

fn respond(s: &QueryState, endpoint: &str, r: Result<Success, ApiError>) -> Response {
    use axum::response::IntoResponse;
    s.count(
        endpoint,
        r.as_ref().map_or_else(|e| e.kind.as_str(), |_| "success"),
    );
    match r {
        Ok(ok) => ok.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `start`/`end` (all of history when absent).
fn window(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.time("start", i64::MIN / 4)?;
    let end = p.time("end", i64::MAX / 4)?;
    if end < start {
        return Err(ApiError::bad_param(
            "end",
            "end timestamp must not be before start time".into(),
        ));
    }
    Ok((start, end))
}

fn selected(s: &QueryState, p: &Params, require_match: bool) -> Result<Vec<Labels>, ApiError> {
    let (start, end) = window(p)?;
    let sets = p.matchers()?;
    if require_match && sets.is_empty() {
        return Err(ApiError::new(
            super::response::ErrorType::BadData,
            "no match[] parameter provided",
        ));
    }
    Ok(s.history.series(&sets, start, end))
}

fn string_list<'a>(items: impl Iterator<Item = &'a str>, limit: usize) -> Success {
    let mut out = String::from("[");
    let mut truncated = false;
    for (i, v) in items.enumerate() {
        if limit > 0 && i >= limit {
            truncated = true;
            break;
        }
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, v);
    }
    out.push(']');
    let mut ok = Success::data(out);
    if truncated {
        ok.warnings.push(TRUNCATED.to_owned());
    }
    ok
}

/// `GET|POST /api/v1/series`.
pub async fn series(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    super::flush(&s).await;
    let r = (|| {
        let limit = p.limit("limit")?;
        let all = selected(&s, &p, true)?;
        let mut out = String::from("[");
        let n = if limit > 0 {
            all.len().min(limit)
        } else {
            all.len()
        };
        for (i, l) in all.iter().take(n).enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_labels(&mut out, l);
        }
        out.push(']');
        let mut ok = Success::data(out);
        if n < all.len() {
            ok.warnings.push(TRUNCATED.to_owned());
        }
        Ok(ok)
    })();
    respond(&s, "series", r)
}

/// `GET|POST /api/v1/labels`.
pub async fn labels(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    super::flush(&s).await;
    let r = (|| {
        let limit = p.limit("limit")?;
        let all = selected(&s, &p, false)?;
        let names: BTreeSet<&str> = all.iter().flat_map(|l| l.iter().map(|(k, _)| k)).collect();
        Ok(string_list(names.into_iter(), limit))
    })();
    respond(&s, "labels", r)
}

/// `GET /api/v1/label/{name}/values`.
pub async fn label_values(
    State(s): State<Arc<QueryState>>,
    Path(name): Path<String>,
    p: Params,
) -> Response {
    super::flush(&s).await;
    let r = (|| {
        let name = unescape_label_name(&name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    super::response::ErrorType::BadData,
                    format!("invalid label name: {name:?}"),
                )
            })?;
        let limit = p.limit("limit")?;
        let all = selected(&s, &p, false)?;
        let values: BTreeSet<&str> = all.iter().filter_map(|l| l.get(&name)).collect();
        Ok(string_list(values.into_iter(), limit))
    })();
    respond(&s, "label_values", r)
}

/// Undoes Prometheus's `U__` escaping of label names in URLs (`U__a_2e_b` = `a.b`,
/// `__` = `_`); other names are returned as they are. `None` when the escape is broken.
pub fn unescape_label_name(name: &str) -> Option<String> {
    let Some(rest) = name.strip_prefix("U__") else {
        return Some(name.to_owned());
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

fn type_word(k: MetricType) -> &'static str {
    match k {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Summary => "summary",
        MetricType::Histogram => "histogram",
        MetricType::Untyped => "unknown",
    }
}

/// `GET /api/v1/metadata` (`metric`, `limit`, `limit_per_metric`).
pub async fn metadata(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    let r = (|| {
        let limit = p.limit("limit")?;
        let per_metric = p.limit("limit_per_metric")?;
        let only = p.get("metric").map(str::to_owned);
        let mut all: BTreeMap<String, BTreeSet<(&'static str, String)>> = BTreeMap::new();
        s.store.with_groups(|groups, _| {
            for g in groups.values() {
                for f in g.families.values() {
                    if only.as_deref().is_some_and(|m| m != f.name) {
                        continue;
                    }
                    all.entry(f.name.clone())
                        .or_default()
                        .insert((type_word(f.kind), f.help.clone().unwrap_or_default()));
                }
            }
            if !groups.is_empty() {
                for (name, help) in [
                    (crate::store::PUSH_TIME, crate::store::PUSH_TIME_HELP),
                    (
                        crate::store::PUSH_FAILURE_TIME,
                        crate::store::PUSH_FAILURE_TIME_HELP,
                    ),
                ] {
                    if only.as_deref().is_none_or(|m| m == name) {
                        all.entry(name.to_owned())
                            .or_default()
                            .insert(("gauge", help.to_owned()));
                    }
                }
            }
        });
        let mut out = String::from("{");
        for (i, (name, entries)) in all.iter().enumerate() {
            if limit > 0 && i >= limit {
                break;
            }
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, name);
            out.push_str(":[");
            for (j, (kind, help)) in entries.iter().enumerate() {
                if per_metric > 0 && j >= per_metric {
                    break;
                }
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"type\":");
                push_str(&mut out, kind);
                out.push_str(",\"help\":");
                push_str(&mut out, help);
                out.push_str(",\"unit\":\"\"}");
            }
            out.push(']');
        }
        out.push('}');
        Ok(Success::data(out))
    })();
    respond(&s, "metadata", r)
}

/// `GET|POST /api/v1/query_exemplars`: the query is checked; the answer is empty because
/// pushes carry no exemplars.
pub async fn exemplars(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    let r = (|| {
        let q = p.get("query").unwrap_or("");
        promql_engine::parse(q).map_err(|e| ApiError::from_engine(&e))?;
        window(&p)?;
        Ok(Success::data("[]".into()))
    })();
    respond(&s, "query_exemplars", r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_label_names_are_unescaped_as_prometheus_escapes_them() {
        assert_eq!(unescape_label_name("job").as_deref(), Some("job"));
        assert_eq!(unescape_label_name("U__a_2e_b").as_deref(), Some("a.b"));
        assert_eq!(unescape_label_name("U__a__b").as_deref(), Some("a_b"));
        assert_eq!(unescape_label_name("U__a_zz_"), None);
    }
}
