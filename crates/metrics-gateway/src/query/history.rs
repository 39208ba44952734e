//! The query history: every sample the gateway records, in compressed chunks
//! ([`super::chunk`]), kept for the retention under a memory bound.
//!
//! What is recorded is what a Prometheus scraping the gateway would store, and what the
//! rule evaluator sees: each accepted change to a group records the group's samples at
//! the push time ([`super::feed::HistoryFeed`]); every `--storage.record-interval`
//! the current value of every series of every live group is recorded again (a group
//! pushed once stays visible, as on `/metrics`); a series that leaves its group, or whose
//! group is deleted or expires, gets a staleness marker.
//!
//! Bounds: chunks whose newest sample is older than the retention are dropped, and when
//! the history holds more than `max_bytes` the oldest chunks go first until it is back
//! under 90% of the bound. Both are counted ([`HistoryStats`]). Nothing survives a
//! restart (see the README).
//!
//! Readers ([`promql_engine::Storage`]) take the read lock once per selector and decode
//! only the chunks overlapping the window; writers hold the write lock for one append.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use promql_engine::labels::{Labels, MatchKind, Matcher, METRIC_NAME};
use promql_engine::storage::{
    is_histogram_placeholder, is_stale, stale_nan, Series, Storage, HISTOGRAM_PLACEHOLDER_BITS,
};
use promql_engine::FloatHistogram;

use super::chunk::Chunk;

/// Bounds of the history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Chunks whose newest sample is older than this (ms before now) are dropped.
    pub retention_ms: i64,
    /// Most bytes the chunks and series may take (0 = no bound).
    pub max_bytes: usize,
}

/// Size figures and drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Series held.
    pub series: usize,
    /// Samples held.
    pub samples: usize,
    /// Chunks held (sealed and open).
    pub chunks: usize,
    /// Estimated bytes held.
    pub bytes: usize,
    /// Chunks dropped because they passed the retention.
    pub chunks_dropped_retention: u64,
    /// Chunks dropped (oldest first) to stay under the memory bound.
    pub chunks_dropped_memory: u64,
    /// Samples dropped with those chunks.
    pub samples_dropped: u64,
    /// Samples refused because they were older than the series' newest sample.
    pub out_of_order: u64,
}

/// Fixed cost of a series beside its labels and chunks (map entries, indexes).
const SERIES_OVERHEAD: usize = 160;

struct SeriesBuf {
    /// Sealed chunks, oldest first.
    chunks: VecDeque<Chunk>,
    /// The chunk being appended to.
    open: Chunk,
    /// The newest sample, not yet encoded (a sample at the same timestamp replaces it).
    pending: Option<(i64, f64)>,
}

impl SeriesBuf {
    fn new() -> Self {
        Self {
            chunks: VecDeque::new(),
            open: Chunk::new(),
            pending: None,
        }
    }

    fn newest(&self) -> Option<i64> {
        self.pending
            .map(|p| p.0)
            .or_else(|| (!self.open.is_empty()).then(|| self.open.max_t()))
            .or_else(|| self.chunks.back().map(Chunk::max_t))
    }

    fn last_value(&self) -> Option<f64> {
        self.pending.map(|p| p.1)
    }

    fn samples(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum::<usize>()
            + self.open.len()
            + usize::from(self.pending.is_some())
    }

    /// Every sample in `mint..=maxt`, in order.
    fn collect(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        for c in self.chunks.iter().chain(std::iter::once(&self.open)) {
            if c.is_empty() || c.max_t() < mint || c.min_t() > maxt {
                continue;
            }
            out.extend(c.iter().filter(|&(t, _)| t >= mint && t <= maxt));
        }
        if let Some((t, v)) = self.pending {
            if t >= mint && t <= maxt {
                out.push((t, v));
            }
        }
    }

    /// The newest sample at or before `maxt`, if at or after `mint`.
    fn latest(&self, mint: i64, maxt: i64) -> Option<(i64, f64)> {
        if let Some((t, v)) = self.pending {
            if t <= maxt {
                return (t >= mint).then_some((t, v));
            }
        }
        for c in std::iter::once(&self.open).chain(self.chunks.iter().rev()) {
            if c.is_empty() || c.min_t() > maxt {
                continue;
            }
            let last = c.iter().take_while(|&(t, _)| t <= maxt).last();
            if let Some((t, v)) = last {
                return (t >= mint).then_some((t, v));
            }
        }
        None
    }

    fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        let first = self
            .chunks
            .front()
            .map(Chunk::min_t)
            .or_else(|| (!self.open.is_empty()).then(|| self.open.min_t()))
            .or(self.pending.map(|p| p.0));
        match (first, self.newest()) {
            (Some(lo), Some(hi)) => lo <= maxt && hi >= mint,
            _ => false,
        }
    }
}

#[derive(Default)]
struct Inner {
    series: HashMap<Labels, SeriesBuf>,
    by_name: BTreeMap<String, BTreeSet<Labels>>,
    /// Bytes of chunks plus series overhead.
    bytes: usize,
    samples: usize,
    chunks: usize,
    stats: HistoryStats,
    /// Native histograms by series and time. The chunk holds a marker value at their
    /// timestamps; the histograms themselves are kept as shared structs, not compressed.
    hists: HashMap<Labels, BTreeMap<i64, std::sync::Arc<FloatHistogram>>>,
}

impl Inner {
    fn candidates<'a>(
        &'a self,
        matchers: &'a [Matcher],
    ) -> Box<dyn Iterator<Item = &'a Labels> + 'a> {
        let name_eq = matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.kind, MatchKind::Equal));
        let it: Box<dyn Iterator<Item = &Labels>> = match name_eq {
            Some(m) => Box::new(self.by_name.get(&m.value).into_iter().flatten()),
            None => Box::new(self.series.keys()),
        };
        Box::new(it.filter(move |l| matchers.iter().all(|m| m.matches_labels(l))))
    }

    fn remove_series(&mut self, l: &Labels) {
        self.hists.remove(l);
        if let Some(buf) = self.series.remove(l) {
            self.bytes = self.bytes.saturating_sub(
                buf.chunks.iter().map(Chunk::heap_bytes).sum::<usize>()
                    + buf.open.heap_bytes()
                    + SERIES_OVERHEAD
                    + l.heap_bytes(),
            );
            self.samples = self.samples.saturating_sub(buf.samples());
            self.chunks = self
                .chunks
                .saturating_sub(buf.chunks.len() + usize::from(!buf.open.is_empty()));
            let name = l.name().unwrap_or("");
            if let Some(set) = self.by_name.get_mut(name) {
                set.remove(l);
                if set.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
    }
}

/// The compressed sample history; a [`Storage`] for the PromQL engine.
pub struct History {
    inner: RwLock<Inner>,
    limits: RwLock<HistoryLimits>,
    tap: std::sync::OnceLock<Tap>,
}

/// Sees every batch of ops before the history applies it (remote write).
pub type Tap = std::sync::Arc<dyn Fn(&[Op]) + Send + Sync>;

impl History {
    /// An empty history with these bounds.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            limits: RwLock::new(limits),
            tap: std::sync::OnceLock::new(),
        }
    }

    /// Sets the one tap that sees every batch of ops before it is applied (no lock held).
    pub fn set_tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> HistoryLimits {
        match self.limits.read() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// Records a sample. A sample at the timestamp of the series' newest one replaces it;
    /// an older one is refused and counted.
    pub fn append(&self, labels: &Labels, t: i64, v: f64) {
        self.apply(vec![Op::Sample(labels.clone(), t, v)]);
    }

    /// Marks a series stale at `t` unless it is stale already or unknown.
    pub fn mark_stale(&self, labels: &Labels, t: i64) {
        self.apply(vec![Op::Stale(labels.clone(), t)]);
    }

    /// Applies `ops` in order under one write lock.
    pub fn apply(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        if let Some(tap) = self.tap.get() {
            tap(&ops);
        }
        let max_bytes = self.limits().max_bytes;
        let mut guard = self.write();
        let inner = &mut *guard;
        for op in ops {
            match op {
                Op::Sample(l, t, v) => append_locked(inner, max_bytes, &l, t, v),
                Op::Stale(l, t) => {
                    let live = inner
                        .series
                        .get(&l)
                        .is_some_and(|b| b.last_value().is_some_and(|v| !is_stale(v)));
                    if live {
                        append_locked(inner, max_bytes, &l, t, stale_nan());
                    }
                }
            }
        }
    }

    /// Records native histograms (labels, ms, histogram), in order, under one write lock.
    pub fn apply_histograms(&self, items: Vec<(Labels, i64, std::sync::Arc<FloatHistogram>)>) {
        if items.is_empty() {
            return;
        }
        let max_bytes = self.limits().max_bytes;
        let mut guard = self.write();
        let inner = &mut *guard;
        for (l, t, h) in items {
            append_locked(
                inner,
                max_bytes,
                &l,
                t,
                f64::from_bits(HISTOGRAM_PLACEHOLDER_BITS),
            );
            if inner.series.contains_key(&l) {
                inner.hists.entry(l).or_default().insert(t, h);
            }
        }
    }

    /// Drops what passed the retention at `now` (ms); series left empty go away.
    pub fn gc(&self, now: i64) {
        let cutoff = now.saturating_sub(self.limits().retention_ms);
        let mut guard = self.write();
        let inner = &mut *guard;
        for m in inner.hists.values_mut() {
            *m = m.split_off(&cutoff);
        }
        inner.hists.retain(|_, m| !m.is_empty());
        let mut gone = Vec::new();
        let mut dropped = (0u64, 0u64, 0usize);
        for (l, buf) in inner.series.iter_mut() {
            if buf.newest().is_none_or(|n| n < cutoff) {
                gone.push(l.clone());
                continue;
            }
            while buf.chunks.front().is_some_and(|c| c.max_t() < cutoff) {
                if let Some(c) = buf.chunks.pop_front() {
                    dropped.0 += 1;
                    dropped.1 += c.len() as u64;
                    dropped.2 += c.heap_bytes();
                }
            }
        }
        inner.stats.chunks_dropped_retention += dropped.0;
        inner.stats.samples_dropped += dropped.1;
        inner.chunks = inner.chunks.saturating_sub(dropped.0 as usize);
        inner.samples = inner.samples.saturating_sub(dropped.1 as usize);
        inner.bytes = inner.bytes.saturating_sub(dropped.2);
        for l in gone {
            let (n, c) = inner
                .series
                .get(&l)
                .map(|b| {
                    (
                        b.samples(),
                        b.chunks.len() + usize::from(!b.open.is_empty()),
                    )
                })
                .unwrap_or((0, 0));
            inner.stats.samples_dropped += n as u64;
            inner.stats.chunks_dropped_retention += c as u64;
            inner.remove_series(&l);
        }
    }

    /// Size figures and counters.
    pub fn stats(&self) -> HistoryStats {
        let inner = self.read();
        HistoryStats {
            series: inner.series.len(),
            samples: inner.samples,
            chunks: inner.chunks,
            bytes: inner.bytes,
            ..inner.stats
        }
    }

    /// Label sets of the series matching any of `sets` (all series when `sets` is empty)
    /// with samples in `mint..=maxt`, sorted.
    pub fn series(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<Labels> {
        let inner = self.read();
        let mut out: BTreeSet<Labels> = BTreeSet::new();
        let all = [Vec::new()];
        let sets = if sets.is_empty() { &all[..] } else { sets };
        for ms in sets {
            for l in inner.candidates(ms) {
                if inner.series.get(l).is_some_and(|b| b.overlaps(mint, maxt)) {
                    out.insert(l.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

/// One write to the history.
#[derive(Debug, Clone)]
pub enum Op {
    /// A sample (labels, ms, value).
    Sample(Labels, i64, f64),
    /// A staleness marker at ms, written only if the series is live.
    Stale(Labels, i64),
}

fn append_locked(inner: &mut Inner, max_bytes: usize, labels: &Labels, t: i64, v: f64) {
    if !inner.series.contains_key(labels) {
        let name = labels.name().unwrap_or("").to_string();
        inner
            .by_name
            .entry(name)
            .or_default()
            .insert(labels.clone());
        inner.series.insert(labels.clone(), SeriesBuf::new());
        inner.bytes += SERIES_OVERHEAD + labels.heap_bytes() + Chunk::new().heap_bytes();
    }
    let Some(buf) = inner.series.get_mut(labels) else {
        return;
    };
    match buf.pending {
        Some((pt, _)) if t == pt => {
            buf.pending = Some((t, v));
            return;
        }
        Some((pt, _)) if t < pt => {
            inner.stats.out_of_order += 1;
            return;
        }
        _ => {}
    }
    if buf.pending.is_none() && buf.newest().is_some_and(|n| t <= n) {
        inner.stats.out_of_order += 1;
        return;
    }
    inner.samples += 1;
    let Some((pt, pv)) = buf.pending.replace((t, v)) else {
        return;
    };
    if buf.open.is_full() {
        let mut sealed = std::mem::replace(&mut buf.open, Chunk::new());
        let before = sealed.heap_bytes();
        sealed.shrink();
        inner.bytes = inner.bytes + sealed.heap_bytes() + Chunk::new().heap_bytes() - before;
        buf.chunks.push_back(sealed);
    }
    let was_empty = buf.open.is_empty();
    let before = buf.open.heap_bytes();
    buf.open.append(pt, pv);
    inner.bytes = inner.bytes + buf.open.heap_bytes() - before;
    if was_empty {
        inner.chunks += 1;
    }
    if max_bytes > 0 && inner.bytes > max_bytes {
        evict(inner, max_bytes - max_bytes / 10);
    }
}

/// Drops the oldest chunks (open ones last) until `inner.bytes <= target`.
fn evict(inner: &mut Inner, target: usize) {
    // Min-heap on the chunk's newest timestamp: (Reverse(max_t), series).
    let mut heap: BinaryHeap<(std::cmp::Reverse<i64>, Labels)> = inner
        .series
        .iter()
        .filter_map(|(l, b)| {
            b.chunks
                .front()
                .or((!b.open.is_empty()).then_some(&b.open))
                .map(|c| (std::cmp::Reverse(c.max_t()), l.clone()))
        })
        .collect();
    while inner.bytes > target {
        let Some((_, l)) = heap.pop() else {
            break;
        };
        let Some(buf) = inner.series.get_mut(&l) else {
            continue;
        };
        let dropped = match buf.chunks.pop_front() {
            Some(c) => c,
            None if !buf.open.is_empty() => {
                let fresh = Chunk::new();
                inner.bytes += fresh.heap_bytes();
                std::mem::replace(&mut buf.open, fresh)
            }
            None => continue,
        };
        inner.bytes = inner.bytes.saturating_sub(dropped.heap_bytes());
        inner.samples = inner.samples.saturating_sub(dropped.len());
        inner.chunks = inner.chunks.saturating_sub(1);
        inner.stats.chunks_dropped_memory += 1;
        inner.stats.samples_dropped += dropped.len() as u64;
        if let Some(next) = buf
            .chunks
            .front()
            .or((!buf.open.is_empty()).then_some(&buf.open))
        {
            heap.push((std::cmp::Reverse(next.max_t()), l));
        }
    }
}

impl Storage for History {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let inner = self.read();
        let mut out = Vec::new();
        for l in inner.candidates(matchers) {
            let Some(buf) = inner.series.get(l) else {
                continue;
            };
            let mut samples = Vec::new();
            buf.collect(mint, maxt, &mut samples);
            if !samples.is_empty() {
                let histograms = match inner.hists.get(l) {
                    Some(m) => samples
                        .iter()
                        .filter(|s| is_histogram_placeholder(s.1))
                        .filter_map(|s| m.get(&s.0).map(|h| (s.0, h.clone())))
                        .collect(),
                    None => Vec::new(),
                };
                out.push(Series {
                    labels: l.clone(),
                    samples,
                    histograms,
                });
            }
        }
        out
    }

    fn histogram_at(&self, labels: &Labels, t: i64) -> Option<std::sync::Arc<FloatHistogram>> {
        self.read().hists.get(labels)?.get(&t).cloned()
    }

    fn select_latest(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, i64, f64)> {
        let inner = self.read();
        let mut out = Vec::new();
        for l in inner.candidates(matchers) {
            if let Some((t, v)) = inner.series.get(l).and_then(|b| b.latest(mint, maxt)) {
                out.push((l.clone(), t, v));
            }
        }
        out
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbounded() -> History {
        History::new(HistoryLimits {
            retention_ms: i64::MAX / 4,
            max_bytes: 0,
        })
    }

    fn name(n: &str) -> Vec<Matcher> {
        vec![Matcher::equal(METRIC_NAME, n)]
    }

    #[test]
    fn samples_come_back_in_order_across_chunks_and_the_pending_one() {
        let h = unbounded();
        let l = Labels::new([("__name__", "m"), ("a", "1")]);
        for i in 0..300 {
            h.append(&l, i * 1000, i as f64);
        }
        // Same timestamp replaces the newest; older is refused.
        h.append(&l, 299_000, -1.0);
        h.append(&l, 5_000, 7.0);
        let got = h.select(&name("m"), 100_000, 299_000);
        assert_eq!(got.len(), 1);
        let s = &got[0].samples;
        assert_eq!(s.len(), 200);
        assert_eq!(s[0], (100_000, 100.0));
        assert_eq!(s[198], (298_000, 298.0));
        assert_eq!(s[199], (299_000, -1.0));
        assert_eq!(
            h.select_latest(&name("m"), 0, 150_500),
            vec![(l.clone(), 150_000, 150.0)]
        );
        assert!(h.select_latest(&name("m"), 200_500, 200_900).is_empty());
        let st = h.stats();
        assert_eq!((st.series, st.samples, st.out_of_order), (1, 300, 1));
        assert_eq!(st.chunks, 3);
    }

    #[test]
    fn retention_drops_old_chunks_and_empty_series() {
        let h = History::new(HistoryLimits {
            retention_ms: 100_000,
            max_bytes: 0,
        });
        let old = Labels::new([("__name__", "old")]);
        let live = Labels::new([("__name__", "live")]);
        for i in 0..240 {
            h.append(&live, i * 1000, 1.0);
        }
        h.append(&old, 0, 1.0);
        h.gc(240_000);
        let st = h.stats();
        assert_eq!(st.series, 1);
        // The first chunk of `live` (0..120s) is older than 140s: gone; the rest stays.
        assert_eq!(st.chunks_dropped_retention, 1);
        assert_eq!(st.samples, 120);
        assert!(h.select(&name("old"), 0, i64::MAX).is_empty());
        assert_eq!(
            h.select(&name("live"), 0, i64::MAX)[0].samples[0].0,
            120_000
        );
    }

    #[test]
    fn the_memory_bound_drops_the_oldest_chunks_first_and_counts_them() {
        let h = History::new(HistoryLimits {
            retention_ms: i64::MAX / 4,
            max_bytes: 40_000,
        });
        // 20 series with noisy values: each sealed chunk takes over 1 KB.
        for i in 0..2400i64 {
            for s in 0..20 {
                let l = Labels::new([("__name__", "m"), ("s", &s.to_string())]);
                h.append(
                    &l,
                    i * 1000,
                    ((i * 7919 + s * 104729) % 1_000_003) as f64 / 3.3,
                );
            }
        }
        let st = h.stats();
        assert!(st.bytes <= 40_000, "{st:?}");
        assert!(st.chunks_dropped_memory > 0, "{st:?}");
        // The newest data is kept, the oldest is gone, for every series.
        for s in h.select(&name("m"), 0, i64::MAX) {
            assert_eq!(s.samples.last().map(|x| x.0), Some(2_399_000));
            assert!(s.samples[0].0 > 0);
        }
    }

    #[test]
    fn stale_markers_and_series_listing() {
        let h = unbounded();
        let a = Labels::new([("__name__", "m"), ("job", "a")]);
        let b = Labels::new([("__name__", "n"), ("job", "b")]);
        h.append(&a, 0, 1.0);
        h.append(&b, 50_000, 1.0);
        h.mark_stale(&a, 10_000);
        h.mark_stale(&a, 20_000);
        let s = h.select(&name("m"), 0, 100_000);
        assert_eq!(s[0].samples.len(), 2);
        assert!(is_stale(s[0].samples[1].1));
        assert_eq!(h.series(&[], 0, 100_000), vec![a.clone(), b.clone()]);
        assert_eq!(h.series(&[], 30_000, 100_000), vec![b.clone()]);
        let job_a = vec![Matcher::equal("job", "a")];
        assert_eq!(h.series(&[job_a], 0, 100_000), vec![a]);
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -p metrics-gateway --lib query::history::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn range_query_over_six_hours() {
        let h = History::new(HistoryLimits {
            retention_ms: i64::MAX / 4,
            max_bytes: 0,
        });
        for s in 0..1000 {
            let l = Labels::new([("__name__", "m".to_string()), ("s", s.to_string())]);
            for i in 0..1440i64 {
                h.append(&l, i * 15_000, (i * (s % 7 + 1)) as f64);
            }
        }
        let q = "sum(rate(m[5m]))";
        let e = promql_engine::parse(q).unwrap();
        let t = std::time::Instant::now();
        let snap = crate::query::snapshot::Snapshot::new(&h, -600_000, 1439 * 15_000, 0);
        let r = promql_engine::Engine::default()
            .range(&snap, q, &e, 0, 1439 * 15_000, 15_000)
            .unwrap();
        eprintln!(
            "{q} over 1000 series x 1440 steps: {:?} ({:?})",
            t.elapsed(),
            h.stats()
        );
        assert!(matches!(r.value, promql_engine::Value::Matrix(_)));
    }
}
