//! The Kubernetes deployment target's objects, built without a cluster.
//!
//! Pure functions from a Deployment (VVP shape), a Kubernetes namespace and a job to the
//! objects of one Flink job in application mode (standalone, as VVP and the Flink Kubernetes
//! Operator run it), in `k8s-openapi` types: the live controller applies them with
//! server-side apply, `job-manager render` prints them, `job-manager rbac` prints what the
//! manager needs to do so.
//!
//! - [`settings`]: images per Flink version and the JAR fetcher's image.
//! - [`flink_conf`]: Flink's configuration, in the format of the Flink version.
//! - [`pods`]: pod options (`kubernetes.pods`), pod templates, the suite's labels.
//! - [`fetch`]: the init container that downloads the JAR into the pods, and the job's
//!   Secret (download token, or a jarUri with credentials).
//! - [`no_effect`]: settings of a deployment that a Kubernetes target does not apply.
//! - [`objects`]: the ConfigMap, the JobManager Job and its Service, the TaskManager
//!   Deployment; [`build`] makes them all.
//! - [`rbac`]: every permission the manager uses in a target namespace (one list) and the
//!   Role/RoleBinding that grants them.
//! - [`cluster`]: the live client: server-side apply of a job's objects, teardown, Flink
//!   REST through the Service or the API server's proxy.
//! - [`observe`]: one watcher per Kubernetes namespace; pod states as conditions.

pub mod cluster;
pub mod fetch;
pub mod flink_conf;
pub mod no_effect;
pub mod objects;
pub mod observe;
pub mod pods;
pub mod rbac;
pub mod settings;

use uuid::Uuid;

pub use objects::{build, JobObjects};
pub use settings::Settings;

use crate::model::Deployment;

/// Why a deployment's objects cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field has a value the Kubernetes target cannot use.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// `kubernetes.pods` together with a pod template.
    #[error("spec.template.spec.kubernetes.pods and spec.template.spec.kubernetes.{templates} are exclusive: set the pod options inside the pod template instead")]
    PodsAndTemplates { templates: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `job-<jobId>-jobmanager`: the JobManager's Job and Service (VVP's name).
pub fn jobmanager_name(job_id: Uuid) -> String {
    format!("job-{job_id}-jobmanager")
}

/// `job-<jobId>-taskmanager`: the TaskManagers' Deployment.
pub fn taskmanager_name(job_id: Uuid) -> String {
    format!("job-{job_id}-taskmanager")
}

/// `job-<jobId>-config`: the ConfigMap with Flink's and log4j's configuration.
pub fn config_map_name(job_id: Uuid) -> String {
    format!("job-{job_id}-config")
}

/// `job-<jobId>`: Flink's `kubernetes.cluster-id` (Kubernetes HA).
pub fn cluster_id(job_id: Uuid) -> String {
    format!("job-{job_id}")
}

/// Where the state of a restored job comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// Savepoint or retained checkpoint path (`--fromSavepoint`).
    pub path: String,
    /// `--allowNonRestoredState`.
    pub allow_non_restored_state: bool,
}

/// How pods fetch a JAR that lives in job-manager's artifact store (`file://` URIs): from
/// the manager's artifact download endpoint, with a read-only token of that one artifact
/// kept in the job's Secret (see [`crate::artifacts::tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactStore {
    /// The manager's base URL as the pods reach it, e.g. `http://job-manager.flink-suite:8080`.
    pub base_url: String,
    /// The job's download token (`Debug` shows no value); `None` when there is none to
    /// show (`job-manager render`): the Secret is then rendered without it.
    pub token: Option<common::Secret>,
}

impl ArtifactStore {
    /// The name of a job's Secret: the download token, or a jarUri with credentials.
    pub fn token_secret_name(job_id: Uuid) -> String {
        format!("job-{job_id}-artifact-token")
    }
}

/// Everything one job's objects are built from.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The deployment (its spec is what runs).
    pub deployment: &'a Deployment,
    /// The Kubernetes namespace of the target.
    pub target_namespace: &'a str,
    /// The job (its id names the objects and is the `job-id` label).
    pub job_id: Uuid,
    /// The Flink job id (32 hex digits) fixed by the manager, so a restart never submits
    /// twice.
    pub flink_job_id: String,
    pub restore: Option<Restore>,
    /// Savepoint and checkpoint directories when the user configured none.
    pub savepoint_dir: Option<String>,
    pub checkpoint_dir: Option<String>,
    /// metrics-gateway's PushGateway URL for Flink's reporter.
    pub metrics_gateway_url: Option<String>,
    /// Needed when the JAR is in the manager's artifact store.
    pub artifact_store: Option<ArtifactStore>,
}

#[cfg(test)]
mod tests;
