//! The gateway's own metrics, registered once and counted in one place.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

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

/// The prefix of every metric the gateway registers.
const PREFIX: &str = "metrics_gateway";

impl GatewayMetrics {
    /// Creates and registers the metrics with the `metrics_gateway` prefix (a second
    /// registration in the same registry keeps the first, see [`common::telemetry`]).
    pub fn register(registry: &Registry) -> Self {
        use common::telemetry::{int_counter, int_counter_vec, int_gauge};
        let vec = |name: &str, help: &str, labels: &[&str]| {
            int_counter_vec(registry, PREFIX, name, help, labels)
        };
        let gauge = |name: &str, help: &str| int_gauge(registry, PREFIX, name, help);
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
            persistence_skipped_groups: int_counter(
                registry,
                PREFIX,
                "persistence_skipped_groups_total",
                "Groups of the persistence file skipped when loading it because they were invalid.",
            ),
            scrapes: int_counter(
                registry,
                PREFIX,
                "scrapes_total",
                "Renders of GET /metrics.",
            ),
        }
    }

    /// Updates the size gauges.
    pub fn sizes(&self, stats: crate::store::Stats) {
        self.groups.set(stats.groups as i64);
        self.series.set(stats.series as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_keeps_its_name_type_and_labels() {
        let r = Registry::new();
        let m = GatewayMetrics::register(&r);
        m.pushes.with_label_values(&["PUT", "ok"]).inc();
        m.limit_rejections.with_label_values(&["body_size"]).inc();
        m.groups_removed.with_label_values(&["ttl"]).inc();
        m.persistence_writes.with_label_values(&["ok"]).inc();
        m.sizes(crate::store::Stats {
            groups: 2,
            series: 5,
        });
        m.persistence_last_write.set(1_700_000_000);
        m.persistence_skipped_groups.inc();
        m.scrapes.inc();
        // Registering again (a registry shared in tests) neither panics nor resets.
        GatewayMetrics::register(&r);
        let text = common::telemetry::encode(&r);
        for line in [
            "# TYPE metrics_gateway_pushes_total counter",
            r#"metrics_gateway_pushes_total{method="PUT",result="ok"} 1"#,
            r#"metrics_gateway_limit_rejections_total{limit="body_size"} 1"#,
            r#"metrics_gateway_groups_removed_total{reason="ttl"} 1"#,
            r#"metrics_gateway_persistence_writes_total{result="ok"} 1"#,
            "# TYPE metrics_gateway_groups gauge",
            "metrics_gateway_groups 2",
            "metrics_gateway_series 5",
            "metrics_gateway_persistence_last_write_timestamp_seconds 1700000000",
            "# TYPE metrics_gateway_persistence_skipped_groups_total counter",
            "metrics_gateway_persistence_skipped_groups_total 1",
            "metrics_gateway_scrapes_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
