//! The seam between the controller and Flink: [`Flink`], the REST operations the controller
//! needs, with [`rest::RestFlink`] (real Flink 1.20 / 2.x) and [`fake::FakeFlink`] (unit
//! tests and the benchmark) behind it.

pub mod fake;
pub mod rest;

use std::{future::Future, path::Path};

/// Why a Flink call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlinkError {
    /// Nothing answered (connection refused, timeout): the cluster is unreachable.
    #[error("Flink REST API at {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// Flink answered with an error status.
    #[error("Flink REST API answered {status} to {what}: {message}")]
    Http {
        status: u16,
        what: String,
        message: String,
    },
    /// Flink answered something we could not understand, or the jar could not be read.
    #[error("{0}")]
    Protocol(String),
}

impl FlinkError {
    /// Whether the call may succeed if simply retried (unreachable, 408, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            FlinkError::Unreachable { .. } => true,
            FlinkError::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            FlinkError::Protocol(_) => false,
        }
    }
}

pub type Result<T, E = FlinkError> = std::result::Result<T, E>;

/// What `POST /jars/{id}/run` gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    pub entry_class: Option<String>,
    pub parallelism: u32,
    pub program_args: Vec<String>,
    pub savepoint_path: Option<String>,
    pub allow_non_restored_state: bool,
    /// 32 hex digits; makes the submission idempotent.
    pub job_id: String,
    /// Per-job configuration (session clusters; empty for local ones).
    pub flink_configuration: std::collections::BTreeMap<String, String>,
}

/// State of an asynchronous savepoint / stop operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    InProgress,
    Completed {
        location: String,
    },
    /// Flink reports a failed operation as COMPLETED with a failure cause.
    Failed {
        cause: String,
    },
}

/// Cluster capacity from `/overview`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Overview {
    pub taskmanagers: u32,
    pub slots_total: u32,
    pub slots_available: u32,
}

/// Checkpoint facts from `/jobs/{id}/checkpoints`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoints {
    pub latest_completed: Option<String>,
    pub restored_from: Option<String>,
}

/// The Flink REST operations the controller uses. `rest` is the cluster's REST base URL.
pub trait Flink: Send + Sync + 'static {
    fn overview(&self, rest: &str) -> impl Future<Output = Result<Overview>> + Send;
    /// Uploads a jar; returns the jar id to run.
    fn upload_jar(&self, rest: &str, jar: &Path) -> impl Future<Output = Result<String>> + Send;
    /// Runs an uploaded jar; returns the Flink job id.
    fn run_jar(
        &self,
        rest: &str,
        jar_id: &str,
        req: &RunRequest,
    ) -> impl Future<Output = Result<String>> + Send;
    /// The job's status (`RUNNING`, `FAILED`, …), or `None` when Flink does not know it.
    fn job_status(
        &self,
        rest: &str,
        job: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    fn trigger_savepoint(
        &self,
        rest: &str,
        job: &str,
        dir: Option<&str>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn stop_with_savepoint(
        &self,
        rest: &str,
        job: &str,
        dir: Option<&str>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn savepoint_status(
        &self,
        rest: &str,
        job: &str,
        trigger: &str,
    ) -> impl Future<Output = Result<Operation>> + Send;
    fn cancel(&self, rest: &str, job: &str) -> impl Future<Output = Result<()>> + Send;
    /// The most recent root exception, if any.
    fn root_exception(
        &self,
        rest: &str,
        job: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    fn checkpoints(
        &self,
        rest: &str,
        job: &str,
    ) -> impl Future<Output = Result<Checkpoints>> + Send;
    /// The `numRestarts` job metric (`None` while Flink has not published it yet).
    fn num_restarts(
        &self,
        rest: &str,
        job: &str,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
}
