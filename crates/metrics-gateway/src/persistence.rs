//! `--persistence.file`: the store saved every `--persistence.interval` (when it changed) and
//! at shutdown, and loaded at start-up.
//!
//! The file is written with [`common::fs::write_atomic`] (a temporary file next to it,
//! `fsync`ed and renamed over the old one, then the directory `fsync`ed; a missing
//! directory is created), so a crash (even `kill -9`) leaves either the old or the new
//! file and at most one interval of changes is lost. Format: a first line naming the format,
//! then per group one JSON header line (a versioned record: grouping key, push times, TTL,
//! per-family push times) followed by the group's families in the text format 0.0.4. The
//! text form round-trips every value exactly (shortest float representation, `NaN`,
//! `±Inf`). It is not the Pushgateway's file format: migrating keeps no data from it.
//!
//! Loading is tolerant of bad groups: a group whose header or metrics cannot be read, or
//! whose times are not representable (such as the `ttl_seconds` of 2^64 an older version
//! accepted and wrote), or whose TTL is beyond the maximum a push may ask for, is skipped,
//! logged with its line and counted; the other groups load. Only a file that is not ours
//! at all (wrong first line) stops start-up, so it is never overwritten.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    grouping::GroupKey,
    metrics::GatewayMetrics,
    model::{escape_help, is_valid_label_name},
    parse::text,
    store::{from_unix, unix, Group, Store, StoredFamily},
};

const MAGIC: &str = "# metrics-gateway persistence file";

/// Why the persistence file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    #[error("cannot read persistence file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write persistence file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("persistence file {path} is not valid at line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The header of one group in the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum GroupRecord {
    #[serde(rename = "1")]
    V1 {
        key: GroupKey,
        /// Floats are written as strings: Rust's own formatting and parsing round-trip every
        /// value exactly (JSON number parsing may be one ULP off).
        #[serde(with = "exact")]
        push_time: f64,
        #[serde(with = "exact")]
        push_failure_time: f64,
        last_push_successful: bool,
        #[serde(with = "exact_opt")]
        ttl_seconds: Option<f64>,
        /// Unix seconds each family was last pushed.
        pushed_at: BTreeMap<String, String>,
    },
}

mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid number {s:?}")))
    }
}

mod exact_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("invalid number {s:?}"))),
        }
    }
}

/// Serialises the whole store.
pub fn snapshot(store: &Store) -> String {
    let mut out = String::with_capacity(1024 * 1024);
    out.push_str(MAGIC);
    out.push_str(", format 1\n");
    store.with_groups(|groups, _| {
        for g in groups.values() {
            let rec = GroupRecord::V1 {
                key: g.key.clone(),
                push_time: g.push_time,
                push_failure_time: g.push_failure_time,
                last_push_successful: g.last_push_successful,
                ttl_seconds: g.ttl.map(|d| d.as_secs_f64()),
                pushed_at: g
                    .families
                    .iter()
                    .map(|(n, f)| (n.clone(), unix(f.pushed_at).to_string()))
                    .collect(),
            };
            out.push_str(&serde_json::to_string(&rec).unwrap_or_default());
            out.push('\n');
            for f in g.families.values() {
                if let Some(h) = &f.help {
                    out.push_str("# HELP ");
                    out.push_str(&f.name);
                    out.push(' ');
                    escape_help(h, &mut out);
                    out.push('\n');
                }
                out.push_str("# TYPE ");
                out.push_str(&f.name);
                out.push(' ');
                out.push_str(f.kind.as_text());
                out.push('\n');
                f.render_samples(&mut out);
            }
        }
    });
    out
}

/// Writes `contents` to `path` atomically and durably ([`common::fs::write_atomic`]).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), PersistenceError> {
    common::fs::write_atomic(path, contents).map_err(|e| PersistenceError::Write {
        path: e.path,
        source: e.source,
    })
}

/// What [`load`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Groups put into the store.
    pub loaded: usize,
    /// Invalid groups left out (each logged with its line).
    pub skipped: usize,
}

/// Loads the file into `store`; a missing file is an empty store. Invalid groups are
/// skipped (see the module documentation); groups with a TTL beyond `max_ttl` too.
pub fn load(path: &Path, store: &Store, max_ttl: Duration) -> Result<LoadReport, PersistenceError> {
    let data = match std::fs::read_to_string(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadReport::default()),
        Err(source) => {
            return Err(PersistenceError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let invalid = |line: usize, message: String| PersistenceError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    if data.is_empty() {
        return Ok(LoadReport::default());
    }
    let mut lines = data.split_inclusive('\n').enumerate().peekable();
    match lines.next() {
        Some((_, l)) if l.starts_with(MAGIC) => {
            if !l.trim_end().ends_with("format 1") {
                return Err(invalid(1, format!("unsupported format {:?}", l.trim_end())));
            }
        }
        _ => return Err(invalid(1, "not a metrics-gateway persistence file".into())),
    }
    let mut groups = Vec::new();
    let mut skipped = 0;
    while let Some((i, header)) = lines.next() {
        // A group is its header line (JSON, so it starts with `{`, which no line of the
        // text format does) and every line up to the next header.
        let mut body = String::new();
        while let Some((_, l)) = lines.peek() {
            if l.starts_with('{') {
                break;
            }
            body.push_str(l);
            lines.next();
        }
        match read_group(header, &body, max_ttl) {
            Ok(g) => groups.push(g),
            Err(error) => {
                skipped += 1;
                tracing::warn!(
                    file = %path.display(),
                    line = i + 1,
                    %error,
                    "Skipped an invalid group of the persistence file."
                );
            }
        }
    }
    let loaded = groups.len();
    store.restore(groups);
    Ok(LoadReport { loaded, skipped })
}

/// One group from its header line and its metrics; the error says what is wrong with it.
fn read_group(header: &str, body: &str, max_ttl: Duration) -> Result<Group, String> {
    let rec: GroupRecord = serde_json::from_str(header.trim_end())
        .map_err(|e| format!("unreadable group header: {e}"))?;
    let GroupRecord::V1 {
        key,
        push_time,
        push_failure_time,
        last_push_successful,
        ttl_seconds,
        pushed_at,
    } = rec;
    let group = format!("group {key:?}");
    if !key.contains_key("job") {
        return Err(format!("{group}: the grouping key has no `job`"));
    }
    if let Some(name) = key
        .keys()
        .find(|k| !is_valid_label_name(k) || k.starts_with("__"))
    {
        return Err(format!("{group}: invalid grouping label name {name:?}"));
    }
    for (field, v) in [
        ("push_time", push_time),
        ("push_failure_time", push_failure_time),
    ] {
        if from_unix(v).is_none() {
            return Err(format!("{group}: `{field}` {v} is not a time"));
        }
    }
    let ttl = match ttl_seconds {
        None => None,
        Some(secs) => {
            let d = (secs.is_finite() && secs >= 0.0)
                .then(|| Duration::try_from_secs_f64(secs).ok())
                .flatten()
                .ok_or_else(|| format!("{group}: `ttl_seconds` {secs} is not a duration"))?;
            if d > max_ttl {
                return Err(format!(
                    "{group}: TTL of {secs}s is longer than the maximum of {} (--push.max-group-ttl)",
                    promql_parser::util::display_duration(&max_ttl)
                ));
            }
            (!d.is_zero()).then_some(d)
        }
    };
    let families = text::parse(body.as_bytes()).map_err(|e| format!("{group}: {e}"))?;
    let fallback = from_unix(push_time).unwrap_or(UNIX_EPOCH);
    let stored = families
        .into_iter()
        .map(|f| {
            let at = pushed_at
                .get(&f.name)
                .and_then(|v| v.parse().ok())
                .and_then(from_unix)
                .unwrap_or(fallback);
            StoredFamily::new(f, at)
        })
        .collect();
    Ok(Store::restored_group(
        key,
        stored,
        push_time,
        push_failure_time,
        last_push_successful,
        ttl,
    ))
}

/// Saves the store every `interval` when it changed, and once more when `shutdown` fires.
pub async fn run(
    path: PathBuf,
    interval: Duration,
    store: Arc<Store>,
    metrics: GatewayMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut written = store.generation();
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tokio::pin!(shutdown);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut shutdown => true,
        };
        let generation = store.generation();
        if generation != written || last {
            let data = snapshot(&store);
            let p = path.clone();
            let res = tokio::task::spawn_blocking(move || write_atomic(&p, data.as_bytes())).await;
            match res {
                Ok(Ok(())) => {
                    written = generation;
                    metrics.persistence_writes.with_label_values(&["ok"]).inc();
                    metrics
                        .persistence_last_write
                        .set(unix(SystemTime::now()) as i64);
                    tracing::debug!(file = %path.display(), "Persistence file written.");
                }
                Ok(Err(error)) => {
                    metrics
                        .persistence_writes
                        .with_label_values(&["error"])
                        .inc();
                    tracing::error!(%error, "Cannot write the persistence file; will retry.");
                }
                Err(error) => {
                    metrics
                        .persistence_writes
                        .with_label_values(&["error"])
                        .inc();
                    tracing::error!(%error, "Persistence task failed.");
                }
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Push;

    #[test]
    fn round_trips_groups_exactly() {
        let store = Store::default();
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let body = "# HELP a Help with \\\\ and \\n.\n# TYPE a gauge\na{x=\"q\\\"uote\"} NaN\nb -Inf\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_sum 0.30000000000000004\nh_count 2\n# TYPE s summary\ns{quantile=\"0.99\"} 1e-300\ns_sum 1\ns_count 1\n";
        store
            .push(
                Push {
                    key: [
                        ("job".to_string(), "j/1".to_string()),
                        ("e".into(), String::new()),
                    ]
                    .into(),
                    families: text::parse(body.as_bytes()).unwrap(),
                    replace: true,
                    ttl: Some(Duration::from_secs(90)),
                    limits: Default::default(),
                },
                t,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, snapshot(&store).as_bytes()).unwrap();
        let loaded = Store::default();
        assert_eq!(load(&path, &loaded, YEAR).unwrap().loaded, 1);
        let mut a = String::new();
        let mut b = String::new();
        crate::render::render_groups(&store, &mut a);
        crate::render::render_groups(&loaded, &mut b);
        assert_eq!(a, b);
        assert_eq!(snapshot(&store), snapshot(&loaded));
        loaded.with_groups(|g, _| {
            let g = g.values().next().unwrap();
            assert_eq!(g.ttl, Some(Duration::from_secs(90)));
        });
        // Push times survive bit for bit, including ones JSON number parsing gets wrong.
        for secs in [
            1_795_536_325.452_32_f64,
            1_795_536_325.452_319_9,
            1_700_000_000.123,
            0.1 + 0.2,
        ] {
            let s = Store::default();
            s.restore(vec![Store::restored_group(
                [("job".to_string(), "t".to_string())].into(),
                vec![],
                secs,
                secs / 3.0,
                true,
                None,
            )]);
            write_atomic(&path, snapshot(&s).as_bytes()).unwrap();
            let back = Store::default();
            load(&path, &back, YEAR).unwrap();
            back.with_groups(|g, _| {
                let g = g.values().next().unwrap();
                assert_eq!(g.push_time.to_bits(), secs.to_bits());
                assert_eq!(g.push_failure_time.to_bits(), (secs / 3.0).to_bits());
            });
        }
        std::fs::write(&path, "garbage\n").unwrap();
        let err = load(&path, &Store::default(), YEAR)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    #[test]
    fn bad_groups_are_skipped_and_the_good_ones_load() {
        let header = |job: &str, push_time: &str, ttl: &str| {
            format!(
                "{{\"version\":\"1\",\"key\":{{\"job\":\"{job}\"}},\"push_time\":\"{push_time}\",\"push_failure_time\":\"0\",\"last_push_successful\":true,\"ttl_seconds\":{ttl},\"pushed_at\":{{\"m\":\"inf\"}}}}\n"
            )
        };
        let mut file = format!("{MAGIC}, format 1\n");
        file += &header("good1", "1700000000", "null");
        file += "# TYPE m gauge\nm{instance=\"\",job=\"good1\"} 1\n";
        // What an older version wrote for `?ttl=18446744073709551615s`.
        file += &header("huge_ttl", "1700000000", "\"18446744073709551615\"");
        file += "m{instance=\"\",job=\"huge_ttl\"} 1\n";
        file += &header("over_max", "1700000000", "\"31536000000000\"");
        file += &header("neg_ttl", "1700000000", "\"-1\"");
        file += &header("nan_time", "NaN", "null");
        file += &header("inf_time", "inf", "null");
        file += "{not json at all\n";
        file += &header("bad_body", "1700000000", "null");
        file += "m{ 1\n";
        file += "{\"version\":\"2\",\"key\":{\"job\":\"v2\"}}\n";
        file += &header("good2", "1700000000", "\"3600\"");
        file += "m{instance=\"\",job=\"good2\"} 2\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, file).unwrap();
        let store = Store::default();
        let report = load(&path, &store, YEAR).unwrap();
        assert_eq!(
            report,
            LoadReport {
                loaded: 2,
                skipped: 8
            }
        );
        store.with_groups(|g, _| {
            let jobs: Vec<&str> = g.keys().map(|k| k["job"].as_str()).collect();
            assert_eq!(jobs, vec!["good1", "good2"]);
            let good2 = g.values().nth(1).unwrap();
            assert_eq!(good2.ttl, Some(Duration::from_secs(3600)));
        });
        // What loaded renders, and the JSON API (TTL expiry time included) is total.
        let mut out = String::new();
        crate::render::render_groups(&store, &mut out);
        assert!(out.contains("m{instance=\"\",job=\"good2\"} 2"), "{out}");
        let api = crate::render::api_metrics(&store);
        assert!(api["data"][1]["expires_at"].is_string(), "{api}");
    }
}
