//! Flink's configuration for the pods of a job, written in the format of its Flink version:
//! `flink-conf.yaml` (flat `key: value` lines, read by Flink's own line parser) before 1.19,
//! `config.yaml` (standard YAML) from 1.19 on.

use std::{collections::BTreeMap, fmt};

use super::{Error, Result};

/// RPC port of the JobManager.
pub const RPC_PORT: i32 = 6123;
/// Blob server port of the JobManager.
pub const BLOB_PORT: i32 = 6124;
/// REST port of the JobManager.
pub const REST_PORT: i32 = 8081;
/// RPC port of the TaskManagers.
pub const TASKMANAGER_RPC_PORT: i32 = 6122;

/// The name of the suite's PushGateway reporter in Flink's configuration.
pub const REPORTER: &str = "flink_suite";

/// Keys the manager sets on a Kubernetes target (addresses and ports); user values for
/// them are ignored and reported.
pub const OWNED_KEYS: &[&str] = &[
    "jobmanager.rpc.address",
    "jobmanager.rpc.port",
    "jobmanager.bind-host",
    "taskmanager.bind-host",
    "taskmanager.rpc.port",
    "blob.server.port",
    "rest.address",
    "rest.bind-address",
    "rest.port",
    "rest.bind-port",
];

/// A Flink release line (`major.minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlinkVersion {
    pub major: u32,
    pub minor: u32,
}

impl FlinkVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// `1.17`, `1.20.1`, `2.0.0`, `1.17.2-stream1`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_start_matches(['v', 'V']);
        let mut parts = s.split(['.', '-', '_']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    /// Whether this version reads `config.yaml` (standard YAML, Flink 1.19 on).
    pub fn reads_config_yaml(self) -> bool {
        self >= Self::new(1, 19)
    }

    /// The configuration file this version reads from its conf directory.
    pub fn config_file_name(self) -> &'static str {
        if self.reads_config_yaml() {
            "config.yaml"
        } else {
            "flink-conf.yaml"
        }
    }
}

impl fmt::Display for FlinkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Parses a Flink memory size (`1g`, `1536m`, `2 gb`, `1073741824`) into bytes.
pub fn parse_memory(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tebibytes" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult).filter(|b| *b > 0)
}

/// What the configuration of one job is assembled from.
#[derive(Debug, Clone)]
pub struct ConfInput<'a> {
    /// The user's `flinkConfiguration`, placeholders rendered.
    pub user: &'a BTreeMap<String, String>,
    pub parallelism: u32,
    pub number_of_task_managers: Option<u32>,
    /// Flink memory sizes of the processes, as the user wrote them (`resources.*.memory`).
    pub jobmanager_memory: Option<&'a str>,
    pub taskmanager_memory: Option<&'a str>,
    /// The JobManager Service's name (the address TaskManagers and clients use).
    pub service_name: &'a str,
    /// `job-<jobId>`: Flink's `kubernetes.cluster-id` when Kubernetes HA is on.
    pub cluster_id: &'a str,
    /// The Kubernetes namespace of the job's objects.
    pub target_namespace: &'a str,
    pub savepoint_dir: Option<&'a str>,
    pub checkpoint_dir: Option<&'a str>,
    /// PushGateway reporter: URL and the grouping key (namespace, deploymentId, jobId).
    pub metrics_gateway: Option<Reporter<'a>>,
}

/// Where the PushGateway reporter pushes and under which grouping key.
#[derive(Debug, Clone, Copy)]
pub struct Reporter<'a> {
    pub url: &'a str,
    pub namespace: &'a str,
    pub deployment_id: &'a str,
    pub job_id: &'a str,
}

/// The assembled configuration and what it implies for the pods.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub config: BTreeMap<String, String>,
    /// `jobmanager.memory.process.size` / `taskmanager.memory.process.size` in bytes.
    pub jobmanager_memory_bytes: u64,
    pub taskmanager_memory_bytes: u64,
    pub slots: u32,
    pub taskmanagers: u32,
    /// Flink's Kubernetes HA is on: a restarted JobManager resumes from it.
    pub high_availability: bool,
    /// Settings that were given but have no effect, for the user to read.
    pub notes: Vec<String>,
}

const DEFAULT_JOBMANAGER_MEMORY: &str = "1g";
const DEFAULT_TASKMANAGER_MEMORY: &str = "2g";

/// The PushGateway reporter keys (the suite's grouping key: namespace, deploymentId, jobId).
pub fn pushgateway_reporter(r: Reporter<'_>) -> BTreeMap<String, String> {
    let p = format!("metrics.reporter.{REPORTER}");
    let f = common::labels::fields::NAMESPACE;
    let d = common::labels::fields::DEPLOYMENT_ID;
    let j = common::labels::fields::JOB_ID;
    BTreeMap::from([
        (
            format!("{p}.factory.class"),
            "org.apache.flink.metrics.prometheus.PrometheusPushGatewayReporterFactory".into(),
        ),
        (format!("{p}.hostUrl"), r.url.to_string()),
        (format!("{p}.jobName"), format!("flink-{}", r.deployment_id)),
        (format!("{p}.randomJobNameSuffix"), "true".into()),
        (format!("{p}.deleteOnShutdown"), "true".into()),
        (format!("{p}.interval"), "10 SECONDS".into()),
        (
            format!("{p}.groupingKey"),
            format!(
                "{f}={};{d}={};{j}={}",
                r.namespace, r.deployment_id, r.job_id
            ),
        ),
    ])
}

fn memory(
    field: &str,
    resources: Option<&str>,
    key: &str,
    user: &BTreeMap<String, String>,
    default: &str,
    notes: &mut Vec<String>,
) -> Result<(String, u64)> {
    let (text, from) = match (resources, user.get(key)) {
        (Some(r), Some(u)) => {
            if parse_memory(r) != parse_memory(u) {
                notes.push(format!(
                    "flinkConfiguration[\"{key}\"] ({u}) is overridden by {field} ({r})"
                ));
            }
            (r, field.to_string())
        }
        (Some(r), None) => (r, field.to_string()),
        (None, Some(u)) => (
            u.as_str(),
            format!("spec.template.spec.flinkConfiguration[\"{key}\"]"),
        ),
        (None, None) => (default, field.to_string()),
    };
    let bytes = parse_memory(text).ok_or_else(|| Error::Invalid {
        field: from,
        message: format!("{text:?} is not a Flink memory size (use e.g. 1g, 1536m or 2048mb)"),
    })?;
    Ok((text.to_string(), bytes))
}

/// Assembles the configuration: the manager's defaults, then the user's values, then the
/// keys the manager owns (addresses and ports).
pub fn assemble(input: &ConfInput<'_>) -> Result<Assembled> {
    let user = input.user;
    let mut notes = Vec::new();
    let (jm_text, jm_bytes) = memory(
        "spec.template.spec.resources.jobmanager.memory",
        input.jobmanager_memory,
        "jobmanager.memory.process.size",
        user,
        DEFAULT_JOBMANAGER_MEMORY,
        &mut notes,
    )?;
    let (tm_text, tm_bytes) = memory(
        "spec.template.spec.resources.taskmanager.memory",
        input.taskmanager_memory,
        "taskmanager.memory.process.size",
        user,
        DEFAULT_TASKMANAGER_MEMORY,
        &mut notes,
    )?;
    let p = input.parallelism.max(1);
    let slots = match user.get("taskmanager.numberOfTaskSlots") {
        Some(s) => s
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::Invalid {
                field: "spec.template.spec.flinkConfiguration[\"taskmanager.numberOfTaskSlots\"]"
                    .into(),
                message: format!("{s:?} is not a whole number ≥ 1"),
            })?,
        None => match input.number_of_task_managers {
            Some(n) => p.div_ceil(n.max(1)),
            None => 1,
        },
    };
    let taskmanagers = match input.number_of_task_managers {
        Some(n) => {
            if u64::from(n) * u64::from(slots) < u64::from(p) {
                return Err(Error::Invalid {
                    field: "spec.template.spec.numberOfTaskManagers".into(),
                    message: format!(
                        "{n} TaskManagers × {slots} slots (taskmanager.numberOfTaskSlots) is less than the parallelism {p}: the job would never get its slots"
                    ),
                });
            }
            n
        }
        None => p.div_ceil(slots),
    };

    let mut cfg: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        cfg.insert(k.to_string(), v.to_string());
    };
    set("parallelism.default", &p.to_string());
    set("taskmanager.numberOfTaskSlots", &slots.to_string());
    // The cluster stays up after the job ends, so the manager can read the final state
    // through REST before it deletes the objects; a failing main() shows as a failed job.
    set("execution.shutdown-on-application-finish", "false");
    set("execution.submit-failed-job-on-application-error", "true");
    if let Some(dir) = input.savepoint_dir {
        set("execution.checkpointing.savepoint-dir", dir);
        set("state.savepoints.dir", dir);
    }
    if let Some(dir) = input.checkpoint_dir {
        set("execution.checkpointing.dir", dir);
        set("state.checkpoints.dir", dir);
    }
    if let Some(r) = input.metrics_gateway {
        cfg.extend(pushgateway_reporter(r));
    }
    let high_availability = [
        user.get("high-availability.type"),
        user.get("high-availability"),
    ]
    .into_iter()
    .flatten()
    .any(|v| {
        let v = v.trim().to_ascii_lowercase();
        v == "kubernetes" || v.contains("kuberneteshaservicesfactory")
    });
    if high_availability {
        cfg.insert("kubernetes.cluster-id".into(), input.cluster_id.into());
        cfg.insert("kubernetes.namespace".into(), input.target_namespace.into());
    }
    // A user's savepoint/checkpoint directory under either name replaces both defaults.
    let pairs = [
        (
            "execution.checkpointing.savepoint-dir",
            "state.savepoints.dir",
        ),
        ("execution.checkpointing.dir", "state.checkpoints.dir"),
    ];
    for (new, old) in pairs {
        if user.contains_key(new) || user.contains_key(old) {
            cfg.remove(new);
            cfg.remove(old);
        }
    }
    for (k, v) in user {
        if OWNED_KEYS.contains(&k.as_str()) {
            notes.push(format!(
                "flinkConfiguration[\"{k}\"] is set by job-manager on Kubernetes targets; the value {v:?} was ignored"
            ));
        } else {
            cfg.insert(k.clone(), v.clone());
        }
    }
    cfg.insert("jobmanager.memory.process.size".into(), jm_text);
    cfg.insert("taskmanager.memory.process.size".into(), tm_text);
    cfg.insert("taskmanager.numberOfTaskSlots".into(), slots.to_string());
    let service = input.service_name;
    for (k, v) in [
        ("jobmanager.rpc.address", service.to_string()),
        ("jobmanager.rpc.port", RPC_PORT.to_string()),
        ("jobmanager.bind-host", "0.0.0.0".into()),
        ("taskmanager.bind-host", "0.0.0.0".into()),
        ("taskmanager.rpc.port", TASKMANAGER_RPC_PORT.to_string()),
        ("blob.server.port", BLOB_PORT.to_string()),
        ("rest.address", service.to_string()),
        ("rest.bind-address", "0.0.0.0".into()),
        ("rest.port", REST_PORT.to_string()),
        ("rest.bind-port", REST_PORT.to_string()),
    ] {
        cfg.insert(k.into(), v);
    }
    Ok(Assembled {
        config: cfg,
        jobmanager_memory_bytes: jm_bytes,
        taskmanager_memory_bytes: tm_bytes,
        slots,
        taskmanagers,
        high_availability,
        notes,
    })
}

/// Writes the configuration in the format `version` reads.
///
/// `config.yaml` (1.19 on) is standard YAML with every value quoted. `flink-conf.yaml` is
/// read line by line: everything after `#` is a comment and the value is not unquoted, so
/// values are written as they are, and a value Flink would misread is an error naming the
/// key.
pub fn render(cfg: &BTreeMap<String, String>, version: FlinkVersion) -> Result<String> {
    let mut out = format!(
        "# Rendered by job-manager for Flink {version} ({}); do not edit.\n",
        version.config_file_name()
    );
    for (k, v) in cfg {
        let field = || format!("spec.template.spec.flinkConfiguration[\"{k}\"]");
        if k.trim().is_empty() || k.contains(['\n', '#']) || k.contains(": ") {
            return Err(Error::Invalid {
                field: field(),
                message:
                    "a configuration key must not be empty or contain '#', ': ' or a line break"
                        .into(),
            });
        }
        if version.reads_config_yaml() {
            let plain = k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            let key = if plain { k.clone() } else { yaml_quote(k) };
            out.push_str(&format!("{key}: {}\n", yaml_quote(v)));
        } else {
            if v.contains(['\n', '\r']) || v.contains('#') {
                return Err(Error::Invalid {
                    field: field(),
                    message: format!(
                        "Flink {version} reads flink-conf.yaml line by line and cuts values at '#': a value with '#' or a line break cannot be written (Flink 1.19 and later read config.yaml, which can)"
                    ),
                });
            }
            if v.trim().is_empty() {
                // Flink skips a key without a value; leaving it out says the same.
                continue;
            }
            out.push_str(&format!("{k}: {}\n", v.trim()));
        }
    }
    Ok(out)
}

/// A YAML double-quoted scalar that YAML 1.1 and 1.2 readers (Flink's SnakeYAML) read back
/// as `s`: quotes, backslashes and every character that is not plainly printable in both
/// versions (controls, DEL, C1, the Unicode line separators, BOM, non-characters) are
/// escaped.
fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let u = c as u32;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            _ if u < 0x20
                || (0x7f..=0x9f).contains(&u)
                || matches!(u, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff) =>
            {
                out.push_str(&format!("\\u{u:04x}"));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: &BTreeMap<String, String>) -> ConfInput<'_> {
        ConfInput {
            user,
            parallelism: 4,
            number_of_task_managers: None,
            jobmanager_memory: None,
            taskmanager_memory: Some("1536m"),
            service_name: "job-x-jobmanager",
            cluster_id: "job-x",
            target_namespace: "flink-jobs",
            savepoint_dir: Some("oss://b/sp"),
            checkpoint_dir: None,
            metrics_gateway: None,
        }
    }

    #[test]
    fn versions_parse_and_pick_the_file() {
        assert_eq!(
            FlinkVersion::parse("1.17.2-stream1"),
            Some(FlinkVersion::new(1, 17))
        );
        assert_eq!(FlinkVersion::parse("2.0"), Some(FlinkVersion::new(2, 0)));
        assert_eq!(FlinkVersion::parse("latest"), None);
        assert_eq!(
            FlinkVersion::new(1, 18).config_file_name(),
            "flink-conf.yaml"
        );
        assert_eq!(FlinkVersion::new(1, 19).config_file_name(), "config.yaml");
        assert_eq!(FlinkVersion::new(2, 1).config_file_name(), "config.yaml");
    }

    #[test]
    fn memory_sizes_parse_like_flink() {
        assert_eq!(parse_memory("1g"), Some(1 << 30));
        assert_eq!(parse_memory("1536m"), Some(1536 << 20));
        assert_eq!(parse_memory("2 GB"), Some(2 << 30));
        assert_eq!(parse_memory("0m"), None);
        assert_eq!(parse_memory("lots"), None);
    }

    #[test]
    fn slots_and_taskmanagers_follow_parallelism() {
        let user = BTreeMap::new();
        let a = assemble(&input(&user)).unwrap();
        assert_eq!((a.slots, a.taskmanagers), (1, 4));
        let user = BTreeMap::from([("taskmanager.numberOfTaskSlots".to_string(), "3".to_string())]);
        let a = assemble(&input(&user)).unwrap();
        assert_eq!((a.slots, a.taskmanagers), (3, 2));
        let user = BTreeMap::new();
        let mut i = input(&user);
        i.number_of_task_managers = Some(3);
        let a = assemble(&i).unwrap();
        assert_eq!((a.slots, a.taskmanagers), (2, 3));
        let user = BTreeMap::from([("taskmanager.numberOfTaskSlots".to_string(), "1".to_string())]);
        let mut i = input(&user);
        i.number_of_task_managers = Some(2);
        let err = assemble(&i).unwrap_err().to_string();
        assert!(err.contains("numberOfTaskManagers"), "{err}");
        assert!(err.contains("parallelism 4"), "{err}");
    }

    #[test]
    fn owned_keys_win_and_are_reported_and_memory_is_checked() {
        let user = BTreeMap::from([
            ("rest.port".to_string(), "9999".to_string()),
            ("state.savepoints.dir".to_string(), "s3://mine".to_string()),
        ]);
        let a = assemble(&input(&user)).unwrap();
        assert_eq!(a.config["rest.port"], "8081");
        assert_eq!(a.config["jobmanager.rpc.address"], "job-x-jobmanager");
        assert_eq!(a.config["state.savepoints.dir"], "s3://mine");
        assert!(!a
            .config
            .contains_key("execution.checkpointing.savepoint-dir"));
        assert_eq!(a.config["taskmanager.memory.process.size"], "1536m");
        assert_eq!(a.taskmanager_memory_bytes, 1536 << 20);
        assert_eq!(a.jobmanager_memory_bytes, 1 << 30);
        assert!(
            a.notes.iter().any(|n| n.contains("rest.port")),
            "{:?}",
            a.notes
        );
        let user = BTreeMap::new();
        let mut i = input(&user);
        i.jobmanager_memory = Some("a lot");
        let err = assemble(&i).unwrap_err().to_string();
        assert!(err.contains("resources.jobmanager.memory"), "{err}");
    }

    #[test]
    fn kubernetes_ha_gets_its_cluster_id() {
        let user = BTreeMap::from([(
            "high-availability.type".to_string(),
            "kubernetes".to_string(),
        )]);
        let a = assemble(&input(&user)).unwrap();
        assert!(a.high_availability);
        assert_eq!(a.config["kubernetes.cluster-id"], "job-x");
        assert_eq!(a.config["kubernetes.namespace"], "flink-jobs");
    }

    #[test]
    fn both_formats_read_back_and_legacy_refuses_what_flink_would_misread() {
        let cfg = BTreeMap::from([
            ("pipeline.name".to_string(), "orders: eu".to_string()),
            ("env.java.opts.all".to_string(), "-Dx=\"y\"".to_string()),
        ]);
        let new = render(&cfg, FlinkVersion::new(2, 0)).unwrap();
        let back: BTreeMap<String, String> = serde_yaml::from_str(&new).unwrap();
        assert_eq!(back, cfg);
        let old = render(&cfg, FlinkVersion::new(1, 17)).unwrap();
        assert!(old.contains("\npipeline.name: orders: eu\n"), "{old}");
        assert!(old.contains("\nenv.java.opts.all: -Dx=\"y\"\n"), "{old}");
        let bad = BTreeMap::from([("a".to_string(), "x # y".to_string())]);
        let err = render(&bad, FlinkVersion::new(1, 17))
            .unwrap_err()
            .to_string();
        assert!(err.contains("flinkConfiguration[\"a\"]"), "{err}");
        assert!(render(&bad, FlinkVersion::new(1, 19)).is_ok());
    }

    /// Flink's line parser for `flink-conf.yaml` (before 1.19): comments from `#`, the key
    /// before the first `": "`, both trimmed; lines without a value are skipped.
    fn legacy_parse(text: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let conf = line.split('#').next().unwrap_or_default().trim();
            let Some((k, v)) = conf.split_once(": ") else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if !k.is_empty() && !v.is_empty() {
                out.insert(k.to_string(), v.to_string());
            }
        }
        out
    }

    fn usable_key(k: &str) -> bool {
        !k.trim().is_empty() && !k.contains(['\n', '#']) && !k.contains(": ")
    }

    proptest::proptest! {
        #[test]
        fn config_yaml_reads_back_every_value(
            cfg in proptest::collection::btree_map(
                r"[a-z][a-z0-9._-]{0,20}|\PC{1,12}",
                r"\PC{0,16}|[\s\S]{0,16}|[\u{0}-\u{ff}\u{2028}\u{2029}\u{feff}]{0,8}",
                0..8,
            )
        ) {
            let cfg: BTreeMap<String, String> =
                cfg.into_iter().filter(|(k, _)| usable_key(k)).collect();
            let text = render(&cfg, FlinkVersion::new(1, 20)).unwrap();
            let back: BTreeMap<String, String> = serde_yaml::from_str(&text).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}"))
            })?;
            proptest::prop_assert_eq!(back, cfg);
        }

        #[test]
        fn flink_conf_yaml_is_read_as_written_or_refused(
            cfg in proptest::collection::btree_map(
                "[a-z][a-z0-9._-]{0,20}",
                r"[ -~]{0,20}|\PC{0,8}|[a-z #:\n]{0,8}",
                0..8,
            )
        ) {
            match render(&cfg, FlinkVersion::new(1, 17)) {
                Ok(text) => {
                    let expected: BTreeMap<String, String> = cfg
                        .iter()
                        .filter(|(_, v)| !v.trim().is_empty())
                        .map(|(k, v)| (k.clone(), v.trim().to_string()))
                        .collect();
                    proptest::prop_assert_eq!(legacy_parse(&text), expected);
                }
                Err(e) => {
                    proptest::prop_assert!(
                        cfg.values().any(|v| v.contains(['#', '\n', '\r'])),
                        "refused a writable value: {}",
                        e
                    );
                }
            }
        }
    }
}
