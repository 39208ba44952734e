//! `suite.yml`: one section per component, each in that component's own config format, plus
//! `flink-suite:` for what only the suite decides (how the components are wired).
//!
//! ```yaml
//! flink-suite:
//!   rule_evaluation_interval: 30s     # metrics-gateway --rule.evaluation-interval
//!   alertmanager_urls: []             # alerts to Alertmanager instead of dingtalk-alert
//!   self_metrics_interval: 15s        # job-manager's metrics forwarded to the gateway
//! job-manager: {controller: {poll_interval: 2s}}
//! metrics-gateway: {rule_files: [my-rules/*.yml]}   # replaces the bundled Flink rules
//! dingtalk-alert: {targets: {oncall: {access_token_file: /etc/dingtalk/token}}}
//! log-shipper: {sinks: {oss: {endpoint: oss-cn-hangzhou.aliyuncs.com, bucket: logs}}}
//! ```
//!
//! Each component reads a file generated from its section (`{data-dir}/flink-suite/<name>.yml`)
//! with the suite's wiring filled in where the section says nothing: job-manager's
//! `metrics_gateway.url`, metrics-gateway's `rule_files` (the bundled set), log-shipper's
//! `local_cluster_logs`. A SIGHUP re-reads `suite.yml`, regenerates the files, then reloads
//! every component.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

/// The bundled Flink alerting rules (restarts, checkpoints, backpressure, not running,
/// no metrics, heap, failed deployments).
pub const FLINK_RULES: &str = include_str!("../rules/flink.yml");

const DEFAULT_RULE_EVALUATION_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_SELF_METRICS_INTERVAL: Duration = Duration::from_secs(15);

/// Why `suite.yml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid suite config (the message names the field and line).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A component's section is not valid for that component.
    #[error("{path}: section `{section}`: {message}")]
    Section {
        path: PathBuf,
        section: &'static str,
        message: String,
    },
    /// A generated file cannot be written.
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// What only the suite decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuiteSection {
    /// How often metrics-gateway evaluates rule groups without their own `interval` (the
    /// bundled ones). Restart-only.
    #[serde(with = "humantime_serde")]
    pub rule_evaluation_interval: Duration,
    /// Alertmanager base URLs: when set, the gateway's alerts go there instead of straight
    /// to dingtalk-alert (point Alertmanager's webhook at dingtalk-alert). Restart-only.
    pub alertmanager_urls: Vec<String>,
    /// How often job-manager's own metrics (`job_manager_*`, e.g. the failed-deployment
    /// counter) are pushed to the gateway for the rules. Restart-only.
    #[serde(with = "humantime_serde")]
    pub self_metrics_interval: Duration,
}

impl Default for SuiteSection {
    fn default() -> Self {
        Self {
            rule_evaluation_interval: DEFAULT_RULE_EVALUATION_INTERVAL,
            alertmanager_urls: Vec::new(),
            self_metrics_interval: DEFAULT_SELF_METRICS_INTERVAL,
        }
    }
}

/// The whole `suite.yml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// The suite's own settings.
    #[serde(rename = "flink-suite", default)]
    pub suite: SuiteSection,
    /// job-manager's config.
    #[serde(rename = "job-manager", default)]
    pub job_manager: Option<Value>,
    /// metrics-gateway's config.
    #[serde(rename = "metrics-gateway", default)]
    pub metrics_gateway: Option<Value>,
    /// dingtalk-alert's config.
    #[serde(rename = "dingtalk-alert", default)]
    pub dingtalk_alert: Option<Value>,
    /// log-shipper's config.
    #[serde(rename = "log-shipper", default)]
    pub log_shipper: Option<Value>,
}

/// A component's section as a mapping (absent or `null` → empty).
fn section(v: &Option<Value>) -> Mapping {
    match v {
        Some(Value::Mapping(m)) => m.clone(),
        _ => Mapping::new(),
    }
}

fn check<C: common::ServiceConfig>(
    path: &Path,
    name: &'static str,
    v: &Option<Value>,
) -> Result<(), Error> {
    if let Some(v) = v {
        if !matches!(v, Value::Mapping(_) | Value::Null) {
            return Err(Error::Section {
                path: path.to_path_buf(),
                section: name,
                message: "must be a mapping (the component's own config format)".into(),
            });
        }
        let text = serde_yaml::to_string(v).unwrap_or_default();
        common::config::from_yaml_str::<C>(&text, path).map_err(|e| Error::Section {
            path: path.to_path_buf(),
            section: name,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

impl SuiteFile {
    /// Reads and checks `suite.yml`: unknown sections and fields are errors naming them,
    /// and every section must be valid for its component.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// [`SuiteFile::load`] on text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let file: SuiteFile = if text.trim().is_empty() {
            SuiteFile::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                Error::Parse {
                    path: path.to_path_buf(),
                    message: if field.is_empty() || field == "." {
                        inner.to_string()
                    } else {
                        format!("field `{field}`: {inner}")
                    },
                }
            })?
        };
        check::<job_manager::Config>(path, "job-manager", &file.job_manager)?;
        check::<metrics_gateway::Config>(path, "metrics-gateway", &file.metrics_gateway)?;
        check::<dingtalk_alert::Config>(path, "dingtalk-alert", &file.dingtalk_alert)?;
        check::<log_shipper::Config>(path, "log-shipper", &file.log_shipper)?;
        if file.suite.rule_evaluation_interval.is_zero() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                message: "field `flink-suite.rule_evaluation_interval` must be greater than zero"
                    .into(),
            });
        }
        if file.suite.self_metrics_interval.is_zero() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                message: "field `flink-suite.self_metrics_interval` must be greater than zero"
                    .into(),
            });
        }
        Ok(file)
    }
}

/// What the suite fills into the components' configs when their sections leave it out.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// job-manager's `metrics_gateway.url` (None: the gateway does not run here).
    pub metrics_gateway_url: Option<String>,
    /// The bundled rules file (written by [`generate`]).
    pub bundled_rules: PathBuf,
    /// log-shipper's `local_cluster_logs`.
    pub local_cluster_logs: PathBuf,
    /// Directory of `suite.yml` (its relative `rule_files` are relative to it).
    pub config_dir: Option<PathBuf>,
}

/// What [`generate`] decided, for the start-up summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// job-manager's `metrics_gateway.url` in effect.
    pub metrics_gateway_url: Option<String>,
    /// Whether the bundled rules are loaded (the section names no `rule_files`).
    pub bundled_rules: bool,
    /// Whether the dingtalk-alert section defines targets.
    pub dingtalk_targets: bool,
}

/// The generated config file of component `name` under `dir`.
pub fn generated_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.yml"))
}

fn key(k: &str) -> Value {
    Value::String(k.to_string())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    common::fs::write_atomic_mode(path, text.as_bytes(), 0o600).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes the components' config files (and the bundled rules) into `dir` from `file`
/// with the wiring filled in.
pub fn generate(file: &SuiteFile, wiring: &Wiring, dir: &Path) -> Result<Generated, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let header = |name: &str| {
        format!(
            "# Generated by flink-suite from the `{name}` section of its --config.file, with the\n\
             # suite's wiring filled in. Rewritten at every start and SIGHUP: edit that file.\n"
        )
    };
    let dump = |m: &Mapping| {
        if m.is_empty() {
            String::new()
        } else {
            serde_yaml::to_string(m).unwrap_or_default()
        }
    };

    // job-manager: Flink's reporter → the gateway.
    let mut jm = section(&file.job_manager);
    let mut mg_url = None;
    match jm.get_mut(key("metrics_gateway")) {
        Some(Value::Mapping(m)) if m.contains_key(key("url")) => {
            mg_url = m
                .get(key("url"))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Some(Value::Mapping(m)) => {
            if let Some(u) = &wiring.metrics_gateway_url {
                m.insert(key("url"), Value::String(u.clone()));
                mg_url = Some(u.clone());
            }
        }
        _ => {
            if let Some(u) = &wiring.metrics_gateway_url {
                let mut m = Mapping::new();
                m.insert(key("url"), Value::String(u.clone()));
                jm.insert(key("metrics_gateway"), Value::Mapping(m));
                mg_url = Some(u.clone());
            }
        }
    }
    write(
        &generated_file(dir, "job-manager"),
        &(header("job-manager") + &dump(&jm)),
    )?;

    // metrics-gateway: the bundled rules unless the section names its own.
    let mut mg = section(&file.metrics_gateway);
    let bundled = !mg.contains_key(key("rule_files"));
    if bundled {
        if let Some(parent) = wiring.bundled_rules.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::Write {
                path: parent.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        write(&wiring.bundled_rules, FLINK_RULES)?;
        mg.insert(
            key("rule_files"),
            Value::Sequence(vec![Value::String(
                wiring.bundled_rules.display().to_string(),
            )]),
        );
    } else if let (Some(Value::Sequence(files)), Some(base)) =
        (mg.get_mut(key("rule_files")), &wiring.config_dir)
    {
        // Relative to suite.yml, as the section's author meant, not to the generated file.
        for f in files.iter_mut() {
            if let Value::String(s) = f {
                if !Path::new(s.as_str()).is_absolute() {
                    *s = base.join(&*s).display().to_string();
                }
            }
        }
    }
    write(
        &generated_file(dir, "metrics-gateway"),
        &(header("metrics-gateway") + &dump(&mg)),
    )?;

    // dingtalk-alert: as written (the robot comes from DINGTALK_* or the section).
    let dt = section(&file.dingtalk_alert);
    let dingtalk_targets =
        matches!(dt.get(key("targets")), Some(Value::Mapping(t)) if !t.is_empty());
    write(
        &generated_file(dir, "dingtalk-alert"),
        &(header("dingtalk-alert") + &dump(&dt)),
    )?;

    // log-shipper: the local clusters' logs.
    let mut ls = section(&file.log_shipper);
    if !ls.contains_key(key("local_cluster_logs")) {
        ls.insert(
            key("local_cluster_logs"),
            Value::String(wiring.local_cluster_logs.display().to_string()),
        );
    }
    write(
        &generated_file(dir, "log-shipper"),
        &(header("log-shipper") + &dump(&ls)),
    )?;

    Ok(Generated {
        metrics_gateway_url: mg_url,
        bundled_rules: bundled,
        dingtalk_targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring(dir: &Path) -> Wiring {
        Wiring {
            metrics_gateway_url: Some("http://127.0.0.1:9091".into()),
            bundled_rules: dir.join("rules/flink.yml"),
            local_cluster_logs: dir.join("job-manager/logs"),
            config_dir: Some(PathBuf::from("/etc/suite")),
        }
    }

    #[test]
    fn empty_config_gets_the_wiring_and_sections_keep_their_own_choices() {
        let dir = tempfile::tempdir().unwrap();
        let w = wiring(dir.path());
        let g = generate(&SuiteFile::default(), &w, dir.path()).unwrap();
        assert_eq!(
            g.metrics_gateway_url.as_deref(),
            Some("http://127.0.0.1:9091")
        );
        assert!(g.bundled_rules);
        let jm: job_manager::Config =
            common::config::load(Some(&generated_file(dir.path(), "job-manager"))).unwrap();
        assert_eq!(
            jm.metrics_gateway.url.as_deref(),
            Some("http://127.0.0.1:9091")
        );
        let mg: metrics_gateway::Config =
            common::config::load(Some(&generated_file(dir.path(), "metrics-gateway"))).unwrap();
        assert_eq!(mg.rule_files, vec![w.bundled_rules.display().to_string()]);
        assert_eq!(
            std::fs::read_to_string(&w.bundled_rules).unwrap(),
            FLINK_RULES
        );
        let ls: log_shipper::Config =
            common::config::load(Some(&generated_file(dir.path(), "log-shipper"))).unwrap();
        assert_eq!(
            ls.local_cluster_logs.as_deref(),
            Some(w.local_cluster_logs.as_path())
        );

        let file = SuiteFile::parse(
            "job-manager:\n  metrics_gateway: {url: http://elsewhere:9091}\n  controller: {poll_interval: 1s}\n\
             metrics-gateway:\n  rule_files: [mine/*.yml]\n",
            Path::new("suite.yml"),
        )
        .unwrap();
        let g = generate(&file, &w, dir.path()).unwrap();
        assert_eq!(
            g.metrics_gateway_url.as_deref(),
            Some("http://elsewhere:9091")
        );
        assert!(!g.bundled_rules);
        let mg = std::fs::read_to_string(generated_file(dir.path(), "metrics-gateway")).unwrap();
        assert!(mg.contains("/etc/suite/mine/*.yml"), "{mg}");
    }

    #[test]
    fn unknown_sections_and_bad_fields_are_named() {
        let err = SuiteFile::parse("jobmanager: {}\n", Path::new("suite.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("jobmanager") && err.contains("suite.yml"),
            "{err}"
        );
        let err = SuiteFile::parse(
            "log-shipper:\n  poll_intervall: 1s\n",
            Path::new("suite.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("log-shipper") && err.contains("poll_intervall"),
            "{err}"
        );
        let err = SuiteFile::parse(
            "flink-suite: {rule_evaluation_interval: 0s}\n",
            Path::new("suite.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rule_evaluation_interval"), "{err}");
    }

    #[test]
    fn the_bundled_rules_pass_their_unit_tests_here_and_in_promtool() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/flink_test.yml");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = promql_engine::rules::unittest::test_rules(&[&file], &mut out, &mut err);
        let text = String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("SUCCESS"), "{text}");
        match std::process::Command::new("promtool")
            .args(["test", "rules"])
            .arg(&file)
            .output()
        {
            Ok(o) => assert!(
                o.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => eprintln!("SKIP promtool cross-check: promtool is not installed"),
        }
    }

    #[test]
    fn the_bundled_rules_load_and_name_the_restart_alert() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("flink.yml");
        std::fs::write(&f, FLINK_RULES).unwrap();
        let groups = metrics_gateway::rules::load_rule_files(&[f.display().to_string()]).unwrap();
        let text = format!("{groups:?}");
        for alert in [
            "FlinkJobRestarting",
            "FlinkCheckpointsFailing",
            "FlinkTaskBackpressured",
            "FlinkJobNotRunning",
            "FlinkMetricsNotPushed",
            "FlinkHeapAlmostFull",
            "JobManagerDeploymentFailed",
        ] {
            assert!(text.contains(alert), "{alert} in the bundled rules");
        }
    }
}
