//! Grouping keys from push URLs: `/metrics/job/<JOB>{/<LABEL>/<VALUE>}`, where any name may
//! carry the `@base64` suffix to send its value URL-safe base64 encoded (padding optional,
//! `=` alone for the empty value), exactly as the Pushgateway 1.x reads them.

use std::collections::BTreeMap;

use base64::Engine;

use crate::model::is_valid_label_name;

/// A group's identity: its grouping labels, `job` always among them.
pub type GroupKey = BTreeMap<String, String>;

/// Why a push URL does not name a group.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GroupingError {
    #[error("job name is required")]
    NoJob,
    #[error("odd number of components in label string {0:?}")]
    OddComponents(String),
    #[error("improper label name {0:?}")]
    BadLabelName(String),
    #[error("invalid base64 encoding for label {name}={value:?}: {reason}")]
    Base64 {
        name: String,
        value: String,
        reason: String,
    },
    #[error("invalid percent-encoding or UTF-8 in path segment {0:?}")]
    Encoding(String),
}

/// Parses the part of the path after `/metrics/`, e.g. `job/foo/instance@base64/YmFy`.
pub fn parse_path(rest: &str) -> Result<GroupKey, GroupingError> {
    // Like the Pushgateway, the path is percent-decoded before it is split, so only the
    // `@base64` form can carry a `/` inside a value.
    let decoded = percent_decode(rest)?;
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (job_seg, tail) = match rest.split_once('/') {
        Some((j, t)) => (j, t),
        None => (rest, ""),
    };
    let job_encoded = match job_seg {
        "job" => false,
        "job@base64" => true,
        _ => return Err(GroupingError::NoJob),
    };
    let (job_value, labels) = match tail.split_once('/') {
        Some((v, l)) => (v, l),
        None => (tail, ""),
    };
    let job = decode_value("job", job_value, job_encoded)?;
    if job.is_empty() {
        return Err(GroupingError::NoJob);
    }
    let mut key = GroupKey::new();
    if !labels.is_empty() {
        let parts: Vec<&str> = labels.split('/').collect();
        if !parts.len().is_multiple_of(2) {
            return Err(GroupingError::OddComponents(format!("/{labels}")));
        }
        for pair in parts.chunks(2) {
            let (name, encoded) = match pair[0].strip_suffix("@base64") {
                Some(n) => (n, true),
                None => (pair[0], false),
            };
            if !is_valid_label_name(name) || name.starts_with("__") {
                return Err(GroupingError::BadLabelName(name.to_owned()));
            }
            let value = decode_value(name, pair[1], encoded)?;
            key.insert(name.to_owned(), value);
        }
    }
    key.insert("job".into(), job);
    Ok(key)
}

/// Go's `url.PathUnescape`, as the Pushgateway applies it: `%XX` escapes are decoded, a `%`
/// not followed by two hex digits is an error (the crate alone would pass it through), and
/// `+` stays a `+` (it means a space only in query strings).
fn percent_decode(s: &str) -> Result<String, GroupingError> {
    let bad = || GroupingError::Encoding(s.to_owned());
    let bytes = s.as_bytes();
    let hex_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    let malformed = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' && !(hex_at(i + 1) && hex_at(i + 2)));
    if malformed {
        return Err(bad());
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| bad())
}

fn decode_value(name: &str, value: &str, base64: bool) -> Result<String, GroupingError> {
    let value = value.to_owned();
    if !base64 {
        return Ok(value);
    }
    let trimmed = value.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .map_err(|e| GroupingError::Base64 {
            name: name.to_owned(),
            value: value.clone(),
            reason: e.to_string(),
        })?;
    String::from_utf8(bytes).map_err(|_| GroupingError::Base64 {
        name: name.to_owned(),
        value,
        reason: "decoded value is not UTF-8".into(),
    })
}

/// The canonical URL path of a group (values base64-encoded when they need it), as used in
/// logs and the JSON API.
pub fn to_path(key: &GroupKey) -> String {
    let enc = |k: &str, v: &str| {
        if v.is_empty() {
            format!("{k}@base64/=")
        } else if v.contains('/') || v.contains('%') {
            format!(
                "{k}@base64/{}",
                base64::engine::general_purpose::URL_SAFE.encode(v)
            )
        } else {
            format!("{k}/{v}")
        }
    };
    let mut s = String::from("/metrics/");
    s.push_str(&enc(
        "job",
        key.get("job").map(String::as_str).unwrap_or(""),
    ));
    for (k, v) in key.iter().filter(|(k, _)| *k != "job") {
        s.push('/');
        s.push_str(&enc(k, v));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pairs: &[(&str, &str)]) -> GroupKey {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_plain_and_base64_segments() {
        assert_eq!(
            parse_path("job/j1/inst@base64/Zm9vL2Jhcg").unwrap(),
            key(&[("job", "j1"), ("inst", "foo/bar")])
        );
        assert_eq!(
            parse_path("job/a/b@base64/Zm9vL2Jhcg==").unwrap(),
            key(&[("job", "a"), ("b", "foo/bar")])
        );
        assert_eq!(
            parse_path("job/a/b@base64/=").unwrap(),
            key(&[("job", "a"), ("b", "")])
        );
        assert_eq!(
            parse_path("job@base64/YS9i").unwrap(),
            key(&[("job", "a/b")])
        );
        // The path's job wins over a later `job` label; a repeated label keeps the last value.
        assert_eq!(
            parse_path("job/a/b/x/job/y/b/z").unwrap(),
            key(&[("job", "a"), ("b", "z")])
        );
        assert_eq!(parse_path("job/a%20b").unwrap(), key(&[("job", "a b")]));
        // Trailing slashes: none after the job, an empty value after a label name.
        assert_eq!(parse_path("job/a/").unwrap(), key(&[("job", "a")]));
        assert_eq!(
            parse_path("job/d/b/").unwrap(),
            key(&[("job", "d"), ("b", "")])
        );
        assert_eq!(
            parse_path("job/c/b/x/"),
            Err(GroupingError::OddComponents("/b/x/".into()))
        );
        assert_eq!(
            parse_path("job/e/b/x%2Fy"),
            Err(GroupingError::OddComponents("/b/x/y".into()))
        );
    }

    #[test]
    fn rejects_what_the_pushgateway_rejects() {
        assert_eq!(parse_path("job@base64/="), Err(GroupingError::NoJob));
        assert_eq!(
            parse_path("job/a/b"),
            Err(GroupingError::OddComponents("/b".into()))
        );
        assert_eq!(
            parse_path("job/a/__b/x"),
            Err(GroupingError::BadLabelName("__b".into()))
        );
        assert_eq!(
            parse_path("job/a/1b/x"),
            Err(GroupingError::BadLabelName("1b".into()))
        );
        assert!(matches!(
            parse_path("job/a/b@base64/Zm9v+"),
            Err(GroupingError::Base64 { .. })
        ));
    }

    #[test]
    fn path_unescapes_like_go() {
        // `+` is not a space in a path; an escaped `%` is decoded once, not twice.
        assert_eq!(parse_path("job/a+b").unwrap(), key(&[("job", "a+b")]));
        assert_eq!(parse_path("job/a%2541").unwrap(), key(&[("job", "a%41")]));
        assert_eq!(
            parse_path("job/a/b/%C3%A9").unwrap(),
            key(&[("job", "a"), ("b", "\u{e9}")])
        );
        for bad in [
            "job/a%2",
            "job/a%",
            "job/a%zz",
            "job/a%+1",
            "job/a%%41",
            "job/%FF",
        ] {
            assert_eq!(
                parse_path(bad),
                Err(GroupingError::Encoding(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn canonical_path_round_trips() {
        let k = key(&[("job", "a/b"), ("x", ""), ("y", "plain")]);
        let p = to_path(&k);
        assert_eq!(parse_path(p.strip_prefix("/metrics/").unwrap()).unwrap(), k);
    }
}
