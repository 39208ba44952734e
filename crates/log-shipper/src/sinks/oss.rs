//! Alibaba Cloud OSS: appendable objects with position tracking.
//!
//! Each input file becomes one object `{prefix}logs/{namespace}/{deploymentId}/{jobId}/{pod}/{file}`,
//! grown with `AppendObject` (`POST /{key}?append&position={p}`). The next position of
//! every object is checkpointed with the file offsets. When OSS answers `409
//! PositionNotEqualToLength`, its `x-oss-next-append-position` says where the object really
//! ends: if that is exactly past this very batch (an earlier attempt succeeded but its answer
//! or our checkpoint was lost) and a ranged `GET` shows these bytes there, the batch counts
//! as delivered, so nothing is doubled; otherwise the append is retried at the real end.
//!
//! Signature V1 (`OSS id:sig`, HMAC-SHA1) and V4 (`OSS4-HMAC-SHA256`), byte for byte as
//! the official SDKs (oss2 for V1, alibabacloud-oss-v2 for V4) sign.
//!
//! Apache OpenDAL's OSS service was considered: its appender learns the position from a
//! `stat` when it starts and does not expose it, so the position cannot be checkpointed
//! with the file offsets nor reconciled on a 409 as above; hence our own signing.

use std::{collections::BTreeMap, collections::HashSet, time::Duration};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use super::{alibaba, batch_id, Retry, SendError};
use crate::{
    config::{OssConfig, SignVersion},
    record::Record,
};

/// Characters kept as is in an object key in a URL (RFC 3986 unreserved plus `/`).
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A signed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `POST` / `PUT` / `GET`.
    pub method: &'static str,
    /// Path and query, e.g. `/logs/a.log?append&position=0`.
    pub path_and_query: String,
    /// Headers (without Content-Length and Host).
    pub headers: Vec<(String, String)>,
}

pub use super::alibaba::Signer;

/// OSS's canonical requests, signed with the shared [`Signer`].
impl Signer {
    /// Signs `method` on `/{bucket}/{key}` with sub-resources `query` (`[("append", None),
    /// ("position", Some("0"))]`) and `extra` headers (`Range`, ...; not signed in V1/V4 unless
    /// `x-oss-*`).
    pub fn sign(
        &self,
        method: &'static str,
        bucket: &str,
        key: &str,
        query: &[(&str, Option<String>)],
        extra: &[(&str, String)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Request {
        let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let mut q: Vec<(&str, Option<String>)> = query.to_vec();
        q.sort_by(|a, b| a.0.cmp(b.0));
        let query_str = q
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => (*k).to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        let encoded_key = utf8_percent_encode(key, KEY).to_string();
        let path_and_query = if query_str.is_empty() {
            format!("/{encoded_key}")
        } else {
            format!("/{encoded_key}?{query_str}")
        };
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        match self.version {
            SignVersion::V1 => {
                let mut resource = format!("/{bucket}/{key}");
                if !query_str.is_empty() {
                    resource.push('?');
                    resource.push_str(&query_str);
                }
                let sts = format!("{method}\n\n\n{date}\n{resource}");
                let sig = self.v1_signature(&sts);
                headers.push((
                    "authorization".into(),
                    format!("OSS {}:{sig}", self.access_key_id),
                ));
                headers.push(("date".into(), date));
            }
            SignVersion::V4 => {
                let datetime = now.format("%Y%m%dT%H%M%SZ").to_string();
                let day = now.format("%Y%m%d").to_string();
                let content_type = "application/octet-stream".to_string();
                let canon = [
                    ("content-type", content_type.clone()),
                    ("x-oss-content-sha256", "UNSIGNED-PAYLOAD".to_string()),
                    ("x-oss-date", datetime.clone()),
                ];
                let uri = format!(
                    "/{}/{}",
                    utf8_percent_encode(bucket, KEY),
                    utf8_percent_encode(key, KEY)
                );
                let mut creq = format!("{method}\n{uri}\n{query_str}\n");
                for (k, v) in &canon {
                    creq.push_str(&format!("{k}:{v}\n"));
                }
                creq.push_str("\n\nUNSIGNED-PAYLOAD");
                let scope = format!("{day}/{}/oss/aliyun_v4_request", self.region);
                let sts = format!(
                    "OSS4-HMAC-SHA256\n{datetime}\n{scope}\n{}",
                    hex::encode(Sha256::digest(creq.as_bytes()))
                );
                let sig = self.v4_signature(&day, "oss", &sts);
                headers.push((
                    "Authorization".into(),
                    format!(
                        "OSS4-HMAC-SHA256 Credential={}/{scope},Signature={sig}",
                        self.access_key_id
                    ),
                ));
                headers.push(("Content-Type".into(), content_type));
                headers.push(("Date".into(), date));
                headers.push(("x-oss-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
                headers.push(("x-oss-date".into(), datetime));
            }
        }
        Request {
            method,
            path_and_query,
            headers,
        }
    }
}

/// The code in an OSS XML error body (`<Code>...</Code>`).
pub fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

/// Maps an OSS error to a retry decision.
pub fn classify(status: u16, code: &str) -> Retry {
    match code {
        "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "AccessDenied"
        | "NoSuchBucket"
        | "ObjectNotAppendable" => Retry::Fatal,
        "RequestTimeTooSkewed" | "SlowDown" | "QpsLimitExceeded" => Retry::Throttled,
        _ if status == 429 || status == 503 => Retry::Throttled,
        _ if status >= 500 || status == 408 => Retry::Backoff,
        _ => Retry::Fatal,
    }
}

/// The OSS sink.
#[derive(Debug)]
pub struct OssSink {
    client: reqwest::Client,
    base: String,
    host: String,
    bucket: String,
    prefix: String,
    signer: Signer,
    /// Objects of the batch in flight already appended (a retry skips them).
    progress: Option<(u64, HashSet<String>)>,
}

impl OssSink {
    /// From the config; credentials from config, file or environment.
    pub fn from_config(c: &OssConfig) -> Result<Self, common::ConfigError> {
        let (id, secret) = c.credentials.resolve("sinks.oss")?;
        let (base, host) = alibaba::endpoint(&c.endpoint, &c.bucket);
        let client = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| common::ConfigError::Other(format!("sinks.oss: HTTP client: {e}")))?;
        Ok(Self {
            client,
            base,
            host,
            bucket: c.bucket.clone(),
            prefix: c.prefix.clone(),
            signer: Signer {
                access_key_id: id,
                access_key_secret: secret,
                version: c.signature,
                region: c.region.clone().unwrap_or_default(),
            },
            progress: None,
        })
    }

    fn request(&self, req: &Request) -> reqwest::RequestBuilder {
        let method = match req.method {
            "GET" => reqwest::Method::GET,
            "PUT" => reqwest::Method::PUT,
            _ => reqwest::Method::POST,
        };
        let mut b = self
            .client
            .request(method, format!("{}{}", self.base, req.path_and_query))
            .header("Host", &self.host);
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b
    }

    async fn error(&self, resp: reqwest::Response) -> SendError {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let code = error_code(&text)
            .map(str::to_string)
            .unwrap_or_else(|| format!("http_{status}"));
        SendError::new(
            classify(status, &code),
            code.clone(),
            self.signer
                .access_key_secret
                .redact_in(&format!("HTTP {status} {code}")),
        )
    }

    /// Whether the object holds `body` at `position` (a ranged GET).
    async fn holds(&self, key: &str, position: u64, body: &[u8]) -> Result<bool, SendError> {
        let range = format!("bytes={}-{}", position, position + body.len() as u64 - 1);
        let req = self.signer.sign(
            "GET",
            &self.bucket,
            key,
            &[],
            &[("Range", range)],
            chrono::Utc::now(),
        );
        let resp = self
            .request(&req)
            .send()
            .await
            .map_err(|e| SendError::transport(&e))?;
        if !resp.status().is_success() {
            return Err(self.error(resp).await);
        }
        let got = resp.bytes().await.map_err(|e| SendError::transport(&e))?;
        Ok(got.as_ref() == body)
    }

    /// Appends one object's part of the batch at its tracked position.
    async fn append(
        &self,
        key: &str,
        body: &[u8],
        state: &mut BTreeMap<String, u64>,
    ) -> Result<(), SendError> {
        let mut position = state.get(key).copied().unwrap_or(0);
        for _ in 0..3 {
            let req = self.signer.sign(
                "POST",
                &self.bucket,
                key,
                &[("append", None), ("position", Some(position.to_string()))],
                &[],
                chrono::Utc::now(),
            );
            let resp = self
                .request(&req)
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| SendError::transport(&e))?;
            let next = resp
                .headers()
                .get("x-oss-next-append-position")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if resp.status().is_success() {
                state.insert(
                    key.to_string(),
                    next.unwrap_or(position + body.len() as u64),
                );
                return Ok(());
            }
            if resp.status().as_u16() == 409 {
                if let Some(actual) = next {
                    let err = self.error(resp).await;
                    if err.code != "PositionNotEqualToLength" {
                        return Err(err);
                    }
                    if actual == position + body.len() as u64
                        && !body.is_empty()
                        && self.holds(key, position, body).await?
                    {
                        tracing::info!(object = key, position, "Batch already in the object (earlier attempt succeeded); not appending it again.");
                        state.insert(key.to_string(), actual);
                        return Ok(());
                    }
                    tracing::warn!(
                        object = key,
                        expected = position,
                        actual,
                        "Append position differs from the object's length; appending at its end."
                    );
                    // Remember the real length, so that a retry after a later failure
                    // recognises its own earlier append instead of appending again.
                    state.insert(key.to_string(), actual);
                    position = actual;
                    continue;
                }
            }
            return Err(self.error(resp).await);
        }
        Err(SendError::new(
            Retry::Backoff,
            "PositionNotEqualToLength",
            format!("object {key} keeps changing length"),
        ))
    }

    /// Appends the batch: one AppendObject per object, events in order.
    pub async fn send(
        &mut self,
        batch: &[Record],
        state: &mut BTreeMap<String, u64>,
    ) -> Result<(), SendError> {
        let id = batch_id(batch);
        if self.progress.as_ref().is_none_or(|(b, _)| *b != id) {
            self.progress = Some((id, HashSet::new()));
        }
        let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
        for r in batch {
            let key = format!("{}{}", self.prefix, r.stream.object_path(false));
            match bodies.iter_mut().find(|(k, _)| *k == key) {
                Some((_, b)) => b.extend_from_slice(&r.event.data),
                None => bodies.push((key, r.event.data.clone())),
            }
        }
        for (key, body) in bodies {
            if self
                .progress
                .as_ref()
                .is_some_and(|(_, d)| d.contains(&key))
            {
                continue;
            }
            self.append(&key, &body, state).await?;
            if let Some((_, d)) = &mut self.progress {
                d.insert(key);
            }
        }
        self.progress = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_map_to_retry_decisions() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PositionNotEqualToLength</Code><Message>x</Message></Error>";
        assert_eq!(error_code(body), Some("PositionNotEqualToLength"));
        assert_eq!(classify(403, "SignatureDoesNotMatch"), Retry::Fatal);
        assert_eq!(classify(503, "ServiceUnavailable"), Retry::Throttled);
        assert_eq!(classify(500, "InternalError"), Retry::Backoff);
    }
}
