//! A PromQL engine for metrics-gateway: parse with `promql-parser`, evaluate float samples
//! (and native histograms) against a [`Storage`], run Prometheus's `.test` conformance files, and evaluate
//! Prometheus alerting and recording rules.
//!
//! # Layout
//! - [`labels`]: label sets and matchers.
//! - [`storage`]: the [`Storage`] trait the evaluator reads and the bounded [`MemStorage`].
//! - [`value`]: samples, vectors, matrices.
//! - [`gofmt`]: Go's `fmt` formatting of floats (`%g`, `%e`, `%f`), for histograms and
//!   templates.
//! - [`histogram`]: float native histograms: arithmetic, reset detection, quantiles.
//! - [`eval`]: the evaluator ([`Engine`]), selectors and binary operators.
//! - `aggregate` / `functions`: aggregation operators and functions.
//! - [`notation`]: the notation of Prometheus's test formats (durations, numbers, series in
//!   expanding notation), shared by the runner, rule unit tests and rule templates.
//! - [`promqltest`]: the conformance runner for Prometheus's `.test` format.
//! - [`rules`]: Prometheus alerting and recording rules: rule files ([`rules::file`]),
//!   the group evaluator and alert state machine ([`rules::manager`]), the running engine
//!   metrics-gateway embeds ([`rules::runtime`]), alert templates ([`rules::template`]),
//!   notifiers to Alertmanager and webhooks ([`rules::notifier`]) and promtool's
//!   `test rules` ([`rules::unittest`]).

pub mod aggregate;
pub mod eval;
pub mod functions;
pub mod gofmt;
pub mod histogram;
pub mod labels;
pub mod notation;
pub mod promqltest;
pub mod rules;
pub mod storage;
pub mod value;

pub use eval::{parse, parse_series_selector, Engine, Error, QueryLimits, QueryResult};
pub use histogram::FloatHistogram;
pub use labels::{Labels, Matcher};
pub use storage::{MemStorage, Storage};
pub use value::{RangeSeries, Sample, Value};
