//! Response envelopes of the query API, as Prometheus 3.x writes them:
//! `{"status":"success","data":...,"warnings":[...],"infos":[...]}` (the annotation lists
//! only when not empty) and `{"status":"error","errorType":...,"error":...}` with the
//! status code of the error type. Results are written straight to text (large range
//! results never pass through a JSON tree); timestamps are Unix seconds with up to three
//! decimals, sample values strings in Go's shortest `'f'` format (`"NaN"`, `"+Inf"`).
//!
//! Native histograms are written as Prometheus's HTTP API documents them: a vector
//! sample carries `"histogram": [t, H]` instead of `"value"`, a matrix series
//! `"histograms": [[t, H], ...]` beside its `"values"` (each key only when it has
//! points), where `H` is `{"count":"..","sum":"..","buckets":[[rule,"lo","hi","n"],..]}`:
//! buckets in ascending order of value, only those with a non-zero count, `rule` 0 for
//! `(lo,hi]`, 1 for `[lo,hi)`, 2 for `(lo,hi)`, 3 for `[lo,hi]` (the zero bucket), and no
//! `buckets` key when every bucket is empty.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use promql_engine::labels::Labels;
use promql_engine::value::format_go_float;
use promql_engine::{FloatHistogram, Value};

/// Prometheus's `errorType`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A parameter is missing or wrong (400).
    BadData,
    /// The query failed while running, e.g. too many samples (422).
    Execution,
    /// The query ran past its timeout (503).
    Timeout,
    /// The query was cancelled, e.g. on shutdown (503).
    Canceled,
    /// Something failed on our side (500).
    Internal,
    /// The thing asked for does not exist (404).
    NotFound,
}

impl ErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadData => "bad_data",
            Self::Execution => "execution",
            Self::Timeout => "timeout",
            Self::Canceled => "canceled",
            Self::Internal => "internal",
            Self::NotFound => "not_found",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadData => StatusCode::BAD_REQUEST,
            Self::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Timeout | Self::Canceled => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An error answer of the query API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ApiError {
    /// The `errorType`.
    pub kind: ErrorType,
    /// The `error` text (for [`ErrorType::Internal`] a generic text; details are logged).
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// `invalid parameter "NAME": DETAIL` (bad_data), Prometheus's wording.
    pub fn bad_param(name: &str, detail: String) -> Self {
        Self::new(
            ErrorType::BadData,
            format!("invalid parameter {name:?}: {detail}"),
        )
    }

    /// The error for a failed evaluation.
    pub fn from_engine(e: &promql_engine::Error) -> Self {
        use promql_engine::Error as E;
        match e {
            E::Parse(_) => Self::bad_param("query", super::params::parse_message(e)),
            E::Timeout => Self::new(ErrorType::Timeout, e.to_string()),
            E::TooManySamples | E::Eval(_) | E::Unsupported(_) => {
                Self::new(ErrorType::Execution, e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = String::with_capacity(self.message.len() + 64);
        body.push_str("{\"status\":\"error\",\"errorType\":");
        push_str(&mut body, self.kind.as_str());
        body.push_str(",\"error\":");
        push_str(&mut body, &self.message);
        body.push('}');
        json_response(self.kind.status(), body)
    }
}

/// A success answer: `data` already written as JSON, plus annotations.
#[derive(Debug, Default)]
pub struct Success {
    /// The `data` member, as JSON text.
    pub data: String,
    /// `warnings` (omitted when empty).
    pub warnings: Vec<String>,
    /// `infos` (omitted when empty).
    pub infos: Vec<String>,
}

impl Success {
    /// A success with `data` and no annotations.
    pub fn data(data: String) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }

    /// A success whose data is `v` serialised.
    pub fn json<T: serde::Serialize>(v: &T) -> Result<Self, ApiError> {
        serde_json::to_string(v)
            .map(Self::data)
            .map_err(|e| internal("serialising a response", &e))
    }
}

impl IntoResponse for Success {
    fn into_response(self) -> Response {
        let mut body = String::with_capacity(self.data.len() + 64);
        body.push_str("{\"status\":\"success\",\"data\":");
        body.push_str(&self.data);
        for (name, list) in [("warnings", &self.warnings), ("infos", &self.infos)] {
            if list.is_empty() {
                continue;
            }
            body.push_str(",\"");
            body.push_str(name);
            body.push_str("\":[");
            for (i, w) in list.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                push_str(&mut body, w);
            }
            body.push(']');
        }
        body.push('}');
        json_response(StatusCode::OK, body)
    }
}

/// Logs an internal failure and returns the generic error clients see.
pub fn internal(what: &str, e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "Query API failed {what}.");
    ApiError::new(ErrorType::Internal, "internal error")
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a timestamp (ms) as Unix seconds with up to three decimals, as Prometheus does.
pub fn push_ts(out: &mut String, t: i64) {
    use std::fmt::Write;
    let neg = t < 0;
    let a = t.unsigned_abs();
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let s = format!("{frac:03}");
        out.push('.');
        out.push_str(s.trim_end_matches('0'));
    }
}

/// Appends `{"name":"value",...}`.
pub fn push_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    }
    out.push('}');
}

fn push_point(out: &mut String, t: i64, f: f64) {
    out.push('[');
    push_ts(out, t);
    out.push(',');
    push_str(out, &format_go_float(f));
    out.push(']');
}

/// The documented boundary rule of a bucket: 0 open left, 1 open right, 2 open both,
/// 3 closed both.
fn boundary_rule(lower_inclusive: bool, upper_inclusive: bool) -> u8 {
    match (lower_inclusive, upper_inclusive) {
        (false, true) => 0,
        (true, false) => 1,
        (false, false) => 2,
        (true, true) => 3,
    }
}

/// Appends a native histogram as `{"count":..,"sum":..,"buckets":[..]}`.
pub fn push_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":");
    push_str(out, &format_go_float(h.count));
    out.push_str(",\"sum\":");
    push_str(out, &format_go_float(h.sum));
    let mut first = true;
    for b in h.buckets() {
        if b.count == 0.0 {
            continue;
        }
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        out.push('[');
        out.push(char::from(
            b'0' + boundary_rule(b.lower_inclusive, b.upper_inclusive),
        ));
        for f in [b.lower, b.upper, b.count] {
            out.push(',');
            push_str(out, &format_go_float(f));
        }
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

fn push_hist_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    push_ts(out, t);
    out.push(',');
    push_histogram(out, h);
    out.push(']');
}

/// The `data` of a query answer: `{"resultType":...,"result":...}`. `limit` (> 0) keeps
/// only that many series of a vector or matrix; whether it cut any is returned.
pub fn query_data(v: &Value, t: i64, limit: usize) -> (String, bool) {
    let mut out = String::with_capacity(256);
    let mut truncated = false;
    let cap = |n: usize| if limit > 0 && n > limit { limit } else { n };
    match v {
        Value::Scalar(f) => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(&mut out, t, *f);
        }
        Value::String(s) => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            push_ts(&mut out, t);
            out.push(',');
            push_str(&mut out, s);
            out.push(']');
        }
        Value::Vector(vs) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            let n = cap(vs.len());
            truncated = n < vs.len();
            for (i, s) in vs.iter().take(n).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                match &s.h {
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        push_hist_point(&mut out, s.t, h);
                    }
                    None => {
                        out.push_str(",\"value\":");
                        push_point(&mut out, s.t, s.f);
                    }
                }
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            let n = cap(m.len());
            truncated = n < m.len();
            for (i, s) in m.iter().take(n).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                // Each key only when it has points, as Prometheus writes them.
                if !s.points.is_empty() || s.hists.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, &(pt, pf)) in s.points.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_point(&mut out, pt, pf);
                    }
                    out.push(']');
                }
                if !s.hists.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, (pt, h)) in s.hists.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_hist_point(&mut out, *pt, h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
    (out, truncated)
}

/// Go's `strconv.FormatFloat(f, 'e', -1, 64)` (alert values on `/api/v1/alerts`).
pub fn format_go_exp(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mant}e{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_values_are_written_as_prometheus_writes_them() {
        let mut s = String::new();
        push_ts(&mut s, 1_435_781_451_781);
        s.push(' ');
        push_ts(&mut s, 1_435_781_430_000);
        s.push(' ');
        push_ts(&mut s, 1_500);
        s.push(' ');
        push_ts(&mut s, -1_050);
        assert_eq!(s, "1435781451.781 1435781430 1.5 -1.05");
        assert_eq!(format_go_exp(1.0), "1e+00");
        assert_eq!(format_go_exp(1234.5), "1.2345e+03");
        assert_eq!(format_go_exp(0.00012), "1.2e-04");
        assert_eq!(format_go_exp(1e100), "1e+100");
        let mut j = String::new();
        push_str(&mut j, "a\"b\\c\n\u{1}");
        assert_eq!(j, r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn histograms_are_written_with_the_documented_boundary_rules() {
        // Schema 0: positive bucket i is (2^(i-1), 2^i], negative i is [-2^i, -2^(i-1)).
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            count: 9.0,
            sum: 3.5,
            positive: vec![(1, 1.0), (2, 0.0), (3, 4.0)],
            negative: vec![(0, 2.0)],
            ..FloatHistogram::default()
        };
        let mut out = String::new();
        push_histogram(&mut out, &h);
        assert_eq!(
            out,
            concat!(
                r#"{"count":"9","sum":"3.5","buckets":["#,
                r#"[1,"-1","-0.5","2"],[3,"-0.001","0.001","2"],"#,
                r#"[0,"1","2","1"],[0,"4","8","4"]]}"#
            )
        );
        // No bucket with observations: no `buckets` key.
        let empty = FloatHistogram {
            zero_threshold: 0.001,
            ..FloatHistogram::default()
        };
        let mut out = String::new();
        push_histogram(&mut out, &empty);
        assert_eq!(out, r#"{"count":"0","sum":"0"}"#);
    }
}
