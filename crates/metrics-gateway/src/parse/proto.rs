//! The protobuf exposition format: length-delimited `io.prometheus.client.MetricFamily`
//! messages, as client libraries push with
//! `Content-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited`.
//!
//! The messages are declared here by hand (field numbers from `metrics.proto` of
//! prometheus/client_model); fields we do not use (exemplars, native histogram spans) are
//! skipped by prost as unknown fields.

use prost::Message;

use crate::{
    limits::LabelLimits,
    model::{Family, Metric, MetricType, Value},
};

use super::ParseError;

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Gauge {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Counter {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Quantile {
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Untyped {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    #[prost(double, optional, tag = "4")]
    pub cumulative_count_float: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "4")]
    pub sample_count_float: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtoMetric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Untyped>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    /// COUNTER=0, GAUGE=1, SUMMARY=2, UNTYPED=3, HISTOGRAM=4, GAUGE_HISTOGRAM=5.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<ProtoMetric>,
}

/// Whether a Content-Type header selects the delimited protobuf format (the same test as
/// the Pushgateway's: media type, `proto` and `encoding` parameters).
pub fn is_delimited_protobuf(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
        return false;
    }
    let (mut proto, mut encoding) = (false, false);
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "proto" => proto = v == "io.prometheus.client.MetricFamily",
                "encoding" => encoding = v == "delimited",
                _ => {}
            }
        }
    }
    proto && encoding
}

/// Decodes a stream of length-delimited MetricFamily messages without label limits.
pub fn parse(input: &[u8]) -> Result<Vec<Family>, ParseError> {
    parse_with(input, LabelLimits::NONE)
}

/// Decodes a stream of length-delimited MetricFamily messages, refusing series over
/// `limits`.
pub fn parse_with(mut input: &[u8], limits: LabelLimits) -> Result<Vec<Family>, ParseError> {
    let mut out = Vec::new();
    let mut index = 0;
    while !input.is_empty() {
        let mf = MetricFamily::decode_length_delimited(&mut input)
            .map_err(|e| ParseError::Protobuf(format!("message {index}: {e}")))?;
        out.push(convert(mf, index, limits)?);
        index += 1;
    }
    Ok(out)
}

/// Encodes families as a delimited stream (used by tests and the benchmark).
pub fn encode(families: &[MetricFamily]) -> Vec<u8> {
    let mut buf = Vec::new();
    for f in families {
        // Writing into a Vec cannot run out of space.
        let _ = f.encode_length_delimited(&mut buf);
    }
    buf
}

fn convert(mf: MetricFamily, index: usize, limits: LabelLimits) -> Result<Family, ParseError> {
    let name = mf.name.unwrap_or_default();
    let bad = |msg: String| ParseError::Protobuf(format!("message {index} ({name:?}): {msg}"));
    let kind = match mf.r#type.unwrap_or(0) {
        0 => MetricType::Counter,
        1 => MetricType::Gauge,
        2 => MetricType::Summary,
        3 => MetricType::Untyped,
        4 => MetricType::Histogram,
        t => return Err(bad(format!("unsupported metric type {t}"))),
    };
    let mut metrics = Vec::with_capacity(mf.metric.len());
    for m in mf.metric {
        let mut labels = Vec::with_capacity(m.label.len());
        for l in m.label {
            labels.push((l.name.unwrap_or_default(), l.value.unwrap_or_default()));
        }
        limits
            .check(&name, &labels)
            .map_err(|error| ParseError::Limit {
                position: format!("protobuf message {index}"),
                error,
            })?;
        labels.sort();
        let value = match kind {
            MetricType::Counter => Value::Simple(
                m.counter
                    .ok_or_else(|| bad("metric is not a COUNTER".into()))?
                    .value
                    .unwrap_or(0.0),
            ),
            MetricType::Gauge => Value::Simple(
                m.gauge
                    .ok_or_else(|| bad("metric is not a GAUGE".into()))?
                    .value
                    .unwrap_or(0.0),
            ),
            MetricType::Untyped => Value::Simple(
                m.untyped
                    .ok_or_else(|| bad("metric is not an UNTYPED".into()))?
                    .value
                    .unwrap_or(0.0),
            ),
            MetricType::Summary => {
                let s = m
                    .summary
                    .ok_or_else(|| bad("metric is not a SUMMARY".into()))?;
                Value::Summary {
                    count: s.sample_count.unwrap_or(0) as f64,
                    sum: s.sample_sum.unwrap_or(0.0),
                    quantiles: s
                        .quantile
                        .iter()
                        .map(|q| (q.quantile.unwrap_or(0.0), q.value.unwrap_or(0.0)))
                        .collect(),
                }
            }
            MetricType::Histogram => {
                let h = m
                    .histogram
                    .ok_or_else(|| bad("metric is not a HISTOGRAM".into()))?;
                Value::Histogram {
                    count: h
                        .sample_count_float
                        .unwrap_or(h.sample_count.unwrap_or(0) as f64),
                    sum: h.sample_sum.unwrap_or(0.0),
                    buckets: h
                        .bucket
                        .iter()
                        .map(|b| {
                            (
                                b.upper_bound.unwrap_or(0.0),
                                b.cumulative_count_float
                                    .unwrap_or(b.cumulative_count.unwrap_or(0) as f64),
                            )
                        })
                        .collect(),
                }
            }
        };
        metrics.push(Metric {
            labels,
            value,
            timestamp_ms: m.timestamp_ms,
        });
    }
    Ok(Family {
        name,
        help: mf.help,
        kind,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_detection_matches_the_pushgateway() {
        assert!(is_delimited_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        ));
        assert!(!is_delimited_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily"
        ));
        assert!(!is_delimited_protobuf("text/plain; version=0.0.4"));
    }

    #[test]
    fn round_trips_a_histogram_and_rejects_garbage() {
        let mf = MetricFamily {
            name: Some("h".into()),
            help: Some("help".into()),
            r#type: Some(4),
            metric: vec![ProtoMetric {
                label: vec![LabelPair {
                    name: Some("a".into()),
                    value: Some("b".into()),
                }],
                histogram: Some(Histogram {
                    sample_count: Some(3),
                    sample_sum: Some(1.5),
                    bucket: vec![Bucket {
                        cumulative_count: Some(2),
                        upper_bound: Some(0.5),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let fams = parse(&encode(&[mf.clone(), mf])).unwrap();
        assert_eq!(fams.len(), 2);
        assert_eq!(
            fams[0].metrics[0].value,
            Value::Histogram {
                count: 3.0,
                sum: 1.5,
                buckets: vec![(0.5, 2.0)]
            }
        );
        assert!(parse(&[0x05, 0xff, 0xff]).is_err());
    }
}
