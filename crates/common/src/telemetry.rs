//! Logs (`tracing`) and the per-service metrics registry.

use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use tracing_subscriber::{fmt, EnvFilter};

use crate::cli::{CommonArgs, LogFormat};

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set, overrides `--log.level`.
/// Safe to call more than once (later calls are ignored), so the suite and tests can share it.
pub fn init_tracing(args: &CommonArgs) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&args.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// A fresh registry for one service: process metrics (CPU, RSS, fds, start time) and
/// `<prefix>_build_info`.
pub fn new_registry(prefix: &str) -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        let _ = registry.register(Box::new(pc));
    }
    if let Ok(info) = IntGaugeVec::new(
        Opts::new(
            format!("{prefix}_build_info"),
            "Build information: version and the Rust version it was built for.",
        ),
        &["version", "rust_version"],
    ) {
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("CARGO_PKG_RUST_VERSION")])
            .set(1);
        let _ = registry.register(Box::new(info));
    }
    registry
}

// Metric constructors: every service's `metrics.rs` builds its struct of metrics with these,
// named `{prefix}_{name}` and registered in the service's registry. The definitions are
// static, so a failure to build one is a programming error; a second registration of the
// same name (a registry shared in tests) is ignored and the new, unregistered metric
// returned.

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    let _ = registry.register(Box::new(m.clone()));
    m
}

/// An integer counter with labels, registered as `{prefix}_{name}`.
pub fn int_counter_vec(
    registry: &Registry,
    prefix: &str,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(format!("{prefix}_{name}"), help), labels)
        .expect("static metric definition");
    register(registry, m)
}

/// An integer counter without labels, registered as `{prefix}_{name}`.
pub fn int_counter(registry: &Registry, prefix: &str, name: &str, help: &str) -> IntCounter {
    let m = IntCounter::new(format!("{prefix}_{name}"), help).expect("static metric definition");
    register(registry, m)
}

/// An integer gauge without labels, registered as `{prefix}_{name}`.
pub fn int_gauge(registry: &Registry, prefix: &str, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::new(format!("{prefix}_{name}"), help).expect("static metric definition");
    register(registry, m)
}

/// A float counter with labels (seconds, bytes as f64), registered as `{prefix}_{name}`.
pub fn counter_vec(
    registry: &Registry,
    prefix: &str,
    name: &str,
    help: &str,
    labels: &[&str],
) -> CounterVec {
    let m = CounterVec::new(Opts::new(format!("{prefix}_{name}"), help), labels)
        .expect("static metric definition");
    register(registry, m)
}

/// An integer gauge with labels, registered as `{prefix}_{name}`.
pub fn int_gauge_vec(
    registry: &Registry,
    prefix: &str,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(format!("{prefix}_{name}"), help), labels)
        .expect("static metric definition");
    register(registry, m)
}

/// A histogram with labels and explicit buckets, registered as `{prefix}_{name}`.
pub fn histogram_vec(
    registry: &Registry,
    prefix: &str,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let m = HistogramVec::new(
        HistogramOpts::new(format!("{prefix}_{name}"), help).buckets(buckets),
        labels,
    )
    .expect("static metric definition");
    register(registry, m)
}

/// A histogram without labels, registered as `{prefix}_{name}`.
pub fn histogram(
    registry: &Registry,
    prefix: &str,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> Histogram {
    let m =
        Histogram::with_opts(HistogramOpts::new(format!("{prefix}_{name}"), help).buckets(buckets))
            .expect("static metric definition");
    register(registry, m)
}

/// Encodes a registry in the Prometheus text format 0.0.4.
pub fn encode(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_register_under_the_prefix_and_tolerate_a_second_registration() {
        let r = Registry::new();
        let c = int_counter_vec(&r, "svc", "things_total", "Things.", &["kind"]);
        c.with_label_values(&["a"]).inc();
        int_gauge_vec(&r, "svc", "depth", "Depth.", &["q"])
            .with_label_values(&["x"])
            .set(3);
        histogram(&r, "svc", "seconds", "Time.", vec![1.0]).observe(0.5);
        histogram_vec(&r, "svc", "bytes", "Size.", &["t"], vec![10.0])
            .with_label_values(&["t"])
            .observe(1.0);
        counter_vec(&r, "svc", "wait_seconds_total", "Waits.", &["t"])
            .with_label_values(&["t"])
            .inc_by(0.5);
        int_counter(&r, "svc", "scrapes_total", "Scrapes.").inc_by(2);
        int_gauge(&r, "svc", "groups", "Groups.").set(7);
        // Same name again: no panic, the first one stays registered.
        let again = int_counter_vec(&r, "svc", "things_total", "Things.", &["kind"]);
        again.with_label_values(&["b"]).inc();
        let text = encode(&r);
        assert!(text.contains(r#"svc_things_total{kind="a"} 1"#), "{text}");
        assert!(!text.contains(r#"kind="b""#), "{text}");
        for name in [
            "svc_depth{",
            "svc_seconds_count 1",
            "svc_bytes_count{",
            "svc_wait_seconds_total{",
            "svc_scrapes_total 2",
            "svc_groups 7",
        ] {
            assert!(text.contains(name), "{name}: {text}");
        }
    }
}
