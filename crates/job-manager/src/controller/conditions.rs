//! Health conditions of a running job (`status.running.conditions`), VVP-shaped.

use chrono::Utc;

use crate::model::{Condition, DeploymentStatus, RunningStatus};

/// Condition types.
pub const CLUSTER_UNREACHABLE: &str = "ClusterUnreachable";
pub const JOB_FAILING: &str = "JobFailing";
pub const JOB_UNSTABLE: &str = "JobUnstable";

/// Sets a condition; true when its status changed.
pub(super) fn set_condition(
    status: &mut DeploymentStatus,
    kind: &str,
    on: bool,
    reason: &str,
    message: &str,
) -> bool {
    let running = status.running.get_or_insert_with(RunningStatus::default);
    let want = if on { "True" } else { "False" };
    match running.conditions.iter_mut().find(|c| c.kind == kind) {
        Some(c) if c.status == want => {
            if on && c.message != message {
                c.message = message.to_string();
            }
            false
        }
        Some(c) => {
            c.status = want.into();
            c.reason = reason.into();
            c.message = message.into();
            c.last_transition_time = Utc::now();
            true
        }
        None if !on => false,
        None => {
            running.conditions.push(Condition {
                kind: kind.into(),
                status: want.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: Utc::now(),
            });
            true
        }
    }
}
