//! DingTalk robot request signing ("加签").
//!
//! The string to sign is `<timestamp in ms>\n<secret>`; the signature is the base64 of its
//! HMAC-SHA256 keyed with the secret, URL-encoded and appended to the robot URL as
//! `&timestamp=<ms>&sign=<signature>`. DingTalk accepts a timestamp within one hour of its
//! own clock.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

/// What `urllib.parse.quote_plus` leaves alone: letters, digits and `_.-~`.
const QUOTE_PLUS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The base64 signature (not yet URL-encoded) of `timestamp_ms` with `secret`.
pub fn signature(secret: &str, timestamp_ms: i64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// URL-encodes a value the way DingTalk's examples do (`quote_plus`).
pub fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, QUOTE_PLUS).to_string()
}

/// The query suffix `&timestamp=<ms>&sign=<encoded signature>`.
pub fn query_suffix(secret: &str, timestamp_ms: i64) -> String {
    format!(
        "&timestamp={timestamp_ms}&sign={}",
        url_encode(&signature(secret, timestamp_ms))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independently_computed_hmac() {
        // Computed with OpenSSL, not this crate:
        // printf '1732459200123\nSECf00-independent' \
        //   | openssl dgst -sha256 -hmac SECf00-independent -binary | base64
        let sig = signature("SECf00-independent", 1_732_459_200_123);
        assert_eq!(sig, "E/A5SlAH6qFoaFfjzsqBv+hNTYF2qjL9QoGu/N4+aBg=");
        assert_eq!(
            query_suffix("SECf00-independent", 1_732_459_200_123),
            "&timestamp=1732459200123&sign=E%2FA5SlAH6qFoaFfjzsqBv%2BhNTYF2qjL9QoGu%2FN4%2BaBg%3D"
        );
    }

    #[test]
    fn encodes_plus_slash_and_equals() {
        assert_eq!(url_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        // Find a timestamp whose signature holds both '+' and '/', like the vector does.
        let (ts, sig) = (1_700_000_000_000i64..1_700_000_000_200)
            .map(|ts| (ts, signature("SEC000test", ts)))
            .find(|(_, s)| s.contains('+') && s.contains('/'))
            .unwrap();
        let q = query_suffix("SEC000test", ts);
        assert!(!q.contains('+') && !q[1..].contains('/'), "{q}");
        assert!(q.contains("%2B") && q.contains("%2F"), "{q}");
        assert_eq!(
            percent_encoding::percent_decode_str(q.split("sign=").nth(1).unwrap())
                .decode_utf8()
                .unwrap(),
            sig
        );
    }

    /// Runs the reference vector (Python's hmac/base64/urllib) and compares every line.
    #[test]
    fn matches_the_reference_vector() {
        let Some(shared) = common::testkit::shared_dir("sign::matches_the_reference_vector") else {
            return;
        };
        let script = shared.join("vectors/dingtalk_sign_vector.py");
        let out = match std::process::Command::new("python3").arg(&script).output() {
            Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
            other => {
                eprintln!("SKIP matches_the_reference_vector: python3 cannot run: {other:?}");
                return;
            }
        };
        let line = |prefix: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("{prefix} missing in {out}"))
                .trim()
                .to_string()
        };
        let ts = 1_700_000_000_000;
        assert_eq!(signature("SEC000test", ts), line("base64:"));
        assert_eq!(
            url_encode(&signature("SEC000test", ts)),
            line("quote_plus:")
        );
        let url = line("url:");
        assert!(url.ends_with(&query_suffix("SEC000test", ts)), "{url}");
        let second = line("vector with + and /:");
        let mut parts = second.split_whitespace();
        let ts2: i64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(signature("SEC000test", ts2), parts.next().unwrap());
        assert_eq!(
            url_encode(&signature("SEC000test", ts2)),
            parts.next().unwrap()
        );
    }
}
