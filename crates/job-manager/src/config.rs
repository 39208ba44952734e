//! The service's configuration file.
//!
//! A reload (SIGHUP, `POST /-/reload`) applies every field to what happens next (the next
//! request, reconcile step or download), except `store.url`, `store.password_file` and
//! `leader_election`: a reload that changes them is refused naming the field, and the
//! running config stays.

use std::time::Duration;

use common::{config::unchanged, ConfigError, ServiceConfig};
use serde::{Deserialize, Serialize};

const DEFAULT_POLL: Duration = Duration::from_secs(2);
const DEFAULT_UNSTABLE_WINDOW: Duration = Duration::from_secs(600);
const DEFAULT_UNSTABLE_RESTARTS: u64 = 3;
const DEFAULT_CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(180);
const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(60);

/// The YAML configuration of job-manager. Every field has a default, so an empty file (or none)
/// is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The reconciling controller.
    pub controller: ControllerConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Artifact storage.
    pub artifacts: ArtifactsConfig,
    /// The metrics-gateway whose metric groups of stopped deployments are deleted.
    pub metrics_gateway: MetricsGatewayConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The Kubernetes target: Flink image per Flink version, default Flink version, the
    /// JAR fetcher's image.
    pub kubernetes: crate::kubernetes::Settings,
    /// Where the store lives (read at start, so a reload cannot change it; `--store.url`
    /// overrides `url`).
    pub store: StoreConfig,
    /// Which replica reconciles when several share a PostgreSQL store (read at start).
    pub leader_election: crate::leader::LeaderElectionConfig,
}

/// The store: embedded files under `--data-dir` (no `url`) or PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER@HOST:PORT/DB`; unset: the embedded store.
    pub url: Option<String>,
    /// File holding the database password (trailing newline ignored).
    pub password_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest accepted JSON or YAML request body in bytes (413 beyond). Artifact uploads
    /// have their own limit, `artifacts.max_upload_bytes`. Applied at reload.
    pub max_body_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// How often running jobs are observed (status, restarts, savepoints due).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Restarts within `unstable_window` that raise the JobUnstable condition.
    pub unstable_restarts: u64,
    /// The window for `unstable_restarts`.
    #[serde(with = "humantime_serde")]
    pub unstable_window: Duration,
    /// How long a local cluster may take to accept a job before the attempt fails.
    #[serde(with = "humantime_serde")]
    pub cluster_start_timeout: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL,
            unstable_restarts: DEFAULT_UNSTABLE_RESTARTS,
            unstable_window: DEFAULT_UNSTABLE_WINDOW,
            cluster_start_timeout: DEFAULT_CLUSTER_START_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Header carrying the authenticated user id from a trusted auth proxy (e.g.
    /// `X-Forwarded-User`). Unset: the header is ignored. Only set it when every request
    /// reaches job-manager through that proxy.
    pub proxy_user_header: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// Largest accepted upload in bytes (413 beyond); also the cap of a remote download.
    pub max_upload_bytes: u64,
    /// Remote (`http://`, `https://`) jarUris. Unset lists: remote jarUris are refused, only
    /// artifacts of the namespace's own store (`file:` URIs) can run.
    pub remote: RemoteArtifactsConfig,
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            remote: RemoteArtifactsConfig::default(),
        }
    }
}

/// Which remote jarUris the manager may download. Both a scheme and the host must be listed.
/// Loopback, link-local, unspecified, multicast and cloud metadata addresses
/// (`169.254.169.254`, `100.100.100.200`) are refused, also when a listed host name resolves
/// to them, unless the address itself is listed in `allowed_hosts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteArtifactsConfig {
    /// `http` and/or `https`. Empty (the default): remote jarUris are refused.
    pub allowed_schemes: Vec<String>,
    /// Host names (`repo.example.com`), subdomain wildcards (`*.example.com`) or IP
    /// addresses (`10.0.0.7`) that jarUris may name.
    pub allowed_hosts: Vec<String>,
    /// Time limit of one download (connect, headers and body).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RemoteArtifactsConfig {
    fn default() -> Self {
        Self {
            allowed_schemes: Vec::new(),
            allowed_hosts: Vec::new(),
            timeout: DEFAULT_REMOTE_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsGatewayConfig {
    /// Base URL, e.g. `http://metrics-gateway:9091`. Unset: nothing is deleted.
    pub url: Option<String>,
}

impl ServiceConfig for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.controller.poll_interval.is_zero() {
            return Err(ConfigError::invalid(
                "controller.poll_interval",
                "must be greater than zero",
            ));
        }
        self.leader_election
            .validate()
            .map_err(|(field, message)| {
                ConfigError::invalid(format!("leader_election.{field}"), message)
            })?;
        if self.controller.unstable_restarts == 0 {
            return Err(ConfigError::invalid(
                "controller.unstable_restarts",
                "must be at least 1",
            ));
        }
        self.kubernetes.validate().map_err(|(field, message)| {
            ConfigError::invalid(format!("kubernetes.{field}"), message)
        })?;
        if self.artifacts.max_upload_bytes == 0 {
            return Err(ConfigError::invalid(
                "artifacts.max_upload_bytes",
                "must be greater than zero",
            ));
        }
        let remote = &self.artifacts.remote;
        for (i, scheme) in remote.allowed_schemes.iter().enumerate() {
            if !["http", "https"].contains(&scheme.as_str()) {
                return Err(ConfigError::invalid(
                    format!("artifacts.remote.allowed_schemes[{i}]"),
                    format!("{scheme:?} is not supported: use http or https"),
                ));
            }
        }
        for (i, host) in remote.allowed_hosts.iter().enumerate() {
            if let Err(why) = crate::artifacts::remote::check_host_pattern(host) {
                return Err(ConfigError::invalid(
                    format!("artifacts.remote.allowed_hosts[{i}]"),
                    why,
                ));
            }
        }
        if remote.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "artifacts.remote.timeout",
                "must be greater than zero",
            ));
        }
        if self.api.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "api.max_body_bytes",
                "must be greater than zero",
            ));
        }
        if let Some(u) = &self.metrics_gateway.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "metrics_gateway.url",
                    "must start with http:// or https://",
                ));
            }
        }
        if let Some(u) = &self.store.url {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(ConfigError::invalid(
                    "store.url",
                    "must start with postgres:// (unset for the embedded store)",
                ));
            }
            if url::Url::parse(u).is_ok_and(|p| p.password().is_some_and(|p| !p.is_empty())) {
                return Err(ConfigError::invalid(
                    "store.url",
                    "must not carry a password: put it in the file store.password_file names",
                ));
            }
        }
        if let Some(h) = &self.auth.proxy_user_header {
            if h.is_empty() || axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    "auth.proxy_user_header",
                    "must be a valid HTTP header name",
                ));
            }
        }
        Ok(())
    }

    /// Every field applies at reload (each is read from the live config where it is used)
    /// except the store's and the leader election's: both are set up once, at start.
    fn check_reload(&self, reloaded: &Self) -> Result<(), ConfigError> {
        unchanged(
            "leader_election",
            &self.leader_election,
            &reloaded.leader_election,
        )?;
        unchanged("store.url", &self.store.url, &reloaded.store.url)?;
        unchanged(
            "store.password_file",
            &self.store.password_file,
            &reloaded.store.password_file,
        )
    }
}
