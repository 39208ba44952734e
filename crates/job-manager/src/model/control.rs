//! The controller's durable progress record of a deployment, stored next to it: which
//! transition runs ([`Phase`]) and its retry counters. A model type, so the store can hold
//! it without knowing the controller.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DesiredState;

/// The transition a deployment is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "phase")]
pub enum Phase {
    #[default]
    Idle,
    /// Bringing up `job` (cluster, submission, RUNNING).
    Starting { job: Uuid, since: DateTime<Utc> },
    /// Stopping `job`; then `goal` is reached (RUNNING = upgrade: start the new spec).
    Stopping {
        job: Uuid,
        goal: DesiredState,
        /// Stop with this savepoint, or cancel when `None`.
        savepoint: Option<Uuid>,
        /// Cancel requested already.
        #[serde(default)]
        cancel_requested: bool,
    },
}

/// The controller's private progress record of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Control {
    #[serde(default)]
    pub phase: Phase,
    /// Failed job submissions of the current start.
    #[serde(default)]
    pub job_attempts: u32,
    /// The resourceVersion at which the deployment failed: only a newer one retries.
    #[serde(default)]
    pub failed_at_version: Option<u64>,
    /// (time, numRestarts) samples within the instability window.
    #[serde(default)]
    pub restart_samples: Vec<(DateTime<Utc>, u64)>,
    /// When the next scheduled savepoint is due.
    #[serde(default)]
    pub next_scheduled: Option<DateTime<Utc>>,
    /// The last error that held up the current start (recorded as an event once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}
