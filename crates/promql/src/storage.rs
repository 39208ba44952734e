//! The sample store the evaluator reads: a [`Storage`] trait and a bounded in-memory
//! implementation ([`MemStorage`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::labels::{Labels, MatchKind, Matcher, METRIC_NAME};

/// Bit pattern Prometheus uses for a staleness marker (a NaN that is not the usual NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Float value standing for a native-histogram sample in [`Series::samples`]; the
/// histogram itself is in [`Series::histograms`] at the same timestamp.
pub const HISTOGRAM_PLACEHOLDER_BITS: u64 = 0x7ff0_0000_0000_0003;

/// A staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is a staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Whether `v` stands for a native-histogram sample.
pub fn is_histogram_placeholder(v: f64) -> bool {
    v.to_bits() == HISTOGRAM_PLACEHOLDER_BITS
}

/// One series with its samples in time order (milliseconds), staleness markers included.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels, metric name included.
    pub labels: Labels,
    /// (timestamp ms, value) in ascending timestamp order; a native-histogram sample is
    /// the placeholder value ([`is_histogram_placeholder`]).
    pub samples: Vec<(i64, f64)>,
    /// The native histograms of the placeholder samples, in the same order, with their
    /// timestamps.
    pub histograms: Vec<(i64, Arc<FloatHistogram>)>,
}

/// What the evaluator needs from a sample store.
pub trait Storage: Send + Sync {
    /// Every series matching all `matchers`, with its samples in `mint..=maxt`. Series with
    /// no sample in that window may be omitted.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series>;

    /// For each matching series, its latest sample in `mint..=maxt` (staleness markers
    /// included). Stores may override this to avoid copying whole windows.
    fn select_latest(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, i64, f64)> {
        self.select(matchers, mint, maxt)
            .into_iter()
            .filter_map(|s| s.samples.last().map(|&(t, v)| (s.labels, t, v)))
            .collect()
    }

    /// The native histogram of the series with exactly `labels` at `t`, if its sample
    /// there is one.
    fn histogram_at(&self, labels: &Labels, t: i64) -> Option<Arc<FloatHistogram>> {
        let ms: Vec<Matcher> = labels.iter().map(|(k, v)| Matcher::equal(k, v)).collect();
        self.select(&ms, t, t)
            .into_iter()
            .find(|s| &s.labels == labels)
            .and_then(|s| s.histograms.into_iter().find(|(ht, _)| *ht == t))
            .map(|(_, h)| h)
    }
}

/// The counter-reset hint a histogram appended after `prev` gets, as Prometheus's TSDB
/// gives it when it stores the sample: an explicit hint stays; an unknown one following
/// a counter histogram becomes "counter reset" or "not a counter reset" by comparison.
pub fn stored_hint(h: &FloatHistogram, prev: Option<&FloatHistogram>) -> CounterResetHint {
    match (h.hint, prev) {
        (CounterResetHint::Unknown, Some(p)) if p.hint != CounterResetHint::Gauge => {
            if h.detect_reset(p) {
                CounterResetHint::CounterReset
            } else {
                CounterResetHint::NotCounterReset
            }
        }
        (hint, _) => hint,
    }
}

/// Limits of a [`MemStorage`].
#[derive(Clone, Debug)]
pub struct MemLimits {
    /// Samples older than the newest sample of the series by more than this are dropped.
    pub retention_ms: i64,
    /// At most this many samples are kept per series (oldest dropped first).
    pub max_samples_per_series: usize,
}

impl Default for MemLimits {
    fn default() -> Self {
        MemLimits {
            retention_ms: i64::MAX / 4,
            max_samples_per_series: usize::MAX,
        }
    }
}

/// FxHash-style hasher: label sets are hashed on every lookup, SipHash is needlessly slow.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

#[derive(Default)]
struct Inner {
    series: HashMap<Labels, VecDeque<(i64, f64)>, FxBuild>,
    hists: HashMap<Labels, BTreeMap<i64, Arc<FloatHistogram>>, FxBuild>,
    hist_bytes: usize,
    by_name: BTreeMap<String, Vec<Labels>>,
    samples: usize,
    dropped: u64,
}

/// An in-memory store with a bounded per-series buffer.
#[derive(Default)]
pub struct MemStorage {
    inner: RwLock<Inner>,
    limits: RwLock<MemLimits>,
}

/// Size figures of a [`MemStorage`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Number of series held.
    pub series: usize,
    /// Number of samples held.
    pub samples: usize,
    /// Estimated bytes used.
    pub bytes: usize,
    /// Samples dropped because a buffer was full or too old.
    pub dropped_samples: u64,
}

impl MemStorage {
    /// An unbounded store (for tests and the conformance runner).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with the given limits.
    pub fn with_limits(limits: MemLimits) -> Self {
        MemStorage {
            inner: RwLock::new(Inner::default()),
            limits: RwLock::new(limits),
        }
    }

    /// Changes the limits; applied on the next append to each series.
    pub fn set_limits(&self, limits: MemLimits) {
        match self.limits.write() {
            Ok(mut g) => *g = limits,
            Err(p) => *p.into_inner() = limits,
        }
    }

    fn limits(&self) -> MemLimits {
        match self.limits.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Records a sample; a sample at an existing timestamp replaces it.
    pub fn append(&self, labels: &Labels, t: i64, v: f64) {
        self.append_value(labels, t, v, None);
    }

    /// Records a native-histogram sample; one at an existing timestamp replaces it. An
    /// unknown counter-reset hint is resolved against the previous sample as
    /// Prometheus's TSDB does ([`stored_hint`]).
    pub fn append_histogram(&self, labels: &Labels, t: i64, h: FloatHistogram) {
        self.append_value(
            labels,
            t,
            f64::from_bits(HISTOGRAM_PLACEHOLDER_BITS),
            Some(h),
        );
    }

    fn append_value(&self, labels: &Labels, t: i64, v: f64, h: Option<FloatHistogram>) {
        let limits = self.limits();
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let inner = &mut *inner;
        let buf = match inner.series.get_mut(labels) {
            Some(b) => b,
            None => {
                let name = labels.name().unwrap_or("").to_string();
                inner.by_name.entry(name).or_default().push(labels.clone());
                inner.series.entry(labels.clone()).or_default()
            }
        };
        // The sample before `t`, for the counter-reset hint.
        let idx = buf.partition_point(|&(st, _)| st < t);
        let replaces = idx < buf.len() && buf[idx].0 == t;
        if replaces && is_histogram_placeholder(buf[idx].1) {
            if let Some(m) = inner.hists.get_mut(labels) {
                if let Some(old) = m.remove(&t) {
                    inner.hist_bytes = inner.hist_bytes.saturating_sub(hist_bytes(&old));
                }
            }
        }
        if let Some(mut h) = h {
            let prev = match idx.checked_sub(1).map(|i| buf[i]) {
                Some((pt, pv)) if is_histogram_placeholder(pv) => {
                    inner.hists.get(labels).and_then(|m| m.get(&pt)).cloned()
                }
                _ => None,
            };
            h.hint = stored_hint(&h, prev.as_deref());
            let h = Arc::new(h);
            inner.hist_bytes += hist_bytes(&h);
            inner.hists.entry(labels.clone()).or_default().insert(t, h);
        }
        if replaces {
            buf[idx].1 = v;
            return;
        }
        buf.insert(idx, (t, v));
        inner.samples += 1;
        let newest = buf.back().map(|s| s.0).unwrap_or(t);
        while buf.len() > limits.max_samples_per_series
            || buf
                .front()
                .is_some_and(|&(st, _)| newest.saturating_sub(st) > limits.retention_ms)
        {
            if let Some((st, sv)) = buf.pop_front() {
                if is_histogram_placeholder(sv) {
                    if let Some(old) = inner.hists.get_mut(labels).and_then(|m| m.remove(&st)) {
                        inner.hist_bytes = inner.hist_bytes.saturating_sub(hist_bytes(&old));
                    }
                }
            }
            inner.samples -= 1;
            inner.dropped += 1;
        }
    }

    /// Marks a series stale at `t` (if it exists and is not stale already).
    pub fn mark_stale(&self, labels: &Labels, t: i64) {
        let needs = {
            let inner = match self.inner.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            inner
                .series
                .get(labels)
                .and_then(|b| b.back())
                .is_some_and(|&(lt, v)| !is_stale(v) && lt < t)
        };
        if needs {
            self.append(labels, t, stale_nan());
        }
    }

    /// Label sets of all series whose latest sample is not a staleness marker.
    pub fn live_series(&self) -> Vec<Labels> {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        inner
            .series
            .iter()
            .filter(|(_, b)| b.back().is_some_and(|&(_, v)| !is_stale(v)))
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// Drops samples older than `before` and series left empty.
    pub fn truncate_before(&self, before: i64) -> usize {
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let inner = &mut *inner;
        let mut removed = 0;
        let mut emptied: std::collections::HashSet<Labels> = std::collections::HashSet::new();
        for (l, b) in inner.series.iter_mut() {
            while b.front().is_some_and(|&(t, _)| t < before) {
                b.pop_front();
                removed += 1;
            }
            if let Some(m) = inner.hists.get_mut(l) {
                let keep = m.split_off(&before);
                for h in m.values() {
                    inner.hist_bytes = inner.hist_bytes.saturating_sub(hist_bytes(h));
                }
                *m = keep;
            }
            if b.is_empty() {
                emptied.insert(l.clone());
            }
        }
        inner.samples -= removed;
        if emptied.is_empty() {
            return 0;
        }
        for l in &emptied {
            inner.series.remove(l);
            inner.hists.remove(l);
        }
        inner.by_name.retain(|_, v| {
            v.retain(|x| !emptied.contains(x));
            !v.is_empty()
        });
        emptied.len()
    }

    /// Drops samples older than the retention before `now` and series left without
    /// samples (bounds memory when series come and go). Returns the series removed.
    pub fn gc(&self, now: i64) -> usize {
        let retention = self.limits().retention_ms;
        self.truncate_before(now.saturating_sub(retention))
    }

    /// Removes everything.
    pub fn clear(&self) {
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *inner = Inner::default();
    }

    /// Current size figures.
    pub fn stats(&self) -> MemStats {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let label_bytes: usize = inner.series.keys().map(|l| 2 * l.heap_bytes() + 96).sum();
        MemStats {
            series: inner.series.len(),
            samples: inner.samples,
            bytes: label_bytes + inner.samples * 16 + inner.hist_bytes,
            dropped_samples: inner.dropped,
        }
    }
}

/// Estimated bytes of one stored histogram.
fn hist_bytes(h: &FloatHistogram) -> usize {
    96 + 12 * (h.positive.len() + h.negative.len()) + 8 * h.custom_values.len()
}

impl Storage for MemStorage {
    fn histogram_at(&self, labels: &Labels, t: i64) -> Option<Arc<FloatHistogram>> {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        inner.hists.get(labels).and_then(|m| m.get(&t)).cloned()
    }

    fn select_latest(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, i64, f64)> {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let name_eq = matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.kind, MatchKind::Equal));
        let candidates: Box<dyn Iterator<Item = &Labels>> = match name_eq {
            Some(m) => Box::new(inner.by_name.get(&m.value).into_iter().flatten()),
            None => Box::new(inner.series.keys()),
        };
        let mut out = Vec::new();
        for l in candidates {
            if !matchers.iter().all(|m| m.matches_labels(l)) {
                continue;
            }
            let Some(buf) = inner.series.get(l) else {
                continue;
            };
            let hi = buf.partition_point(|&(t, _)| t <= maxt);
            if hi == 0 {
                continue;
            }
            let (t, v) = buf[hi - 1];
            if t >= mint {
                out.push((l.clone(), t, v));
            }
        }
        out
    }

    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let name_eq = matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.kind, MatchKind::Equal));
        let candidates: Box<dyn Iterator<Item = &Labels>> = match name_eq {
            Some(m) => Box::new(inner.by_name.get(&m.value).into_iter().flatten()),
            None => Box::new(inner.series.keys()),
        };
        let mut out = Vec::new();
        for l in candidates {
            if !matchers.iter().all(|m| m.matches_labels(l)) {
                continue;
            }
            let Some(buf) = inner.series.get(l) else {
                continue;
            };
            let lo = buf.partition_point(|&(t, _)| t < mint);
            let hi = buf.partition_point(|&(t, _)| t <= maxt);
            if lo >= hi {
                continue;
            }
            let samples: Vec<(i64, f64)> = buf.range(lo..hi).copied().collect();
            let histograms = match inner.hists.get(l) {
                Some(m) if samples.iter().any(|s| is_histogram_placeholder(s.1)) => {
                    m.range(mint..=maxt).map(|(t, h)| (*t, h.clone())).collect()
                }
                _ => Vec::new(),
            };
            out.push(Series {
                labels: l.clone(),
                samples,
                histograms,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_bounded_and_reported() {
        let s = MemStorage::with_limits(MemLimits {
            retention_ms: 10_000,
            max_samples_per_series: 3,
        });
        let l = Labels::new([("__name__", "m")]);
        for i in 0..10 {
            s.append(&l, i * 1000, i as f64);
        }
        let st = s.stats();
        assert_eq!(st.samples, 3);
        assert_eq!(st.dropped_samples, 7);
        assert!(st.bytes > 0);
        let got = s.select(&[Matcher::equal("__name__", "m")], 0, 100_000);
        assert_eq!(got[0].samples, vec![(7000, 7.0), (8000, 8.0), (9000, 9.0)]);
    }

    #[test]
    fn gc_removes_series_that_stopped() {
        let s = MemStorage::with_limits(MemLimits {
            retention_ms: 1000,
            max_samples_per_series: 10,
        });
        let old = Labels::new([("__name__", "old")]);
        let new = Labels::new([("__name__", "new")]);
        s.append(&old, 0, 1.0);
        s.append(&new, 0, 1.0);
        s.append(&new, 5000, 2.0);
        assert_eq!(s.gc(5500), 1);
        assert_eq!(s.stats().series, 1);
        assert_eq!(s.stats().samples, 1);
        assert!(s
            .select(&[Matcher::equal("__name__", "old")], 0, 10_000)
            .is_empty());
    }

    #[test]
    fn stale_marker_is_recorded_once() {
        let s = MemStorage::new();
        let l = Labels::new([("__name__", "m")]);
        s.append(&l, 0, 1.0);
        s.mark_stale(&l, 10);
        s.mark_stale(&l, 20);
        let got = s.select(&[Matcher::equal("__name__", "m")], 0, 100);
        assert_eq!(got[0].samples.len(), 2);
        assert!(is_stale(got[0].samples[1].1));
        assert!(s.live_series().is_empty());
    }
}
