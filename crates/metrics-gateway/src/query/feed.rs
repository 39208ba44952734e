//! [`HistoryFeed`]: what the store tells about pushes, queued for the history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use promql_engine::labels::Labels;
use promql_engine::FloatHistogram;

use super::history::{unix_ms, History, Op};
use crate::grouping::GroupKey;
use crate::store::{HistogramSample, PushObserver, Sample};

/// Ops held for the history before a push path would wait for it: above this the push
/// that adds more applies them itself (back-pressure rather than drops).
const MAX_PENDING_OPS: usize = 2_000_000;

/// Feeds the history from the store: records every group change and, on
/// [`HistoryFeed::record`], every live series' current value.
///
/// A push only queues its samples ([`PushObserver::group_changed`] runs under the store's
/// lock, so it must never wait for a query reading the history); the queue is applied by
/// [`HistoryFeed::flush`], which readers call before they read and the recorder calls
/// every second.
pub struct HistoryFeed {
    history: std::sync::Arc<History>,
    groups: Mutex<HashMap<GroupKey, Vec<(Labels, f64)>>>,
    pending: Mutex<Vec<Op>>,
    /// Native histograms: each group's current ones, and those queued for the history.
    hist_groups: Mutex<HashMap<GroupKey, Vec<HistEntry>>>,
    hist_pending: Mutex<Vec<(Labels, i64, Arc<FloatHistogram>)>>,
}

type HistEntry = (Labels, Arc<FloatHistogram>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl HistoryFeed {
    /// A feed writing into `history`.
    pub fn new(history: std::sync::Arc<History>) -> Self {
        Self {
            history,
            groups: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            hist_groups: Mutex::new(HashMap::new()),
            hist_pending: Mutex::new(Vec::new()),
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, Vec<(Labels, f64)>>> {
        match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        match self.pending.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Applies the queued samples to the history.
    pub fn flush(&self) {
        let ops = std::mem::take(&mut *self.pending());
        self.history.apply(ops);
        let hists = std::mem::take(&mut *lock(&self.hist_pending));
        self.history.apply_histograms(hists);
    }

    /// Records the current value of every series of every live group at `t` (ms).
    pub fn record(&self, t: i64) {
        let snapshot: Vec<Op> = self
            .groups()
            .values()
            .flatten()
            .map(|(l, v)| Op::Sample(l.clone(), t, *v))
            .collect();
        self.pending().extend(snapshot);
        let hists: Vec<_> = lock(&self.hist_groups)
            .values()
            .flatten()
            .map(|(l, h)| (l.clone(), t, h.clone()))
            .collect();
        lock(&self.hist_pending).extend(hists);
        self.flush();
    }
}

impl PushObserver for HistoryFeed {
    fn group_histograms(&self, at: SystemTime, group: &GroupKey, histograms: &[HistogramSample]) {
        let t = unix_ms(at);
        let now: Vec<HistEntry> = histograms
            .iter()
            .map(|(l, h)| (Labels::new(l.iter().cloned()), h.clone()))
            .collect();
        let mut g = lock(&self.hist_groups);
        if let Some(old) = g.get(group) {
            let current: std::collections::HashSet<&Labels> = now.iter().map(|(l, _)| l).collect();
            let gone: Vec<Op> = old
                .iter()
                .filter(|(l, _)| !current.contains(l))
                .map(|(l, _)| Op::Stale(l.clone(), t))
                .collect();
            self.pending().extend(gone);
        }
        lock(&self.hist_pending).extend(now.iter().map(|(l, h)| (l.clone(), t, h.clone())));
        if now.is_empty() {
            g.remove(group);
        } else {
            g.insert(group.clone(), now);
        }
    }

    fn group_changed(&self, at: SystemTime, group: &GroupKey, samples: &[Sample]) {
        let t = unix_ms(at);
        let now: Vec<(Labels, f64)> = samples
            .iter()
            .map(|(l, v)| (Labels::new(l.iter().cloned()), *v))
            .collect();
        let mut ops: Vec<Op> = now
            .iter()
            .map(|(l, v)| Op::Sample(l.clone(), t, *v))
            .collect();
        let mut g = self.groups();
        if let Some(old) = g.get(group) {
            let current: std::collections::HashSet<&Labels> = now.iter().map(|(l, _)| l).collect();
            ops.extend(
                old.iter()
                    .filter(|(l, _)| !current.contains(l))
                    .map(|(l, _)| Op::Stale(l.clone(), t)),
            );
        }
        if now.is_empty() {
            g.remove(group);
        } else {
            g.insert(group.clone(), now);
        }
        let full = {
            let mut p = self.pending();
            p.extend(ops);
            p.len() > MAX_PENDING_OPS
        };
        drop(g);
        if full {
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use promql_engine::labels::{Matcher, METRIC_NAME};
    use promql_engine::storage::{is_stale, Storage};

    use super::*;
    use crate::query::history::HistoryLimits;

    fn name(n: &str) -> Vec<Matcher> {
        vec![Matcher::equal(METRIC_NAME, n)]
    }

    fn unbounded() -> History {
        History::new(HistoryLimits {
            retention_ms: i64::MAX / 4,
            max_bytes: 0,
        })
    }

    #[test]
    fn the_feed_queues_pushes_until_flushed_and_marks_removed_series_stale() {
        let h = std::sync::Arc::new(unbounded());
        let feed = HistoryFeed::new(h.clone());
        let key = crate::grouping::parse_path("job/a").unwrap();
        let s = |name: &str, v: f64| {
            (
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("job".to_string(), "a".to_string()),
                ],
                v,
            )
        };
        let at = |secs: u64| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        feed.group_changed(at(100), &key, &[s("x", 1.0), s("y", 2.0)]);
        assert_eq!(
            h.stats().samples,
            0,
            "a push never writes the history itself"
        );
        feed.flush();
        assert_eq!(h.stats().samples, 2);
        feed.group_changed(at(101), &key, &[s("x", 3.0)]);
        feed.record(102_000);
        let x = h.select(&name("x"), 0, i64::MAX);
        assert_eq!(
            x[0].samples,
            vec![(100_000, 1.0), (101_000, 3.0), (102_000, 3.0)]
        );
        let y = h.select(&name("y"), 0, i64::MAX);
        assert_eq!(y[0].samples.len(), 2);
        assert!(is_stale(y[0].samples[1].1) && y[0].samples[1].0 == 101_000);
        // The group goes: x turns stale too, and is not recorded again.
        feed.group_changed(at(103), &key, &[]);
        feed.record(104_000);
        let x = h.select(&name("x"), 0, i64::MAX);
        assert_eq!(x[0].samples.len(), 4);
        assert!(is_stale(x[0].samples[3].1));
    }

    #[test]
    fn native_histograms_reach_the_history_and_the_engine() {
        let h = std::sync::Arc::new(unbounded());
        let feed = HistoryFeed::new(h.clone());
        let key = GroupKey::default();
        let (hist, _) =
            promql_engine::histogram::parse_notation("schema:0 count:4 sum:6 buckets:[1 2 1]")
                .unwrap();
        let labels = vec![("__name__".to_owned(), "lat".to_owned())];
        feed.group_histograms(
            UNIX_EPOCH + std::time::Duration::from_secs(100),
            &key,
            &[(labels, Arc::new(hist))],
        );
        feed.flush();
        let engine = promql_engine::Engine::default();
        let q = "histogram_count(lat)";
        let expr = promql_engine::parse(q).unwrap();
        let r = engine.instant(&*h, q, &expr, 110_000).unwrap();
        match r.value {
            promql_engine::Value::Vector(v) => assert_eq!(v[0].f, 4.0),
            other => panic!("{other:?}"),
        }
        // The group goes away: the series is marked stale.
        feed.group_histograms(UNIX_EPOCH + std::time::Duration::from_secs(120), &key, &[]);
        feed.flush();
        let r = engine.instant(&*h, q, &expr, 130_000).unwrap();
        assert_eq!(r.value, promql_engine::Value::Vector(vec![]));
    }
}
