//! Alertmanager's webhook payload (version 4), as Alertmanager sends it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels or annotations.
pub type KV = BTreeMap<String, String>;

/// One webhook notification: a group of alerts for one receiver.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Notification {
    /// Payload version; Alertmanager sends `"4"`.
    pub version: String,
    /// `{}:{alertname="X"}`: identifies the group.
    pub group_key: String,
    /// Alerts Alertmanager left out because of `max_alerts`.
    pub truncated_alerts: u64,
    /// `firing` when at least one alert fires, else `resolved`.
    pub status: String,
    /// The Alertmanager receiver name.
    pub receiver: String,
    /// Labels the group is keyed on.
    pub group_labels: KV,
    /// Labels every alert of the group shares.
    pub common_labels: KV,
    /// Annotations every alert of the group shares.
    pub common_annotations: KV,
    /// Alertmanager's external URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Identifying labels.
    pub labels: KV,
    /// Annotations (summary, description, runbook_url …).
    pub annotations: KV,
    /// RFC 3339 start time.
    pub starts_at: String,
    /// RFC 3339 end time (`0001-01-01T00:00:00Z` while firing without an end).
    pub ends_at: String,
    /// Link to the expression in Prometheus.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the label set.
    pub fingerprint: String,
}

impl Alert {
    /// Whether the alert is resolved.
    pub fn is_resolved(&self) -> bool {
        self.status == "resolved"
    }

    /// What the alert holds in memory, roughly: its strings plus a fixed overhead per
    /// string. What queues are bounded by (`delivery.max_queued_bytes`).
    pub fn size_bytes(&self) -> usize {
        const PER_STRING: usize = 24;
        let kv = |m: &KV| {
            m.iter()
                .map(|(k, v)| k.len() + v.len() + 2 * PER_STRING)
                .sum::<usize>()
        };
        kv(&self.labels)
            + kv(&self.annotations)
            + [
                &self.status,
                &self.starts_at,
                &self.ends_at,
                &self.generator_url,
                &self.fingerprint,
            ]
            .iter()
            .map(|s| s.len() + PER_STRING)
            .sum::<usize>()
    }

    /// The fingerprint, or the labels when the sender gave none (identity for de-duplication).
    pub fn identity(&self) -> String {
        if self.fingerprint.is_empty() {
            format!("{:?}", self.labels)
        } else {
            self.fingerprint.clone()
        }
    }
}

/// Why a request body is not a webhook payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or wrong field types.
    #[error("invalid Alertmanager webhook payload: {0}")]
    Json(#[from] serde_json::Error),
    /// An alert without a status we know.
    #[error("invalid Alertmanager webhook payload: alerts[{index}].status is {status:?}; expected \"firing\" or \"resolved\"")]
    Status { index: usize, status: String },
}

/// Parses and checks a webhook body.
pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let n: Notification = serde_json::from_slice(body)?;
    for (index, a) in n.alerts.iter().enumerate() {
        if a.status != "firing" && a.status != "resolved" {
            return Err(PayloadError::Status {
                index,
                status: a.status.clone(),
            });
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as Alertmanager 0.25 sends it (shape copied from its webhook docs; values ours).
    pub const SAMPLE: &str = r#"{"receiver":"ok","status":"firing","alerts":[{"status":"firing",
      "labels":{"alertname":"HighCPU","instance":"node1:9100","severity":"critical"},
      "annotations":{"summary":"CPU high"},"startsAt":"2026-11-24T14:12:29Z",
      "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom:9090/graph","fingerprint":"52f8"}],
      "groupLabels":{"alertname":"HighCPU"},"commonLabels":{"alertname":"HighCPU"},
      "commonAnnotations":{},"externalURL":"http://am:9093","version":"4",
      "groupKey":"{}:{alertname=\"HighCPU\"}","truncatedAlerts":0}"#;

    #[test]
    fn parses_a_version_4_payload() {
        let n = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(n.alerts.len(), 1);
        assert_eq!(n.alerts[0].labels["severity"], "critical");
        assert_eq!(n.external_url, "http://am:9093");
        assert_eq!(n.alerts[0].generator_url, "http://prom:9090/graph");
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        let err = parse(b"{\"alerts\": 3}").unwrap_err().to_string();
        assert!(
            err.contains("invalid type") && err.contains("column"),
            "{err}"
        );
        let err = parse(br#"{"alerts":[{"status":"burning"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("alerts[0].status") && err.contains("burning"),
            "{err}"
        );
    }

    #[test]
    fn parses_the_captured_alertmanager_samples() {
        let Some(shared) = common::testkit::shared_dir("parses_the_captured_alertmanager_samples")
        else {
            return;
        };
        for f in ["am-webhook-sample.json", "am-webhook-resolved-sample.json"] {
            let text = std::fs::read(shared.join("samples/alertmanager").join(f)).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
            // One sample is the captured request with its body, the other the bare body.
            let body = serde_json::to_vec(v.get("body").unwrap_or(&v)).unwrap();
            let n = parse(&body).unwrap();
            assert_eq!(n.version, "4");
            assert!(!n.alerts.is_empty());
            assert!(n.alerts.iter().all(|a| !a.fingerprint.is_empty()));
        }
    }
}
