//! The bounded queue of one remote: samples wait here for their batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use promql_engine::labels::Labels;
use promql_engine::storage::is_stale;

/// One sample to send: labels (after relabelling), ms, value.
pub type QueuedSample = (Labels, i64, f64);

/// What [`Queue::push`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full.
    Full,
    /// Not newer than the series' last queued sample (a receiver would refuse the batch).
    OutOfOrder,
    /// A staleness marker for a series that is stale or unknown already.
    Ignored,
}

#[derive(Default)]
struct State {
    samples: VecDeque<QueuedSample>,
    /// Newest timestamp queued per live series (removed when it turns stale).
    last: HashMap<Labels, i64>,
    closed: bool,
}

/// A bounded FIFO of samples with a wake-up for the sender.
pub struct Queue {
    capacity: usize,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

impl Queue {
    /// An empty queue holding at most `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
            notify: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Queues one sample unless the queue is full or the sample is out of order.
    pub fn push(&self, labels: Labels, t: i64, v: f64) -> Pushed {
        let mut s = self.state();
        let last = s.last.get(&labels).copied();
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
        if s.samples.len() >= self.capacity {
            return Pushed::Full;
        }
        if !is_stale(v) {
            s.last.insert(labels.clone(), t);
        }
        s.samples.push_back((labels, t, v));
        let wake = s.samples.len() == 1 || s.samples.len().is_multiple_of(256);
        drop(s);
        if wake {
            self.notify.notify_one();
        }
        Pushed::Queued
    }

    /// Takes up to `max` samples, oldest first.
    pub fn take(&self, max: usize) -> Vec<QueuedSample> {
        let mut s = self.state();
        let n = max.min(s.samples.len());
        s.samples.drain(..n).collect()
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.state().samples.len()
    }

    /// Whether no sample waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells the sender to send what is left and stop.
    pub fn close(&self) {
        self.state().closed = true;
        self.notify.notify_one();
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Waits for a push (or a close) after the last wake-up.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use promql_engine::storage::stale_nan;

    use super::*;

    #[test]
    fn bounded_in_order_and_staleness_only_for_live_series() {
        let q = Queue::new(2);
        let a = Labels::new([("__name__", "a")]);
        let b = Labels::new([("__name__", "b")]);
        assert_eq!(q.push(a.clone(), 1, 1.0), Pushed::Queued);
        assert_eq!(q.push(a.clone(), 1, 2.0), Pushed::OutOfOrder);
        assert_eq!(q.push(b.clone(), 5, stale_nan()), Pushed::Ignored);
        assert_eq!(q.push(b.clone(), 5, 1.0), Pushed::Queued);
        assert_eq!(q.push(a.clone(), 2, 1.0), Pushed::Full);
        assert_eq!(q.take(10).len(), 2);
        assert_eq!(q.push(a.clone(), 3, stale_nan()), Pushed::Queued);
        assert_eq!(q.push(a, 4, stale_nan()), Pushed::Ignored);
        // A marker that does not fit still ends the series' entry.
        let q = Queue::new(1);
        assert_eq!(q.push(b.clone(), 1, 1.0), Pushed::Queued);
        assert_eq!(q.push(b.clone(), 2, stale_nan()), Pushed::Full);
        assert_eq!(q.state().last.len(), 0);
    }
}
