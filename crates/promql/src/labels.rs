//! Label sets and label matchers.

use std::fmt;

use regex::Regex;

/// The reserved label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A sorted set of label pairs; empty values are never stored (Prometheus treats an empty
/// value as an absent label).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(std::sync::Arc<Vec<(String, String)>>);

impl Labels {
    /// Builds a label set from pairs in any order; later duplicates win, empty values are dropped.
    pub fn new<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut l = Labels::default();
        for (k, v) in pairs {
            l.set(&k.into(), &v.into());
        }
        l
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The value of `name` or "".
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => {
                if value.is_empty() {
                    std::sync::Arc::make_mut(&mut self.0).remove(i);
                } else if self.0[i].1 != value {
                    std::sync::Arc::make_mut(&mut self.0)[i].1 = value.to_string();
                }
            }
            Err(i) => {
                if !value.is_empty() {
                    std::sync::Arc::make_mut(&mut self.0)
                        .insert(i, (name.to_string(), value.to_string()));
                }
            }
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            std::sync::Arc::make_mut(&mut self.0).remove(i);
        }
    }

    /// The metric name, if any.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        let mut l = self.clone();
        l.remove(METRIC_NAME);
        l
    }

    /// Keeps only the listed labels.
    pub fn keep(&self, names: &[String]) -> Labels {
        if self.0.iter().all(|(k, _)| names.iter().any(|n| n == k)) {
            return self.clone();
        }
        Labels(std::sync::Arc::new(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        ))
    }

    /// Drops the listed labels.
    pub fn drop_names(&self, names: &[String]) -> Labels {
        if !self.0.iter().any(|(k, _)| names.iter().any(|n| n == k)) {
            return self.clone();
        }
        Labels(std::sync::Arc::new(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        ))
    }

    /// Iterates over (name, value) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Approximate heap size in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 48).sum()
    }
}

/// Quotes a string the way Go's `strconv.Quote` does for printable text.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_legacy_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Labels {
    /// Prometheus's `labels.String()` form: `{__name__="up", job="x"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_legacy_label_name(k) {
                f.write_str(k)?;
            } else {
                f.write_str(&go_quote(k))?;
            }
            write!(f, "={}", go_quote(v))?;
        }
        f.write_str("}")
    }
}

/// A regular expression of a matcher that does not compile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {source}")]
pub struct RegexError {
    /// The pattern as written.
    pub pattern: String,
    /// What the regex engine said.
    #[source]
    pub source: regex::Error,
}

/// Compiles `^(?s:pattern)$`, reusing earlier compilations (rules run the same selectors
/// every cycle). The cache is bounded.
fn compile_anchored(pattern: &str) -> Result<Regex, RegexError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock() {
        if let Some(r) = c.get(pattern) {
            return Ok(r.clone());
        }
    }
    let re = Regex::new(&format!("^(?s:{pattern})$")).map_err(|source| RegexError {
        pattern: pattern.to_string(),
        source,
    })?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 4096 {
            c.clear();
        }
        c.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

/// How a matcher compares a label value.
#[derive(Clone, Debug)]
pub enum MatchKind {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex(Regex),
    /// `!~` (fully anchored)
    NotRegex(Regex),
}

/// One label matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub kind: MatchKind,
    /// The value or pattern as written.
    pub value: String,
}

impl Matcher {
    /// An equality matcher.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_string(),
            kind: MatchKind::Equal,
            value: value.to_string(),
        }
    }

    /// Builds a regex matcher; the pattern is anchored at both ends and `.` matches newlines.
    pub fn regex(name: &str, pattern: &str, negate: bool) -> Result<Self, RegexError> {
        let re = compile_anchored(pattern)?;
        Ok(Matcher {
            name: name.to_string(),
            kind: if negate {
                MatchKind::NotRegex(re)
            } else {
                MatchKind::Regex(re)
            },
            value: pattern.to_string(),
        })
    }

    /// Whether a label value (empty when absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match &self.kind {
            MatchKind::Equal => v == self.value,
            MatchKind::NotEqual => v != self.value,
            MatchKind::Regex(r) => r.is_match(v),
            MatchKind::NotRegex(r) => !r.is_match(v),
        }
    }

    /// Whether the matcher matches the empty string (i.e. series without the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether a label set satisfies this matcher.
    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get_or_empty(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent_and_display_is_go_style() {
        let l = Labels::new([("b", "2"), ("a", ""), ("__name__", "up")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.to_string(), r#"{__name__="up", b="2"}"#);
    }

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() {
        let m = Matcher::regex("a", "fo.", false).unwrap();
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(m.matches("fo\n"));
    }
}
