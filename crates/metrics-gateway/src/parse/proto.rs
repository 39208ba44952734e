//! The protobuf exposition format: length-delimited `io.prometheus.client.MetricFamily`
//! messages, as client libraries push with
//! `Content-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited`.
//!
//! The messages are declared here by hand (field numbers from `metrics.proto` of
//! prometheus/client_model); fields we do not use (exemplars, created timestamps) are
//! skipped by prost as unknown fields.
//!
//! A histogram is native when it has a schema-bearing part: bucket spans, a zero
//! threshold or zero count (client libraries add an empty span to a native histogram
//! with no observations, so it is recognised too). Its buckets come as spans with
//! delta-encoded integer counts or absolute float counts; both are kept as absolute
//! counts in a [`promql_engine::FloatHistogram`], next to any classic buckets of the same
//! message.

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
pub struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
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
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    #[prost(double, optional, tag = "8")]
    pub zero_count_float: Option<f64>,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, packed = "true", tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(double, repeated, packed = "true", tag = "11")]
    pub negative_count: Vec<f64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, packed = "true", tag = "13")]
    pub positive_delta: Vec<i64>,
    #[prost(double, repeated, packed = "true", tag = "14")]
    pub positive_count: Vec<f64>,
}

/// Absolute counts from delta-encoded integer counts (each relative to the previous
/// bucket, the first to zero) or float counts.
fn absolute_counts(deltas: &[i64], counts: &[f64]) -> Vec<f64> {
    if deltas.is_empty() {
        return counts.to_vec();
    }
    let mut cur: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            cur = cur.saturating_add(*d);
            cur as f64
        })
        .collect()
}

/// The native part of a protobuf histogram, if it has one; `is_gauge` for a
/// GAUGE_HISTOGRAM family. The error says which field is inconsistent.
pub fn native_histogram(
    h: &Histogram,
    is_gauge: bool,
) -> Result<Option<promql_engine::FloatHistogram>, String> {
    use promql_engine::histogram::{from_spans, CounterResetHint, FloatHistogram, Span};
    let zero_count = h
        .zero_count_float
        .unwrap_or(h.zero_count.unwrap_or(0) as f64);
    let is_native = !h.positive_span.is_empty()
        || !h.negative_span.is_empty()
        || h.zero_threshold.unwrap_or(0.0) > 0.0
        || zero_count > 0.0;
    if !is_native {
        return Ok(None);
    }
    let spans = |s: &[BucketSpan]| -> Vec<Span> {
        s.iter()
            .map(|x| Span {
                offset: x.offset.unwrap_or(0),
                length: x.length.unwrap_or(0),
            })
            .collect()
    };
    let side = |name: &str, sp: &[BucketSpan], d: &[i64], c: &[f64]| {
        let counts = absolute_counts(d, c);
        let mut b = from_spans(&spans(sp), &counts).ok_or_else(|| {
            format!(
                "native histogram: {name} spans describe a different number of buckets than the {} counts given",
                counts.len()
            )
        })?;
        if b.iter().any(|x| x.1 < 0.0) {
            return Err(format!(
                "native histogram: negative count in a {name} bucket"
            ));
        }
        b.retain(|x| x.1 != 0.0);
        Ok::<_, String>(b)
    };
    let fh = FloatHistogram {
        schema: h.schema.unwrap_or(0),
        zero_threshold: h.zero_threshold.unwrap_or(0.0),
        zero_count,
        count: h
            .sample_count_float
            .unwrap_or(h.sample_count.unwrap_or(0) as f64),
        sum: h.sample_sum.unwrap_or(0.0),
        positive: side(
            "positive",
            &h.positive_span,
            &h.positive_delta,
            &h.positive_count,
        )?,
        negative: side(
            "negative",
            &h.negative_span,
            &h.negative_delta,
            &h.negative_count,
        )?,
        custom_values: Vec::new(),
        hint: if is_gauge {
            CounterResetHint::Gauge
        } else {
            CounterResetHint::Unknown
        },
    };
    fh.validate()
        .map_err(|e| format!("native histogram: {e}"))?;
    Ok(Some(fh))
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
        // A gauge histogram is kept as a histogram; its native part is marked a gauge.
        5 => MetricType::Histogram,
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
                let native = native_histogram(&h, mf.r#type == Some(5)).map_err(bad)?;
                Value::Histogram {
                    native: native.map(Box::new),
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

/// The protobuf message of a family (for `/metrics` when a scraper negotiates protobuf);
/// `native` gives the native histogram of a histogram metric, if it has one.
pub fn to_proto(
    f: &Family,
    native: impl Fn(&Metric) -> Option<promql_engine::FloatHistogram>,
) -> MetricFamily {
    let kind = match f.kind {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Summary => 2,
        MetricType::Untyped => 3,
        MetricType::Histogram => 4,
    };
    let metric = f
        .metrics
        .iter()
        .map(|m| {
            let mut pm = ProtoMetric {
                label: m
                    .labels
                    .iter()
                    .map(|(k, v)| LabelPair {
                        name: Some(k.clone()),
                        value: Some(v.clone()),
                    })
                    .collect(),
                timestamp_ms: m.timestamp_ms,
                ..Default::default()
            };
            match &m.value {
                Value::Simple(v) => match f.kind {
                    MetricType::Counter => pm.counter = Some(Counter { value: Some(*v) }),
                    MetricType::Gauge => pm.gauge = Some(Gauge { value: Some(*v) }),
                    _ => pm.untyped = Some(Untyped { value: Some(*v) }),
                },
                Value::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    pm.summary = Some(Summary {
                        sample_count: Some(*count as u64),
                        sample_sum: Some(*sum),
                        quantile: quantiles
                            .iter()
                            .map(|(q, v)| Quantile {
                                quantile: Some(*q),
                                value: Some(*v),
                            })
                            .collect(),
                    })
                }
                Value::Histogram {
                    count,
                    sum,
                    buckets,
                    ..
                } => {
                    let mut h = Histogram {
                        sample_count: Some(*count as u64),
                        sample_sum: Some(*sum),
                        bucket: buckets
                            .iter()
                            .filter(|(le, _)| *le != f64::INFINITY)
                            .map(|(le, c)| Bucket {
                                cumulative_count: Some(*c as u64),
                                upper_bound: Some(*le),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    };
                    if let Some(n) = native(m) {
                        set_native(&mut h, &n);
                    }
                    pm.histogram = Some(h);
                }
            }
            pm
        })
        .collect();
    MetricFamily {
        name: Some(f.name.clone()),
        help: f.help.clone(),
        r#type: Some(kind),
        metric,
    }
}

/// Writes the native part of a histogram: delta-encoded integer counts when every count
/// is a whole number (what client libraries send and every Prometheus reads), else float
/// counts. A histogram without buckets gets one empty span, as client libraries do, so
/// that it is still recognised as native.
fn set_native(h: &mut Histogram, n: &promql_engine::FloatHistogram) {
    let whole = |v: f64| v.fract() == 0.0 && (0.0..9.0e15).contains(&v);
    let integral = whole(n.count)
        && whole(n.zero_count)
        && n.positive.iter().chain(&n.negative).all(|b| whole(b.1));
    let spans = |s: Vec<promql_engine::histogram::Span>| -> Vec<BucketSpan> {
        s.into_iter()
            .map(|x| BucketSpan {
                offset: Some(x.offset),
                length: Some(x.length),
            })
            .collect()
    };
    let deltas = |c: &[f64]| -> Vec<i64> {
        let mut prev = 0i64;
        c.iter()
            .map(|v| {
                let v = *v as i64;
                let d = v - prev;
                prev = v;
                d
            })
            .collect()
    };
    let (ps, pc) = n.positive_spans();
    let (ns, nc) = n.negative_spans();
    h.schema = Some(n.schema);
    h.zero_threshold = Some(n.zero_threshold);
    if integral {
        h.zero_count = Some(n.zero_count as u64);
        h.positive_delta = deltas(&pc);
        h.negative_delta = deltas(&nc);
    } else {
        h.sample_count = None;
        h.sample_count_float = Some(n.count);
        h.zero_count_float = Some(n.zero_count);
        h.positive_count = pc;
        h.negative_count = nc;
    }
    h.positive_span = spans(ps);
    h.negative_span = spans(ns);
    if h.positive_span.is_empty() && h.negative_span.is_empty() {
        h.positive_span.push(BucketSpan {
            offset: Some(0),
            length: Some(0),
        });
    }
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
                buckets: vec![(0.5, 2.0)],
                native: None,
            }
        );
        assert!(parse(&[0x05, 0xff, 0xff]).is_err());
    }

    fn native_family(h: Histogram, kind: i32) -> MetricFamily {
        MetricFamily {
            name: Some("lat".into()),
            help: None,
            r#type: Some(kind),
            metric: vec![ProtoMetric {
                histogram: Some(h),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn native_histograms_are_decoded_from_spans_and_deltas_and_encoded_back() {
        let h = Histogram {
            sample_count: Some(7),
            sample_sum: Some(12.5),
            schema: Some(3),
            zero_threshold: Some(0.001),
            zero_count: Some(1),
            positive_span: vec![
                BucketSpan {
                    offset: Some(-1),
                    length: Some(2),
                },
                BucketSpan {
                    offset: Some(3),
                    length: Some(1),
                },
            ],
            // Absolute counts 2, 3, 1.
            positive_delta: vec![2, 1, -2],
            ..Default::default()
        };
        let fams = parse(&encode(&[native_family(h, 4)])).unwrap();
        let Value::Histogram {
            native: Some(n), ..
        } = &fams[0].metrics[0].value
        else {
            panic!("no native histogram: {:?}", fams[0].metrics[0].value)
        };
        assert_eq!(
            (n.schema, n.count, n.sum, n.zero_count),
            (3, 7.0, 12.5, 1.0)
        );
        assert_eq!(n.positive, vec![(-1, 2.0), (0, 3.0), (4, 1.0)]);
        // Encoding and decoding again gives the same histogram.
        let again = to_proto(&fams[0], |m| match &m.value {
            Value::Histogram { native, .. } => native.as_deref().cloned(),
            _ => None,
        });
        let back = parse(&encode(&[again])).unwrap();
        assert_eq!(back[0].metrics[0].value, fams[0].metrics[0].value);
    }

    #[test]
    fn inconsistent_native_histograms_are_refused_with_the_field_named() {
        let h = Histogram {
            sample_count: Some(1),
            schema: Some(0),
            positive_span: vec![BucketSpan {
                offset: Some(0),
                length: Some(3),
            }],
            positive_delta: vec![1],
            ..Default::default()
        };
        let e = parse(&encode(&[native_family(h, 4)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive spans describe"), "{e}");
        let h = Histogram {
            schema: Some(12),
            positive_span: vec![BucketSpan {
                offset: Some(0),
                length: Some(1),
            }],
            positive_delta: vec![1],
            ..Default::default()
        };
        let e = parse(&encode(&[native_family(h, 4)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 12"), "{e}");
        // A gauge histogram's native part is a gauge.
        let h = Histogram {
            zero_threshold: Some(0.5),
            zero_count: Some(2),
            ..Default::default()
        };
        let fams = parse(&encode(&[native_family(h, 5)])).unwrap();
        assert!(matches!(&fams[0].metrics[0].value,
            Value::Histogram { native: Some(n), .. }
                if n.hint == promql_engine::histogram::CounterResetHint::Gauge));
    }
}
