//! job-manager's own metrics, registered once and counted in one place. Built with
//! [`common::telemetry`]'s constructors, as every service's metrics are.

use common::telemetry::{histogram, int_counter, int_gauge};
use prometheus::{Histogram, IntCounter, IntGauge, Registry};

/// The controller's and API's counters.
#[derive(Clone)]
pub struct Metrics {
    pub reconcile_pass_seconds: Histogram,
    pub reconcile_errors: IntCounter,
    pub jobs_started: IntCounter,
    pub flink_submissions: IntCounter,
    pub savepoints_triggered: IntCounter,
    pub deployments_failed: IntCounter,
    pub auth_denied: IntCounter,
    /// jarUris refused (outside the namespace's store, remote not allowed, forbidden address).
    pub jar_uris_refused: IntCounter,
    /// Savepoint locations retention left alone (outside the manager's savepoint directory).
    pub savepoint_deletions_refused: IntCounter,
    /// 1 while this replica's controller reconciles (always with the embedded store).
    pub leader: IntGauge,
}

impl Metrics {
    /// Registers the metrics in `registry` (a second registration is harmless).
    pub fn register(prefix: &str, registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| int_counter(registry, prefix, name, help);
        Self {
            leader: int_gauge(
                registry,
                prefix,
                "leader",
                "1 on the replica whose controller reconciles (PostgreSQL advisory lock held; always 1 with the embedded store), 0 elsewhere.",
            ),
            reconcile_pass_seconds: histogram(
                registry,
                prefix,
                "reconcile_pass_duration_seconds",
                "Time for one reconcile pass over every deployment.",
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0],
            ),
            reconcile_errors: counter(
                "reconcile_errors_total",
                "Reconcile steps that failed and will be retried.",
            ),
            jobs_started: counter("jobs_started_total", "Flink jobs that reached RUNNING."),
            flink_submissions: counter(
                "flink_job_submissions_total",
                "Jobs submitted to Flink (POST /jars/{id}/run).",
            ),
            savepoints_triggered: counter(
                "savepoints_triggered_total",
                "Savepoint and stop-with-savepoint operations triggered.",
            ),
            deployments_failed: counter(
                "deployments_failed_total",
                "Deployments that went to FAILED.",
            ),
            auth_denied: counter("auth_denied_total", "API requests refused with 401 or 403."),
            jar_uris_refused: counter(
                "jar_uris_refused_total",
                "jarUris refused by the API or the controller (outside the namespace's artifact store, remote URI not allowed, forbidden address, download limit).",
            ),
            savepoint_deletions_refused: counter(
                "savepoint_deletions_refused_total",
                "Savepoint locations that retention did not delete because they are outside the savepoint directory the manager configured.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::proto::MetricType;

    /// The names, types and help of what dashboards and alerts read stay as they were.
    #[test]
    fn every_metric_is_registered_under_its_name_and_type() {
        let registry = prometheus::Registry::new();
        let m = super::Metrics::register("job_manager", &registry);
        m.leader.set(1);
        m.reconcile_pass_seconds.observe(0.02);
        let families = registry.gather();
        let kind = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.get_field_type())
        };
        assert_eq!(kind("job_manager_leader"), Some(MetricType::GAUGE));
        assert_eq!(
            kind("job_manager_reconcile_pass_duration_seconds"),
            Some(MetricType::HISTOGRAM)
        );
        for c in [
            "reconcile_errors_total",
            "jobs_started_total",
            "flink_job_submissions_total",
            "savepoints_triggered_total",
            "deployments_failed_total",
            "auth_denied_total",
            "jar_uris_refused_total",
            "savepoint_deletions_refused_total",
        ] {
            assert_eq!(
                kind(&format!("job_manager_{c}")),
                Some(MetricType::COUNTER),
                "{c}"
            );
        }
        assert_eq!(families.len(), 10, "no metric more or less");
        // A second registration in the same registry (tests share one) is harmless.
        let _ = super::Metrics::register("job_manager", &registry);
    }
}
