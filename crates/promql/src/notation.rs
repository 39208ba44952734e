//! The notation Prometheus's test formats share: durations (`1h30m`, `10s53ms`, plain
//! seconds), numbers as Go parses them, and series in expanding notation (`1+2x3 _ stale`).
//!
//! Used by the `.test` conformance runner ([`crate::promqltest`]), promtool-style rule unit
//! tests ([`crate::rules::unittest`]) and the rule templates' `parseDuration`
//! ([`crate::rules::template`]), so that runtime code does not depend on the test harness.
//!
//! The duration parser is our own rather than `promql_parser::util::duration::parse_duration`:
//! that one refuses `0`, has no negative durations (the `.test` format and `parseDuration`
//! accept `-1m`) and panics on a negative number of seconds.

/// Why a value in series notation is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// `_x<n>` with a bad `n`.
    #[error("invalid repetition in {0:?}")]
    Repetition(String),
    /// `<start>+<inc>x<n>` with a bad `n`.
    #[error("invalid count in {0:?}")]
    Count(String),
    /// A bad start or increment.
    #[error("invalid number in {0:?}")]
    Number(String),
    /// A token that is no value.
    #[error("invalid value {0:?}")]
    Value(String),
    /// A native histogram where only floats are supported.
    #[error("native histogram values are not supported")]
    Histogram,
    /// A native histogram literal that does not parse.
    #[error("invalid native histogram {0:?}: {1}")]
    BadHistogram(String, String),
}

/// `pub type Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

use crate::histogram::{parse_notation, FloatHistogram};

/// Parses a duration in Prometheus notation (`1h30m`, `10s53ms`, `1d`) or plain seconds;
/// returns milliseconds. A leading `-` negates.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration_ms(rest).map(|v| -v);
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some((f * 1000.0).round() as i64);
    }
    let mut total: i64 = 0;
    let b = s.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[us..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

/// Parses a float as Go's `strconv.ParseFloat` does for test files.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()? as f64
    } else {
        if body.is_empty()
            || !body
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
        {
            return None;
        }
        body.replace('_', "").parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// One value slot of a series: a gap, a value, a staleness marker, or a native histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// `_`: no sample at this step.
    Gap,
    /// A float sample.
    Val(f64),
    /// `stale`: a staleness marker.
    Stale,
    /// `{{...}}`: a native histogram sample, and whether its counter-reset hint was given
    /// explicitly (results are compared on the hint only then).
    Hist(Box<FloatHistogram>, bool),
}

/// Parses a series in expanding notation (`1+2x3 _ stale`) into per-step values:
/// `None` for a gap, `Some(None)` for a staleness marker, `Some(Some(v))` for a value.
pub fn parse_series_values(s: &str) -> Result<Vec<Option<Option<f64>>>> {
    parse_slots(s)?
        .into_iter()
        .map(|v| match v {
            Slot::Gap => Ok(None),
            Slot::Stale => Ok(Some(None)),
            Slot::Val(f) => Ok(Some(Some(f))),
            Slot::Hist(..) => Err(Error::Histogram),
        })
        .collect()
}

/// Parses a series in expanding notation into its slots, native histograms included.
pub fn parse_slots(s: &str) -> Result<Vec<Slot>> {
    // Tokenise, keeping `{{ ... }}` histogram literals (with their suffix) together.
    let mut toks: Vec<String> = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut tok = String::new();
        let mut depth = 0;
        while i < chars.len() && (depth > 0 || !chars[i].is_whitespace()) {
            if chars[i] == '{' {
                depth += 1;
            } else if chars[i] == '}' {
                depth -= 1;
            }
            tok.push(chars[i]);
            i += 1;
        }
        toks.push(tok);
    }
    let mut out = Vec::new();
    for tok in toks {
        if tok.starts_with("{{") {
            out.extend(parse_histogram_token(&tok)?);
            continue;
        }
        if tok == "_" {
            out.push(Slot::Gap);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| Error::Repetition(tok.clone()))?;
            out.extend(std::iter::repeat_n(Slot::Gap, n));
            continue;
        }
        if tok == "stale" {
            out.push(Slot::Stale);
            continue;
        }
        match tok.rfind('x') {
            Some(xp) if tok[xp + 1..].chars().all(|c| c.is_ascii_digit()) && xp + 1 < tok.len() => {
                let n: usize = tok[xp + 1..]
                    .parse()
                    .map_err(|_| Error::Count(tok.clone()))?;
                let body = &tok[..xp];
                // Find the operator separating start and increment.
                let bb = body.as_bytes();
                let mut op_pos = None;
                for j in 1..bb.len() {
                    if (bb[j] == b'+' || bb[j] == b'-') && !matches!(bb[j - 1], b'e' | b'E') {
                        op_pos = Some(j);
                        break;
                    }
                }
                let (start, inc) = match op_pos {
                    Some(j) => {
                        let a =
                            parse_number(&body[..j]).ok_or_else(|| Error::Number(tok.clone()))?;
                        let b = parse_number(&body[j + 1..])
                            .ok_or_else(|| Error::Number(tok.clone()))?;
                        (a, if bb[j] == b'-' { -b } else { b })
                    }
                    None => (
                        parse_number(body).ok_or_else(|| Error::Number(tok.clone()))?,
                        0.0,
                    ),
                };
                let mut cur = start;
                for k in 0..=n {
                    if k > 0 {
                        cur += inc;
                    }
                    out.push(Slot::Val(cur));
                }
            }
            _ => out.push(Slot::Val(
                parse_number(&tok).ok_or_else(|| Error::Value(tok.clone()))?,
            )),
        }
    }
    Ok(out)
}

/// Expands one histogram token: `{{h}}`, `{{h}}xN` (N+1 copies), `{{a}}+{{b}}xN` or
/// `{{a}}-{{b}}xN` (a, a±b, ..., a±N·b).
fn parse_histogram_token(tok: &str) -> Result<Vec<Slot>> {
    let bad = |why: String| Error::BadHistogram(tok.to_string(), why);
    let body_end = tok
        .find("}}")
        .ok_or_else(|| bad("missing `}}`".to_string()))?;
    let (first, hint_set) = parse_notation(&tok[2..body_end]).map_err(|e| bad(e.to_string()))?;
    let rest = &tok[body_end + 2..];
    if rest.is_empty() {
        return Ok(vec![Slot::Hist(Box::new(first), hint_set)]);
    }
    let count = |s: &str| -> Result<usize> {
        s.strip_prefix('x')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad(format!("expected `x<count>`, got {s:?}")))
    };
    if rest.starts_with('x') {
        let n = count(rest)?;
        return Ok(vec![Slot::Hist(Box::new(first), hint_set); n + 1]);
    }
    let sign = match rest.as_bytes()[0] {
        b'+' => 1.0,
        b'-' => -1.0,
        _ => return Err(bad(format!("unexpected {rest:?}"))),
    };
    let inc = rest[1..]
        .strip_prefix("{{")
        .ok_or_else(|| bad("expected `{{` after the operator".to_string()))?;
    let inc_end = inc
        .find("}}")
        .ok_or_else(|| bad("missing `}}`".to_string()))?;
    let (inc_h, _) = parse_notation(&inc[..inc_end]).map_err(|e| bad(e.to_string()))?;
    let n = count(&inc[inc_end + 2..])?;
    let mut out = Vec::with_capacity(n + 1);
    let mut cur = first;
    for k in 0..=n {
        if k > 0 {
            let r = if sign > 0.0 {
                cur.add(&inc_h)
            } else {
                cur.sub(&inc_h)
            };
            r.map_err(|e| bad(e.to_string()))?;
        }
        out.push(Slot::Hist(Box::new(cur.clone()), hint_set));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        let v = parse_slots("1+2x2 _ stale -1-1x1 3x1 _x2").unwrap();
        assert_eq!(
            v,
            vec![
                Slot::Val(1.0),
                Slot::Val(3.0),
                Slot::Val(5.0),
                Slot::Gap,
                Slot::Stale,
                Slot::Val(-1.0),
                Slot::Val(-2.0),
                Slot::Val(3.0),
                Slot::Val(3.0),
                Slot::Gap,
                Slot::Gap
            ]
        );
    }

    #[test]
    fn histogram_expansion() {
        let v = parse_slots(
            "{{schema:0 sum:1 count:1}}+{{sum:2 count:2 buckets:[1]}}x2 {{count:3}}x1 _",
        )
        .unwrap();
        assert_eq!(v.len(), 6);
        let Slot::Hist(h, false) = &v[2] else {
            panic!("{v:?}")
        };
        assert_eq!(
            (h.sum, h.count, h.positive.clone()),
            (5.0, 5.0, vec![(0, 2.0)])
        );
        assert!(matches!(&v[4], Slot::Hist(h, false) if h.count == 3.0));
        assert_eq!(v[5], Slot::Gap);
        assert!(parse_slots("{{schema:0 foo:1}}")
            .unwrap_err()
            .to_string()
            .contains("unknown histogram field \"foo\""));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10s53ms"), Some(10_053));
        assert_eq!(parse_duration_ms("1h5m"), Some(3_900_000));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("-1m"), Some(-60_000));
    }

    #[test]
    fn errors_name_the_token() {
        assert_eq!(
            parse_slots("1 2xz").unwrap_err().to_string(),
            "invalid value \"2xz\""
        );
        assert_eq!(
            parse_series_values("{{schema:0 sum:1}}").unwrap_err(),
            Error::Histogram
        );
        assert_eq!(parse_duration_ms("5parsecs"), None);
    }
}
