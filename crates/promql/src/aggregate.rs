//! Aggregation operators (`sum`, `topk`, `quantile`, `limit_ratio`, ...).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::eval::{err, report_combined, Ctx, Result};
use crate::histogram::FloatHistogram;
use crate::labels::{Labels, METRIC_NAME};
use crate::value::{format_go_float, Sample, Value};

/// Neumaier-compensated summation step, as Prometheus's `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Mean with compensated summation that falls back to an incremental mean on overflow.
pub(crate) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c, mut mean, mut count) = (0.0, 0.0, 0.0, 0.0f64);
    let mut incremental = false;
    for f in values {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if count == 1.0 || !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        let (nm, nc) = kahan_inc(f / count, q * mean, q * c);
        mean = nm;
        c = nc;
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Prometheus's `quantile` over a set of values.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts as the smallest value.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Population variance with compensated Welford updates.
pub(crate) fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for f in values {
        count += 1.0;
        let delta = f - (mean + cmean);
        let (m, cm) = kahan_inc(delta / count, mean, cmean);
        mean = m;
        cmean = cm;
        let (a, ca) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
        aux = a;
        caux = ca;
    }
    (aux + caux) / count
}

fn group_key(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => l.keep(&by.labels),
        Some(LabelModifier::Exclude(without)) => {
            let mut x = l.drop_names(&without.labels);
            x.remove(METRIC_NAME);
            x
        }
        None => Labels::default(),
    }
}

fn cmp_nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

pub(crate) fn sort_samples(v: &mut [Sample], desc: bool) {
    v.sort_by(|a, b| cmp_nan_last(a.f, b.f, desc));
}

/// xxHash64 (seed 0), used to reproduce Prometheus's `labels.Hash()`.
pub(crate) fn xxh64(data: &[u8]) -> u64 {
    const P1: u64 = 11400714785074694791;
    const P2: u64 = 14029467366897019727;
    const P3: u64 = 1609587929392839161;
    const P4: u64 = 9650029242287828579;
    const P5: u64 = 2870177450012600261;
    fn round(acc: u64, input: u64) -> u64 {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }
    fn merge(acc: u64, val: u64) -> u64 {
        (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
    }
    let rd = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let n = data.len();
    let mut p = 0;
    let mut h: u64;
    if n >= 32 {
        let mut v1 = P1.wrapping_add(P2);
        let mut v2 = P2;
        let mut v3 = 0u64;
        let mut v4 = 0u64.wrapping_sub(P1);
        while p + 32 <= n {
            v1 = round(v1, rd(&data[p..]));
            v2 = round(v2, rd(&data[p + 8..]));
            v3 = round(v3, rd(&data[p + 16..]));
            v4 = round(v4, rd(&data[p + 24..]));
            p += 32;
        }
        h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        h = merge(h, v4);
    } else {
        h = P5;
    }
    h = h.wrapping_add(n as u64);
    while p + 8 <= n {
        h ^= round(0, rd(&data[p..]));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        p += 8;
    }
    if p + 4 <= n {
        let w = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]) as u64;
        h ^= w.wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        p += 4;
    }
    while p < n {
        h ^= (data[p] as u64).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
        p += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

/// Prometheus's `labels.Labels.Hash()`.
pub(crate) fn labels_hash(l: &Labels) -> u64 {
    let mut b = Vec::new();
    for (k, v) in l.iter() {
        b.extend_from_slice(k.as_bytes());
        b.push(0xff);
        b.extend_from_slice(v.as_bytes());
        b.push(0xff);
    }
    xxh64(&b)
}

fn k_param(ctx: &Ctx, a: &AggregateExpr, t: i64, name: &str) -> Result<i64> {
    let Some(p) = &a.param else {
        return err(format!("{name}: missing parameter"));
    };
    let f = ctx.eval_scalar(p, t)?;
    if f.is_nan() {
        return err(format!("Parameter value is NaN for {name}"));
    }
    if f >= i64::MAX as f64 {
        return Ok(i64::MAX);
    }
    if f <= i64::MIN as f64 {
        return Ok(i64::MIN);
    }
    Ok(f as i64)
}

pub(crate) fn aggregate(ctx: &Ctx, a: &AggregateExpr, t: i64) -> Result<Value> {
    let op = a.op.id();
    // Delayed name removal: groups are partitioned by the not yet removed name; a group
    // drops its name when any member would.
    let input = ctx.eval_vector(&a.expr, t)?;
    // Group membership in first-appearance order.
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::new();
    let mut count_values_label = None;
    if op == T_COUNT_VALUES {
        let Some(p) = &a.param else {
            return err("count_values: missing label parameter");
        };
        let l = ctx.eval_string(p, t)?;
        if ctx.invalid_utf8_literal(&l) {
            // Go quotes the undecodable bytes as `\xNN`.
            let q: String = l
                .chars()
                .map(|c| match c as u32 {
                    0x80..=0xff => format!("\\x{:02x}", c as u32),
                    _ => c.to_string(),
                })
                .collect();
            return err(format!("invalid label name \"{q}\""));
        }
        if !is_valid_label_name(&l) {
            return err(format!("invalid label name {l:?}"));
        }
        count_values_label = Some(l);
    }
    for s in input {
        let mut key = group_key(&s.labels, &a.modifier);
        if let Some(l) = &count_values_label {
            match &s.h {
                Some(h) => key.set(l, &h.go_string()),
                None => key.set(l, &format_go_float(s.f)),
            }
        }
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(s);
    }
    let mut out: Vec<Sample> = Vec::new();
    let mk = |labels: Labels, f: f64, g: &[Sample]| Sample {
        drop_name: labels.name().is_some() && g.iter().any(|s| s.drop_name),
        labels,
        t,
        f,
        h: None,
    };
    let op_name = promql_parser::parser::token::TokenType::new(op).to_string();
    let pos = ctx.pos(&op_name);
    // Aggregations of floats only: histograms are ignored (with an info annotation) and
    // a group of histograms only produces nothing.
    let floats_only = matches!(
        op,
        T_MIN | T_MAX | T_STDDEV | T_STDVAR | T_QUANTILE | T_TOPK | T_BOTTOMK
    );
    if floats_only {
        for key in &order {
            if let Some(g) = groups.get_mut(key) {
                if g.iter().any(|s| s.h.is_some()) {
                    ctx.info(format!("ignored histogram in {op_name} aggregation{pos}"));
                    g.retain(|s| s.h.is_none());
                }
            }
        }
        order.retain(|k| groups.get(k).is_some_and(|g| !g.is_empty()));
    }
    match op {
        T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR
        | T_COUNT_VALUES => {
            for key in order {
                let g = &groups[&key];
                if matches!(op, T_SUM | T_AVG) && g.iter().any(|s| s.h.is_some()) {
                    if g.iter().any(|s| s.h.is_none()) {
                        ctx.warn(format!(
                            "encountered a mix of histograms and floats for aggregation{pos}"
                        ));
                        continue;
                    }
                    if let Some(h) = sum_histograms(ctx, g, &pos) {
                        let h = if op == T_AVG {
                            h.divide(g.len() as f64)
                        } else {
                            h
                        };
                        let mut s = mk(key, 0.0, g);
                        s.h = Some(Arc::new(h.compact()));
                        out.push(s);
                    }
                    continue;
                }
                let f = match op {
                    T_SUM => {
                        let (mut s, mut c) = (0.0, 0.0);
                        for x in g {
                            (s, c) = kahan_inc(x.f, s, c);
                        }
                        s + c
                    }
                    T_AVG => mean(g.iter().map(|x| x.f)),
                    T_COUNT | T_COUNT_VALUES => g.len() as f64,
                    T_GROUP => 1.0,
                    T_MIN | T_MAX => {
                        let mut v = g[0].f;
                        for x in &g[1..] {
                            let better = if op == T_MAX { x.f > v } else { x.f < v };
                            if better || v.is_nan() {
                                v = x.f;
                            }
                        }
                        v
                    }
                    T_STDVAR => variance_agg(g),
                    _ => variance_agg(g).sqrt(),
                };
                out.push(mk(key, f, g));
            }
        }
        T_QUANTILE => {
            let Some(p) = &a.param else {
                return err("quantile: missing parameter");
            };
            let q = ctx.eval_scalar(p, t)?;
            if !(0.0..=1.0).contains(&q) {
                ctx.warn(format!(
                    "quantile value should be between 0 and 1, got {}{}",
                    format_go_float(q),
                    ctx.pos("quantile")
                ));
            }
            for key in order {
                let g = &groups[&key];
                let mut vals: Vec<f64> = g.iter().map(|x| x.f).collect();
                out.push(mk(key.clone(), quantile(q, &mut vals), g));
            }
        }
        T_TOPK | T_BOTTOMK => {
            let name = if op == T_TOPK { "topk" } else { "bottomk" };
            let k = k_param(ctx, a, t, name)?;
            if k < 1 {
                return Ok(Value::Vector(Vec::new()));
            }
            for key in order {
                let mut g = groups.remove(&key).unwrap_or_default();
                sort_samples(&mut g, op == T_TOPK);
                g.truncate(k.min(g.len() as i64) as usize);
                out.extend(g);
            }
        }
        T_LIMITK => {
            let k = k_param(ctx, a, t, "limitk")?;
            if k < 1 {
                return Ok(Value::Vector(Vec::new()));
            }
            for key in order {
                let mut g = groups.remove(&key).unwrap_or_default();
                g.truncate(k.min(g.len() as i64) as usize);
                out.extend(g);
            }
        }
        T_LIMIT_RATIO => {
            let Some(p) = &a.param else {
                return err("limit_ratio: missing parameter");
            };
            let mut r = ctx.eval_scalar(p, t)?;
            if r.is_nan() {
                return err("Ratio value is NaN for limit_ratio");
            }
            if !(-1.0..=1.0).contains(&r) {
                let capped = r.clamp(-1.0, 1.0);
                let pos = ctx.pos_after("limit_ratio(");
                ctx.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to {}{}",
                    format_go_float(r),
                    format_go_float(capped),
                    pos
                ));
                r = capped;
            }
            for key in order {
                for s in groups.remove(&key).unwrap_or_default() {
                    let off = labels_hash(&s.labels) as f64 / u64::MAX as f64;
                    if (r >= 0.0 && off < r) || (r < 0.0 && off >= 1.0 + r) {
                        out.push(s);
                    }
                }
            }
        }
        other => {
            return err(format!(
                "unsupported aggregation {}",
                promql_parser::parser::token::TokenType::new(other)
            ))
        }
    }
    Ok(Value::Vector(out))
}

/// Adds up the histograms of a group; `None` with a warning when their layouts cannot be
/// combined.
fn sum_histograms(ctx: &Ctx, g: &[Sample], pos: &str) -> Option<FloatHistogram> {
    let mut it = g.iter().filter_map(|s| s.h.as_ref());
    let mut acc = (**it.next()?).clone();
    for h in it {
        match acc.add(h) {
            Ok(c) => report_combined(ctx, c, "aggregation", pos),
            Err(_) => {
                ctx.warn(format!(
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}{pos}",
                    g[0].labels.name().unwrap_or("")
                ));
                return None;
            }
        }
    }
    Some(acc)
}

fn variance_agg(g: &[Sample]) -> f64 {
    let (mut count, mut mean, mut value) = (0.0, 0.0, 0.0);
    for s in g {
        count += 1.0;
        if count == 1.0 {
            mean = s.f;
            value = 0.0;
            if s.f.is_infinite() || s.f.is_nan() {
                value = f64::NAN;
            }
            continue;
        }
        let delta = s.f - mean;
        mean += delta / count;
        value += delta * (s.f - mean);
    }
    value / count
}

pub(crate) fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok() && !s.contains('\u{FFFD}')
}
