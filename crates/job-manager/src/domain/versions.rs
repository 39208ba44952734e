//! Optimistic concurrency: a write may name the `metadata.resourceVersion` it was based on;
//! when the stored one has moved on, the write is refused ([`Stale`], a conflict) so that
//! nobody overwrites a change they have not seen.

use serde_json::Value;

use super::{Invalid, Result};

/// A write based on a version that is no longer the stored one.
#[derive(Debug, thiserror::Error)]
#[error(
    "metadata.resourceVersion {wanted} is stale: the {what} is at {current}; re-read it and retry"
)]
pub struct Stale {
    /// What was written (`deployment`, `deployment target`).
    pub what: &'static str,
    pub wanted: u64,
    pub current: u64,
}

/// The `metadata.resourceVersion` a document names, if it names one.
pub fn wanted(document: &Value) -> Result<Option<u64>> {
    document
        .pointer("/metadata/resourceVersion")
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                Invalid::field("metadata.resourceVersion", "must be a non-negative integer")
            })
        })
        .transpose()
}

/// Refuses a write based on `wanted` (if it names a version) when `current` is stored.
pub fn check(what: &'static str, wanted: Option<u64>, current: u64) -> Result<(), Stale> {
    match wanted {
        Some(wanted) if wanted != current => Err(Stale {
            what,
            wanted,
            current,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_named_version_must_be_the_stored_one() {
        assert_eq!(wanted(&json!({"metadata": {}})).unwrap(), None);
        let v = wanted(&json!({"metadata": {"resourceVersion": 3}})).unwrap();
        assert_eq!(v, Some(3));
        check("deployment", v, 3).unwrap();
        check("deployment", None, 7).unwrap();
        assert_eq!(
            check("deployment", v, 4).unwrap_err().to_string(),
            "metadata.resourceVersion 3 is stale: the deployment is at 4; re-read it and retry"
        );
        assert_eq!(
            wanted(&json!({"metadata": {"resourceVersion": "3"}}))
                .unwrap_err()
                .to_string(),
            "metadata.resourceVersion must be a non-negative integer"
        );
    }
}
