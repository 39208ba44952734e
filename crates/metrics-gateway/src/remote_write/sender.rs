//! The sender of one remote: batches from its queue, POSTs them, retries what may succeed
//! later (connection errors, 5xx, 429) with capped, jittered exponential backoff and drops
//! what never will (other 4xx), counting both.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::{proto, Remote};

/// Why one attempt failed.
enum Attempt {
    Retry(String, Option<Duration>),
    Reject(String),
}

/// Sends batches until the queue is closed and empty.
pub async fn run(remote: Arc<Remote>, client: reqwest::Client) {
    let q = &remote.queue;
    let cfg = &remote.config.queue_config;
    loop {
        if q.is_empty() {
            if q.is_closed() {
                return;
            }
            q.wait().await;
            continue;
        }
        let deadline = Instant::now() + cfg.batch_send_deadline;
        while !q.is_closed() && q.len() < cfg.max_samples_per_send {
            tokio::select! {
                _ = q.wait() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let batch = q.take(cfg.max_samples_per_send);
        remote.metrics.pending.set(q.len() as i64);
        if batch.is_empty() {
            continue;
        }
        remote.set_in_flight(batch.len());
        send(&remote, &client, batch).await;
        remote.set_in_flight(0);
    }
}

async fn send(remote: &Remote, client: &reqwest::Client, batch: Vec<super::queue::QueuedSample>) {
    let n = batch.len() as u64;
    // Encoding and compressing a batch is CPU work: off the async workers.
    let body = match tokio::task::spawn_blocking(move || proto::encode(&batch)).await {
        Ok(b) => bytes::Bytes::from(b),
        Err(_) => return,
    };
    let m = &remote.metrics;
    let cfg = &remote.config.queue_config;
    let mut retry: u32 = 0;
    loop {
        match attempt(remote, client, body.clone()).await {
            Ok(()) => {
                m.sent.inc_by(n);
                return;
            }
            Err(Attempt::Reject(why)) => {
                m.failed.inc_by(n);
                m.dropped("rejected").inc_by(n);
                tracing::error!(remote = %remote.name, samples = n, error = %why,
                    "Remote write refused a batch; dropped it (not retried).");
                return;
            }
            Err(Attempt::Retry(why, after)) => {
                m.retried.inc_by(n);
                let backoff =
                    common::backoff::capped_jittered(cfg.min_backoff, cfg.max_backoff, retry);
                let delay = after.map_or(backoff, |a| a.min(cfg.max_backoff).max(backoff));
                tracing::warn!(remote = %remote.name, samples = n, error = %why, retry,
                    delay = ?delay, "Remote write failed; retrying.");
                retry = retry.saturating_add(1);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn attempt(
    remote: &Remote,
    client: &reqwest::Client,
    body: bytes::Bytes,
) -> Result<(), Attempt> {
    let cfg = &remote.config;
    let mut headers = HeaderMap::new();
    for (k, v) in &cfg.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v.expose()),
        ) {
            headers.insert(k, v);
        }
    }
    let mut req = client
        .post(&cfg.url)
        .timeout(cfg.remote_timeout)
        .headers(headers)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header(
            "User-Agent",
            concat!("metrics-gateway/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(b) = &cfg.basic_auth {
        let password = match &b.password_file {
            Some(f) => read_secret(f, "basic_auth.password_file")?,
            None => b.password.expose().to_string(),
        };
        req = req.basic_auth(&b.username, Some(password));
    } else if let Some(a) = &cfg.authorization {
        let cred = match &a.credentials_file {
            Some(f) => read_secret(f, "authorization.credentials_file")?,
            None => a.credentials.expose().to_string(),
        };
        req = req.header("Authorization", format!("{} {cred}", a.kind));
    } else if let Some(f) = &cfg.bearer_token_file {
        let token = read_secret(f, "bearer_token_file")?;
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        // Without the URL: its query may carry credentials (InfluxDB's `?u=&p=`).
        Err(e) => return Err(Attempt::Retry(error_chain(&e.without_url()), None)),
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(512)
        .collect();
    let why = format!("HTTP {}: {}", status.as_u16(), text.trim());
    if status.is_server_error() || status.as_u16() == 429 {
        Err(Attempt::Retry(why, retry_after))
    } else {
        Err(Attempt::Reject(why))
    }
}

/// Reads a secret from a file (trimmed); the error names the field and the file, never
/// the content.
fn read_secret(path: &str, field: &str) -> Result<String, Attempt> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Attempt::Retry(format!("cannot read `{field}` {path}: {e}"), None))
}

/// An error with its causes (reqwest's own message alone says only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
