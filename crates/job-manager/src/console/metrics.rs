//! `GET /console/v1/namespaces/{ns}/deployments/{id}/metrics?query={panel}&range={seconds}`:
//! one chart's data for a deployment, read from the metrics-gateway's Prometheus query API
//! (`metrics_gateway.url`).
//!
//! `query` names one of a fixed set of panels ([`PANELS`]); the PromQL is built here with
//! the deployment's own namespace, id and running job id as label matchers, so a caller
//! cannot run arbitrary PromQL against the gateway through the manager. Viewer role.
//! Metric names are those Flink's PushGateway reporter pushes (as in
//! `crates/suite/rules/flink.yml` and the Grafana dashboards).

use std::{sync::OnceLock, time::Duration};

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::{auth::Caller, ok, ApiError, ApiResult, AppState},
    model::Role,
};

/// A chart: its name in the URL, the unit of its values and its series `(name, PromQL)`;
/// `{sel}` in the PromQL is replaced by the deployment's label matchers.
pub struct Panel {
    pub name: &'static str,
    pub unit: &'static str,
    pub series: &'static [(&'static str, &'static str)],
}

/// The panels the console may ask for.
pub const PANELS: &[Panel] = &[
    Panel {
        name: "recordsIn",
        unit: "1/s",
        series: &[(
            "in",
            "sum(rate(flink_taskmanager_job_task_numRecordsIn{sel}[1m]))",
        )],
    },
    Panel {
        name: "recordsOut",
        unit: "1/s",
        series: &[(
            "out",
            "sum(rate(flink_taskmanager_job_task_numRecordsOut{sel}[1m]))",
        )],
    },
    Panel {
        name: "restarts",
        unit: "",
        series: &[("restarts", "max(flink_jobmanager_job_numRestarts{sel})")],
    },
    Panel {
        name: "checkpointDuration",
        unit: "ms",
        series: &[(
            "duration",
            "max(flink_jobmanager_job_lastCheckpointDuration{sel})",
        )],
    },
    Panel {
        name: "checkpointFailures",
        unit: "",
        series: &[(
            "failed",
            "max(flink_jobmanager_job_numberOfFailedCheckpoints{sel})",
        )],
    },
    Panel {
        name: "backpressure",
        unit: "ms/s",
        series: &[(
            "max",
            "max(flink_taskmanager_job_task_backPressuredTimeMsPerSecond{sel})",
        )],
    },
    Panel {
        name: "heap",
        unit: "B",
        series: &[
            (
                "jobmanager",
                "sum(flink_jobmanager_Status_JVM_Memory_Heap_Used{sel})",
            ),
            (
                "taskmanagers",
                "sum(flink_taskmanager_Status_JVM_Memory_Heap_Used{sel})",
            ),
        ],
    },
];

/// The time ranges (seconds) a chart may cover; each is drawn with about 120 points.
pub const RANGES: &[u64] = &[900, 3600, 6 * 3600, 24 * 3600];
const POINTS: u64 = 120;
/// How long one query to the gateway may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the gateway for one series.
const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Deserialize)]
pub struct Params {
    query: Option<String>,
    range: Option<u64>,
}

fn client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default()
    })
}

/// A PromQL string literal.
fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The label matchers of a deployment (and its running job, if any).
pub fn selector(namespace: &str, deployment_id: &str, job_id: Option<&str>) -> String {
    use common::labels::fields::{DEPLOYMENT_ID, JOB_ID, NAMESPACE};
    let mut s = format!(
        "{{{NAMESPACE}={},{DEPLOYMENT_ID}={}",
        quote(namespace),
        quote(deployment_id)
    );
    if let Some(j) = job_id {
        s.push_str(&format!(",{JOB_ID}={}", quote(j)));
    }
    s.push('}');
    s
}

fn bad_gateway(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "BadGateway", message)
}

/// The handler.
pub async fn panel(
    caller: Caller,
    State(app): State<AppState>,
    Path((ns, id)): Path<(String, String)>,
    Query(p): Query<Params>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let names = || PANELS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
    let name = p
        .query
        .ok_or_else(|| ApiError::invalid(format!("query: name a panel, one of {}", names())))?;
    let panel = PANELS.iter().find(|x| x.name == name).ok_or_else(|| {
        ApiError::invalid(format!("query: unknown panel {name:?}; one of {}", names()))
    })?;
    let range = p.range.unwrap_or(3600);
    if !RANGES.contains(&range) {
        return Err(ApiError::invalid(format!(
            "range: {range} is not one of {RANGES:?} (seconds)"
        )));
    }
    let (deployment_id, job_id) = {
        let t = app.store.read();
        let uid = uuid::Uuid::parse_str(&id).ok();
        let rec = uid
            .and_then(|u| t.deployments.get(&u))
            .filter(|r| r.deployment.metadata.namespace == ns)
            .ok_or_else(|| {
                ApiError::not_found(format!("deployment {id} not found in namespace {ns}"))
            })?;
        let d = &rec.deployment;
        (
            d.metadata
                .id
                .or(uid)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            d.status
                .running
                .as_ref()
                .and_then(|r| r.job_id)
                .map(|j| j.to_string()),
        )
    };
    let base = app
        .config
        .current()
        .metrics_gateway
        .url
        .clone()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NoMetricsGateway",
                "metrics are not available: the manager has no metrics_gateway.url configured",
            )
        })?;
    let sel = selector(&ns, &deployment_id, job_id.as_deref());
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let step = (range / POINTS).max(1);
    let url = format!("{}/api/v1/query_range", base.trim_end_matches('/'));
    let mut series = Vec::new();
    for (label, template) in panel.series {
        let promql = template.replace("{sel}", &sel);
        let form = [
            ("query", promql),
            ("start", (end.saturating_sub(range)).to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        let resp = client().post(&url).form(&form).send().await.map_err(|e| {
            bad_gateway(format!(
                "the metrics gateway did not answer: {}",
                e.without_url()
            ))
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| bad_gateway(format!("reading the metrics gateway's answer: {e}")))?;
        if bytes.len() > MAX_ANSWER {
            return Err(bad_gateway(format!(
                "the metrics gateway's answer is over {MAX_ANSWER} bytes"
            )));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            bad_gateway(format!(
                "the metrics gateway answered {status} without a query API document"
            ))
        })?;
        if v["status"] != "success" {
            return Err(bad_gateway(format!(
                "the metrics gateway refused the query: {}",
                v["error"].as_str().unwrap_or("no error given")
            )));
        }
        // Aggregated queries answer one series (or none before data arrives).
        let points: Vec<[f64; 2]> = v["data"]["result"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|s| s["values"].as_array())
            .map(|vals| {
                vals.iter()
                    .filter_map(|p| {
                        let t = p.get(0)?.as_f64()?;
                        let x = p.get(1)?.as_str()?.parse::<f64>().ok()?;
                        x.is_finite().then_some([t, x])
                    })
                    .collect()
            })
            .unwrap_or_default();
        series.push(json!({"name": label, "points": points}));
    }
    ok(
        StatusCode::OK,
        json!({
            "panel": panel.name,
            "unit": panel.unit,
            "range": range,
            "step": step,
            "jobId": job_id,
            "series": series,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_names_the_deployment_and_quotes_values() {
        assert_eq!(
            selector("default", "5a0c", Some("77")),
            r#"{namespace="default",deploymentId="5a0c",jobId="77"}"#
        );
        assert_eq!(
            selector("a\"b\\", "x", None),
            r#"{namespace="a\"b\\",deploymentId="x"}"#
        );
        for p in PANELS {
            for (_, q) in p.series {
                assert!(
                    q.contains("{sel}"),
                    "{} does not select the deployment",
                    p.name
                );
            }
        }
    }
}
