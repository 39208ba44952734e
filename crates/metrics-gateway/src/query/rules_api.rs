//! `/api/v1/rules`, `/api/v1/alerts` (the rule engine's groups, rules and active alerts,
//! in Prometheus's shapes; empty lists when no rule file is loaded) and
//! `/api/v1/status/buildinfo`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::{extract::State, response::Response};
use promql_engine::rules::file::RuleKind;
use promql_engine::rules::manager::{Alert, AlertState, GroupState, RuleState};
use serde_json::{json, Value};

use super::params::Params;
use super::response::{format_go_exp, ApiError, Success};
use super::QueryState;

/// The Prometheus API level the endpoints follow, reported as `version` by
/// `/api/v1/status/buildinfo` (Grafana enables features by it).
pub const PROMETHEUS_API_VERSION: &str = "3.0.0";

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

fn rfc3339(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned())
}

fn labels_json(l: &promql_engine::labels::Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "labels": labels_json(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(Some(a.active_at)),
        "value": format_go_exp(a.value),
    });
    if let (Some(since), Some(obj)) = (a.keep_firing_since, v.as_object_mut()) {
        obj.insert(
            "keepFiringSince".into(),
            Value::String(rfc3339(Some(since))),
        );
    }
    v
}

fn active(r: &RuleState) -> Vec<&Alert> {
    let mut v: Vec<&Alert> = r
        .alerts
        .values()
        .filter(|a| a.state != AlertState::Inactive)
        .collect();
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

fn health<'a>(g: &GroupState, r: &'a RuleState) -> (&'static str, Option<&'a str>) {
    match (&r.last_error, g.last_eval_ms) {
        (Some(e), _) => ("err", Some(e.as_str())),
        (None, Some(_)) => ("ok", None),
        (None, None) => ("unknown", None),
    }
}

fn rule_labels(r: &RuleState) -> BTreeMap<String, String> {
    r.rule
        .labels
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect()
}

/// Filters of `/api/v1/rules`.
struct Filter {
    kind: Option<&'static str>,
    names: Vec<String>,
    groups: Vec<String>,
    files: Vec<String>,
    exclude_alerts: bool,
}

impl Filter {
    fn parse(p: &Params) -> Result<Self, ApiError> {
        let kind = match p.get("type") {
            None => None,
            Some("alert") => Some("alert"),
            Some("record") => Some("record"),
            Some(other) => {
                return Err(ApiError::bad_param(
                    "type",
                    format!("not supported value {other:?}"),
                ))
            }
        };
        let exclude_alerts = match p.get("exclude_alerts") {
            None => false,
            Some(v) => v.parse::<bool>().map_err(|_| {
                ApiError::bad_param("exclude_alerts", format!("cannot parse {v:?} as a boolean"))
            })?,
        };
        let owned = |k: &str| p.all(k).into_iter().map(str::to_owned).collect::<Vec<_>>();
        Ok(Self {
            kind,
            names: owned("rule_name[]"),
            groups: owned("rule_group[]"),
            files: owned("file[]"),
            exclude_alerts,
        })
    }
}

fn rules_data(s: &QueryState, f: &Filter) -> Value {
    let Some(engine) = s.rule_engine() else {
        return json!({ "groups": [] });
    };
    let default_iv = engine.default_interval_ms();
    let mut groups = Vec::new();
    for g in engine.groups_snapshot() {
        if (!f.groups.is_empty() && !f.groups.contains(&g.group.name))
            || (!f.files.is_empty() && !f.files.contains(&g.group.file))
        {
            continue;
        }
        let last = rfc3339(g.last_eval_ms);
        let mut rules = Vec::new();
        for r in &g.rules {
            if !f.names.is_empty() && !f.names.iter().any(|n| n == r.rule.name()) {
                continue;
            }
            let (h, err) = health(&g, r);
            let mut v = match &r.rule.kind {
                RuleKind::Alerting {
                    alert,
                    for_ms,
                    keep_firing_for_ms,
                    annotations,
                } => {
                    if f.kind == Some("record") {
                        continue;
                    }
                    let act = active(r);
                    let state = if act.iter().any(|a| a.state == AlertState::Firing) {
                        "firing"
                    } else if act.is_empty() {
                        "inactive"
                    } else {
                        "pending"
                    };
                    let ann: BTreeMap<&str, &str> = annotations
                        .iter()
                        .map(|(k, _, text)| (k.as_str(), text.as_str()))
                        .collect();
                    let mut v = json!({
                        "state": state,
                        "name": alert,
                        "query": r.rule.expr_text,
                        "duration": *for_ms as f64 / 1000.0,
                        "keepFiringFor": *keep_firing_for_ms as f64 / 1000.0,
                        "labels": rule_labels(r),
                        "annotations": ann,
                        "health": h,
                        "evaluationTime": 0.0,
                        "lastEvaluation": last,
                        "type": "alerting",
                    });
                    if !f.exclude_alerts {
                        if let Some(o) = v.as_object_mut() {
                            o.insert(
                                "alerts".into(),
                                Value::Array(act.into_iter().map(alert_json).collect()),
                            );
                        }
                    }
                    v
                }
                RuleKind::Recording { record } => {
                    if f.kind == Some("alert") {
                        continue;
                    }
                    json!({
                        "name": record,
                        "query": r.rule.expr_text,
                        "labels": rule_labels(r),
                        "health": h,
                        "evaluationTime": 0.0,
                        "lastEvaluation": last,
                        "type": "recording",
                    })
                }
            };
            if let (Some(e), Some(o)) = (err, v.as_object_mut()) {
                o.insert("lastError".into(), Value::String(e.to_owned()));
            }
            rules.push(v);
        }
        if (f.kind.is_some() || !f.names.is_empty()) && rules.is_empty() {
            continue;
        }
        groups.push(json!({
            "name": g.group.name,
            "file": g.group.file,
            "rules": rules,
            "interval": g.group.interval_ms.unwrap_or(default_iv) as f64 / 1000.0,
            "limit": g.group.limit,
            "evaluationTime": g.last_duration_seconds,
            "lastEvaluation": last,
        }));
    }
    json!({ "groups": groups })
}

/// `GET /api/v1/rules` (`type=alert|record`, `rule_name[]`, `rule_group[]`, `file[]`,
/// `exclude_alerts`).
pub async fn rules(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    let r = Filter::parse(&p).and_then(|f| Success::json(&rules_data(&s, &f)));
    respond(&s, "rules", r)
}

/// `GET /api/v1/alerts`: every pending and firing alert.
pub async fn alerts(State(s): State<Arc<QueryState>>) -> Response {
    let mut list = Vec::new();
    if let Some(engine) = s.rule_engine() {
        for g in engine.groups_snapshot() {
            for r in &g.rules {
                list.extend(active(r).into_iter().map(alert_json));
            }
        }
    }
    let r = Success::json(&json!({ "alerts": list }));
    respond(&s, "alerts", r)
}

/// `GET /api/v1/status/buildinfo`: the Prometheus API level in `version` (clients pick
/// features by it), our own version in `revision`.
pub async fn buildinfo(State(s): State<Arc<QueryState>>) -> Response {
    let r = Success::json(&json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": format!("metrics-gateway {}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }));
    respond(&s, "buildinfo", r)
}
