//! The evaluator: walks a parsed expression against a [`Storage`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp;
use promql_parser::parser::token::*;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, LabelModifier, Offset, VectorMatchCardinality,
    VectorSelector,
};

use crate::histogram::FloatHistogram;
use crate::labels::{Labels, MatchKind, Matcher, METRIC_NAME};
use crate::storage::{is_histogram_placeholder, is_stale, Storage};
use crate::value::{RangeSeries, Sample, Value};

/// Evaluation errors.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The query text does not parse.
    #[error("parse error: {0}")]
    Parse(String),
    /// The query failed during evaluation.
    #[error("{0}")]
    Eval(String),
    /// The query uses a feature this engine does not evaluate (experimental or native
    /// histogram).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The deadline of [`QueryLimits`] passed (Prometheus's wording).
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The query would hold more samples than [`QueryLimits::max_samples`] (Prometheus's
    /// wording).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
}

/// Bounds on one query's work: a deadline and the most samples it may hold at once (the
/// result so far plus what the current evaluation step has loaded), as Prometheus's
/// `--query.timeout` and `--query.max-samples`.
#[derive(Clone, Debug, Default)]
pub struct QueryLimits {
    /// Evaluation stops with [`Error::Timeout`] once this instant has passed.
    pub deadline: Option<std::time::Instant>,
    /// Evaluation stops with [`Error::TooManySamples`] above this many samples (0 = none).
    pub max_samples: usize,
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Eval(msg.into()))
}

/// The outcome of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warning annotations (`PromQL warning: ...`).
    pub warnings: Vec<String>,
    /// Info annotations (`PromQL info: ...`).
    pub infos: Vec<String>,
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct Engine {
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_ms: i64,
    /// Subquery step when none is given (the default evaluation interval, 1m).
    pub default_step_ms: i64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            lookback_ms: 5 * 60 * 1000,
            default_step_ms: 60 * 1000,
        }
    }
}

/// Parses a query.
pub fn parse(q: &str) -> Result<Expr> {
    promql_parser::parser::parse(q).map_err(Error::Parse)
}

impl Engine {
    /// Evaluates `expr` at time `t` (ms).
    pub fn instant(
        &self,
        st: &dyn Storage,
        query: &str,
        expr: &Expr,
        t: i64,
    ) -> Result<QueryResult> {
        self.instant_limited(st, query, expr, t, &QueryLimits::default())
    }

    /// [`Engine::instant`] bounded by `limits`.
    pub fn instant_limited(
        &self,
        st: &dyn Storage,
        query: &str,
        expr: &Expr,
        t: i64,
        limits: &QueryLimits,
    ) -> Result<QueryResult> {
        let mut ctx = Ctx::new(self, st, query, t, t, self.default_step_ms, false);
        ctx.limits = limits.clone();
        let v = ctx.eval(expr, t)?;
        let value = match v {
            Value::Vector(vs) => Value::Vector(finish_vector(vs)?),
            Value::Matrix(m) => Value::Matrix(finish_matrix(m)?),
            other => other,
        };
        Ok(ctx.result(value))
    }

    /// Evaluates `expr` from `start` to `end` every `step` (ms); returns a matrix.
    pub fn range(
        &self,
        st: &dyn Storage,
        query: &str,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult> {
        self.range_limited(st, query, expr, start, end, step, &QueryLimits::default())
    }

    /// [`Engine::range`] bounded by `limits`; the points of the result count against
    /// [`QueryLimits::max_samples`] as they accumulate.
    #[allow(clippy::too_many_arguments)]
    pub fn range_limited(
        &self,
        st: &dyn Storage,
        query: &str,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        limits: &QueryLimits,
    ) -> Result<QueryResult> {
        if step <= 0 {
            return err("zero or negative query resolution step widths are not accepted");
        }
        let mut ctx = Ctx::new(self, st, query, start, end, step, true);
        ctx.limits = limits.clone();
        type Points = (Vec<(i64, f64)>, Vec<(i64, Arc<FloatHistogram>)>);
        let mut out: HashMap<Labels, Points> = HashMap::new();
        let mut t = start;
        while t <= end {
            ctx.step_samples.set(0);
            let v = ctx.eval(expr, t)?;
            let points = match &v {
                Value::Vector(vs) => vs.len(),
                _ => 1,
            };
            ctx.held.set(ctx.held.get() + points);
            ctx.check_samples(0)?;
            match v {
                Value::Scalar(f) => out.entry(Labels::default()).or_default().0.push((t, f)),
                Value::Vector(vs) => {
                    for s in finish_vector(vs)? {
                        let e = out.entry(s.labels).or_default();
                        match s.h {
                            Some(h) => e.1.push((t, h)),
                            None => e.0.push((t, s.f)),
                        }
                    }
                }
                Value::Matrix(_) => {
                    return err("invalid expression type \"range vector\" for range query, must be Scalar or instant Vector")
                }
                Value::String(_) => {
                    return err("invalid expression type \"string\" for range query, must be Scalar or instant Vector")
                }
            }
            t += step;
        }
        let mut m: Vec<RangeSeries> = out
            .into_iter()
            .map(|(labels, (points, hists))| RangeSeries {
                labels,
                points,
                hists,
                drop_name: false,
            })
            .collect();
        m.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(ctx.result(Value::Matrix(m)))
    }
}

fn finish_vector(vs: Vec<Sample>) -> Result<Vec<Sample>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(vs.len());
    for mut s in vs {
        if s.drop_name {
            s.labels.remove(METRIC_NAME);
            s.drop_name = false;
        }
        if !seen.insert(s.labels.clone()) {
            return err("vector cannot contain metrics with the same labelset");
        }
        out.push(s);
    }
    Ok(out)
}

fn finish_matrix(m: Vec<RangeSeries>) -> Result<Vec<RangeSeries>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(m.len());
    for mut s in m {
        if s.drop_name {
            s.labels.remove(METRIC_NAME);
            s.drop_name = false;
        }
        if !seen.insert(s.labels.clone()) {
            return err("vector cannot contain metrics with the same labelset");
        }
        out.push(s);
    }
    Ok(out)
}

/// The matchers of a vector selector, the metric name included as `__name__`.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::Unsupported("`or` inside label matchers".into()));
    }
    let mut out = Vec::new();
    let mut has_name = false;
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            has_name = true;
        }
        out.push(Matcher {
            name: m.name.clone(),
            value: m.value.clone(),
            kind: match &m.op {
                MatchOp::Equal => MatchKind::Equal,
                MatchOp::NotEqual => MatchKind::NotEqual,
                MatchOp::Re(_) => match Matcher::regex(&m.name, &m.value, false) {
                    Ok(x) => x.kind,
                    Err(e) => return err(e.to_string()),
                },
                MatchOp::NotRe(_) => match Matcher::regex(&m.name, &m.value, true) {
                    Ok(x) => x.kind,
                    Err(e) => return err(e.to_string()),
                },
            },
        });
    }
    if let Some(n) = &vs.name {
        if !has_name || !out.iter().any(|m| m.name == METRIC_NAME && m.value == *n) {
            out.push(Matcher::equal(METRIC_NAME, n));
        }
    }
    Ok(out)
}

/// Parses a series selector (`metric{label="v"}`, as in the HTTP API's `match[]`) into
/// matchers; anything but a plain vector selector is a parse error.
pub fn parse_series_selector(q: &str) -> Result<Vec<Matcher>> {
    match parse(q)? {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => {
            selector_matchers(&vs)
        }
        _ => Err(Error::Parse(format!(
            "expected a series selector such as `metric{{label=\"value\"}}`, got {q:?}"
        ))),
    }
}

pub(crate) fn dur_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) struct Ctx<'a> {
    st: &'a dyn Storage,
    pub(crate) query: &'a str,
    start: i64,
    end: i64,
    pub(crate) interval: i64,
    pub(crate) lookback: i64,
    pub(crate) range_mode: bool,
    warnings: RefCell<BTreeSet<String>>,
    infos: RefCell<BTreeSet<String>>,
    matcher_cache: RefCell<HashMap<usize, std::rc::Rc<Vec<Matcher>>>>,
    limits: QueryLimits,
    /// Points of a range query's result so far.
    held: Cell<usize>,
    /// Samples loaded by selectors during the current step.
    step_samples: Cell<usize>,
}

impl<'a> Ctx<'a> {
    fn new(
        e: &Engine,
        st: &'a dyn Storage,
        query: &'a str,
        start: i64,
        end: i64,
        interval: i64,
        range_mode: bool,
    ) -> Self {
        Ctx {
            st,
            query,
            start,
            end,
            interval: if range_mode {
                e.default_step_ms
            } else {
                interval
            },
            lookback: e.lookback_ms,
            range_mode,
            warnings: RefCell::new(BTreeSet::new()),
            infos: RefCell::new(BTreeSet::new()),
            matcher_cache: RefCell::new(HashMap::new()),
            limits: QueryLimits::default(),
            held: Cell::new(0),
            step_samples: Cell::new(0),
        }
    }

    /// Counts `loaded` samples against the sample limit.
    fn check_samples(&self, loaded: usize) -> Result<()> {
        let now = self.step_samples.get().saturating_add(loaded);
        self.step_samples.set(now);
        let max = self.limits.max_samples;
        if max > 0 && now.saturating_add(self.held.get()) > max {
            return Err(Error::TooManySamples);
        }
        Ok(())
    }

    /// Checks the limit with `extra` samples held on top of the step's, without counting
    /// them.
    fn check_samples_with(&self, extra: usize) -> Result<()> {
        let max = self.limits.max_samples;
        let now = self
            .step_samples
            .get()
            .saturating_add(self.held.get())
            .saturating_add(extra);
        if max > 0 && now > max {
            return Err(Error::TooManySamples);
        }
        Ok(())
    }

    fn check_deadline(&self) -> Result<()> {
        match self.limits.deadline {
            Some(d) if std::time::Instant::now() >= d => Err(Error::Timeout),
            _ => Ok(()),
        }
    }

    fn result(&self, value: Value) -> QueryResult {
        QueryResult {
            value,
            warnings: self.warnings.borrow().iter().cloned().collect(),
            infos: self.infos.borrow().iter().cloned().collect(),
        }
    }

    /// Position suffix ` (line:col)` of the first occurrence of `needle` in the query.
    pub(crate) fn pos(&self, needle: &str) -> String {
        match self.query.find(needle) {
            Some(i) => {
                let before = &self.query[..i];
                let line = before.matches('\n').count() + 1;
                let col = before.rfind('\n').map(|p| i - p).unwrap_or(i + 1);
                format!(" ({line}:{col})")
            }
            None => String::new(),
        }
    }

    /// Whether `s` is the parser's decoding of a string literal in the query that Go would
    /// decode to invalid UTF-8 (a `\xNN` escape with NN >= 0x80 not forming valid UTF-8).
    pub(crate) fn invalid_utf8_literal(&self, s: &str) -> bool {
        go_invalid_literals(self.query).iter().any(|l| l == s)
    }

    /// Position suffix of the text right after the first occurrence of `needle`.
    pub(crate) fn pos_after(&self, needle: &str) -> String {
        match self.query.find(needle) {
            Some(i) => {
                let i = i + needle.len();
                let i = i + (self.query[i..].len() - self.query[i..].trim_start().len());
                let before = &self.query[..i];
                let line = before.matches('\n').count() + 1;
                let col = before.rfind('\n').map(|p| i - p).unwrap_or(i + 1);
                format!(" ({line}:{col})")
            }
            None => String::new(),
        }
    }

    pub(crate) fn warn(&self, msg: String) {
        self.warnings
            .borrow_mut()
            .insert(format!("PromQL warning: {msg}"));
    }

    pub(crate) fn info(&self, msg: String) {
        self.infos
            .borrow_mut()
            .insert(format!("PromQL info: {msg}"));
    }

    pub(crate) fn ref_time(&self, t: i64, at: &Option<AtModifier>, off: &Option<Offset>) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(st),
        };
        base - offset_ms(off)
    }

    fn matchers(&self, vs: &VectorSelector) -> Result<std::rc::Rc<Vec<Matcher>>> {
        let key = vs as *const VectorSelector as usize;
        if let Some(m) = self.matcher_cache.borrow().get(&key) {
            return Ok(m.clone());
        }
        let out = selector_matchers(vs)?;
        let rc = std::rc::Rc::new(out);
        self.matcher_cache.borrow_mut().insert(key, rc.clone());
        Ok(rc)
    }

    /// Instant selection; `keep_ts` keeps each sample's own timestamp (for `timestamp()`).
    pub(crate) fn select_vector(
        &self,
        vs: &VectorSelector,
        t: i64,
        keep_ts: bool,
    ) -> Result<Vec<Sample>> {
        let ms = self.matchers(vs)?;
        let rt = self.ref_time(t, &vs.at, &vs.offset);
        let mut series = self.st.select_latest(&ms, rt - self.lookback + 1, rt);
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(series.len());
        for (labels, ts, v) in series {
            if ts <= rt - self.lookback || ts > rt || is_stale(v) {
                continue;
            }
            let h = if is_histogram_placeholder(v) {
                match self.st.histogram_at(&labels, ts) {
                    Some(h) => Some(h),
                    None => continue,
                }
            } else {
                None
            };
            out.push(Sample {
                labels,
                t: if keep_ts { ts } else { t },
                f: if h.is_some() { 0.0 } else { v },
                h,
                drop_name: false,
            });
        }
        self.check_samples(out.len())?;
        Ok(out)
    }

    fn select_matrix(&self, vs: &VectorSelector, range: i64, t: i64) -> Result<Vec<RangeSeries>> {
        let ms = self.matchers(vs)?;
        let rt = self.ref_time(t, &vs.at, &vs.offset);
        let mut series = self.st.select(&ms, rt - range + 1, rt);
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let mut pts = Vec::with_capacity(s.samples.len());
            let mut hists = Vec::new();
            let mut hs = s.histograms.into_iter().peekable();
            for (ts, v) in s.samples {
                if is_histogram_placeholder(v) {
                    while hs.peek().is_some_and(|(ht, _)| *ht < ts) {
                        hs.next();
                    }
                    if ts <= rt - range || ts > rt {
                        continue;
                    }
                    if let Some((_, h)) = hs.next_if(|(ht, _)| *ht == ts) {
                        hists.push((ts, h));
                    }
                    continue;
                }
                if ts <= rt - range || ts > rt || is_stale(v) {
                    continue;
                }
                pts.push((ts, v));
            }
            self.check_samples(pts.len() + hists.len())?;
            if !pts.is_empty() || !hists.is_empty() {
                out.push(RangeSeries {
                    labels: s.labels,
                    points: pts,
                    hists,
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    /// Evaluates a range-vector expression; also returns (range start, range end) in ms.
    pub(crate) fn eval_range_arg(&self, e: &Expr, t: i64) -> Result<(Vec<RangeSeries>, i64, i64)> {
        match e {
            Expr::Paren(p) => self.eval_range_arg(&p.expr, t),
            Expr::MatrixSelector(m) => {
                let range = dur_ms(&m.range);
                let rt = self.ref_time(t, &m.vs.at, &m.vs.offset);
                Ok((self.select_matrix(&m.vs, range, t)?, rt - range, rt))
            }
            Expr::Subquery(sq) => {
                let range = dur_ms(&sq.range);
                let rt = self.ref_time(t, &sq.at, &sq.offset);
                Ok((self.eval_subquery(sq, t)?, rt - range, rt))
            }
            other => match self.eval(other, t)? {
                Value::Matrix(m) => Ok((m, t, t)),
                v => err(format!("expected range vector, got {}", v.type_name())),
            },
        }
    }

    fn eval_subquery(
        &self,
        sq: &promql_parser::parser::SubqueryExpr,
        t: i64,
    ) -> Result<Vec<RangeSeries>> {
        let range = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.interval);
        let rt = self.ref_time(t, &sq.at, &sq.offset);
        let mint = rt - range;
        let mut ts = (mint.div_euclid(step) + 1) * step;
        let mut map: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<RangeSeries> = Vec::new();
        let mut held = 0usize;
        while ts <= rt {
            let v = self.eval(&sq.expr, ts)?;
            let samples = match v {
                Value::Vector(v) => v,
                Value::Scalar(f) => vec![Sample {
                    labels: Labels::default(),
                    t: ts,
                    f,
                    h: None,
                    drop_name: false,
                }],
                other => {
                    return err(format!(
                        "subquery over {} is not allowed",
                        other.type_name()
                    ))
                }
            };
            // The subquery's result so far counts against the sample limit (not kept
            // in the step's count: it is released once the enclosing call reduces it).
            held += samples.len();
            self.check_samples_with(held)?;
            for s in samples {
                let idx = match map.get(&s.labels) {
                    Some(&i) => i,
                    None => {
                        out.push(RangeSeries {
                            labels: s.labels.clone(),
                            points: Vec::new(),
                            hists: Vec::new(),
                            drop_name: s.drop_name,
                        });
                        map.insert(s.labels.clone(), out.len() - 1);
                        out.len() - 1
                    }
                };
                match s.h {
                    Some(h) => out[idx].hists.push((ts, h)),
                    None => out[idx].points.push((ts, s.f)),
                }
            }
            ts += step;
        }
        Ok(out)
    }

    pub(crate) fn eval(&self, e: &Expr, t: i64) -> Result<Value> {
        self.check_deadline()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(f) => Ok(Value::Scalar(-f)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            f: -s.f,
                            h: s.h.map(|h| Arc::new((*h).clone().scale(-1.0))),
                            drop_name: true,
                            ..s
                        })
                        .collect(),
                )),
                other => err(format!("unary expression only allowed on expressions of type scalar or instant vector, got {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.select_vector(vs, t, false)?)),
            Expr::MatrixSelector(m) => Ok(Value::Matrix(self.select_matrix(&m.vs, dur_ms(&m.range), t)?)),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.eval_subquery(sq, t)?)),
            Expr::Binary(b) => self.eval_binary(b, t),
            Expr::Aggregate(a) => self.eval_aggregate(a, t),
            Expr::Call(c) => crate::functions::call(self, c, t),
            Expr::Extension(_) => Err(Error::Unsupported("extension expressions".into())),
        }
    }

    pub(crate) fn eval_scalar(&self, e: &Expr, t: i64) -> Result<f64> {
        match self.eval(e, t)? {
            Value::Scalar(f) => Ok(f),
            v => err(format!("expected scalar, got {}", v.type_name())),
        }
    }

    pub(crate) fn eval_vector(&self, e: &Expr, t: i64) -> Result<Vec<Sample>> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            v => err(format!("expected instant vector, got {}", v.type_name())),
        }
    }

    pub(crate) fn eval_string(&self, e: &Expr, t: i64) -> Result<String> {
        match self.eval(e, t)? {
            Value::String(s) => Ok(s),
            v => err(format!("expected string, got {}", v.type_name())),
        }
    }

    // ---------------------------------------------------------------- binary operators

    fn eval_binary(&self, b: &BinaryExpr, t: i64) -> Result<Value> {
        let op = b.op.id();
        if let Some(m) = &b.modifier {
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(Error::Unsupported("fill modifiers".into()));
            }
        }
        let return_bool = b.modifier.as_ref().map(|m| m.return_bool).unwrap_or(false);
        let lhs = self.eval(&b.lhs, t)?;
        // Short-circuit: an empty left side of `and`/arithmetic needs no right side, but
        // Prometheus still evaluates both; keep it simple and evaluate both.
        let rhs = self.eval(&b.rhs, t)?;
        match (lhs, rhs) {
            (Value::Scalar(a), Value::Scalar(c)) => {
                let (v, keep) = scalar_binop(op, a, c)?;
                if is_comparison(op) {
                    if return_bool {
                        Ok(Value::Scalar(if keep { 1.0 } else { 0.0 }))
                    } else {
                        err("comparisons between scalars must use BOOL modifier")
                    }
                } else {
                    Ok(Value::Scalar(v))
                }
            }
            (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
                self,
                op,
                v,
                s,
                false,
                return_bool,
            )?)),
            (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(
                self,
                op,
                v,
                s,
                true,
                return_bool,
            )?)),
            (Value::Vector(l), Value::Vector(r)) => {
                let card = b
                    .modifier
                    .as_ref()
                    .map(|m| m.card.clone())
                    .unwrap_or(VectorMatchCardinality::OneToOne);
                let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
                match op {
                    T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(op, l, r, &matching))),
                    _ => Ok(Value::Vector(vector_vector(
                        self,
                        op,
                        l,
                        r,
                        &matching,
                        &card,
                        return_bool,
                    )?)),
                }
            }
            (l, r) => err(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            )),
        }
    }

    // ---------------------------------------------------------------- aggregation

    fn eval_aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value> {
        crate::aggregate::aggregate(self, a, t)
    }
}

/// String literals of `q` (double or single quoted) whose Go decoding is invalid UTF-8,
/// returned as the parser decodes them (`\xNN` becomes U+00NN).
fn go_invalid_literals(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = q.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let quote = b[i];
        if quote != b'"' && quote != b'\'' {
            i += 1;
            continue;
        }
        i += 1;
        let mut bytes: Vec<u8> = Vec::new();
        let mut parsed = String::new();
        let mut has_raw = false;
        while i < b.len() && b[i] != quote {
            if b[i] == b'\\' && i + 1 < b.len() {
                if b[i + 1] == b'x' && i + 3 < b.len() {
                    if let Ok(v) = u8::from_str_radix(&q[i + 2..i + 4], 16) {
                        bytes.push(v);
                        parsed.push(v as char);
                        has_raw |= v >= 0x80;
                        i += 4;
                        continue;
                    }
                }
                bytes.push(b[i + 1]);
                parsed.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            let ch = q[i..].chars().next().unwrap_or(' ');
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            parsed.push(ch);
            i += ch.len_utf8();
        }
        i += 1;
        if has_raw && std::str::from_utf8(&bytes).is_err() {
            out.push(parsed);
        }
    }
    out
}

pub(crate) fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// Applies an arithmetic or comparison operator; returns (value, keep).
pub(crate) fn scalar_binop(op: TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (go_pow(l, r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return err(format!(
                "operator {} not allowed here",
                promql_parser::parser::token::TokenType::new(other)
            ))
        }
    })
}

fn go_pow(x: f64, y: f64) -> f64 {
    x.powf(y)
}

/// One operand of a binary operation: a float or a histogram.
type Operand<'a> = (f64, Option<&'a Arc<FloatHistogram>>);

/// The result of applying an operator to two elements: `None` when the sample types are
/// incompatible (an info annotation has been raised), else (float, histogram, keep).
type ElemResult = Option<(f64, Option<Arc<FloatHistogram>>, bool)>;

/// Applies `op` to two elements, histograms included, as Prometheus does: histograms
/// add and subtract, scale by `*` and `/` with a float, and compare with `==`/`!=`;
/// any other combination is dropped with an info annotation.
fn elem_binop(ctx: &Ctx, op: TokenId, l: Operand, r: Operand) -> Result<ElemResult> {
    let name = || promql_parser::parser::token::TokenType::new(op).to_string();
    let incompatible = |a: &str, b: &str| {
        ctx.info(format!(
            "incompatible sample types encountered for binary operator {:?}: {a} {} {b}{}",
            name(),
            name(),
            ctx.pos(&name())
        ));
        Ok(None)
    };
    let combine_err = |e: crate::histogram::Error| {
        ctx.warn(format!(
            "{}{}",
            match e {
                crate::histogram::Error::MixedSchemas =>
                    "vector contains a mix of histograms with exponential and custom buckets schemas",
            },
            ctx.pos(&name())
        ));
        Ok(None)
    };
    match (l.1, r.1) {
        (None, None) => {
            let (v, keep) = scalar_binop(op, l.0, r.0)?;
            Ok(Some((v, None, keep)))
        }
        (None, Some(h)) => match op {
            T_MUL => Ok(Some((
                0.0,
                Some(Arc::new((**h).clone().scale(l.0).compact())),
                true,
            ))),
            _ => incompatible("float", "histogram"),
        },
        (Some(h), None) => match op {
            T_MUL => Ok(Some((
                0.0,
                Some(Arc::new((**h).clone().scale(r.0).compact())),
                true,
            ))),
            T_DIV => Ok(Some((
                0.0,
                Some(Arc::new((**h).clone().divide(r.0).compact())),
                true,
            ))),
            _ => incompatible("histogram", "float"),
        },
        (Some(a), Some(b)) => match op {
            T_ADD | T_SUB => {
                let mut res = (**a).clone();
                let r = if op == T_ADD { res.add(b) } else { res.sub(b) };
                match r {
                    Ok(c) => {
                        report_combined(
                            ctx,
                            c,
                            if op == T_ADD {
                                "addition"
                            } else {
                                "subtraction"
                            },
                            &ctx.pos(&name()),
                        );
                        Ok(Some((0.0, Some(Arc::new(res.compact())), true)))
                    }
                    Err(e) => combine_err(e),
                }
            }
            T_EQLC => Ok(Some((0.0, Some(a.clone()), a.equals(b)))),
            T_NEQ => Ok(Some((0.0, Some(a.clone()), !a.equals(b)))),
            _ => incompatible("histogram", "histogram"),
        },
    }
}

/// Raises the annotations an addition or subtraction of histograms calls for; `pos` is
/// the position suffix (` (1:8)`) to report.
pub(crate) fn report_combined(
    ctx: &Ctx,
    c: crate::histogram::Combined,
    operation: &str,
    pos: &str,
) {
    if c.counter_reset_collision {
        ctx.warn(format!(
            "conflicting counter resets during histogram {operation}{pos}"
        ));
    }
    if c.custom_bounds_reconciled {
        ctx.info(format!(
            "mismatched custom buckets were reconciled during {operation}{pos}"
        ));
    }
}

fn vector_scalar(
    ctx: &Ctx,
    op: TokenId,
    v: Vec<Sample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let mut out = Vec::with_capacity(v.len());
    for smp in v {
        let (lv, rv): (Operand, Operand) = if swap {
            ((s, None), (smp.f, smp.h.as_ref()))
        } else {
            ((smp.f, smp.h.as_ref()), (s, None))
        };
        let Some((mut value, mut h, mut keep)) = elem_binop(ctx, op, lv, rv)? else {
            continue;
        };
        if is_comparison(op) && swap {
            value = rv.0;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            h = None;
            keep = true;
        }
        if keep {
            out.push(Sample {
                f: value,
                h,
                drop_name: smp.drop_name || drops_name(op) || return_bool,
                ..smp
            });
        }
    }
    Ok(out)
}

/// The matching signature of a label set.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l.keep(&on.labels),
        Some(LabelModifier::Exclude(ign)) => {
            let mut x = l.drop_names(&ign.labels);
            x.remove(METRIC_NAME);
            x
        }
        None => l.without_name(),
    }
}

fn set_op(
    op: TokenId,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: &Option<LabelModifier>,
) -> Vec<Sample> {
    match op {
        T_LAND => {
            let sigs: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| sigs.contains(&signature(&s.labels, matching)))
                .collect()
        }
        T_LUNLESS => {
            let sigs: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| !sigs.contains(&signature(&s.labels, matching)))
                .collect()
        }
        _ => {
            let sigs: HashSet<Labels> = l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !sigs.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

fn vector_vector(
    ctx: &Ctx,
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (lhs, rhs) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let include: Vec<String> = match card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
            l.labels.clone()
        }
        _ => Vec::new(),
    };
    let mut right: HashMap<Labels, &Sample> = HashMap::new();
    for rs in &rhs {
        let sig = signature(&rs.labels, matching);
        if let Some(dup) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let matched = match matching {
                Some(LabelModifier::Include(on)) => rs.labels.keep(&on.labels),
                _ => sig.clone(),
            };
            let (a, b) = if rs.labels <= dup.labels {
                (&rs.labels, &dup.labels)
            } else {
                (&dup.labels, &rs.labels)
            };
            return err(format!(
                "found duplicate series for the match group {matched} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side"
            ));
        }
        right.insert(sig, rs);
    }
    let mut matched_sigs: HashSet<Labels> = HashSet::new();
    let mut inserted: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    let drop = return_bool || drops_name(op);
    for ls in &lhs {
        let sig = signature(&ls.labels, matching);
        let Some(rs) = right.get(&sig) else {
            continue;
        };
        if matches!(card, VectorMatchCardinality::OneToOne) && !matched_sigs.insert(sig.clone()) {
            return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
        }
        let (vl, vr): (Operand, Operand) = if one_to_many {
            ((rs.f, rs.h.as_ref()), (ls.f, ls.h.as_ref()))
        } else {
            ((ls.f, ls.h.as_ref()), (rs.f, rs.h.as_ref()))
        };
        let Some((mut value, mut h, mut keep)) = elem_binop(ctx, op, vl, vr)? else {
            continue;
        };
        if is_comparison(op) && !return_bool {
            // A comparison keeps the left-hand side's sample.
            value = vl.0;
            h = vl.1.cloned();
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            h = None;
            keep = true;
        }
        if !keep {
            continue;
        }
        let mut metric = ls.labels.clone();
        if matches!(card, VectorMatchCardinality::OneToOne) {
            match matching {
                Some(LabelModifier::Include(on)) => metric = metric.keep(&on.labels),
                Some(LabelModifier::Exclude(ign)) => metric = metric.drop_names(&ign.labels),
                None => {}
            }
        }
        for ln in &include {
            match rs.labels.get(ln) {
                Some(v) => metric.set(ln, v),
                None => metric.remove(ln),
            }
        }
        if !matches!(card, VectorMatchCardinality::OneToOne) {
            let mut key = metric.clone();
            if drop {
                key.remove(METRIC_NAME);
            }
            if !inserted.insert(key) {
                return err(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                );
            }
        }
        out.push(Sample {
            labels: metric,
            t: ls.t,
            f: value,
            h,
            drop_name: drop || ls.drop_name,
        });
    }
    Ok(out)
}
