//! The service's configuration file.

use std::{sync::Arc, time::Duration};

use common::{ConfigError, ServiceConfig};
use promql_engine::rules::file::RuleGroup;
use serde::{Deserialize, Serialize};

use crate::limits::{
    DEFAULT_MAX_LABELS_PER_SERIES, DEFAULT_MAX_LABEL_NAME_LENGTH, DEFAULT_MAX_LABEL_VALUE_LENGTH,
};

/// Default limit on a push body, after decompression (bytes).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Default longest group TTL a push may ask for (`?ttl=`, `X-Group-TTL`): one year.
pub const DEFAULT_MAX_GROUP_TTL: Duration = Duration::from_secs(365 * 86_400);

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
    /// The rule groups of `rule_files` and `--rule.file`, loaded and validated with this
    /// config ([`crate::rules::config_handle`]); `None` when neither names a file. Not part
    /// of the file.
    #[serde(skip)]
    pub rules: Option<Arc<Vec<RuleGroup>>>,
}

/// Group expiry and limits (`push:` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Groups not changed for this long are removed (e.g. `1h`); absent or `0s` = never.
    /// A push may set its own TTL with `?ttl=` or the `X-Group-TTL` header.
    #[serde(with = "humantime_serde")]
    pub group_ttl: Option<Duration>,
    /// Longest TTL a push may ask for; longer → 400. Must be greater than zero, and at
    /// least `group_ttl`.
    #[serde(with = "humantime_serde")]
    pub max_group_ttl: Duration,
    /// Largest accepted push body in bytes, after gzip decompression (0 = no limit).
    pub max_body_bytes: u64,
    /// Most series one group may hold (0 = no limit).
    pub max_series_per_group: usize,
    /// Most series the gateway may hold in total (0 = no limit).
    pub max_total_series: usize,
    /// Most labels one series may have, grouping labels included (0 = no limit).
    pub max_labels_per_series: usize,
    /// Longest label name in bytes (0 = no limit).
    pub max_label_name_length: usize,
    /// Longest label value in bytes (0 = no limit).
    pub max_label_value_length: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            group_ttl: None,
            max_group_ttl: DEFAULT_MAX_GROUP_TTL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_series_per_group: 0,
            max_total_series: 0,
            max_labels_per_series: DEFAULT_MAX_LABELS_PER_SERIES,
            max_label_name_length: DEFAULT_MAX_LABEL_NAME_LENGTH,
            max_label_value_length: DEFAULT_MAX_LABEL_VALUE_LENGTH,
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
        check_ttls(&self.push)?;
        Ok(())
    }
}

/// `max_group_ttl` must be greater than zero and `group_ttl` (if any) no longer than it.
fn check_ttls(push: &PushConfig) -> Result<(), ConfigError> {
    if push.max_group_ttl.is_zero() {
        return Err(ConfigError::invalid(
            "push.max_group_ttl",
            "must be greater than zero",
        ));
    }
    if let Some(ttl) = push.group_ttl.filter(|d| *d > push.max_group_ttl) {
        return Err(ConfigError::invalid(
            "push.group_ttl",
            format!(
                "({}) must not be longer than `push.max_group_ttl` ({})",
                promql_parser::util::display_duration(&ttl),
                promql_parser::util::display_duration(&push.max_group_ttl)
            ),
        ));
    }
    Ok(())
}
