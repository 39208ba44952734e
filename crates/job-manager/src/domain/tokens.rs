//! API token secrets: the store keeps only their hash.

use sha2::{Digest, Sha256};

/// The namespace of the bootstrap token (owner of every namespace).
pub const ADMIN_NAMESPACE: &str = "*";

/// Hex SHA-256 of a token secret (what the store keeps).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hash_is_hex_sha256_and_never_the_secret() {
        let h = super::hash_secret("s3cret-token-value");
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!h.contains("s3cret"));
        assert_eq!(h, super::hash_secret("s3cret-token-value"));
    }
}
