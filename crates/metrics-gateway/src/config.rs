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
    /// Where to send the recorded samples and rule results (Prometheus's `remote_write`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<crate::remote_write::RemoteWriteConfig>,
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
        check_ttls(self.push.group_ttl, self.push.max_group_ttl, TTL_FIELDS)?;
        crate::remote_write::config::validate_all(&self.remote_write)?;
        Ok(())
    }
}

/// The `push.group_ttl` and `push.max_group_ttl` fields, as [`check_ttls`] names them.
pub const TTL_FIELDS: [&str; 2] = ["push.group_ttl", "push.max_group_ttl"];

/// The maximum TTL must be greater than zero and the default TTL (if any) no longer than
/// it. `fields` names the default and the maximum in the error (config fields or flags).
pub fn check_ttls(
    default: Option<Duration>,
    max: Duration,
    fields: [&str; 2],
) -> Result<(), ConfigError> {
    let [ttl_field, max_field] = fields;
    if max.is_zero() {
        return Err(ConfigError::invalid(max_field, "must be greater than zero"));
    }
    if let Some(ttl) = default.filter(|d| *d > max) {
        return Err(ConfigError::invalid(
            ttl_field,
            format!(
                "({}) must not be longer than `{max_field}` ({})",
                promql_parser::util::display_duration(&ttl),
                promql_parser::util::display_duration(&max)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        common::config::from_yaml_str(yaml, Path::new("gw.yml"))
    }

    #[test]
    fn ttls_must_fit_under_a_positive_maximum() {
        let cfg = load("push:\n  group_ttl: 1h\n").unwrap();
        assert_eq!(cfg.push.max_group_ttl, DEFAULT_MAX_GROUP_TTL);
        assert_eq!(cfg.push.max_labels_per_series, 64);
        let err = load("push:\n  group_ttl: 2d\n  max_group_ttl: 1d\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`push.group_ttl` (2d) must not be longer than `push.max_group_ttl` (1d)"),
            "{err}"
        );
        let err = load("push:\n  max_group_ttl: 0s\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`push.max_group_ttl` must be greater than zero"),
            "{err}"
        );
        // The rule groups are loaded with the config, never read from the file.
        assert!(load("rules: []\n").is_err());
    }
}
