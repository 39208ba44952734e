//! The metric data model shared by the parsers, the store and the renderers: a family of
//! metrics with one type, each metric a label set and a value, plus the exposition helpers
//! (Go-compatible float formatting, escaping, name validation) that make our output match
//! the Pushgateway's byte for byte.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// The five metric types of the text format 0.0.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Summary,
    Untyped,
    Histogram,
}

impl MetricType {
    /// The word used on `# TYPE` lines.
    pub fn as_text(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
            Self::Histogram => "histogram",
        }
    }

    /// The protobuf enum name, used by the JSON API and in error messages.
    pub fn as_upper(self) -> &'static str {
        match self {
            Self::Counter => "COUNTER",
            Self::Gauge => "GAUGE",
            Self::Summary => "SUMMARY",
            Self::Untyped => "UNTYPED",
            Self::Histogram => "HISTOGRAM",
        }
    }

    /// Parses a `# TYPE` word, case-insensitively like Go's parser.
    pub fn from_text(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "summary" => Self::Summary,
            "untyped" => Self::Untyped,
            "histogram" => Self::Histogram,
            _ => return None,
        })
    }
}

/// The value of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Counter, gauge or untyped.
    Simple(f64),
    /// A summary: quantiles as `(quantile, value)`.
    Summary {
        count: f64,
        sum: f64,
        quantiles: Vec<(f64, f64)>,
    },
    /// A histogram: buckets as `(upper bound, cumulative count)`, and the native
    /// histogram when the push carried one (protobuf only; the text format cannot).
    Histogram {
        count: f64,
        sum: f64,
        buckets: Vec<(f64, f64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        native: Option<Box<promql_engine::FloatHistogram>>,
    },
}

/// One metric: its labels (sorted by name, without `__name__`) and value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub labels: Vec<(String, String)>,
    pub value: Value,
    /// Only ever set by the parsers; pushes carrying one are rejected.
    #[serde(skip)]
    pub timestamp_ms: Option<i64>,
}

/// A metric family as pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: MetricType,
    pub metrics: Vec<Metric>,
}

/// Whether `s` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Formats a float the way Go's `strconv.FormatFloat(f, 'g', -1, 64)` does, with the
/// exposition's special cases (`+Inf`, `-Inf`, `NaN`), so our output matches the
/// Pushgateway's exactly (`1.7955312071782572e+09`, `1e-05`, `100000`).
pub fn fmt_float(f: f64, out: &mut String) {
    use std::fmt::Write;
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f == 0.0 {
        out.push('0');
        return;
    }
    // Integers in the plain range print directly (the common case: counts, ids).
    if f.fract() == 0.0 && f.abs() < 1e6 {
        let _ = write!(out, "{}", f as i64);
        return;
    }
    let mut buf = StackBuf::default();
    let _ = write!(buf, "{f:e}");
    let sci = buf.as_str();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digit_buf = StackBuf::default();
    for c in mantissa.chars().filter(|c| *c != '.') {
        let _ = digit_buf.write_char(c);
    }
    let digits = digit_buf.as_str();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

/// A small stack buffer for float formatting (no allocation per sample).
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        Self {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// [`fmt_float`] into a new string.
pub fn float_string(f: f64) -> String {
    let mut s = String::new();
    fmt_float(f, &mut s);
    s
}

/// Escapes a label value for the text format (`\\`, `\"`, `\n`).
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a HELP text for the text format (`\\`, `\n`).
pub fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The order Go's client library sorts the metrics of a family in: by number of labels,
/// then by label values in label-name order.
pub fn go_metric_order(a: &[(String, String)], b: &[(String, String)]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        for (x, y) in a.iter().zip(b) {
            match x.1.cmp(&y.1) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    })
}

/// Writes one metric's exposition lines (one for simple types, several for histograms and
/// summaries).
pub fn render_metric(name: &str, m: &Metric, out: &mut String) {
    match &m.value {
        Value::Simple(v) => sample(out, name, "", &m.labels, None, *v),
        Value::Summary {
            count,
            sum,
            quantiles,
        } => {
            for (q, v) in quantiles {
                sample(out, name, "", &m.labels, Some(("quantile", *q)), *v);
            }
            sample(out, name, "_sum", &m.labels, None, *sum);
            sample(out, name, "_count", &m.labels, None, *count);
        }
        Value::Histogram {
            count,
            sum,
            buckets,
            ..
        } => {
            for (le, c) in buckets {
                sample(out, name, "_bucket", &m.labels, Some(("le", *le)), *c);
            }
            if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
                sample(
                    out,
                    name,
                    "_bucket",
                    &m.labels,
                    Some(("le", f64::INFINITY)),
                    *count,
                );
            }
            sample(out, name, "_sum", &m.labels, None, *sum);
            sample(out, name, "_count", &m.labels, None, *count);
        }
    }
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    extra: Option<(&str, f64)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
        close_sample(out, extra, !first, value);
        return;
    }
    out.push(' ');
    fmt_float(value, out);
    out.push('\n');
}

/// Every float sample of a metric with its complete label set (incl. `__name__`), the way
/// the exposition shows them: histograms and summaries expanded.
pub fn expand_samples(name: &str, m: &Metric, out: &mut Vec<(Vec<(String, String)>, f64)>) {
    let with = |suffix: &str, extra: Option<(&str, f64)>| {
        let mut l = Vec::with_capacity(m.labels.len() + 2);
        l.push(("__name__".to_owned(), format!("{name}{suffix}")));
        l.extend(m.labels.iter().cloned());
        if let Some((k, v)) = extra {
            l.push((k.to_owned(), float_string(v)));
            l.sort();
        }
        l
    };
    match &m.value {
        Value::Simple(v) => out.push((with("", None), *v)),
        Value::Summary {
            count,
            sum,
            quantiles,
        } => {
            for (q, v) in quantiles {
                out.push((with("", Some(("quantile", *q))), *v));
            }
            out.push((with("_sum", None), *sum));
            out.push((with("_count", None), *count));
        }
        Value::Histogram {
            count,
            sum,
            buckets,
            ..
        } => {
            for (le, c) in buckets {
                out.push((with("_bucket", Some(("le", *le))), *c));
            }
            if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
                out.push((with("_bucket", Some(("le", f64::INFINITY))), *count));
            }
            out.push((with("_sum", None), *sum));
            out.push((with("_count", None), *count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        for (f, want) in [
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "0"),
            (-1.0, "-1"),
            (1.7955312071782572e9, "1.7955312071782572e+09"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (12.25, "12.25"),
            (-3.5, "-3.5"),
            (1e21, "1e+21"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (100000.5, "100000.5"),
        ] {
            assert_eq!(float_string(f), want, "{f}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(is_valid_metric_name("a:b_c1"));
        assert!(!is_valid_metric_name("1a"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("a:b"));
    }
}

/// The canonical label block of a label set (sorted by name): `a="1",b="x\"y"`, exactly as
/// the exposition writes it between the braces. Stored instead of the label vector: it is
/// smaller, it is what rendering copies, and equal label sets give equal blocks.
pub fn label_block(labels: &[(String, String)]) -> Box<str> {
    let mut s = String::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        escape_label_value(v, &mut s);
        s.push('"');
    }
    s.into_boxed_str()
}

/// The identity of a series for duplicate detection: its label block without labels whose
/// value is empty (Prometheus treats an empty label as an absent one, so `{b="",job="a"}`
/// and `{job="a"}` are the same series to a scraper).
pub fn series_identity(block: &str) -> std::borrow::Cow<'_, str> {
    if !block.contains("=\"\"") {
        return std::borrow::Cow::Borrowed(block);
    }
    let mut out = String::with_capacity(block.len());
    for (k, v) in block_pairs(block).filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(v);
        out.push('"');
    }
    std::borrow::Cow::Owned(out)
}

/// Iterates the `(name, escaped value)` pairs of a label block.
fn block_pairs(block: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = block;
    std::iter::from_fn(move || {
        let (name, tail) = rest.split_once("=\"")?;
        let bytes = tail.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let value = &tail[..i.min(tail.len())];
        rest = tail.get(i + 1..).unwrap_or("");
        rest = rest.strip_prefix(',').unwrap_or(rest);
        Some((name, value))
    })
}

fn unescape(v: &str) -> impl Iterator<Item = char> + '_ {
    let mut chars = v.chars();
    std::iter::from_fn(move || {
        let c = chars.next()?;
        if c != '\\' {
            return Some(c);
        }
        Some(match chars.next() {
            Some('n') => '\n',
            Some(other) => other,
            None => '\\',
        })
    })
}

/// The labels of a block, unescaped.
pub fn parse_label_block(block: &str) -> Vec<(String, String)> {
    block_pairs(block)
        .map(|(k, v)| (k.to_owned(), unescape(v).collect()))
        .collect()
}

/// The sort key of a label block: its values, unescaped, in label-name order. Comparing
/// keys (shorter first, then element-wise) is [`go_metric_order`].
pub fn block_sort_key(block: &str) -> Vec<std::borrow::Cow<'_, str>> {
    block_pairs(block)
        .map(|(_, v)| {
            if v.contains('\\') {
                std::borrow::Cow::Owned(unescape(v).collect())
            } else {
                std::borrow::Cow::Borrowed(v)
            }
        })
        .collect()
}

/// [`block_sort_key`] appended to `out` (one arena for many keys).
pub fn block_sort_key_into<'a>(block: &'a str, out: &mut Vec<std::borrow::Cow<'a, str>>) {
    for (_, v) in block_pairs(block) {
        out.push(if v.contains('\\') {
            std::borrow::Cow::Owned(unescape(v).collect())
        } else {
            std::borrow::Cow::Borrowed(v)
        });
    }
}

/// Compares two [`block_sort_key`]s.
pub fn key_order(a: &[std::borrow::Cow<'_, str>], b: &[std::borrow::Cow<'_, str>]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// [`go_metric_order`] on label blocks.
pub fn block_go_order(a: &str, b: &str) -> Ordering {
    let (na, nb) = (block_pairs(a).count(), block_pairs(b).count());
    na.cmp(&nb).then_with(|| {
        for ((_, x), (_, y)) in block_pairs(a).zip(block_pairs(b)) {
            if x == y {
                continue;
            }
            match unescape(x).cmp(unescape(y)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    })
}

/// Writes one metric's exposition lines from its label block.
pub fn render_block(name: &str, block: &str, value: &Value, out: &mut String) {
    match value {
        Value::Simple(v) => block_sample(out, name, "", block, None, *v),
        Value::Summary {
            count,
            sum,
            quantiles,
        } => {
            for (q, v) in quantiles {
                block_sample(out, name, "", block, Some(("quantile", *q)), *v);
            }
            block_sample(out, name, "_sum", block, None, *sum);
            block_sample(out, name, "_count", block, None, *count);
        }
        Value::Histogram {
            count,
            sum,
            buckets,
            ..
        } => {
            for (le, c) in buckets {
                block_sample(out, name, "_bucket", block, Some(("le", *le)), *c);
            }
            if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
                block_sample(
                    out,
                    name,
                    "_bucket",
                    block,
                    Some(("le", f64::INFINITY)),
                    *count,
                );
            }
            block_sample(out, name, "_sum", block, None, *sum);
            block_sample(out, name, "_count", block, None, *count);
        }
    }
}

fn block_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    block: &str,
    extra: Option<(&str, f64)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !block.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(block);
        close_sample(out, extra, !block.is_empty(), value);
        return;
    }
    out.push(' ');
    fmt_float(value, out);
    out.push('\n');
}

/// Ends a sample line whose `{` is open: the optional `le`/`quantile` label (after a comma
/// when labels precede it), `}`, the value and the newline.
fn close_sample(out: &mut String, extra: Option<(&str, f64)>, comma: bool, value: f64) {
    if let Some((k, v)) = extra {
        if comma {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        fmt_float(v, out);
        out.push('"');
    }
    out.push_str("} ");
    fmt_float(value, out);
    out.push('\n');
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn label_blocks_round_trip_and_sort_like_label_vectors() {
        let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let sets = [
            l(&[("a", "x\"y\\z\nw"), ("b", "")]),
            l(&[("a", "x"), ("b", "2")]),
            l(&[("a", "x\n"), ("b", "1")]),
            l(&[("a", "x\\"), ("b", "1")]),
            l(&[("a", "x")]),
            l(&[]),
        ];
        assert_eq!(
            series_identity(&label_block(&l(&[("a", ""), ("b", "x=\"\""), ("c", "")]))),
            "b=\"x=\\\"\\\"\""
        );
        for s in &sets {
            assert_eq!(&parse_label_block(&label_block(s)), s);
            for t in &sets {
                assert_eq!(
                    block_go_order(&label_block(s), &label_block(t)),
                    go_metric_order(s, t),
                    "{s:?} vs {t:?}"
                );
                let (bs, bt) = (label_block(s), label_block(t));
                assert_eq!(
                    key_order(&block_sort_key(&bs), &block_sort_key(&bt)),
                    go_metric_order(s, t),
                    "{s:?} vs {t:?}"
                );
            }
        }
        let m = Metric {
            labels: sets[0].clone(),
            value: Value::Histogram {
                count: 2.0,
                sum: 1.0,
                buckets: vec![(0.5, 1.0)],
                native: None,
            },
            timestamp_ms: None,
        };
        let (mut a, mut b) = (String::new(), String::new());
        render_metric("h", &m, &mut a);
        render_block("h", &label_block(&m.labels), &m.value, &mut b);
        assert_eq!(a, b);
    }
}
