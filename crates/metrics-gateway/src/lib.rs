//! Prometheus Pushgateway-compatible push collector with its own PromQL rule evaluation.
//!
//! # Layout
//! - [`config`]: the YAML configuration file (`push:` TTL and limits, `rule_files`).
//! - [`limits`]: the limits a push is checked against (series, labels per series, label
//!   lengths) and the typed [`limits::LimitError`].
//! - [`model`]: metric families, values and the exposition helpers (Go float format).
//! - [`parse`]: push bodies: text format 0.0.4 ([`parse::text`]), delimited protobuf
//!   ([`parse::proto`]), gzip.
//! - [`grouping`]: grouping keys from push URLs (`/metrics/job/<JOB>/<LABEL>@base64/...`).
//! - [`store`]: the groups, the consistency check, TTL, limits, and the hooks other
//!   components use ([`store::PushObserver`]; see the module docs).
//! - [`render`]: `/metrics` exposition, the JSON API shapes, [`render::ExpositionSource`].
//! - [`api`]: HTTP handlers and [`api::AppState`].
//! - [`persistence`]: `--persistence.file` (atomic, versioned, survives `kill -9`).
//! - [`metrics`]: our own metrics.
//! - [`query`]: the Prometheus HTTP query API (`/api/v1/query`, `query_range`, series,
//!   labels, rules, alerts, buildinfo) over a compressed in-memory history.
//! - [`remote_write`]: `remote_write:` of the config file: what the history records, sent
//!   to Prometheus-compatible receivers (remote-write 1.0).
//! - [`rules`]: Prometheus alerting and recording rules over what is pushed (the
//!   `promql-engine` evaluator fed by a [`store::PushObserver`], ALERTS on `/metrics`,
//!   notifications), the rule flags and the `promql-test`/`check-rules`/`test-rules`
//!   subcommands.
//!
//! [`run`] = [`build`] (config, store, persistence load) + [`serve`] (HTTP, expiry sweeper,
//! persistence writer). Components that run beside the HTTP server (the rule evaluator)
//! start between the two with the [`Gateway`]'s `store` and `state`.

pub mod api;
pub mod config;
pub mod grouping;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod persistence;
pub mod query;
pub mod remote_write;
pub mod render;
pub mod rules;
pub mod store;

use std::{collections::BTreeMap, path::Path, path::PathBuf, sync::Arc, time::Duration};

use axum::Router;
use clap::Parser;
use common::{server, ConfigHandle, Lifecycle, ServiceInfo};
use prometheus::Registry;

pub use config::Config;

/// Names, metric prefix and default port.
pub const INFO: ServiceInfo = ServiceInfo {
    name: "metrics-gateway",
    metric_prefix: "metrics_gateway",
    default_listen: "0.0.0.0:9091",
};

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "metrics-gateway",
    version,
    about = "Prometheus Pushgateway-compatible push collector with its own PromQL rule evaluation."
)]
pub struct Args {
    #[command(flatten)]
    pub common: common::CommonArgs,

    /// File to persist metrics to. If empty, metrics are only kept in memory.
    #[arg(long = "persistence.file", value_name = "FILE", default_value = "")]
    pub persistence_file: String,

    /// How often to write the persistence file (only when something changed).
    #[arg(long = "persistence.interval", value_name = "DURATION", default_value = "5m",
          value_parser = common::cli::parse_duration)]
    pub persistence_interval: Duration,

    /// Enable the admin API (`PUT /api/v1/admin/wipe`).
    #[arg(long = "web.enable-admin-api")]
    pub enable_admin_api: bool,

    /// Enable shutdown via HTTP (`PUT|POST /-/quit`).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Remove a group this long after its last change (e.g. `1h`). `0` = never. A push may
    /// set its own TTL with `?ttl=DURATION` or the `X-Group-TTL: DURATION` header. Overrides
    /// `push.group_ttl` of the config file.
    #[arg(long = "push.group-ttl", value_name = "DURATION",
          value_parser = common::cli::parse_duration)]
    pub group_ttl: Option<Duration>,

    /// Longest TTL a push may ask for (default 1y); a longer `?ttl=` or `X-Group-TTL` gets
    /// 400. Overrides `push.max_group_ttl` of the config file.
    #[arg(long = "push.max-group-ttl", value_name = "DURATION",
          value_parser = common::cli::parse_duration)]
    pub max_group_ttl: Option<Duration>,

    /// Largest accepted push body in bytes, after gzip decompression (0 = no limit; default
    /// 64 MiB). Larger pushes get 413.
    #[arg(long = "push.max-body-size", value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,

    /// Most series one group may hold (0 = no limit). A push over it gets 400.
    #[arg(long = "push.max-series-per-group", value_name = "N")]
    pub max_series_per_group: Option<usize>,

    /// Most series the gateway may hold in total (0 = no limit). A push over it gets 400.
    #[arg(long = "push.max-total-series", value_name = "N")]
    pub max_total_series: Option<usize>,

    /// Most labels one series may have, grouping labels and `instance` included (0 = no
    /// limit; default 64). A push over it gets 400 naming the series.
    #[arg(long = "push.max-labels-per-series", value_name = "N")]
    pub max_labels_per_series: Option<usize>,

    /// Longest label name in bytes (0 = no limit; default 256). Longer → 400.
    #[arg(long = "push.max-label-name-length", value_name = "BYTES")]
    pub max_label_name_length: Option<usize>,

    /// Longest label value in bytes (0 = no limit; default 32768). Longer → 400.
    #[arg(long = "push.max-label-value-length", value_name = "BYTES")]
    pub max_label_value_length: Option<usize>,

    #[command(flatten)]
    pub rules: rules::RuleArgs,

    #[command(flatten)]
    pub query: query::QueryArgs,

    #[command(subcommand)]
    pub command: Option<rules::Command>,
}

impl Args {
    /// The flags the one-process suite uses: defaults, and the persistence file
    /// `data_dir/metrics-gateway.data` (written every 5 minutes and at shutdown).
    pub fn for_suite(data_dir: &Path) -> Self {
        let mut args = Self::parse_from([INFO.name]);
        args.persistence_file = data_dir
            .join("metrics-gateway.data")
            .to_string_lossy()
            .into_owned();
        args
    }

    fn flags(&self) -> BTreeMap<String, String> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        [
            (
                "web.listen-address",
                self.common.listen_addr(&INFO).to_string(),
            ),
            ("persistence.file", self.persistence_file.clone()),
            (
                "persistence.interval",
                humantime::format_duration(self.persistence_interval).to_string(),
            ),
            ("web.enable-admin-api", self.enable_admin_api.to_string()),
            ("web.enable-lifecycle", self.enable_lifecycle.to_string()),
            (
                "push.group-ttl",
                opt(self
                    .group_ttl
                    .map(|d| humantime::format_duration(d).to_string())),
            ),
            (
                "push.max-group-ttl",
                opt(self
                    .max_group_ttl
                    .map(|d| humantime::format_duration(d).to_string())),
            ),
            (
                "push.max-body-size",
                opt(self.max_body_bytes.map(|v| v.to_string())),
            ),
            (
                "push.max-series-per-group",
                opt(self.max_series_per_group.map(|v| v.to_string())),
            ),
            (
                "push.max-total-series",
                opt(self.max_total_series.map(|v| v.to_string())),
            ),
            (
                "push.max-labels-per-series",
                opt(self.max_labels_per_series.map(|v| v.to_string())),
            ),
            (
                "push.max-label-name-length",
                opt(self.max_label_name_length.map(|v| v.to_string())),
            ),
            (
                "push.max-label-value-length",
                opt(self.max_label_value_length.map(|v| v.to_string())),
            ),
            ("log.level", self.common.log_level.clone()),
            (
                "config.file",
                opt(self
                    .common
                    .config_file
                    .as_ref()
                    .map(|p| p.display().to_string())),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The settings fixed by flags for the handlers.
    fn settings(&self) -> api::Settings {
        api::Settings {
            enable_admin_api: self.enable_admin_api,
            enable_lifecycle: self.enable_lifecycle,
            group_ttl: self.group_ttl,
            max_group_ttl: self.max_group_ttl,
            max_body_bytes: self.max_body_bytes,
            max_series_per_group: self.max_series_per_group,
            max_total_series: self.max_total_series,
            max_labels_per_series: self.max_labels_per_series,
            max_label_name_length: self.max_label_name_length,
            max_label_value_length: self.max_label_value_length,
            flags: self.flags(),
        }
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
    Persistence(#[from] persistence::PersistenceError),
}

/// A built, not yet serving gateway: what components started beside the HTTP server need.
pub struct Gateway {
    /// The groups (register [`store::PushObserver`]s here).
    pub store: Arc<store::Store>,
    /// Handler state (register [`render::ExpositionSource`]s here).
    pub state: Arc<api::AppState>,
    /// Our own metrics registry.
    pub registry: Registry,
    /// The config file handle (reloaded on SIGHUP / `POST /-/reload`).
    pub config: ConfigHandle<Config>,
    /// The rule evaluator once rules are loaded ([`rules::start`]).
    pub rules: Arc<rules::RuleSlot>,
    /// The query API's state and history ([`query::start`]).
    pub query: Arc<query::QueryState>,
    args: Args,
}

impl Gateway {
    /// The HTTP routes of the gateway (without the shared lifecycle endpoints).
    pub fn router(&self) -> Router {
        api::app(self.state.clone()).merge(query::routes(self.query.clone()))
    }
}

/// Loads the config and the persistence file and builds the store and handler state.
pub fn build(args: &Args, lifecycle: &Lifecycle) -> Result<Gateway, Error> {
    let registry = common::telemetry::new_registry(INFO.metric_prefix);
    let settings = args.settings();
    let config = rules::config_handle(args, settings.clone(), INFO.metric_prefix, &registry)?;
    let rule_slot = Arc::new(rules::RuleSlot::default());
    let metrics = metrics::GatewayMetrics::register(&registry);
    let store = Arc::new(store::Store::new(Some(registry.clone())));
    if !args.persistence_file.is_empty() {
        let path = PathBuf::from(&args.persistence_file);
        let max_ttl = settings.effective(&config.current().push).max_group_ttl;
        let report = persistence::load(&path, &store, max_ttl)?;
        metrics
            .persistence_skipped_groups
            .inc_by(report.skipped as u64);
        tracing::info!(
            file = %path.display(),
            groups = report.loaded,
            skipped = report.skipped,
            "Loaded persisted groups."
        );
    }
    let state = Arc::new(api::AppState::new(
        store.clone(),
        registry.clone(),
        metrics.clone(),
        settings,
        Some(config.clone()),
        lifecycle.clone(),
    ));
    metrics.sizes(store.stats());
    let query = Arc::new(query::QueryState::new(
        store.clone(),
        rule_slot.clone(),
        args.query.clone(),
        &registry,
    ));
    Ok(Gateway {
        query,
        store,
        state,
        registry,
        config,
        rules: rule_slot,
        args: args.clone(),
    })
}

/// Serves the gateway until `lifecycle` asks it to stop: HTTP, the expiry sweeper and the
/// persistence writer (which saves once more after the HTTP server has drained).
pub async fn serve(gw: Gateway, lifecycle: Lifecycle) -> Result<(), Error> {
    let listener = server::bind(gw.args.common.listen_addr(&INFO)).await?;
    let mut endpoints = server::Endpoints::new(
        INFO.metric_prefix,
        gw.registry.clone(),
        Arc::new(gw.config.clone()),
    );
    endpoints.own_metrics_route = true;

    let sweeper = {
        let state = gw.state.clone();
        let stop = lifecycle.shutdown();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stop => return,
                }
                let n = state.store.expire(std::time::SystemTime::now());
                if n > 0 {
                    state
                        .metrics
                        .groups_removed
                        .with_label_values(&["ttl"])
                        .inc_by(n as u64);
                    state.metrics.sizes(state.store.stats());
                    tracing::info!(groups = n, "Expired groups past their TTL.");
                }
            }
        })
    };

    let (persist_stop, persist_rx) = tokio::sync::oneshot::channel::<()>();
    let persister = (!gw.args.persistence_file.is_empty()).then(|| {
        let path = PathBuf::from(&gw.args.persistence_file);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        tokio::spawn(persistence::run(
            path,
            gw.args.persistence_interval,
            gw.store.clone(),
            gw.state.metrics.clone(),
            async move {
                let _ = persist_rx.await;
            },
        ))
    });

    let result = server::serve(listener, gw.router(), endpoints, lifecycle).await;
    sweeper.abort();
    let _ = persist_stop.send(());
    if let Some(p) = persister {
        let _ = p.await;
    }
    result?;
    Ok(())
}

/// Runs the service until `lifecycle` asks it to stop.
pub async fn run(args: Args, lifecycle: Lifecycle) -> Result<(), Error> {
    let gw = build(&args, &lifecycle)?;
    query::start(&gw.query, &lifecycle);
    let remote = remote_write::start(
        &gw.config.current().remote_write,
        &gw.query.history,
        &gw.registry,
        args.common.grace_period,
    );
    {
        let remote = remote.clone();
        gw.config.on_reload(move |c| remote.apply(&c.remote_write));
    }
    rules::start(&gw, &args, &lifecycle)?;
    let query = gw.query.clone();
    let result = serve(gw, lifecycle).await;
    // The last pushes and rule results into the history (and so into the queues).
    let _ = tokio::task::spawn_blocking(move || query.tick(history_now(), false)).await;
    remote.drain(args.common.grace_period).await;
    result
}

fn history_now() -> i64 {
    query::history::unix_ms(std::time::SystemTime::now())
}
