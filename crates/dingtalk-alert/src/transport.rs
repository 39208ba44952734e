//! The seams to the outside world: posting a body to a robot URL ([`Transport`]) and the
//! wall clock signatures use ([`Clock`]). Production uses reqwest and the system clock;
//! tests swap in an in-process DingTalk stand-in and a clock that follows Tokio's (paused)
//! time.

use std::{future::Future, pin::Pin, time::Duration};

/// A boxed future, as trait methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// DingTalk's HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response body.
    pub body: Vec<u8>,
}

/// Why no answer came back. Texts never hold the request URL (it carries the token).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// No complete answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or talking to the peer failed.
    #[error("{0}")]
    Network(String),
}

/// Posts JSON bodies to robot URLs.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` (JSON) to `url`, giving up after `timeout`.
    fn post(
        &self,
        url: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>>;
}

/// The real transport: reqwest with rustls.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A client with pooled connections.
    pub fn new() -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("dingtalk-alert/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TransportError::Network(e.without_url().to_string()))?;
        Ok(Self { client })
    }
}

async fn post_once(
    client: &reqwest::Client,
    url: String,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, TransportError> {
    let redact = |e: reqwest::Error| {
        if e.is_timeout() {
            TransportError::Timeout(timeout)
        } else {
            // `without_url` drops the URL (and with it the access token) from the text.
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            TransportError::Network(text)
        }
    };
    let resp = client
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(redact)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(redact)?.to_vec();
    Ok(Reply { status, body })
}

impl Transport for HttpTransport {
    fn post(
        &self,
        url: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(async move {
            // reqwest's own timeout covers the whole exchange; the outer one makes sure a
            // stalled body read can never outlive it either.
            match tokio::time::timeout(timeout, post_once(&self.client, url, body, timeout)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout(timeout)),
            }
        })
    }
}

/// Wall-clock milliseconds since the Unix epoch (the signature's timestamp).
pub trait Clock: Send + Sync + 'static {
    /// Now, in ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that starts at `base_ms` and advances with Tokio's time, so tests under
/// `tokio::time::pause()` see signatures age the way they would in real minutes.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts now at `base_ms`.
    pub fn new(base_ms: i64) -> Self {
        Self {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + self.start.elapsed().as_millis() as i64
    }
}
