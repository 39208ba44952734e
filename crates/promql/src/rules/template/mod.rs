//! Alert templates: the part of Go's `text/template` that Prometheus's alert labels and
//! annotations use, with Prometheus's data (`$labels`, `$value`, `$externalLabels`,
//! `$externalURL`, `.Labels`, `.Value`, ...) and function set.
//!
//! # Layout
//! - [`value`]: template values modelled on the Go types Prometheus passes, and Go's `%v`
//!   of them (numbers via [`crate::gofmt`]).
//! - [`lex`]: text and actions (trim markers, comments), tokens and Go literals.
//! - [`parse`]: the parser (pipelines, `if`/`range`/`with`, `define`/`template`/`block`,
//!   `break`/`continue`), with Go's parse-time checks.
//! - [`exec`]: the bounded executor.
//! - [`functions`]: the one table of functions, Go's built-ins and Prometheus's.
//! - [`error`]: typed parse and execution errors carrying the template name and line.
//!
//! # Why hand-written
//! No maintained Rust crate executes Go templates with Go's semantics (typed comparisons,
//! `fmt`'s `%v` of floats, `missingkey=zero` on label maps, Go's `printf` mismatch
//! notation), and alert text must read exactly as Prometheus would write it: the
//! conformance tests run the same rule files through Debian's `promtool` and compare.

pub mod error;
pub mod exec;
pub mod functions;
pub mod lex;
pub mod parse;
pub mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::rc::Rc;

pub use error::{Error, ExecError, ParseError, Result};
pub use value::Value;

/// Rows returned by a template query: (labels, value).
pub type QueryRows = Vec<(BTreeMap<String, String>, f64)>;

/// Runs a PromQL query for the `query` template function.
/// A failure keeps its kind (parse error, timeout, ...) and message.
pub type QueryFn<'a> = dyn Fn(&str) -> Result<QueryRows, crate::eval::Error> + 'a;

/// The variables Prometheus declares before every alert template.
const ALERT_VARS: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    tree: parse::Tree,
}

/// Data available to an alert template.
pub struct AlertData<'a> {
    /// The alert's labels (with `__name__` when the expression kept it, as in Prometheus).
    pub labels: BTreeMap<String, String>,
    /// External labels.
    pub external_labels: BTreeMap<String, String>,
    /// External URL.
    pub external_url: String,
    /// The alert's value.
    pub value: f64,
    /// Query function for `query` (`None`: `query` fails).
    pub query: Option<&'a QueryFn<'a>>,
}

impl Template {
    /// Parses an alert template; unknown functions and undeclared variables are errors
    /// here, as in Prometheus.
    pub fn parse(name: &str, src: &str) -> Result<Self> {
        let tree = parse::parse(src, &ALERT_VARS).map_err(|(line, kind)| Error::Parse {
            name: name.to_string(),
            line,
            kind,
        })?;
        Ok(Template {
            name: name.to_string(),
            tree,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Expands the template with Prometheus's alert data.
    pub fn expand_alert(&self, d: &AlertData) -> Result<String> {
        let labels = Value::labels(d.labels.clone());
        let external = Value::labels(d.external_labels.clone());
        let url = Value::Str(d.external_url.clone());
        let value = Value::Float(d.value);
        let dot = Value::Struct(Rc::new(value::Struct {
            type_name: "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }",
            pointer: false,
            fields: vec![
                ("Labels", labels.clone()),
                ("ExternalLabels", external.clone()),
                ("ExternalURL", url.clone()),
                ("Value", value.clone()),
            ],
        }));
        let vars = [dot.clone(), labels, external, url, value];
        let vars = ALERT_VARS.iter().map(|n| n.to_string()).zip(vars).collect();
        let ctx = functions::Ctx {
            query: d.query,
            external_url: &d.external_url,
        };
        let mut ex = exec::Exec::new(&self.tree, &ctx, vars);
        ex.run(&dot).map_err(|f| Error::Exec {
            name: self.name.clone(),
            line: f.pos.line,
            action: f.pos.text.to_string(),
            kind: f.kind,
        })?;
        Ok(ex.out)
    }
}
