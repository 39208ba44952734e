//! Where records go. Each sink sends one batch and says whether (and how) to retry.
//!
//! - [`dir`]: a local directory, one output file per input file (the embedded default);
//! - [`sls`]: Alibaba Cloud Log Service PutLogs (protobuf LogGroup, lz4, signature v1/v4);
//! - [`oss`]: Alibaba Cloud OSS appendable objects with position tracking;
//! - [`alibaba`]: the Alibaba Cloud request signer (V1 / V4) and endpoints OSS and SLS share;
//! - [`lz4`]: the SDK-identical lz4 block compressor SLS bodies use.
//!
//! A sink keeps its durable position state (output lengths, append positions) in the map
//! it is handed, which is checkpointed together with the file offsets, atomically.

pub mod alibaba;
pub mod dir;
pub mod lz4;
pub mod oss;
pub mod sls;

use std::{collections::BTreeMap, time::Duration};

use crate::record::Record;

/// How a failed send should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Transient (connection error, 5xx, 408): exponential backoff.
    Backoff,
    /// The service asked to slow down (429, SLS quota errors): back off from a longer base.
    Throttled,
    /// The request is wrong as configured (credentials, missing logstore/bucket): retrying
    /// soon cannot help. Retried at the longest interval so that fixing the config or the
    /// cloud resource resumes shipping; nothing is dropped.
    Fatal,
}

/// A failed send.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SendError {
    /// How to retry.
    pub retry: Retry,
    /// A short machine-readable code (`http_503`, `WriteQuotaExceed`, `io`, ...).
    pub code: String,
    /// What happened (never contains credentials).
    pub message: String,
}

impl SendError {
    /// Builds one.
    pub fn new(retry: Retry, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retry,
            code: code.into(),
            message: message.into(),
        }
    }

    /// From a transport error: always transient.
    pub fn transport(e: &reqwest::Error) -> Self {
        let code = if e.is_timeout() { "timeout" } else { "connect" };
        // reqwest's Display includes the URL, which holds no credentials (signatures are
        // in headers).
        Self::new(Retry::Backoff, code, e.to_string())
    }
}

/// The backoff before attempt `attempt` (0-based) after an error of kind `retry`: capped
/// exponential with full jitter in the upper half.
pub fn backoff(retry: Retry, attempt: u32) -> Duration {
    let (base, cap) = match retry {
        Retry::Backoff => (Duration::from_millis(100), Duration::from_secs(30)),
        Retry::Throttled => (Duration::from_secs(1), Duration::from_secs(60)),
        Retry::Fatal => (Duration::from_secs(60), Duration::from_secs(60)),
    };
    common::backoff::capped_jittered(base, cap, attempt)
}

/// A batch's identity for retry bookkeeping (which parts of a batch in flight a retry can
/// skip), shared by the SLS and OSS sinks.
pub fn batch_id(batch: &[Record]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in batch {
        r.stream.path.hash(&mut h);
        r.event.end.hash(&mut h);
        r.event.data.hash(&mut h);
    }
    h.finish()
}

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    /// Local directory.
    Dir(dir::DirSink),
    /// Alibaba Cloud Log Service.
    Sls(sls::SlsSink),
    /// Alibaba Cloud OSS.
    Oss(oss::OssSink),
}

impl Sink {
    /// `dir`, `sls` or `oss`.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Dir(_) => "dir",
            Sink::Sls(_) => "sls",
            Sink::Oss(_) => "oss",
        }
    }

    /// Brings the destination back to the checkpointed state after a restart (e.g. cuts
    /// local output files back to their acknowledged length). `had_checkpoint` is false on
    /// the very first start.
    pub fn recover(
        &mut self,
        state: &mut BTreeMap<String, u64>,
        had_checkpoint: bool,
    ) -> Result<(), SendError> {
        match self {
            Sink::Dir(s) => s.recover(state, had_checkpoint),
            Sink::Sls(_) | Sink::Oss(_) => Ok(()),
        }
    }

    /// Sends one batch; on success `state` holds the new positions.
    pub async fn send(
        &mut self,
        batch: &[Record],
        state: &mut BTreeMap<String, u64>,
    ) -> Result<(), SendError> {
        match self {
            Sink::Dir(s) => s.send(batch, state),
            Sink::Sls(s) => s.send(batch).await,
            Sink::Oss(s) => s.send(batch, state).await,
        }
    }
}
