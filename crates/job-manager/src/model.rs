//! The resources of the API, in Ververica Platform AppManager v1 shapes: deployments, jobs,
//! savepoints, events, deployment targets, namespaces and API tokens.
//!
//! User-writable parts (`metadata`, `spec`) deserialize strictly (`deny_unknown_fields`);
//! `status` is written by the controller only and ignored on input.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod control;

pub use control::{Control, Phase};

/// One spelling for states everywhere (events, messages, logs): the API's, taken from the
/// serde names (`RUNNING`, `SUSPENDED`, …).
macro_rules! display_as_api_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(s)) => f.write_str(&s),
                    _ => write!(f, "{self:?}"),
                }
            }
        }
    )*};
}

display_as_api_name!(DesiredState, DeploymentState, JobState, SavepointState);

/// Desired state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredState {
    /// A Flink job should run.
    Running,
    /// The job should be stopped with a savepoint so it can resume later.
    Suspended,
    /// The job should be stopped without keeping state.
    #[default]
    Cancelled,
}

/// Observed state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentState {
    Running,
    Suspended,
    #[default]
    Cancelled,
    /// The controller is moving towards the desired state.
    Transitioning,
    /// Something failed; a user action (spec change or new desired state) is needed.
    Failed,
    /// The (bounded) job finished on its own.
    Finished,
}

impl DesiredState {
    /// The observed state that means "converged".
    pub fn reached(self) -> DeploymentState {
        match self {
            DesiredState::Running => DeploymentState::Running,
            DesiredState::Suspended => DeploymentState::Suspended,
            DesiredState::Cancelled => DeploymentState::Cancelled,
        }
    }
}

/// How a running job picks up a changed spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpgradeKind {
    /// Stop with a savepoint, start the new spec from it.
    #[default]
    Stateful,
    /// Cancel, start the new spec per the restore strategy.
    Stateless,
    /// Do not touch the running job; the change applies on the next start.
    None,
}

/// Where a new job's state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestoreKind {
    /// The newest completed savepoint of the deployment.
    #[default]
    LatestSavepoint,
    /// The newest savepoint or retained checkpoint.
    LatestState,
    /// Start empty.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeStrategy {
    pub kind: UpgradeKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreStrategy {
    pub kind: RestoreKind,
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// Metadata of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentMetadata {
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub name: String,
    /// A name for people (VVP's `metadata.displayName`); stored, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Bumped on every change of metadata or spec; a write carrying an older one is refused.
    #[serde(default)]
    pub resource_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<DateTime<Utc>>,
}

/// A savepoint schedule (an addition to the VVP shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavepointSchedule {
    /// Cron expression with seconds (`0 */10 * * * *`).
    pub cron: String,
    /// How many scheduled savepoints to keep (older ones are deleted).
    #[serde(default = "default_retain")]
    pub retain: u32,
}

fn default_retain() -> u32 {
    3
}

/// The desired state of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default)]
    pub state: DesiredState,
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    #[serde(default)]
    pub restore_strategy: RestoreStrategy,
    #[serde(default = "default_target")]
    pub deployment_target_name: String,
    /// VVP's reference to the target by id; resolved to `deploymentTargetName` when the
    /// deployment is written (both given: they must name the same target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_target_id: Option<Uuid>,
    /// VVP's session mode: the name of a `session` deployment target here (without
    /// `deploymentTargetName` it selects that target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cluster_name: Option<String>,
    /// VVP's `jobFailureExpirationTime`; accepted and reported as without effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_failure_expiration_time: Option<String>,
    #[serde(default = "default_attempts")]
    pub max_savepoint_creation_attempts: i64,
    #[serde(default = "default_attempts")]
    pub max_job_creation_attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_schedule: Option<SavepointSchedule>,
    #[serde(default)]
    pub template: Template,
}

fn default_target() -> String {
    crate::LOCAL_TARGET.to_string()
}

fn default_attempts() -> i64 {
    4
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    #[serde(default)]
    pub metadata: TemplateMetadata,
    #[serde(default)]
    pub spec: TemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What runs: the Flink job and its cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    #[serde(default)]
    pub artifact: Artifact,
    #[serde(default = "default_parallelism")]
    pub parallelism: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub flink_configuration: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
    /// TaskManagers to run on a Kubernetes target (VVP's `numberOfTaskManagers`); unset:
    /// `ceil(parallelism / taskmanager.numberOfTaskSlots)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_task_managers: Option<i64>,
}

impl Default for TemplateSpec {
    fn default() -> Self {
        Self {
            artifact: Artifact::default(),
            parallelism: default_parallelism(),
            resources: None,
            flink_configuration: BTreeMap::new(),
            logging: None,
            kubernetes: None,
            number_of_task_managers: None,
        }
    }
}

fn default_parallelism() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifact {
    #[serde(default = "default_artifact_kind")]
    pub kind: String,
    #[serde(default)]
    pub jar_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_image_tag: Option<String>,
    /// Image registry of the Flink image (Kubernetes targets), e.g. `registry.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_image_registry: Option<String>,
    /// Image repository of the Flink image (Kubernetes targets), e.g. `flink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_image_repository: Option<String>,
    /// VVP's `additionalDependencies` (URIs added to the classpath); accepted and reported
    /// as without effect: no target downloads them yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_dependencies: Vec<String>,
}

impl Default for Artifact {
    fn default() -> Self {
        Self {
            kind: default_artifact_kind(),
            jar_uri: String::new(),
            entry_class: None,
            main_args: None,
            flink_version: None,
            flink_image_tag: None,
            flink_image_registry: None,
            flink_image_repository: None,
            additional_dependencies: Vec::new(),
        }
    }
}

fn default_artifact_kind() -> String {
    "JAR".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobmanager: Option<ResourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taskmanager: Option<ResourceSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Flink memory size, e.g. `1g`, `1536m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_profile: Option<String>,
    /// Logger name (empty = root) → level.
    #[serde(default)]
    pub log4j_loggers: BTreeMap<String, String>,
    /// A custom log4j2 properties template (Jinja syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log4j2_configuration_template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesSpec {
    /// Options for the generated pods (exclusive with the pod templates).
    #[serde(default)]
    pub pods: PodSpec,
    /// Labels on the Kubernetes objects of a job (Jobs, Deployments, Services); the suite's
    /// own labels take precedence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A Kubernetes `PodTemplateSpec` merged over the generated JobManager pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_manager_pod_template: Option<serde_json::Value>,
    /// A Kubernetes `PodTemplateSpec` merged over the generated TaskManager pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_manager_pod_template: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    /// Node labels the pods must match (Kubernetes targets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// A Kubernetes `Affinity` (Kubernetes targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<serde_json::Value>,
    /// Kubernetes `Toleration`s (Kubernetes targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<serde_json::Value>,
    /// Kubernetes `Volume`s added to the pods (Kubernetes targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<serde_json::Value>,
    /// Kubernetes `VolumeMount`s added to the Flink container (Kubernetes targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<serde_json::Value>,
    /// Kubernetes `LocalObjectReference`s (`{name: SECRET}`) to pull the image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<serde_json::Value>,
    /// A Kubernetes `PodSecurityContext` (Kubernetes targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// A health condition of the running job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `ClusterUnreachable`, `JobFailing` or `JobUnstable`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunningStatus {
    pub job_id: Option<Uuid>,
    pub transition_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub failed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    pub state: DeploymentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// A deployment: the unit users create, start, suspend, upgrade and cancel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    #[serde(default = "deployment_kind")]
    pub kind: String,
    #[serde(default = "api_v1")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: DeploymentMetadata,
    #[serde(default)]
    pub spec: DeploymentSpec,
    /// Ignored on input.
    #[serde(default)]
    pub status: DeploymentStatus,
}

fn deployment_kind() -> String {
    "Deployment".into()
}

fn api_v1() -> String {
    "v1".into()
}

impl Deployment {
    /// The id (always set once stored).
    pub fn id(&self) -> Uuid {
        self.metadata.id.unwrap_or_default()
    }
}

/// State of one job (one start attempt of a deployment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Cluster starting / being submitted.
    Starting,
    /// Running in Flink.
    Started,
    /// Being stopped.
    Terminating,
    /// Stopped with a savepoint.
    Suspended,
    Cancelled,
    Failed,
    Finished,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Suspended | JobState::Cancelled | JobState::Failed | JobState::Finished
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadata {
    pub id: Uuid,
    pub namespace: String,
    pub deployment_id: Uuid,
    pub deployment_name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// The deployment spec this job runs.
    pub deployment_spec: DeploymentSpec,
    /// Where the job's state came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_savepoint_id: Option<Uuid>,
    pub allow_non_restored_state: bool,
    pub deployment_target_name: String,
}

/// Where a job's Flink cluster is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    pub rest_url: String,
    /// For `local` clusters, the directory holding config, pid files and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
    /// For `kubernetes` clusters: where the job's objects are (additive; older records have
    /// none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesClusterRef>,
}

/// Where a job's objects on Kubernetes are, and how the manager reaches them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesClusterRef {
    /// The Kubernetes namespace of the target.
    pub namespace: String,
    /// The job id naming the objects (`job-<jobId>-jobmanager`).
    pub job_id: Uuid,
    /// The kubeconfig context, when the target names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default)]
    pub flink_rest: crate::kubernetes::cluster::FlinkRestAccess,
    /// The target's `podConditionTimeout` when the job started (else the manager's
    /// `kubernetes.pod_condition_timeout` applies).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub pod_condition_timeout: Option<std::time::Duration>,
    /// The scope, expiry and hash of the job's artifact download token, when its JAR is in
    /// the artifact store (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_token: Option<crate::artifacts::tokens::DownloadGrant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub state: JobState,
    /// The Flink job id of the current submission attempt (32 hex digits).
    pub flink_job_id: String,
    #[serde(default)]
    pub submission_attempts: u32,
    #[serde(default)]
    pub submitted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_flink_job_status: Option<String>,
    #[serde(default)]
    pub num_restarts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// One start attempt of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub kind: String,
    pub api_version: String,
    pub metadata: JobMetadata,
    pub spec: JobSpec,
    pub status: JobStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SavepointOrigin {
    UserRequest,
    Suspend,
    Scheduled,
    StatefulUpgrade,
    RetainedCheckpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SavepointState {
    Pending,
    Started,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointMetadata {
    pub id: Uuid,
    pub namespace: String,
    pub deployment_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    pub origin: SavepointOrigin,
    /// `SAVEPOINT` or `RETAINED_CHECKPOINT`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    pub state: SavepointState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Savepoint {
    pub kind: String,
    pub api_version: String,
    pub metadata: SavepointMetadata,
    pub status: SavepointStatus,
}

/// Something that happened to a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: String,
    pub api_version: String,
    pub metadata: EventMetadata,
    pub spec: EventSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub id: Uuid,
    pub namespace: String,
    pub deployment_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSpec {
    /// Short machine-readable name, e.g. `JobStarted`.
    pub name: String,
    pub message: String,
}

/// Kind of a deployment target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A standalone Flink cluster per job, started by the manager from `FLINK_HOME`.
    Local,
    /// An existing Flink session cluster.
    Session,
    /// A Flink cluster per job in a Kubernetes namespace (VVP's target: `spec.kubernetes`,
    /// no `type`).
    Kubernetes,
}

impl TargetKind {
    /// The spelling of `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Local => "local",
            TargetKind::Session => "session",
            TargetKind::Kubernetes => "kubernetes",
        }
    }

    fn is_kubernetes(&self) -> bool {
        *self == TargetKind::Kubernetes
    }
}

/// A target without `spec.type` is VVP's: a Kubernetes namespace.
fn kubernetes_kind() -> TargetKind {
    TargetKind::Kubernetes
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// Absent for a Kubernetes target (VVP's shape), also when stored.
    #[serde(
        rename = "type",
        default = "kubernetes_kind",
        skip_serializing_if = "TargetKind::is_kubernetes"
    )]
    pub kind: TargetKind,
    /// The session cluster's REST URL (`session` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// Default savepoint directory for deployments on this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_dir: Option<String>,
    /// Where a Kubernetes target runs its jobs (VVP's `spec.kubernetes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTarget>,
}

/// The Kubernetes part of a deployment target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesTarget {
    /// The Kubernetes namespace the jobs' objects are created in (it must exist).
    pub namespace: String,
    /// The kubeconfig context of the cluster (else the current context, or in-cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// How the manager reaches Flink's REST API: `service` (the JobManager Service's DNS
    /// name; default) or `proxy` (the API server's service proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_rest: Option<crate::kubernetes::cluster::FlinkRestAccess>,
    /// How long a start waits for a pod condition that may pass (Unschedulable while an
    /// autoscaler adds a node, CrashLoopBackOff, an image pull that may succeed later)
    /// before it fails, e.g. `10m`; else the manager's `kubernetes.pod_condition_timeout`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub pod_condition_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// Labels (VVP's `metadata.labels`); stored, not interpreted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (VVP's `metadata.annotations`); stored, not interpreted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resource_version: u64,
}

/// Where deployments run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentTarget {
    #[serde(default = "target_kind")]
    pub kind: String,
    #[serde(default = "api_v1")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: NamedMetadata,
    pub spec: TargetSpec,
}

fn target_kind() -> String {
    "DeploymentTarget".into()
}

/// A role in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBinding {
    pub role: Role,
    /// `user:UID` entries.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSpec {
    #[serde(default)]
    pub role_bindings: Vec<RoleBinding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Namespace {
    #[serde(default = "namespace_kind")]
    pub kind: String,
    #[serde(default = "api_v1")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: NamedMetadata,
    #[serde(default)]
    pub spec: NamespaceSpec,
}

fn namespace_kind() -> String {
    "Namespace".into()
}

/// An API token; the secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub name: String,
    pub namespace: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A new savepoint record (PENDING).
pub fn new_savepoint(d: &Deployment, job: Option<Uuid>, origin: SavepointOrigin) -> Savepoint {
    Savepoint {
        kind: "Savepoint".into(),
        api_version: "v1".into(),
        metadata: SavepointMetadata {
            id: Uuid::new_v4(),
            namespace: d.metadata.namespace.clone(),
            deployment_id: d.id(),
            job_id: job,
            origin,
            kind: "SAVEPOINT".into(),
            created_at: Utc::now(),
            annotations: Default::default(),
        },
        status: SavepointStatus {
            state: SavepointState::Pending,
            location: None,
            trigger_id: None,
            attempts: 0,
            completed_at: None,
            failure: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_display_as_the_api_spells_them() {
        for s in [
            DeploymentState::Running,
            DeploymentState::Suspended,
            DeploymentState::Cancelled,
            DeploymentState::Transitioning,
            DeploymentState::Failed,
            DeploymentState::Finished,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.to_string());
        }
        assert_eq!(DesiredState::Suspended.reached().to_string(), "SUSPENDED");
        assert_eq!(JobState::Starting.to_string(), "STARTING");
        assert_eq!(SavepointState::Completed.to_string(), "COMPLETED");
    }
}
