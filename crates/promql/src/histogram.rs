//! Float native histograms: the value type, its arithmetic and the statistics PromQL
//! derives from it.
//!
//! A [`FloatHistogram`] holds what Prometheus's native histograms hold: a schema (`-4..=8`
//! for exponential buckets, [`CUSTOM_BUCKETS_SCHEMA`] for custom bucket bounds), a zero
//! bucket (threshold and count), the observation count and sum, sparse positive and
//! negative buckets, and a counter-reset hint. Buckets are kept as `(index, count)` pairs
//! sorted by index with absolute (not delta) counts; [`FloatHistogram::positive_spans`]
//! gives Prometheus's spans-and-buckets layout for the wire.
//!
//! Bucket `i` of exponential schema `s` covers `(2^((i-1)/2^s), 2^(i/2^s)]` (negative
//! buckets mirror that below zero); bucket `i` of custom buckets covers
//! `(custom_values[i-1], custom_values[i]]` with `-Inf` below the first and `+Inf` above
//! the last bound.

use std::fmt;

use crate::gofmt::format_v;

/// A histogram that breaks an invariant a stored histogram must keep.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidHistogram {
    /// Custom buckets (NHCB) with negative buckets.
    #[error("histogram with custom buckets must not have negative buckets")]
    CustomNegativeBuckets,
    /// Custom buckets (NHCB) with a zero bucket.
    #[error("histogram with custom buckets must not have a zero bucket")]
    CustomZeroBucket,
    /// Custom bucket bounds out of order or repeated.
    #[error("custom bucket bounds must be strictly increasing")]
    CustomBoundsNotIncreasing,
    /// A custom bucket index with no bound.
    #[error("custom bucket index {index} is outside the {bounds} bounds")]
    CustomIndexOutOfRange {
        /// The bucket index.
        index: i32,
        /// How many bounds there are.
        bounds: usize,
    },
    /// A schema outside -4..=8 that is not the custom-buckets schema.
    #[error("schema {0} is not valid (must be -4..=8 or {CUSTOM_BUCKETS_SCHEMA})")]
    InvalidSchema(i32),
    /// A negative or NaN zero threshold.
    #[error("zero threshold must not be negative")]
    NegativeZeroThreshold,
    /// Bucket indexes out of order or repeated.
    #[error("bucket indexes must be strictly increasing")]
    IndexesNotIncreasing,
}

/// Why a histogram in test notation (`schema:0 count:4 buckets:[1 2 1]`) does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotationError {
    /// A field whose value is not a number.
    #[error("invalid number {value:?} for {field}")]
    InvalidNumber {
        /// The field (`count`, `buckets`, ...).
        field: String,
        /// Its value.
        value: String,
    },
    /// A field whose value is not an integer.
    #[error("invalid integer {value:?} for {field}")]
    InvalidInteger {
        /// The field (`schema`, `offset`, ...).
        field: String,
        /// Its value.
        value: String,
    },
    /// Text that is not `key:value`.
    #[error("expected `key:value` in histogram at {0:?}")]
    ExpectedKeyValue(String),
    /// `[` without `]`.
    #[error("unterminated list for {0}")]
    UnterminatedList(String),
    /// A `counter_reset_hint` that is none of `unknown reset not_reset gauge`.
    #[error("invalid counter_reset_hint {0:?}")]
    InvalidHint(String),
    /// A field the notation does not have.
    #[error("unknown histogram field {0:?}")]
    UnknownField(String),
    /// The fields parse but the histogram breaks an invariant.
    #[error(transparent)]
    Invalid(#[from] InvalidHistogram),
}

/// Schema number of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// What the producer says about a counter reset since the previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CounterResetHint {
    /// Nothing known: detect resets by comparing with the previous sample.
    #[default]
    Unknown,
    /// A counter reset happened.
    CounterReset,
    /// No counter reset happened.
    NotCounterReset,
    /// A gauge histogram: counts may go up and down.
    Gauge,
}

impl CounterResetHint {
    /// The name used in the test notation (`unknown`, `reset`, `not_reset`, `gauge`).
    pub fn notation(self) -> &'static str {
        match self {
            CounterResetHint::Unknown => "unknown",
            CounterResetHint::CounterReset => "reset",
            CounterResetHint::NotCounterReset => "not_reset",
            CounterResetHint::Gauge => "gauge",
        }
    }
}

/// A run of consecutive buckets: `offset` from the end of the previous span (from index 0
/// for the first span) and `length` buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Gap to the previous span (or the starting index for the first span).
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// One bucket with its bounds, as iterated for quantiles and fractions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Observations in the bucket.
    pub count: f64,
    /// Whether the lower bound belongs to the bucket (negative buckets and the zero
    /// bucket).
    pub lower_inclusive: bool,
    /// Whether the upper bound belongs to the bucket (positive buckets and the zero
    /// bucket).
    pub upper_inclusive: bool,
}

/// A float native histogram.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FloatHistogram {
    /// Bucket schema: `-4..=8` exponential, [`CUSTOM_BUCKETS_SCHEMA`] custom bounds.
    pub schema: i32,
    /// Observations with an absolute value up to this land in the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Number of observations (NaN observations included).
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Positive buckets: (index, count), sorted by index, absolute counts.
    pub positive: Vec<(i32, f64)>,
    /// Negative buckets: (index, count), sorted by index, absolute counts.
    pub negative: Vec<(i32, f64)>,
    /// Upper bounds of the custom buckets (only with [`CUSTOM_BUCKETS_SCHEMA`]).
    pub custom_values: Vec<f64>,
    /// Counter reset hint.
    pub hint: CounterResetHint,
}

/// Why two histograms cannot be combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// One uses exponential buckets, the other custom bounds.
    #[error("histograms with exponential and custom buckets cannot be combined")]
    MixedSchemas,
}

/// Side effects of an addition or subtraction that PromQL reports as annotations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Combined {
    /// One operand said counter reset and the other not.
    pub counter_reset_collision: bool,
    /// Custom bucket bounds differed and were reduced to the common ones.
    pub custom_bounds_reconciled: bool,
}

/// Splits sorted `(index, count)` pairs into spans and counts.
pub fn to_spans(buckets: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(buckets.len());
    let mut next: Option<i32> = None;
    for &(i, c) in buckets {
        match next {
            Some(n) if n == i => {
                if let Some(s) = spans.last_mut() {
                    s.length += 1;
                }
            }
            Some(n) => spans.push(Span {
                offset: i - n,
                length: 1,
            }),
            None => spans.push(Span {
                offset: i,
                length: 1,
            }),
        }
        next = Some(i + 1);
        counts.push(c);
    }
    (spans, counts)
}

/// Joins spans and absolute counts into sorted `(index, count)` pairs; `None` when the
/// spans describe a different number of buckets than `counts` holds.
pub fn from_spans(spans: &[Span], counts: &[f64]) -> Option<Vec<(i32, f64)>> {
    let mut out = Vec::with_capacity(counts.len());
    let mut idx: i64 = 0;
    let mut k = 0usize;
    for (n, s) in spans.iter().enumerate() {
        idx += s.offset as i64;
        if n > 0 && s.offset < 0 {
            return None;
        }
        for _ in 0..s.length {
            let c = *counts.get(k)?;
            out.push((i32::try_from(idx).ok()?, c));
            k += 1;
            idx += 1;
        }
    }
    (k == counts.len()).then_some(out)
}

/// Upper bound of exponential bucket `index` in `schema`.
fn exp_upper(index: i32, schema: i32) -> f64 {
    if schema <= 0 {
        let e = (index as i64) << (-schema) as u32;
        if e >= 1024 {
            return f64::MAX;
        }
        if e < -1074 {
            return 0.0;
        }
        return 2f64.powi(e as i32);
    }
    (index as f64 / (1u64 << schema) as f64).exp2()
}

fn merge_add(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + sign * y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push((y.0, sign * y.1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Moves buckets to the index they have in a coarser schema, adding up collisions.
fn reduce_buckets(b: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    if from <= to {
        return b.to_vec();
    }
    let shift = (from - to) as u32;
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(b.len());
    for &(i, c) in b {
        let ni = ((i - 1) >> shift) + 1;
        match out.last_mut() {
            Some(l) if l.0 == ni => l.1 += c,
            _ => out.push((ni, c)),
        }
    }
    out
}

/// Whether two custom bound lists are the same.
pub fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Re-buckets custom buckets onto `common`, a subset of `bounds`.
fn rebucket_custom(b: &[(i32, f64)], bounds: &[f64], common: &[f64]) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::new();
    for &(i, c) in b {
        let upper = bounds.get(i as usize).copied().unwrap_or(f64::INFINITY);
        let ni = common.partition_point(|&x| x < upper) as i32;
        match out.last_mut() {
            Some(l) if l.0 == ni => l.1 += c,
            _ => out.push((ni, c)),
        }
    }
    out
}

fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().copied().filter(|x| b.contains(x)).collect()
}

impl FloatHistogram {
    /// Whether the histogram uses custom bucket bounds.
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Positive buckets in spans-and-counts layout.
    pub fn positive_spans(&self) -> (Vec<Span>, Vec<f64>) {
        to_spans(&self.positive)
    }

    /// Negative buckets in spans-and-counts layout.
    pub fn negative_spans(&self) -> (Vec<Span>, Vec<f64>) {
        to_spans(&self.negative)
    }

    /// Checks the invariants a stored histogram must satisfy; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidHistogram> {
        if self.uses_custom_buckets() {
            if !self.negative.is_empty() {
                return Err(InvalidHistogram::CustomNegativeBuckets);
            }
            if self.zero_count != 0.0 || self.zero_threshold != 0.0 {
                return Err(InvalidHistogram::CustomZeroBucket);
            }
            if self.custom_values.windows(2).any(|w| w[0] >= w[1]) {
                return Err(InvalidHistogram::CustomBoundsNotIncreasing);
            }
            if let Some(&(i, _)) = self
                .positive
                .iter()
                .find(|(i, _)| *i < 0 || *i as usize > self.custom_values.len())
            {
                return Err(InvalidHistogram::CustomIndexOutOfRange {
                    index: i,
                    bounds: self.custom_values.len(),
                });
            }
        } else if !(-4..=8).contains(&self.schema) {
            return Err(InvalidHistogram::InvalidSchema(self.schema));
        }
        if self.zero_threshold < 0.0 || self.zero_threshold.is_nan() {
            return Err(InvalidHistogram::NegativeZeroThreshold);
        }
        for w in self.positive.windows(2).chain(self.negative.windows(2)) {
            if w[0].0 >= w[1].0 {
                return Err(InvalidHistogram::IndexesNotIncreasing);
            }
        }
        Ok(())
    }

    /// Upper bound of a positive bucket.
    fn upper_of(&self, index: i32) -> f64 {
        if self.uses_custom_buckets() {
            return self
                .custom_values
                .get(index as usize)
                .copied()
                .unwrap_or(f64::INFINITY);
        }
        exp_upper(index, self.schema)
    }

    /// Lower bound of a positive bucket.
    fn lower_of(&self, index: i32) -> f64 {
        if self.uses_custom_buckets() {
            if index <= 0 {
                return f64::NEG_INFINITY;
            }
            return self
                .custom_values
                .get(index as usize - 1)
                .copied()
                .unwrap_or(f64::INFINITY);
        }
        exp_upper(index - 1, self.schema)
    }

    /// Every bucket in ascending order of value: negative buckets, the zero bucket (when
    /// it holds observations), positive buckets.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        for &(i, c) in self.negative.iter().rev() {
            out.push(Bucket {
                lower: -self.upper_of(i),
                upper: -self.lower_of(i),
                count: c,
                lower_inclusive: true,
                upper_inclusive: false,
            });
        }
        if self.zero_count > 0.0 && !self.uses_custom_buckets() {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                count: self.zero_count,
                lower_inclusive: true,
                upper_inclusive: true,
            });
        }
        for &(i, c) in &self.positive {
            out.push(Bucket {
                lower: self.lower_of(i),
                upper: self.upper_of(i),
                count: c,
                lower_inclusive: false,
                upper_inclusive: true,
            });
        }
        out
    }

    /// Drops empty buckets (Prometheus's `Compact(0)`).
    pub fn compact(mut self) -> Self {
        self.positive.retain(|b| b.1 != 0.0);
        self.negative.retain(|b| b.1 != 0.0);
        self
    }

    /// Multiplies every count and the sum by `f`.
    pub fn scale(mut self, f: f64) -> Self {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 *= f;
        }
        self
    }

    /// Divides every count and the sum by `f`.
    pub fn divide(mut self, f: f64) -> Self {
        self.count /= f;
        self.sum /= f;
        self.zero_count /= f;
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 /= f;
        }
        self
    }

    /// Lowers the resolution to `schema` (a no-op unless `schema` is coarser).
    pub fn reduce_to_schema(&mut self, schema: i32) {
        if self.uses_custom_buckets() || schema >= self.schema {
            return;
        }
        self.positive = reduce_buckets(&self.positive, self.schema, schema);
        self.negative = reduce_buckets(&self.negative, self.schema, schema);
        self.schema = schema;
    }

    /// The zero count and threshold this histogram would have with a zero threshold of at
    /// least `larger`: buckets below it move into the zero bucket, and a populated bucket
    /// straddling it raises the threshold to that bucket's upper bound.
    fn zero_count_for_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger <= self.zero_threshold {
            return (self.zero_count, self.zero_threshold);
        }
        loop {
            let mut count = self.zero_count;
            let mut raised = false;
            for side in [&self.positive, &self.negative] {
                for &(i, c) in side {
                    let (lo, up) = (self.lower_of(i), self.upper_of(i));
                    if lo >= larger {
                        break;
                    }
                    count += c;
                    if up > larger {
                        if c != 0.0 {
                            larger = up;
                            raised = true;
                        }
                        break;
                    }
                }
            }
            if !raised {
                return (count, larger);
            }
        }
    }

    /// Widens the zero bucket to at least `threshold` (see
    /// [`FloatHistogram::zero_count_for_threshold`]).
    fn widen_zero_bucket(&mut self, threshold: f64) {
        if threshold <= self.zero_threshold {
            return;
        }
        let (count, t) = self.zero_count_for_threshold(threshold);
        self.zero_count = count;
        self.zero_threshold = t;
        let keep = |h: &Self, b: &(i32, f64)| h.lower_of(b.0) >= t;
        let pos: Vec<_> = self
            .positive
            .iter()
            .copied()
            .filter(|b| keep(self, b))
            .collect();
        let neg: Vec<_> = self
            .negative
            .iter()
            .copied()
            .filter(|b| keep(self, b))
            .collect();
        self.positive = pos;
        self.negative = neg;
    }

    /// Brings `self` and a copy of `other` to the same layout (schema, zero bucket,
    /// custom bounds); returns the adjusted copy and whether custom bounds were
    /// reconciled.
    fn align(&mut self, other: &FloatHistogram) -> Result<(FloatHistogram, bool), Error> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(Error::MixedSchemas);
        }
        let mut o = other.clone();
        if self.uses_custom_buckets() {
            if custom_bounds_match(&self.custom_values, &o.custom_values) {
                return Ok((o, false));
            }
            let common = intersect_bounds(&self.custom_values, &o.custom_values);
            self.positive = rebucket_custom(&self.positive, &self.custom_values, &common);
            o.positive = rebucket_custom(&o.positive, &o.custom_values, &common);
            self.custom_values = common.clone();
            o.custom_values = common;
            return Ok((o, true));
        }
        let schema = self.schema.min(o.schema);
        self.reduce_to_schema(schema);
        o.reduce_to_schema(schema);
        while self.zero_threshold != o.zero_threshold {
            if self.zero_threshold < o.zero_threshold {
                self.widen_zero_bucket(o.zero_threshold);
            } else {
                o.widen_zero_bucket(self.zero_threshold);
            }
        }
        Ok((o, false))
    }

    fn combine_hint(&mut self, other: CounterResetHint) -> bool {
        use CounterResetHint::*;
        match (self.hint, other) {
            (a, b) if a == b => false,
            (Gauge, _) => false,
            (_, Gauge) => {
                self.hint = Gauge;
                false
            }
            (Unknown, _) => false,
            (_, Unknown) => {
                self.hint = Unknown;
                false
            }
            _ => {
                self.hint = Unknown;
                true
            }
        }
    }

    fn add_signed(&mut self, other: &FloatHistogram, sign: f64) -> Result<Combined, Error> {
        let (o, reconciled) = self.align(other)?;
        let collision = self.combine_hint(o.hint);
        self.count += sign * o.count;
        self.sum += sign * o.sum;
        self.zero_count += sign * o.zero_count;
        self.positive = merge_add(&self.positive, &o.positive, sign);
        self.negative = merge_add(&self.negative, &o.negative, sign);
        Ok(Combined {
            counter_reset_collision: collision,
            custom_bounds_reconciled: reconciled,
        })
    }

    /// Adds `other` into `self` (at the coarser schema and wider zero bucket of the two).
    pub fn add(&mut self, other: &FloatHistogram) -> Result<Combined, Error> {
        self.add_signed(other, 1.0)
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<Combined, Error> {
        self.add_signed(other, -1.0)
    }

    /// Exact equality of two histograms after dropping empty buckets (PromQL's `==`).
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        let nz = |v: &[(i32, f64)]| -> Vec<(i32, u64)> {
            v.iter()
                .filter(|b| b.1 != 0.0)
                .map(|b| (b.0, b.1.to_bits()))
                .collect()
        };
        self.schema == other.schema
            && same(self.zero_threshold, other.zero_threshold)
            && same(self.zero_count, other.zero_count)
            && same(self.count, other.count)
            && same(self.sum, other.sum)
            && (!self.uses_custom_buckets()
                || custom_bounds_match(&self.custom_values, &other.custom_values))
            && nz(&self.positive) == nz(&other.positive)
            && nz(&self.negative) == nz(&other.negative)
    }

    /// Whether going from `prev` to `self` is a counter reset: the hint says so, or any
    /// count went down (compared at a common layout).
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() {
            let common = intersect_bounds(&self.custom_values, &prev.custom_values);
            let cur = rebucket_custom(&self.positive, &self.custom_values, &common);
            let old = rebucket_custom(&prev.positive, &prev.custom_values, &common);
            return buckets_decreased(&old, &cur);
        }
        if self.schema > prev.schema || self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let mut p = prev.clone();
        p.reduce_to_schema(self.schema);
        let (zc, zt) = p.zero_count_for_threshold(self.zero_threshold);
        if zt != self.zero_threshold || self.zero_count < zc {
            return true;
        }
        p.widen_zero_bucket(self.zero_threshold);
        buckets_decreased(&p.positive, &self.positive)
            || buckets_decreased(&p.negative, &self.negative)
    }

    /// The `q` quantile estimated from the buckets (interpolating exponentially within
    /// exponential buckets, linearly within custom buckets and the zero bucket).
    pub fn quantile(&self, q: f64) -> f64 {
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if self.count == 0.0 || q.is_nan() {
            return f64::NAN;
        }
        let all = self.buckets();
        let forward = self.sum.is_nan() || q < 0.5;
        let rank = if forward {
            q * self.count
        } else {
            (1.0 - q) * self.count
        };
        let mut count = 0.0;
        let mut bucket: Option<Bucket> = None;
        let iter: Box<dyn Iterator<Item = &Bucket>> = if forward {
            Box::new(all.iter())
        } else {
            Box::new(all.iter().rev())
        };
        for b in iter {
            if b.count == 0.0 {
                continue;
            }
            bucket = Some(*b);
            count += b.count;
            if count >= rank {
                break;
            }
        }
        let Some(mut b) = bucket else {
            return f64::NAN;
        };
        if !self.uses_custom_buckets() && b.lower < 0.0 && b.upper > 0.0 {
            if self.negative.is_empty() && !self.positive.is_empty() {
                b.lower = 0.0;
            } else if self.positive.is_empty() && !self.negative.is_empty() {
                b.upper = 0.0;
            }
        } else if self.uses_custom_buckets() {
            if b.lower == f64::NEG_INFINITY {
                if b.upper <= 0.0 {
                    return b.upper;
                }
                b.lower = 0.0;
            } else if b.upper == f64::INFINITY {
                return b.lower;
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            return b.upper;
        }
        let mut fraction = (rank - (count - b.count)) / b.count;
        if !forward {
            fraction = 1.0 - fraction;
        }
        if self.uses_custom_buckets() || (b.lower <= 0.0 && b.upper >= 0.0) {
            return b.lower + (b.upper - b.lower) * fraction;
        }
        let log_lower = b.lower.abs().log2();
        let log_upper = b.upper.abs().log2();
        if b.lower > 0.0 {
            (log_lower + (log_upper - log_lower) * fraction).exp2()
        } else {
            -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
        }
    }

    /// Estimated fraction of observations between `lower` and `upper`.
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return f64::NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        for mut b in self.buckets() {
            let mut zero_bucket = false;
            if !self.uses_custom_buckets() && b.lower <= 0.0 && b.upper >= 0.0 {
                zero_bucket = true;
                if self.negative.is_empty() && !self.positive.is_empty() {
                    b.lower = 0.0;
                } else if self.positive.is_empty() && !self.negative.is_empty() {
                    b.upper = 0.0;
                }
            }
            if self.uses_custom_buckets() && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
                b.lower = 0.0;
            }
            let linear = self.uses_custom_buckets() || zero_bucket;
            let interpolate = |v: f64| -> f64 {
                if b.upper == f64::INFINITY || b.lower == f64::NEG_INFINITY {
                    // No width to interpolate over: an unbounded bucket counts as a whole
                    // on the side of its finite bound.
                    return if b.upper == f64::INFINITY {
                        rank
                    } else {
                        rank + b.count
                    };
                }
                if linear {
                    return rank + b.count * (v - b.lower) / (b.upper - b.lower);
                }
                let log_lower = b.lower.abs().log2();
                let log_upper = b.upper.abs().log2();
                let log_v = v.abs().log2();
                let frac = if v > 0.0 {
                    (log_v - log_lower) / (log_upper - log_lower)
                } else {
                    1.0 - (log_v - log_upper) / (log_lower - log_upper)
                };
                rank + b.count * frac
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        if !lower_set || lower_rank > self.count {
            lower_rank = self.count;
        }
        if !upper_set || upper_rank > self.count {
            upper_rank = self.count;
        }
        (upper_rank - lower_rank) / self.count
    }

    /// Estimated variance of the observations: each bucket's observations sit at its
    /// geometric mean (exponential buckets), arithmetic mean (custom buckets) or zero
    /// (zero bucket).
    pub fn stdvar(&self) -> f64 {
        let mean = self.sum / self.count;
        let (mut var, mut c) = (0.0, 0.0);
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            let val = if self.uses_custom_buckets() {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let v = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 {
                    -v
                } else {
                    v
                }
            };
            let d = val - mean;
            (var, c) = crate::aggregate::kahan_inc(b.count * d * d, var, c);
        }
        (var + c) / self.count
    }

    /// Prometheus's own text form of a histogram (`{count:20, sum:10, [-2,-1):2,
    /// [-0.001,0.001]:2, (0.5,1]:1}`: populated buckets in ascending order with their
    /// bounds), the label value `count_values` gives a histogram.
    pub fn go_string(&self) -> String {
        let mut s = format!(
            "{{count:{}, sum:{}",
            format_v(self.count),
            format_v(self.sum)
        );
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            s.push_str(&format!(
                ", {}{},{}{}:{}",
                if b.lower_inclusive { '[' } else { '(' },
                format_v(b.lower),
                format_v(b.upper),
                if b.upper_inclusive { ']' } else { ')' },
                format_v(b.count)
            ));
        }
        s.push('}');
        s
    }

    /// The test notation of this histogram (`{{schema:0 count:4 sum:5 buckets:[1 2 1]}}`),
    /// used in messages.
    pub fn test_expression(&self) -> String {
        self.to_string()
    }
}

/// Whether any bucket of `old` holds more than the same bucket of `cur` (a missing bucket
/// counts as empty).
fn buckets_decreased(old: &[(i32, f64)], cur: &[(i32, f64)]) -> bool {
    let mut j = 0;
    for &(i, c) in old {
        while j < cur.len() && cur[j].0 < i {
            j += 1;
        }
        let now = if j < cur.len() && cur[j].0 == i {
            cur[j].1
        } else {
            0.0
        };
        if now < c {
            return true;
        }
    }
    false
}

fn fmt_list(f: &mut fmt::Formatter<'_>, name: &str, v: &[f64]) -> fmt::Result {
    write!(f, " {name}:[")?;
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            write!(f, " ")?;
        }
        write!(f, "{}", crate::value::format_go_float(*x))?;
    }
    write!(f, "]")
}

impl fmt::Display for FloatHistogram {
    /// Writes the test notation; buckets are written densely from the first populated
    /// index, with `offset`/`n_offset`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = crate::value::format_go_float;
        write!(
            f,
            "{{{{schema:{} count:{} sum:{}",
            self.schema,
            g(self.count),
            g(self.sum)
        )?;
        if self.zero_threshold != 0.0 {
            write!(f, " z_bucket_w:{}", g(self.zero_threshold))?;
        }
        if self.zero_count != 0.0 {
            write!(f, " z_bucket:{}", g(self.zero_count))?;
        }
        let dense = |b: &[(i32, f64)]| -> (i32, Vec<f64>) {
            let Some(&(first, _)) = b.first() else {
                return (0, Vec::new());
            };
            let last = b.last().map(|x| x.0).unwrap_or(first);
            let mut v = vec![0.0; (last - first + 1) as usize];
            for &(i, c) in b {
                v[(i - first) as usize] = c;
            }
            (first, v)
        };
        if self.uses_custom_buckets() {
            fmt_list(f, "custom_values", &self.custom_values)?;
        }
        let (off, v) = dense(&self.positive);
        if !v.is_empty() {
            if off != 0 {
                write!(f, " offset:{off}")?;
            }
            fmt_list(f, "buckets", &v)?;
        }
        let (off, v) = dense(&self.negative);
        if !v.is_empty() {
            if off != 0 {
                write!(f, " n_offset:{off}")?;
            }
            fmt_list(f, "n_buckets", &v)?;
        }
        if self.hint != CounterResetHint::Unknown {
            write!(f, " counter_reset_hint:{}", self.hint.notation())?;
        }
        write!(f, "}}}}")
    }
}

/// Parses the body of a histogram in test notation (what is between `{{` and `}}`:
/// `schema:1 sum:-0.3 count:3.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7]
/// offset:-3 n_buckets:[4.1 5] n_offset:-5 counter_reset_hint:gauge custom_values:[..]`).
/// Returns the histogram and whether `counter_reset_hint` was given.
pub fn parse_notation(body: &str) -> Result<(FloatHistogram, bool), NotationError> {
    let mut h = FloatHistogram::default();
    let (mut buckets, mut n_buckets) = (Vec::new(), Vec::new());
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut hint_set = false;
    let mut rest = body.trim();
    let num = |k: &str, v: &str| -> Result<f64, NotationError> {
        crate::notation::parse_number(v).ok_or_else(|| NotationError::InvalidNumber {
            field: k.to_string(),
            value: v.to_string(),
        })
    };
    let int = |k: &str, v: &str| -> Result<i32, NotationError> {
        v.parse::<i32>().map_err(|_| NotationError::InvalidInteger {
            field: k.to_string(),
            value: v.to_string(),
        })
    };
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| NotationError::ExpectedKeyValue(rest.to_string()))?;
        let key = key.trim();
        let after = after.trim_start();
        let (val, next) = if let Some(list) = after.strip_prefix('[') {
            let end = list
                .find(']')
                .ok_or_else(|| NotationError::UnterminatedList(key.to_string()))?;
            (&list[..end], &list[end + 1..])
        } else {
            match after.find(char::is_whitespace) {
                Some(p) => (&after[..p], &after[p..]),
                None => (after, ""),
            }
        };
        let list = || -> Result<Vec<f64>, NotationError> {
            val.split_whitespace().map(|x| num(key, x)).collect()
        };
        match key {
            "schema" => h.schema = int(key, val)?,
            "sum" => h.sum = num(key, val)?,
            "count" => h.count = num(key, val)?,
            "z_bucket" => h.zero_count = num(key, val)?,
            "z_bucket_w" => h.zero_threshold = num(key, val)?,
            "buckets" => buckets = list()?,
            "n_buckets" => n_buckets = list()?,
            "offset" => offset = int(key, val)?,
            "n_offset" => n_offset = int(key, val)?,
            "custom_values" => h.custom_values = list()?,
            "counter_reset_hint" => {
                hint_set = true;
                h.hint = match val {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(NotationError::InvalidHint(other.to_string())),
                }
            }
            other => return Err(NotationError::UnknownField(other.to_string())),
        }
        rest = next.trim_start();
    }
    h.positive = buckets
        .into_iter()
        .enumerate()
        .map(|(i, c)| (offset + i as i32, c))
        .collect();
    h.negative = n_buckets
        .into_iter()
        .enumerate()
        .map(|(i, c)| (n_offset + i as i32, c))
        .collect();
    h.validate()?;
    Ok((h, hint_set))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> FloatHistogram {
        parse_notation(s).unwrap().0
    }

    #[test]
    fn notation_round_trips_and_errors_name_the_field() {
        let x = h("schema:1 sum:-0.3 count:3.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7] offset:-3 n_buckets:[4.1 5] n_offset:-5 counter_reset_hint:gauge");
        assert_eq!(x.positive, vec![(-3, 5.1), (-2, 10.0), (-1, 7.0)]);
        assert_eq!(x.negative, vec![(-5, 4.1), (-4, 5.0)]);
        assert_eq!(x.hint, CounterResetHint::Gauge);
        let again = h(x
            .to_string()
            .trim_start_matches("{{")
            .trim_end_matches("}}"));
        assert_eq!(again, x);
        assert_eq!(
            parse_notation("schema:0 count:x").unwrap_err().to_string(),
            "invalid number \"x\" for count"
        );
        let e = parse_notation("schema:9").unwrap_err();
        assert_eq!(
            e,
            NotationError::Invalid(InvalidHistogram::InvalidSchema(9))
        );
        assert_eq!(
            e.to_string(),
            "schema 9 is not valid (must be -4..=8 or -53)"
        );
        assert_eq!(
            parse_notation("schema:0 counter_reset_hint:maybe")
                .unwrap_err()
                .to_string(),
            "invalid counter_reset_hint \"maybe\""
        );
    }

    #[test]
    fn go_string_formats_numbers_as_go_percent_g() {
        let x = h("schema:0 count:1000000 sum:0.00001 buckets:[1000000] offset:1");
        assert_eq!(x.go_string(), "{count:1e+06, sum:1e-05, (1,2]:1e+06}");
        let y = h("schema:0 count:3 sum:2.5 buckets:[3]");
        assert_eq!(y.go_string(), "{count:3, sum:2.5, (0.5,1]:3}");
    }

    #[test]
    fn spans_round_trip() {
        let b = vec![(-2, 1.0), (-1, 2.0), (3, 4.0)];
        let (s, c) = to_spans(&b);
        assert_eq!(
            s,
            vec![
                Span {
                    offset: -2,
                    length: 2
                },
                Span {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(from_spans(&s, &c), Some(b));
        assert_eq!(from_spans(&s, &[1.0]), None);
    }

    #[test]
    fn addition_reduces_to_the_coarser_schema() {
        let mut a = h("schema:1 count:4 sum:10 buckets:[1 1 1 1]");
        let b = h("schema:0 count:2 sum:3 buckets:[1 1]");
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        // Schema 1 buckets 0..3 map to schema 0 buckets 0,1,1,2.
        assert_eq!(a.positive, vec![(0, 2.0), (1, 3.0), (2, 1.0)]);
        assert_eq!((a.count, a.sum), (6.0, 13.0));
    }

    #[test]
    fn bounds_and_quantiles() {
        let x = h("schema:0 count:4 sum:6 buckets:[1 2 1]");
        let b = x.buckets();
        assert_eq!((b[0].lower, b[0].upper), (0.5, 1.0));
        assert_eq!((b[2].lower, b[2].upper), (2.0, 4.0));
        assert_eq!(x.quantile(1.0), 4.0);
        assert_eq!(x.quantile(0.0), 0.5);
        assert!((x.fraction(0.0, 1.0) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn resets_are_detected_across_schema_changes() {
        let prev = h("schema:1 count:4 sum:4 buckets:[1 1 1 1]");
        // At schema 0 the previous buckets are [1 2 1].
        let coarser_more = h("schema:0 count:5 sum:5 buckets:[1 2 2]");
        assert!(!coarser_more.detect_reset(&prev));
        let coarser_less = h("schema:0 count:5 sum:5 buckets:[1 1 3]");
        assert!(coarser_less.detect_reset(&prev));
        let finer = h("schema:2 count:9 sum:9 buckets:[9]");
        assert!(finer.detect_reset(&prev));
    }
}
