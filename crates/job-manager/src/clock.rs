//! The controller's clock: wall time for records and schedules, behind a seam so start
//! timeouts, savepoint schedules and instability windows are tested under tokio's paused
//! time ([`TokioClock`]) instead of by sleeping.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time that advances with tokio's clock: anchored at the wall time of its creation,
/// it moves with `tokio::time::advance` and auto-advance when time is paused.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: DateTime<Utc>,
    mono: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            wall: Utc::now(),
            mono: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let passed = tokio::time::Instant::now().saturating_duration_since(self.mono);
        self.wall + chrono::Duration::from_std(passed).unwrap_or_default()
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        let t0 = c.now();
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!((c.now() - t0).num_seconds(), 90);
    }
}
