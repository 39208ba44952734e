//! Flink deployment lifecycle manager with a Ververica Platform-compatible API.
//!
//! Users upload a JAR, create a Deployment, start it, suspend it with a savepoint, change its
//! configuration; the manager drives Flink to the desired state and records every step.
//!
//! # Layout
//! - [`config`]: the YAML configuration file.
//! - [`artifacts`]: the per-namespace artifact store and what a `jarUri` may point at
//!   ([`artifacts::remote`]: allowed remote URIs and their capped download).
//! - [`model`]: the resources (Deployment, Job, Savepoint, Event, DeploymentTarget,
//!   Namespace, ApiToken) in VVP AppManager v1 shapes.
//! - [`store`]: the durable embedded store under `--data-dir` (atomic, versioned files).
//! - [`api`]: the HTTP API (envelope, JSON/YAML bodies, validation) and [`api::auth`], the
//!   owner/editor/viewer matrix.
//! - [`domain`]: rules below the API and the CLI: what makes a deployment or a target
//!   valid (typed errors naming the field), the built-in defaults, names, namespace
//!   creation, token hashing.
//! - [`controller`]: the reconciling controller (transitions, upgrades, savepoints, health);
//!   [`clock`]: its wall-clock seam (tests run it under tokio's paused time).
//! - [`flink`]: the Flink REST seam: [`flink::rest`] (real) and [`flink::fake`].
//! - [`provider`]: one [`provider::ClusterProvider`] per target kind (`local`, `session`):
//!   bring up, adopt, observe and tear down a job's cluster, its directories and logs.
//! - [`target`]: deployment targets; `local` starts a standalone cluster per job.
//! - [`kubernetes`]: the Kubernetes target's objects (ConfigMap, JobManager Job and Service,
//!   TaskManager Deployment) built from a deployment without a cluster, and its RBAC.
//! - [`cli`]: the `render` and `rbac` subcommands beside the server.
//! - [`template`]: placeholders in Flink configuration and the log4j2 template.
//! - [`leader`]: which replica reconciles (PostgreSQL advisory lock or Kubernetes Lease).
//! - [`metrics`]: the service's own metrics.
//! - [`console`]: the web console at `/` and the Flink UI proxy under `/flink/`.
//! - [`testing`]: an in-process manager over the fake Flink (tests, benchmark).

pub mod api;
pub mod artifacts;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod controller;
pub mod domain;
pub mod flink;
pub mod kubernetes;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod store;
pub mod target;
pub mod template;
pub mod testing;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::Router;
use chrono::Utc;
use clap::Parser;
use common::{server, ConfigHandle, Lifecycle, Secret, ServiceInfo};

pub use config::Config;

use crate::{
    api::AppState,
    controller::{Controller, Settings},
    domain::tokens::ADMIN_NAMESPACE,
    flink::Flink,
    model::Namespace,
    store::{Store, StoredToken, Write1},
    target::LocalClusters,
};

/// Names, metric prefix and default port.
pub const INFO: ServiceInfo = ServiceInfo {
    name: "job-manager",
    metric_prefix: "job_manager",
    default_listen: "0.0.0.0:8080",
};

/// The namespace that exists from the first start.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The deployment target every namespace has.
pub const LOCAL_TARGET: &str = "local";
/// Environment variable holding the bootstrap owner token.
pub const BOOTSTRAP_ENV: &str = "JOB_MANAGER_BOOTSTRAP_TOKEN";
/// Shortest accepted bootstrap token (characters).
pub const MIN_BOOTSTRAP_TOKEN_LEN: usize = 16;

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "job-manager",
    version,
    about = "Flink deployment lifecycle manager with a Ververica Platform-compatible API."
)]
pub struct Args {
    #[command(flatten)]
    pub common: common::CommonArgs,

    /// Directory for the store, artifacts, savepoints and local clusters.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "data/job-manager"
    )]
    pub data_dir: PathBuf,

    /// Flink distribution for the `local` deployment target.
    #[arg(long = "flink-home", value_name = "DIR", env = "FLINK_HOME")]
    pub flink_home: Option<PathBuf>,

    /// File holding the bootstrap owner token (alternative to the
    /// JOB_MANAGER_BOOTSTRAP_TOKEN environment variable).
    #[arg(long = "bootstrap-token-file", value_name = "PATH")]
    pub bootstrap_token_file: Option<PathBuf>,

    /// PostgreSQL store, `postgres://USER@HOST:PORT/DB` (overrides `store.url` of the
    /// config file); unset: the embedded store under --data-dir.
    #[arg(long = "store.url", value_name = "URL")]
    pub store_url: Option<String>,

    /// File holding the database password (overrides `store.password_file`).
    #[arg(long = "store.password-file", value_name = "PATH")]
    pub store_password_file: Option<PathBuf>,

    /// Elect the reconciling replica with this `coordination.k8s.io/v1` Lease (overrides
    /// `leader_election.lease`); unset: PostgreSQL's advisory lock.
    #[arg(long = "leader-election.lease", value_name = "NAME")]
    pub leader_election_lease: Option<String>,
}

impl Args {
    /// The flags the one-process suite uses: defaults, state under `data_dir`.
    pub fn for_suite(data_dir: &Path) -> Self {
        let mut a = Self::parse_from([INFO.name]);
        a.data_dir = data_dir.to_path_buf();
        a
    }
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] common::ConfigError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Leader(#[from] leader::Error),
    #[error("cannot read bootstrap token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bootstrap token from {origin} is {len} characters long; at least {MIN_BOOTSTRAP_TOKEN_LEN} are required (e.g. the output of `openssl rand -hex 32`)")]
    TokenTooShort { origin: String, len: usize },
}

/// Opens the store and makes sure the `default` namespace (with its `local` target) exists
/// and the bootstrap token, if given, is registered. Without one, a bootstrap token stored
/// by an earlier start is revoked: removing it from the config or environment takes its
/// power away at the next start.
pub fn open_store(data_dir: &Path, bootstrap: Option<&Secret>) -> Result<Arc<Store>, Error> {
    if let Some(secret) = bootstrap {
        check_bootstrap_len(secret, "the configuration")?;
    }
    prepare_store(Store::open(data_dir)?, bootstrap)
}

/// [`open_store`] for an opened store (any backend).
pub fn prepare_store(store: Store, bootstrap: Option<&Secret>) -> Result<Arc<Store>, Error> {
    if let Some(secret) = bootstrap {
        check_bootstrap_len(secret, "the configuration")?;
    }
    let mut writes = vec![];
    {
        let t = store.read();
        if !t.namespaces.contains_key(DEFAULT_NAMESPACE) {
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": {"name": DEFAULT_NAMESPACE, "resourceVersion": 1, "createdAt": Utc::now()}
            }))
            .map_err(|e| store::Error::Encode {
                what: "default namespace".into(),
                source: e,
            })?;
            writes.extend(domain::namespaces::new_namespace_writes(ns));
        }
        if let Some(secret) = bootstrap {
            let hash = domain::tokens::hash_secret(secret.expose());
            let key = (ADMIN_NAMESPACE.to_string(), "bootstrap".to_string());
            if t.tokens.get(&key).map(|k| &k.secret_hash) != Some(&hash) {
                writes.push(Write1::Token(StoredToken {
                    token: model::ApiToken {
                        name: "bootstrap".into(),
                        namespace: ADMIN_NAMESPACE.into(),
                        role: model::Role::Owner,
                        created_at: Utc::now(),
                    },
                    secret_hash: hash,
                }));
            }
        } else {
            let key = (ADMIN_NAMESPACE.to_string(), "bootstrap".to_string());
            if t.tokens.contains_key(&key) {
                tracing::warn!(
                    "Revoked the bootstrap token of an earlier start: none is configured now."
                );
                writes.push(Write1::RemoveToken(key.0, key.1));
            }
        }
    }
    if !writes.is_empty() {
        store.write(writes)?;
    }
    Ok(Arc::new(store))
}

fn check_bootstrap_len(secret: &Secret, origin: &str) -> Result<(), Error> {
    let len = secret.expose().chars().count();
    if len < MIN_BOOTSTRAP_TOKEN_LEN {
        return Err(Error::TokenTooShort {
            origin: origin.to_string(),
            len,
        });
    }
    Ok(())
}

/// The bootstrap token from the file flag or the environment; one shorter than
/// [`MIN_BOOTSTRAP_TOKEN_LEN`] is an error naming where it came from (never the token).
pub fn bootstrap_token(args: &Args) -> Result<Option<Secret>, Error> {
    let (token, origin) = if let Some(path) = &args.bootstrap_token_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
            path: path.clone(),
            source,
        })?;
        let t = text.trim();
        (
            (!t.is_empty()).then(|| Secret::new(t)),
            format!("--bootstrap-token-file {}", path.display()),
        )
    } else {
        (
            std::env::var(BOOTSTRAP_ENV)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            BOOTSTRAP_ENV.to_string(),
        )
    };
    if let Some(t) = &token {
        check_bootstrap_len(t, &origin)?;
    }
    Ok(token)
}

/// The controller settings a config implies.
pub fn settings(c: &Config) -> Settings {
    Settings {
        poll_interval: c.controller.poll_interval,
        unstable_restarts: c.controller.unstable_restarts,
        unstable_window: c.controller.unstable_window,
        cluster_start_timeout: c.controller.cluster_start_timeout,
        metrics_gateway: c.metrics_gateway.url.clone(),
        artifacts: c.artifacts.clone(),
        kubernetes: c.kubernetes.clone(),
    }
}

/// The API state and a controller over `flink`, sharing one store.
pub fn assemble<F: Flink>(
    store: Arc<Store>,
    flink: Arc<F>,
    data_dir: &Path,
    flink_home: Option<PathBuf>,
    config: ConfigHandle<Config>,
    metrics: metrics::Metrics,
    clock: clock::SharedClock,
) -> (AppState, Arc<Controller<F>>) {
    let gateway = config.clone();
    let local = LocalClusters::new(flink_home, data_dir)
        .with_metrics_gateway(move || gateway.current().metrics_gateway.url.clone());
    let state = AppState {
        store: store.clone(),
        data_dir: data_dir.to_path_buf(),
        local: local.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
    };
    let cfg = config.clone();
    let controller = Arc::new(Controller::new(
        store,
        flink,
        local,
        Arc::new(move || settings(&cfg.current())),
        data_dir.to_path_buf(),
        metrics,
        clock,
    ));
    (state, controller)
}

/// The API router and the [`console`] for a state (what tests drive with `oneshot`).
pub fn app(state: AppState) -> Router {
    api::router(state.clone()).merge(console::router(state))
}

/// `path` made absolute against the working directory (not canonicalised: symlinks stay).
/// Flink refuses relative upload directories and `file://./x` is not a URI users can use,
/// so every path the manager hands to Flink or shows to users derives from absolute ones.
pub fn absolute_path(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| {
        Error::Store(store::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Runs the service until `lifecycle` asks it to stop.
///
/// The data directory and `FLINK_HOME` are resolved to absolute paths once, here.
pub async fn run(mut args: Args, lifecycle: Lifecycle) -> Result<(), Error> {
    args.data_dir = absolute_path(&args.data_dir)?;
    if let Some(home) = &args.flink_home {
        args.flink_home = Some(absolute_path(home)?);
    }
    let registry = common::telemetry::new_registry(INFO.metric_prefix);
    let config = ConfigHandle::<Config>::from_file(
        INFO.metric_prefix,
        &registry,
        args.common.config_file.clone(),
    )?;
    let bootstrap = bootstrap_token(&args)?;
    // Read once; nothing this process starts later may inherit it (local Flink processes
    // also get a cleared environment, see `target`).
    std::env::remove_var(BOOTSTRAP_ENV);
    if bootstrap.is_none() {
        tracing::warn!(
            "No bootstrap token (set {BOOTSTRAP_ENV} or --bootstrap-token-file): only previously created API tokens can call the API."
        );
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|source| store::Error::Io {
        path: args.data_dir.clone(),
        source,
    })?;
    let store_config = config.current().store.clone();
    let store_url = args.store_url.as_deref().or(store_config.url.as_deref());
    let mut election = config.current().leader_election.clone();
    if let Some(lease) = &args.leader_election_lease {
        election.lease = Some(lease.clone());
    }
    if let Err((field, message)) = election.validate() {
        return Err(leader::Error::Invalid { field, message }.into());
    }
    let mut lease_release = None;
    let mut store = Store::open_with(
        &args.data_dir,
        store_url,
        args.store_password_file
            .as_deref()
            .or(store_config.password_file.as_deref()),
        election.lease.is_none(),
    )?;
    if let Some(lease) = &election.lease {
        if store_url.is_none() {
            return Err(leader::Error::NeedsSharedStore.into());
        }
        let client = kube::Client::try_default()
            .await
            .map_err(|e| leader::Error::Client(e.to_string()))?;
        let elector = leader::LeaseElector::new(
            client,
            &leader::namespace(&election)?,
            lease,
            &leader::identity(),
            leader::Timing::from(&election),
        );
        store = store.with_leadership(elector.leadership());
        // Released once the controller has stopped, never while its steps still run.
        let (stopped, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(elector.run(async move {
            let _ = stop.await;
        }));
        lease_release = Some((stopped, task));
    }
    let store = prepare_store(store, bootstrap.as_ref())?;
    let metrics = metrics::Metrics::register(INFO.metric_prefix, &registry);
    let flink = Arc::new(flink::rest::RestFlink::default());
    let (state, controller) = assemble(
        store,
        flink,
        &args.data_dir,
        args.flink_home.clone(),
        config.clone(),
        metrics,
        Arc::new(clock::SystemClock),
    );
    let ctl = tokio::spawn(controller.run(lifecycle.shutdown()));
    let listener = server::bind(args.common.listen_addr(&INFO)).await?;
    let endpoints = server::Endpoints::new(INFO.metric_prefix, registry, Arc::new(config));
    let served = server::serve(listener, app(state), endpoints, lifecycle.clone()).await;
    lifecycle.request_shutdown();
    let _ = ctl.await;
    if let Some((stopped, task)) = lease_release {
        let _ = stopped.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    served?;
    Ok(())
}
