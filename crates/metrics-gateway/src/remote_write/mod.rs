//! Remote write: every sample the history records (pushes, the periodic re-recording,
//! recording-rule results and `ALERTS`, staleness markers) sent to Prometheus-compatible
//! receivers with the remote-write 1.0 protocol (protobuf + snappy).
//!
//! # Layout
//! - [`config`]: `remote_write:` in the config file (Prometheus's shape).
//! - [`relabel`]: the `write_relabel_configs` steps.
//! - [`queue`]: the bounded queue of one remote.
//! - [`proto`]: the `WriteRequest` body.
//! - [`sender`]: batching, retries and backoff.
//!
//! [`start`] taps the query history ([`crate::query::history::History::set_tap`]) and runs
//! one sender per remote; [`RemoteWriter::drain`] sends what is left at shutdown, bounded
//! by the grace period. The remotes are read at start; a reload does not change them.

pub mod config;
pub mod proto;
pub mod queue;
pub mod relabel;
pub mod sender;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
                "Samples not sent, by reason (queue_full, relabel, out_of_order, rejected, shutdown).",
                &["remote", "reason"],
            ),
            pending: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "metrics_gateway_remote_write_samples_pending",
                        "Samples queued or in flight.",
                    ),
                    &["remote"],
                )
                .expect("static metric definition"),
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
}

impl RemoteMetrics {
    fn dropped(&self, reason: &str) -> IntCounter {
        self.dropped.with_label_values(&[&self.name, reason])
    }
}

/// One configured remote.
pub struct Remote {
    name: String,
    config: RemoteWriteConfig,
    relabel: Vec<relabel::Relabel>,
    queue: Queue,
    in_flight: AtomicUsize,
    metrics: RemoteMetrics,
}

impl Remote {
    fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n, Ordering::Relaxed);
        self.metrics
            .pending
            .set((self.queue.len() + n).try_into().unwrap_or(i64::MAX));
    }

    fn offer(&self, labels: &promql_engine::labels::Labels, t: i64, v: f64) {
        let Some(l) = relabel::apply(&self.relabel, labels) else {
            self.metrics.dropped("relabel").inc();
            return;
        };
        match self.queue.push(l, t, v) {
            Pushed::Queued | Pushed::Ignored => {}
            Pushed::Full => self.metrics.dropped("queue_full").inc(),
            Pushed::OutOfOrder => self.metrics.dropped("out_of_order").inc(),
        }
    }
}

/// All remotes and their senders.
pub struct RemoteWriter {
    remotes: Vec<Arc<Remote>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RemoteWriter {
    /// Queues what the history records (called with every batch of history ops).
    pub fn observe(&self, ops: &[Op]) {
        for r in &self.remotes {
            for op in ops {
                match op {
                    Op::Sample(l, t, v) => r.offer(l, *t, *v),
                    Op::Stale(l, t) => r.offer(l, *t, promql_engine::storage::stale_nan()),
                }
            }
            r.metrics
                .pending
                .set((r.queue.len() + r.in_flight.load(Ordering::Relaxed)) as i64);
        }
    }

    /// Sends what is queued and stops the senders, waiting at most `grace`; what is still
    /// unsent then is counted as dropped (`reason="shutdown"`).
    pub async fn drain(&self, grace: Duration) {
        for r in &self.remotes {
            r.queue.close();
        }
        let tasks = std::mem::take(&mut *match self.tasks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        });
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_join(tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
            for r in &self.remotes {
                let left = r.queue.len() + r.in_flight.swap(0, Ordering::Relaxed);
                if left > 0 {
                    r.metrics.dropped("shutdown").inc_by(left as u64);
                    tracing::warn!(remote = %r.name, samples = left,
                        "Shutdown grace period over; unsent samples dropped.");
                }
                let _ = r.queue.take(usize::MAX);
                r.metrics.pending.set(0);
            }
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Starts a sender per entry of `configs` (validated with the config) and taps `history`.
/// `None` when there is no remote.
pub fn start(
    configs: &[RemoteWriteConfig],
    history: &crate::query::history::History,
    registry: &Registry,
) -> Option<Arc<RemoteWriter>> {
    if configs.is_empty() {
        return None;
    }
    let vecs = Vecs::register(registry);
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    let mut remotes = Vec::new();
    for cfg in configs {
        let name = cfg.remote_name();
        // Validated with the config file; an invalid step here is skipped, not fatal.
        let relabel = cfg
            .write_relabel_configs
            .iter()
            .filter_map(|r| r.compile().ok())
            .collect();
        let metrics = RemoteMetrics {
            sent: vecs.sent.with_label_values(&[&name]),
            failed: vecs.failed.with_label_values(&[&name]),
            retried: vecs.retried.with_label_values(&[&name]),
            dropped: vecs.dropped.clone(),
            pending: vecs.pending.with_label_values(&[&name]),
            name: name.clone(),
        };
        for reason in ["queue_full", "rejected"] {
            let _ = metrics.dropped(reason);
        }
        tracing::info!(remote = %name, "Remote write enabled.");
        remotes.push(Arc::new(Remote {
            name,
            queue: Queue::new(cfg.queue_config.capacity),
            config: cfg.clone(),
            relabel,
            in_flight: AtomicUsize::new(0),
            metrics,
        }));
    }
    let tasks = remotes
        .iter()
        .map(|r| tokio::spawn(sender::run(r.clone(), client.clone())))
        .collect();
    let writer = Arc::new(RemoteWriter {
        remotes,
        tasks: std::sync::Mutex::new(tasks),
    });
    let tap = writer.clone();
    history.set_tap(Arc::new(move |ops: &[Op]| tap.observe(ops)));
    Some(writer)
}
