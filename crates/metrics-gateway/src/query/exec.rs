//! `/api/v1/query` and `/api/v1/query_range`: parameters checked as Prometheus checks
//! them, evaluation on the blocking pool (never on the async workers that take pushes)
//! bounded by `--query.timeout` (or the request's shorter `timeout=`), `--query.max-samples`
//! and `--query.max-concurrency`. The history's lock is taken per selector, never across
//! the whole evaluation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::{extract::State, response::Response};
use promql_engine::rules::runtime::max_range_ms;
use promql_engine::{Engine, QueryLimits, QueryResult};
use promql_parser::parser::{value::ValueType, Expr};

use super::history::unix_ms;
use super::params::Params;
use super::response::{query_data, ApiError, ErrorType, Success};
use super::snapshot::Snapshot;
use super::QueryState;

/// Most points per series a range query may return (Prometheus's limit).
pub const MAX_POINTS: i64 = 11_000;

/// Warning added when `limit=` cut the result.
pub const TRUNCATED: &str = "results truncated due to limit";

fn respond(state: &QueryState, endpoint: &str, r: Result<Success, ApiError>) -> Response {
    use axum::response::IntoResponse;
    match r {
        Ok(s) => {
            state.count(endpoint, "success");
            s.into_response()
        }
        Err(e) => {
            state.count(endpoint, e.kind.as_str());
            e.into_response()
        }
    }
}

/// `GET|POST /api/v1/query`.
pub async fn query(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    let r = instant(&s, &p).await;
    respond(&s, "query", r)
}

/// `GET|POST /api/v1/query_range`.
pub async fn query_range(State(s): State<Arc<QueryState>>, p: Params) -> Response {
    let r = range(&s, &p).await;
    respond(&s, "query_range", r)
}

/// Timeout, lookback and query text common to both endpoints.
struct Common {
    deadline: Instant,
    engine: Engine,
    text: String,
    expr: Expr,
    limit: usize,
}

fn common(s: &QueryState, p: &Params) -> Result<Common, ApiError> {
    let mut timeout = s.args.timeout;
    if let Some(ms) = p.duration("timeout")? {
        if ms > 0 {
            timeout = timeout.min(Duration::from_millis(ms as u64));
        }
    }
    let mut engine = Engine {
        lookback_ms: i64::try_from(s.args.lookback_delta.as_millis()).unwrap_or(300_000),
        ..Engine::default()
    };
    if let Some(ms) = p.duration("lookback_delta")? {
        if ms > 0 {
            engine.lookback_ms = ms;
        }
    }
    let limit = p.limit("limit")?;
    let text = p.get("query").unwrap_or("").to_owned();
    if text.trim().is_empty() {
        return Err(ApiError::bad_param(
            "query",
            "1:1: parse error: no expression found in input".into(),
        ));
    }
    let expr = promql_engine::parse(&text).map_err(|e| ApiError::from_engine(&e))?;
    Ok(Common {
        deadline: Instant::now() + timeout,
        engine,
        text,
        expr,
        limit,
    })
}

/// Runs `f` on the blocking pool once a concurrency permit is free, all before `deadline`,
/// over a [`Snapshot`] of the history for the window `mint..=maxt` (ms).
async fn evaluate<F>(
    s: &QueryState,
    deadline: Instant,
    (mint, maxt): (i64, i64),
    f: F,
) -> Result<QueryResult, ApiError>
where
    F: FnOnce(
            &dyn promql_engine::Storage,
            &QueryLimits,
        ) -> promql_engine::eval::Result<QueryResult>
        + Send
        + 'static,
{
    let timed_out = || ApiError::from_engine(&promql_engine::Error::Timeout);
    let permit = tokio::time::timeout_at(deadline.into(), s.permits.clone().acquire_owned())
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| super::response::internal("waiting for a query slot", &e))?;
    let history = s.history.clone();
    let feed = s.feed.clone();
    let limits = QueryLimits {
        deadline: Some(deadline),
        max_samples: s.args.max_samples,
    };
    let joined = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        feed.flush();
        let snapshot = Snapshot::new(&history, mint, maxt, limits.max_samples);
        f(&snapshot, &limits)
    })
    .await
    .map_err(|e| super::response::internal("evaluating a query", &e))?;
    joined.map_err(|e| ApiError::from_engine(&e))
}

fn success(r: QueryResult, t: i64, limit: usize) -> Success {
    let (data, truncated) = query_data(&r.value, t, limit);
    let mut warnings = r.warnings;
    if truncated {
        warnings.push(TRUNCATED.to_owned());
    }
    Success {
        data,
        warnings,
        infos: r.infos,
    }
}

async fn instant(s: &QueryState, p: &Params) -> Result<Success, ApiError> {
    let t = p.time("time", unix_ms(SystemTime::now()))?;
    let c = common(s, p)?;
    let Common {
        deadline,
        engine,
        text,
        expr,
        limit,
    } = c;
    let back = engine.lookback_ms + max_range_ms(&expr);
    let r = evaluate(s, deadline, (t - back, t), move |st, lim| {
        engine.instant_limited(st, &text, &expr, t, lim)
    })
    .await?;
    Ok(success(r, t, limit))
}

async fn range(s: &QueryState, p: &Params) -> Result<Success, ApiError> {
    let start = required_time(p, "start")?;
    let end = required_time(p, "end")?;
    if end < start {
        return Err(ApiError::bad_param(
            "end",
            "end timestamp must not be before start time".into(),
        ));
    }
    let step = match p.get("step") {
        None => Err(ApiError::bad_param(
            "step",
            "cannot parse \"\" to a valid duration".into(),
        )),
        Some(v) => super::params::parse_duration(v).map_err(|e| ApiError::bad_param("step", e)),
    }?;
    if step <= 0 {
        return Err(ApiError::bad_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::new(
            ErrorType::BadData,
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let c = common(s, p)?;
    match c.expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            let name = match other {
                ValueType::Matrix => "range vector",
                _ => "string",
            };
            return Err(ApiError::new(
                ErrorType::BadData,
                format!("invalid parameter \"query\": invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"),
            ));
        }
    }
    let Common {
        deadline,
        engine,
        text,
        expr,
        limit,
    } = c;
    let back = engine.lookback_ms + max_range_ms(&expr);
    let r = evaluate(s, deadline, (start - back, end), move |st, lim| {
        engine.range_limited(st, &text, &expr, start, end, step, lim)
    })
    .await?;
    Ok(success(r, end, limit))
}

fn required_time(p: &Params, name: &str) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Err(ApiError::bad_param(
            name,
            "cannot parse \"\" to a valid timestamp".into(),
        )),
        Some(v) => super::params::parse_time(v).map_err(|e| ApiError::bad_param(name, e)),
    }
}
