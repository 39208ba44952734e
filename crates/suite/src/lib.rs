//! The one-process mode: every deployable of the suite in one process, each on its own
//! default port, sharing one set of signals (SIGHUP reloads all four, SIGTERM drains all
//! four). Like Loki's or Mimir's `-target=all`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use common::{cli::LogFormat, Lifecycle};
use futures::future::BoxFuture;

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
    about = "Runs metrics-gateway, dingtalk-alert, log-shipper and job-manager in one process with embedded defaults."
)]
pub struct Args {
    /// Directory for all state (job-manager's store, log-shipper's checkpoints and local
    /// sink, metrics-gateway's persistence file), one sub-directory per component.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,

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
    fn wants(&self, t: Target) -> bool {
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

/// The owner token of the local suite: `<dir>/bootstrap-token`, created on first start with
/// 32 random bytes (hex) and mode 0600, so that the job-manager API is usable out of the
/// box. Only the path is logged, never the token.
pub fn local_bootstrap_token(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use std::{io::Read, io::Write, os::unix::fs::OpenOptionsExt};
    let path = dir.join("bootstrap-token");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join("bootstrap-token.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(token.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "Created the job-manager bootstrap owner token; send it as `Authorization: Bearer $(cat FILE)`.");
    Ok(path)
}

/// Runs the selected components until `lifecycle` asks them to stop; the first that fails
/// stops the others.
pub async fn run(args: Args, lifecycle: Lifecycle) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    let mut services: Vec<(&str, BoxFuture<'static, anyhow::Result<()>>)> = Vec::new();
    if args.wants(Target::MetricsGateway) {
        let a = metrics_gateway::Args::for_suite(&dir.join("metrics-gateway"));
        let lc = lifecycle.clone();
        services.push((
            "metrics-gateway",
            Box::pin(async move { Ok(metrics_gateway::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::DingtalkAlert) {
        let a = dingtalk_alert::Args::for_suite(&dir.join("dingtalk-alert"));
        let lc = lifecycle.clone();
        services.push((
            "dingtalk-alert",
            Box::pin(async move { Ok(dingtalk_alert::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::LogShipper) {
        let a = log_shipper::Args::for_suite(&dir.join("log-shipper"));
        let lc = lifecycle.clone();
        services.push((
            "log-shipper",
            Box::pin(async move { Ok(log_shipper::run(a, lc).await?) }),
        ));
    }
    if args.wants(Target::JobManager) {
        let mut a = job_manager::Args::for_suite(&dir.join("job-manager"));
        if std::env::var_os(job_manager::BOOTSTRAP_ENV).is_none()
            && a.bootstrap_token_file.is_none()
        {
            a.bootstrap_token_file = Some(local_bootstrap_token(&dir.join("job-manager"))?);
        }
        let lc = lifecycle.clone();
        services.push((
            "job-manager",
            Box::pin(async move { Ok(job_manager::run(a, lc).await?) }),
        ));
    }
    let names: Vec<&str> = services.iter().map(|(n, _)| *n).collect();
    tracing::info!(components = ?names, data_dir = %dir.display(), "Starting the suite.");
    let mut running: futures::stream::FuturesUnordered<_> = services
        .into_iter()
        .map(|(name, fut)| async move { (name, fut.await) })
        .collect();
    use futures::StreamExt;
    while let Some((name, result)) = running.next().await {
        if let Err(e) = result {
            lifecycle.request_shutdown();
            // Let the others drain (bounded by the caller's grace period).
            while running.next().await.is_some() {}
            return Err(e.context(format!("{name} failed")));
        }
    }
    Ok(())
}
