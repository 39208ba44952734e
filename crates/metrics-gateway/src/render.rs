//! What the gateway shows: the `/metrics` exposition (every group merged per family, sorted
//! as Go's client library sorts, then our own metrics, then any [`ExpositionSource`]) and
//! the Pushgateway's JSON API shapes (`/api/v1/metrics`, `/api/v1/status`).

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::{json, Map, Value as Json};

use crate::{
    grouping::GroupKey,
    model::{
        block_sort_key_into, escape_help, float_string, go_metric_order, key_order, label_block,
        parse_label_block, render_block, MetricType, Value,
    },
    store::{
        from_unix, unix, Group, Store, StoredMetric, PUSH_FAILURE_TIME, PUSH_FAILURE_TIME_HELP,
        PUSH_TIME, PUSH_TIME_HELP,
    },
};

/// Extra exposition text for `GET /metrics` (e.g. ALERTS and recording-rule series).
/// `render` must append complete families in the text format 0.0.4, each line ending in
/// `\n`, with names that do not clash with pushed families.
pub trait ExpositionSource: Send + Sync {
    /// Appends this source's families to `out`.
    fn render(&self, out: &mut String);
}

fn header(out: &mut String, name: &str, help: Option<&str>, kind: MetricType) {
    if let Some(help) = help {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help(help, out);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_text());
    out.push('\n');
}

/// The `/metrics` exposition as delimited protobuf (for scrapers that negotiate it, the
/// only format that carries native histograms): `text` is the text exposition, re-read
/// family by family, with each pushed histogram's native part taken from the store.
/// `None` if the text does not parse (the caller then answers with the text).
pub fn render_protobuf(store: &Store, text: &str) -> Option<Vec<u8>> {
    let families = crate::parse::text::parse(text.as_bytes()).ok()?;
    let mut natives: std::collections::HashMap<(String, String), promql_engine::FloatHistogram> =
        std::collections::HashMap::new();
    store.with_groups(|groups, _| {
        for g in groups.values() {
            for (name, f) in &g.families {
                for m in &f.metrics {
                    if let Value::Histogram {
                        native: Some(n), ..
                    } = &m.value
                    {
                        natives.insert((name.clone(), f.block(m).to_owned()), (**n).clone());
                    }
                }
            }
        }
    });
    let protos: Vec<_> = families
        .iter()
        .map(|f| {
            crate::parse::proto::to_proto(f, |m| {
                natives
                    .get(&(f.name.clone(), label_block(&m.labels).to_string()))
                    .cloned()
            })
        })
        .collect();
    Some(crate::parse::proto::encode(&protos))
}

/// Renders every group's families, merged by name and sorted, into `out`.
pub fn render_groups(store: &Store, out: &mut String) {
    store.with_groups(|groups, index| {
        let mut names: Vec<(&str, Option<MetricType>)> = index
            .iter()
            .map(|(n, (k, _))| (n.as_str(), Some(*k)))
            .collect();
        if !groups.is_empty() {
            for t in [PUSH_FAILURE_TIME, PUSH_TIME] {
                let pos = names.partition_point(|(n, _)| *n < t);
                names.insert(pos, (t, None));
            }
        }
        let mut entries: Vec<(&str, &StoredMetric)> = Vec::new();
        // Sort keys of one family's metrics, in one arena: (start, len) into `key_parts`.
        let mut key_parts: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        let mut keyed: Vec<(usize, usize, &str, &StoredMetric)> = Vec::new();
        for (name, kind) in names {
            let Some(kind) = kind else {
                render_time_family(groups, name, out);
                continue;
            };
            entries.clear();
            let mut help: Option<(&str, SystemTime)> = None;
            let mut sources = 0;
            for g in groups.values() {
                let Some(f) = g.families.get(name) else {
                    continue;
                };
                sources += 1;
                if let Some(h) = &f.help {
                    if help.is_none_or(|(_, t)| f.pushed_at > t) {
                        help = Some((h, f.pushed_at));
                    }
                }
                entries.extend(f.metrics.iter().map(|m| (f.block(m), m)));
            }
            header(out, name, help.map(|(h, _)| h), kind);
            if sources > 1 {
                // Each group's metrics are sorted already; interleave them by sort key.
                keyed.clear();
                key_parts.clear();
                for (block, m) in &entries {
                    let start = key_parts.len();
                    block_sort_key_into(block, &mut key_parts);
                    keyed.push((start, key_parts.len() - start, block, *m));
                }
                keyed.sort_by(|a, b| {
                    key_order(&key_parts[a.0..a.0 + a.1], &key_parts[b.0..b.0 + b.1])
                });
                for (_, _, block, m) in &keyed {
                    render_block(name, block, &m.value, out);
                }
            } else {
                for (block, m) in &entries {
                    render_block(name, block, &m.value, out);
                }
            }
        }
    });
}

fn render_time_family(groups: &BTreeMap<GroupKey, Group>, name: &str, out: &mut String) {
    let failure = name == PUSH_FAILURE_TIME;
    let help = if failure {
        PUSH_FAILURE_TIME_HELP
    } else {
        PUSH_TIME_HELP
    };
    header(out, name, Some(help), MetricType::Gauge);
    let mut rows: Vec<(&[(String, String)], f64)> = groups
        .values()
        .map(|g| {
            (
                g.time_labels.as_slice(),
                if failure {
                    g.push_failure_time
                } else {
                    g.push_time
                },
            )
        })
        .collect();
    rows.sort_by(|a, b| go_metric_order(a.0, b.0));
    for (labels, v) in rows {
        let m = crate::model::Metric {
            labels: labels.to_vec(),
            value: Value::Simple(v),
            timestamp_ms: None,
        };
        crate::model::render_metric(name, &m, out);
    }
}

/// RFC 3339 with nanoseconds, like Go's `time.Time` in JSON. A time chrono cannot represent
/// (hundreds of thousands of years away) is written as the epoch rather than panicking.
pub fn rfc3339(t: SystemTime) -> String {
    rfc3339_checked(t)
        .unwrap_or_else(|| rfc3339_checked(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// RFC 3339 of `t`, if it is a time chrono can represent.
fn rfc3339_checked(t: SystemTime) -> Option<String> {
    let dt = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => {
            chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())
        }
        Err(e) => chrono::DateTime::from_timestamp(-i64::try_from(e.duration().as_secs()).ok()?, 0),
    }?;
    Some(dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// RFC 3339 of a Unix time in seconds, if it is a representable time.
fn rfc3339_unix(secs: f64) -> Option<String> {
    from_unix(secs).and_then(rfc3339_checked)
}

fn labels_json(labels: &[(String, String)]) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

/// `GET /api/v1/metrics`: every group with its families, in the Pushgateway's shape.
pub fn api_metrics(store: &Store) -> Json {
    let data: Vec<Json> = store.with_groups(|groups, _| {
        groups
            .values()
            .map(|g| {
                let mut obj = Map::new();
                obj.insert(
                    "labels".into(),
                    Json::Object(
                        g.key
                            .iter()
                            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                            .collect(),
                    ),
                );
                obj.insert(
                    "last_push_successful".into(),
                    Json::Bool(g.last_push_successful),
                );
                for f in g.families.values() {
                    let metrics: Vec<Json> = f
                        .metrics
                        .iter()
                        .map(|m| match &m.value {
                            Value::Simple(v) => json!({
                                "labels": labels_json(&parse_label_block(f.block(m))),
                                "value": float_string(*v),
                            }),
                            Value::Histogram {
                                count,
                                sum,
                                buckets,
                                ..
                            } => {
                                let b: Map<String, Json> = buckets
                                    .iter()
                                    .map(|(le, c)| (float_string(*le), Json::String(float_string(*c))))
                                    .collect();
                                json!({
                                    "buckets": b,
                                    "count": float_string(*count),
                                    "labels": labels_json(&parse_label_block(f.block(m))),
                                    "sum": float_string(*sum),
                                })
                            }
                            Value::Summary {
                                count,
                                sum,
                                quantiles,
                            } => json!({
                                "count": float_string(*count),
                                "labels": labels_json(&parse_label_block(f.block(m))),
                                "quantiles": quantiles
                                    .iter()
                                    .map(|(q, v)| (float_string(*q), Json::String(float_string(*v))))
                                    .collect::<Map<String, Json>>(),
                                "sum": float_string(*sum),
                            }),
                        })
                        .collect();
                    let mut fam = Map::new();
                    fam.insert("time_stamp".into(), Json::String(rfc3339(f.pushed_at)));
                    fam.insert("type".into(), Json::String(f.kind.as_upper().into()));
                    if let Some(h) = f.help.as_ref().filter(|h| !h.is_empty()) {
                        fam.insert("help".into(), Json::String(h.clone()));
                    }
                    fam.insert("metrics".into(), Json::Array(metrics));
                    obj.insert(f.name.clone(), Json::Object(fam));
                }
                let stamp = rfc3339_unix(g.last_change())
                    .unwrap_or_else(|| rfc3339(SystemTime::UNIX_EPOCH));
                for (name, help, v) in [
                    (PUSH_TIME, PUSH_TIME_HELP, g.push_time),
                    (PUSH_FAILURE_TIME, PUSH_FAILURE_TIME_HELP, g.push_failure_time),
                ] {
                    obj.insert(
                        name.into(),
                        json!({
                            "time_stamp": stamp,
                            "type": "GAUGE",
                            "help": help,
                            "metrics": [{"labels": labels_json(&g.time_labels), "value": float_string(v)}],
                        }),
                    );
                }
                // Omitted when the expiry is not a representable time (TTLs are bounded, so
                // only a group restored from a tampered file could get here).
                if let Some(at) = g
                    .ttl
                    .and_then(|ttl| rfc3339_unix(g.last_change() + ttl.as_secs_f64()))
                {
                    obj.insert("expires_at".into(), Json::String(at));
                }
                Json::Object(obj)
            })
            .collect()
    });
    json!({"status": "success", "data": data})
}

/// Unix seconds now (for tests and the status page).
pub fn now_unix() -> f64 {
    unix(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        parse::text,
        store::{Push, Store},
    };

    #[test]
    fn exposition_matches_the_pushgateway_layout() {
        let store = Store::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_531_207);
        for (job, body) in [
            ("j1", "# TYPE foo counter\nfoo{a=\"1\"} 3\nbar 2\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 2\n"),
            ("j0", "bar 1\n"),
        ] {
            store
                .push(
                    Push {
                        key: [("job".to_string(), job.to_string())].into(),
                        families: text::parse(body.as_bytes()).unwrap(),
                        replace: true,
                        ttl: None,
                        limits: Default::default(),
                    },
                    t,
                )
                .unwrap();
        }
        let mut out = String::new();
        render_groups(&store, &mut out);
        assert_eq!(
            out,
            "# TYPE bar untyped\nbar{instance=\"\",job=\"j0\"} 1\nbar{instance=\"\",job=\"j1\"} 2\n\
# TYPE foo counter\nfoo{a=\"1\",instance=\"\",job=\"j1\"} 3\n\
# TYPE h histogram\nh_bucket{instance=\"\",job=\"j1\",le=\"1\"} 1\nh_bucket{instance=\"\",job=\"j1\",le=\"+Inf\"} 2\nh_sum{instance=\"\",job=\"j1\"} 3\nh_count{instance=\"\",job=\"j1\"} 2\n\
# HELP push_failure_time_seconds Last Unix time when changing this group in the Pushgateway failed.\n# TYPE push_failure_time_seconds gauge\n\
push_failure_time_seconds{instance=\"\",job=\"j0\"} 0\npush_failure_time_seconds{instance=\"\",job=\"j1\"} 0\n\
# HELP push_time_seconds Last Unix time when changing this group in the Pushgateway succeeded.\n# TYPE push_time_seconds gauge\n\
push_time_seconds{instance=\"\",job=\"j0\"} 1.795531207e+09\npush_time_seconds{instance=\"\",job=\"j1\"} 1.795531207e+09\n"
        );
        let api = api_metrics(&store);
        let g = &api["data"][1];
        assert_eq!(g["labels"], json!({"job": "j1"}));
        assert_eq!(g["h"]["type"], "HISTOGRAM");
        assert_eq!(g["h"]["metrics"][0]["buckets"], json!({"1": "1"}));
        assert_eq!(
            g["push_time_seconds"]["metrics"][0]["value"],
            "1.795531207e+09"
        );
    }

    #[test]
    fn the_json_api_is_total_for_any_ttl_and_time_a_group_holds() {
        let store = Store::default();
        let group = |job: &str, push_time: f64, ttl: Duration| {
            Store::restored_group(
                [("job".to_string(), job.to_string())].into(),
                vec![],
                push_time,
                0.0,
                true,
                Some(ttl),
            )
        };
        store.restore(vec![
            group("max", 1_795_531_207.0, Duration::MAX),
            group("far", 1e300, Duration::from_secs(60)),
            group("nan", f64::NAN, Duration::from_secs(60)),
            group("ok", 1_795_531_207.0, Duration::from_secs(60)),
        ]);
        let api = api_metrics(&store);
        let by_job = |job: &str| {
            api["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["labels"]["job"] == job)
                .unwrap()
                .clone()
        };
        // A NaN push time counts as 0 (`f64::max`): an expiry a minute after the epoch.
        assert_eq!(by_job("nan")["expires_at"], "1970-01-01T00:01:00Z");
        for job in ["max", "far"] {
            assert!(by_job(job).get("expires_at").is_none(), "{job}: {api}");
        }
        assert_eq!(by_job("ok")["expires_at"], "2026-11-24T14:41:07Z");
        assert_eq!(
            by_job("far")["push_time_seconds"]["time_stamp"],
            "1970-01-01T00:00:00Z"
        );
        let mut out = String::new();
        render_groups(&store, &mut out);
        assert!(out.contains("push_time_seconds{instance=\"\",job=\"far\"} 1e+300"));
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 2)),
            "1970-01-01T00:00:00Z"
        );
    }
}
