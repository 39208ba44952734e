//! Values produced by evaluation.

use std::sync::Arc;

use crate::histogram::FloatHistogram;
use crate::labels::Labels;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Labels (the metric name may still be present while `drop_name` is set).
    pub labels: Labels,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// Value (0 when `h` is set).
    pub f: f64,
    /// A native histogram value instead of a float.
    pub h: Option<Arc<FloatHistogram>>,
    /// Delayed name removal: the metric name is dropped when the query finishes.
    pub drop_name: bool,
}

/// One series of a range vector.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// Labels.
    pub labels: Labels,
    /// (timestamp ms, value) in ascending time order: the float samples.
    pub points: Vec<(i64, f64)>,
    /// (timestamp ms, histogram) in ascending time order: the native-histogram samples.
    pub hists: Vec<(i64, Arc<FloatHistogram>)>,
    /// Delayed name removal flag.
    pub drop_name: bool,
}

/// A PromQL value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (or the result of a range query).
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// The PromQL type name as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "instant vector",
            Value::Matrix(_) => "range vector",
        }
    }
}

/// Formats a float the way Go's `strconv.FormatFloat(f, 'f', -1, 64)` does (used by
/// `count_values` and templates).
pub fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    // Rust's Display prints the shortest representation that round-trips, in plain
    // decimal notation, exactly like Go's 'f' format with precision -1.
    let s = format!("{f}");
    if s == "-0" {
        return "-0".to_string();
    }
    s
}
