//! Names: namespaces, deployment targets, API tokens and Kubernetes namespaces are DNS
//! labels (RFC 1123).

use super::{Invalid, Result};

/// Whether `s` is a DNS label: 1-63 lowercase letters, digits and '-', not starting or
/// ending with '-'.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks the name in `field` (a namespace, target or token name).
pub fn check(field: &str, name: &str) -> Result<()> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(Invalid::field(
            field,
            format!("{name:?} is invalid: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_the_message_naming_the_field() {
        for ok in ["a", "flink-jobs", "a1", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert_eq!(
            check("metadata.name", "Bad").unwrap_err().to_string(),
            "metadata.name \"Bad\" is invalid: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'"
        );
    }
}
