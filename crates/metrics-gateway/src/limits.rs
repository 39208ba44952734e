//! Limits on what a push may carry and the store may hold, and the typed error a push gets
//! when it would exceed one.
//!
//! The limits in effect are computed per push (flags, then the config file, then the
//! defaults) and travel with it: the parsers check the label limits while reading a body
//! (so a series with 80,000 labels is refused at its 65th, before it costs memory), the
//! store checks them again on the final series (grouping key applied) and checks the series
//! limits. Every refusal is a [`LimitError`], whose [`LimitError::kind`] is the `limit`
//! label of `metrics_gateway_limit_rejections_total`.

use std::fmt::Write;

/// Default most labels one series may have (grouping labels and `instance` included).
/// Flink's reporter pushes at most 12 labels per series in the captured bodies
/// (`../shared/samples/flink`), plus about five grouping labels: 64 leaves room for user
/// scope variables.
pub const DEFAULT_MAX_LABELS_PER_SERIES: usize = 64;
/// Default longest label name, in bytes (Flink's longest: 16).
pub const DEFAULT_MAX_LABEL_NAME_LENGTH: usize = 256;
/// Default longest label value, in bytes. Flink's task names of SQL jobs chain every
/// operator's description and reach several kilobytes; 32 KiB leaves room for them.
pub const DEFAULT_MAX_LABEL_VALUE_LENGTH: usize = 32 * 1024;

/// Limits on the labels of one series. Zero means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelLimits {
    /// Labels per series (`__name__` not counted).
    pub max_labels_per_series: usize,
    /// Bytes of a label name.
    pub max_label_name_length: usize,
    /// Bytes of a label value (unescaped).
    pub max_label_value_length: usize,
}

impl LabelLimits {
    /// No limits.
    pub const NONE: LabelLimits = LabelLimits {
        max_labels_per_series: 0,
        max_label_name_length: 0,
        max_label_value_length: 0,
    };

    /// Checks the number of labels of a series (also while its labels are being read).
    pub fn check_count(&self, metric: &str, labels: &[(String, String)]) -> Result<(), LimitError> {
        if self.max_labels_per_series > 0 && labels.len() > self.max_labels_per_series {
            return Err(LimitError::LabelsPerSeries {
                series: describe(metric, labels),
                count: labels.len(),
                limit: self.max_labels_per_series,
            });
        }
        Ok(())
    }

    /// Checks one label's name and value lengths.
    pub fn check_label(
        &self,
        metric: &str,
        labels: &[(String, String)],
        name: &str,
        value: &str,
    ) -> Result<(), LimitError> {
        if self.max_label_name_length > 0 && name.len() > self.max_label_name_length {
            return Err(LimitError::LabelNameLength {
                series: describe(metric, labels),
                name: truncated(name),
                length: name.len(),
                limit: self.max_label_name_length,
            });
        }
        if self.max_label_value_length > 0 && value.len() > self.max_label_value_length {
            return Err(LimitError::LabelValueLength {
                series: describe(metric, labels),
                name: truncated(name),
                length: value.len(),
                limit: self.max_label_value_length,
            });
        }
        Ok(())
    }

    /// Checks a whole label set: count, then every name and value.
    pub fn check(&self, metric: &str, labels: &[(String, String)]) -> Result<(), LimitError> {
        self.check_count(metric, labels)?;
        if self.max_label_name_length == 0 && self.max_label_value_length == 0 {
            return Ok(());
        }
        for (k, v) in labels {
            self.check_label(metric, labels, k, v)?;
        }
        Ok(())
    }
}

/// Limits on one push and on the whole store. Zero means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Series (histogram and summary metrics count as one) in one group.
    pub max_series_per_group: usize,
    /// Series in the whole store.
    pub max_total_series: usize,
    /// Labels of one series.
    pub labels: LabelLimits,
}

/// A push refused because it would exceed a limit. Messages name the series (shortened),
/// the label, the size and the flag that sets the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the group would hold {series} series, more than the limit of {limit} per group (--push.max-series-per-group)")]
    SeriesPerGroup { series: usize, limit: usize },
    #[error("the gateway would hold {total} series, more than the limit of {limit} in total (--push.max-total-series)")]
    TotalSeries { total: usize, limit: usize },
    #[error("metric {series} has {count} labels, more than the limit of {limit} per series (--push.max-labels-per-series)")]
    LabelsPerSeries {
        series: String,
        count: usize,
        limit: usize,
    },
    #[error("metric {series} has a label name {name:?} of {length} bytes, longer than the limit of {limit} (--push.max-label-name-length)")]
    LabelNameLength {
        series: String,
        name: String,
        length: usize,
        limit: usize,
    },
    #[error("label {name:?} of metric {series} has a value of {length} bytes, longer than the limit of {limit} (--push.max-label-value-length)")]
    LabelValueLength {
        series: String,
        name: String,
        length: usize,
        limit: usize,
    },
}

impl LimitError {
    /// The `limit` label of `metrics_gateway_limit_rejections_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            LimitError::SeriesPerGroup { .. } => "series_per_group",
            LimitError::TotalSeries { .. } => "total_series",
            LimitError::LabelsPerSeries { .. } => "labels_per_series",
            LimitError::LabelNameLength { .. } => "label_name_length",
            LimitError::LabelValueLength { .. } => "label_value_length",
        }
    }
}

/// Longest piece of a name or value quoted in an error message.
const QUOTE_MAX: usize = 64;
/// Most labels of a series quoted in an error message.
const LABELS_MAX: usize = 5;

fn truncated(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_owned();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `name{a="1",b="2",...}` with at most a few labels and short values, so an error about a
/// huge series stays small.
pub fn describe(name: &str, labels: &[(String, String)]) -> String {
    let mut s = truncated(name);
    s.push('{');
    for (i, (k, v)) in labels.iter().take(LABELS_MAX).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}={:?}", truncated(k), truncated(v));
    }
    if labels.len() > LABELS_MAX {
        let _ = write!(s, ",... {} more", labels.len() - LABELS_MAX);
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("l{i}"), "v".to_owned())).collect()
    }

    #[test]
    fn limits_name_the_series_briefly_and_zero_means_none() {
        let l = LabelLimits {
            max_labels_per_series: 3,
            max_label_name_length: 4,
            max_label_value_length: 5,
        };
        assert!(l.check("m", &labels(3)).is_ok());
        let err = l.check("m", &labels(80_000)).unwrap_err();
        assert_eq!(err.kind(), "labels_per_series");
        let msg = err.to_string();
        assert!(
            msg.contains("80000 labels") && msg.contains("limit of 3"),
            "{msg}"
        );
        assert!(
            msg.contains("m{l0=\"v\"") && msg.contains("79995 more"),
            "{msg}"
        );
        assert!(msg.len() < 300, "{msg}");

        let long = vec![("abcde".to_owned(), "v".to_owned())];
        let err = l.check("m", &long).unwrap_err();
        assert_eq!(err.kind(), "label_name_length");
        assert!(err.to_string().contains("\"abcde\""), "{err}");
        let long = vec![("a".to_owned(), "x".repeat(100))];
        let err = l.check("m", &long).unwrap_err();
        assert_eq!(err.kind(), "label_value_length");
        assert!(err.to_string().contains("100 bytes"), "{err}");

        assert!(LabelLimits::NONE.check("m", &labels(1000)).is_ok());
    }
}
