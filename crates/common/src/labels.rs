//! The Kubernetes label vocabulary the suite coordinates through, defined once.
//!
//! job-manager puts these labels on every Flink pod it creates (and passes the same values
//! to Flink as the PushGateway reporter's grouping key and as log fields); log-shipper
//! discovers pods and names OSS paths / SLS topics from them; metrics-gateway deletes a
//! cancelled deployment's metric groups by them; dingtalk-alert shows them in messages.
//!
//! | field            | Kubernetes label                      | metric label / log field |
//! |------------------|---------------------------------------|--------------------------|
//! | part-of          | `app.kubernetes.io/part-of`           | (always `flink-suite`)   |
//! | managed-by       | `app.kubernetes.io/managed-by`        | (always `job-manager`)   |
//! | component        | `app.kubernetes.io/component`         | `component`              |
//! | namespace        | `flink-suite.io/namespace`            | `namespace`              |
//! | deployment id    | `flink-suite.io/deployment-id`        | `deploymentId`           |
//! | deployment name  | `flink-suite.io/deployment-name`      | `deploymentName`         |
//! | job id           | `flink-suite.io/job-id`               | `jobId`                  |

use std::collections::BTreeMap;

/// `app.kubernetes.io/part-of`; value [`PART_OF_VALUE`].
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// The value of [`PART_OF`] on everything the suite manages.
pub const PART_OF_VALUE: &str = "flink-suite";
/// `app.kubernetes.io/managed-by`; value [`MANAGED_BY_VALUE`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY`]: the suite's job-manager.
pub const MANAGED_BY_VALUE: &str = "job-manager";
/// `app.kubernetes.io/component`: `jobmanager` or `taskmanager`.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// The suite namespace (a VVP-style namespace, not necessarily the Kubernetes one).
pub const NAMESPACE: &str = "flink-suite.io/namespace";
/// The deployment's id (UUID).
pub const DEPLOYMENT_ID: &str = "flink-suite.io/deployment-id";
/// The deployment's name, sanitised to a label value.
pub const DEPLOYMENT_NAME: &str = "flink-suite.io/deployment-name";
/// The Flink job id (32 hex characters) of the current job, once known.
pub const JOB_ID: &str = "flink-suite.io/job-id";

/// Metric label / log field names for the same facts (Prometheus label names cannot hold
/// `/` or `.`). Used as Flink's PushGateway grouping key and as log record fields.
pub mod fields {
    /// Suite namespace.
    pub const NAMESPACE: &str = "namespace";
    /// Deployment id.
    pub const DEPLOYMENT_ID: &str = "deploymentId";
    /// Deployment name.
    pub const DEPLOYMENT_NAME: &str = "deploymentName";
    /// Flink job id.
    pub const JOB_ID: &str = "jobId";
    /// `jobmanager` or `taskmanager`.
    pub const COMPONENT: &str = "component";
}

/// Which Flink process a pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// The Flink JobManager.
    JobManager,
    /// A Flink TaskManager.
    TaskManager,
}

impl Component {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::JobManager => "jobmanager",
            Component::TaskManager => "taskmanager",
        }
    }

    /// Parses a label value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jobmanager" => Some(Component::JobManager),
            "taskmanager" => Some(Component::TaskManager),
            _ => None,
        }
    }
}

/// Why a pod's labels do not describe a suite-managed Flink pod.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    /// A required label is absent.
    #[error("label `{0}` is missing")]
    Missing(&'static str),
    /// A label has a value the suite does not know.
    #[error("label `{label}` has invalid value {value:?}: {reason}")]
    Invalid {
        label: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The identity of one suite-managed Flink pod, as carried by its labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlinkPodLabels {
    /// Suite namespace.
    pub namespace: String,
    /// Deployment id.
    pub deployment_id: String,
    /// Deployment name (sanitised to a valid label value).
    pub deployment_name: String,
    /// Flink job id, when a job has been submitted.
    pub job_id: Option<String>,
    /// JobManager or TaskManager.
    pub component: Component,
}

impl FlinkPodLabels {
    /// The labels job-manager sets on the pod.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(PART_OF.into(), PART_OF_VALUE.into());
        m.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
        m.insert(COMPONENT.into(), self.component.as_str().into());
        m.insert(NAMESPACE.into(), self.namespace.clone());
        m.insert(DEPLOYMENT_ID.into(), self.deployment_id.clone());
        m.insert(
            DEPLOYMENT_NAME.into(),
            sanitize_label_value(&self.deployment_name),
        );
        if let Some(job) = &self.job_id {
            m.insert(JOB_ID.into(), job.clone());
        }
        m
    }

    /// Reads a pod's labels; `Err` when the pod is not a suite-managed Flink pod.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, LabelError> {
        let get = |k: &'static str| labels.get(k).ok_or(LabelError::Missing(k));
        if get(PART_OF)? != PART_OF_VALUE {
            return Err(LabelError::Invalid {
                label: PART_OF,
                value: get(PART_OF)?.clone(),
                reason: "expected flink-suite",
            });
        }
        let c = get(COMPONENT)?;
        let component = Component::parse(c).ok_or_else(|| LabelError::Invalid {
            label: COMPONENT,
            value: c.clone(),
            reason: "expected jobmanager or taskmanager",
        })?;
        Ok(Self {
            namespace: get(NAMESPACE)?.clone(),
            deployment_id: get(DEPLOYMENT_ID)?.clone(),
            deployment_name: labels.get(DEPLOYMENT_NAME).cloned().unwrap_or_default(),
            job_id: labels.get(JOB_ID).cloned(),
            component,
        })
    }

    /// The same identity as metric labels / log fields (the PushGateway grouping key).
    pub fn to_fields(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert(fields::NAMESPACE, self.namespace.clone());
        m.insert(fields::DEPLOYMENT_ID, self.deployment_id.clone());
        m.insert(fields::DEPLOYMENT_NAME, self.deployment_name.clone());
        if let Some(job) = &self.job_id {
            m.insert(fields::JOB_ID, job.clone());
        }
        m.insert(fields::COMPONENT, self.component.as_str().into());
        m
    }
}

/// Label selector for every suite-managed Flink pod, optionally of one deployment.
pub fn selector(deployment_id: Option<&str>) -> String {
    let mut s = format!("{PART_OF}={PART_OF_VALUE}");
    if let Some(id) = deployment_id {
        s.push_str(&format!(",{DEPLOYMENT_ID}={id}"));
    }
    s
}

/// Turns any string into a valid Kubernetes label value: at most 63 characters of
/// `[A-Za-z0-9._-]`, starting and ending alphanumeric (other characters become `-`).
pub fn sanitize_label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> FlinkPodLabels {
        FlinkPodLabels {
            namespace: "default".into(),
            deployment_id: "5d6b1f6e-0000-4000-8000-000000000001".into(),
            deployment_name: "Top Speed Windowing!".into(),
            job_id: Some("a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5".into()),
            component: Component::TaskManager,
        }
    }

    #[test]
    fn labels_round_trip_with_a_sanitised_name() {
        let labels = pod().to_labels();
        assert_eq!(labels[DEPLOYMENT_NAME], "Top-Speed-Windowing");
        assert_eq!(labels[COMPONENT], "taskmanager");
        let back = FlinkPodLabels::from_labels(&labels).unwrap();
        assert_eq!(back.deployment_id, pod().deployment_id);
        assert_eq!(back.job_id, pod().job_id);
    }

    #[test]
    fn foreign_pods_are_rejected_with_the_label_named() {
        let mut labels = pod().to_labels();
        labels.remove(DEPLOYMENT_ID);
        assert_eq!(
            FlinkPodLabels::from_labels(&labels),
            Err(LabelError::Missing(DEPLOYMENT_ID))
        );
        let mut labels = pod().to_labels();
        labels.insert(COMPONENT.into(), "sidecar".into());
        assert!(FlinkPodLabels::from_labels(&labels)
            .unwrap_err()
            .to_string()
            .contains("app.kubernetes.io/component"));
    }

    #[test]
    fn sanitised_values_are_valid_label_values() {
        let long = "x".repeat(100);
        assert_eq!(sanitize_label_value(&long).len(), 63);
        assert_eq!(sanitize_label_value("--a b--"), "a-b");
        assert_eq!(
            selector(Some("id1")),
            "app.kubernetes.io/part-of=flink-suite,flink-suite.io/deployment-id=id1"
        );
    }
}
