//! The shipper's own metrics, registered once and updated in one place.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

/// Every metric of log-shipper (prefix `log_shipper_`).
#[derive(Clone)]
pub struct Metrics {
    /// Lines read, by file and sink.
    pub read_lines: IntCounterVec,
    /// Bytes read, by file and sink.
    pub read_bytes: IntCounterVec,
    /// Events acknowledged by the sink.
    pub events_shipped: IntCounterVec,
    /// Bytes of acknowledged events.
    pub bytes_shipped: IntCounterVec,
    /// Events in batches whose send failed (each failed attempt counts).
    pub events_failed: IntCounterVec,
    /// Failed sends, by sink and error code.
    pub send_errors: IntCounterVec,
    /// Events in the outage buffer.
    pub buffer_events: IntGaugeVec,
    /// Bytes of the outage buffer on disk.
    pub buffer_bytes: IntGaugeVec,
    /// Events dropped from a full outage buffer (`drop_oldest`).
    pub buffer_dropped: IntCounterVec,
    /// Bytes of each file not yet acknowledged by the sink.
    pub checkpoint_lag: IntGaugeVec,
    /// Files opened, rotated, truncated, lost.
    pub file_events: IntCounterVec,
    /// Open files per sink.
    pub open_files: IntGaugeVec,
    /// Failed Kubernetes pod lists, by error code.
    pub kubernetes_list_errors: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    common::telemetry::int_counter_vec(r, crate::INFO.metric_prefix, name, help, labels)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    common::telemetry::int_gauge_vec(r, crate::INFO.metric_prefix, name, help, labels)
}

impl Metrics {
    /// Registers every metric in `r`.
    pub fn register(r: &Registry) -> Self {
        Self {
            read_lines: counter(
                r,
                "read_lines_total",
                "Lines read, by file and sink.",
                &["file", "sink"],
            ),
            read_bytes: counter(
                r,
                "read_bytes_total",
                "Bytes read, by file and sink.",
                &["file", "sink"],
            ),
            events_shipped: counter(
                r,
                "events_shipped_total",
                "Events acknowledged by the sink.",
                &["sink"],
            ),
            bytes_shipped: counter(
                r,
                "bytes_shipped_total",
                "Raw bytes of events acknowledged by the sink.",
                &["sink"],
            ),
            events_failed: counter(
                r,
                "events_failed_total",
                "Events in sends that failed (each attempt counts; they are retried).",
                &["sink"],
            ),
            send_errors: counter(
                r,
                "send_errors_total",
                "Failed sends, by sink and error code.",
                &["sink", "code"],
            ),
            buffer_events: gauge(
                r,
                "buffer_events",
                "Events waiting in the outage buffer.",
                &["sink"],
            ),
            buffer_bytes: gauge(
                r,
                "buffer_bytes",
                "Bytes of the outage buffer on disk.",
                &["sink"],
            ),
            buffer_dropped: counter(
                r,
                "buffer_dropped_events_total",
                "Events dropped from a full outage buffer (policy drop_oldest).",
                &["sink"],
            ),
            checkpoint_lag: gauge(
                r,
                "checkpoint_lag_bytes",
                "Bytes of a file not yet acknowledged by the sink.",
                &["file", "sink"],
            ),
            file_events: counter(
                r,
                "file_events_total",
                "File lifecycle events (opened, rotated, truncated, lost), by sink.",
                &["event", "sink"],
            ),
            open_files: gauge(r, "open_files", "Files held open, by sink.", &["sink"]),
            kubernetes_list_errors: counter(
                r,
                "kubernetes_list_errors_total",
                "Failed Kubernetes pod lists and watches (retried; the last known pod set is kept), by error code.",
                &["code"],
            ),
        }
    }
}
