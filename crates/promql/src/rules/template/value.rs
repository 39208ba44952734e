//! Values a template computes with, modelled on the Go types Prometheus hands to
//! `text/template`, and Go's `fmt` rendering of them (`%v`; the number formatting itself is
//! [`crate::gofmt`]).
//!
//! The Go types matter for what users see: `.Labels` is a `map[string]string`, so a missing
//! label reads as the empty string, while a missing key of an `args` map (a
//! `map[string]interface{}`) reads as `<no value>`; the template data and query samples are
//! structs, so a misspelt field is an error, not an empty string.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::error::ExecError;
use crate::gofmt::format_v;

/// A template value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Go's nil (an absent `interface{}`); printed as `<no value>`.
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` (integer constants, `len`, range indexes).
    Int(i64),
    /// `float64`.
    Float(f64),
    /// `string`.
    Str(String),
    /// `map[string]string` (label sets): a missing key is `""`.
    Labels(Rc<BTreeMap<String, String>>),
    /// `map[string]interface{}` (`args`): a missing key is nil.
    Map(Rc<BTreeMap<String, Value>>),
    /// A slice (`query` results).
    List(Rc<Vec<Value>>),
    /// A struct (the alert data, a query sample): fields in declaration order.
    Struct(Rc<Struct>),
}

/// A Go struct value: its fields in declaration order.
#[derive(Debug, PartialEq)]
pub struct Struct {
    /// Go's name of the type, for error messages (`*sample`, `struct { Labels ... }`).
    pub type_name: &'static str,
    /// Printed with a leading `&` (Go's `%v` of a pointer to a struct).
    pub pointer: bool,
    /// Fields in declaration order.
    pub fields: Vec<(&'static str, Value)>,
}

impl Value {
    /// A `map[string]string`.
    pub fn labels(m: BTreeMap<String, String>) -> Value {
        Value::Labels(Rc::new(m))
    }

    /// A query sample (`*sample` with `Labels` and `Value`).
    pub fn sample(labels: BTreeMap<String, String>, v: f64) -> Value {
        Value::Struct(Rc::new(Struct {
            type_name: "*template.sample",
            pointer: true,
            fields: vec![
                ("Labels", Value::labels(labels)),
                ("Value", Value::Float(v)),
            ],
        }))
    }

    /// Go's truth: false, 0, nil, and empty strings, maps and slices are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Labels(m) => !m.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Struct(_) => true,
        }
    }

    /// Prometheus's conversion of a function argument to a number: numbers as they are,
    /// strings parsed (`"NaN"`, `"+Inf"` included).
    pub fn to_f64(&self) -> Result<f64, ExecError> {
        match self {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            Value::Str(s) => parse_go_float(s).ok_or_else(|| ExecError::NotANumber(s.clone())),
            other => Err(ExecError::WrongType {
                want: "a number or a string",
                got: other.type_name(),
            }),
        }
    }

    /// A `string` argument: Go does not convert other types to strings implicitly.
    pub fn as_str(&self) -> Result<&str, ExecError> {
        match self {
            Value::Str(s) => Ok(s),
            other => Err(ExecError::WrongType {
                want: "string",
                got: other.type_name(),
            }),
        }
    }

    /// Go's name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Labels(_) => "map[string]string",
            Value::Map(_) => "map[string]interface {}",
            Value::List(_) => "template.queryResult",
            Value::Struct(s) => s.type_name,
        }
    }

    /// A field (`.Name`) or map key (`.key`) of this value.
    pub fn field(&self, name: &str) -> Result<Value, ExecError> {
        match self {
            Value::Labels(m) => Ok(Value::Str(m.get(name).cloned().unwrap_or_default())),
            Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Nil)),
            Value::Struct(s) => s
                .fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| ExecError::NoField {
                    field: name.to_string(),
                    type_name: s.type_name,
                }),
            // A field of nil is nil (`{{ template "t" }}` reading `.x`), as Go prints it.
            Value::Nil => Ok(Value::Nil),
            other => Err(ExecError::NoField {
                field: name.to_string(),
                type_name: other.type_name(),
            }),
        }
    }

    /// Go's `%v` rendering.
    pub fn display(&self) -> String {
        let mut out = String::new();
        self.write_v(&mut out);
        out
    }

    fn write_v(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&format_v(*f)),
            Value::Str(s) => out.push_str(s),
            Value::Labels(m) => write_map(out, m.iter(), |v, out| out.push_str(v)),
            Value::Map(m) => write_map(out, m.iter(), |v, out| v.write_v(out)),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_v(out);
                }
                out.push(']');
            }
            Value::Struct(s) => {
                if s.pointer {
                    out.push('&');
                }
                out.push('{');
                for (i, (_, v)) in s.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_v(out);
                }
                out.push('}');
            }
        }
    }
}

/// Go's `%v` of a map: `map[k1:v1 k2:v2]` in key order.
fn write_map<'a, V: 'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a String, V)>,
    value: impl Fn(V, &mut String),
) {
    out.push_str("map[");
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        value(v, out);
    }
    out.push(']');
}

/// Go's `strconv.ParseFloat` on a template argument: decimal and exponent forms, `NaN`,
/// `Inf`/`+Inf`/`-Inf`/`Infinity` in any case. Surrounding space is not accepted.
pub fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned == "inf" || unsigned == "infinity" {
        return Some(if lower.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE_".contains(c))
    {
        return None;
    }
    s.parse::<f64>().ok()
}
