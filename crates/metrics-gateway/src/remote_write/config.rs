//! `remote_write:` in the config file, in Prometheus's shape.

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

use super::relabel::RelabelConfig;

/// Headers the gateway sets itself; a `headers:` entry may not replace them.
const RESERVED_HEADERS: [&str; 6] = [
    "authorization",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "x-prometheus-remote-write-version",
];

/// Most shards one remote may have (each is a task with its own connection).
pub const MAX_SHARDS: usize = 1_000;

/// One `remote_write` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The endpoint, `http://` or `https://`.
    pub url: String,
    /// The name in our metrics' `remote` label; default: the URL's host and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Timeout of one request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub remote_timeout: Duration,
    /// Extra request headers (values shown redacted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: <type> <credentials>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// A file holding a bearer token (Prometheus's older spelling of `authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// The queue and batching.
    #[serde(default)]
    pub queue_config: QueueConfig,
    /// Relabelling applied to each series before it is queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `basic_auth:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub password: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `authorization:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme; default `Bearer`.
    #[serde(default = "bearer", rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub credentials: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

fn bearer() -> String {
    "Bearer".to_string()
}

/// `queue_config:`, Prometheus's fields and defaults, plus `shard_update_interval`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most samples waiting in one shard; more are dropped and counted.
    pub capacity: usize,
    /// Fewest shards (concurrent senders); also the number at start.
    pub min_shards: usize,
    /// Most shards.
    pub max_shards: usize,
    /// Most samples in one request.
    pub max_samples_per_send: usize,
    /// Longest a sample waits for its batch to fill.
    #[serde(with = "humantime_serde")]
    pub batch_send_deadline: Duration,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How often the number of shards is reconsidered (Prometheus: fixed at 10 s).
    #[serde(with = "humantime_serde")]
    pub shard_update_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            min_shards: 1,
            max_shards: 50,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            shard_update_interval: Duration::from_secs(10),
        }
    }
}

impl RemoteWriteConfig {
    /// The `remote` label of our metrics: `name`, else the URL's host, port and path
    /// (never its user info or query, which may hold secrets).
    pub fn remote_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match url::Url::parse(&self.url) {
            Ok(u) => format!(
                "{}{}{}",
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                u.path()
            ),
            Err(_) => String::new(),
        }
    }

    /// Checks the entry; `at` is its field path (`remote_write[0]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let f = |name: &str| format!("{at}.{name}");
        let url = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::invalid(f("url"), format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                f("url"),
                format!("scheme must be http or https, not `{}`", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(f("url"), "has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::invalid(
                f("url"),
                "must not carry user info; use basic_auth",
            ));
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ConfigError::invalid(f("name"), "must not be empty"));
        }
        if self.remote_timeout.is_zero() {
            return Err(ConfigError::invalid(
                f("remote_timeout"),
                "must be greater than zero",
            ));
        }
        for (name, value) in &self.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::invalid(
                    f(&format!("headers.{name}")),
                    "is set by the gateway and cannot be overridden",
                ));
            }
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    f(&format!("headers.{name}")),
                    "is not a valid header name",
                ));
            }
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err(ConfigError::invalid(
                    f(&format!("headers.{name}")),
                    "value is not a valid header value",
                ));
            }
        }
        let auths = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token_file.is_some(),
        ];
        if auths.iter().filter(|b| **b).count() > 1 {
            return Err(ConfigError::invalid(
                at,
                "at most one of `basic_auth`, `authorization` and `bearer_token_file` may be set",
            ));
        }
        if let Some(b) = &self.basic_auth {
            if b.username.is_empty() {
                return Err(ConfigError::invalid(
                    f("basic_auth.username"),
                    "must not be empty",
                ));
            }
            if !b.password.is_empty() && b.password_file.is_some() {
                return Err(ConfigError::invalid(
                    f("basic_auth"),
                    "at most one of `password` and `password_file` may be set",
                ));
            }
        }
        if let Some(a) = &self.authorization {
            if a.kind.trim().is_empty() || a.kind.eq_ignore_ascii_case("basic") {
                return Err(ConfigError::invalid(
                    f("authorization.type"),
                    "must be a scheme other than Basic (use basic_auth)",
                ));
            }
            if !a.credentials.is_empty() && a.credentials_file.is_some() {
                return Err(ConfigError::invalid(
                    f("authorization"),
                    "at most one of `credentials` and `credentials_file` may be set",
                ));
            }
        }
        let q = &self.queue_config;
        for (name, zero) in [
            ("capacity", q.capacity == 0),
            ("min_shards", q.min_shards == 0),
            ("max_shards", q.max_shards == 0),
            ("shard_update_interval", q.shard_update_interval.is_zero()),
            ("max_samples_per_send", q.max_samples_per_send == 0),
            ("batch_send_deadline", q.batch_send_deadline.is_zero()),
            ("min_backoff", q.min_backoff.is_zero()),
            ("max_backoff", q.max_backoff.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::invalid(
                    f(&format!("queue_config.{name}")),
                    "must be greater than zero",
                ));
            }
        }
        if q.min_shards > q.max_shards {
            return Err(ConfigError::invalid(
                f("queue_config.min_shards"),
                "must not be greater than `max_shards`",
            ));
        }
        if q.max_shards > MAX_SHARDS {
            return Err(ConfigError::invalid(
                f("queue_config.max_shards"),
                format!("must be at most {MAX_SHARDS}"),
            ));
        }
        if q.min_backoff > q.max_backoff {
            return Err(ConfigError::invalid(
                f("queue_config.min_backoff"),
                "must not be greater than `max_backoff`",
            ));
        }
        for (i, r) in self.write_relabel_configs.iter().enumerate() {
            r.compile()
                .map_err(|m| ConfigError::invalid(f(&format!("write_relabel_configs[{i}]")), m))?;
        }
        Ok(())
    }
}

/// Checks every entry and that their `remote` names differ.
pub fn validate_all(list: &[RemoteWriteConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, rw) in list.iter().enumerate() {
        let at = format!("remote_write[{i}]");
        rw.validate(&at)?;
        if !seen.insert(rw.remote_name()) {
            return Err(ConfigError::invalid(
                at,
                format!(
                    "`{}` is used by another entry; give each a distinct `name`",
                    rw.remote_name()
                ),
            ));
        }
    }
    Ok(())
}
