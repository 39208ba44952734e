//! Alibaba Cloud Log Service (SLS): `PutLogs`.
//!
//! `POST /logstores/{logstore}/shards/lb` on `{project}.{endpoint}` with a protobuf
//! `LogGroup` body (see [`proto`]), lz4-compressed (block format, no size prefix) with the
//! raw size in `x-log-bodyrawsize`, `Content-MD5` (upper-case hex) and a v1 (HMAC-SHA1) or
//! v4 (`SLS4-HMAC-SHA256`) signature, byte for byte as the official SDKs build it.
//!
//! One `LogGroup` per (topic, source, tags): topic `namespace:deploymentId:jobId`, source
//! the pod IP or host, tags `__pod__`, `__container__`, `__hostname__`. Errors are mapped by
//! SLS error code: quota errors back off long, signature/permission errors do not spin.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use md5::{Digest, Md5};
use sha2::Sha256;

use super::{alibaba, batch_id, Retry, SendError};
use crate::{
    config::{SignVersion, SlsConfig},
    record::Record,
};

/// The `LogGroup` protobuf of the SLS API (proto2), derived by hand.
pub mod proto {
    /// One key/value of a log.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogContent {
        /// Key.
        #[prost(string, required, tag = "1")]
        pub key: String,
        /// Value.
        #[prost(string, required, tag = "2")]
        pub value: String,
    }

    /// One log.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Log {
        /// Unix seconds.
        #[prost(uint32, required, tag = "1")]
        pub time: u32,
        /// Contents.
        #[prost(message, repeated, tag = "2")]
        pub contents: Vec<LogContent>,
        /// Nanosecond part of the time.
        #[prost(fixed32, optional, tag = "4")]
        pub time_ns: Option<u32>,
    }

    /// A tag of the group.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogTag {
        /// Key.
        #[prost(string, required, tag = "1")]
        pub key: String,
        /// Value.
        #[prost(string, required, tag = "2")]
        pub value: String,
    }

    /// The PutLogs body.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogGroup {
        /// Logs.
        #[prost(message, repeated, tag = "1")]
        pub logs: Vec<Log>,
        /// Reserved.
        #[prost(string, optional, tag = "2")]
        pub reserved: Option<String>,
        /// Topic.
        #[prost(string, optional, tag = "3")]
        pub topic: Option<String>,
        /// Source.
        #[prost(string, optional, tag = "4")]
        pub source: Option<String>,
        /// Tags.
        #[prost(message, repeated, tag = "6")]
        pub log_tags: Vec<LogTag>,
    }
}

/// A signed PutLogs request, ready to send (or to compare with the SDK's).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `/logstores/{logstore}/shards/lb`.
    pub path: String,
    /// Headers in the order sent (names as the SDK spells them).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

pub use super::alibaba::Signer;

/// Builds a signed PutLogs request for `group` at time `now` (`Date` / `x-log-date`).
pub fn build_request(
    host: &str,
    logstore: &str,
    group: &proto::LogGroup,
    compress: bool,
    signer: &Signer,
    now: chrono::DateTime<chrono::Utc>,
) -> Request {
    use prost::Message;
    build_request_raw(host, logstore, group.encode_to_vec(), compress, signer, now)
}

/// Builds a signed PutLogs request for an encoded `LogGroup`, compressed (when `compress`)
/// with the compressor that makes the official SDK's bytes, so that requests can be compared
/// with the SDK's byte for byte.
pub fn build_request_raw(
    host: &str,
    logstore: &str,
    raw: Vec<u8>,
    compress: bool,
    signer: &Signer,
    now: chrono::DateTime<chrono::Utc>,
) -> Request {
    let codec = if compress { Codec::Lz4Sdk } else { Codec::None };
    build_request_with(host, logstore, raw, codec, signer, now)
}

/// How a PutLogs body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Not compressed.
    None,
    /// LZ4 block, the same bytes as the official SDK's compressor (for comparisons).
    Lz4Sdk,
    /// LZ4 block from `lz4_flex`: a different but equally valid block (SLS decodes any),
    /// cheaper in CPU (figures in bench/README.md). What the sink sends.
    Lz4Fast,
}

/// Builds a signed PutLogs request for an encoded `LogGroup` with the given compression.
pub fn build_request_with(
    host: &str,
    logstore: &str,
    raw: Vec<u8>,
    codec: Codec,
    signer: &Signer,
    now: chrono::DateTime<chrono::Utc>,
) -> Request {
    let compress = codec != Codec::None;
    let raw_len = raw.len();
    let body = match codec {
        Codec::None => raw,
        Codec::Lz4Sdk => super::lz4::compress(&raw),
        Codec::Lz4Fast => lz4_flex::block::compress(&raw),
    };
    let path = format!("/logstores/{logstore}/shards/lb");
    let mut headers: Vec<(String, String)> = Vec::new();
    match signer.version {
        SignVersion::V1 => {
            let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            let md5 = hex::encode_upper(Md5::digest(&body));
            let mut signed: Vec<(String, String)> = vec![
                ("x-log-apiversion".into(), "0.6.0".into()),
                ("x-log-bodyrawsize".into(), raw_len.to_string()),
                ("x-log-signaturemethod".into(), "hmac-sha1".into()),
            ];
            if compress {
                signed.push(("x-log-compresstype".into(), "lz4".into()));
            }
            signed.sort();
            let mut sts = format!("POST\n{md5}\napplication/x-protobuf\n{date}\n");
            for (k, v) in &signed {
                sts.push_str(&format!("{k}:{v}\n"));
            }
            sts.push_str(&path);
            let sig = signer.v1_signature(&sts);
            headers.push((
                "Authorization".into(),
                format!("LOG {}:{sig}", signer.access_key_id),
            ));
            headers.push(("Content-Length".into(), body.len().to_string()));
            headers.push(("Content-MD5".into(), md5));
            headers.push(("Content-Type".into(), "application/x-protobuf".into()));
            headers.push(("Date".into(), date.clone()));
            headers.push(("Host".into(), host.into()));
            headers.extend(signed);
            headers.push(("x-log-date".into(), date));
        }
        SignVersion::V4 => {
            let datetime = now.format("%Y%m%dT%H%M%SZ").to_string();
            let date = now.format("%Y%m%d").to_string();
            let sha = hex::encode(Sha256::digest(&body));
            let mut canon: Vec<(String, String)> = vec![
                ("content-type".into(), "application/x-protobuf".into()),
                ("host".into(), host.into()),
                ("x-log-apiversion".into(), "0.6.0".into()),
                ("x-log-bodyrawsize".into(), raw_len.to_string()),
                ("x-log-content-sha256".into(), sha.clone()),
                ("x-log-date".into(), datetime.clone()),
            ];
            if compress {
                canon.push(("x-log-compresstype".into(), "lz4".into()));
            }
            canon.sort();
            let signed_names: Vec<&str> = canon.iter().map(|(k, _)| k.as_str()).collect();
            let mut creq = format!("POST\n{path}\n\n");
            for (k, v) in &canon {
                creq.push_str(&format!("{k}:{}\n", v.trim()));
            }
            creq.push('\n');
            creq.push_str(&signed_names.join(";"));
            creq.push('\n');
            creq.push_str(&sha);
            let scope = format!("{date}/{}/sls/aliyun_v4_request", signer.region);
            let sts = format!(
                "SLS4-HMAC-SHA256\n{datetime}\n{scope}\n{}",
                hex::encode(Sha256::digest(creq.as_bytes()))
            );
            let sig = signer.v4_signature(&date, "sls", &sts);
            headers.push((
                "Authorization".into(),
                format!(
                    "SLS4-HMAC-SHA256 Credential={}/{scope},Signature={sig}",
                    signer.access_key_id
                ),
            ));
            headers.push(("Content-Length".into(), body.len().to_string()));
            headers.push(("Content-Type".into(), "application/x-protobuf".into()));
            headers.push(("Host".into(), host.into()));
            for (k, v) in canon {
                if k.starts_with("x-log-") {
                    headers.push((k, v));
                }
            }
        }
    }
    Request {
        path,
        headers,
        body,
    }
}

/// What one `LogGroup` shares: topic, source, tags.
pub type GroupKey = (String, String, Vec<(String, String)>);

/// Splits a batch into log groups, one per (topic, source, tags), in first-seen order:
/// the key and the indexes of its records.
pub fn group_batch(batch: &[Record]) -> Vec<(GroupKey, Vec<usize>)> {
    let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
    // Streams seen in this batch → their group (most batches hold one or a few streams).
    let mut by_stream: Vec<(*const crate::record::StreamInfo, usize)> = Vec::new();
    for (n, r) in batch.iter().enumerate() {
        let ptr = std::sync::Arc::as_ptr(&r.stream);
        let idx = match by_stream.iter().find(|(p, _)| *p == ptr) {
            Some((_, i)) => *i,
            None => {
                let l = &r.stream.labels;
                let mut tags = Vec::new();
                if let Some(p) = &l.pod {
                    tags.push(("__pod__".to_string(), p.clone()));
                    tags.push(("__hostname__".to_string(), p.clone()));
                }
                if let Some(c) = &l.container {
                    tags.push(("__container__".to_string(), c.clone()));
                }
                let key = (l.topic(), l.source.clone().unwrap_or_default(), tags);
                let i = match groups.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    }
                };
                by_stream.push((ptr, i));
                i
            }
        };
        groups[idx].1.push(n);
    }
    groups
}

/// The log groups of a batch as protobuf messages (for tests and tools; the sink encodes
/// with [`encode_group`], which writes the same bytes without building them).
pub fn log_groups(batch: &[Record], utc_offset_seconds: i32) -> Vec<proto::LogGroup> {
    group_batch(batch)
        .into_iter()
        .map(|((topic, source, tags), idxs)| proto::LogGroup {
            logs: idxs
                .iter()
                .map(|&i| {
                    let r = &batch[i];
                    let (secs, nanos) = r.time(utc_offset_seconds);
                    proto::Log {
                        time: secs.clamp(0, i64::from(u32::MAX)) as u32,
                        contents: r
                            .contents()
                            .into_iter()
                            .map(|(k, v)| proto::LogContent {
                                key: k.to_string(),
                                value: v,
                            })
                            .collect(),
                        time_ns: Some(nanos),
                    }
                })
                .collect(),
            reserved: None,
            topic: Some(topic),
            source: Some(source),
            log_tags: tags
                .into_iter()
                .map(|(key, value)| proto::LogTag { key, value })
                .collect(),
        })
        .collect()
}

fn varint_len(v: usize) -> usize {
    let bits = usize::BITS - (v | 1).leading_zeros();
    (bits as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pair_len(k: &str, v: &str) -> usize {
    2 + varint_len(k.len()) + k.len() + varint_len(v.len()) + v.len()
}

fn put_pair(out: &mut Vec<u8>, tag: u8, k: &str, v: &str) {
    out.push(tag);
    put_varint(out, pair_len(k, v));
    out.push(0x0a);
    put_varint(out, k.len());
    out.extend_from_slice(k.as_bytes());
    out.push(0x12);
    put_varint(out, v.len());
    out.extend_from_slice(v.as_bytes());
}

/// Encodes one `LogGroup` straight from the records (no intermediate messages).
pub fn encode_group(
    batch: &[Record],
    key: &GroupKey,
    idxs: &[usize],
    utc_offset_seconds: i32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(idxs.iter().map(|&i| batch[i].event.data.len() + 256).sum());
    let texts: Vec<std::borrow::Cow<'_, str>> = idxs.iter().map(|&i| batch[i].text()).collect();
    let mut fields: Vec<(&'static str, &str)> = Vec::with_capacity(16);
    for (&i, text) in idxs.iter().zip(&texts) {
        let r = &batch[i];
        fields.clear();
        r.field_refs(text, &mut fields);
        let (secs, nanos) = r.time(utc_offset_seconds);
        let time = secs.clamp(0, i64::from(u32::MAX)) as usize;
        let log_len = 1
            + varint_len(time)
            + fields
                .iter()
                .map(|(k, v)| {
                    let n = pair_len(k, v);
                    1 + varint_len(n) + n
                })
                .sum::<usize>()
            + 5;
        out.push(0x0a);
        put_varint(&mut out, log_len);
        out.push(0x08);
        put_varint(&mut out, time);
        for (k, v) in &fields {
            put_pair(&mut out, 0x12, k, v);
        }
        out.push(0x25);
        out.extend_from_slice(&nanos.to_le_bytes());
    }
    for (tag, s) in [(0x1au8, &key.0), (0x22, &key.1)] {
        out.push(tag);
        put_varint(&mut out, s.len());
        out.extend_from_slice(s.as_bytes());
    }
    for (k, v) in &key.2 {
        put_pair(&mut out, 0x32, k, v);
    }
    out
}

/// Maps an SLS error response to a retry decision.
pub fn classify(status: u16, code: &str) -> Retry {
    match code {
        "WriteQuotaExceed"
        | "ShardWriteQuotaExceed"
        | "ExceedQuota"
        | "ProjectQuotaExceed"
        | "QuotaExceed"
        | "RequestTimeExpired" => Retry::Throttled,
        "SignatureNotMatch" | "Unauthorized" | "InvalidAccessKeyId" | "ProjectNotExist"
        | "LogStoreNotExist" | "ProjectForbidden" | "WriteForbidden" => Retry::Fatal,
        _ if status == 429 => Retry::Throttled,
        _ if status >= 500 || status == 408 => Retry::Backoff,
        _ => Retry::Fatal,
    }
}

/// The SLS sink.
#[derive(Debug)]
pub struct SlsSink {
    client: reqwest::Client,
    base: String,
    host: String,
    logstore: String,
    compress: bool,
    signer: Signer,
    utc_offset_seconds: i32,
    /// Groups of the batch in flight already accepted (a retry skips them).
    progress: Option<(u64, HashSet<usize>)>,
}

impl SlsSink {
    /// From the config; credentials from config, file or environment.
    pub fn from_config(
        c: &SlsConfig,
        utc_offset_seconds: i32,
    ) -> Result<Self, common::ConfigError> {
        let (id, secret) = c.credentials.resolve("sinks.sls")?;
        let (base, host) = alibaba::endpoint(&c.endpoint, &c.project);
        let client = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| common::ConfigError::Other(format!("sinks.sls: HTTP client: {e}")))?;
        Ok(Self {
            client,
            base,
            host,
            logstore: c.logstore.clone(),
            compress: c.compress,
            signer: Signer {
                access_key_id: id,
                access_key_secret: secret,
                version: c.signature,
                region: c.region.clone().unwrap_or_default(),
            },
            utc_offset_seconds,
            progress: None,
        })
    }

    /// Sends one PutLogs per log group of the batch.
    pub async fn send(&mut self, batch: &[Record]) -> Result<(), SendError> {
        let id = batch_id(batch);
        if self.progress.as_ref().is_none_or(|(b, _)| *b != id) {
            self.progress = Some((id, HashSet::new()));
        }
        for (i, (key, idxs)) in group_batch(batch).into_iter().enumerate() {
            if self.progress.as_ref().is_some_and(|(_, d)| d.contains(&i)) {
                continue;
            }
            let raw = encode_group(batch, &key, &idxs, self.utc_offset_seconds);
            let codec = if self.compress {
                Codec::Lz4Fast
            } else {
                Codec::None
            };
            let req = build_request_with(
                &self.host,
                &self.logstore,
                raw,
                codec,
                &self.signer,
                chrono::Utc::now(),
            );
            self.put(req).await?;
            if let Some((_, d)) = &mut self.progress {
                d.insert(i);
            }
        }
        self.progress = None;
        Ok(())
    }

    async fn put(&self, req: Request) -> Result<(), SendError> {
        let mut b = self.client.post(format!("{}{}", self.base, req.path));
        for (k, v) in &req.headers {
            if k != "Content-Length" {
                b = b.header(k.as_str(), v.as_str());
            }
        }
        let resp = b
            .body(req.body)
            .send()
            .await
            .map_err(|e| SendError::transport(&e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let request_id = resp
            .headers()
            .get("x-log-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let parsed: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_default();
        let code = parsed
            .get("errorCode")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("http_{status}"));
        let message = parsed
            .get("errorMessage")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        Err(SendError::new(
            classify(status, &code),
            code,
            self.signer.access_key_secret.redact_in(&format!(
                "HTTP {status}: {message} (request id {request_id})"
            )),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_pick_the_retry_policy() {
        assert_eq!(classify(403, "WriteQuotaExceed"), Retry::Throttled);
        assert_eq!(classify(403, "ShardWriteQuotaExceed"), Retry::Throttled);
        assert_eq!(classify(401, "SignatureNotMatch"), Retry::Fatal);
        assert_eq!(classify(401, "Unauthorized"), Retry::Fatal);
        assert_eq!(classify(500, "InternalServerError"), Retry::Backoff);
        assert_eq!(classify(503, "http_503"), Retry::Backoff);
        assert_eq!(classify(429, "x"), Retry::Throttled);
    }

    #[test]
    fn the_fast_codec_sends_a_valid_lz4_block_with_matching_headers() {
        let raw: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("2024-01-01 INFO line {} of the log\n", i % 97).into_bytes())
            .collect();
        let signer = Signer {
            access_key_id: "id".into(),
            access_key_secret: common::Secret::new("secret"),
            version: SignVersion::V1,
            region: String::new(),
        };
        let now = chrono::Utc::now();
        let req = build_request_with("h", "l", raw.clone(), Codec::Lz4Fast, &signer, now);
        let header = |k: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert!(req.body.len() < raw.len() / 4, "compressed");
        assert_eq!(
            lz4_flex::block::decompress(&req.body, raw.len()).unwrap(),
            raw
        );
        assert_eq!(header("x-log-bodyrawsize"), raw.len().to_string());
        assert_eq!(header("x-log-compresstype"), "lz4");
        assert_eq!(
            header("Content-MD5"),
            hex::encode_upper(Md5::digest(&req.body))
        );
        // Uncompressed: the raw bytes as they are, no compress type.
        let plain = build_request_with("h", "l", raw.clone(), Codec::None, &signer, now);
        assert_eq!(plain.body, raw);
        assert!(!plain.headers.iter().any(|(k, _)| k == "x-log-compresstype"));
    }

    #[test]
    fn hand_encoding_equals_prost() {
        use prost::Message;
        use std::sync::Arc;

        use crate::{
            multiline::Event,
            record::{Labels, StreamInfo},
        };
        let stream = |name: &str, pod: Option<&str>| {
            Arc::new(StreamInfo {
                path: format!("/l/{name}"),
                file_name: name.into(),
                relative: name.into(),
                labels: Labels {
                    namespace: Some("ns".into()),
                    job_id: Some("j".into()),
                    pod: pod.map(str::to_string),
                    ..Labels::default()
                },
            })
        };
        let (a, b) = (stream("a.log", Some("p")), stream("b.out", None));
        let rec = |s: &Arc<StreamInfo>, text: String| Record {
            stream: s.clone(),
            event: Event {
                stream: Arc::from(s.path.as_str()),
                file: 1,
                end: 1,
                data: text.into_bytes(),
            },
            read_at: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let batch = vec![
            rec(&a, "2024-01-01 00:00:00,123 INFO  x.Y [] - hi\n".into()),
            rec(&b, "plain stdout ünï\n".into()),
            rec(
                &a,
                format!(
                    "2024-01-01 00:00:01,000 ERROR x.Y [] - {}\n\tat z\n",
                    "m".repeat(300)
                ),
            ),
        ];
        let expected: Vec<Vec<u8>> = log_groups(&batch, 0)
            .iter()
            .map(|g| g.encode_to_vec())
            .collect();
        let got: Vec<Vec<u8>> = group_batch(&batch)
            .iter()
            .map(|(k, idxs)| encode_group(&batch, k, idxs, 0))
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got, expected);
    }
}
