//! Logs (`tracing`) and the per-service metrics registry.

use prometheus::{IntGaugeVec, Opts, Registry};
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

/// Encodes a registry in the Prometheus text format 0.0.4.
pub fn encode(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
