//! Observation of a job's pods: one `kube-runtime` watcher per Kubernetes namespace (label
//! `app.kubernetes.io/part-of=flink-suite`) feeding a reflector store, read per job by the
//! `flink-suite.io/job-id` label, and the mapping of pod states to conditions a user can act
//! on (the scheduler's and the kubelet's own words, plus what to change).
//!
//! | condition | from |
//! |---|---|
//! | `Unschedulable` | `PodScheduled=False`, reason `Unschedulable` (the scheduler's message) |
//! | `ImagePullBackOff` / `ErrImagePull` / `InvalidImageName` | a container waiting for its image |
//! | `OOMKilled` | a container's last termination (it exceeded its memory limit) |
//! | `CrashLoopBackOff` | a container restarted with back-off (last exit code and message) |
//! | `Forbidden` | the watcher's list or watch answered 403 (the verb and resource named) |
//!
//! The namespace-missing condition comes from applying objects ([`super::cluster::Error`]):
//! listing pods in a namespace that does not exist is not an error for the API server.

use std::sync::{Arc, Mutex};

use common::labels;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    runtime::{
        reflector::{self, Store},
        watcher, WatchStreamExt,
    },
    Api, ResourceExt,
};
use tokio::sync::watch;

/// Why a job's pods cannot run, in the API's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The RBAC Role does not allow the manager to read or write its objects.
    Forbidden,
    /// The target namespace does not exist.
    NamespaceMissing,
    /// The JobManager or a TaskManager was killed for exceeding its memory limit.
    OomKilled,
    /// A container keeps exiting and is restarted with back-off.
    CrashLoopBackOff,
    /// The image cannot be pulled (back-off).
    ImagePullBackOff,
    /// The image pull failed.
    ErrImagePull,
    /// The image reference is malformed.
    InvalidImageName,
    /// No node can take the pod.
    Unschedulable,
    /// The API server does not answer (the watch is retried with back-off).
    Unreachable,
    /// The API server refused an object (invalid, conflict) or credentials are missing.
    Rejected,
}

impl Reason {
    /// The condition reason (Kubernetes' spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Forbidden => "Forbidden",
            Reason::NamespaceMissing => "NamespaceMissing",
            Reason::OomKilled => "OOMKilled",
            Reason::CrashLoopBackOff => "CrashLoopBackOff",
            Reason::ImagePullBackOff => "ImagePullBackOff",
            Reason::ErrImagePull => "ErrImagePull",
            Reason::InvalidImageName => "InvalidImageName",
            Reason::Unschedulable => "Unschedulable",
            Reason::Unreachable => "KubernetesUnreachable",
            Reason::Rejected => "KubernetesRejected",
        }
    }
}

impl Reason {
    /// Whether the condition may pass on its own, so a start waits for it (bounded by
    /// `kubernetes.pod_condition_timeout` or the target's `podConditionTimeout`):
    /// `Unschedulable` (a cluster autoscaler adds a node), `CrashLoopBackOff` and
    /// `OOMKilled` (a JobManager whose dependency is not up yet, a JAR download from a
    /// manager that restarts), an image pull that failed for a reason that is not the image
    /// itself (see [`ClusterCondition::is_permanent`]). The others need the user.
    fn may_pass(self) -> bool {
        matches!(
            self,
            Reason::Unschedulable
                | Reason::CrashLoopBackOff
                | Reason::OomKilled
                | Reason::ImagePullBackOff
                | Reason::ErrImagePull
                | Reason::Unreachable
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with a job's pods (or with reaching them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterCondition {
    pub reason: Reason,
    /// The pod it concerns, if one.
    pub pod: Option<String>,
    /// What happened and what to change.
    pub message: String,
}

/// Words of the registry (as the kubelet quotes them) that say the image itself is the
/// problem: it does not exist, or the credentials cannot read it. Retrying cannot help.
const PERMANENT_PULL_ERRORS: &[&str] = &[
    "not found",
    "manifest unknown",
    "repository does not exist",
    "pull access denied",
    "unauthorized",
    "authentication required",
    "insufficient_scope",
    "denied",
];

impl ClusterCondition {
    /// Whether the start fails at once with this condition rather than waiting for it to
    /// pass: a missing permission or namespace, a malformed image name, or an image pull
    /// the registry refused for good (the image or tag does not exist, access denied).
    /// The kubelet reports the registry's answer only as text, so this reads the message;
    /// a pull that failed for any other reason (timeout, 429, registry down) is waited for.
    pub fn is_permanent(&self) -> bool {
        match self.reason {
            Reason::ImagePullBackOff | Reason::ErrImagePull => {
                let m = self.message.to_ascii_lowercase();
                PERMANENT_PULL_ERRORS.iter().any(|w| m.contains(w))
            }
            r => !r.may_pass(),
        }
    }
}

/// One pod of a job as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// `jobmanager` or `taskmanager` (from the component label).
    pub component: Option<labels::Component>,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// Every container ready.
    pub ready: bool,
}

/// What the watcher knows about a job's pods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterObservation {
    /// The namespace's watcher has listed its pods at least once; before that `pods` is
    /// empty for lack of knowledge, not for lack of pods.
    pub synced: bool,
    pub pods: Vec<PodState>,
    /// Problems, most severe first (forbidden, OOM, crash loop, image, scheduling).
    pub conditions: Vec<ClusterCondition>,
}

impl ClusterObservation {
    /// The most severe problem, if any.
    pub fn worst(&self) -> Option<&ClusterCondition> {
        self.conditions.first()
    }

    /// Whether the JobManager pod runs with every container ready.
    pub fn jobmanager_ready(&self) -> bool {
        self.pods
            .iter()
            .any(|p| p.component == Some(labels::Component::JobManager) && p.ready)
    }
}

/// The watcher of one Kubernetes namespace; stops when dropped.
pub struct NamespaceWatch {
    namespace: String,
    store: Store<Pod>,
    /// The last watcher error (cleared by the next successful event).
    error: Arc<Mutex<Option<ClusterCondition>>>,
    changes: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NamespaceWatch {
    /// Starts watching the suite's pods in the namespace of `api`.
    pub fn start(api: Api<Pod>, namespace: &str) -> Self {
        let (store, writer) = reflector::store();
        let error: Arc<Mutex<Option<ClusterCondition>>> = Arc::default();
        let (tx, changes) = watch::channel(0u64);
        let config = watcher::Config::default().labels(&format!(
            "{}={}",
            labels::PART_OF,
            labels::PART_OF_VALUE
        ));
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let err = error.clone();
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let mut slot = err.lock().unwrap_or_else(|e| e.into_inner());
                match item {
                    Ok(_) => *slot = None,
                    Err(e) => {
                        let c = watch_error(&ns, &e);
                        if slot.as_ref() != Some(&c) {
                            tracing::warn!(namespace = %ns, error = %e, "Cannot watch the suite's pods.");
                        }
                        *slot = Some(c);
                    }
                }
                drop(slot);
                tx.send_modify(|n| *n += 1);
            }
        });
        Self {
            namespace: namespace.to_string(),
            store,
            error,
            changes,
            task,
        }
    }

    /// The Kubernetes namespace watched.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Ticks on every event or error of the watcher: wait on it instead of polling.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// The pods of `job_id` and their conditions.
    pub fn observe(&self, job_id: &str) -> ClusterObservation {
        let mut pods: Vec<Arc<Pod>> = self
            .store
            .state_filter(|p| p.labels().get(labels::JOB_ID).map(String::as_str) == Some(job_id));
        pods.sort_by_key(|p| p.name_any());
        let mut obs = observe_pods(pods.iter().map(|p| p.as_ref()));
        // The store is "ready" once the first list completed.
        obs.synced = futures::FutureExt::now_or_never(self.store.wait_until_ready())
            .is_some_and(|r| r.is_ok());
        if let Some(c) = self.error.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            obs.conditions.insert(0, c);
        }
        obs
    }
}

/// The condition for a watcher error: 403 names the verb; anything else is the API being
/// unreachable (the watcher retries with back-off).
fn watch_error(namespace: &str, e: &watcher::Error) -> ClusterCondition {
    let (verb, status) = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => ("list", Some(s.as_ref())),
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => ("watch", Some(s.as_ref())),
        _ => ("watch", None),
    };
    match status {
        Some(s) if s.is_forbidden() => {
            let (verb, resource) = super::cluster::denied(&s.message, verb, "pods");
            ClusterCondition {
                reason: Reason::Forbidden,
                pod: None,
                message: format!(
                    "job-manager is not allowed to {verb} {resource} in Kubernetes namespace {namespace} (the API server answered: {}); grant it with the Role printed by `job-manager rbac --namespace {namespace}`",
                    s.message
                ),
            }
        }
        _ => ClusterCondition {
            reason: Reason::Unreachable,
            pod: None,
            message: format!("cannot watch pods in Kubernetes namespace {namespace}: {e}"),
        },
    }
}

/// Maps pods to their state and conditions (pure: what the watcher's store holds).
pub fn observe_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> ClusterObservation {
    let mut obs = ClusterObservation::default();
    for pod in pods {
        let name = pod.name_any();
        let component = pod
            .labels()
            .get(labels::COMPONENT)
            .and_then(|c| labels::Component::parse(c));
        let status = pod.status.clone().unwrap_or_default();
        let containers = status.container_statuses.clone().unwrap_or_default();
        let ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
        obs.pods.push(PodState {
            name: name.clone(),
            component,
            phase: status.phase.clone().unwrap_or_else(|| "Unknown".into()),
            ready,
        });
        let what = match component {
            Some(labels::Component::JobManager) => "JobManager",
            Some(labels::Component::TaskManager) => "TaskManager",
            None => "Flink",
        };
        let memory_field = match component {
            Some(labels::Component::TaskManager) => "taskmanager",
            _ => "jobmanager",
        };
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
            {
                obs.conditions.push(ClusterCondition {
                    reason: Reason::Unschedulable,
                    pod: Some(name.clone()),
                    message: format!(
                        "{what} pod {name} cannot be scheduled: {} (lower spec.template.spec.resources.{memory_field}, or add nodes)",
                        c.message.as_deref().unwrap_or("no node fits")
                    ),
                });
            }
        }
        let all = containers.iter().map(|c| (c, false)).chain(
            status
                .init_container_statuses
                .iter()
                .flatten()
                .map(|c| (c, true)),
        );
        for (c, init) in all {
            let cname = if init {
                format!("init container {}", c.name)
            } else {
                format!("container {}", c.name)
            };
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            let last = c
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.state.as_ref().and_then(|s| s.terminated.as_ref()));
            let waiting_reason = waiting
                .and_then(|w| w.reason.as_deref())
                .unwrap_or_default();
            let waiting_msg = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
            if let Some(reason) = match waiting_reason {
                "ImagePullBackOff" => Some(Reason::ImagePullBackOff),
                "ErrImagePull" => Some(Reason::ErrImagePull),
                "InvalidImageName" => Some(Reason::InvalidImageName),
                _ => None,
            } {
                obs.conditions.push(ClusterCondition {
                    reason,
                    pod: Some(name.clone()),
                    message: format!(
                        "{what} pod {name}: {cname} cannot pull image {}: {} (check flinkImageRegistry/flinkImageRepository/flinkImageTag and kubernetes.pods.imagePullSecrets)",
                        c.image,
                        if waiting_msg.is_empty() { waiting_reason } else { &waiting_msg }
                    ),
                });
                continue;
            }
            if last.and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
                obs.conditions.push(ClusterCondition {
                    reason: Reason::OomKilled,
                    pod: Some(name.clone()),
                    message: format!(
                        "{what} pod {name}: {cname} was killed for exceeding its memory limit (OOMKilled, restarted {} times); raise spec.template.spec.resources.{memory_field}.memory",
                        c.restart_count
                    ),
                });
                continue;
            }
            if waiting_reason == "CrashLoopBackOff" {
                let exit = last
                    .map(|t| {
                        let mut s = format!(
                            "last exit code {}{}",
                            t.exit_code,
                            t.reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        );
                        if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
                            s.push_str(": ");
                            s.push_str(m.trim());
                        }
                        s
                    })
                    .unwrap_or_else(|| "no exit recorded".into());
                obs.conditions.push(ClusterCondition {
                    reason: Reason::CrashLoopBackOff,
                    pod: Some(name.clone()),
                    message: format!(
                        "{what} pod {name}: {cname} keeps crashing (restarted {} times, {exit}); {waiting_msg}; see its log (kubectl logs {name} -c {} --previous)",
                        c.restart_count, c.name
                    ),
                });
            }
        }
    }
    obs.conditions.sort_by_key(|c| c.reason);
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(component: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "job-1-taskmanager-7d9f-x2", "labels": {labels::COMPONENT: component}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_failing_jar_download_names_the_init_container_and_its_exit() {
        let p = pod(
            "taskmanager",
            serde_json::json!({
                "phase": "Pending",
                "initContainerStatuses": [{"name": "fetch-jar", "image": "curl", "ready": false,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"exitCode": 22, "reason": "Error"}}}],
                "containerStatuses": [{"name": "flink-main-container", "image": "flink", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            }),
        );
        let obs = observe_pods([&p]);
        assert_eq!(obs.conditions.len(), 1, "{:?}", obs.conditions);
        let c = &obs.conditions[0];
        assert_eq!(c.reason, Reason::CrashLoopBackOff);
        assert!(
            c.message.starts_with("TaskManager pod job-1-taskmanager-7d9f-x2: init container fetch-jar keeps crashing (restarted 3 times, last exit code 22 (Error))"),
            "{}",
            c.message
        );
        assert!(!obs.jobmanager_ready());
    }

    #[test]
    fn an_oom_kill_outranks_the_crash_loop_it_causes_and_points_at_the_right_memory() {
        let p = pod(
            "taskmanager",
            serde_json::json!({
                "phase": "Running",
                "containerStatuses": [{"name": "flink-main-container", "image": "flink", "ready": false,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
            }),
        );
        let obs = observe_pods([&p]);
        assert_eq!(obs.conditions.len(), 1);
        assert_eq!(obs.conditions[0].reason, Reason::OomKilled);
        assert!(obs.conditions[0]
            .message
            .contains("raise spec.template.spec.resources.taskmanager.memory"));
    }

    #[test]
    fn healthy_and_starting_pods_have_no_conditions() {
        let running = pod(
            "jobmanager",
            serde_json::json!({"phase": "Running", "containerStatuses": [{"name": "m", "image": "flink",
                "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        let creating = pod(
            "taskmanager",
            serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "m", "image": "flink",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        let obs = observe_pods([&running, &creating]);
        assert!(obs.conditions.is_empty(), "{:?}", obs.conditions);
        assert!(obs.jobmanager_ready());
        assert_eq!(obs.pods[1].phase, "Pending");
    }
}
