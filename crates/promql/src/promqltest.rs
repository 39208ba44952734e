//! Conformance runner for Prometheus's PromQL `.test` scripting format
//! (`promql/promqltest` in the Prometheus repository).
//!
//! Each `eval` command counts as one case: passed, failed, or skipped. Cases are skipped
//! only when they use experimental features (functions the parser marks experimental,
//! `limitk`/`limit_ratio`, fill modifiers, duration expressions, `info()`); a skipped
//! case never counts as passed. Native histograms (`{{...}}` in series and expected
//! results, `load_with_nhcb`) are loaded and compared as Prometheus's harness does:
//! after dropping empty buckets, floats within 1e-6, the counter-reset hint only when
//! the expectation states one.

use std::io::Write;
use std::path::Path;

use promql_parser::parser::token::{T_LIMITK, T_LIMIT_RATIO};
use promql_parser::parser::Expr;

use crate::eval::{parse, Engine, Error, QueryResult};
use crate::functions::almost_equal;
use crate::labels::{Labels, METRIC_NAME};
use crate::notation::{parse_slots, Slot};
// The notation moved to its own module; these stay reachable here for existing callers.
use crate::histogram::{FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
pub use crate::notation::{parse_duration_ms, parse_number, parse_series_values};
use crate::storage::{stale_nan, MemStorage};
use crate::value::Value;

/// Result of one file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    /// File name as given.
    pub name: String,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases skipped (experimental features or native histograms).
    pub skipped: usize,
    /// One message per failed case (line number and reason).
    pub failures: Vec<String>,
    /// One message per skipped case.
    pub skips: Vec<String>,
}

/// Totals over several files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Passed cases.
    pub passed: usize,
    /// Failed cases.
    pub failed: usize,
    /// Skipped cases.
    pub skipped: usize,
}

/// Runs every file, printing a line per file (and each failure) and finally
/// `N passed, M failed, K skipped`. A file that cannot be read counts as one failure.
pub fn run_files<P: AsRef<Path>>(paths: &[P], out: &mut dyn Write, verbose: bool) -> Totals {
    let mut tot = Totals::default();
    for p in paths {
        let p = p.as_ref();
        let rep = match std::fs::read_to_string(p) {
            Ok(text) => run_text(&p.display().to_string(), &text),
            Err(e) => FileReport {
                name: p.display().to_string(),
                failed: 1,
                failures: vec![format!("cannot read file: {e}")],
                ..FileReport::default()
            },
        };
        let status = if rep.failed == 0 { "ok" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{status} {}: {} passed, {} failed, {} skipped",
            rep.name, rep.passed, rep.failed, rep.skipped
        );
        for f in &rep.failures {
            let _ = writeln!(out, "  FAIL {f}");
        }
        if verbose {
            for s in &rep.skips {
                let _ = writeln!(out, "  SKIP {s}");
            }
        }
        tot.passed += rep.passed;
        tot.failed += rep.failed;
        tot.skipped += rep.skipped;
    }
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} skipped",
        tot.passed, tot.failed, tot.skipped
    );
    tot
}

fn unquote(s: &str) -> Result<(String, usize), String> {
    // s starts with a quote; returns (value, bytes consumed).
    let q = s.chars().next().ok_or("empty string")?;
    let mut out = String::new();
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        if c == q {
            return Ok((out, i + 1));
        }
        if c == '\\' && q != '`' {
            let (_, e) = it.next().ok_or("unterminated escape")?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut h = String::new();
                    for _ in 0..n {
                        h.push(it.next().ok_or("short escape")?.1);
                    }
                    let v = u32::from_str_radix(&h, 16).map_err(|_| "bad escape")?;
                    out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                }
                d if d.is_digit(8) => {
                    let mut h = String::from(d);
                    for _ in 0..2 {
                        h.push(it.next().ok_or("short escape")?.1);
                    }
                    let v = u32::from_str_radix(&h, 8).map_err(|_| "bad escape")?;
                    out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                }
                other => return Err(format!("unknown escape \\{other}")),
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated string".into())
}

/// Parses `name{a="b"}` (or `{...}`) at the start of `s`; returns labels and the rest.
fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let mut labels = Labels::default();
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    if i > 0 {
        labels.set(METRIC_NAME, &s[..i]);
    }
    let mut rest = &s[i..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
                continue;
            }
            // label name (identifier or quoted)
            let (name, r) =
                if rest.starts_with('"') || rest.starts_with('\'') || rest.starts_with('`') {
                    let (v, n) = unquote(rest)?;
                    (v, &rest[n..])
                } else {
                    let n = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(rest.len());
                    if n == 0 {
                        return Err(format!(
                            "unexpected character in series description: {rest:?}"
                        ));
                    }
                    (rest[..n].to_string(), &rest[n..])
                };
            let r = r.trim_start();
            if let Some(r2) = r.strip_prefix('=') {
                let r2 = r2.trim_start();
                let (v, n) = unquote(r2)?;
                labels.set(&name, &v);
                rest = &r2[n..];
            } else {
                // A bare quoted string is the metric name.
                labels.set(METRIC_NAME, &name);
                rest = r;
            }
        }
    } else if i == 0 {
        return Err(format!("invalid series description: {s:?}"));
    }
    Ok((labels, rest))
}

#[derive(Debug, Default)]
struct Expect {
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    warn: Vec<Option<Matchers>>,
    info: Vec<Option<Matchers>>,
    no_warn: bool,
    no_info: bool,
    string: Option<String>,
    range: Option<(i64, i64, i64)>,
    scalar: Option<f64>,
    series: Vec<(Labels, Vec<Slot>)>,
}

#[derive(Debug)]
enum Matchers {
    Msg(String),
    Regex(regex::Regex),
}

impl Matchers {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matchers::Msg(m) => m == s,
            Matchers::Regex(r) => r.is_match(s),
        }
    }
}

fn parse_expect_arg(rest: &str) -> Result<Option<Matchers>, String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    if let Some(m) = rest.strip_prefix("msg:") {
        return Ok(Some(Matchers::Msg(trim_quotes(m.trim()))));
    }
    if let Some(m) = rest.strip_prefix("regex:") {
        let r =
            regex::Regex::new(&trim_quotes(m.trim())).map_err(|e| format!("invalid regex: {e}"))?;
        return Ok(Some(Matchers::Regex(r)));
    }
    Err(format!("invalid expect argument {rest:?}"))
}

fn trim_quotes(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        if let Ok((v, _)) = unquote(s) {
            return v;
        }
    }
    s.to_string()
}

fn uses_experimental(e: &Expr) -> Option<String> {
    match e {
        Expr::Call(c) => {
            if c.func.experimental {
                return Some(format!("experimental function {}", c.func.name));
            }
            c.args.args.iter().find_map(|a| uses_experimental(a))
        }
        Expr::Aggregate(a) => {
            let id = a.op.id();
            if id == T_LIMITK || id == T_LIMIT_RATIO {
                return Some("experimental aggregation limitk/limit_ratio".into());
            }
            uses_experimental(&a.expr)
                .or_else(|| a.param.as_ref().and_then(|p| uses_experimental(p)))
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Some("fill modifier".into());
                }
            }
            uses_experimental(&b.lhs).or_else(|| uses_experimental(&b.rhs))
        }
        Expr::Paren(p) => uses_experimental(&p.expr),
        Expr::Unary(u) => uses_experimental(&u.expr),
        Expr::Subquery(s) => uses_experimental(&s.expr),
        Expr::VectorSelector(vs) => selector_experimental(vs),
        Expr::MatrixSelector(m) => selector_experimental(&m.vs),
        Expr::Extension(_) => Some("extension".into()),
        _ => None,
    }
}

fn selector_experimental(vs: &promql_parser::parser::VectorSelector) -> Option<String> {
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == "__type__" || m.name == "__unit__")
        .map(|_| "__type__/__unit__ matchers".to_string())
}

fn text_experimental(q: &str) -> Option<String> {
    const MARKERS: [&str; 13] = [
        "anchored",
        "smoothed",
        "fill(",
        "fill_left",
        "fill_right",
        "__type__",
        "__unit__",
        "info(",
        "step()",
        "range()",
        " bitand ",
        " bitor ",
        " bitxor ",
    ];
    if let Some(m) = MARKERS.iter().find(|m| q.contains(*m)) {
        return Some(format!("experimental syntax {m}"));
    }
    if has_duration_expression(q) {
        return Some("experimental duration expression".into());
    }
    None
}

/// Whether a range, subquery step or offset is an arithmetic expression
/// (`[5m+1m]`, `offset (2*2)`), Prometheus's experimental duration expressions.
fn has_duration_expression(q: &str) -> bool {
    let b = q.as_bytes();
    let mut i = 0;
    let mut in_str: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(qc) = in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == qc {
                in_str = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' | b'`' => in_str = Some(c),
            b'[' => {
                let end = q[i..].find(']').map(|e| i + e).unwrap_or(b.len());
                let inner = &q[i + 1..end];
                if inner.contains("::") {
                    // Aligned subqueries (`[30s::20s]`).
                    return true;
                }
                for part in inner.split(':') {
                    let p = part.trim();
                    let body = p.strip_prefix('-').unwrap_or(p);
                    if body.contains(['+', '-', '*', '/', '%', '^', '(', ')']) {
                        return true;
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    let lower = q.to_ascii_lowercase();
    lower.match_indices("offset").any(|(pos, _)| {
        let rest = lower[pos + 6..].trim_start();
        let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
        rest.starts_with('(')
    })
}

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// Runs one test script held in memory.
pub fn run_text(name: &str, text: &str) -> FileReport {
    let mut rep = FileReport {
        name: name.to_string(),
        ..FileReport::default()
    };
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let engine = Engine::default();
    let mut storage = MemStorage::new();
    // Set once a load uses start timestamps (`series@st ...`) or `__type__`/`__unit__`
    // labels, experimental features; the evaluations up to the next `clear` are skipped.
    let mut start_timestamps = false;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let lineno = i + 1;
        if line.is_empty() {
            i += 1;
            continue;
        }
        // Collect the body.
        let mut j = i + 1;
        while j < lines.len() && !lines[j].is_empty() && !is_command(&lines[j]) {
            j += 1;
        }
        let body: Vec<&str> = lines[i + 1..j].iter().map(|s| s.as_str()).collect();
        if line == "clear" {
            storage = MemStorage::new();
            start_timestamps = false;
        } else if let Some(rest) = line.strip_prefix("load") {
            let (rest, is_nhcb) = match rest.strip_prefix("_with_nhcb") {
                Some(r) => (r, true),
                None => (rest, false),
            };
            // `load <step> [<start>]`
            let mut parts = rest.split_whitespace();
            let step = parts.next().and_then(parse_duration_ms);
            let start = match parts.next() {
                Some(s) => parse_duration_ms(s),
                None => Some(0),
            };
            match step.zip(start) {
                Some((step, start)) => {
                    let mut nhcb = Nhcb::default();
                    for (k, l) in body.iter().enumerate() {
                        if l.contains("__type__") || l.contains("__unit__") {
                            // Type and unit labels change query results only under the
                            // experimental type-and-unit-labels feature.
                            start_timestamps = true;
                        }
                        if series_uses_start_timestamp(l) {
                            start_timestamps = true;
                            continue;
                        }
                        let nh = if is_nhcb { Some(&mut nhcb) } else { None };
                        if let Err(e) = load_line(&storage, l, step, start, nh) {
                            rep.failed += 1;
                            rep.failures
                                .push(format!("{name}:{}: load: {e}", lineno + k + 1));
                        }
                    }
                    if let Err(e) = nhcb.load_into(&storage) {
                        rep.failed += 1;
                        rep.failures
                            .push(format!("{name}:{lineno}: load_with_nhcb: {e}"));
                    }
                }
                None => {
                    rep.failed += 1;
                    rep.failures.push(format!(
                        "{name}:{lineno}: invalid load step {:?}",
                        rest.trim()
                    ));
                }
            }
        } else if line.starts_with("eval") {
            let outcome = if start_timestamps {
                Outcome::Skip(
                    "experimental data (start timestamps or __type__/__unit__ labels) loaded"
                        .into(),
                )
            } else {
                run_eval(&engine, &storage, line, &body)
            };
            match outcome {
                Outcome::Pass => rep.passed += 1,
                Outcome::Fail(m) => {
                    rep.failed += 1;
                    rep.failures.push(format!("{name}:{lineno}: {line}: {m}"));
                }
                Outcome::Skip(m) => {
                    rep.skipped += 1;
                    rep.skips.push(format!("{name}:{lineno}: {m}"));
                }
            }
        } else {
            rep.failed += 1;
            rep.failures
                .push(format!("{name}:{lineno}: unknown command {line:?}"));
        }
        i = j;
    }
    rep
}

/// Whether a load line gives start timestamps (`name{...}@st values`).
fn series_uses_start_timestamp(l: &str) -> bool {
    match parse_series_desc(l) {
        Ok((_, rest)) => rest.starts_with("@st"),
        Err(_) => false,
    }
}

fn is_command(l: &str) -> bool {
    l == "clear"
        || l.starts_with("load ")
        || l.starts_with("load_with_nhcb ")
        || l.starts_with("eval ")
        || l.starts_with("eval_")
}

/// Classic histogram series of a `load_with_nhcb` command, collected per histogram
/// (labels without `le`, name without the suffix) and timestamp, to be converted into
/// native histograms with custom buckets once every line is read.
#[derive(Default)]
struct Nhcb {
    hists: std::collections::BTreeMap<Labels, std::collections::BTreeMap<i64, ClassicAt>>,
}

#[derive(Default)]
struct ClassicAt {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: Option<f64>,
}

impl Nhcb {
    fn load_into(&self, st: &MemStorage) -> Result<(), String> {
        for (labels, by_t) in &self.hists {
            for (&t, c) in by_t {
                let mut b = c.buckets.clone();
                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                let mut h = FloatHistogram {
                    schema: CUSTOM_BUCKETS_SCHEMA,
                    ..FloatHistogram::default()
                };
                let mut prev = 0.0;
                for (i, &(le, cum)) in b.iter().enumerate() {
                    if le != f64::INFINITY {
                        h.custom_values.push(le);
                    }
                    h.positive.push((i as i32, cum - prev));
                    prev = cum;
                }
                h.count = c.count.unwrap_or(prev);
                h.sum = c.sum.unwrap_or(0.0);
                h.validate().map_err(|e| format!("{labels}: {e}"))?;
                st.append_histogram(labels, t, h);
            }
        }
        Ok(())
    }
}

/// Loads one series line. With `nhcb` (`load_with_nhcb`), classic `_bucket`, `_count`
/// and `_sum` series are also collected for conversion into native histograms with
/// custom buckets, as Prometheus's harness does.
fn load_line(
    st: &MemStorage,
    l: &str,
    step: i64,
    start: i64,
    nhcb: Option<&mut Nhcb>,
) -> Result<(), String> {
    let (labels, rest) = parse_series_desc(l)?;
    let vals = parse_slots(rest).map_err(|e| e.to_string())?;
    let mut classic: Option<(&mut ClassicMap, Labels, ClassicPart)> = None;
    if let Some(n) = nhcb {
        let name = labels.name().unwrap_or("");
        let part = if let Some(base) = name.strip_suffix("_bucket") {
            labels
                .get("le")
                .and_then(parse_number)
                .filter(|le| !le.is_nan())
                .map(|le| (base, ClassicPart::Bucket(le)))
        } else if let Some(base) = name.strip_suffix("_count") {
            Some((base, ClassicPart::Count))
        } else {
            name.strip_suffix("_sum")
                .map(|base| (base, ClassicPart::Sum))
        };
        if let Some((base, part)) = part {
            let mut nl = labels.clone();
            nl.remove("le");
            nl.set(METRIC_NAME, base);
            classic = Some((&mut n.hists, nl, part));
        }
    }
    for (k, v) in vals.into_iter().enumerate() {
        let t = start + k as i64 * step;
        if let (Some((map, nl, part)), Slot::Val(f)) = (classic.as_mut(), &v) {
            let at = map.entry(nl.clone()).or_default().entry(t).or_default();
            match part {
                ClassicPart::Bucket(le) => at.buckets.push((*le, *f)),
                ClassicPart::Count => at.count = Some(*f),
                ClassicPart::Sum => at.sum = Some(*f),
            }
        }
        match v {
            Slot::Gap => {}
            Slot::Val(f) => st.append(&labels, t, f),
            Slot::Stale => st.append(&labels, t, stale_nan()),
            Slot::Hist(h, _) => st.append_histogram(&labels, t, *h),
        }
    }
    Ok(())
}

type ClassicMap = std::collections::BTreeMap<Labels, std::collections::BTreeMap<i64, ClassicAt>>;

enum ClassicPart {
    Bucket(f64),
    Count,
    Sum,
}

/// Compares an expected histogram with a result as Prometheus's harness does: empty
/// buckets dropped, floats within 1e-6 (relative), the hint only if it was stated.
fn histogram_matches(want: &FloatHistogram, got: &FloatHistogram, hint_set: bool) -> bool {
    let (w, g) = (want.clone().compact(), got.clone().compact());
    let eq = |a: f64, b: f64| almost_equal(a, b, 1e-6);
    let buckets_eq = |a: &[(i32, f64)], b: &[(i32, f64)]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && eq(x.1, y.1))
    };
    w.schema == g.schema
        && eq(w.count, g.count)
        && eq(w.sum, g.sum)
        && (!w.uses_custom_buckets()
            || crate::histogram::custom_bounds_match(&w.custom_values, &g.custom_values))
        && w.zero_threshold == g.zero_threshold
        && eq(w.zero_count, g.zero_count)
        && buckets_eq(&w.positive, &g.positive)
        && buckets_eq(&w.negative, &g.negative)
        && (!hint_set || w.hint == g.hint)
}

struct EvalCmd<'a> {
    kind: &'a str,
    range: Option<(i64, i64, i64)>,
    at: i64,
    query: &'a str,
}

fn parse_eval_line(line: &str) -> Result<EvalCmd<'_>, String> {
    let (cmd, rest) = line
        .split_once(char::is_whitespace)
        .ok_or("incomplete eval command")?;
    let kind = cmd.strip_prefix("eval").unwrap_or("");
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start();
        let r = r.strip_prefix("at").ok_or("expected `at`")?.trim_start();
        let (t, q) = r.split_once(char::is_whitespace).ok_or("missing query")?;
        let at = parse_duration_ms(t).ok_or_else(|| format!("invalid time {t:?}"))?;
        Ok(EvalCmd {
            kind,
            range: None,
            at,
            query: q.trim(),
        })
    } else if let Some(r) = rest.strip_prefix("range") {
        let r = r
            .trim_start()
            .strip_prefix("from")
            .ok_or("expected `from`")?
            .trim_start();
        let (from, r) = r.split_once(char::is_whitespace).ok_or("missing `to`")?;
        let r = r
            .trim_start()
            .strip_prefix("to")
            .ok_or("expected `to`")?
            .trim_start();
        let (to, r) = r.split_once(char::is_whitespace).ok_or("missing `step`")?;
        let r = r
            .trim_start()
            .strip_prefix("step")
            .ok_or("expected `step`")?
            .trim_start();
        let (step, q) = r.split_once(char::is_whitespace).ok_or("missing query")?;
        let from = parse_duration_ms(from).ok_or_else(|| format!("invalid time {from:?}"))?;
        let to = parse_duration_ms(to).ok_or_else(|| format!("invalid time {to:?}"))?;
        let step = parse_duration_ms(step).ok_or_else(|| format!("invalid step {step:?}"))?;
        Ok(EvalCmd {
            kind,
            range: Some((from, to, step)),
            at: 0,
            query: q.trim(),
        })
    } else {
        Err(format!("invalid eval command {line:?}"))
    }
}

fn parse_expectations(cmd: &EvalCmd, body: &[&str]) -> Result<Expect, String> {
    let mut ex = Expect::default();
    match cmd.kind {
        "_fail" => ex.fail = true,
        "_ordered" => ex.ordered = true,
        "_warn" => ex.warn.push(None),
        "_info" => ex.info.push(None),
        "" => {}
        other => return Err(format!("unknown eval variant eval{other}")),
    }
    for l in body {
        if let Some(r) = l.strip_prefix("expected_fail_message") {
            ex.fail_msg = Some(r.trim().to_string());
            continue;
        }
        if let Some(r) = l.strip_prefix("expected_fail_regexp") {
            ex.fail_regex = Some(r.trim().to_string());
            continue;
        }
        if let Some(r) = l.strip_prefix("expect ") {
            let r = r.trim_start();
            let (kw, arg) = r.split_once(char::is_whitespace).unwrap_or((r, ""));
            match kw {
                "fail" => {
                    ex.fail = true;
                    match parse_expect_arg(arg)? {
                        Some(Matchers::Msg(m)) => ex.fail_msg = Some(m),
                        Some(Matchers::Regex(re)) => ex.fail_regex = Some(re.as_str().to_string()),
                        None => {}
                    }
                }
                "warn" => ex.warn.push(parse_expect_arg(arg)?),
                "info" => ex.info.push(parse_expect_arg(arg)?),
                "no_warn" => ex.no_warn = true,
                "no_info" => ex.no_info = true,
                "ordered" => ex.ordered = true,
                "string" => {
                    let a = arg.trim();
                    let (v, _) = unquote(a)?;
                    ex.string = Some(v);
                }
                "range" => {
                    let a = arg
                        .trim()
                        .strip_prefix("vector")
                        .ok_or("expected `range vector`")?
                        .trim();
                    let a = a
                        .strip_prefix("from")
                        .ok_or("expected `from`")?
                        .trim_start();
                    let (from, a) = a.split_once(char::is_whitespace).ok_or("missing `to`")?;
                    let a = a
                        .trim_start()
                        .strip_prefix("to")
                        .ok_or("expected `to`")?
                        .trim_start();
                    let (to, a) = a.split_once(char::is_whitespace).ok_or("missing `step`")?;
                    let step = a
                        .trim_start()
                        .strip_prefix("step")
                        .ok_or("expected `step`")?
                        .trim();
                    ex.range = Some((
                        parse_duration_ms(from).ok_or("invalid from")?,
                        parse_duration_ms(to).ok_or("invalid to")?,
                        parse_duration_ms(step).ok_or("invalid step")?,
                    ));
                }
                other => return Err(format!("unknown expectation {other:?}")),
            }
            continue;
        }
        if let Some(f) = parse_number(l) {
            ex.scalar = Some(f);
            continue;
        }
        let (labels, rest) = parse_series_desc(l)?;
        ex.series
            .push((labels, parse_slots(rest).map_err(|e| e.to_string())?));
    }
    Ok(ex)
}

fn check_annotations(
    kind: &str,
    got: &[String],
    want: &[Option<Matchers>],
    none: bool,
) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("unexpected {kind} annotations: {got:?}"));
    }
    if want.is_empty() {
        return Ok(());
    }
    for w in want {
        let ok = match w {
            None => !got.is_empty(),
            Some(m) => got.iter().any(|g| m.matches(g)),
        };
        if !ok {
            return Err(format!(
                "expected {kind} annotation {w:?} not raised; got {got:?}"
            ));
        }
    }
    let constrained: Vec<&Matchers> = want.iter().flatten().collect();
    if constrained.len() == want.len() {
        for g in got {
            if !constrained.iter().any(|m| m.matches(g)) {
                return Err(format!("unexpected {kind} annotation {g:?}"));
            }
        }
    }
    Ok(())
}

fn fmt_f(f: f64) -> String {
    crate::value::format_go_float(f)
}

fn fmt_sample(s: &crate::value::Sample) -> String {
    match &s.h {
        Some(h) => h.to_string(),
        None => fmt_f(s.f),
    }
}

fn run_eval(engine: &Engine, st: &MemStorage, line: &str, body: &[&str]) -> Outcome {
    let cmd = match parse_eval_line(line) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(e),
    };
    let ex = match parse_expectations(&cmd, body) {
        Ok(e) => e,
        Err(e) => return Outcome::Fail(format!("invalid expectations: {e}")),
    };
    let expr = match parse(cmd.query) {
        Ok(e) => e,
        Err(e) => {
            if let Some(why) = text_experimental(cmd.query) {
                return Outcome::Skip(why);
            }
            if ex.fail {
                return Outcome::Pass;
            }
            return Outcome::Fail(format!("{e}"));
        }
    };
    if let Some(why) = uses_experimental(&expr) {
        return Outcome::Skip(why);
    }
    let res = match cmd.range {
        None => engine.instant(st, cmd.query, &expr, cmd.at),
        Some((from, to, step)) => engine.range(st, cmd.query, &expr, from, to, step),
    };
    let res = match res {
        Ok(r) => r,
        Err(Error::Unsupported(why)) => return Outcome::Skip(why),
        Err(e) => {
            if ex.fail {
                let msg = match &e {
                    Error::Eval(m) | Error::Parse(m) | Error::Unsupported(m) => m.clone(),
                    Error::Timeout | Error::TooManySamples => e.to_string(),
                };
                if let Some(m) = &ex.fail_msg {
                    if !msg.contains(m.as_str()) {
                        return Outcome::Fail(format!("expected error {m:?}, got {msg:?}"));
                    }
                }
                if let Some(r) = &ex.fail_regex {
                    match regex::Regex::new(r) {
                        Ok(re) if re.is_match(&msg) => {}
                        _ => return Outcome::Fail(format!("error {msg:?} does not match {r:?}")),
                    }
                }
                return Outcome::Pass;
            }
            return Outcome::Fail(format!("query failed: {e}"));
        }
    };
    if ex.fail {
        return Outcome::Fail("expected the query to fail, it succeeded".into());
    }
    if let Err(e) = check_annotations("warn", &res.warnings, &ex.warn, ex.no_warn) {
        return Outcome::Fail(e);
    }
    if let Err(e) = check_annotations("info", &res.infos, &ex.info, ex.no_info) {
        return Outcome::Fail(e);
    }
    match compare(&cmd, &ex, &res) {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

fn compare(cmd: &EvalCmd, ex: &Expect, res: &QueryResult) -> Result<(), String> {
    match (&res.value, cmd.range) {
        (Value::String(s), None) => match &ex.string {
            Some(w) if w == s => Ok(()),
            Some(w) => Err(format!("expected string {w:?}, got {s:?}")),
            None => Err(format!("unexpected string result {s:?}")),
        },
        (Value::Scalar(f), None) => match ex.scalar {
            Some(w) if ex.series.is_empty() => {
                if almost_equal(w, *f, 1e-6) {
                    Ok(())
                } else {
                    Err(format!("expected scalar {}, got {}", fmt_f(w), fmt_f(*f)))
                }
            }
            _ => Err(format!("unexpected scalar result {}", fmt_f(*f))),
        },
        (Value::Vector(v), None) => {
            if ex.range.is_some() {
                return Err("expected a range vector, got an instant vector".into());
            }
            if ex.scalar.is_some() {
                return Err("expected a scalar, got an instant vector".into());
            }
            for (pos, s) in v.iter().enumerate() {
                let Some((idx, (_, vals))) = ex
                    .series
                    .iter()
                    .enumerate()
                    .find(|(_, (l, _))| *l == s.labels)
                else {
                    return Err(format!(
                        "unexpected metric {} in result, with value {}",
                        s.labels,
                        fmt_sample(s)
                    ));
                };
                if ex.ordered && idx != pos {
                    return Err(format!(
                        "expected metric {} with value {} at position {}, got it at {}",
                        s.labels,
                        fmt_f(s.f),
                        idx,
                        pos
                    ));
                }
                let want = match (vals.as_slice(), &s.h) {
                    ([Slot::Val(w)], None) => *w,
                    ([Slot::Hist(w, hint_set)], Some(h)) => {
                        if !histogram_matches(w, h, *hint_set) {
                            return Err(format!("expected {w} for {} but got {h}", s.labels));
                        }
                        continue;
                    }
                    ([Slot::Val(w)], Some(h)) => {
                        return Err(format!(
                            "expected float value {} for {} but got histogram {h}",
                            fmt_f(*w),
                            s.labels
                        ))
                    }
                    ([Slot::Hist(w, _)], None) => {
                        return Err(format!(
                            "expected histogram {w} for {} but got float value {}",
                            s.labels,
                            fmt_f(s.f)
                        ))
                    }
                    (other, _) => {
                        return Err(format!(
                            "expected single value for {}, got {other:?}",
                            s.labels
                        ))
                    }
                };
                if !almost_equal(want, s.f, 1e-6) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        fmt_f(want),
                        s.labels,
                        fmt_f(s.f)
                    ));
                }
            }
            if v.len() != ex.series.len() {
                let missing: Vec<String> = ex
                    .series
                    .iter()
                    .filter(|(l, _)| !v.iter().any(|s| &s.labels == l))
                    .map(|(l, _)| l.to_string())
                    .collect();
                return Err(format!(
                    "expected {} samples, got {}; missing {missing:?}",
                    ex.series.len(),
                    v.len()
                ));
            }
            Ok(())
        }
        (Value::Matrix(m), r) => {
            let (from, to, step) = match (r, ex.range) {
                (Some(r), _) => r,
                (None, Some(r)) => r,
                (None, None) => {
                    return Err(
                        "instant query returned a range vector; use `expect range vector`".into(),
                    )
                }
            };
            if ex.ordered && r.is_some() {
                return Err("expect ordered is not allowed for range queries".into());
            }
            compare_matrix(m, &ex.series, from, to, step)
        }
        (v, _) => Err(format!("unexpected result type {}", v.type_name())),
    }
}

fn compare_matrix(
    m: &[crate::value::RangeSeries],
    want: &[(Labels, Vec<Slot>)],
    from: i64,
    to: i64,
    step: i64,
) -> Result<(), String> {
    type Hists<'a> = Vec<(i64, &'a FloatHistogram, bool)>;
    type Expected<'a> = Vec<(Labels, Vec<(i64, f64)>, Hists<'a>)>;
    let mut expected: Expected = Vec::new();
    for (l, slots) in want {
        let mut pts = Vec::new();
        let mut hs = Vec::new();
        for (k, s) in slots.iter().enumerate() {
            let t = from + k as i64 * step;
            if t > to {
                return Err(format!(
                    "expected {} points for {l}, but query time range cannot return this many points",
                    slots.len()
                ));
            }
            match s {
                Slot::Val(f) => pts.push((t, *f)),
                Slot::Stale => pts.push((t, f64::NAN)),
                Slot::Hist(h, hint_set) => hs.push((t, &**h, *hint_set)),
                Slot::Gap => {}
            }
        }
        expected.push((l.clone(), pts, hs));
    }
    let fmt = |p: &[(i64, f64)], h: &[(i64, String)]| {
        p.iter()
            .map(|(t, v)| format!("{} @[{}]", fmt_f(*v), t))
            .chain(h.iter().map(|(t, v)| format!("{v} @[{t}]")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for s in m {
        let Some((_, pts, hs)) = expected.iter().find(|(l, _, _)| *l == s.labels) else {
            return Err(format!("unexpected metric {} in result", s.labels));
        };
        let ok = pts.len() == s.points.len()
            && pts
                .iter()
                .zip(&s.points)
                .all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1, 1e-6))
            && hs.len() == s.hists.len()
            && hs
                .iter()
                .zip(&s.hists)
                .all(|(a, b)| a.0 == b.0 && histogram_matches(a.1, &b.1, a.2));
        if !ok {
            let want_h: Vec<(i64, String)> =
                hs.iter().map(|(t, h, _)| (*t, h.to_string())).collect();
            let got_h: Vec<(i64, String)> =
                s.hists.iter().map(|(t, h)| (*t, h.to_string())).collect();
            return Err(format!(
                "expected for {}: [{}], got [{}]",
                s.labels,
                fmt(pts, &want_h),
                fmt(&s.points, &got_h)
            ));
        }
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|(l, pts, hs)| {
            (!pts.is_empty() || !hs.is_empty()) && !m.iter().any(|s| &s.labels == l)
        })
        .map(|(l, _, _)| l.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!("expected series missing from result: {missing:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_script_passes_and_a_wrong_expectation_fails() {
        let script = "load 1m\n  m{a=\"x\"} 0+1x10\n\neval instant at 5m m\n  m{a=\"x\"} 5\n\neval instant at 5m m\n  m{a=\"x\"} 6\n";
        let r = run_text("t", script);
        assert_eq!(
            (r.passed, r.failed, r.skipped),
            (1, 1, 0),
            "{:?}",
            r.failures
        );
    }
}
