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
    /// echo a URL or a request): the value as is and every URL-encoded spelling of it, where
    /// any byte may appear as `%XX` (either case) and a space as `+`, as URL builders write
    /// query parameters.
    pub fn redact_in(&self, text: &str) -> String {
        let secret = self.0.as_bytes();
        if secret.is_empty() {
            return text.to_string();
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut copied = 0;
        while i < bytes.len() {
            match encoded_match(&bytes[i..], secret) {
                Some(len) => {
                    out.push_str(&text[copied..i]);
                    out.push_str(REDACTED);
                    i += len;
                    copied = i;
                }
                None => i += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// Whether `text` starts with `secret`, each byte of it written as itself, as `%XX` (either
/// case) or, a space, as `+`; returns how many bytes of `text` that spelling takes. A match
/// ends on a character boundary of `text`: it consumes whole `%XX` triples or bytes equal to
/// the secret's, which is valid UTF-8. A `%` in the secret may be written either way, so
/// both readings are tried.
fn encoded_match(text: &[u8], secret: &[u8]) -> Option<usize> {
    let Some((&want, rest)) = secret.split_first() else {
        return Some(0);
    };
    let escaped = text
        .get(..3)
        .filter(|e| e[0] == b'%')
        .filter(|e| percent_encoding::percent_decode(e).eq(std::iter::once(want)))
        .and_then(|_| encoded_match(&text[3..], rest))
        .map(|n| n + 3);
    if escaped.is_some() {
        return escaped;
    }
    let first = *text.first()?;
    if first == want || (first == b'+' && want == b' ') {
        encoded_match(&text[1..], rest).map(|n| n + 1)
    } else {
        None
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

    #[test]
    fn url_encoded_spellings_are_redacted_too() {
        let s = Secret::new("tok/+ &é=x-1");
        let pct = Secret::new("a%25b%");
        assert_eq!(pct.redact_in("[a%25b%]"), "[<secret>]");
        assert_eq!(pct.redact_in("[a%2525b%25]"), "[<secret>]");
        let spellings = [
            "tok/+ &é=x-1",
            // NON_ALPHANUMERIC, as the DingTalk URL builder writes it.
            "tok%2F%2B%20%26%C3%A9%3Dx%2D1",
            // Lower-case hex, `+` for the space, only what a query needs encoded.
            "tok%2f%2b+%26%c3%a9%3dx-1",
            "tok/%2B%20&%C3%A9=x-1",
        ];
        for form in spellings {
            let text = format!("POST https://h/robot/send?access_token={form}&timestamp=1: 500");
            let red = s.redact_in(&text);
            assert_eq!(
                red, "POST https://h/robot/send?access_token=<secret>&timestamp=1: 500",
                "{form}"
            );
        }
        // Near misses stay: a different byte, a truncated escape.
        assert_eq!(
            s.redact_in("tok%2F%2B%20%26%C3%A9%3Dx%2D2"),
            "tok%2F%2B%20%26%C3%A9%3Dx%2D2"
        );
        assert_eq!(s.redact_in("tok%2"), "tok%2");
        assert_eq!(Secret::new("").redact_in("a%20b"), "a%20b");
        assert_eq!(
            Secret::new("é").redact_in("xéy %C3%A9"),
            "x<secret>y <secret>"
        );
    }
}
