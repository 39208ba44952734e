//! Who talks to whom: the components' addresses, the URLs each is given, their flags, and
//! the start-up summary that says what is wired and what is missing.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use crate::{
    config::{self, Generated, SuiteFile, Wiring},
    Args, Target,
};

/// The address to connect to for a listen address: the loopback of the same family for an
/// unspecified one (`0.0.0.0:9091` → `127.0.0.1:9091`).
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Everything decided at start: addresses, directories, the suite file.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The data directory, absolute.
    pub data_dir: PathBuf,
    /// `--config.file`, absolute.
    pub config_file: Option<PathBuf>,
    /// The suite file read at start (restart-only settings come from here).
    pub file: SuiteFile,
    /// What the last generation decided.
    pub generated: Generated,
    /// `FLINK_HOME` (absolute).
    pub flink_home: Option<PathBuf>,
    /// Listen addresses.
    pub job_manager_listen: SocketAddr,
    pub metrics_gateway_listen: SocketAddr,
    pub dingtalk_alert_listen: SocketAddr,
    pub log_shipper_listen: SocketAddr,
    runs_gateway: bool,
    runs_dingtalk: bool,
    grace_period: std::time::Duration,
    log_level: String,
}

impl Plan {
    /// Resolves the data directory (and the other paths) to absolute ones and reads the
    /// suite file.
    pub fn new(args: &Args) -> anyhow::Result<Self> {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", p.display()))
        };
        let data_dir = abs(&args.data_dir)?;
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
        let config_file = args.config_file.as_deref().map(abs).transpose()?;
        let file = match &config_file {
            Some(p) => SuiteFile::load(p)?,
            None => SuiteFile::default(),
        };
        let listen = |flag: Option<SocketAddr>, info: &common::ServiceInfo| {
            flag.unwrap_or_else(|| info.default_listen_addr())
        };
        let mut plan = Self {
            config_file,
            file,
            generated: Generated {
                metrics_gateway_url: None,
                bundled_rules: false,
                dingtalk_targets: false,
            },
            flink_home: args.flink_home.as_deref().map(abs).transpose()?,
            job_manager_listen: listen(args.job_manager_listen, &job_manager::INFO),
            metrics_gateway_listen: listen(args.metrics_gateway_listen, &metrics_gateway::INFO),
            dingtalk_alert_listen: listen(args.dingtalk_alert_listen, &dingtalk_alert::INFO),
            log_shipper_listen: listen(args.log_shipper_listen, &log_shipper::INFO),
            runs_gateway: args.wants(Target::MetricsGateway),
            runs_dingtalk: args.wants(Target::DingtalkAlert),
            grace_period: args.grace_period,
            log_level: args.log_level.clone(),
            data_dir,
        };
        plan.generated = config::generate(&plan.file, &plan.wiring(), &plan.generated_dir())?;
        Ok(plan)
    }

    /// Where the components' config files are generated.
    pub fn generated_dir(&self) -> PathBuf {
        self.data_dir.join("flink-suite")
    }

    /// The gateway's base URL as the components reach it.
    pub fn metrics_gateway_url(&self) -> String {
        format!("http://{}", connect_addr(self.metrics_gateway_listen))
    }

    /// dingtalk-alert's routing webhook as the gateway reaches it.
    pub fn dingtalk_webhook_url(&self) -> String {
        format!(
            "http://{}/dingtalk/send",
            connect_addr(self.dingtalk_alert_listen)
        )
    }

    fn wiring(&self) -> Wiring {
        Wiring {
            metrics_gateway_url: self.runs_gateway.then(|| self.metrics_gateway_url()),
            bundled_rules: self.generated_dir().join("rules/flink.yml"),
            local_cluster_logs: self.data_dir.join("job-manager/logs"),
            config_dir: self
                .config_file
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf),
        }
    }

    /// Re-reads `suite.yml` (if any) and rewrites the components' files. Settings only the
    /// suite reads (`flink-suite:`) need a restart; a change of them is logged.
    pub fn regenerate(&self) -> anyhow::Result<()> {
        let file = match &self.config_file {
            Some(p) => SuiteFile::load(p)?,
            None => SuiteFile::default(),
        };
        if file.suite != self.file.suite {
            tracing::warn!(service = "flink-suite",
                "The `flink-suite` section changed; it takes effect at the next start (the component sections are reloaded now).");
        }
        config::generate(&file, &self.wiring(), &self.generated_dir())?;
        Ok(())
    }

    fn common(&self, listen: SocketAddr, name: &str) -> common::CommonArgs {
        common::CommonArgs {
            listen_address: Some(listen),
            config_file: Some(config::generated_file(&self.generated_dir(), name)),
            log_level: self.log_level.clone(),
            grace_period: self.grace_period,
            ..Default::default()
        }
    }

    /// metrics-gateway: persistence under the data dir, the bundled (or configured) rules,
    /// alerts to dingtalk-alert or Alertmanager.
    pub fn metrics_gateway_args(&self) -> metrics_gateway::Args {
        let mut a = metrics_gateway::Args::for_suite(&self.data_dir.join("metrics-gateway"));
        a.common = self.common(self.metrics_gateway_listen, "metrics-gateway");
        a.rules.evaluation_interval = self.file.suite.rule_evaluation_interval;
        if !self.file.suite.alertmanager_urls.is_empty() {
            a.rules.alertmanager_urls = self.file.suite.alertmanager_urls.clone();
        } else if self.runs_dingtalk {
            a.rules.webhook_url = Some(self.dingtalk_webhook_url());
        }
        a
    }

    /// dingtalk-alert: the robot from `DINGTALK_*`, the dry-run sink under the data dir.
    pub fn dingtalk_alert_args(&self) -> dingtalk_alert::Args {
        let mut a = dingtalk_alert::Args::for_suite(&self.data_dir.join("dingtalk-alert"));
        a.common = self.common(self.dingtalk_alert_listen, "dingtalk-alert");
        a
    }

    /// log-shipper: the local clusters' logs (from its generated config) into
    /// `{data-dir}/log-shipper/output` as JSON events.
    pub fn log_shipper_args(&self) -> log_shipper::Args {
        let mut a = log_shipper::Args::for_suite(&self.data_dir.join("log-shipper"));
        a.common = self.common(self.log_shipper_listen, "log-shipper");
        a.output_format = log_shipper::sinks::dir::Format::Json;
        a
    }

    /// job-manager: store under the data dir, `FLINK_HOME`.
    pub fn job_manager_args(&self) -> job_manager::Args {
        let mut a = job_manager::Args::for_suite(&self.data_dir.join("job-manager"));
        a.common = self.common(self.job_manager_listen, "job-manager");
        a.flink_home = self.flink_home.clone();
        a
    }

    /// Logs what is wired, what is missing and where things are.
    pub fn log_summary(&self) {
        let d = &self.data_dir;
        tracing::info!(
            data_dir = %d.display(),
            job_manager = %self.job_manager_listen,
            metrics_gateway = %self.metrics_gateway_listen,
            dingtalk_alert = %self.dingtalk_alert_listen,
            log_shipper = %self.log_shipper_listen,
            config_file = %self.config_file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (embedded defaults)".into()),
            "flink-suite: data, addresses and config."
        );
        tracing::info!(
            token_file = %d.join("job-manager/bootstrap-token").display(),
            "job-manager API: send `Authorization: Bearer $(cat TOKEN_FILE)` (unless JOB_MANAGER_BOOTSTRAP_TOKEN is set)."
        );
        match &self.flink_home {
            Some(h) if h.join("bin/jobmanager.sh").is_file() => {
                tracing::info!(flink_home = %h.display(), "Flink for the local target.")
            }
            Some(h) => tracing::warn!(flink_home = %h.display(),
                "MISSING: FLINK_HOME has no bin/jobmanager.sh; deployments on the `local` target will fail. `eval \"$(scripts/flink/fetch.sh)\"` assembles a Flink."),
            None => tracing::warn!(
                "MISSING: FLINK_HOME is not set (--flink-home or FLINK_HOME); deployments on the `local` target will fail. `eval \"$(scripts/flink/fetch.sh)\"` assembles a Flink."),
        }
        match &self.generated.metrics_gateway_url {
            Some(url) => tracing::info!(url = %url, grouping_key = "namespace, deploymentId, jobId",
                "WIRED: Flink's PushGateway reporter → metrics-gateway; job-manager deletes a stopped deployment's groups there."),
            None => tracing::warn!("NOT WIRED: Flink's metrics (metrics-gateway does not run here and job-manager's metrics_gateway.url is unset)."),
        }
        if self.runs_gateway {
            if self.generated.bundled_rules {
                tracing::info!(file = %self.generated_dir().join("rules/flink.yml").display(),
                    interval = ?self.file.suite.rule_evaluation_interval,
                    "WIRED: the gateway evaluates the bundled Flink rules (FlinkJobRestarting, FlinkCheckpointsFailing, FlinkTaskBackpressured, FlinkJobNotRunning, FlinkMetricsNotPushed, FlinkHeapAlmostFull, JobManagerDeploymentFailed).");
            } else {
                tracing::info!(interval = ?self.file.suite.rule_evaluation_interval,
                    "WIRED: the gateway evaluates the rule_files of the metrics-gateway section.");
            }
            if !self.file.suite.alertmanager_urls.is_empty() {
                tracing::info!(alertmanagers = ?self.file.suite.alertmanager_urls, "WIRED: alerts → Alertmanager.");
            } else if self.runs_dingtalk {
                tracing::info!(url = %self.dingtalk_webhook_url(), "WIRED: alerts → dingtalk-alert.");
            } else {
                tracing::warn!("NOT WIRED: alerts (no dingtalk-alert here and no flink-suite.alertmanager_urls).");
            }
        }
        if self.runs_dingtalk {
            let token = std::env::var_os("DINGTALK_ACCESS_TOKEN").is_some()
                || std::env::var_os("DINGTALK_ACCESS_TOKEN_FILE").is_some();
            if token || self.generated.dingtalk_targets {
                let url = std::env::var("DINGTALK_URL")
                    .unwrap_or_else(|_| dingtalk_alert::config::DEFAULT_BASE_URL.to_string());
                tracing::info!(
                    token = if token { "DINGTALK_ACCESS_TOKEN(_FILE)" } else { "targets of the dingtalk-alert section" },
                    signed = std::env::var_os("DINGTALK_SECRET").is_some() || std::env::var_os("DINGTALK_SECRET_FILE").is_some(),
                    url = %url,
                    "WIRED: dingtalk-alert → DingTalk robot."
                );
            } else {
                tracing::warn!(messages = %dingtalk_alert::dry_run::messages_file(&d.join("dingtalk-alert")).display(),
                    "MISSING: no DingTalk robot token (set DINGTALK_ACCESS_TOKEN and DINGTALK_SECRET, or targets in the dingtalk-alert section): dry run, each message is logged and written to the file instead.");
            }
        }
        tracing::info!(
            from = %d.join("job-manager/logs").display(),
            to = %d.join("log-shipper/output").display(),
            "WIRED: log-shipper ships the local clusters' logs as JSON events under logs/{{namespace}}/{{deploymentId}}/{{jobId}}/{{pod}}/{{file}}."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path, suite_yml: &str, extra: &[&str]) -> Plan {
        use clap::Parser;
        let f = dir.join("suite.yml");
        std::fs::write(&f, suite_yml).unwrap();
        let mut argv = vec![
            "flink-suite".to_string(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--config.file".into(),
            f.display().to_string(),
            "--flink-home".into(),
            "/opt/flink".into(),
            "--metrics-gateway.listen-address".into(),
            "0.0.0.0:19091".into(),
            "--dingtalk-alert.listen-address".into(),
            "127.0.0.2:18060".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        Plan::new(&Args::parse_from(argv)).unwrap()
    }

    #[test]
    fn flags_and_the_suite_section_reach_the_components() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            dir.path(),
            "flink-suite: {rule_evaluation_interval: 5s}\n",
            &[],
        );
        let mg = p.metrics_gateway_args();
        assert_eq!(
            mg.common.listen_address,
            Some("0.0.0.0:19091".parse().unwrap())
        );
        assert_eq!(
            mg.rules.evaluation_interval,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            mg.rules.webhook_url.as_deref(),
            Some("http://127.0.0.2:18060/dingtalk/send")
        );
        assert!(mg.rules.alertmanager_urls.is_empty());
        let jm = p.job_manager_args();
        assert_eq!(jm.flink_home.as_deref(), Some(Path::new("/opt/flink")));
        assert_eq!(jm.data_dir, dir.path().join("data/job-manager"));
        let jm_cfg: job_manager::Config =
            common::config::load(jm.common.config_file.as_deref()).unwrap();
        assert_eq!(
            jm_cfg.metrics_gateway.url.as_deref(),
            Some("http://127.0.0.1:19091"),
            "Flink's reporter goes to the gateway's loopback address"
        );
        assert_eq!(
            p.dingtalk_alert_args().dry_run_dir.as_deref(),
            Some(dir.path().join("data/dingtalk-alert").as_path())
        );
        assert_eq!(
            p.log_shipper_args().output_format,
            log_shipper::sinks::dir::Format::Json
        );
    }

    #[test]
    fn alertmanager_urls_take_the_alerts_instead_of_dingtalk() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            dir.path(),
            "flink-suite: {alertmanager_urls: [\"http://am:9093\"]}\n",
            &[],
        );
        let mg = p.metrics_gateway_args();
        assert_eq!(
            mg.rules.alertmanager_urls,
            vec!["http://am:9093".to_string()]
        );
        assert_eq!(mg.rules.webhook_url, None);
    }

    #[test]
    fn without_the_gateway_job_manager_gets_no_reporter_url() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), "", &["--target", "job-manager"]);
        let jm_cfg: job_manager::Config =
            common::config::load(p.job_manager_args().common.config_file.as_deref()).unwrap();
        assert_eq!(jm_cfg.metrics_gateway.url, None);
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            connect_addr("0.0.0.0:9091".parse().unwrap()),
            "127.0.0.1:9091".parse().unwrap()
        );
        assert_eq!(
            connect_addr("[::]:8060".parse().unwrap()),
            "[::1]:8060".parse().unwrap()
        );
        assert_eq!(
            connect_addr("10.0.0.7:8080".parse().unwrap()),
            "10.0.0.7:8080".parse().unwrap()
        );
    }
}
