//! Durable progress: which bytes of which files a sink has acknowledged, plus the sink's own
//! position state (local file lengths, OSS append positions).
//!
//! A checkpoint is a versioned JSON document written to a temporary file, `sync_all`ed,
//! renamed over the old one and the directory synced: a crash leaves either the old or the
//! new checkpoint, never a torn one. It is written only after the sink acknowledged the
//! batch it describes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::tailer::Positions;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// I/O on the checkpoint file.
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but is not a checkpoint this version understands.
    #[error("checkpoint {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `pub type Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The content, as of version 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Committed positions per stream (input path), oldest file first.
    pub files: Positions,
    /// The sink's own durable state (e.g. output file → acknowledged length).
    #[serde(default)]
    pub sink: BTreeMap<String, u64>,
}

/// The on-disk document: a version tag and the state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum Document {
    #[serde(rename = "1")]
    V1(State),
}

/// A checkpoint file.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
}

impl Checkpoint {
    /// The checkpoint at `path` (not read yet).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads it; `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<State>> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let doc: Document = serde_json::from_slice(&text).map_err(|e| Error::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        match doc {
            Document::V1(s) => Ok(Some(s)),
        }
    }

    /// Writes it: temp file, fsync, rename, fsync of the directory
    /// ([`common::fs::write_atomic`]).
    pub fn store(&self, state: &State) -> Result<()> {
        let body =
            serde_json::to_vec(&Document::V1(state.clone())).map_err(|e| Error::Invalid {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        common::fs::write_atomic(&self.path, &body).map_err(|e| Error::Io {
            path: e.path,
            source: e.source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tailer::{FilePosition, Fingerprint};

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoint::new(dir.path().join("c.json"));
        assert_eq!(c.load().unwrap(), None);
        let mut s = State::default();
        s.files.insert(
            "/l/a.log".into(),
            vec![FilePosition {
                dev: 1,
                ino: 2,
                fingerprint: Fingerprint { len: 3, hash: 4 },
                offset: 5,
                done: false,
            }],
        );
        s.sink.insert("a.log".into(), 5);
        c.store(&s).unwrap();
        assert_eq!(c.load().unwrap(), Some(s));
        let text = std::fs::read_to_string(c.path()).unwrap();
        assert!(text.starts_with("{\"version\":\"1\""), "{text}");
        std::fs::write(c.path(), "{\"version\":\"9\",\"files\":{}}").unwrap();
        let err = c.load().unwrap_err().to_string();
        assert!(err.contains("c.json") && err.contains("9"), "{err}");
    }
}
