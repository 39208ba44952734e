//! The gateway's own metrics, registered once and counted in one place.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the gateway keeps about itself (besides the shared HTTP and reload ones).
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Pushes by method and result (`ok`, `parse_error`, `inconsistent`, `limit`,
    /// `too_large`, `bad_request`).
    pub pushes: IntCounterVec,
    /// Pushes refused by a limit, by which limit (`body_size`, `series_per_group`,
    /// `total_series`, `labels_per_series`, `label_name_length`, `label_value_length`).
    pub limit_rejections: IntCounterVec,
    /// Groups removed, by how (`delete`, `matcher`, `wipe`, `ttl`).
    pub groups_removed: IntCounterVec,
    /// Groups held now.
    pub groups: IntGauge,
    /// Series held now.
    pub series: IntGauge,
    /// Persistence writes by result.
    pub persistence_writes: IntCounterVec,
    /// Unix time of the last successful persistence write.
    pub persistence_last_write: IntGauge,
    /// Groups of the persistence file skipped at start-up because they were invalid.
    pub persistence_skipped_groups: IntCounter,
    /// Scrapes of `/metrics` served.
    pub scrapes: IntCounter,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // A duplicate registration (same registry reused in tests) keeps the first.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl GatewayMetrics {
    /// Creates and registers the metrics with the `metrics_gateway` prefix.
    pub fn register(registry: &Registry) -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                registry,
                IntCounterVec::new(Opts::new(format!("metrics_gateway_{name}"), help), labels)
                    .expect("static metric definition"),
            )
        };
        let gauge = |name: &str, help: &str| {
            reg(
                registry,
                IntGauge::new(format!("metrics_gateway_{name}"), help)
                    .expect("static metric definition"),
            )
        };
        Self {
            pushes: vec(
                "pushes_total",
                "Push requests (PUT/POST) by method and result.",
                &["method", "result"],
            ),
            limit_rejections: vec(
                "limit_rejections_total",
                "Pushes refused because a limit would be exceeded, by limit.",
                &["limit"],
            ),
            groups_removed: vec(
                "groups_removed_total",
                "Groups removed, by how: delete, matcher, wipe, ttl.",
                &["reason"],
            ),
            groups: gauge("groups", "Groups currently held."),
            series: gauge(
                "series",
                "Series currently held (a histogram or summary counts once).",
            ),
            persistence_writes: vec(
                "persistence_writes_total",
                "Writes of the persistence file, by result.",
                &["result"],
            ),
            persistence_last_write: gauge(
                "persistence_last_write_timestamp_seconds",
                "Unix time of the last successful write of the persistence file.",
            ),
            persistence_skipped_groups: reg(
                registry,
                IntCounter::new(
                    "metrics_gateway_persistence_skipped_groups_total",
                    "Groups of the persistence file skipped when loading it because they were invalid.",
                )
                .expect("static metric definition"),
            ),
            scrapes: reg(
                registry,
                IntCounter::new("metrics_gateway_scrapes_total", "Renders of GET /metrics.")
                    .expect("static metric definition"),
            ),
        }
    }

    /// Updates the size gauges.
    pub fn sizes(&self, stats: crate::store::Stats) {
        self.groups.set(stats.groups as i64);
        self.series.set(stats.series as i64);
    }
}
