//! A string that never prints: tokens, access keys, robot secrets.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a [`Secret`] shows instead of its value.
pub const REDACTED: &str = "<secret>";

/// A secret value. `Debug`, `Display` and `Serialize` show [`REDACTED`]; only
/// [`Secret::expose`] gives the value, so every use is greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Never log or return it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every occurrence of the secret from `text` (for error messages that might
    /// echo a URL or a request).
    pub fn redact_in(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, REDACTED)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("tok-123");
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<secret>\"");
        assert_eq!(s.expose(), "tok-123");
        assert_eq!(
            s.redact_in("https://x/send?access_token=tok-123"),
            "https://x/send?access_token=<secret>"
        );
    }
}
