//! The bounded, sharded queue of one remote: samples wait here for their batch.
//!
//! A series always lands in the same shard (a hash of its labels modulo the number of
//! shards), and each shard is sent by one worker one batch at a time, so the samples of a
//! series reach the receiver in order. Resharding ([`Queue::reshard`]) starts a new
//! *generation*: the queued samples are moved to their new shards in order, the workers of
//! the old generation see it and stop after their current request, and a batch they could
//! not send goes back to the front of its shards ([`Queue::requeue_front`]) before the new
//! workers start.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use promql_engine::labels::Labels;
use promql_engine::storage::is_stale;
use tokio::sync::Notify;

/// One sample to send: labels (after relabelling), ms, value.
pub type QueuedSample = (Labels, i64, f64);

/// What [`Queue::push`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The series' shard was full.
    Full,
    /// Not newer than the series' last queued sample (a receiver would refuse the batch).
    OutOfOrder,
    /// A staleness marker for a series that is stale or unknown already.
    Ignored,
}

/// The wake-ups of one generation's shards, one per shard.
pub type Wakers = Arc<[Notify]>;

struct State {
    shards: Vec<VecDeque<QueuedSample>>,
    wake: Wakers,
    /// Newest timestamp queued per live series (removed when it turns stale).
    last: HashMap<Labels, i64>,
    /// Most samples one shard holds.
    capacity: usize,
    /// A shard with this many samples wakes its worker at once (a full batch).
    batch: usize,
    generation: u64,
    len: usize,
    closed: bool,
}

/// The shards of one remote's queue, behind one lock (pushes hold it for one sample,
/// workers for one batch).
pub struct Queue {
    state: Mutex<State>,
}

fn wakers(n: usize) -> Wakers {
    (0..n).map(|_| Notify::new()).collect()
}

/// The shard of a series among `n`.
pub fn shard_of(labels: &Labels, n: usize) -> usize {
    let mut h = DefaultHasher::new();
    labels.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

impl Queue {
    /// An empty queue of `shards` shards holding at most `capacity` samples each; a shard
    /// wakes its worker early once it holds `batch` samples.
    pub fn new(capacity: usize, shards: usize, batch: usize) -> Self {
        let shards = shards.max(1);
        Self {
            state: Mutex::new(State {
                shards: (0..shards).map(|_| VecDeque::new()).collect(),
                wake: wakers(shards),
                last: HashMap::new(),
                capacity,
                batch: batch.max(1),
                generation: 0,
                len: 0,
                closed: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Queues one sample unless its shard is full or the sample is out of order. The
    /// samples of a live series share one copy of its labels (as Prometheus's queue
    /// interns them): a backlog costs a pointer per sample, not a label set.
    pub fn push(&self, labels: Labels, t: i64, v: f64) -> Pushed {
        let mut s = self.state();
        let (labels, last) = match s.last.get_key_value(&labels) {
            Some((k, last)) => (k.clone(), Some(*last)),
            None => (labels, None),
        };
        if is_stale(v) && last.is_none() {
            return Pushed::Ignored;
        }
        if last.is_some_and(|l| t <= l) {
            return Pushed::OutOfOrder;
        }
        if is_stale(v) {
            // Forgotten even when the marker does not fit: no entry outlives its series.
            s.last.remove(&labels);
        }
        let i = shard_of(&labels, s.shards.len());
        if s.shards[i].len() >= s.capacity {
            return Pushed::Full;
        }
        if !is_stale(v) {
            s.last.insert(labels.clone(), t);
        }
        s.shards[i].push_back((labels, t, v));
        s.len += 1;
        let n = s.shards[i].len();
        if n == 1 || n == s.batch || n.is_multiple_of(256) {
            s.wake[i].notify_one();
        }
        Pushed::Queued
    }

    /// Takes up to `max` samples of `shard`, oldest first; `None` when `generation` is
    /// over (the worker must stop).
    pub fn take(&self, generation: u64, shard: usize, max: usize) -> Option<Vec<QueuedSample>> {
        let mut s = self.state();
        if s.generation != generation {
            return None;
        }
        let q = s.shards.get_mut(shard)?;
        let n = max.min(q.len());
        let batch: Vec<_> = q.drain(..n).collect();
        s.len -= batch.len();
        Some(batch)
    }

    /// Samples waiting in `shard`; `None` when `generation` is over.
    pub fn shard_len(&self, generation: u64, shard: usize) -> Option<usize> {
        let s = self.state();
        if s.generation != generation {
            return None;
        }
        s.shards.get(shard).map(VecDeque::len)
    }

    /// Puts a batch that could not be sent back at the front of its series' shards (in the
    /// current generation), so it goes out first and in order. It may take a shard over
    /// its capacity; pushes to that shard are refused until it is back under.
    pub fn requeue_front(&self, batch: Vec<QueuedSample>) {
        let mut s = self.state();
        let n = s.shards.len();
        s.len += batch.len();
        for sample in batch.into_iter().rev() {
            let i = shard_of(&sample.0, n);
            s.shards[i].push_front(sample);
        }
        for w in s.wake.iter() {
            w.notify_one();
        }
    }

    /// Starts a new generation of `n` shards: the queued samples move to their new shards
    /// in order; the old generation's workers are woken to see that it is over. Returns
    /// the new generation and its wake-ups. As with [`Queue::requeue_front`], a shard may
    /// end up over its capacity when shrinking.
    pub fn reshard(&self, n: usize) -> (u64, Wakers) {
        let n = n.max(1);
        let mut s = self.state();
        let old = std::mem::replace(&mut s.shards, (0..n).map(|_| VecDeque::new()).collect());
        for q in old {
            for sample in q {
                let i = shard_of(&sample.0, n);
                s.shards[i].push_back(sample);
            }
        }
        let old_wake = std::mem::replace(&mut s.wake, wakers(n));
        s.generation += 1;
        for w in old_wake.iter() {
            w.notify_one();
        }
        (s.generation, s.wake.clone())
    }

    /// The current generation and its wake-ups.
    pub fn generation(&self) -> (u64, Wakers) {
        let s = self.state();
        (s.generation, s.wake.clone())
    }

    /// Whether `generation` is still the current one.
    pub fn is_current(&self, generation: u64) -> bool {
        self.state().generation == generation
    }

    /// Number of shards of the current generation.
    pub fn shards(&self) -> usize {
        self.state().shards.len()
    }

    /// Sets the per-shard capacity and the batch size that wakes a worker early.
    pub fn set_limits(&self, capacity: usize, batch: usize) {
        let mut s = self.state();
        s.capacity = capacity;
        s.batch = batch.max(1);
    }

    /// Samples waiting in all shards.
    pub fn len(&self) -> usize {
        self.state().len
    }

    /// Whether no sample waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells the workers to send what is left and stop.
    pub fn close(&self) {
        let mut s = self.state();
        s.closed = true;
        for w in s.wake.iter() {
            w.notify_one();
        }
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Empties every shard; returns how many samples were dropped.
    pub fn discard(&self) -> usize {
        let mut s = self.state();
        for q in &mut s.shards {
            q.clear();
        }
        std::mem::take(&mut s.len)
    }
}

#[cfg(test)]
mod tests {
    use promql_engine::storage::stale_nan;

    use super::*;

    fn series(i: usize) -> Labels {
        Labels::new([("__name__", format!("m{i}").as_str())])
    }

    #[test]
    fn bounded_in_order_and_staleness_only_for_live_series() {
        let q = Queue::new(2, 1, 100);
        let a = Labels::new([("__name__", "a")]);
        let b = Labels::new([("__name__", "b")]);
        assert_eq!(q.push(a.clone(), 1, 1.0), Pushed::Queued);
        assert_eq!(q.push(a.clone(), 1, 2.0), Pushed::OutOfOrder);
        assert_eq!(q.push(b.clone(), 5, stale_nan()), Pushed::Ignored);
        assert_eq!(q.push(b.clone(), 5, 1.0), Pushed::Queued);
        assert_eq!(q.push(a.clone(), 2, 1.0), Pushed::Full);
        assert_eq!(q.take(0, 0, 10).map(|b| b.len()), Some(2));
        assert_eq!(q.push(a.clone(), 3, stale_nan()), Pushed::Queued);
        assert_eq!(q.push(a, 4, stale_nan()), Pushed::Ignored);
        // A marker that does not fit still ends the series' entry.
        let q = Queue::new(1, 1, 100);
        assert_eq!(q.push(b.clone(), 1, 1.0), Pushed::Queued);
        assert_eq!(q.push(b.clone(), 2, stale_nan()), Pushed::Full);
        assert_eq!(q.state().last.len(), 0);
    }

    /// Each shard's samples, as (series index, timestamp).
    fn contents(q: &Queue) -> Vec<Vec<(String, i64)>> {
        q.state()
            .shards
            .iter()
            .map(|s| s.iter().map(|(l, t, _)| (format!("{l:?}"), *t)).collect())
            .collect()
    }

    #[test]
    fn a_series_stays_in_one_shard_and_in_order_through_reshards_and_requeues() {
        let q = Queue::new(1000, 4, 100);
        for t in 1..=5 {
            for i in 0..40 {
                assert_eq!(q.push(series(i), t, t as f64), Pushed::Queued);
            }
        }
        let check = |q: &Queue| {
            let mut seen: HashMap<String, (usize, i64)> = HashMap::new();
            for (shard, samples) in contents(q).into_iter().enumerate() {
                for (l, t) in samples {
                    if let Some((s, last)) = seen.insert(l.clone(), (shard, t)) {
                        assert_eq!(s, shard, "{l} in two shards");
                        assert!(t > last, "{l}: {t} after {last}");
                    }
                }
            }
        };
        check(&q);
        // A worker of shard 0 takes a batch, the queue reshards to 3, the batch comes back.
        let batch = q.take(0, 0, 7).unwrap();
        assert_eq!(batch.len(), 7);
        let (g, wake) = q.reshard(3);
        assert_eq!((g, wake.len()), (1, 3));
        assert_eq!(q.take(0, 0, 7), None, "the old generation is over");
        q.requeue_front(batch);
        assert_eq!(q.len(), 200);
        check(&q);
        q.reshard(1);
        check(&q);
        q.reshard(7);
        check(&q);
        let mut total = 0;
        for shard in 0..7 {
            total += q.take(3, shard, usize::MAX).unwrap().len();
        }
        assert_eq!(total, 200);
        assert!(q.is_empty());
    }
}
