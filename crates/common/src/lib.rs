//! What the four deployables of the suite share, written once.
//!
//! # Layout
//! - [`cli`]: the flags every binary accepts (`--web.listen-address`, `--config.file`,
//!   `--log.*`, `--shutdown.grace-period`).
//! - [`config`]: loading a YAML config file strictly (`deny_unknown_fields`, errors that name
//!   the field and line) and the [`config::ServiceConfig`] trait each service implements.
//! - [`reload`]: [`reload::ConfigHandle`], the current config behind a watch channel, swapped
//!   on SIGHUP or `POST /-/reload` only when the new one is valid, with the
//!   `*_config_last_reload_*` gauges.
//! - [`lifecycle`]: shutdown and reload signals as values ([`lifecycle::Lifecycle`]) so that
//!   library code never touches the process; [`lifecycle::run_main`] is the only place that
//!   installs signal handlers and enforces the grace period.
//! - [`telemetry`]: `tracing` set-up (text or JSON) and the per-service metrics registry.
//! - [`server`]: the HTTP bootstrap: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`,
//!   `/-/config`, request metrics, graceful shutdown.
//! - [`labels`]: the Kubernetes label vocabulary the suite coordinates through.
//! - [`secret`]: a string that never prints, and its redaction from text (URL-encoded
//!   spellings included).
//! - [`fs`]: durable state files: temp file, fsync, rename, directory fsync.
//! - [`backoff`]: capped exponential retry delays with jitter.
//! - `testkit` (feature `testkit`): drive a real binary from integration tests.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod fs;
pub mod labels;
pub mod lifecycle;
pub mod reload;
pub mod secret;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use cli::{CommonArgs, ServiceInfo};
pub use config::{ConfigError, ServiceConfig};
pub use lifecycle::Lifecycle;
pub use reload::ConfigHandle;
pub use secret::Secret;
