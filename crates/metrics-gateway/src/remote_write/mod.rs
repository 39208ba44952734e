//! Remote write: every sample the history records (pushes, the periodic re-recording,
//! recording-rule results and `ALERTS`, staleness markers) sent to Prometheus-compatible
//! receivers with the remote-write 1.0 protocol (protobuf + snappy).
//!
//! # Layout
//! - [`config`]: `remote_write:` in the config file (Prometheus's shape).
//! - [`relabel`]: the `write_relabel_configs` steps.
//! - [`queue`]: the bounded, sharded queue of one remote (a series always in one shard).
//! - [`shards`]: the workers of one remote, one per shard, and the rule that scales their
//!   number between `min_shards` and `max_shards`.
//! - [`proto`]: the `WriteRequest` body.
//! - [`sender`]: one worker: batching, retries and backoff.
//!
//! [`start`] taps the query history ([`crate::query::history::History::set_tap`]);
//! [`RemoteWriter::apply`] brings the remotes in line with a reloaded config (unchanged ones
//! untouched, changed ones handed their queue, added ones started, removed ones flushed
//! and stopped); [`RemoteWriter::drain`] sends what is left at shutdown, bounded by the
//! grace period.

pub mod config;
pub mod proto;
pub mod queue;
pub mod relabel;
pub mod sender;
pub mod shards;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::query::history::Op;
pub use config::RemoteWriteConfig;
use queue::{Pushed, Queue};

/// Our metrics, by `remote`.
#[derive(Clone)]
struct Vecs {
    sent: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    dropped: IntCounterVec,
    pending: IntGaugeVec,
    shards: IntGaugeVec,
}

impl Vecs {
    fn register(r: &Registry) -> Self {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            let _ = r.register(Box::new(c.clone()));
            c
        }
        let counter = |n: &str, h: &str, labels: &[&str]| {
            reg(
                r,
                IntCounterVec::new(
                    Opts::new(format!("metrics_gateway_remote_write_samples_{n}_total"), h),
                    labels,
                )
                .expect("static metric definition"),
            )
        };
        let gauge = |n: &str, h: &str| {
            reg(
                r,
                IntGaugeVec::new(Opts::new(n, h), &["remote"]).expect("static metric definition"),
            )
        };
        Self {
            sent: counter("sent", "Samples the remote accepted.", &["remote"]),
            failed: counter(
                "failed",
                "Samples in batches the remote refused with a 4xx other than 429 (not retried).",
                &["remote"],
            ),
            retried: counter(
                "retried",
                "Samples sent again after a connection error, 5xx or 429.",
                &["remote"],
            ),
            dropped: counter(
                "dropped",
                "Samples not sent, by reason (queue_full, relabel, out_of_order, rejected, shutdown, removed).",
                &["remote", "reason"],
            ),
            pending: gauge(
                "metrics_gateway_remote_write_samples_pending",
                "Samples queued or in flight.",
            ),
            shards: gauge(
                "metrics_gateway_remote_write_shards",
                "Shards (concurrent senders) of the remote.",
            ),
        }
    }
}

/// The metrics of one remote.
struct RemoteMetrics {
    name: String,
    sent: IntCounter,
    failed: IntCounter,
    retried: IntCounter,
    dropped: IntCounterVec,
    pending: IntGauge,
    shards: IntGauge,
}

impl RemoteMetrics {
    fn new(vecs: &Vecs, name: &str) -> Self {
        let m = Self {
            sent: vecs.sent.with_label_values(&[name]),
            failed: vecs.failed.with_label_values(&[name]),
            retried: vecs.retried.with_label_values(&[name]),
            dropped: vecs.dropped.clone(),
            pending: vecs.pending.with_label_values(&[name]),
            shards: vecs.shards.with_label_values(&[name]),
            name: name.to_string(),
        };
        for reason in ["queue_full", "rejected"] {
            let _ = m.dropped(reason);
        }
        m
    }

    fn dropped(&self, reason: &str) -> IntCounter {
        self.dropped.with_label_values(&[&self.name, reason])
    }
}

/// What a remote's workers send with: its config and compiled relabelling. Swapped as a
/// whole when a reload changes the remote but keeps its URL and name.
pub struct Settings {
    config: RemoteWriteConfig,
    relabel: Vec<relabel::Relabel>,
}

impl Settings {
    fn new(config: &RemoteWriteConfig) -> Arc<Self> {
        Arc::new(Self {
            // Validated with the config file; an invalid step here is skipped, not fatal.
            relabel: config
                .write_relabel_configs
                .iter()
                .filter_map(|r| r.compile().ok())
                .collect(),
            config: config.clone(),
        })
    }
}

/// Counters the shard scaling reads ([`shards::Scaler`]).
#[derive(Default)]
struct Stats {
    /// Samples queued.
    queued: AtomicU64,
    /// Samples in batches whose sending finished (sent, refused or handed back).
    done: AtomicU64,
    /// Time spent sending those batches, retries included (ns).
    send_nanos: AtomicU64,
    /// When a batch was last accepted (ms since the Unix epoch; 0 = never).
    last_success_ms: AtomicI64,
}

/// One configured remote.
pub struct Remote {
    name: String,
    settings: RwLock<Arc<Settings>>,
    queue: Queue,
    in_flight: AtomicUsize,
    stats: Stats,
    metrics: RemoteMetrics,
    /// Tells the shard manager to restart its workers with new settings.
    restart: tokio::sync::Notify,
    manager: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Remote {
    fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn config(&self) -> RemoteWriteConfig {
        self.settings().config.clone()
    }

    fn update_pending(&self) {
        let n = self.queue.len() + self.in_flight.load(Ordering::Relaxed);
        self.metrics.pending.set(n.try_into().unwrap_or(i64::MAX));
    }

    fn offer(
        &self,
        relabel: &[relabel::Relabel],
        labels: &promql_engine::labels::Labels,
        t: i64,
        v: f64,
    ) {
        let Some(l) = relabel::apply(relabel, labels) else {
            self.metrics.dropped("relabel").inc();
            return;
        };
        match self.queue.push(l, t, v) {
            Pushed::Queued => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Pushed::Ignored => {}
            Pushed::Full => self.metrics.dropped("queue_full").inc(),
            Pushed::OutOfOrder => self.metrics.dropped("out_of_order").inc(),
        }
    }

    fn manager(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::JoinHandle<()>>> {
        match self.manager.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// All remotes and their senders.
pub struct RemoteWriter {
    remotes: RwLock<Vec<Arc<Remote>>>,
    vecs: Vecs,
    client: reqwest::Client,
    /// How long a removed remote may take to send what it holds.
    flush_deadline: Duration,
}

impl RemoteWriter {
    fn remotes(&self) -> Vec<Arc<Remote>> {
        match self.remotes.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Queues what the history records (called with every batch of history ops).
    pub fn observe(&self, ops: &[Op]) {
        for r in self.remotes() {
            let s = r.settings();
            for op in ops {
                match op {
                    Op::Sample(l, t, v) => r.offer(&s.relabel, l, *t, *v),
                    Op::Stale(l, t) => {
                        r.offer(&s.relabel, l, *t, promql_engine::storage::stale_nan())
                    }
                }
            }
            r.update_pending();
        }
    }

    fn spawn_remote(&self, cfg: &RemoteWriteConfig) -> Arc<Remote> {
        let name = cfg.remote_name();
        let q = &cfg.queue_config;
        let remote = Arc::new(Remote {
            queue: Queue::new(q.capacity, q.min_shards, q.max_samples_per_send),
            settings: RwLock::new(Settings::new(cfg)),
            in_flight: AtomicUsize::new(0),
            stats: Stats::default(),
            metrics: RemoteMetrics::new(&self.vecs, &name),
            restart: tokio::sync::Notify::new(),
            manager: Mutex::new(None),
            name,
        });
        let task = tokio::spawn(shards::manage(remote.clone(), self.client.clone()));
        *remote.manager() = Some(task);
        tracing::info!(remote = %remote.name, "Remote write enabled.");
        remote
    }

    /// Brings the remotes in line with a (re)loaded `remote_write` list, as Prometheus
    /// does at a reload: an entry equal to a running one keeps it untouched (queue,
    /// workers, connection); an entry with the URL and name of a running one but other
    /// settings takes over that remote's queue (nothing queued is lost; its workers
    /// restart with the new settings once their current request is over, and a batch
    /// they could not send goes back to the front of the queue); a new entry starts a
    /// remote with an empty queue (it gets what is recorded from now on); a running
    /// remote no longer listed stops taking samples and sends what it holds, bounded by
    /// the flush deadline, then stops (what is left is counted as dropped,
    /// `reason="removed"`). Must be called within a Tokio runtime.
    pub fn apply(self: &Arc<Self>, configs: &[RemoteWriteConfig]) {
        let mut guard = match self.remotes.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut old: Vec<Option<Arc<Remote>>> = guard.drain(..).map(Some).collect();
        let mut next: Vec<Option<Arc<Remote>>> = vec![None; configs.len()];
        // Unchanged first, so a changed entry never takes an unchanged one's queue.
        for (i, cfg) in configs.iter().enumerate() {
            if let Some(slot) = old
                .iter_mut()
                .find(|r| r.as_ref().is_some_and(|r| r.config() == *cfg))
            {
                next[i] = slot.take();
            }
        }
        for (i, cfg) in configs.iter().enumerate() {
            if next[i].is_some() {
                continue;
            }
            let same = old.iter_mut().find(|r| {
                r.as_ref().is_some_and(|r| {
                    r.name == cfg.remote_name() && r.settings().config.url == cfg.url
                })
            });
            next[i] = Some(match same.and_then(Option::take) {
                Some(r) => {
                    self.hand_over(&r, cfg);
                    r
                }
                None => self.spawn_remote(cfg),
            });
        }
        *guard = next.into_iter().flatten().collect();
        drop(guard);
        for r in old.into_iter().flatten() {
            tracing::info!(remote = %r.name, "Remote removed from `remote_write`; sending what it holds, then stopping.");
            let me = self.clone();
            let deadline = self.flush_deadline;
            tokio::spawn(async move { me.stop(r, deadline, "removed").await });
        }
    }

    /// New settings for a running remote: its queue stays, its workers restart.
    fn hand_over(&self, r: &Remote, cfg: &RemoteWriteConfig) {
        let q = &cfg.queue_config;
        r.queue.set_limits(q.capacity, q.max_samples_per_send);
        *match r.settings.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        } = Settings::new(cfg);
        r.restart.notify_one();
        tracing::info!(remote = %r.name, queued = r.queue.len(),
            "Remote write settings changed; the queue is kept and its senders restart.");
    }

    /// Closes `r`'s queue and waits up to `grace` for its workers to send what is left;
    /// then stops them and counts what is still unsent as dropped for `reason`.
    async fn stop(&self, r: Arc<Remote>, grace: Duration, reason: &str) {
        r.queue.close();
        let task = r.manager().take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
                let left = r.queue.discard() + r.in_flight.swap(0, Ordering::Relaxed);
                if left > 0 {
                    r.metrics.dropped(reason).inc_by(left as u64);
                    tracing::warn!(remote = %r.name, samples = left, reason,
                        "Remote write stopped before sending everything; unsent samples dropped.");
                }
            }
        }
        let _ = r.queue.discard();
        r.metrics.pending.set(0);
        if reason == "removed" && !self.remotes().iter().any(|o| o.name == r.name) {
            let _ = self.vecs.pending.remove_label_values(&[&r.name]);
            let _ = self.vecs.shards.remove_label_values(&[&r.name]);
        }
    }

    /// Sends what is queued and stops the senders, waiting at most `grace`; what is still
    /// unsent then is counted as dropped (`reason="shutdown"`).
    pub async fn drain(self: &Arc<Self>, grace: Duration) {
        let mut all = tokio::task::JoinSet::new();
        for r in self.remotes() {
            let me = self.clone();
            all.spawn(async move { me.stop(r, grace, "shutdown").await });
        }
        while all.join_next().await.is_some() {}
    }
}

/// Starts a remote per entry of `configs` (validated with the config) and taps `history`.
/// `flush_deadline` bounds how long a remote removed by a reload may keep sending.
pub fn start(
    configs: &[RemoteWriteConfig],
    history: &crate::query::history::History,
    registry: &Registry,
    flush_deadline: Duration,
) -> Arc<RemoteWriter> {
    let writer = Arc::new(RemoteWriter {
        remotes: RwLock::new(Vec::new()),
        vecs: Vecs::register(registry),
        client: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default(),
        flush_deadline,
    });
    writer.apply(configs);
    let tap = writer.clone();
    history.set_tap(Arc::new(move |ops: &[Op]| tap.observe(ops)));
    writer
}
