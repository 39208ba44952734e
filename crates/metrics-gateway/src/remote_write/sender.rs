//! One worker of one remote: batches from its shard of the queue, POSTs them, retries
//! what may succeed later (connection errors, 5xx, 429) with capped, jittered exponential
//! backoff and drops what never will (other 4xx), counting both.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::queue::{QueuedSample, Wakers};
use super::{proto, Remote, Settings};

/// Why one attempt failed.
enum Attempt {
    Retry(String, Option<Duration>),
    Reject(String),
}

/// How sending a batch ended.
enum Sent {
    /// Accepted, or refused for good (counted either way).
    Done,
    /// The worker's generation ended before the batch got through: it goes back to the
    /// queue for the next generation's workers.
    HandBack(Vec<QueuedSample>),
}

/// Sends the batches of `shard` until the queue is closed and the shard empty, or the
/// queue moves to another generation.
pub async fn worker(
    remote: Arc<Remote>,
    settings: Arc<Settings>,
    client: reqwest::Client,
    generation: u64,
    shard: usize,
    wake: Wakers,
) {
    let q = &remote.queue;
    let cfg = &settings.config.queue_config;
    let notify = &wake[shard];
    loop {
        let Some(len) = q.shard_len(generation, shard) else {
            return;
        };
        if len == 0 {
            if q.is_closed() {
                return;
            }
            notify.notified().await;
            continue;
        }
        let deadline = Instant::now() + cfg.batch_send_deadline;
        while !q.is_closed()
            && q.shard_len(generation, shard)
                .is_some_and(|n| n < cfg.max_samples_per_send)
        {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let Some(batch) = q.take(generation, shard, cfg.max_samples_per_send) else {
            return;
        };
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        remote.in_flight.fetch_add(n, Ordering::Relaxed);
        remote.update_pending();
        let began = Instant::now();
        let sent = send(&remote, &settings, &client, batch, generation, notify).await;
        let took = began.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
        remote.stats.send_nanos.fetch_add(took, Ordering::Relaxed);
        remote.stats.done.fetch_add(n as u64, Ordering::Relaxed);
        remote.in_flight.fetch_sub(n, Ordering::Relaxed);
        if let Sent::HandBack(batch) = sent {
            q.requeue_front(batch);
            remote.update_pending();
            return;
        }
        remote.update_pending();
    }
}

async fn send(
    remote: &Remote,
    settings: &Settings,
    client: &reqwest::Client,
    batch: Vec<QueuedSample>,
    generation: u64,
    notify: &tokio::sync::Notify,
) -> Sent {
    let n = batch.len() as u64;
    // Encoding and compressing a batch is CPU work: off the async workers.
    let (batch, body) = match tokio::task::spawn_blocking(move || {
        let body = proto::encode(&batch);
        (batch, body)
    })
    .await
    {
        Ok((batch, b)) => (batch, bytes::Bytes::from(b)),
        Err(_) => return Sent::Done,
    };
    let m = &remote.metrics;
    let cfg = &settings.config.queue_config;
    let mut retry: u32 = 0;
    loop {
        match attempt(settings, client, body.clone()).await {
            Ok(()) => {
                m.sent.inc_by(n);
                remote.stats.last_success_ms.store(
                    crate::query::history::unix_ms(std::time::SystemTime::now()),
                    Ordering::Relaxed,
                );
                return Sent::Done;
            }
            Err(Attempt::Reject(why)) => {
                m.failed.inc_by(n);
                m.dropped("rejected").inc_by(n);
                tracing::error!(remote = %remote.name, samples = n, error = %why,
                    "Remote write refused a batch; dropped it (not retried).");
                return Sent::Done;
            }
            Err(Attempt::Retry(why, after)) => {
                if !remote.queue.is_current(generation) {
                    return Sent::HandBack(batch);
                }
                m.retried.inc_by(n);
                let backoff =
                    common::backoff::capped_jittered(cfg.min_backoff, cfg.max_backoff, retry);
                let delay = after.map_or(backoff, |a| a.min(cfg.max_backoff).max(backoff));
                tracing::warn!(remote = %remote.name, samples = n, error = %why, retry,
                    delay = ?delay, "Remote write failed; retrying.");
                retry = retry.saturating_add(1);
                let until = Instant::now() + delay;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        _ = notify.notified() => {
                            if !remote.queue.is_current(generation) {
                                return Sent::HandBack(batch);
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn attempt(
    settings: &Settings,
    client: &reqwest::Client,
    body: bytes::Bytes,
) -> Result<(), Attempt> {
    let cfg = &settings.config;
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
