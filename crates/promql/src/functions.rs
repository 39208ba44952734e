//! PromQL functions.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Datelike, TimeZone, Timelike, Utc};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use crate::aggregate::{kahan_inc, mean, quantile, sort_samples, variance};
use crate::eval::{err, report_combined, Ctx, Error, Result};
use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::labels::{Labels, METRIC_NAME};
use crate::value::{format_go_float, RangeSeries, Sample, Value};

fn unwrap_paren(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_paren(&p.expr),
        other => other,
    }
}

/// Applies `f` to every float sample; histogram samples are dropped (as Prometheus's
/// math functions do).
fn map_vector(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(
        v.into_iter()
            .filter(|s| s.h.is_none())
            .map(|s| Sample {
                f: f(s.f),
                drop_name: true,
                ..s
            })
            .collect(),
    )
}

/// Calls `f` on each series of the range argument, producing one sample per series.
/// `f` sees the float samples only: a series without floats produces nothing, and one
/// with histograms besides floats gets an info annotation that they were ignored.
fn over_time(
    ctx: &Ctx,
    c: &Call,
    arg: usize,
    t: i64,
    keep_name: bool,
    f: impl Fn(&RangeSeries) -> Option<f64>,
) -> Result<Value> {
    over_time_any(ctx, c, arg, t, keep_name, |s| {
        if s.points.is_empty() {
            return None;
        }
        if !s.hists.is_empty() {
            ctx.info(format!(
                "ignored histograms in a range containing both floats and histograms for metric name {:?}{}",
                s.labels.name().unwrap_or(""),
                arg_pos(ctx, c, arg)
            ));
        }
        f(s).map(|v| (v, None))
    })
}

/// Like [`over_time`], but `f` sees floats and histograms and may produce either.
fn over_time_any(
    ctx: &Ctx,
    c: &Call,
    arg: usize,
    t: i64,
    keep_name: bool,
    f: impl Fn(&RangeSeries) -> Option<(f64, Option<Arc<FloatHistogram>>)>,
) -> Result<Value> {
    let (m, _, _) = ctx.eval_range_arg(&c.args.args[arg], t)?;
    let mut out = Vec::with_capacity(m.len());
    for s in &m {
        if let Some((v, h)) = f(s) {
            out.push(Sample {
                labels: s.labels.clone(),
                t,
                f: v,
                h,
                drop_name: if keep_name { s.drop_name } else { true },
            });
        }
    }
    Ok(Value::Vector(out))
}

/// Position suffix of argument `arg` of call `c` (Prometheus reports annotations about
/// a function's input at its argument).
fn arg_pos(ctx: &Ctx, c: &Call, arg: usize) -> String {
    if arg == 0 {
        ctx.pos_after(&format!("{}(", c.func.name))
    } else {
        ctx.pos(c.func.name)
    }
}

/// Floats and histograms of a series merged in time order.
enum Point<'a> {
    F(i64, f64),
    H(i64, &'a Arc<FloatHistogram>),
}

fn merged(s: &RangeSeries) -> Vec<Point<'_>> {
    let mut out = Vec::with_capacity(s.points.len() + s.hists.len());
    let (mut i, mut j) = (0, 0);
    while i < s.points.len() || j < s.hists.len() {
        if j >= s.hists.len() || (i < s.points.len() && s.points[i].0 < s.hists[j].0) {
            out.push(Point::F(s.points[i].0, s.points[i].1));
            i += 1;
        } else {
            out.push(Point::H(s.hists[j].0, &s.hists[j].1));
            j += 1;
        }
    }
    out
}

fn mixed_warning(ctx: &Ctx, s: &RangeSeries, pos: &str) {
    ctx.warn(format!(
        "encountered a mix of histograms and floats for metric name {:?}{pos}",
        s.labels.name().unwrap_or("")
    ));
}

fn mixed_schemas_warning(ctx: &Ctx, s: &RangeSeries, pos: &str) {
    ctx.warn(format!(
        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}{pos}",
        s.labels.name().unwrap_or("")
    ));
}

/// `rate`/`increase`/`delta` over native histograms (all samples of the range are
/// histograms): the last minus the first, plus what was lost at each counter reset, at
/// the coarsest schema seen; `None` with a warning when the layouts cannot be combined.
fn histogram_rate(
    ctx: &Ctx,
    s: &RangeSeries,
    is_counter: bool,
    pos: &str,
) -> Option<FloatHistogram> {
    use CounterResetHint::Gauge;
    let h = &s.hists;
    let mut prev: FloatHistogram = (*h[0].1).clone();
    let last = &h[h.len() - 1].1;
    let name = s.labels.name().unwrap_or("");
    if is_counter && (prev.hint == Gauge || last.hint == Gauge) {
        ctx.warn(format!(
            "this native histogram metric is not a counter: {name:?}{pos}"
        ));
    }
    // A reset between the first and second sample: start from an empty histogram of the
    // second's layout, so the first one's layout does not matter.
    if is_counter && h.len() > 1 && h[1].1.detect_reset(&prev) {
        prev = FloatHistogram {
            schema: h[1].1.schema,
            custom_values: h[1].1.custom_values.clone(),
            ..FloatHistogram::default()
        };
    }
    let custom = prev.uses_custom_buckets();
    if last.uses_custom_buckets() != custom {
        mixed_schemas_warning(ctx, s, pos);
        return None;
    }
    let mut min_schema = prev.schema.min(last.schema);
    for (_, cur) in &h[1..h.len() - 1] {
        if !is_counter {
            continue;
        }
        if cur.hint == Gauge {
            ctx.warn(format!(
                "this native histogram metric is not a counter: {name:?}{pos}"
            ));
        }
        min_schema = min_schema.min(cur.schema);
        if cur.uses_custom_buckets() != custom {
            mixed_schemas_warning(ctx, s, pos);
            return None;
        }
    }
    let mut res = (**last).clone();
    res.reduce_to_schema(min_schema);
    match res.sub(&prev) {
        Ok(c) => report_combined(
            ctx,
            crate::histogram::Combined {
                counter_reset_collision: false,
                ..c
            },
            "subtraction",
            "",
        ),
        Err(_) => {
            mixed_schemas_warning(ctx, s, pos);
            return None;
        }
    }
    if is_counter {
        let mut p: &FloatHistogram = &prev;
        for (_, cur) in &h[1..] {
            if cur.detect_reset(p) {
                match res.add(p) {
                    Ok(c) => report_combined(
                        ctx,
                        crate::histogram::Combined {
                            counter_reset_collision: false,
                            ..c
                        },
                        "addition",
                        pos,
                    ),
                    Err(_) => {
                        mixed_schemas_warning(ctx, s, pos);
                        return None;
                    }
                }
            }
            p = cur;
        }
    } else if h[0].1.hint != Gauge || last.hint != Gauge {
        ctx.warn(format!(
            "this native histogram metric is not a gauge: {name:?}{pos}"
        ));
    }
    res.hint = Gauge;
    Some(res.compact())
}

fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(ts, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (ts - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// The extrapolation factor of `rate`/`increase`/`delta`: how much the raw difference
/// between the first and last sample (`first`, `last`: (timestamp, value or count),
/// `n` samples, `result` the raw difference) is scaled to cover the whole range.
#[allow(clippy::too_many_arguments)]
fn extrapolation_factor(
    first: (i64, f64),
    last: (i64, f64),
    n: usize,
    result: f64,
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> f64 {
    let pts_len = n;
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (pts_len - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first.1 >= 0.0 {
            to_zero = sampled * (first.1 / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    factor
}

fn extrapolated_rate(
    pts: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let first = pts[0];
    let last = pts[pts.len() - 1];
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for &(_, v) in &pts[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let factor = extrapolation_factor(
        first,
        last,
        pts.len(),
        result,
        range_start,
        range_end,
        is_counter,
        is_rate,
    );
    Some(result * factor)
}

fn instant_delta(pts: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let last = pts[pts.len() - 1];
    let prev = pts[pts.len() - 2];
    let mut r = last.1 - prev.1;
    if is_rate && last.1 < prev.1 {
        r = last.1;
    }
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

/// `irate`/`idelta` over a series with histograms: the last two samples must both be
/// histograms.
fn instant_delta_any(
    ctx: &Ctx,
    s: &RangeSeries,
    is_rate: bool,
    pos: &str,
) -> Option<(f64, Option<Arc<FloatHistogram>>)> {
    if s.hists.is_empty() {
        return instant_delta(&s.points, is_rate).map(|v| (v, None));
    }
    let all = merged(s);
    if all.len() < 2 {
        return None;
    }
    let (prev, last) = (&all[all.len() - 2], &all[all.len() - 1]);
    let (pt, lt, ph, lh) = match (prev, last) {
        (Point::F(pt, pv), Point::F(lt, lv)) => {
            return instant_delta(&[(*pt, *pv), (*lt, *lv)], is_rate).map(|v| (v, None));
        }
        (Point::H(pt, ph), Point::H(lt, lh)) => (*pt, *lt, ph, lh),
        _ => {
            mixed_warning(ctx, s, pos);
            return None;
        }
    };
    let name = s.labels.name().unwrap_or("");
    let gauge = |h: &FloatHistogram| h.hint == CounterResetHint::Gauge;
    if is_rate && (gauge(ph) || gauge(lh)) {
        ctx.warn(format!(
            "this native histogram metric is not a counter: {name:?}{pos}"
        ));
    }
    if !is_rate && (!gauge(ph) || !gauge(lh)) {
        ctx.warn(format!(
            "this native histogram metric is not a gauge: {name:?}{pos}"
        ));
    }
    let mut res = (***lh).clone();
    if !is_rate || !lh.detect_reset(ph) {
        match res.sub(ph) {
            Ok(c) => report_combined(
                ctx,
                crate::histogram::Combined {
                    counter_reset_collision: false,
                    ..c
                },
                "subtraction",
                pos,
            ),
            Err(_) => {
                mixed_schemas_warning(ctx, s, pos);
                return None;
            }
        }
    }
    res.hint = CounterResetHint::Gauge;
    let mut res = res.compact();
    if is_rate {
        let interval = lt - pt;
        if interval == 0 {
            return None;
        }
        res = res.divide(interval as f64 / 1000.0);
    }
    Some((0.0, Some(Arc::new(res))))
}

fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_paren(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Labels::default(),
    };
    let mut l = Labels::default();
    let mut dup: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if seen.contains(&m.name.as_str()) {
            dup.push(m.name.clone());
        }
        seen.push(&m.name);
        if m.name == METRIC_NAME || !matches!(m.op, MatchOp::Equal) {
            continue;
        }
        l.set(&m.name, &m.value);
    }
    for d in dup {
        l.remove(&d);
    }
    l
}

fn date_fn(ctx: &Ctx, c: &Call, t: i64, f: impl Fn(chrono::DateTime<Utc>) -> f64) -> Result<Value> {
    let v = if c.args.args.is_empty() {
        vec![Sample {
            labels: Labels::default(),
            t,
            f: t as f64 / 1000.0,
            h: None,
            drop_name: false,
        }]
    } else {
        ctx.eval_vector(&c.args.args[0], t)?
    };
    let mut out = Vec::with_capacity(v.len());
    for s in v.into_iter().filter(|s| s.h.is_none()) {
        let secs = s.f;
        let val = if secs.is_nan() || secs.is_infinite() {
            f64::NAN
        } else {
            match Utc.timestamp_opt(secs as i64, 0).single() {
                Some(dt) => f(dt),
                None => f64::NAN,
            }
        };
        out.push(Sample {
            f: val,
            drop_name: true,
            ..s
        });
    }
    Ok(Value::Vector(out))
}

fn days_in_month(dt: chrono::DateTime<Utc>) -> f64 {
    let (y, m) = (dt.year(), dt.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let first_next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
    match (first, first_next) {
        (Some(a), Some(b)) => (b - a).num_days() as f64,
        _ => f64::NAN,
    }
}

fn check_label_name(ctx: &Ctx, name: &str, func: &str, what: &str) -> Result<()> {
    if name.is_empty() || name.contains('\u{FFFD}') || ctx.invalid_utf8_literal(name) {
        return err(format!("invalid {what} label name in {func}(): {name}"));
    }
    Ok(())
}

/// Buckets for classic histogram_quantile: (upper bound, count).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    // Coalesce equal upper bounds.
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match co.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => co.push((ub, c)),
        }
    }
    let mut forced = false;
    let mut prev = co[0].1;
    for b in co.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if co.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = co[co.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let n = co.len() - 1;
    let b = co[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return (co[n - 1].0, forced);
    }
    if b == 0 && co[0].0 <= 0.0 {
        return (co[0].0, forced);
    }
    let end = co[b].0;
    let mut count = co[b].1;
    let mut start = 0.0;
    if b > 0 {
        start = co[b - 1].0;
        count -= co[b - 1].1;
        rank -= co[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Relative float comparison as Prometheus's `almost.Equal`.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s {
        return None;
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    t.replace('_', "").parse::<f64>().ok()
}

fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

pub(crate) fn call(ctx: &Ctx, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let args = &c.args.args;
    let experimental_ok = matches!(
        name,
        "sort_by_label"
            | "sort_by_label_desc"
            | "mad_over_time"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
            | "ts_of_last_over_time"
            | "ts_of_first_over_time"
            | "double_exponential_smoothing"
    );
    if c.func.experimental && !experimental_ok {
        return Err(Error::Unsupported(format!("experimental function {name}")));
    }
    let vec_arg = |i: usize| ctx.eval_vector(&args[i], t);
    let scalar_arg = |i: usize| ctx.eval_scalar(&args[i], t);
    match name {
        "abs" => Ok(map_vector(vec_arg(0)?, f64::abs)),
        "ceil" => Ok(map_vector(vec_arg(0)?, f64::ceil)),
        "floor" => Ok(map_vector(vec_arg(0)?, f64::floor)),
        "exp" => Ok(map_vector(vec_arg(0)?, f64::exp)),
        "sqrt" => Ok(map_vector(vec_arg(0)?, f64::sqrt)),
        "ln" => Ok(map_vector(vec_arg(0)?, f64::ln)),
        "log2" => Ok(map_vector(vec_arg(0)?, f64::log2)),
        "log10" => Ok(map_vector(vec_arg(0)?, f64::log10)),
        "sin" => Ok(map_vector(vec_arg(0)?, f64::sin)),
        "cos" => Ok(map_vector(vec_arg(0)?, f64::cos)),
        "tan" => Ok(map_vector(vec_arg(0)?, f64::tan)),
        "asin" => Ok(map_vector(vec_arg(0)?, f64::asin)),
        "acos" => Ok(map_vector(vec_arg(0)?, f64::acos)),
        "atan" => Ok(map_vector(vec_arg(0)?, f64::atan)),
        "sinh" => Ok(map_vector(vec_arg(0)?, f64::sinh)),
        "cosh" => Ok(map_vector(vec_arg(0)?, f64::cosh)),
        "tanh" => Ok(map_vector(vec_arg(0)?, f64::tanh)),
        "asinh" => Ok(map_vector(vec_arg(0)?, f64::asinh)),
        "acosh" => Ok(map_vector(vec_arg(0)?, f64::acosh)),
        "atanh" => Ok(map_vector(vec_arg(0)?, f64::atanh)),
        "deg" => Ok(map_vector(vec_arg(0)?, |x| {
            x * 180.0 / std::f64::consts::PI
        })),
        "rad" => Ok(map_vector(vec_arg(0)?, |x| {
            x * std::f64::consts::PI / 180.0
        })),
        "sgn" => Ok(map_vector(vec_arg(0)?, |x| {
            if x < 0.0 {
                -1.0
            } else if x > 0.0 {
                1.0
            } else {
                x
            }
        })),
        "round" => {
            let v = vec_arg(0)?;
            let to = if args.len() > 1 { scalar_arg(1)? } else { 1.0 };
            let inv = 1.0 / to;
            Ok(map_vector(v, |x| (x * inv + 0.5).floor() / inv))
        }
        "clamp" => {
            let v = vec_arg(0)?;
            let (lo, hi) = (scalar_arg(1)?, scalar_arg(2)?);
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(map_vector(v, |x| go_max(lo, go_min(hi, x))))
        }
        "clamp_min" => {
            let v = vec_arg(0)?;
            let lo = scalar_arg(1)?;
            Ok(map_vector(v, |x| go_max(lo, x)))
        }
        "clamp_max" => {
            let v = vec_arg(0)?;
            let hi = scalar_arg(1)?;
            Ok(map_vector(v, |x| go_min(hi, x)))
        }
        "scalar" => {
            let v = vec_arg(0)?;
            // Histogram samples do not count: one float among them is the scalar.
            let mut floats = v.iter().filter(|s| s.h.is_none());
            Ok(Value::Scalar(match (floats.next(), floats.next()) {
                (Some(s), None) => s.f,
                _ => f64::NAN,
            }))
        }
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Labels::default(),
            t,
            f: scalar_arg(0)?,
            h: None,
            drop_name: false,
        }])),
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "timestamp" => {
            let v = match unwrap_paren(&args[0]) {
                Expr::VectorSelector(vs) => ctx.select_vector(vs, t, true)?,
                other => ctx.eval_vector(other, t)?,
            };
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        f: s.t as f64 / 1000.0,
                        t,
                        h: None,
                        drop_name: true,
                        ..s
                    })
                    .collect(),
            ))
        }
        "year" => date_fn(ctx, c, t, |d| d.year() as f64),
        "month" => date_fn(ctx, c, t, |d| d.month() as f64),
        "day_of_month" => date_fn(ctx, c, t, |d| d.day() as f64),
        "day_of_year" => date_fn(ctx, c, t, |d| d.ordinal() as f64),
        "day_of_week" => date_fn(ctx, c, t, |d| d.weekday().num_days_from_sunday() as f64),
        "days_in_month" => date_fn(ctx, c, t, days_in_month),
        "hour" => date_fn(ctx, c, t, |d| d.hour() as f64),
        "minute" => date_fn(ctx, c, t, |d| d.minute() as f64),
        "absent" => {
            let v = vec_arg(0)?;
            if !v.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![Sample {
                labels: absent_labels(&args[0]),
                t,
                f: 1.0,
                h: None,
                drop_name: false,
            }]))
        }
        "absent_over_time" => {
            let (m, _, _) = ctx.eval_range_arg(&args[0], t)?;
            if !m.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![Sample {
                labels: absent_labels(&args[0]),
                t,
                f: 1.0,
                h: None,
                drop_name: false,
            }]))
        }
        "present_over_time" => over_time_any(ctx, c, 0, t, false, |_| Some((1.0, None))),
        "count_over_time" => over_time_any(ctx, c, 0, t, false, |s| {
            Some(((s.points.len() + s.hists.len()) as f64, None))
        }),
        "sum_over_time" | "avg_over_time" => {
            let pos = arg_pos(ctx, c, 0);
            let avg = name == "avg_over_time";
            over_time_any(ctx, c, 0, t, false, |s| {
                if !s.hists.is_empty() {
                    if !s.points.is_empty() {
                        mixed_warning(ctx, s, &pos);
                        return None;
                    }
                    let h = sum_histograms(ctx, s, &pos)?;
                    let h = if avg {
                        h.divide(s.hists.len() as f64)
                    } else {
                        h
                    };
                    return Some((0.0, Some(Arc::new(h.compact()))));
                }
                if avg {
                    return Some((mean(s.points.iter().map(|p| p.1)), None));
                }
                let (mut sum, mut cc) = (0.0, 0.0);
                for p in &s.points {
                    (sum, cc) = kahan_inc(p.1, sum, cc);
                }
                Some((if sum.is_infinite() { sum } else { sum + cc }, None))
            })
        }
        "min_over_time" | "max_over_time" => {
            let is_max = name == "max_over_time";
            over_time(ctx, c, 0, t, false, |s| {
                let mut v = s.points[0].1;
                for p in &s.points {
                    if (if is_max { p.1 > v } else { p.1 < v }) || v.is_nan() {
                        v = p.1;
                    }
                }
                Some(v)
            })
        }
        "last_over_time" | "first_over_time" | "ts_of_last_over_time" | "ts_of_first_over_time" => {
            let last = name.contains("last");
            let ts_only = name.starts_with("ts_of");
            over_time_any(ctx, c, 0, t, !ts_only, |s| {
                let all = merged(s);
                let p = if last { all.last() } else { all.first() }?;
                Some(match (p, ts_only) {
                    (Point::F(pt, _) | Point::H(pt, _), true) => (*pt as f64 / 1000.0, None),
                    (Point::F(_, v), false) => (*v, None),
                    (Point::H(_, h), false) => (0.0, Some((*h).clone())),
                })
            })
        }
        "ts_of_max_over_time" | "ts_of_min_over_time" => {
            let is_max = name == "ts_of_max_over_time";
            over_time(ctx, c, 0, t, false, |s| {
                let (mut ts, mut v) = s.points[0];
                for &(pt, pv) in &s.points {
                    if (if is_max { pv >= v } else { pv <= v }) || v.is_nan() {
                        v = pv;
                        ts = pt;
                    }
                }
                Some(ts as f64 / 1000.0)
            })
        }
        "stddev_over_time" => over_time(ctx, c, 0, t, false, |s| {
            Some(variance(s.points.iter().map(|p| p.1)).sqrt())
        }),
        "stdvar_over_time" => over_time(ctx, c, 0, t, false, |s| {
            Some(variance(s.points.iter().map(|p| p.1)))
        }),
        "mad_over_time" => over_time(ctx, c, 0, t, false, |s| {
            let mut v: Vec<f64> = s.points.iter().map(|p| p.1).collect();
            let med = quantile(0.5, &mut v);
            let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }),
        "quantile_over_time" => {
            let q = scalar_arg(0)?;
            if !(0.0..=1.0).contains(&q) {
                ctx.warn(format!(
                    "quantile value should be between 0 and 1, got {}{}",
                    format_go_float(q),
                    ctx.pos("quantile_over_time")
                ));
            }
            over_time(ctx, c, 1, t, false, |s| {
                let mut v: Vec<f64> = s.points.iter().map(|p| p.1).collect();
                Some(quantile(q, &mut v))
            })
        }
        "changes" | "resets" => {
            let is_changes = name == "changes";
            over_time_any(ctx, c, 0, t, false, |s| {
                let all = merged(s);
                let mut n = 0.0;
                for w in all.windows(2) {
                    let hit = match (&w[0], &w[1]) {
                        (Point::F(_, a), Point::F(_, b)) => {
                            if is_changes {
                                !(a == b || (a.is_nan() && b.is_nan()))
                            } else {
                                b < a
                            }
                        }
                        (Point::H(_, a), Point::H(_, b)) => {
                            if is_changes {
                                !b.equals(a)
                            } else {
                                b.detect_reset(a)
                            }
                        }
                        _ => true,
                    };
                    if hit {
                        n += 1.0;
                    }
                }
                Some((n, None))
            })
        }
        "rate" | "increase" | "delta" => {
            let (m, rs, re) = ctx.eval_range_arg(&args[0], t)?;
            let counter = name != "delta";
            let is_rate = name == "rate";
            let pos = arg_pos(ctx, c, 0);
            let mut out = Vec::new();
            for s in m {
                if !s.hists.is_empty() {
                    if !s.points.is_empty() {
                        mixed_warning(ctx, &s, &pos);
                        continue;
                    }
                    if s.hists.len() < 2 {
                        continue;
                    }
                    let Some(h) = histogram_rate(ctx, &s, counter, &pos) else {
                        continue;
                    };
                    let first = (s.hists[0].0, s.hists[0].1.count);
                    let last = (s.hists[s.hists.len() - 1].0, 0.0);
                    let factor = extrapolation_factor(
                        first,
                        last,
                        s.hists.len(),
                        h.count,
                        rs,
                        re,
                        counter,
                        is_rate,
                    );
                    out.push(Sample {
                        labels: s.labels,
                        t,
                        f: 0.0,
                        h: Some(Arc::new(h.scale(factor))),
                        drop_name: true,
                    });
                    continue;
                }
                if counter {
                    if let Some(n) = s.labels.name() {
                        if !["_total", "_sum", "_count", "_bucket"]
                            .iter()
                            .any(|x| n.ends_with(x))
                        {
                            ctx.info(format!(
                                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}{}",
                                ctx.pos_after(&format!("{name}("))
                            ));
                        }
                    }
                }
                if let Some(v) = extrapolated_rate(&s.points, rs, re, counter, is_rate) {
                    out.push(Sample {
                        labels: s.labels,
                        t,
                        f: v,
                        h: None,
                        drop_name: true,
                    });
                }
            }
            Ok(Value::Vector(out))
        }
        "irate" | "idelta" => {
            let pos = arg_pos(ctx, c, 0);
            let is_rate = name == "irate";
            over_time_any(ctx, c, 0, t, false, |s| {
                instant_delta_any(ctx, s, is_rate, &pos)
            })
        }
        "deriv" => over_time(ctx, c, 0, t, false, |s| {
            if s.points.len() < 2 {
                return None;
            }
            Some(linear_regression(&s.points, s.points[0].0).0)
        }),
        "predict_linear" => {
            let d = scalar_arg(1)?;
            over_time(ctx, c, 0, t, false, |s| {
                if s.points.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(&s.points, t);
                Some(slope * d + intercept)
            })
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let sf = scalar_arg(1)?;
            let tf = scalar_arg(2)?;
            if sf <= 0.0 || sf >= 1.0 {
                return err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                    format_go_float(sf)
                ));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                    format_go_float(tf)
                ));
            }
            over_time(ctx, c, 0, t, false, |s| {
                let p = &s.points;
                if p.len() < 2 {
                    return None;
                }
                let mut s1 = p[0].1;
                let mut b = p[1].1 - p[0].1;
                let mut s0 = 0.0;
                for (i, pt) in p.iter().enumerate().skip(1) {
                    let x = sf * pt.1;
                    if i > 1 {
                        b = tf * (s1 - s0) + (1.0 - tf) * b;
                    }
                    let y = (1.0 - sf) * (s1 + b);
                    s0 = s1;
                    s1 = x + y;
                }
                Some(s1)
            })
        }
        "sort" | "sort_desc" => {
            if ctx.range_mode {
                ctx.warn(format!(
                    "sort is ineffective for range queries since results are always ordered by labels{}",
                    ctx.pos(name)
                ));
            }
            let mut v = vec_arg(0)?;
            v.retain(|s| s.h.is_none());
            sort_samples(&mut v, name == "sort_desc");
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vec_arg(0)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(ctx.eval_string(a, t)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for n in &names {
                    let o = natural_cmp(a.labels.get_or_empty(n), b.labels.get_or_empty(n));
                    if o != std::cmp::Ordering::Equal {
                        return if desc { o.reverse() } else { o };
                    }
                }
                let o = a.labels.cmp(&b.labels);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = vec_arg(0)?;
            let dst = ctx.eval_string(&args[1], t)?;
            let repl = ctx.eval_string(&args[2], t)?;
            let src = ctx.eval_string(&args[3], t)?;
            let re_s = ctx.eval_string(&args[4], t)?;
            let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|e| {
                Error::Eval(format!(
                    "invalid regular expression in label_replace(): {re_s}: {e}"
                ))
            })?;
            check_label_name(ctx, &dst, "label_replace", "destination")?;
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let sv = s.labels.get_or_empty(&src).to_string();
                if let Some(caps) = re.captures(&sv) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    s.labels.set(&dst, &res);
                    if dst == METRIC_NAME {
                        s.drop_name = false;
                    }
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = vec_arg(0)?;
            let dst = ctx.eval_string(&args[1], t)?;
            let sep = ctx.eval_string(&args[2], t)?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                srcs.push(ctx.eval_string(a, t)?);
            }
            check_label_name(ctx, &dst, "label_join", "destination")?;
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get_or_empty(n)).collect();
                let joined = joined.join(&sep);
                s.labels.set(&dst, &joined);
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            let v = vec_arg(1)?;
            if !(0.0..=1.0).contains(&q) {
                ctx.warn(format!(
                    "quantile value should be between 0 and 1, got {}{}",
                    format_go_float(q),
                    ctx.pos("histogram_quantile(").replace(')', "")
                ));
            }
            let (natives, v): (Vec<Sample>, Vec<Sample>) =
                v.into_iter().partition(|s| s.h.is_some());
            let mut out = Vec::new();
            for s in &natives {
                if let Some(h) = &s.h {
                    out.push(Sample {
                        t,
                        f: h.quantile(q),
                        h: None,
                        drop_name: true,
                        ..s.clone()
                    });
                }
            }
            for (key, mut b, mname) in classic_groups(ctx, v) {
                if natives.iter().any(|s| s.labels.without_name() == key) {
                    ctx.warn(format!(
                        "vector contains a mix of classic and native histograms for metric name {mname:?}{}",
                        ctx.pos_after("histogram_quantile(")
                    ));
                    continue;
                }
                let (val, forced) = bucket_quantile(q, &mut b);
                if forced {
                    ctx.info(format!("input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {mname:?}"));
                }
                out.push(Sample {
                    labels: key,
                    t,
                    f: val,
                    h: None,
                    drop_name: false,
                });
            }
            Ok(Value::Vector(out))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = vec_arg(0)?;
            let f = |h: &FloatHistogram| match name {
                "histogram_count" => h.count,
                "histogram_sum" => h.sum,
                "histogram_avg" => h.sum / h.count,
                "histogram_stddev" => h.stdvar().sqrt(),
                _ => h.stdvar(),
            };
            Ok(Value::Vector(
                v.into_iter()
                    .filter_map(|s| {
                        let h = s.h.clone()?;
                        Some(Sample {
                            f: f(&h),
                            h: None,
                            drop_name: true,
                            ..s
                        })
                    })
                    .collect(),
            ))
        }
        "histogram_fraction" => {
            let lower = scalar_arg(0)?;
            let upper = scalar_arg(1)?;
            let v = vec_arg(2)?;
            let (natives, v): (Vec<Sample>, Vec<Sample>) =
                v.into_iter().partition(|s| s.h.is_some());
            let mut out = Vec::new();
            for s in &natives {
                if let Some(h) = &s.h {
                    out.push(Sample {
                        t,
                        f: h.fraction(lower, upper),
                        h: None,
                        drop_name: true,
                        ..s.clone()
                    });
                }
            }
            for (key, mut b, mname) in classic_groups(ctx, v) {
                if natives.iter().any(|s| s.labels.without_name() == key) {
                    ctx.warn(format!(
                        "vector contains a mix of classic and native histograms for metric name {mname:?}{}",
                        ctx.pos_after("histogram_fraction(")
                    ));
                    continue;
                }
                out.push(Sample {
                    labels: key,
                    t,
                    f: bucket_fraction(lower, upper, &mut b),
                    h: None,
                    drop_name: false,
                });
            }
            Ok(Value::Vector(out))
        }
        other => Err(Error::Unsupported(format!("function {other}"))),
    }
}

/// Sums the histograms of a series (for `sum_over_time`/`avg_over_time`); `None` with a
/// warning when their layouts cannot be combined.
fn sum_histograms(ctx: &Ctx, s: &RangeSeries, pos: &str) -> Option<FloatHistogram> {
    let mut acc = (*s.hists[0].1).clone();
    for (_, h) in &s.hists[1..] {
        match acc.add(h) {
            Ok(c) => report_combined(ctx, c, "aggregation", pos),
            Err(_) => {
                mixed_schemas_warning(ctx, s, pos);
                return None;
            }
        }
    }
    Some(acc)
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Groups classic bucket samples by their labels without `le` and the metric name;
/// returns (labels, [(upper bound, count)], metric name) in first-appearance order.
type BucketGroup = (Labels, Vec<(f64, f64)>, String);

fn classic_groups(ctx: &Ctx, v: Vec<Sample>) -> Vec<BucketGroup> {
    let mut order: Vec<BucketGroup> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let mname = s.labels.name().unwrap_or("").to_string();
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
            ctx.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                s.labels.get_or_empty("le"),
                mname
            ));
            continue;
        };
        let mut key = s.labels.without_name();
        key.remove("le");
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                order.push((key.clone(), Vec::new(), mname));
                index.insert(key, order.len() - 1);
                order.len() - 1
            }
        };
        order[i].1.push((le, s.f));
    }
    order
}

/// Fraction of observations between `lower` and `upper` in classic buckets.
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match co.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => co.push((ub, c)),
        }
    }
    let count = co[co.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(ub, c)) in co.iter().enumerate() {
        let lb = if i > 0 {
            co[i - 1].0
        } else if ub > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let interp = |v: f64| rank + (c - rank) * (v - lb) / (ub - lb);
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = c;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}
