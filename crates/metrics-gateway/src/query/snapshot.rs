//! A per-query view of the history that decodes each selector's series once.
//!
//! The evaluator selects again at every step of a range query; decoding the compressed
//! chunks each time would cost steps × window samples per series. [`Snapshot`] fetches a
//! selector's series once for the whole window the query can read (from the first step's
//! start minus the lookback and the longest range, to the last step) and answers every
//! later select by binary search. What it holds decoded is bounded by the query's sample
//! limit; a selector that would not fit is read from the history directly each time.

use std::collections::HashMap;
use std::sync::Mutex;

use promql_engine::labels::{Labels, MatchKind, Matcher};
use promql_engine::storage::{Series, Storage};

use super::history::History;

struct Cached {
    mint: i64,
    maxt: i64,
    series: Vec<Series>,
}

/// The history seen by one query.
pub struct Snapshot<'a> {
    history: &'a History,
    mint: i64,
    maxt: i64,
    budget: usize,
    state: Mutex<(HashMap<String, Cached>, usize)>,
}

impl<'a> Snapshot<'a> {
    /// A view for a query reading `mint..=maxt` (ms), holding at most `budget` decoded
    /// samples (0 = no bound).
    pub fn new(history: &'a History, mint: i64, maxt: i64, budget: usize) -> Self {
        Self {
            history,
            mint,
            maxt,
            budget,
            state: Mutex::new((HashMap::new(), 0)),
        }
    }

    fn key(matchers: &[Matcher]) -> String {
        let mut k = String::new();
        for m in matchers {
            let op = match m.kind {
                MatchKind::Equal => "=",
                MatchKind::NotEqual => "!=",
                MatchKind::Regex(_) => "=~",
                MatchKind::NotRegex(_) => "!~",
            };
            k.push_str(&m.name);
            k.push_str(op);
            k.push_str(&m.value);
            k.push('\u{0}');
        }
        k
    }

    /// Runs `f` over the cached series of `matchers` covering `mint..=maxt`, or returns
    /// `None` when they are not (and cannot be) cached.
    fn with_cached<R>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: impl FnOnce(&[Series]) -> R,
    ) -> Option<R> {
        let key = Self::key(matchers);
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (cache, held) = &mut *guard;
        let covered = cache
            .get(&key)
            .is_some_and(|c| c.mint <= mint && c.maxt >= maxt);
        if !covered {
            let (lo, hi) = match cache.get(&key) {
                Some(c) => (c.mint.min(mint), c.maxt.max(maxt)),
                None => (self.mint.min(mint), self.maxt.max(maxt)),
            };
            let mut series = self.history.select(matchers, lo, hi);
            // The evaluator sorts what it selects: sorted input makes that linear.
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            let n: usize = series.iter().map(|s| s.samples.len()).sum();
            let before = cache.get(&key).map_or(0, |c| {
                c.series.iter().map(|s| s.samples.len()).sum::<usize>()
            });
            if self.budget > 0 && *held - before + n > self.budget {
                return None;
            }
            *held = *held - before + n;
            cache.insert(
                key.clone(),
                Cached {
                    mint: lo,
                    maxt: hi,
                    series,
                },
            );
        }
        cache.get(&key).map(|c| f(&c.series))
    }
}

impl Storage for Snapshot<'_> {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let cut = |all: &[Series]| {
            all.iter()
                .filter_map(|s| {
                    let lo = s.samples.partition_point(|&(t, _)| t < mint);
                    let hi = s.samples.partition_point(|&(t, _)| t <= maxt);
                    (lo < hi).then(|| {
                        let (a, b) = (s.samples[lo].0, s.samples[hi - 1].0);
                        Series {
                            labels: s.labels.clone(),
                            samples: s.samples[lo..hi].to_vec(),
                            histograms: s
                                .histograms
                                .iter()
                                .filter(|(t, _)| *t >= a && *t <= b)
                                .cloned()
                                .collect(),
                        }
                    })
                })
                .collect()
        };
        self.with_cached(matchers, mint, maxt, cut)
            .unwrap_or_else(|| self.history.select(matchers, mint, maxt))
    }

    fn select_latest(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, i64, f64)> {
        let latest = |all: &[Series]| {
            all.iter()
                .filter_map(|s| {
                    let hi = s.samples.partition_point(|&(t, _)| t <= maxt);
                    let (t, v) = *s.samples.get(hi.checked_sub(1)?)?;
                    (t >= mint).then(|| (s.labels.clone(), t, v))
                })
                .collect()
        };
        self.with_cached(matchers, mint, maxt, latest)
            .unwrap_or_else(|| self.history.select_latest(matchers, mint, maxt))
    }
}

#[cfg(test)]
mod tests {
    use promql_engine::labels::METRIC_NAME;

    use super::*;
    use crate::query::history::HistoryLimits;

    #[test]
    fn answers_like_the_history_and_falls_back_past_its_budget() {
        let h = History::new(HistoryLimits {
            retention_ms: i64::MAX / 4,
            max_bytes: 0,
        });
        for s in 0..5 {
            let l = Labels::new([(METRIC_NAME, "m".to_string()), ("s", s.to_string())]);
            for i in 0..300 {
                h.append(&l, i * 1000, (i * s) as f64);
            }
        }
        let m = [Matcher::equal(METRIC_NAME, "m")];
        let sorted = |mut v: Vec<Series>| {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v
        };
        for budget in [0, 10] {
            let snap = Snapshot::new(&h, 100_000, 200_000, budget);
            for (lo, hi) in [(100_000, 200_000), (150_500, 160_000), (0, 299_000), (5, 7)] {
                assert_eq!(
                    sorted(snap.select(&m, lo, hi)),
                    sorted(h.select(&m, lo, hi)),
                    "{lo}..{hi}"
                );
                let mut a = snap.select_latest(&m, lo, hi);
                let mut b = h.select_latest(&m, lo, hi);
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(a, b, "{lo}..{hi}");
            }
        }
    }
}
