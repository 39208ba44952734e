//! The service's own metrics, registered once and shared by the API and the workers.

use prometheus::{Histogram, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

/// Every metric dingtalk-alert exposes besides the shared runtime's.
#[derive(Clone)]
pub struct Metrics {
    /// Alerts accepted from Alertmanager, by target.
    pub alerts_received: IntCounterVec,
    /// Alerts refused (answered 503), by target and reason.
    pub alerts_rejected: IntCounterVec,
    /// Alerts that reached DingTalk, by target.
    pub alerts_delivered: IntCounterVec,
    /// Alerts given up on after failures, by target and reason.
    pub alerts_failed: IntCounterVec,
    /// Queued alerts replaced by a newer copy of themselves (same fingerprint and status).
    pub alerts_deduplicated: IntCounterVec,
    /// Messages DingTalk accepted, by target.
    pub messages_sent: IntCounterVec,
    /// Messages that failed, by target and reason (each attempt).
    pub messages_failed: IntCounterVec,
    /// Retries scheduled, by target and reason.
    pub retries: IntCounterVec,
    /// Messages whose text was cut to fit the size cap.
    pub messages_truncated: IntCounterVec,
    /// Messages that carried alerts of more than one notification.
    pub messages_merged: IntCounterVec,
    /// Custom template failures (the default template was used instead).
    pub template_errors: IntCounterVec,
    /// Alerts waiting for delivery, by target.
    pub queue_alerts: IntGaugeVec,
    /// Bytes of alerts waiting for delivery (labels, annotations, URLs), by target.
    pub queue_bytes: IntGaugeVec,
    /// Times a send had to wait for the per-robot rate limit.
    pub rate_limit_waits: IntCounterVec,
    /// Seconds spent waiting for the per-robot rate limit.
    pub rate_limit_wait_seconds: prometheus::CounterVec,
    /// Outbound request latency, by target.
    pub send_duration: HistogramVec,
    /// Time from acceptance to delivery of an alert.
    pub delivery_delay: Histogram,
}

impl Metrics {
    /// Registers the metrics under `prefix` in `registry`.
    pub fn register(prefix: &str, registry: &Registry) -> Self {
        let t = &["target"][..];
        let tr = &["target", "reason"][..];
        use common::telemetry::{
            counter_vec, histogram, histogram_vec, int_counter_vec, int_gauge_vec,
        };
        let queue_alerts = int_gauge_vec(
            registry,
            prefix,
            "queue_alerts",
            "Alerts waiting for delivery, by target.",
            t,
        );
        let queue_bytes = int_gauge_vec(
            registry,
            prefix,
            "queue_bytes",
            "Bytes of alerts (labels, annotations, URLs) waiting for delivery, by target; bounded by `delivery.max_queued_bytes`.",
            t,
        );
        let rate_limit_wait_seconds = counter_vec(
            registry,
            prefix,
            "rate_limit_wait_seconds_total",
            "Seconds sends waited for the per-robot limit of 20 messages per minute.",
            t,
        );
        let send_duration = histogram_vec(
            registry,
            prefix,
            "send_duration_seconds",
            "Latency of requests to DingTalk, by target.",
            t,
            vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        );
        let delivery_delay = histogram(
            registry,
            prefix,
            "alert_delivery_delay_seconds",
            "Time from accepting an alert to DingTalk accepting the message carrying it.",
            vec![
                0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ],
        );
        Self {
            alerts_received: int_counter_vec(
                registry,
                prefix,
                "alerts_received_total",
                "Alerts accepted from Alertmanager, by target.",
                t,
            ),
            alerts_rejected: int_counter_vec(
                registry,
                prefix,
                "alerts_rejected_total",
                "Alerts refused with 503 (queue full, queue bytes full, shutting down), by target and reason.",
                tr,
            ),
            alerts_delivered: int_counter_vec(
                registry,
                prefix,
                "alerts_delivered_total",
                "Alerts carried by a message DingTalk accepted, by target.",
                t,
            ),
            alerts_failed: int_counter_vec(
                registry,
                prefix,
                "alerts_failed_total",
                "Alerts given up on after delivery failures, by target and reason.",
                tr,
            ),
            alerts_deduplicated: int_counter_vec(
                registry,
                prefix,
                "alerts_deduplicated_total",
                "Queued alerts replaced by a newer copy (same fingerprint and status).",
                t,
            ),
            messages_sent: int_counter_vec(
                registry,
                prefix,
                "messages_sent_total",
                "Messages DingTalk accepted (errcode 0), by target.",
                t,
            ),
            messages_failed: int_counter_vec(
                registry,
                prefix,
                "messages_failed_total",
                "Failed message attempts, by target and reason.",
                tr,
            ),
            retries: int_counter_vec(
                registry,
                prefix,
                "retries_total",
                "Retries scheduled, by target and reason.",
                tr,
            ),
            messages_truncated: int_counter_vec(
                registry,
                prefix,
                "messages_truncated_total",
                "Messages whose text was cut to fit DingTalk's size limit.",
                t,
            ),
            messages_merged: int_counter_vec(
                registry,
                prefix,
                "messages_merged_total",
                "Messages that merged alerts of several Alertmanager notifications.",
                t,
            ),
            template_errors: int_counter_vec(
                registry,
                prefix,
                "template_errors_total",
                "Custom template failures; the default template was used instead.",
                t,
            ),
            queue_alerts,
            queue_bytes,
            rate_limit_waits: int_counter_vec(
                registry,
                prefix,
                "rate_limit_waits_total",
                "Sends that waited for the per-robot rate limit.",
                t,
            ),
            rate_limit_wait_seconds,
            send_duration,
            delivery_delay,
        }
    }
}
