//! The service's configuration file.
//!
//! ```yaml
//! inputs:                      # added to --input
//!   - glob: /opt/flink/log/*.log
//!     multiline: log4j_timestamp   # or java_stack_trace, none
//! labels: {namespace: default, deploymentId: 5d6b..., jobId: a0b1..., pod: wc-jm-0}
//! sinks:
//!   dir: {path: /var/lib/log-shipper/out, format: raw, batch: {max_events: 1000, timeout: 1s}}
//!   sls: {endpoint: cn-hangzhou.log.aliyuncs.com, project: p, logstore: flink-logs}
//!   oss: {endpoint: oss-cn-hangzhou.aliyuncs.com, bucket: b, region: cn-hangzhou}
//! ```

use std::{path::PathBuf, time::Duration};

use common::{ConfigError, Secret, ServiceConfig};
use serde::{Deserialize, Serialize};

use crate::{multiline, record::Labels, sinks::dir::Format};

/// Default batch size of the cloud sinks (the seed's appender: 100 events).
pub const DEFAULT_MAX_EVENTS: usize = 100;
/// Default batch age of the cloud sinks (the seed's appender: 10 s).
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default batch age of the local directory sink (local writes are cheap).
pub const DEFAULT_DIR_BATCH_TIMEOUT: Duration = Duration::from_secs(1);
/// Default batch size of the local directory sink.
pub const DEFAULT_DIR_MAX_EVENTS: usize = 1000;

/// The YAML configuration of log-shipper. Every field has a default, so an empty file (or none)
/// is valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Files to follow, in addition to `--input`.
    pub inputs: Vec<Input>,
    /// Multiline grouping limits.
    pub multiline: MultilineConfig,
    /// Labels put on every record (and used for the OSS path / SLS topic). Unset `pod` and
    /// `source` default to `$POD_NAME` and `$POD_IP`/`$HOSTNAME`.
    pub labels: Labels,
    /// A Kubernetes Downward API file with the pod's labels (`/etc/podinfo/labels`): the
    /// suite's labels in it (namespace, deployment id, job id, component) override `labels`.
    pub pod_labels_file: Option<PathBuf>,
    /// Offset of the writers' local time from UTC, in seconds (log4j writes local time).
    pub utc_offset_seconds: i32,
    /// How often files are checked for new data and rotation.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often, at most, a sink's checkpoint is stored after acknowledged batches (`0s`:
    /// after every batch). New, rotated-away and forgotten files and shutdown are stored at
    /// once. A crash re-sends at most this long's worth of acknowledged batches.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The sinks; any combination.
    pub sinks: Sinks,
    /// Kubernetes pod discovery (container logs of the suite's pods on this node).
    pub kubernetes: crate::kubernetes::KubernetesConfig,
    /// The log directory of job-manager's `local` target (`{job-manager data dir}/logs`):
    /// every `{dir}/{namespace}/{deploymentId}/{jobId}/*.log` and `*.out` is followed,
    /// labelled `namespace`/`deploymentId`/`jobId` from its location and shipped as
    /// `logs/{namespace}/{deploymentId}/{jobId}/{pod}/{file}`, `pod` being `jobmanager-N` or
    /// `taskmanager-N` from Flink's file name. flink-suite sets it to its job-manager's.
    pub local_cluster_logs: Option<PathBuf>,
}

/// One input glob.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A glob (`/opt/flink/log/*.log`).
    pub glob: String,
    /// How lines become events; default: `java_stack_trace` for `*.out`, else
    /// `log4j_timestamp`.
    #[serde(default)]
    pub multiline: Option<multiline::Mode>,
}

/// Multiline limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// An event with no new line for this long is closed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Lines per event at most.
    pub max_lines: usize,
    /// Bytes per event at most.
    pub max_bytes: usize,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        let l = multiline::Limits::default();
        Self {
            timeout: l.timeout,
            max_lines: l.max_lines,
            max_bytes: l.max_bytes,
        }
    }
}

/// Batching of one sink: a batch is sent when it holds `max_events` or its first event is
/// `timeout` old.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Events per batch at most.
    pub max_events: usize,
    /// Age of the oldest event at which the batch is sent anyway.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_MAX_EVENTS,
            timeout: DEFAULT_BATCH_TIMEOUT,
        }
    }
}

fn dir_batch() -> Batch {
    Batch {
        max_events: DEFAULT_DIR_MAX_EVENTS,
        timeout: DEFAULT_DIR_BATCH_TIMEOUT,
    }
}

/// What to do when the outage buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Stop reading until there is room (the files are the buffer; rotation may then
    /// overtake the reader).
    #[default]
    Block,
    /// Drop the oldest buffered batch (counted in `log_shipper_buffer_dropped_events_total`).
    DropOldest,
}

/// The outage buffer of one sink: batches the sink could not take yet, spilled to disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Buffer {
    /// Bytes on disk at most.
    pub max_bytes: u64,
    /// What to do when full.
    pub when_full: Overflow,
}

impl Default for Buffer {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            when_full: Overflow::Block,
        }
    }
}

/// The sinks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sinks {
    /// Local directory. Enabled by `--output.dir`, or by default (under the data dir) when
    /// no other sink is configured.
    pub dir: Option<DirConfig>,
    /// Alibaba Cloud Log Service.
    pub sls: Option<SlsConfig>,
    /// Alibaba Cloud OSS.
    pub oss: Option<OssConfig>,
}

/// Local directory sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirConfig {
    /// Output directory.
    pub path: PathBuf,
    /// `raw` (as written) or `json`.
    #[serde(default)]
    pub format: Format,
    /// Batching.
    #[serde(default = "dir_batch")]
    pub batch: Batch,
    /// Outage buffer.
    #[serde(default)]
    pub buffer: Buffer,
}

/// Access key from the config, a mounted file or the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// AccessKey id. Default: `$ALIBABA_CLOUD_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// AccessKey secret (prefer the file or the environment).
    pub access_key_secret: Secret,
    /// A file holding the AccessKey secret (a mounted Kubernetes Secret).
    pub access_key_secret_file: Option<PathBuf>,
}

impl Credentials {
    /// Resolves id and secret: config, then file, then `ALIBABA_CLOUD_ACCESS_KEY_ID` /
    /// `ALIBABA_CLOUD_ACCESS_KEY_SECRET`.
    pub fn resolve(&self, field: &str) -> Result<(String, Secret), ConfigError> {
        let id = self
            .access_key_id
            .clone()
            .or_else(|| std::env::var("ALIBABA_CLOUD_ACCESS_KEY_ID").ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{field}.credentials.access_key_id"),
                    "is required (or set ALIBABA_CLOUD_ACCESS_KEY_ID)",
                )
            })?;
        let secret = if !self.access_key_secret.is_empty() {
            self.access_key_secret.clone()
        } else if let Some(f) = &self.access_key_secret_file {
            let s = std::fs::read_to_string(f).map_err(|e| {
                ConfigError::invalid(
                    format!("{field}.credentials.access_key_secret_file"),
                    format!("cannot read {}: {e}", f.display()),
                )
            })?;
            Secret::new(s.trim())
        } else {
            Secret::new(std::env::var("ALIBABA_CLOUD_ACCESS_KEY_SECRET").unwrap_or_default())
        };
        if secret.is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.credentials.access_key_secret"),
                "is required (or access_key_secret_file, or ALIBABA_CLOUD_ACCESS_KEY_SECRET)",
            ));
        }
        Ok((id, secret))
    }
}

/// Signature version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignVersion {
    /// HMAC-SHA1 (`LOG id:sig` / `OSS id:sig`).
    #[default]
    V1,
    /// HMAC-SHA256 with a region-scoped key (`SLS4-HMAC-SHA256` / `OSS4-HMAC-SHA256`).
    V4,
}

/// SLS sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlsConfig {
    /// Region endpoint, `cn-hangzhou.log.aliyuncs.com` (the project becomes the host's
    /// first label), or a full URL `http://127.0.0.1:8080` used as is (`Host` still names
    /// `{project}.{host}`).
    pub endpoint: String,
    /// Project.
    pub project: String,
    /// Logstore.
    pub logstore: String,
    /// Credentials.
    #[serde(default)]
    pub credentials: Credentials,
    /// Signature version (`v4` needs `region`).
    #[serde(default)]
    pub signature: SignVersion,
    /// Region, for signature v4 (`cn-hangzhou`).
    #[serde(default)]
    pub region: Option<String>,
    /// Compress bodies with lz4 (as the official SDKs do by default).
    #[serde(default = "yes")]
    pub compress: bool,
    /// Batching.
    #[serde(default)]
    pub batch: Batch,
    /// Outage buffer.
    #[serde(default)]
    pub buffer: Buffer,
    /// Request timeout.
    #[serde(default = "request_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// OSS sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OssConfig {
    /// Region endpoint, `oss-cn-hangzhou.aliyuncs.com` (virtual-hosted: `{bucket}.{endpoint}`),
    /// or a full URL used as is.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix before `logs/...` (e.g. `flink/`).
    #[serde(default)]
    pub prefix: String,
    /// Credentials.
    #[serde(default)]
    pub credentials: Credentials,
    /// Signature version (`v4` needs `region`).
    #[serde(default)]
    pub signature: SignVersion,
    /// Region, for signature v4.
    #[serde(default)]
    pub region: Option<String>,
    /// Batching.
    #[serde(default)]
    pub batch: Batch,
    /// Outage buffer.
    #[serde(default)]
    pub buffer: Buffer,
    /// Request timeout.
    #[serde(default = "request_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn check_batch(field: &str, b: &Batch) -> Result<(), ConfigError> {
    if b.max_events == 0 {
        return Err(ConfigError::invalid(
            format!("{field}.batch.max_events"),
            "must be greater than zero",
        ));
    }
    if b.timeout.is_zero() {
        return Err(ConfigError::invalid(
            format!("{field}.batch.timeout"),
            "must be greater than zero",
        ));
    }
    Ok(())
}

fn check_sign(field: &str, v: SignVersion, region: &Option<String>) -> Result<(), ConfigError> {
    if v == SignVersion::V4 && region.as_deref().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            format!("{field}.region"),
            "is required with signature v4",
        ));
    }
    Ok(())
}

impl ServiceConfig for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, input) in self.inputs.iter().enumerate() {
            glob::Pattern::new(&input.glob).map_err(|e| {
                ConfigError::invalid(format!("inputs[{i}].glob"), format!("is not a glob: {e}"))
            })?;
        }
        if self.multiline.max_lines == 0 || self.multiline.max_bytes == 0 {
            return Err(ConfigError::invalid(
                "multiline.max_lines",
                "and max_bytes must be greater than zero",
            ));
        }
        if let Some(d) = &self.sinks.dir {
            check_batch("sinks.dir", &d.batch)?;
        }
        if let Some(s) = &self.sinks.sls {
            check_batch("sinks.sls", &s.batch)?;
            if s.batch.max_events > 4096 {
                return Err(ConfigError::invalid(
                    "sinks.sls.batch.max_events",
                    "must be at most 4096 (the PutLogs limit)",
                ));
            }
            check_sign("sinks.sls", s.signature, &s.region)?;
            for (f, v) in [
                ("endpoint", &s.endpoint),
                ("project", &s.project),
                ("logstore", &s.logstore),
            ] {
                if v.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("sinks.sls.{f}"),
                        "is required",
                    ));
                }
            }
        }
        if let Some(o) = &self.sinks.oss {
            check_batch("sinks.oss", &o.batch)?;
            check_sign("sinks.oss", o.signature, &o.region)?;
            if o.endpoint.is_empty() || o.bucket.is_empty() {
                return Err(ConfigError::invalid(
                    "sinks.oss.bucket",
                    "and sinks.oss.endpoint are required",
                ));
            }
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError::invalid(
                "poll_interval",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// How often, at most, checkpoints are stored after acknowledged batches by default.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How often files are polled by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

impl Default for Config {
    fn default() -> Self {
        Self {
            inputs: Vec::new(),
            multiline: MultilineConfig::default(),
            labels: Labels::default(),
            pod_labels_file: None,
            utc_offset_seconds: 0,
            poll_interval: DEFAULT_POLL_INTERVAL,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            sinks: Sinks::default(),
            kubernetes: crate::kubernetes::KubernetesConfig::default(),
            local_cluster_logs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(yaml: &str) -> Result<Config, String> {
        common::config::from_yaml_str::<Config>(yaml, Path::new("ls.yml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_errors_name_the_field() {
        let c = load("").unwrap();
        assert_eq!(c.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(c.checkpoint_interval, Duration::from_secs(1));
        assert_eq!(
            load("checkpoint_interval: 0s\n")
                .unwrap()
                .checkpoint_interval,
            Duration::ZERO
        );
        let err = load("checkpoint_interval: soon\n").unwrap_err();
        assert!(err.contains("checkpoint_interval"), "{err}");
        assert!(c.sinks.sls.is_none());
        let err = load("sinks:\n  sls: {endpoint: e, project: p, logstore: l, signature: v4}\n")
            .unwrap_err();
        assert_eq!(
            err,
            "invalid config: `sinks.sls.region` is required with signature v4"
        );
        let err =
            load("sinks:\n  oss: {endpoint: e, bucket: b, batch: {max_events: 0, timeout: 1s}}\n")
                .unwrap_err();
        assert!(err.contains("sinks.oss.batch.max_events"), "{err}");
        let err = load("sinks:\n  sls: {endpoint: e, project: p, logstore: l, batch: {max_events: 5000, timeout: 1s}}\n")
            .unwrap_err();
        assert!(err.contains("4096"), "{err}");
        let err = load("inputs: [{glob: 'log/[.log'}]\n").unwrap_err();
        assert!(err.contains("inputs[0].glob"), "{err}");
        let err =
            load("sinks: {sls: {endpoint: e, project: p, logstore: l, bogus: 1}}\n").unwrap_err();
        assert!(err.contains("bogus") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn credentials_come_from_a_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let c = Credentials {
            access_key_id: Some("id".into()),
            access_key_secret: Secret::default(),
            access_key_secret_file: Some(f),
        };
        let (id, secret) = c.resolve("sinks.sls").unwrap();
        assert_eq!((id.as_str(), secret.expose()), ("id", "s3cr3t"));
        let shown = serde_yaml::to_string(&Credentials {
            access_key_secret: Secret::new("s3cr3t"),
            ..c
        })
        .unwrap();
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
