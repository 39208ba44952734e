//! Alertmanager webhook receiver that delivers alerts to DingTalk robots.
//!
//! # Layout
//! - [`config`]: the YAML configuration (targets, routes, delivery) and the `default`
//!   target the `--dingtalk.*` flags define; compiled into [`config::Compiled`]. It
//!   aggregates the settings other modules own (`message::MessageType`,
//!   `message::Mentions`, `route::RouteConfig`); no module below it imports it back. Every
//!   field applies on reload.
//! - [`alert`]: Alertmanager's webhook payload (version 4).
//! - [`route`]: label-based routing of alerts to targets.
//! - [`template`]: minijinja templates, the default title/text and the template context.
//! - [`message`]: DingTalk message bodies: type, keyword, @-mentions, size cap.
//! - [`sign`]: the robot signature (`timestamp` + `sign`).
//! - [`gateway`]: per-target queues and workers: merging, splitting, retries.
//! - [`limiter`]: the per-robot 20-messages-per-minute limit.
//! - [`outcome`]: what DingTalk's answer (`errcode`) means.
//! - [`transport`]: the outbound HTTP and clock seams.
//! - [`api`]: the HTTP endpoints.
//! - [`dry_run`]: the dry-run sink standing in for DingTalk when no robot is configured.
//! - [`metrics`]: the service's own metrics.

pub mod alert;
pub mod api;
pub mod config;
pub mod dry_run;
pub mod gateway;
pub mod limiter;
pub mod message;
pub mod metrics;
pub mod outcome;
pub mod route;
pub mod sign;
pub mod template;
pub mod transport;

use std::{path::Path, sync::Arc, time::Duration};

use clap::Parser;
use common::{server, ConfigHandle, Lifecycle, Secret, ServiceInfo};

pub use config::Config;

/// Names, metric prefix and default port.
pub const INFO: ServiceInfo = ServiceInfo {
    name: "dingtalk-alert",
    metric_prefix: "dingtalk_alert",
    default_listen: "0.0.0.0:8060",
};

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

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

    /// Access token of the robot for the target `default` (`POST /dingtalk/default/send`).
    #[arg(long = "dingtalk.access-token", env = "DINGTALK_ACCESS_TOKEN", hide_env_values = true,
          value_name = "TOKEN", value_parser = secret)]
    pub access_token: Option<Secret>,

    /// File holding the access token of the `default` target (re-read on reload).
    #[arg(
        long = "dingtalk.access-token-file",
        env = "DINGTALK_ACCESS_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "access_token"
    )]
    pub access_token_file: Option<std::path::PathBuf>,

    /// Signing secret (`SEC…`) of the `default` target's robot.
    #[arg(long = "dingtalk.secret", env = "DINGTALK_SECRET", hide_env_values = true,
          value_name = "SECRET", value_parser = secret)]
    pub secret: Option<Secret>,

    /// File holding the signing secret of the `default` target (re-read on reload).
    #[arg(
        long = "dingtalk.secret-file",
        env = "DINGTALK_SECRET_FILE",
        value_name = "PATH",
        conflicts_with = "secret"
    )]
    pub secret_file: Option<std::path::PathBuf>,

    /// Base URL of DingTalk's API; `/robot/send` is appended. Also the default for targets
    /// in the config file that give no `url`.
    #[arg(long = "dingtalk.url", env = "DINGTALK_URL", value_name = "BASE",
          default_value = config::DEFAULT_BASE_URL)]
    pub base_url: String,

    /// With no robot configured (no token, no targets), run a dry-run sink instead of
    /// refusing alerts: target `default` logs each message, appends it to
    /// `DIR/dry-run/messages.jsonl` and counts it (`dingtalk_alert_dry_run_messages_total`).
    #[arg(long = "dry-run.dir", value_name = "DIR")]
    pub dry_run_dir: Option<std::path::PathBuf>,
}

impl Args {
    /// The flags the one-process suite uses: defaults, state under `data_dir`.
    pub fn for_suite(data_dir: &Path) -> Self {
        // Environment variables (a token from a Secret) apply in the suite too.
        let mut a = Self::parse_from([INFO.name]);
        a.dry_run_dir = Some(data_dir.to_path_buf());
        a
    }

    fn flag_target(&self) -> config::FlagTarget {
        config::FlagTarget {
            access_token: self.access_token.clone(),
            access_token_file: self.access_token_file.clone(),
            secret: self.secret.clone(),
            secret_file: self.secret_file.clone(),
            base_url: self.base_url.clone(),
        }
    }
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] common::ConfigError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error("cannot create the HTTP client: {0}")]
    Transport(#[from] transport::TransportError),
}

fn compiled_of(c: &Config) -> Arc<config::Compiled> {
    // The loader always compiles; an uncompiled config has no targets.
    c.compiled.clone().unwrap_or_else(|| {
        Arc::new(config::Compiled {
            targets: Default::default(),
            routes: Default::default(),
            delivery: c.delivery.clone(),
        })
    })
}

/// Runs the service until `lifecycle` asks it to stop, then delivers what is queued for up
/// to the grace period.
pub async fn run(args: Args, lifecycle: Lifecycle) -> Result<(), Error> {
    let registry = common::telemetry::new_registry(INFO.metric_prefix);
    let flags = args.flag_target();
    let path = args.common.config_file.clone();
    let handle = ConfigHandle::<Config>::with_loader(
        INFO.metric_prefix,
        &registry,
        Arc::new({
            let dry_run = args.dry_run_dir.is_some();
            move || {
                let c = config::load(path.as_deref(), &flags)?;
                if dry_run {
                    dry_run::with_dry_run_target(c)
                } else {
                    Ok(c)
                }
            }
        }),
    )?;
    let metrics = metrics::Metrics::register(INFO.metric_prefix, &registry);
    let transport: Arc<dyn transport::Transport> = match &args.dry_run_dir {
        Some(dir) => Arc::new(dry_run::DryRunTransport::new(
            transport::HttpTransport::new()?,
            dir,
            INFO.metric_prefix,
            &registry,
        )),
        None => Arc::new(transport::HttpTransport::new()?),
    };
    let gateway = gateway::Gateway::start(
        compiled_of(&handle.current()),
        transport,
        Arc::new(transport::SystemClock),
        metrics,
    );
    for (name, t) in &gateway.compiled().targets {
        if t.robot.send_url.expose().starts_with(dry_run::SCHEME) {
            tracing::warn!(dingtalk_target = %name, file = %args.dry_run_dir.as_deref().map(dry_run::messages_file).unwrap_or_default().display(),
                "No DingTalk robot token configured (set DINGTALK_ACCESS_TOKEN and DINGTALK_SECRET, or targets in the config): dry run, each message is logged and written to the file instead.");
        } else {
            tracing::info!(dingtalk_target = %name, message_type = ?t.message_type, signed = t.robot.secret.is_some(), "DingTalk target configured.");
        }
    }
    // Applied before the reload answers, so a 200 from `/-/reload` means the new targets
    // and limits are in effect.
    let g = gateway.clone();
    handle.on_reload(move |c| g.apply(compiled_of(c)));

    let listener = server::bind(args.common.listen_addr(&INFO)).await?;
    let endpoints = server::Endpoints::new(INFO.metric_prefix, registry, Arc::new(handle));
    let app = api::router(gateway.clone()).layer(axum::extract::DefaultBodyLimit::max(32 << 20));
    server::serve(listener, app, endpoints, lifecycle).await?;

    // Deliver what is queued, leaving a second of the grace period to exit cleanly.
    let budget = args
        .common
        .grace_period
        .saturating_sub(Duration::from_secs(1));
    if gateway.pending() > 0 {
        tracing::info!(alerts = gateway.pending(), budget = ?budget, "Delivering queued alerts before exit.");
    }
    if tokio::time::timeout(budget, gateway.drain()).await.is_err() {
        gateway.abandon();
    }
    Ok(())
}
