//! The workers of one remote, one per shard, and the rule that scales their number.
//!
//! # Scaling
//! Every `queue_config.shard_update_interval` (10 s by default, Prometheus's fixed period)
//! [`Scaler::desired`] looks at the last interval:
//! - nothing queued and nothing waiting: `min_shards`;
//! - no batch finished, or none accepted within `2 × batch_send_deadline` (at least one
//!   interval): unchanged (more shards do not help a receiver that is down);
//! - otherwise `desired = time_per_sample × (in_rate + backlog / interval)`, where
//!   `time_per_sample` is the time spent sending (retries included) divided by the samples
//!   those sends carried, `in_rate` the samples queued per second (smoothed over two
//!   intervals) and `backlog` what waits now: the shards needed to keep up with what comes
//!   in and to clear the backlog within one interval. A change within ±30% of the current
//!   number is ignored (no flapping); the result is rounded up and kept within
//!   `min_shards..=max_shards`.
//!
//! This is Prometheus's rule with its integral term replaced by the backlog itself.
//!
//! A reshard or a settings change starts a new queue generation
//! ([`super::queue::Queue::reshard`]) and waits for the old workers to finish their
//! current request before the new ones start, so a series' samples never overtake each
//! other.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::QueueConfig;
use super::{sender, Remote};

/// Runs the workers of `remote` until its queue is closed and sent.
pub async fn manage(remote: Arc<Remote>, client: reqwest::Client) {
    let mut workers = JoinSet::new();
    let mut settings = remote.settings();
    let mut n = remote.queue.shards();
    spawn(&remote, &client, &mut workers, &settings);
    let mut scaler = Scaler::new(&remote);
    let mut tick = interval(settings.config.queue_config.shard_update_interval);
    loop {
        if remote.queue.is_closed() && workers.is_empty() {
            return;
        }
        tokio::select! {
            Some(joined) = workers.join_next(), if !workers.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(remote = %remote.name, "A remote write worker panicked; restarting the shards.");
                        reshard(&remote, &client, &mut workers, &settings, n).await;
                    }
                }
            }
            _ = tick.tick() => {
                if remote.queue.is_closed() {
                    continue;
                }
                let q = &settings.config.queue_config;
                let to = scaler.desired(&remote, q, n);
                if to != n {
                    tracing::info!(remote = %remote.name, from = n, to, "Remote write resharding.");
                    n = to;
                    reshard(&remote, &client, &mut workers, &settings, n).await;
                }
            }
            _ = remote.restart.notified() => {
                settings = remote.settings();
                let q = &settings.config.queue_config;
                n = n.clamp(q.min_shards, q.max_shards.max(q.min_shards));
                reshard(&remote, &client, &mut workers, &settings, n).await;
                tick = interval(q.shard_update_interval);
                scaler = Scaler::new(&remote);
            }
        }
    }
}

fn interval(period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(10));
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Starts a worker per shard of the queue's current generation.
fn spawn(
    remote: &Arc<Remote>,
    client: &reqwest::Client,
    workers: &mut JoinSet<()>,
    settings: &Arc<super::Settings>,
) {
    let (generation, wake) = remote.queue.generation();
    for shard in 0..wake.len() {
        workers.spawn(sender::worker(
            remote.clone(),
            settings.clone(),
            client.clone(),
            generation,
            shard,
            wake.clone(),
        ));
    }
    remote
        .metrics
        .shards
        .set(wake.len().try_into().unwrap_or(i64::MAX));
}

/// Moves the queue to `n` shards, waits for the old workers' current requests, then
/// starts the new workers.
async fn reshard(
    remote: &Arc<Remote>,
    client: &reqwest::Client,
    workers: &mut JoinSet<()>,
    settings: &Arc<super::Settings>,
    n: usize,
) {
    remote.queue.reshard(n);
    while workers.join_next().await.is_some() {}
    spawn(remote, client, workers, settings);
}

/// The shard-count rule (see the module docs).
pub struct Scaler {
    at: Instant,
    queued: u64,
    done: u64,
    nanos: u64,
    in_rate: Option<f64>,
}

/// Changes smaller than this fraction of the current number are ignored.
const TOLERANCE: f64 = 0.3;

impl Scaler {
    fn new(remote: &Remote) -> Self {
        Self {
            at: Instant::now(),
            queued: remote.stats.queued.load(Ordering::Relaxed),
            done: remote.stats.done.load(Ordering::Relaxed),
            nanos: remote.stats.send_nanos.load(Ordering::Relaxed),
            in_rate: None,
        }
    }

    /// The number of shards `remote` should have now, given `n` now.
    fn desired(&mut self, remote: &Remote, q: &QueueConfig, n: usize) -> usize {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let queued = remote.stats.queued.load(Ordering::Relaxed);
        let done = remote.stats.done.load(Ordering::Relaxed);
        let nanos = remote.stats.send_nanos.load(Ordering::Relaxed);
        let (dq, dd, dn) = (
            queued.saturating_sub(self.queued),
            done.saturating_sub(self.done),
            nanos.saturating_sub(self.nanos),
        );
        (self.at, self.queued, self.done, self.nanos) = (now, queued, done, nanos);
        let rate = dq as f64 / secs;
        let in_rate = self.in_rate.map_or(rate, |r| (r + rate) / 2.0);
        self.in_rate = Some(in_rate);
        let backlog = remote.queue.len() + remote.in_flight.load(Ordering::Relaxed);
        Sample {
            in_rate,
            done: dd,
            send_secs: dn as f64 / 1e9,
            backlog,
            queued: dq,
            since_success: since_ms(remote.stats.last_success_ms.load(Ordering::Relaxed)),
            interval: secs,
        }
        .desired(q, n)
    }
}

fn since_ms(at: i64) -> Option<Duration> {
    if at == 0 {
        return None;
    }
    let now = crate::query::history::unix_ms(std::time::SystemTime::now());
    Some(Duration::from_millis(now.saturating_sub(at).max(0) as u64))
}

/// What one interval showed.
struct Sample {
    in_rate: f64,
    /// Samples in batches whose sending finished.
    done: u64,
    /// Time those sends took.
    send_secs: f64,
    backlog: usize,
    queued: u64,
    /// Since the last accepted batch (`None`: never).
    since_success: Option<Duration>,
    interval: f64,
}

impl Sample {
    fn desired(&self, q: &QueueConfig, n: usize) -> usize {
        let (min, max) = (q.min_shards, q.max_shards.max(q.min_shards));
        if self.backlog == 0 && self.queued == 0 {
            return min;
        }
        let window = (2 * q.batch_send_deadline).max(q.shard_update_interval);
        let recent = self.since_success.is_some_and(|d| d <= window);
        if self.done == 0 || !recent {
            return n;
        }
        let per_sample = self.send_secs / self.done as f64;
        let want = per_sample * (self.in_rate + self.backlog as f64 / self.interval);
        let cur = n as f64;
        if want >= cur * (1.0 - TOLERANCE) && want <= cur * (1.0 + TOLERANCE) {
            return n;
        }
        (want.ceil() as usize).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(min: usize, max: usize) -> QueueConfig {
        QueueConfig {
            min_shards: min,
            max_shards: max,
            ..QueueConfig::default()
        }
    }

    fn busy(in_rate: f64, backlog: usize, per_sample: f64) -> Sample {
        Sample {
            in_rate,
            done: 1000,
            send_secs: per_sample * 1000.0,
            backlog,
            queued: 1,
            since_success: Some(Duration::from_secs(1)),
            interval: 10.0,
        }
    }

    #[test]
    fn shards_follow_the_load_within_bounds() {
        // 10 ms per sample, 100 samples/s in, nothing waiting: one shard keeps up.
        assert_eq!(busy(100.0, 0, 0.01).desired(&q(1, 10), 1), 1);
        // 1,000/s in: 10 shards; capped at max.
        assert_eq!(busy(1000.0, 0, 0.01).desired(&q(1, 50), 1), 10);
        assert_eq!(busy(1000.0, 0, 0.01).desired(&q(1, 4), 1), 4);
        // A backlog of 5,000 to clear within the 10 s interval adds 500/s: 6 shards.
        assert_eq!(busy(100.0, 5000, 0.01).desired(&q(1, 50), 1), 6);
        // Within ±30% of the current number: unchanged.
        assert_eq!(busy(1000.0, 0, 0.01).desired(&q(1, 50), 8), 8);
        assert_eq!(busy(1000.0, 0, 0.01).desired(&q(1, 50), 12), 12);
        // Little load: down, but not under min.
        assert_eq!(busy(10.0, 0, 0.01).desired(&q(2, 50), 8), 2);
        // Idle: min.
        let idle = Sample {
            queued: 0,
            ..busy(0.0, 0, 0.01)
        };
        assert_eq!(idle.desired(&q(3, 50), 20), 3);
    }

    #[test]
    fn no_reshard_while_the_receiver_fails_or_nothing_finished() {
        let down = Sample {
            since_success: Some(Duration::from_secs(60)),
            ..busy(1000.0, 5000, 0.01)
        };
        assert_eq!(down.desired(&q(1, 50), 2), 2);
        let never = Sample {
            since_success: None,
            ..busy(1000.0, 5000, 0.01)
        };
        assert_eq!(never.desired(&q(1, 50), 2), 2);
        let nothing = Sample {
            done: 0,
            ..busy(1000.0, 5000, 0.01)
        };
        assert_eq!(nothing.desired(&q(1, 50), 2), 2);
    }
}
