//! The Prometheus HTTP query API on the gateway's port, so Grafana's Prometheus
//! datasource, `promtool query` and client libraries can read what was pushed.
//!
//! # Layout
//! - [`chunk`]: compressed sample chunks (delta-of-delta timestamps, XOR values).
//! - [`history`]: the samples over time ([`history::History`], a PromQL storage), bounded
//!   by retention and bytes.
//! - [`feed`]: [`feed::HistoryFeed`], the store's pushes queued for the history.
//! - [`params`]: request parameters (GET query and form POST; times, durations).
//! - [`response`]: the JSON envelopes, error types and result encoding.
//! - [`snapshot`]: a query's view of the history, decoding each selector's series once.
//! - [`exec`]: `/api/v1/query` and `/api/v1/query_range`, evaluated on the blocking pool
//!   under a timeout, a sample limit and a concurrency limit.
//! - [`catalog`]: `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`,
//!   `/api/v1/metadata`, `/api/v1/query_exemplars`.
//! - [`rules_api`]: `/api/v1/rules`, `/api/v1/alerts`, `/api/v1/status/buildinfo`.
//!
//! [`QueryState::new`] builds the state in [`crate::build`]; [`start`] registers the feed
//! with the store and runs the recorder (record interval, retention, rule results);
//! [`routes`] adds the endpoints to the gateway's router.

pub mod catalog;
pub mod chunk;
pub mod exec;
pub mod feed;
pub mod history;
pub mod params;
pub mod response;
pub mod rules_api;
pub mod snapshot;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::{routing::get, Router};
use common::Lifecycle;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use promql_engine::labels::Labels;
use promql_engine::rules::runtime::RuleEngine;

use feed::HistoryFeed;
use history::{History, HistoryLimits};

/// Query and history flags.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Longest a query may run (as Prometheus's `--query.timeout`); a request's own
    /// `timeout=` can only shorten it.
    #[arg(long = "query.timeout", value_name = "DURATION", default_value = "2m",
          value_parser = common::cli::parse_duration)]
    pub timeout: Duration,

    /// Most samples one query may hold at once (as Prometheus's `--query.max-samples`).
    #[arg(
        long = "query.max-samples",
        value_name = "N",
        default_value_t = 50_000_000
    )]
    pub max_samples: usize,

    /// Most queries evaluated at the same time; more wait (within their timeout).
    #[arg(long = "query.max-concurrency", value_name = "N", default_value_t = 20)]
    pub max_concurrency: usize,

    /// How far back an instant selector looks for a sample (as Prometheus's
    /// `--query.lookback-delta`).
    #[arg(long = "query.lookback-delta", value_name = "DURATION", default_value = "5m",
          value_parser = common::cli::parse_duration)]
    pub lookback_delta: Duration,

    /// How long the query history keeps samples.
    #[arg(long = "storage.retention", value_name = "DURATION", default_value = "6h",
          value_parser = common::cli::parse_duration)]
    pub retention: Duration,

    /// Most bytes the query history may take (0 = no bound); the oldest chunks are
    /// dropped first.
    #[arg(long = "storage.max-bytes", value_name = "BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_bytes: usize,

    /// How often the current value of every live series is recorded again (as a scrape
    /// would), besides the samples recorded at each push.
    #[arg(long = "storage.record-interval", value_name = "DURATION", default_value = "15s",
          value_parser = common::cli::parse_duration)]
    pub record_interval: Duration,
}

impl Default for QueryArgs {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 20,
            lookback_delta: Duration::from_secs(300),
            retention: Duration::from_secs(6 * 3600),
            max_bytes: 256 * 1024 * 1024,
            record_interval: Duration::from_secs(15),
        }
    }
}

/// Our metrics about queries and the history.
#[derive(Clone)]
struct QueryMetrics {
    queries: IntCounterVec,
    series: IntGauge,
    samples: IntGauge,
    bytes: IntGauge,
    chunks_dropped: IntCounterVec,
    out_of_order: IntCounter,
}

impl QueryMetrics {
    fn register(r: &Registry) -> Self {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            let _ = r.register(Box::new(c.clone()));
            c
        }
        let gauge = |n: &str, h: &str| {
            reg(
                r,
                IntGauge::new(format!("metrics_gateway_history_{n}"), h)
                    .expect("static metric definition"),
            )
        };
        Self {
            queries: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "metrics_gateway_queries_total",
                        "Query API requests by endpoint and result (success or the errorType).",
                    ),
                    &["endpoint", "result"],
                )
                .expect("static metric definition"),
            ),
            series: gauge("series", "Series held in the query history."),
            samples: gauge("samples", "Samples held in the query history."),
            bytes: gauge("bytes", "Estimated bytes of the query history."),
            chunks_dropped: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "metrics_gateway_history_chunks_dropped_total",
                        "History chunks dropped, by reason (retention, memory).",
                    ),
                    &["reason"],
                )
                .expect("static metric definition"),
            ),
            out_of_order: reg(
                r,
                IntCounter::new(
                    "metrics_gateway_history_out_of_order_samples_total",
                    "Samples not recorded because the series had a newer one.",
                )
                .expect("static metric definition"),
            ),
        }
    }

    fn update(&self, st: &history::HistoryStats) {
        let to_i = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.series.set(to_i(st.series));
        self.samples.set(to_i(st.samples));
        self.bytes.set(to_i(st.bytes));
        let bump = |c: &IntCounter, total: u64| {
            let now = c.get();
            if total > now {
                c.inc_by(total - now);
            }
        };
        bump(
            &self.chunks_dropped.with_label_values(&["retention"]),
            st.chunks_dropped_retention,
        );
        bump(
            &self.chunks_dropped.with_label_values(&["memory"]),
            st.chunks_dropped_memory,
        );
        bump(&self.out_of_order, st.out_of_order);
    }
}

/// Everything the query handlers share.
pub struct QueryState {
    /// The sample history queries read.
    pub history: Arc<History>,
    /// The feed that writes pushes into the history.
    pub feed: Arc<HistoryFeed>,
    /// The group store (metadata).
    pub store: Arc<crate::store::Store>,
    /// Flags.
    pub args: QueryArgs,
    rules: Arc<crate::rules::RuleSlot>,
    permits: Arc<tokio::sync::Semaphore>,
    metrics: QueryMetrics,
    /// Rule results already copied into the history: (file, group) → last evaluation.
    copied: std::sync::Mutex<RuleCopy>,
}

#[derive(Default)]
struct RuleCopy {
    evaluated: Vec<Option<i64>>,
    last_eval: HashMap<(String, String), i64>,
    outputs: HashMap<(String, String), HashSet<Labels>>,
}

impl QueryState {
    /// State over `store` with these flags; the rule evaluator (once it runs) is found in
    /// `rules`; our metrics go to `registry`.
    pub fn new(
        store: Arc<crate::store::Store>,
        rules: Arc<crate::rules::RuleSlot>,
        args: QueryArgs,
        registry: &Registry,
    ) -> Self {
        let history = Arc::new(History::new(HistoryLimits {
            retention_ms: i64::try_from(args.retention.as_millis()).unwrap_or(i64::MAX / 4),
            max_bytes: args.max_bytes,
        }));
        Self {
            feed: Arc::new(HistoryFeed::new(history.clone())),
            history,
            store,
            permits: Arc::new(tokio::sync::Semaphore::new(args.max_concurrency.max(1))),
            args,
            rules,
            metrics: QueryMetrics::register(registry),
            copied: std::sync::Mutex::new(RuleCopy::default()),
        }
    }

    /// The rule evaluator, once rules run: its groups and alerts answer `/api/v1/rules`
    /// and `/api/v1/alerts`, its results (recording rules, `ALERTS`) go into the history.
    pub fn rule_engine(&self) -> Option<Arc<RuleEngine>> {
        self.rules.engine()
    }

    fn count(&self, endpoint: &str, result: &str) {
        self.metrics
            .queries
            .with_label_values(&[endpoint, result])
            .inc();
    }

    /// Copies the results of rule evaluations not copied yet into the history (at their
    /// evaluation time), with staleness markers for series a rule stopped producing.
    pub fn copy_rule_results(&self) {
        let Some(engine) = self.rule_engine() else {
            return;
        };
        let mut copied = match self.copied.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Copying every group's state is not free: only when an evaluation ran since.
        let evaluated = engine.last_evaluations();
        if evaluated == copied.evaluated {
            return;
        }
        copied.evaluated = evaluated;
        let groups = engine.groups_snapshot();
        for g in &groups {
            let Some(ts) = g.last_eval_ms else {
                continue;
            };
            let key = (g.group.file.clone(), g.group.name.clone());
            if copied.last_eval.get(&key).is_some_and(|&l| l >= ts) {
                continue;
            }
            copied.last_eval.insert(key.clone(), ts);
            let now: HashSet<Labels> = g
                .rules
                .iter()
                .flat_map(|r| r.last_output.iter().map(|(l, _)| l.clone()))
                .collect();
            if let Some(prev) = copied.outputs.get(&key) {
                for l in prev.difference(&now) {
                    self.history.mark_stale(l, ts);
                }
            }
            for r in &g.rules {
                for (l, v) in &r.last_output {
                    self.history.append(l, ts, *v);
                }
            }
            copied.outputs.insert(key, now);
        }
    }

    /// One recorder step at `now` (ms): records live series when `record` is set, copies
    /// rule results, drops what passed the retention, updates our metrics.
    pub fn tick(&self, now: i64, record: bool) {
        if record {
            self.feed.record(now);
        } else {
            self.feed.flush();
        }
        self.copy_rule_results();
        self.history.gc(now);
        self.metrics.update(&self.history.stats());
    }
}

/// Applies the pushes queued for the history, on the blocking pool.
async fn flush(s: &Arc<QueryState>) {
    let feed = s.feed.clone();
    let _ = tokio::task::spawn_blocking(move || feed.flush()).await;
}

/// Registers the history feed with the store and starts the recorder beside the server.
pub fn start(state: &Arc<QueryState>, lifecycle: &Lifecycle) {
    state.store.add_observer(state.feed.clone());
    let state = state.clone();
    let stop = lifecycle.shutdown();
    tokio::spawn(async move {
        tokio::pin!(stop);
        let every = state.args.record_interval.max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(every.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_record = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            let record = last_record.elapsed() >= every;
            if record {
                last_record = tokio::time::Instant::now();
            }
            let s = state.clone();
            let now = history::unix_ms(SystemTime::now());
            // Recording touches every live series: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || s.tick(now, record)).await;
        }
    });
}

/// The query API's routes.
pub fn routes(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(exec::query).post(exec::query))
        .route(
            "/api/v1/query_range",
            get(exec::query_range).post(exec::query_range),
        )
        .route(
            "/api/v1/query_exemplars",
            get(catalog::exemplars).post(catalog::exemplars),
        )
        .route("/api/v1/series", get(catalog::series).post(catalog::series))
        .route("/api/v1/labels", get(catalog::labels).post(catalog::labels))
        .route("/api/v1/label/{name}/values", get(catalog::label_values))
        .route("/api/v1/metadata", get(catalog::metadata))
        .route("/api/v1/rules", get(rules_api::rules))
        .route("/api/v1/alerts", get(rules_api::alerts))
        .route("/api/v1/status/buildinfo", get(rules_api::buildinfo))
        .with_state(state)
}
