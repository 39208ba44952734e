//! The one-process mode: every deployable of the suite in one process, wired to each other,
//! sharing one set of signals (SIGHUP reloads all four, SIGTERM drains all four). Like
//! Loki's or Mimir's `-target=all`.
//!
//! # Layout
//! - [`config`]: `suite.yml` (one section per component in its own format, plus
//!   `flink-suite:`), the bundled Flink rules, and the per-component files generated from
//!   them with the wiring filled in.
//! - [`wiring`]: who talks to whom (addresses, URLs), each component's flags, and the
//!   start-up summary of what is wired and what is missing.
//! - [`forward`]: job-manager's own metrics pushed to the gateway for the rules.
//! - [`token`]: the local owner token of job-manager's API.
//!
//! Wiring by default: job-manager's Flink clusters get the PushGateway reporter pointed at
//! the gateway (grouping key `namespace`, `deploymentId`, `jobId`); the gateway evaluates
//! the bundled rules and sends alerts straight to dingtalk-alert (or to Alertmanager when
//! `flink-suite.alertmanager_urls` is set); dingtalk-alert sends to the robot of
//! `DINGTALK_ACCESS_TOKEN`/`DINGTALK_SECRET` (`DINGTALK_URL`), or runs its dry-run sink;
//! log-shipper tails the logs of job-manager's local clusters into
//! `{data-dir}/log-shipper/output` (JSON events laid out as the OSS paths).

pub mod config;
pub mod forward;
pub mod token;
pub mod wiring;

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};
use common::{cli::LogFormat, Lifecycle};
use futures::future::BoxFuture;

pub use token::local_bootstrap_token;

/// One deployable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every component.
    All,
    /// The Pushgateway-compatible collector and rule evaluator (port 9091).
    MetricsGateway,
    /// The Alertmanager → DingTalk gateway (port 8060).
    DingtalkAlert,
    /// The Flink log shipper (port 8686).
    LogShipper,
    /// The Flink deployment manager (port 8080).
    JobManager,
}

/// Command-line flags of `flink-suite`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flink-suite",
    version,
    about = "Runs job-manager, metrics-gateway, dingtalk-alert and log-shipper in one process, wired to each other."
)]
pub struct Args {
    /// Directory for all state, one sub-directory per component (may be relative; it is
    /// resolved against the working directory once, at start).
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The suite's YAML config: sections `job-manager`, `metrics-gateway`,
    /// `dingtalk-alert`, `log-shipper` (each in the component's own format) and
    /// `flink-suite`. Re-read on SIGHUP.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Flink distribution the `local` deployment target starts (`scripts/flink/fetch.sh`
    /// assembles one).
    #[arg(long = "flink-home", value_name = "DIR", env = "FLINK_HOME")]
    pub flink_home: Option<PathBuf>,

    /// job-manager's listen address (default 0.0.0.0:8080).
    #[arg(long = "job-manager.listen-address", value_name = "HOST:PORT")]
    pub job_manager_listen: Option<SocketAddr>,

    /// metrics-gateway's listen address (default 0.0.0.0:9091).
    #[arg(long = "metrics-gateway.listen-address", value_name = "HOST:PORT")]
    pub metrics_gateway_listen: Option<SocketAddr>,

    /// dingtalk-alert's listen address (default 0.0.0.0:8060).
    #[arg(long = "dingtalk-alert.listen-address", value_name = "HOST:PORT")]
    pub dingtalk_alert_listen: Option<SocketAddr>,

    /// log-shipper's listen address (default 0.0.0.0:8686).
    #[arg(long = "log-shipper.listen-address", value_name = "HOST:PORT")]
    pub log_shipper_listen: Option<SocketAddr>,

    /// Components to run (repeatable or comma-separated).
    #[arg(
        long = "target",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    pub targets: Vec<Target>,

    /// Log filter (a level or `tracing` directives).
    #[arg(long = "log.level", value_name = "FILTER", default_value = "info")]
    pub log_level: String,

    /// Log output format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long a graceful shutdown may take before the process quits anyway.
    #[arg(long = "shutdown.grace-period", value_name = "DURATION", default_value = "30s",
          value_parser = common::cli::parse_duration)]
    pub grace_period: std::time::Duration,
}

impl Args {
    /// Whether component `t` runs.
    pub fn wants(&self, t: Target) -> bool {
        self.targets.contains(&Target::All) || self.targets.contains(&t)
    }

    /// Flags for telemetry set-up.
    pub fn common(&self) -> common::CommonArgs {
        common::CommonArgs {
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            grace_period: self.grace_period,
            ..Default::default()
        }
    }
}

/// Turns the suite's reloads into: re-read `suite.yml`, regenerate the components' files,
/// then reload the components. A `suite.yml` that no longer parses is logged and nothing
/// is reloaded.
fn relay(outer: &Lifecycle, inner: &Lifecycle, plan: wiring::Plan) {
    let mut reloads = outer.reloads();
    let stop = outer.shutdown();
    let inner = inner.clone();
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    inner.request_shutdown();
                    return;
                }
                r = reloads.recv() => match r {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let p = plan.clone();
                        match tokio::task::spawn_blocking(move || p.regenerate()).await {
                            Ok(Ok(())) => inner.request_reload(),
                            Ok(Err(error)) => tracing::error!(service = "flink-suite", %error,
                                "Configuration reload failed; keeping the running configuration of every component."),
                            Err(error) => tracing::error!(service = "flink-suite", %error, "Configuration reload failed."),
                        }
                    }
                    Err(_) => {
                        // The sender lives as long as `outer`; keep waiting for shutdown.
                        stop.as_mut().await;
                        inner.request_shutdown();
                        return;
                    }
                }
            }
        }
    });
}

/// Runs the selected components until `lifecycle` asks them to stop; the first that fails
/// stops the others.
pub async fn run(args: Args, lifecycle: Lifecycle) -> anyhow::Result<()> {
    let plan = wiring::Plan::new(&args)?;
    plan.regenerate()?;
    let inner = Lifecycle::new();
    relay(&lifecycle, &inner, plan.clone());
    let dir = plan.data_dir.clone();

    let mut services: Vec<(&str, BoxFuture<'static, anyhow::Result<()>>)> = Vec::new();
    if args.wants(Target::MetricsGateway) {
        let a = plan.metrics_gateway_args();
        let lc = inner.clone();
        services.push((
            "metrics-gateway",
            Box::pin(async move { Ok(metrics_gateway::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::DingtalkAlert) {
        let a = plan.dingtalk_alert_args();
        let lc = inner.clone();
        services.push((
            "dingtalk-alert",
            Box::pin(async move { Ok(dingtalk_alert::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::LogShipper) {
        let a = plan.log_shipper_args();
        let lc = inner.clone();
        services.push((
            "log-shipper",
            Box::pin(async move { Ok(log_shipper::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::JobManager) {
        let mut a = plan.job_manager_args();
        if std::env::var_os(job_manager::BOOTSTRAP_ENV).is_none()
            && a.bootstrap_token_file.is_none()
        {
            a.bootstrap_token_file = Some(local_bootstrap_token(&dir.join("job-manager"))?);
        }
        let lc = inner.clone();
        services.push((
            "job-manager",
            Box::pin(async move { Ok(job_manager::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::JobManager) && args.wants(Target::MetricsGateway) {
        tokio::spawn(forward::run(
            wiring::connect_addr(plan.job_manager_listen),
            wiring::connect_addr(plan.metrics_gateway_listen),
            plan.file.suite.self_metrics_interval,
            inner.clone(),
        ));
    }
    let names: Vec<&str> = services.iter().map(|(n, _)| *n).collect();
    tracing::info!(components = ?names, data_dir = %dir.display(), "Starting the suite.");
    plan.log_summary();
    let mut running: futures::stream::FuturesUnordered<_> = services
        .into_iter()
        .map(|(name, fut)| async move { (name, fut.await) })
        .collect();
    use futures::StreamExt;
    while let Some((name, result)) = running.next().await {
        if let Err(e) = result {
            inner.request_shutdown();
            // Let the others drain (bounded by the caller's grace period).
            while running.next().await.is_some() {}
            return Err(e.context(format!("{name} failed")));
        }
    }
    Ok(())
}
