//! Tails Flink JobManager and TaskManager logs and ships them to OSS, SLS and a local directory.
//!
//! # Layout
//! - [`tailer`]: following files by path through rename rotation, copytruncate,
//!   delete-and-recreate and inode reuse; file identity = device + inode + fingerprint.
//! - [`multiline`]: joining stack traces to their log line; parsing Flink's log4j layout.
//! - [`record`]: what sinks receive, and the labels (namespace, deployment, job, pod) that
//!   name OSS paths and SLS topics ([`record::LabelSource`] is the discovery seam).
//! - [`route`]: one sink's pipeline: discover → tail → multiline → batch → send → checkpoint.
//! - [`checkpoint`]: versioned, atomically replaced progress files.
//! - [`buffer`]: the bounded outage buffer on disk.
//! - [`kubernetes`]: Kubernetes mode: the suite's pods on this node watched through the API
//!   (`kube-runtime`'s watcher), their container logs under `/var/log/pods` labelled from
//!   them, the pods seen remembered in `{data-dir}/kubernetes-pods.json`.
//! - [`sinks`]: local directory (`sinks::dir`), SLS (`sinks::sls`, with `sinks::sls::proto`
//!   and `sinks::lz4`), OSS (`sinks::oss`); the Alibaba Cloud signer both cloud sinks use
//!   (`sinks::alibaba`).
//! - [`metrics`]: the shipper's own metrics.
//! - [`config`]: the YAML configuration file; a reload applies every field (the pipeline
//!   restarts on the new file where it left off) or fails naming the field.

pub mod buffer;
pub mod checkpoint;
pub mod config;
pub mod kubernetes;
pub mod metrics;
pub mod multiline;
pub mod record;
pub mod route;
pub mod sinks;
pub mod tailer;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::Router;
use clap::Parser;
use common::{server, ConfigHandle, Lifecycle, ServiceConfig, ServiceInfo};

pub use config::Config;

use crate::{
    config::{Batch, Buffer},
    record::StaticLabels,
    route::{InputSpec, Route, RouteConfig},
    sinks::{dir::Format, Sink},
};

/// Names, metric prefix and default port.
pub const INFO: ServiceInfo = ServiceInfo {
    name: "log-shipper",
    metric_prefix: "log_shipper",
    default_listen: "0.0.0.0:8686",
};

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "log-shipper",
    version,
    about = "Tails Flink JobManager and TaskManager logs and ships them to OSS, SLS and a local directory."
)]
pub struct Args {
    #[command(flatten)]
    pub common: common::CommonArgs,

    /// Files to follow (a glob; repeatable). Default: Flink's `log/*.log` and `log/*.out`
    /// under `$FLINK_HOME` (or the working directory), plus any `inputs` of the config file.
    #[arg(long = "input", value_name = "GLOB")]
    pub inputs: Vec<String>,

    /// Ship to this local directory: one output file per input file. Default (when no
    /// other sink is configured): `{data-dir}/output`.
    #[arg(long = "output.dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Format of the local directory sink: `raw` (bytes as written) or `json` (one object
    /// per event).
    #[arg(long = "output.format", value_enum, default_value_t = Format::Raw)]
    pub output_format: Format,

    /// Directory for checkpoints and the outage buffer.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "./data/log-shipper"
    )]
    pub data_dir: PathBuf,

    /// Kubernetes mode: ship the container logs of the suite's pods on this node (`$NODE_NAME`)
    /// from kubelet's `/var/log/pods`, labelled from the Kubernetes API (same as
    /// `kubernetes: {enabled: true}` in the config file, whose other settings apply).
    #[arg(long = "kubernetes")]
    pub kubernetes: bool,

    /// Kubernetes mode: list pods only in this namespace (repeatable; added to the config's
    /// `kubernetes.namespaces`). Without any, pods are listed cluster-wide, which needs a
    /// ClusterRole.
    #[arg(long = "kubernetes.namespace", value_name = "NAMESPACE")]
    pub kubernetes_namespaces: Vec<String>,
}

impl Args {
    /// The flags the one-process suite uses: defaults, state under `data_dir`.
    pub fn for_suite(data_dir: &Path) -> Self {
        let mut a = Self::parse_from([INFO.name]);
        a.data_dir = data_dir.to_path_buf();
        a
    }

    /// The input globs: the flags, or Flink's defaults when neither flags nor config name any.
    pub fn input_globs(&self, config: &Config) -> Vec<InputSpec> {
        let mut v: Vec<InputSpec> = self
            .inputs
            .iter()
            .map(|g| InputSpec {
                glob: g.clone(),
                mode: None,
            })
            .collect();
        v.extend(config.inputs.iter().map(|i| InputSpec {
            glob: i.glob.clone(),
            mode: i.multiline,
        }));
        if self.kubernetes || config.kubernetes.enabled {
            v.push(InputSpec {
                glob: config.kubernetes.glob(),
                mode: Some(
                    config
                        .kubernetes
                        .multiline
                        .unwrap_or(multiline::Mode::Log4jTimestamp),
                ),
            });
        }
        if let Some(dir) = &config.local_cluster_logs {
            for ext in ["log", "out"] {
                v.push(InputSpec {
                    glob: dir
                        .join(format!("*/*/*/*.{ext}"))
                        .to_string_lossy()
                        .into_owned(),
                    mode: None,
                });
            }
        }
        if v.is_empty() {
            let home = std::env::var_os("FLINK_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            for ext in ["log", "out"] {
                v.push(InputSpec {
                    glob: home
                        .join("log")
                        .join(format!("*.{ext}"))
                        .to_string_lossy()
                        .into_owned(),
                    mode: None,
                });
            }
        }
        v
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
    Route(#[from] route::Error),
    #[error("input glob {glob:?} is invalid: {message}")]
    Glob { glob: String, message: String },
}

/// Builds the sinks the flags and the config ask for (the local directory by default).
pub fn build_sinks(args: &Args, config: &Config) -> Result<Vec<(Sink, Batch, Buffer)>, Error> {
    let mut sinks = Vec::new();
    let dir = match (&args.output_dir, &config.sinks.dir) {
        (Some(path), cfg) => Some((
            path.clone(),
            if args.output_format != Format::Raw {
                args.output_format
            } else {
                cfg.as_ref().map(|c| c.format).unwrap_or_default()
            },
            cfg.as_ref().map(|c| c.batch.clone()),
            cfg.as_ref().map(|c| c.buffer.clone()),
        )),
        (None, Some(c)) => Some((
            c.path.clone(),
            c.format,
            Some(c.batch.clone()),
            Some(c.buffer.clone()),
        )),
        (None, None) if config.sinks.sls.is_none() && config.sinks.oss.is_none() => {
            Some((args.data_dir.join("output"), args.output_format, None, None))
        }
        _ => None,
    };
    if let Some((path, format, batch, buffer)) = dir {
        sinks.push((
            Sink::Dir(sinks::dir::DirSink::new(path, format)),
            batch.unwrap_or(Batch {
                max_events: config::DEFAULT_DIR_MAX_EVENTS,
                timeout: config::DEFAULT_DIR_BATCH_TIMEOUT,
            }),
            buffer.unwrap_or_default(),
        ));
    }
    if let Some(c) = &config.sinks.sls {
        let s = sinks::sls::SlsSink::from_config(c, config.utc_offset_seconds)?;
        sinks.push((Sink::Sls(s), c.batch.clone(), c.buffer.clone()));
    }
    if let Some(c) = &config.sinks.oss {
        let s = sinks::oss::OssSink::from_config(c)?;
        sinks.push((Sink::Oss(s), c.batch.clone(), c.buffer.clone()));
    }
    Ok(sinks)
}

/// Everything a reload can get wrong beyond the file itself, checked by the loader so that
/// such a reload fails (naming the field) instead of reporting success and keeping the old
/// pipeline: the sinks (credentials, secret files, endpoints) and the Kubernetes lister.
fn check_applicable(args: &Args, config: &Config) -> Result<(), common::ConfigError> {
    build_sinks(args, config).map_err(|e| match e {
        Error::Config(c) => c,
        other => common::ConfigError::Other(other.to_string()),
    })?;
    if args.kubernetes || config.kubernetes.enabled {
        let mut k8s = config.kubernetes.clone();
        k8s.namespaces
            .extend(args.kubernetes_namespaces.iter().cloned());
        kubernetes::PodWatcher::new(&k8s)
            .map_err(|e| common::ConfigError::invalid("kubernetes", e.to_string()))?;
    }
    Ok(())
}

/// What the running pipeline was built from, secrets included (as a digest, so no copy of
/// them is kept): a reload that changes only a secret, or the contents of a secret file,
/// restarts the pipeline like any other change.
fn applied_digest(config: &Config) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(config).unwrap_or_default());
    let creds = [
        config
            .sinks
            .sls
            .as_ref()
            .map(|c| (&c.credentials, "sinks.sls")),
        config
            .sinks
            .oss
            .as_ref()
            .map(|c| (&c.credentials, "sinks.oss")),
    ];
    for (c, field) in creds.into_iter().flatten() {
        if let Ok((id, secret)) = c.resolve(field) {
            h.update(id.as_bytes());
            h.update([0]);
            h.update(secret.expose().as_bytes());
            h.update([0]);
        }
    }
    h.finalize().to_vec()
}

/// Builds and starts one route per sink of `config`; their tasks stop when `stop` is
/// cancelled (each stores its checkpoint on the way out).
fn start_routes(
    args: &Args,
    config: &Config,
    metrics: &metrics::Metrics,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Error> {
    let sinks = build_sinks(args, config)?;
    let base = config.labels.clone().with_env_defaults();
    let labels: Arc<dyn record::LabelSource> = match &config.pod_labels_file {
        Some(path) => Arc::new(record::DownwardApiLabels {
            path: path.clone(),
            base,
        }),
        None => Arc::new(StaticLabels(base)),
    };
    let labels: Arc<dyn record::LabelSource> = match &config.local_cluster_logs {
        Some(root) => Arc::new(record::LocalClusterLabels {
            root: root.clone(),
            fallback: labels,
        }),
        None => labels,
    };
    let labels: Arc<dyn record::LabelSource> = if args.kubernetes || config.kubernetes.enabled {
        let pods = kubernetes::PodLabels::new(config.kubernetes.pod_log_dir.clone(), labels)
            .with_state_file(args.data_dir.join("kubernetes-pods.json"));
        let mut k8s = config.kubernetes.clone();
        k8s.namespaces
            .extend(args.kubernetes_namespaces.iter().cloned());
        let watcher = kubernetes::PodWatcher::new(&k8s).map_err(|e| {
            Error::Config(common::ConfigError::invalid("kubernetes", e.to_string()))
        })?;
        tokio::spawn(watcher.run(
            pods.clone(),
            metrics.kubernetes_list_errors.clone(),
            stop.clone(),
        ));
        Arc::new(pods)
    } else {
        labels
    };
    let inputs = args.input_globs(config);
    let limits = multiline::Limits {
        max_lines: config.multiline.max_lines,
        max_bytes: config.multiline.max_bytes,
        timeout: config.multiline.timeout,
    };
    let mut routes = Vec::new();
    for (sink, batch, buffer) in sinks {
        routes.push(Route::new(
            sink,
            RouteConfig {
                inputs: inputs.clone(),
                limits,
                batch,
                buffer,
                poll_interval: config.poll_interval,
                checkpoint_interval: config.checkpoint_interval,
                data_dir: args.data_dir.clone(),
                labels: labels.clone(),
            },
            metrics.clone(),
        )?);
    }
    let globs: Vec<&String> = inputs.iter().map(|i| &i.glob).collect();
    Ok(routes
        .into_iter()
        .map(|route| {
            tracing::info!(sink = route.name(), inputs = ?globs, "Shipping.");
            tokio::spawn(route.run(stop.clone()))
        })
        .collect())
}

async fn stop_routes(
    stop: &tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs the service until `lifecycle` asks it to stop.
///
/// A reload (SIGHUP, `POST /-/reload`) with a valid file restarts the pipeline on the new
/// configuration: the routes store their checkpoints, stop, and new ones resume from them.
pub async fn run(args: Args, lifecycle: Lifecycle) -> Result<(), Error> {
    let registry = common::telemetry::new_registry(INFO.metric_prefix);
    let loader_args = args.clone();
    let handle = ConfigHandle::<Config>::with_loader(
        INFO.metric_prefix,
        &registry,
        Arc::new(move || {
            let config = common::config::load::<Config>(loader_args.common.config_file.as_deref())?;
            check_applicable(&loader_args, &config)?;
            Ok(config)
        }),
    )?;
    for g in &args.inputs {
        glob::Pattern::new(g).map_err(|e| Error::Glob {
            glob: g.clone(),
            message: e.to_string(),
        })?;
    }
    let mut updates = handle.subscribe();
    let config = updates.borrow_and_update().clone();
    config.validate()?;
    let metrics = metrics::Metrics::register(&registry);
    let listener = server::bind(args.common.listen_addr(&INFO)).await?;
    // Ours to cancel: in the one-process suite the lifecycle's own token is shared.
    let root = lifecycle.token().child_token();
    let mut stop = root.child_token();
    let mut tasks = start_routes(&args, &config, &metrics, &stop)?;
    let mut applied = applied_digest(&config);
    let supervisor = {
        let root = root.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = root.cancelled() => break,
                    changed = updates.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let next = updates.borrow_and_update().clone();
                        // The loader checked that the sinks can be built, so the reload
                        // failed (and this is not reached) if they cannot.
                        let digest = applied_digest(&next);
                        if digest == applied {
                            continue;
                        }
                        applied = digest;
                        stop_routes(&stop, std::mem::take(&mut tasks)).await;
                        stop = root.child_token();
                        match start_routes(&args, &next, &metrics, &stop) {
                            Ok(t) => {
                                tasks = t;
                                tracing::info!("Pipeline restarted with the new configuration.");
                            }
                            Err(error) => {
                                // Checkpoint or buffer trouble, not the config: the next
                                // reload tries again even with the same file.
                                applied.clear();
                                tracing::error!(%error, "Pipeline could not be restarted; retrying at the next reload.");
                            }
                        }
                    }
                }
            }
            stop_routes(&stop, tasks).await;
        })
    };
    let endpoints = server::Endpoints::new(INFO.metric_prefix, registry, Arc::new(handle));
    let served = server::serve(listener, Router::new(), endpoints, lifecycle).await;
    root.cancel();
    let _ = supervisor.await;
    served?;
    Ok(())
}
