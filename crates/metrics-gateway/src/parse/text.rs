//! The text exposition format 0.0.4, parsed as strictly as Go's `expfmt.TextParser` (which
//! the Pushgateway uses): every line ends with `\n` (so CRLF and a missing final newline are
//! errors), `# TYPE` comes before a family's samples and at most once, histogram and summary
//! samples (`_bucket`/`_sum`/`_count`, `quantile`/`le`) fold into one metric per label set.
//! Timestamps are parsed here and rejected later by the store, as the Pushgateway does.

use std::collections::HashMap;

use crate::{
    limits::{LabelLimits, LimitError},
    model::{Family, Metric, MetricType, Value},
};

use super::ParseError;

/// Parses a whole push body without label limits. Families keep the order of their first
/// appearance.
pub fn parse(input: &[u8]) -> Result<Vec<Family>, ParseError> {
    parse_with(input, LabelLimits::NONE)
}

/// Parses a whole push body, refusing a series over `limits` as soon as its labels are
/// read (the cost of a refused series is bounded by the limit, not by its size).
pub fn parse_with(input: &[u8], limits: LabelLimits) -> Result<Vec<Family>, ParseError> {
    let text = std::str::from_utf8(input).map_err(|e| ParseError::Text {
        line: line_of(input, e.valid_up_to()),
        message: "invalid UTF-8".into(),
    })?;
    let mut p = Parser {
        limits,
        ..Parser::default()
    };
    let mut rest = text;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some((line, tail)) = rest.split_once('\n') else {
            return Err(ParseError::Text {
                line: line_no,
                message: "unexpected end of input stream".into(),
            });
        };
        rest = tail;
        p.line(line).map_err(|message| match p.limit_error.take() {
            Some(error) => ParseError::Limit {
                position: format!("line {line_no}"),
                error,
            },
            None => ParseError::Text {
                line: line_no,
                message,
            },
        })?;
    }
    Ok(p.finish())
}

fn line_of(input: &[u8], pos: usize) -> usize {
    input[..pos].iter().filter(|b| **b == b'\n').count() + 1
}

#[derive(Default)]
struct Fam {
    family: Family,
    type_set: bool,
    help_set: bool,
    /// Label set → index into `family.metrics`, for histograms and summaries.
    folded: HashMap<Vec<(String, String)>, usize>,
}

#[derive(Default)]
struct Parser {
    fams: Vec<Fam>,
    by_name: HashMap<String, usize>,
    limits: LabelLimits,
    /// Set when a line failed on a limit (its message is also the line's error).
    limit_error: Option<LimitError>,
}

impl Default for Family {
    fn default() -> Self {
        Family {
            name: String::new(),
            help: None,
            kind: MetricType::Untyped,
            metrics: Vec::new(),
        }
    }
}

/// What a sample name means within its family.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Plain,
    Sum,
    Count,
    Bucket,
}

fn blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_blank(&mut self) {
        while self.i < self.s.len() && blank(self.s[self.i]) {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.i < self.s.len() && !blank(self.s[self.i]) {
            self.i += 1;
        }
        // Split points are ASCII, so the slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }
    fn take_while(&mut self, f: impl Fn(u8, bool) -> bool) -> &'a str {
        let start = self.i;
        while self.i < self.s.len() && f(self.s[self.i], self.i == start) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }
    fn rest(&self) -> &'a str {
        std::str::from_utf8(&self.s[self.i.min(self.s.len())..]).unwrap_or_default()
    }
}

fn metric_name_char(c: u8, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || (!first && c.is_ascii_digit())
}

fn label_name_char(c: u8, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || (!first && c.is_ascii_digit())
}

/// Parses a sample value like Go's `strconv.ParseFloat` as the text parser uses it.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains(['p', 'P', '_']) {
        return None;
    }
    s.parse().ok()
}

impl Parser {
    /// The family a sample or comment named `name` belongs to, creating it when new (the
    /// `_sum`/`_count`/`_bucket` suffixes fold into a declared summary or histogram).
    fn family_for(&mut self, name: &str) -> (usize, Role) {
        if let Some(&i) = self.by_name.get(name) {
            return (i, Role::Plain);
        }
        for (suffix, role) in [
            ("_sum", Role::Sum),
            ("_count", Role::Count),
            ("_bucket", Role::Bucket),
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(&i) = self.by_name.get(base) {
                    let kind = self.fams[i].family.kind;
                    let folds = match role {
                        Role::Bucket => kind == MetricType::Histogram,
                        _ => kind == MetricType::Histogram || kind == MetricType::Summary,
                    };
                    if folds && self.fams[i].type_set {
                        return (i, role);
                    }
                }
            }
        }
        let i = self.fams.len();
        self.fams.push(Fam {
            family: Family {
                name: name.to_owned(),
                ..Family::default()
            },
            ..Fam::default()
        });
        self.by_name.insert(name.to_owned(), i);
        (i, Role::Plain)
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        let mut c = Cursor {
            s: line.as_bytes(),
            i: 0,
        };
        c.skip_blank();
        match c.peek() {
            None => Ok(()),
            Some(b'#') => {
                c.i += 1;
                self.comment(c)
            }
            Some(_) => self.sample(c),
        }
    }

    fn comment(&mut self, mut c: Cursor<'_>) -> Result<(), String> {
        c.skip_blank();
        let keyword = c.token();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        c.skip_blank();
        if c.peek().is_none() {
            // `# HELP` alone is an ordinary comment.
            return Ok(());
        }
        let name = c.take_while(metric_name_char);
        if name.is_empty() || c.peek().is_some_and(|b| !blank(b)) {
            return Err(format!("invalid metric name in comment: {:?}", c.rest()));
        }
        c.skip_blank();
        let (idx, _) = self.family_for(name);
        let fam = &mut self.fams[idx];
        if keyword == "HELP" {
            if fam.help_set {
                return Err(format!("second HELP line for metric name {name:?}"));
            }
            fam.help_set = true;
            fam.family.help = Some(unescape_help(c.rest())?);
        } else {
            if fam.type_set || !fam.family.metrics.is_empty() {
                return Err(format!(
                    "second TYPE line for metric name {name:?}, or TYPE reported after samples"
                ));
            }
            let word = c.token();
            c.skip_blank();
            if c.peek().is_some() {
                return Err(format!("spurious string after metric type: {:?}", c.rest()));
            }
            fam.family.kind = MetricType::from_text(word)
                .ok_or_else(|| format!("unknown metric type {word:?}"))?;
            fam.type_set = true;
        }
        Ok(())
    }

    fn sample(&mut self, mut c: Cursor<'_>) -> Result<(), String> {
        let name = c.take_while(metric_name_char);
        if name.is_empty() {
            return Err(format!("invalid metric name {:?}", c.rest()));
        }
        let (idx, role) = self.family_for(name);
        self.fams[idx].type_set = true;
        let kind = self.fams[idx].family.kind;
        c.skip_blank();
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut special: Option<f64> = None;
        if c.peek() == Some(b'{') {
            c.i += 1;
            loop {
                c.skip_blank();
                if c.peek() == Some(b'}') {
                    c.i += 1;
                    break;
                }
                let lname = c.take_while(label_name_char);
                if lname.is_empty() {
                    return Err(format!("invalid label name for metric {name:?}"));
                }
                c.skip_blank();
                if c.peek() != Some(b'=') {
                    return Err(format!(
                        "expected '=' after label name {lname:?} of metric {name:?}"
                    ));
                }
                c.i += 1;
                c.skip_blank();
                if c.peek() != Some(b'"') {
                    return Err(format!(
                        "expected '\"' at start of the value of label {lname:?} of metric {name:?}"
                    ));
                }
                c.i += 1;
                let value = label_value(&mut c)?;
                if lname == "__name__" {
                    return Err(format!("label name {lname:?} is reserved"));
                }
                let is_special = (kind == MetricType::Summary && lname == "quantile")
                    || (kind == MetricType::Histogram && lname == "le");
                if is_special {
                    let f = parse_float(&value).ok_or_else(|| {
                        format!("expected float as value for {lname:?} label, got {value:?}")
                    })?;
                    special = Some(f);
                } else {
                    let checked = self
                        .limits
                        .check_label(name, &labels, lname, &value)
                        .and_then(|()| {
                            labels.push((lname.to_owned(), value));
                            self.limits.check_count(name, &labels)
                        });
                    if let Err(e) = checked {
                        let message = e.to_string();
                        self.limit_error = Some(e);
                        return Err(message);
                    }
                }
                c.skip_blank();
                match c.peek() {
                    Some(b',') => c.i += 1,
                    Some(b'}') => {
                        c.i += 1;
                        break;
                    }
                    _ => {
                        return Err(format!(
                            "unexpected end of label value for label {lname:?} of metric {name:?}"
                        ))
                    }
                }
            }
            c.skip_blank();
        }
        let vtok = c.token();
        let value =
            parse_float(vtok).ok_or_else(|| format!("expected float as value, got {vtok:?}"))?;
        c.skip_blank();
        let mut timestamp = None;
        if c.peek().is_some() {
            let ttok = c.token();
            timestamp = Some(
                ttok.parse::<i64>()
                    .map_err(|_| format!("expected integer as timestamp, got {ttok:?}"))?,
            );
            c.skip_blank();
            if c.peek().is_some() {
                return Err(format!("spurious string after timestamp: {:?}", c.rest()));
            }
        }
        // Sorted, duplicate names are neighbours: linear in the labels, however many.
        labels.sort();
        if labels.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(format!("duplicate label names for metric {name:?}"));
        }
        let fam = &mut self.fams[idx];
        match kind {
            MetricType::Summary | MetricType::Histogram => {
                let i = match fam.folded.get(&labels) {
                    Some(&i) => i,
                    None => {
                        let i = fam.family.metrics.len();
                        fam.family.metrics.push(Metric {
                            labels: labels.clone(),
                            value: if kind == MetricType::Summary {
                                Value::Summary {
                                    count: 0.0,
                                    sum: 0.0,
                                    quantiles: Vec::new(),
                                }
                            } else {
                                Value::Histogram {
                                    count: 0.0,
                                    sum: 0.0,
                                    buckets: Vec::new(),
                                    native: None,
                                }
                            },
                            timestamp_ms: None,
                        });
                        fam.folded.insert(labels, i);
                        i
                    }
                };
                let m = &mut fam.family.metrics[i];
                if timestamp.is_some() {
                    m.timestamp_ms = timestamp;
                }
                match (&mut m.value, role) {
                    (Value::Summary { sum, .. } | Value::Histogram { sum, .. }, Role::Sum) => {
                        *sum = value
                    }
                    (
                        Value::Summary { count, .. } | Value::Histogram { count, .. },
                        Role::Count,
                    ) => *count = go_uint(value),
                    (Value::Summary { quantiles, .. }, Role::Plain) => {
                        let q = special.ok_or_else(|| {
                            format!("summary sample {name:?} has no \"quantile\" label")
                        })?;
                        quantiles.push((q, value));
                    }
                    (Value::Histogram { buckets, .. }, Role::Bucket) => {
                        let le = special.ok_or_else(|| {
                            format!("histogram bucket {name:?} has no \"le\" label")
                        })?;
                        buckets.push((le, go_uint(value)));
                    }
                    _ => {
                        return Err(format!(
                            "sample {name:?} does not fit the {} family {:?}",
                            kind.as_text(),
                            fam.family.name
                        ))
                    }
                }
            }
            _ => fam.family.metrics.push(Metric {
                labels,
                value: Value::Simple(value),
                timestamp_ms: timestamp,
            }),
        }
        Ok(())
    }

    fn finish(self) -> Vec<Family> {
        self.fams
            .into_iter()
            .map(|f| f.family)
            .filter(|f| !f.metrics.is_empty())
            .collect()
    }
}

/// Counts are unsigned integers in the data model; Go truncates the parsed float.
fn go_uint(v: f64) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v.trunc()
    } else {
        v
    }
}

fn label_value(c: &mut Cursor<'_>) -> Result<String, String> {
    let mut out = Vec::new();
    loop {
        match c.peek() {
            None => return Err("label value is not terminated by '\"'".into()),
            Some(b'"') => {
                c.i += 1;
                break;
            }
            Some(b'\\') => {
                c.i += 1;
                match c.peek() {
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'"') => out.push(b'"'),
                    Some(b'n') => out.push(b'\n'),
                    other => {
                        return Err(format!(
                            "invalid escape sequence '\\{}'",
                            other.map(char::from).unwrap_or(' ')
                        ))
                    }
                }
                c.i += 1;
            }
            Some(b) => {
                out.push(b);
                c.i += 1;
            }
        }
    }
    // The input is valid UTF-8 and escapes are ASCII.
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in label value".to_owned())
}

fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => {
                    return Err(format!(
                        "invalid escape sequence '\\{}'",
                        other.unwrap_or(' ')
                    ))
                }
            }
        } else {
            out.push(ch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(
            err("x 1\r\n"),
            "text format parsing error in line 1: expected float as value, got \"1\\r\""
        );
        assert_eq!(
            err("x 1"),
            "text format parsing error in line 1: unexpected end of input stream"
        );
        assert!(err("y{a=\"1\",a=\"2\"} 1\n").contains("duplicate label names"));
        assert!(err("y{a=\"\\x\"} 1\n").contains("invalid escape sequence"));
        assert!(err("x 1\n# TYPE x gauge\n").contains("second TYPE"));
        assert!(err("# TYPE x foo\n").contains("unknown metric type"));
        assert!(err("x 1 2 3\n").contains("line 1: spurious string"));
        assert!(err("ok 1\nx 1 abc\n").contains("line 2: expected integer as timestamp"));
        assert!(err("x{__name__=\"y\"} 1\n").contains("reserved"));
    }

    #[test]
    fn parses_all_types() {
        let fams = parse(
            b"# HELP c A counter\\nwith newline.\n# TYPE c counter\nc{b=\"2\",a=\"1\"} 3\n\n  # just a comment\n\
# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n\
# TYPE s summary\ns{quantile=\"0.5\",x=\"y\"} 1\ns_sum{x=\"y\"} 2\ns_count{x=\"y\"} 3\nu NaN 1000\n",
        )
        .unwrap();
        assert_eq!(fams.len(), 4);
        assert_eq!(fams[0].help.as_deref(), Some("A counter\nwith newline."));
        assert_eq!(fams[0].kind, MetricType::Counter);
        assert_eq!(
            fams[0].metrics[0].labels,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            fams[1].metrics[0].value,
            Value::Histogram {
                count: 2.0,
                sum: 3.5,
                buckets: vec![(1.0, 1.0), (f64::INFINITY, 2.0)],
                native: None,
            }
        );
        assert_eq!(
            fams[2].metrics[0].value,
            Value::Summary {
                count: 3.0,
                sum: 2.0,
                quantiles: vec![(0.5, 1.0)]
            }
        );
        assert_eq!(fams[3].kind, MetricType::Untyped);
        assert_eq!(fams[3].metrics[0].timestamp_ms, Some(1000));
    }

    #[test]
    fn label_limits_refuse_a_series_at_the_first_label_over_them() {
        let limits = LabelLimits {
            max_labels_per_series: 2,
            max_label_name_length: 8,
            max_label_value_length: 4,
        };
        assert!(parse_with(b"x{a=\"1\",b=\"2\"} 1\n", limits).is_ok());
        let e = parse_with(b"ok 1\nx{a=\"1\",b=\"2\",c=\"3\"} 1\n", limits).unwrap_err();
        let ParseError::Limit { position, error } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (position.as_str(), error.kind()),
            ("line 2", "labels_per_series")
        );
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_with(b"x{a=\"12345\"} 1\n", limits).unwrap_err();
        assert!(e.to_string().contains("value of 5 bytes"), "{e}");
        // Duplicates are still found among many labels (sorted, not compared pairwise).
        let mut body = String::from("y{");
        for i in 0..10_000 {
            body.push_str(&format!("l{i}=\"v\","));
        }
        body.push_str("l5=\"w\"} 1\n");
        assert!(err(&body).contains("duplicate label names"));
    }

    #[test]
    fn suffixes_without_declared_type_are_their_own_families() {
        let fams = parse(b"h_count 1\nh_sum 2\n").unwrap();
        assert_eq!(fams.len(), 2);
        assert_eq!(fams[0].name, "h_count");
    }
}
