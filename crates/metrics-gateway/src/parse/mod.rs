//! Push bodies: the text format ([`text`]) and delimited protobuf ([`proto`]), optionally
//! gzip-compressed, chosen by the request headers the way the Pushgateway chooses.

pub mod proto;
pub mod text;

use std::io::Read;

use crate::{
    limits::{LabelLimits, LimitError},
    model::Family,
};

/// Why a push body could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// The text format is malformed (message in the shape of Go's parser).
    #[error("text format parsing error in line {line}: {message}")]
    Text { line: usize, message: String },
    /// The protobuf stream is malformed.
    #[error("protobuf parsing error: {0}")]
    Protobuf(String),
    /// The gzip stream is malformed.
    #[error("gzip decoding error: {0}")]
    Gzip(String),
    /// A series exceeds a label limit (`position`: `line N` or `protobuf message N`).
    #[error("{position}: {error}")]
    Limit { position: String, error: LimitError },
    /// The body (after decompression) exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes (--push.max-body-size)")]
    TooLarge { limit: u64 },
}

/// Decompresses `body` if `content_encoding` says gzip, enforcing `limit` (0 = none) on the
/// decompressed size, then parses it per `content_type`, refusing series over `labels`.
pub fn parse_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limit: u64,
    labels: LabelLimits,
) -> Result<Vec<Family>, ParseError> {
    let inflated;
    let body = if content_encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip")) {
        let cap = if limit == 0 { u64::MAX } else { limit + 1 };
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| ParseError::Gzip(e.to_string()))?;
        if limit > 0 && out.len() as u64 > limit {
            return Err(ParseError::TooLarge { limit });
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    if content_type.is_some_and(proto::is_delimited_protobuf) {
        proto::parse_with(body, labels)
    } else {
        text::parse_with(body, labels)
    }
}
