//! The local directory sink: one output file per input file, appended and fsynced.
//!
//! The acknowledged length of every output file is checkpointed with the input offsets. After
//! a crash, [`DirSink::recover`] cuts each output back to that length before anything is
//! re-read, so the local copy holds every line exactly once.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Retry, SendError};
use crate::record::Record;

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The bytes as the application wrote them.
    #[default]
    Raw,
    /// One JSON object per event (`time`, `level`, `logger`, `message`, `file`, labels).
    Json,
}

/// Writes to a directory.
#[derive(Debug)]
pub struct DirSink {
    root: PathBuf,
    format: Format,
    open: BTreeMap<String, File>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> SendError {
    SendError::new(
        Retry::Backoff,
        "io",
        format!("{what} {}: {e}", path.display()),
    )
}

impl DirSink {
    /// A sink writing under `root`.
    pub fn new(root: PathBuf, format: Format) -> Self {
        Self {
            root,
            format,
            open: BTreeMap::new(),
        }
    }

    fn output_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(p),
                    Ok(t) if t.is_file() => {
                        if let Ok(rel) = p.strip_prefix(&self.root) {
                            out.push(rel.to_string_lossy().into_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Cuts outputs back to their acknowledged length. Outputs written after the last
    /// checkpoint (unknown to it) are emptied; on the first start, existing files are kept
    /// and appended to.
    pub fn recover(
        &mut self,
        state: &mut BTreeMap<String, u64>,
        had_checkpoint: bool,
    ) -> Result<(), SendError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| io_err("cannot create output directory", &self.root, e))?;
        for rel in self.output_files() {
            let path = self.root.join(&rel);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let keep = match state.get(&rel) {
                Some(k) => *k,
                None if had_checkpoint => 0,
                None => {
                    state.insert(rel.clone(), len);
                    len
                }
            };
            if len > keep {
                tracing::info!(file = %path.display(), acknowledged = keep, length = len,
                    "Cutting unacknowledged output written before a crash.");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err("cannot open", &path, e))?;
                f.set_len(keep)
                    .map_err(|e| io_err("cannot truncate", &path, e))?;
                f.sync_all().map_err(|e| io_err("cannot sync", &path, e))?;
            }
        }
        Ok(())
    }

    fn rollback<'a>(
        &mut self,
        files: impl Iterator<Item = &'a String>,
        state: &BTreeMap<String, u64>,
    ) {
        for rel in files {
            self.open.remove(rel);
            let keep = state.get(rel).copied().unwrap_or(0);
            if let Ok(f) = OpenOptions::new().write(true).open(self.root.join(rel)) {
                let _ = f.set_len(keep);
            }
        }
    }

    /// Appends the batch and fsyncs every touched file.
    ///
    /// Each file's records are gathered into one buffer and written with one `write_all`
    /// (a write call per event cost most of this sink's CPU); its path is worked out once per
    /// run of records from the same stream.
    pub fn send(
        &mut self,
        batch: &[Record],
        state: &mut BTreeMap<String, u64>,
    ) -> Result<(), SendError> {
        // Output file → its bytes of this batch, in first-seen order of files.
        let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
        let mut last: Option<(*const crate::record::StreamInfo, usize)> = None;
        for r in batch {
            let ptr = std::sync::Arc::as_ptr(&r.stream);
            let slot = match last {
                Some((p, i)) if p == ptr => i,
                _ => {
                    let rel = r.stream.object_path(true);
                    let i = match pending.iter().position(|(k, _)| *k == rel) {
                        Some(i) => i,
                        None => {
                            pending.push((rel, Vec::new()));
                            pending.len() - 1
                        }
                    };
                    last = Some((ptr, i));
                    i
                }
            };
            let buf = &mut pending[slot].1;
            match self.format {
                Format::Raw => buf.extend_from_slice(&r.event.data),
                Format::Json => {
                    buf.extend_from_slice(r.to_json().as_bytes());
                    buf.push(b'\n');
                }
            }
        }
        let mut touched: BTreeMap<String, u64> = BTreeMap::new();
        for (rel, bytes) in pending {
            if !self.open.contains_key(&rel) {
                let path = self.root.join(&rel);
                if let Some(dir) = path.parent() {
                    if let Err(e) = std::fs::create_dir_all(dir) {
                        self.rollback(touched.keys(), state);
                        return Err(io_err("cannot create directory", dir, e));
                    }
                }
                match OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(f) => {
                        self.open.insert(rel.clone(), f);
                    }
                    Err(e) => {
                        self.rollback(touched.keys(), state);
                        return Err(io_err("cannot open", &path, e));
                    }
                }
            }
            let Some(f) = self.open.get_mut(&rel) else {
                continue;
            };
            if let Err(e) = f.write_all(&bytes) {
                // Put every file of this batch back to its acknowledged length so that the
                // retry does not write anything twice.
                touched.insert(rel.clone(), 0);
                self.rollback(touched.keys(), state);
                return Err(io_err("cannot write", &self.root.join(&rel), e));
            }
            touched.insert(rel, 0);
        }
        let mut lengths = BTreeMap::new();
        for rel in touched.keys() {
            if let Some(f) = self.open.get(rel) {
                let path = self.root.join(rel);
                let synced = f.sync_data().and_then(|()| f.metadata()).map(|m| m.len());
                match synced {
                    Ok(len) => {
                        lengths.insert(rel.clone(), len);
                    }
                    Err(e) => {
                        self.rollback(touched.keys(), state);
                        return Err(io_err("cannot sync", &path, e));
                    }
                }
            }
        }
        state.extend(lengths);
        Ok(())
    }
}
