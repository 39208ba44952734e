//! Deployment targets: where a job's Flink cluster comes from.
//!
//! - `session`: an existing cluster; the job is submitted to its REST URL.
//! - `local`: one standalone Flink cluster per job, started from `FLINK_HOME` with ports
//!   allocated on 127.0.0.1, its config rendered into `<data-dir>/local/<job>/conf`, and its
//!   logs in `<data-dir>/logs/<namespace>/<deploymentId>/<jobId>/` (for log-shipper to tail).
//!   The daemons outlive a crash of the manager; the cluster's address is stored with the
//!   job, so a restarted manager finds it again.
//!
//! The `local` target runs the user's JAR as the manager's own OS user: it is for trusted
//! single-team machines. What it does keep apart: Flink's scripts start with a cleared
//! environment plus [`INHERITED_ENV`] (the manager's tokens and secrets stay behind), user
//! `envVars` that change the loader, the shell start-up, the JVM or the variables the manager
//! owns are refused ([`refused_env_var`]), configuration keys must match `[A-Za-z0-9_.-]+`
//! ([`check_config_key`]) and `config.yaml` is written by a YAML serializer.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::model::{ClusterRef, EnvVar};

/// Why a local cluster could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the local deployment target needs FLINK_HOME (set --flink-home or the FLINK_HOME environment variable)")]
    NoFlinkHome,
    #[error("FLINK_HOME {0} has no bin/jobmanager.sh")]
    BadFlinkHome(PathBuf),
    #[error("cannot prepare local cluster directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot allocate a port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("spec.template.spec.kubernetes.pods.envVars: {name} is not allowed on the local target: {reason}")]
    RefusedEnv { name: String, reason: &'static str },
    #[error("spec.template.spec.flinkConfiguration key {0:?} is invalid: keys are letters, digits, '_', '.' and '-'")]
    BadConfigKey(String),
    #[error("cannot write the Flink configuration: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Variables of the manager's own environment that Flink's scripts get (besides `LC_*` and
/// the `FLINK_*` the manager sets); everything else stays behind.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "JAVA_HOME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
];

/// Whether the manager passes its own variable `name` on to Flink's scripts.
fn inherited(name: &str) -> bool {
    INHERITED_ENV.contains(&name) || name.starts_with("LC_")
}

/// Why a user environment variable (`kubernetes.pods.envVars`) may not be set on the local
/// target, if it may not. Refused: what changes the dynamic loader (`LD_*`, `DYLD_*`), the
/// shell's start-up or parsing (`BASH_ENV`, `ENV`, `BASH_FUNC_*`, `SHELLOPTS`, …), which JVM
/// runs and what it loads (`JAVA_TOOL_OPTIONS`, `_JAVA_OPTIONS`, `JDK_JAVA_OPTIONS`,
/// `JAVA_HOME`, `CLASSPATH`), `PATH`, and every `FLINK_*` (the manager owns Flink's script
/// variables: `FLINK_CONF_DIR`, `FLINK_LOG_DIR`, …; Flink options go in `flinkConfiguration`).
pub fn refused_env_var(name: &str) -> Option<&'static str> {
    const SHELL: &[&str] = &[
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "PROMPT_COMMAND",
        "POSIXLY_CORRECT",
    ];
    const JVM: &[&str] = &[
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "JAVA_HOME",
        "CLASSPATH",
    ];
    if name.starts_with("LD_") || name.starts_with("DYLD_") {
        Some("it changes what the dynamic loader loads into every process")
    } else if SHELL.contains(&name) || name.starts_with("BASH_FUNC_") || name.starts_with("BASH_") {
        Some("it runs or changes shell code in Flink's start scripts")
    } else if JVM.contains(&name) {
        Some("it changes which JVM runs or what it loads; set JVM options in flinkConfiguration (env.java.opts.all)")
    } else if name == "PATH" {
        Some("the manager owns PATH")
    } else if name.starts_with("FLINK_") {
        Some("the manager owns Flink's script variables; set Flink options in flinkConfiguration")
    } else {
        None
    }
}

/// Checks a Flink configuration key: `[A-Za-z0-9_.-]+`.
pub fn check_config_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadConfigKey(key.to_string()))
    }
}

/// The JVM option that makes log4j2 read its configuration file as XML whatever its name.
pub const XML_LOG4J_FACTORY: &str =
    "-Dlog4j2.configurationFactory=org.apache.logging.log4j.core.config.xml.XmlConfigurationFactory";

/// What a local cluster is started with.
pub struct LocalSpec<'a> {
    pub namespace: &'a str,
    pub deployment_id: &'a str,
    pub job_id: &'a str,
    /// Rendered user configuration (overrides the defaults, not the ports and addresses).
    pub flink_configuration: &'a BTreeMap<String, String>,
    pub parallelism: u32,
    pub jobmanager_memory: Option<&'a str>,
    pub taskmanager_memory: Option<&'a str>,
    pub log4j: &'a str,
    pub env: &'a [EnvVar],
    /// The savepoint and checkpoint directories when the user set none.
    pub savepoint_dir: &'a str,
    pub checkpoint_dir: &'a str,
    /// PushGateway-compatible URL for Flink's metric reporter, if any.
    pub metrics_gateway: Option<&'a str>,
}

/// Starts and stops standalone clusters.
#[derive(Debug, Clone)]
pub struct LocalClusters {
    flink_home: Option<PathBuf>,
    data_dir: PathBuf,
    gateway: GatewayUrl,
}

/// The metrics-gateway URL in effect (it may change at reload), for deleting a stopped
/// cluster's metric groups once its processes are gone.
#[derive(Clone, Default)]
struct GatewayUrl(Option<Arc<dyn Fn() -> Option<String> + Send + Sync>>);

impl std::fmt::Debug for GatewayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "GatewayUrl(set)"
        } else {
            "GatewayUrl(none)"
        })
    }
}

/// Deletes the metric groups of `deployment` from the gateway at `url` (`DELETE
/// /api/v1/groups?match[]={deploymentId="…"}`).
async fn delete_groups(url: &str, deployment: &str) {
    let selector = format!(
        "{{{}=\"{}\"}}",
        common::labels::fields::DEPLOYMENT_ID,
        deployment
    );
    let u = format!("{}/api/v1/groups", url.trim_end_matches('/'));
    let result = reqwest::Client::new()
        .delete(&u)
        .query(&[("match[]", selector.as_str())])
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => {
            tracing::info!(deployment, "Local cluster stopped; deleted its metric groups (pushed until its reporters stopped).")
        }
        Ok(r) => {
            tracing::warn!(deployment, status = %r.status(), "metrics-gateway refused to delete metric groups.")
        }
        Err(error) => {
            tracing::warn!(deployment, error = %error.without_url(), "Cannot reach the metrics-gateway to delete metric groups.")
        }
    }
}

/// Keys the manager owns on a local cluster: user values for these are ignored.
const OWNED_KEYS: &[&str] = &[
    "jobmanager.rpc.address",
    "jobmanager.rpc.port",
    "jobmanager.bind-host",
    "taskmanager.bind-host",
    "taskmanager.host",
    "taskmanager.rpc.port",
    "taskmanager.data.port",
    "blob.server.port",
    "rest.address",
    "rest.bind-address",
    "rest.port",
    "rest.bind-port",
    "env.pid.dir",
];

impl LocalClusters {
    pub fn new(flink_home: Option<PathBuf>, data_dir: &Path) -> Self {
        Self {
            flink_home,
            data_dir: data_dir.to_path_buf(),
            gateway: GatewayUrl::default(),
        }
    }

    /// Once a stopped cluster's processes are gone, its deployment's metric groups are
    /// deleted from the gateway `url()` names (if any): its reporters push every interval
    /// until they stop, so groups deleted when the deployment stopped can come back.
    pub fn with_metrics_gateway(
        mut self,
        url: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.gateway = GatewayUrl(Some(Arc::new(url)));
        self
    }

    /// The FLINK_HOME in use, if any.
    pub fn flink_home(&self) -> Option<&Path> {
        self.flink_home.as_deref()
    }

    /// Default savepoint directory of a deployment on the local target.
    pub fn default_savepoint_dir(&self, namespace: &str, deployment: &str) -> String {
        format!(
            "file://{}",
            self.data_dir
                .join("savepoints")
                .join(namespace)
                .join(deployment)
                .display()
        )
    }

    /// Default checkpoint directory of a deployment on the local target.
    pub fn default_checkpoint_dir(&self, namespace: &str, deployment: &str) -> String {
        format!(
            "file://{}",
            self.data_dir
                .join("checkpoints")
                .join(namespace)
                .join(deployment)
                .display()
        )
    }

    fn home(&self) -> Result<&Path, Error> {
        let home = self.flink_home.as_deref().ok_or(Error::NoFlinkHome)?;
        if !home.join("bin/jobmanager.sh").is_file() {
            return Err(Error::BadFlinkHome(home.to_path_buf()));
        }
        Ok(home)
    }

    /// Writes the cluster's config and starts its JobManager and TaskManager in the
    /// background. Returns where it will answer; readiness is polled by the caller.
    pub fn start(&self, spec: &LocalSpec<'_>) -> Result<ClusterRef, Error> {
        // Validated by the API; checked again for deployments stored before it was.
        for e in spec.env {
            if let Some(reason) = refused_env_var(&e.name) {
                return Err(Error::RefusedEnv {
                    name: e.name.clone(),
                    reason,
                });
            }
        }
        for k in spec.flink_configuration.keys() {
            check_config_key(k)?;
        }
        let home = self.home()?.to_path_buf();
        let dir = self.data_dir.join("local").join(spec.job_id);
        let log_dir = self
            .data_dir
            .join("logs")
            .join(spec.namespace)
            .join(spec.deployment_id)
            .join(spec.job_id);
        let conf = dir.join("conf");
        for d in [
            &conf,
            &dir.join("pid"),
            &dir.join("tmp"),
            &dir.join("upload"),
            &log_dir,
        ] {
            std::fs::create_dir_all(d).map_err(|source| Error::Io {
                path: d.clone(),
                source,
            })?;
        }
        let ports = allocate_ports(5)?;
        let mut cfg: BTreeMap<String, String> = BTreeMap::new();
        if let Some(opts) = shipped_java_opts(&home) {
            cfg.insert("env.java.opts.all".into(), opts);
        }
        let p = spec.parallelism.max(1).to_string();
        for (k, v) in [
            (
                "jobmanager.memory.process.size",
                spec.jobmanager_memory.unwrap_or("1024m"),
            ),
            (
                "taskmanager.memory.process.size",
                spec.taskmanager_memory.unwrap_or("1536m"),
            ),
            ("taskmanager.numberOfTaskSlots", p.as_str()),
            ("parallelism.default", p.as_str()),
            ("execution.checkpointing.interval", "10s"),
            ("execution.checkpointing.savepoint-dir", spec.savepoint_dir),
            ("state.savepoints.dir", spec.savepoint_dir),
            ("execution.checkpointing.dir", spec.checkpoint_dir),
            ("state.checkpoints.dir", spec.checkpoint_dir),
        ] {
            cfg.insert(k.into(), v.into());
        }
        cfg.insert("io.tmp.dirs".into(), dir.join("tmp").display().to_string());
        cfg.insert(
            "web.upload.dir".into(),
            dir.join("upload").display().to_string(),
        );
        if let Some(url) = spec.metrics_gateway {
            let r = "metrics.reporter.jobmanager_suite";
            cfg.insert(
                format!("{r}.factory.class"),
                "org.apache.flink.metrics.prometheus.PrometheusPushGatewayReporterFactory".into(),
            );
            cfg.insert(format!("{r}.hostUrl"), url.into());
            cfg.insert(
                format!("{r}.jobName"),
                format!("flink-{}", spec.deployment_id),
            );
            cfg.insert(format!("{r}.randomJobNameSuffix"), "true".into());
            cfg.insert(format!("{r}.deleteOnShutdown"), "true".into());
            cfg.insert(format!("{r}.interval"), "10 SECONDS".into());
            cfg.insert(
                format!("{r}.groupingKey"),
                format!(
                    "{}={};{}={};{}={}",
                    common::labels::fields::NAMESPACE,
                    spec.namespace,
                    common::labels::fields::DEPLOYMENT_ID,
                    spec.deployment_id,
                    common::labels::fields::JOB_ID,
                    spec.job_id
                ),
            );
        }
        for (k, v) in spec.flink_configuration {
            if !OWNED_KEYS.contains(&k.as_str()) {
                cfg.insert(k.clone(), v.clone());
            }
        }
        let [jm_rpc, tm_rpc, tm_data, blob, rest] =
            [ports[0], ports[1], ports[2], ports[3], ports[4]];
        for (k, v) in [
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("jobmanager.rpc.port", jm_rpc.to_string()),
            ("jobmanager.bind-host", "127.0.0.1".into()),
            ("taskmanager.bind-host", "127.0.0.1".into()),
            ("taskmanager.host", "127.0.0.1".into()),
            ("taskmanager.rpc.port", tm_rpc.to_string()),
            ("taskmanager.data.port", tm_data.to_string()),
            ("blob.server.port", blob.to_string()),
            ("rest.address", "127.0.0.1".into()),
            ("rest.bind-address", "127.0.0.1".into()),
            ("rest.port", rest.to_string()),
            ("rest.bind-port", rest.to_string()),
            ("env.pid.dir", dir.join("pid").display().to_string()),
        ] {
            cfg.insert(k.into(), v);
        }
        if crate::template::is_xml(spec.log4j) {
            // Flink's scripts point log4j2 at log4j.properties; an XML configuration (VVP's
            // template format) is written there as it is and read with the XML factory.
            let opts = cfg.entry("env.java.opts.all".into()).or_default();
            if !opts.is_empty() {
                opts.push(' ');
            }
            opts.push_str(XML_LOG4J_FACTORY);
        }
        let yaml = render_yaml(&cfg)?;
        write(&conf.join("config.yaml"), yaml.as_bytes())?;
        write(&conf.join("log4j.properties"), spec.log4j.as_bytes())?;
        write(
            &conf.join("log4j-console.properties"),
            spec.log4j.as_bytes(),
        )?;
        let cluster = ClusterRef {
            rest_url: format!("http://127.0.0.1:{rest}"),
            local_dir: Some(dir.display().to_string()),
            log_dir: Some(log_dir.display().to_string()),
            kubernetes: None,
        };
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let ident = spec.job_id.to_string();
        tokio::spawn(async move {
            for script in ["jobmanager.sh", "taskmanager.sh"] {
                run_script(&home, &dir, &log_dir, &ident, &env, script, "start").await;
            }
        });
        Ok(cluster)
    }

    /// After a restart of the manager: starts whichever daemon of `cluster` is not running
    /// (a start interrupted by a crash leaves e.g. the JobManager up without a TaskManager).
    pub fn resume(&self, cluster: &ClusterRef, env: &[EnvVar]) {
        let (Some(dir), Ok(home)) = (cluster.local_dir.clone(), self.home()) else {
            return;
        };
        let home = home.to_path_buf();
        let dir = PathBuf::from(dir);
        let log_dir = cluster
            .log_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("log"));
        let ident = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let env: Vec<(String, String)> = env
            .iter()
            .filter(|e| refused_env_var(&e.name).is_none())
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        tokio::spawn(async move {
            // A start script of the previous process may still be launching its daemon; its
            // pid file appears within a few seconds.
            tokio::time::sleep(RESUME_GRACE).await;
            for (script, daemon) in [
                ("jobmanager.sh", "standalonesession"),
                ("taskmanager.sh", "taskexecutor"),
            ] {
                if !daemon_alive(&dir.join("pid"), &ident, daemon) {
                    tracing::info!(cluster = %dir.display(), daemon, "Restarting a local Flink daemon that is not running.");
                    run_script(&home, &dir, &log_dir, &ident, &env, script, "start").await;
                }
            }
        });
    }

    /// Whether the JobManager process of a local cluster is alive (false after a reboot or
    /// when someone killed it).
    pub fn is_running(&self, cluster: &ClusterRef) -> bool {
        let Some(dir) = cluster.local_dir.as_deref().map(Path::new) else {
            return true;
        };
        let ident = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        daemon_alive(&dir.join("pid"), &ident, "standalonesession")
    }

    /// Stops a local cluster (in the background; `flink-daemon.sh` escalates to SIGKILL).
    pub fn stop(&self, cluster: &ClusterRef) {
        let (Some(dir), Ok(home)) = (cluster.local_dir.clone(), self.home()) else {
            return;
        };
        let home = home.to_path_buf();
        let dir = PathBuf::from(dir);
        let log_dir = cluster
            .log_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("log"));
        let ident = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let gateway = self.gateway.0.as_ref().and_then(|f| f());
        // `{data-dir}/logs/{namespace}/{deploymentId}/{jobId}`.
        let deployment = log_dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        // The daemons' pids, read before the stop scripts remove them from the pid files:
        // their reporters may push until the processes have exited.
        let pids: Vec<String> = ["standalonesession", "taskexecutor"]
            .iter()
            .flat_map(|daemon| daemon_pids(&dir.join("pid"), &ident, daemon))
            .collect();
        tokio::spawn(async move {
            for script in ["taskmanager.sh", "jobmanager.sh"] {
                run_script(&home, &dir, &log_dir, &ident, &[], script, "stop").await;
            }
            let deadline = tokio::time::Instant::now() + STOP_EXIT_WAIT;
            while pids.iter().any(|pid| Path::new("/proc").join(pid).exists())
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            if let (Some(url), Some(deployment)) = (gateway, deployment) {
                delete_groups(&url, &deployment).await;
            }
        });
    }
}

/// How long a resumed cluster's start scripts get before missing daemons are started.
const RESUME_GRACE: std::time::Duration = std::time::Duration::from_secs(8);

/// How long a stopped cluster's processes get to exit before its metric groups are deleted
/// anyway (`flink-daemon.sh` escalates to SIGKILL well within this).
const STOP_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The pids a daemon's pid file names (empty when there is none).
fn daemon_pids(pid_dir: &Path, ident: &str, daemon: &str) -> Vec<String> {
    let file = pid_dir.join(format!("flink-{ident}-{daemon}.pid"));
    std::fs::read_to_string(file)
        .map(|t| {
            t.split_whitespace()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the daemon's pid file names a live process.
fn daemon_alive(pid_dir: &Path, ident: &str, daemon: &str) -> bool {
    let file = pid_dir.join(format!("flink-{ident}-{daemon}.pid"));
    std::fs::read_to_string(file)
        .map(|t| {
            t.split_whitespace()
                .any(|pid| Path::new("/proc").join(pid).exists())
        })
        .unwrap_or(false)
}

async fn run_script(
    home: &Path,
    dir: &Path,
    log_dir: &Path,
    ident: &str,
    env: &[(String, String)],
    script: &str,
    action: &str,
) {
    let mut cmd = tokio::process::Command::new("bash");
    // A cleared environment: the manager's own variables (its bootstrap token, cloud and
    // DingTalk credentials) must not reach the job. The user's variables come next, then the
    // ones the manager owns, so that nothing the user sets can replace those.
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if k.to_str().is_some_and(inherited) {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        if refused_env_var(k).is_none() {
            cmd.env(k, v);
        }
    }
    cmd.arg(home.join("bin").join(script))
        .arg(action)
        .env("FLINK_HOME", home)
        .env("FLINK_CONF_DIR", dir.join("conf"))
        .env("FLINK_LOG_DIR", log_dir)
        .env("FLINK_PID_DIR", dir.join("pid"))
        .env("FLINK_IDENT_STRING", ident)
        .stdin(std::process::Stdio::null());
    // Output goes to a file, not a pipe: the script must survive the manager dying (a pipe
    // whose reader is gone would kill it with SIGPIPE).
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("scripts.log"));
    match out.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((o, e)) => {
            cmd.stdout(o).stderr(e);
        }
        Err(_) => {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
    }
    match cmd.status().await {
        Ok(status) if status.success() => {
            tracing::debug!(script, action, cluster = %dir.display(), "Flink script done.");
        }
        Ok(status) => tracing::warn!(
            script,
            action,
            cluster = %dir.display(),
            %status,
            "Flink script failed; see scripts.log in the cluster directory."
        ),
        Err(error) => tracing::warn!(script, action, %error, "Cannot run Flink script."),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn allocate_ports(n: usize) -> Result<Vec<u16>, Error> {
    // Hold every listener until all are bound so the ports differ.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::Port)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(Error::Port))
        .collect()
}

/// `env.java.opts.all` from the distribution's own config (the JDK 17 `--add-opens` list).
fn shipped_java_opts(home: &Path) -> Option<String> {
    let text = std::fs::read_to_string(home.join("conf/config.yaml")).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let nested = v
        .get("env")
        .and_then(|e| e.get("java"))
        .and_then(|j| j.get("opts"))
        .and_then(|o| o.get("all"))
        .and_then(|a| a.as_str());
    nested
        .or_else(|| v.get("env.java.opts.all").and_then(|a| a.as_str()))
        .map(str::to_string)
}

/// Flat `key: value` YAML written by the serializer, so that no key or value can break out
/// of its line (Flink parses standard YAML).
fn render_yaml(cfg: &BTreeMap<String, String>) -> Result<String, Error> {
    Ok(format!(
        "# Rendered by job-manager; do not edit.\n{}",
        serde_yaml::to_string(cfg)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_yaml_is_quoted() {
        let p = allocate_ports(5).unwrap();
        let mut d = p.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 5);
        let y = render_yaml(&BTreeMap::from([(
            "a.b".to_string(),
            "x: \"y\"".to_string(),
        )]))
        .unwrap();
        let parsed: BTreeMap<String, String> = serde_yaml::from_str(&y).unwrap();
        assert_eq!(parsed["a.b"], "x: \"y\"");
        // Whatever a key or value holds, it stays one entry.
        let tricky = BTreeMap::from([
            (
                "k\nrest.port".to_string(),
                "1\nrest.bind-address: 0.0.0.0".to_string(),
            ),
            ("n".to_string(), "10".to_string()),
            ("b".to_string(), "true".to_string()),
        ]);
        let parsed: BTreeMap<String, String> =
            serde_yaml::from_str(&render_yaml(&tricky).unwrap()).unwrap();
        assert_eq!(parsed, tricky);
    }

    #[tokio::test]
    async fn local_cluster_config_is_rendered_and_scripts_get_their_environment() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("flink");
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::create_dir_all(home.join("conf")).unwrap();
        std::fs::write(
            home.join("conf/config.yaml"),
            "env:\n  java:\n    opts:\n      all: --add-opens=java.base/java.lang=ALL-UNNAMED\n",
        )
        .unwrap();
        for s in ["jobmanager.sh", "taskmanager.sh"] {
            std::fs::write(
                home.join("bin").join(s),
                format!("env > \"$FLINK_LOG_DIR/env-{s}\"\necho \"{s} $1 conf=$FLINK_CONF_DIR ident=$FLINK_IDENT_STRING team=$TEAM\" >> \"$FLINK_LOG_DIR/calls\"\n"),
            )
            .unwrap();
        }
        let data = dir.path().join("data");
        let l = LocalClusters::new(Some(home), &data);
        let cfg = BTreeMap::from([
            ("rest.port".to_string(), "1".to_string()),
            ("pipeline.name".to_string(), "orders".to_string()),
        ]);
        let env = [EnvVar {
            name: "TEAM".into(),
            value: "payments".into(),
        }];
        let spec = LocalSpec {
            namespace: "default",
            deployment_id: "dep-1",
            job_id: "job-1",
            flink_configuration: &cfg,
            parallelism: 3,
            jobmanager_memory: Some("2g"),
            taskmanager_memory: None,
            log4j: "rootLogger.level = WARN\n",
            env: &env,
            savepoint_dir: "file:///sp",
            checkpoint_dir: "file:///ck",
            metrics_gateway: Some("http://mg:9091"),
        };
        let c = l.start(&spec).unwrap();
        let conf = data.join("local/job-1/conf");
        let y: BTreeMap<String, String> =
            serde_yaml::from_str(&std::fs::read_to_string(conf.join("config.yaml")).unwrap())
                .unwrap();
        let port = c.rest_url.rsplit(':').next().unwrap();
        assert_eq!(y["rest.port"], port, "the manager owns the ports");
        assert_ne!(port, "1");
        assert_eq!(y["pipeline.name"], "orders");
        assert_eq!(y["taskmanager.numberOfTaskSlots"], "3");
        assert_eq!(y["jobmanager.memory.process.size"], "2g");
        assert_eq!(y["execution.checkpointing.savepoint-dir"], "file:///sp");
        assert_eq!(
            y["env.java.opts.all"],
            "--add-opens=java.base/java.lang=ALL-UNNAMED"
        );
        assert_eq!(
            y["metrics.reporter.jobmanager_suite.groupingKey"],
            "namespace=default;deploymentId=dep-1;jobId=job-1"
        );
        assert_eq!(
            std::fs::read_to_string(conf.join("log4j.properties")).unwrap(),
            "rootLogger.level = WARN\n"
        );
        let log_dir = PathBuf::from(c.log_dir.clone().unwrap());
        assert!(log_dir.ends_with("logs/default/dep-1/job-1"));
        let calls = log_dir.join("calls");
        for _ in 0..200 {
            if std::fs::read_to_string(&calls)
                .map(|t| t.lines().count() == 2)
                .unwrap_or(false)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let text = std::fs::read_to_string(&calls).unwrap();
        assert!(text.contains("jobmanager.sh start"), "{text}");
        assert!(text.contains("taskmanager.sh start"), "{text}");
        assert!(text.contains("ident=job-1 team=payments"), "{text}");
        assert!(text.contains(&format!("conf={}", conf.display())), "{text}");
        // The scripts see the allow-list, the manager's FLINK_* and the user's variables;
        // nothing else of this process (cargo's CARGO_* variables, for one).
        let env = std::fs::read_to_string(log_dir.join("env-jobmanager.sh")).unwrap();
        for line in env.lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(
                inherited(name)
                    || name.starts_with("FLINK_")
                    || ["TEAM", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name)
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name} leaked into Flink's environment:\n{env}"
            );
        }
        assert!(env.contains("TEAM=payments"), "{env}");
        if std::env::var_os("PATH").is_some() {
            assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
        }
    }

    #[tokio::test]
    async fn an_xml_log4j_configuration_stays_xml_and_log4j_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("flink");
        std::fs::create_dir_all(home.join("bin")).unwrap();
        for s in ["jobmanager.sh", "taskmanager.sh"] {
            std::fs::write(home.join("bin").join(s), "").unwrap();
        }
        let data = dir.path().join("data");
        let l = LocalClusters::new(Some(home), &data);
        let logging = crate::model::Logging {
            logging_profile: None,
            log4j_loggers: BTreeMap::from([("org.apache.kafka".to_string(), "WARN".to_string())]),
            log4j2_configuration_template: Some(
                "<Configuration><Loggers>{% for l in userConfiguredLoggers %}<Logger name=\"{{ l.name }}\" level=\"{{ l.level }}\"/>{% endfor %}</Loggers></Configuration>".into(),
            ),
        };
        let ctx = crate::template::Context {
            namespace: "default".into(),
            deployment_id: "dep-1".into(),
            job_id: "job-1".into(),
            deployment_name: "orders".into(),
        };
        let xml = crate::template::render_log4j(Some(&logging), &ctx).unwrap();
        let cfg = BTreeMap::from([("env.java.opts.all".to_string(), "-Dx=1".to_string())]);
        let spec = LocalSpec {
            namespace: "default",
            deployment_id: "dep-1",
            job_id: "job-1",
            flink_configuration: &cfg,
            parallelism: 1,
            jobmanager_memory: None,
            taskmanager_memory: None,
            log4j: &xml,
            env: &[],
            savepoint_dir: "file:///sp",
            checkpoint_dir: "file:///ck",
            metrics_gateway: None,
        };
        l.start(&spec).unwrap();
        let conf = data.join("local/job-1/conf");
        assert_eq!(
            std::fs::read_to_string(conf.join("log4j.properties")).unwrap(),
            "<Configuration><Loggers><Logger name=\"org.apache.kafka\" level=\"WARN\"/></Loggers></Configuration>"
        );
        let y: BTreeMap<String, String> =
            serde_yaml::from_str(&std::fs::read_to_string(conf.join("config.yaml")).unwrap())
                .unwrap();
        assert_eq!(y["env.java.opts.all"], format!("-Dx=1 {XML_LOG4J_FACTORY}"));
    }

    #[test]
    fn local_start_refuses_loader_variables_and_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("flink");
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::write(home.join("bin/jobmanager.sh"), "").unwrap();
        let l = LocalClusters::new(Some(home), &dir.path().join("data"));
        let cfg = BTreeMap::new();
        let env = [EnvVar {
            name: "LD_PRELOAD".into(),
            value: "/tmp/evil.so".into(),
        }];
        let mut spec = LocalSpec {
            namespace: "default",
            deployment_id: "dep-1",
            job_id: "job-1",
            flink_configuration: &cfg,
            parallelism: 1,
            jobmanager_memory: None,
            taskmanager_memory: None,
            log4j: "",
            env: &env,
            savepoint_dir: "file:///sp",
            checkpoint_dir: "file:///ck",
            metrics_gateway: None,
        };
        let err = l.start(&spec).unwrap_err().to_string();
        assert!(err.contains("LD_PRELOAD"), "{err}");
        let bad = BTreeMap::from([("a\nrest.port".to_string(), "1".to_string())]);
        spec.env = &[];
        spec.flink_configuration = &bad;
        let err = l.start(&spec).unwrap_err().to_string();
        assert!(err.contains("flinkConfiguration key"), "{err}");
        assert!(!dir
            .path()
            .join("data/local/job-1/conf/config.yaml")
            .exists());
    }

    #[test]
    fn env_policy_refuses_what_changes_code_and_keeps_the_rest() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "ENV",
            "BASH_FUNC_ls%%",
            "SHELLOPTS",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "JAVA_HOME",
            "PATH",
            "FLINK_CONF_DIR",
            "FLINK_ENV_JAVA_OPTS",
        ] {
            assert!(refused_env_var(name).is_some(), "{name} must be refused");
        }
        for name in ["TEAM", "KAFKA_BOOTSTRAP", "TZ", "HADOOP_USER_NAME"] {
            assert!(refused_env_var(name).is_none(), "{name} must be allowed");
        }
        for key in ["pipeline.name", "state.backend.type", "a_b-c.1"] {
            assert!(check_config_key(key).is_ok(), "{key}");
        }
        for key in ["", "a b", "a\nb", "a:b", "a#b", "ä"] {
            assert!(check_config_key(key).is_err(), "{key:?}");
        }
    }

    #[test]
    fn local_target_without_flink_home_says_what_to_set() {
        let l = LocalClusters::new(None, Path::new("/tmp"));
        let err = l.home().unwrap_err().to_string();
        assert!(err.contains("FLINK_HOME"), "{err}");
    }
}
