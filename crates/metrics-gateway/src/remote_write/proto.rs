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

/// Groups `samples` (in arrival order) into series and encodes the compressed body.
pub fn encode(samples: &[(Labels, i64, f64)]) -> Vec<u8> {
    let mut index: std::collections::HashMap<&Labels, usize> = std::collections::HashMap::new();
    let mut req = WriteRequest::default();
    for (l, t, v) in samples {
        let i = *index.entry(l).or_insert_with(|| {
            req.timeseries.push(TimeSeries {
                // `Labels` is sorted by name already, as the protocol requires.
                labels: l
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: Vec::new(),
            });
            req.timeseries.len() - 1
        });
        req.timeseries[i].samples.push(Sample {
            value: *v,
            timestamp: *t,
        });
    }
    compress(&req.encode_to_vec())
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
    fn series_are_grouped_with_sorted_labels_and_round_trip() {
        let a = Labels::new([("job", "j"), ("__name__", "a")]);
        let b = Labels::new([("__name__", "b")]);
        let body = encode(&[(a.clone(), 1, 1.5), (b, 1, 2.0), (a, 2, 3.0)]);
        let req = decode(&body).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<&str> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(
            req.timeseries[0].samples,
            vec![
                Sample {
                    value: 1.5,
                    timestamp: 1
                },
                Sample {
                    value: 3.0,
                    timestamp: 2
                }
            ]
        );
    }
}
