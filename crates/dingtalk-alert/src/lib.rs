//! Alertmanager webhook receiver that delivers alerts to DingTalk robots.
//!
//! # Layout
//! - [`config`]: the YAML configuration file.

pub mod config;

use std::{path::Path, sync::Arc};

use axum::Router;
use clap::Parser;
use common::{server, ConfigHandle, Lifecycle, ServiceInfo};

pub use config::Config;

/// Names, metric prefix and default port.
pub const INFO: ServiceInfo = ServiceInfo {
    name: "dingtalk-alert",
    metric_prefix: "dingtalk_alert",
    default_listen: "0.0.0.0:8060",
};

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dingtalk-alert",
    version,
    about = "Alertmanager webhook receiver that delivers alerts to DingTalk robots."
)]
pub struct Args {
    #[command(flatten)]
    pub common: common::CommonArgs,
}

impl Args {
    /// The flags the one-process suite uses: defaults, state under `data_dir`.
    pub fn for_suite(_data_dir: &Path) -> Self {
        Self::parse_from([INFO.name])
    }
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] common::ConfigError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// Runs the service until `lifecycle` asks it to stop.
pub async fn run(args: Args, lifecycle: Lifecycle) -> Result<(), Error> {
    let registry = common::telemetry::new_registry(INFO.metric_prefix);
    let config = ConfigHandle::<Config>::from_file(
        INFO.metric_prefix,
        &registry,
        args.common.config_file.clone(),
    )?;
    let listener = server::bind(args.common.listen_addr(&INFO)).await?;
    let endpoints = server::Endpoints::new(INFO.metric_prefix, registry, Arc::new(config));
    server::serve(listener, Router::new(), endpoints, lifecycle).await?;
    Ok(())
}
