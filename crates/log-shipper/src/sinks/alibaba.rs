//! What OSS and SLS requests share: the Alibaba Cloud request signer and endpoints.
//!
//! Both services sign with an AccessKey in one of two ways, chosen by
//! [`SignVersion`]: V1, the base64 HMAC-SHA1 of a string to sign keyed with the secret,
//! and V4, the hex HMAC-SHA256 of a string to sign keyed with a key derived from
//! `aliyun_v4{secret}` → day → region → product → `aliyun_v4_request`. Each service builds
//! its own canonical request and string to sign ([`super::oss`] in `Signer::sign`,
//! [`super::sls::build_request_raw`]); the keys and MACs are computed here only.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::config::SignVersion;
use common::Secret;

/// An AccessKey and how to sign with it; shared by the OSS and SLS sinks.
#[derive(Debug, Clone)]
pub struct Signer {
    /// AccessKey id.
    pub access_key_id: String,
    /// AccessKey secret.
    pub access_key_secret: Secret,
    /// V1 or V4.
    pub version: SignVersion,
    /// Region (V4).
    pub region: String,
}

impl Signer {
    /// V1: base64 of HMAC-SHA1(secret, string to sign).
    pub fn v1_signature(&self, string_to_sign: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(hmac_sha1(
            self.access_key_secret.expose().as_bytes(),
            string_to_sign.as_bytes(),
        ))
    }

    /// V4: hex of HMAC-SHA256(derived key for `day` (`YYYYMMDD`), the region and
    /// `product` (`oss`, `sls`), string to sign).
    pub fn v4_signature(&self, day: &str, product: &str, string_to_sign: &str) -> String {
        let key = v4_key(self.access_key_secret.expose(), day, &self.region, product);
        hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
    }
}

/// HMAC-SHA1.
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The V4 signing key: `aliyun_v4{secret}` → date → region → product → `aliyun_v4_request`.
pub fn v4_key(secret: &str, date: &str, region: &str, product: &str) -> Vec<u8> {
    let k = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, product.as_bytes());
    hmac_sha256(&k, b"aliyun_v4_request")
}

/// `(base URL, host)` for an endpoint: a bare host gets `{prefix}.` (the SLS project or the
/// OSS bucket) and `https://`; a URL is used as is, with `{prefix}.{authority}` as the
/// signed host.
pub fn endpoint(endpoint: &str, prefix: &str) -> (String, String) {
    if let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    {
        let authority = rest.trim_end_matches('/');
        (
            endpoint.trim_end_matches('/').to_string(),
            format!("{prefix}.{authority}"),
        )
    } else {
        let host = format!("{prefix}.{}", endpoint.trim_end_matches('/'));
        (format!("https://{host}"), host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_put_the_project_in_the_host_and_macs_match_the_rfc_vectors() {
        assert_eq!(
            endpoint("cn-hangzhou.log.aliyuncs.com", "proj"),
            (
                "https://proj.cn-hangzhou.log.aliyuncs.com".to_string(),
                "proj.cn-hangzhou.log.aliyuncs.com".to_string()
            )
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9/", "b"),
            (
                "http://127.0.0.1:9".to_string(),
                "b.127.0.0.1:9".to_string()
            )
        );
        // RFC 2202 test case 2 for HMAC-SHA1 and RFC 4231 test case 2 for HMAC-SHA256.
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
