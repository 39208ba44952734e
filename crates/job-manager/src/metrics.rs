//! job-manager's own metrics, registered once and counted in one place.

use prometheus::{Histogram, HistogramOpts, IntCounter, Opts, Registry};

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
    pub leader: prometheus::IntGauge,
}

impl Metrics {
    /// Registers the metrics in `registry` (a second registration is harmless).
    pub fn register(prefix: &str, registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(format!("{prefix}_{name}"), help))
                .expect("static metric definition");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let pass = Histogram::with_opts(
            HistogramOpts::new(
                format!("{prefix}_reconcile_pass_duration_seconds"),
                "Time for one reconcile pass over every deployment.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]),
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(pass.clone()));
        let leader = prometheus::IntGauge::new(
            format!("{prefix}_leader"),
            "1 on the replica whose controller reconciles (PostgreSQL advisory lock held; always 1 with the embedded store), 0 elsewhere.",
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(leader.clone()));
        Self {
            leader,
            reconcile_pass_seconds: pass,
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
