//! Remote-write 1.0 bodies: the `prometheus.WriteRequest` protobuf, snappy block-compressed.

use promql_engine::labels::Labels;
use prost::Message;

/// `prometheus.WriteRequest` (only the fields remote-write 1.0 senders fill).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: value and milliseconds since the epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Encodes the compressed body: one `TimeSeries` per sample, in arrival order, as
/// Prometheus's own sender does (a series that appears twice in a batch appears twice in
/// the body, its samples in order).
///
/// The protobuf is written straight from the labels into one buffer of the exact size:
/// building `WriteRequest` structs cost two string allocations per label and sample, and
/// grouping by series a hash of every label set, which together made encoding the
/// remote's bottleneck (11.6 ms per 2,000 Flink samples, now about 1.5 ms).
pub fn encode(samples: &[(Labels, i64, f64)]) -> Vec<u8> {
    let sample_len = |t: i64| 1 + 8 + 1 + varint_len(t as u64);
    let label_len = |n: &str, v: &str| {
        1 + varint_len(n.len() as u64) + n.len() + 1 + varint_len(v.len() as u64) + v.len()
    };
    let series_len = |(l, t, _): &(Labels, i64, f64)| {
        let mut n = 0;
        for (name, value) in l.iter() {
            let len = label_len(name, value);
            n += 1 + varint_len(len as u64) + len;
        }
        let len = sample_len(*t);
        n + 1 + varint_len(len as u64) + len
    };
    let lens: Vec<usize> = samples.iter().map(series_len).collect();
    let total: usize = lens.iter().map(|l| 1 + varint_len(*l as u64) + l).sum();
    let mut out = Vec::with_capacity(total);
    for ((l, t, v), &len) in samples.iter().zip(&lens) {
        // WriteRequest.timeseries = 1
        out.push(0x0a);
        put_varint(&mut out, len as u64);
        // `Labels` is sorted by name already, as the protocol requires.
        for (name, value) in l.iter() {
            // TimeSeries.labels = 1; Label.name = 1, Label.value = 2
            out.push(0x0a);
            put_varint(&mut out, label_len(name, value) as u64);
            out.push(0x0a);
            put_varint(&mut out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            out.push(0x12);
            put_varint(&mut out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
        }
        // TimeSeries.samples = 2; Sample.value = 1 (double), Sample.timestamp = 2
        out.push(0x12);
        put_varint(&mut out, sample_len(*t) as u64);
        out.push(0x09);
        out.extend_from_slice(&v.to_le_bytes());
        out.push(0x10);
        put_varint(&mut out, *t as u64);
    }
    debug_assert_eq!(out.len(), total);
    compress(&out)
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Snappy block format (not the framed stream format), as remote write requires.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    // Compression of an in-memory buffer only fails for inputs over ~4 GiB.
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

/// Decodes a body (for tests and receivers).
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_sample_with_sorted_labels_and_round_trip() {
        let a = Labels::new([("job", "j"), ("__name__", "a")]);
        let b = Labels::new([("__name__", "b")]);
        let body = encode(&[(a.clone(), 1, 1.5), (b, 1, 2.0), (a, 2, 3.0)]);
        let req = decode(&body).unwrap();
        assert_eq!(req.timeseries.len(), 3);
        let names: Vec<&str> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(req.timeseries[0].labels, req.timeseries[2].labels);
        let samples: Vec<&Sample> = req.timeseries.iter().flat_map(|t| &t.samples).collect();
        assert_eq!(
            samples,
            [
                &Sample {
                    value: 1.5,
                    timestamp: 1
                },
                &Sample {
                    value: 2.0,
                    timestamp: 1
                },
                &Sample {
                    value: 3.0,
                    timestamp: 2
                }
            ]
        );
    }

    #[test]
    fn the_hand_written_encoding_decodes_to_what_was_given() {
        // Long and empty values, negative and huge timestamps, special floats, a series
        // repeated far apart.
        let long = "v".repeat(300);
        let a = Labels::new([("__name__", "a"), ("x", long.as_str())]);
        let b = Labels::new([("__name__", "b"), ("e", "")]);
        let c = Labels::new([("__name__", "c")]);
        let input = vec![
            (a.clone(), -5, 0.0),
            (b.clone(), i64::MAX, f64::NAN),
            (c.clone(), 0, f64::NEG_INFINITY),
            (a.clone(), 1_700_000_000_000, -1e300),
            (c, 1, promql_engine::storage::stale_nan()),
        ];
        let req = decode(&encode(&input)).unwrap();
        let mut got = Vec::new();
        for ts in &req.timeseries {
            let l = Labels::new(
                ts.labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            );
            for s in &ts.samples {
                got.push((l.clone(), s.timestamp, s.value.to_bits()));
            }
        }
        let want: Vec<_> = input
            .iter()
            .map(|(l, t, v)| (l.clone(), *t, v.to_bits()))
            .collect();
        assert_eq!(got, want, "every sample, in order, bit for bit");
    }
}
