//! The service's configuration file.

use std::time::Duration;

use common::{ConfigError, ServiceConfig};
use serde::{Deserialize, Serialize};

/// Default limit on a push body, after decompression (bytes).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The YAML configuration of metrics-gateway. Every field has a default, so an empty file (or none)
/// is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Push handling: group expiry and limits. Flags of the same meaning take precedence.
    pub push: PushConfig,
    /// Prometheus rule files to evaluate (globs, as Prometheus's `rule_files`; relative paths
    /// are relative to this file's directory). Added to those of `--rule.file`, reloaded
    /// with this file.
    pub rule_files: Vec<String>,
}

/// Group expiry and limits (`push:` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Groups not changed for this long are removed (e.g. `1h`); absent or `0s` = never.
    /// A push may set its own TTL with `?ttl=` or the `X-Group-TTL` header.
    #[serde(with = "humantime_serde")]
    pub group_ttl: Option<Duration>,
    /// Largest accepted push body in bytes, after gzip decompression (0 = no limit).
    pub max_body_bytes: u64,
    /// Most series one group may hold (0 = no limit).
    pub max_series_per_group: usize,
    /// Most series the gateway may hold in total (0 = no limit).
    pub max_total_series: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            group_ttl: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_series_per_group: 0,
            max_total_series: 0,
        }
    }
}

impl ServiceConfig for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(i) = self.rule_files.iter().position(|g| g.trim().is_empty()) {
            return Err(ConfigError::invalid(
                format!("rule_files[{i}]"),
                "must not be empty",
            ));
        }
        Ok(())
    }
}
