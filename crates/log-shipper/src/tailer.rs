//! Following files by path through rotation, truncation and re-creation.
//!
//! A [`Tailer`] watches a set of *streams*: one stream per input path (`log/jobmanager.log`).
//! A stream is an ordered queue of physical files: the file currently at the path plus any
//! older files it replaced (renamed away, deleted, truncated) that still have unread or
//! unacknowledged bytes. Files are identified by device + inode **and** a fingerprint of
//! their first bytes, so an inode reused by a new file is not mistaken for the old one.
//!
//! - rename rotation (`x.log` → `x.log.1`, log4j2 and logrotate `create`): the old file stays
//!   open and is read to its end before the new one is read;
//! - delete and re-create: the same, through the still-open descriptor;
//! - copytruncate: the copy (a sibling whose first bytes match) is read from the old offset,
//!   then the truncated file from 0;
//! - restart: [`Tailer::restore`] finds each checkpointed file by identity at its path or
//!   among its siblings (where rotation moved it while the shipper was down).
//!
//! Offsets move in two steps: *read* (lines handed out by [`Tailer::poll`]) and *committed*
//! ([`Tailer::commit`], after a sink acknowledged them). Only committed offsets are
//! checkpointed, so a crash re-reads at most what was in flight.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file together with its inode.
pub const FINGERPRINT_BYTES: usize = 256;
/// How much one stream may read in one poll (fairness between files, bounded memory).
const READ_BUDGET: usize = 4 << 20;
/// A line longer than this is cut (and the rest delivered as the next line).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Hash of a file's first bytes (FNV-1a, 64 bit) and how many bytes it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fingerprint {
    /// Bytes covered (up to [`FINGERPRINT_BYTES`]).
    pub len: u32,
    /// FNV-1a 64 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            len: bytes.len() as u32,
            hash: h,
        }
    }

    /// Reads the first `len` bytes of `file` and fingerprints them; `None` if it is shorter.
    fn read(file: &File, len: usize) -> io::Result<Option<Self>> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = file.read_at(&mut buf[got..], got as u64)?;
            if n == 0 {
                return Ok(None);
            }
            got += n;
        }
        Ok(Some(Self::of(&buf)))
    }

    /// Whether `file` starts with the bytes this fingerprint covers.
    fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        Ok(Self::read(file, self.len as usize)? == Some(*self))
    }
}

/// One physical file's committed position, as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Fingerprint of the first bytes.
    pub fingerprint: Fingerprint,
    /// Bytes of the file acknowledged by the sink.
    pub offset: u64,
    /// The file was read to its end and acknowledged; kept (a few per stream) so that a
    /// copy or rotated name of it is not read again after a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// Every stream's files and committed offsets (oldest file first).
pub type Positions = BTreeMap<String, Vec<FilePosition>>;

/// A complete line read from a stream (with its `\n`; a final unterminated line of a
/// rotated-away file gets one added).
#[derive(Debug, Clone)]
pub struct Line {
    /// The stream (input path) it belongs to.
    pub stream: Arc<str>,
    /// Serial number of the physical file it came from (see [`Tailer::commit`]).
    pub file: u64,
    /// Offset just past this line in that file.
    pub end: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Whether this line is the first one read from its physical file since it was
    /// opened (a new file starts a new multiline event).
    pub new_file: bool,
}

/// What happened to the files of a stream, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// A file appeared at the path (first sight, rotation or re-creation).
    Opened { stream: Arc<str> },
    /// The file at the path was replaced (renamed or deleted); the old one is drained.
    Rotated { stream: Arc<str> },
    /// The file at the path was truncated in place (copytruncate).
    Truncated { stream: Arc<str>, copy_found: bool },
    /// A file's fingerprint grew (it had fewer than [`FINGERPRINT_BYTES`] bytes before);
    /// worth checkpointing, so that a copy of it can be recognised after a restart.
    Identified { stream: Arc<str> },
    /// A checkpointed file could not be found again after a restart.
    Lost { stream: Arc<str>, unread_from: u64 },
}

#[derive(Debug)]
struct Tracked {
    serial: u64,
    dev: u64,
    ino: u64,
    fingerprint: Fingerprint,
    file: File,
    /// Offset just past the last complete line handed out.
    read: u64,
    /// Bytes read past `read` without a newline yet.
    partial: Vec<u8>,
    committed: u64,
    /// No longer the file at the stream's path.
    retired: Option<Instant>,
    /// Nothing more will be read from it (drained, or truncated underneath us).
    done: bool,
    fresh: bool,
}

impl Tracked {
    fn open(serial: u64, path: &Path, offset: u64) -> io::Result<Self> {
        Self::from_file(serial, File::open(path)?, offset)
    }

    fn from_file(serial: u64, mut file: File, offset: u64) -> io::Result<Self> {
        let meta = file.metadata()?;
        file.seek(SeekFrom::Start(offset))?;
        let fp_len = (meta.len() as usize).min(FINGERPRINT_BYTES);
        let fingerprint = Fingerprint::read(&file, fp_len)?.unwrap_or_default();
        Ok(Self {
            serial,
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
            file,
            read: offset,
            partial: Vec::new(),
            committed: offset,
            retired: None,
            done: false,
            fresh: offset == 0,
        })
    }

    fn position(&self) -> FilePosition {
        FilePosition {
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint,
            offset: self.committed,
            done: false,
        }
    }

    /// Grows the fingerprint up to [`FINGERPRINT_BYTES`] once the file is long enough;
    /// returns whether it changed.
    fn extend_fingerprint(&mut self, size: u64) -> io::Result<bool> {
        let want = (size as usize).min(FINGERPRINT_BYTES);
        if want as u32 > self.fingerprint.len {
            if let Some(fp) = Fingerprint::read(&self.file, want)? {
                self.fingerprint = fp;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[derive(Debug)]
struct Stream {
    name: Arc<str>,
    path: PathBuf,
    files: VecDeque<Tracked>,
    /// Identities of files finished and forgotten recently (so that a rotated copy of one
    /// is not mistaken for a missed rotation).
    forgotten: VecDeque<(u64, u64, Fingerprint)>,
}

impl Stream {
    fn forget_front(&mut self) {
        if let Some(t) = self.files.pop_front() {
            self.forgotten.push_back((t.dev, t.ino, t.fingerprint));
            if self.forgotten.len() > 32 {
                self.forgotten.pop_front();
            }
        }
    }

    fn knows(&self, m: &std::fs::Metadata, f: &File) -> bool {
        self.files.iter().any(|t| {
            (t.dev == m.dev() && t.ino == m.ino())
                || (t.fingerprint.len > 0 && t.fingerprint.matches(f).unwrap_or(false))
        }) || self.forgotten.iter().any(|(dev, ino, fp)| {
            // A forgotten inode may have been reused: its first bytes must match too.
            let same_bytes = fp.matches(f).unwrap_or(false);
            (fp.len > 0 && same_bytes) || (*dev == m.dev() && *ino == m.ino() && same_bytes)
        })
    }
}

/// Tails many streams. Synchronous: call [`Tailer::poll`] periodically.
#[derive(Debug)]
pub struct Tailer {
    streams: BTreeMap<Arc<str>, Stream>,
    next_serial: u64,
    /// How long a replaced file whose successor is still empty is kept open for late writes.
    pub linger: Duration,
    events: Vec<FileEvent>,
    scratch: Vec<u8>,
}

impl Default for Tailer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tailer {
    /// A tailer with no streams.
    pub fn new() -> Self {
        Self {
            streams: BTreeMap::new(),
            next_serial: 1,
            linger: Duration::from_secs(2),
            events: Vec::new(),
            scratch: vec![0u8; 64 * 1024],
        }
    }

    fn serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }

    /// Starts following `path` (idempotent). New streams are read from the beginning.
    pub fn watch(&mut self, path: &Path) -> Arc<str> {
        let name: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        self.streams.entry(name.clone()).or_insert_with(|| Stream {
            name: name.clone(),
            path: path.to_path_buf(),
            files: VecDeque::new(),
            forgotten: VecDeque::new(),
        });
        name
    }

    /// Stops following a stream: its files are closed and it leaves the positions.
    pub fn unwatch(&mut self, name: &str) {
        self.streams.remove(name);
    }

    /// The streams being followed.
    pub fn streams(&self) -> impl Iterator<Item = &Arc<str>> {
        self.streams.keys()
    }

    /// Re-opens the files of a checkpoint. Each file is looked up by device + inode +
    /// fingerprint at the stream's path, then among the files of the same directory
    /// (rotated while the shipper was down); a copy made by copytruncate is found by its
    /// fingerprint. Files that cannot be found are reported as [`FileEvent::Lost`].
    pub fn restore(&mut self, positions: &Positions) {
        for (name, files) in positions {
            let path = PathBuf::from(name);
            let stream_name = self.watch(&path);
            let mut restored = VecDeque::new();
            let mut forgotten = VecDeque::new();
            for pos in files {
                if pos.done {
                    forgotten.push_back((pos.dev, pos.ino, pos.fingerprint));
                    continue;
                }
                match self.find(&path, pos) {
                    Some((found_path, at_path))
                        if !restored.iter().any(|t: &Tracked| {
                            std::fs::metadata(&found_path)
                                .is_ok_and(|m| m.dev() == t.dev && m.ino() == t.ino)
                        }) =>
                    {
                        let serial = self.serial();
                        match Tracked::open(serial, &found_path, pos.offset) {
                            Ok(mut t) => {
                                t.fresh = false;
                                if !at_path {
                                    t.retired = Some(Instant::now());
                                }
                                restored.push_back(t);
                            }
                            Err(e) => {
                                tracing::warn!(file = %found_path.display(), error = %e, "Cannot reopen a checkpointed file.");
                                self.events.push(FileEvent::Lost {
                                    stream: stream_name.clone(),
                                    unread_from: pos.offset,
                                });
                            }
                        }
                    }
                    // Already restored through an earlier entry (a copy found by its first
                    // bytes covers the original's offset and everything after).
                    Some(_) => {}
                    None => {
                        self.events.push(FileEvent::Lost {
                            stream: stream_name.clone(),
                            unread_from: pos.offset,
                        });
                    }
                }
            }
            // Only the newest file can still be the one at the path.
            let n = restored.len();
            for (i, t) in restored.iter_mut().enumerate() {
                if i + 1 < n && t.retired.is_none() {
                    t.retired = Some(Instant::now());
                }
            }
            if let Some(mut s) = self.streams.remove(&stream_name) {
                s.files = restored;
                s.forgotten = forgotten;
                let rotated_away = s.files.back().is_some_and(|t| t.retired.is_some());
                if rotated_away {
                    let at_path = std::fs::metadata(&s.path).ok().map(|m| (m.dev(), m.ino()));
                    self.missed_rotations(&mut s, at_path, Instant::now());
                }
                self.streams.insert(stream_name.clone(), s);
            }
        }
    }

    /// Finds a checkpointed file: (its path now, whether that is the stream's path).
    fn find(&self, path: &Path, pos: &FilePosition) -> Option<(PathBuf, bool)> {
        let candidate = |p: &Path| -> Option<bool> {
            let f = File::open(p).ok()?;
            let m = f.metadata().ok()?;
            if !m.is_file() || m.len() < pos.offset {
                return None;
            }
            if !pos.fingerprint.matches(&f).ok()? {
                return None;
            }
            Some(m.dev() == pos.dev && m.ino() == pos.ino)
        };
        if candidate(path) == Some(true) {
            return Some((path.to_path_buf(), true));
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        let mut copy = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let p = entry.path();
            if p == path {
                continue;
            }
            match candidate(&p) {
                Some(true) => return Some((p, false)),
                // Same first bytes, other inode: a copy (copytruncate). Needs a fingerprint
                // to tell it from an unrelated file.
                Some(false) if pos.fingerprint.len > 0 && copy.is_none() => copy = Some(p),
                _ => {}
            }
        }
        // The original may still be at the path, truncated: then the copy holds the rest.
        copy.map(|p| (p, false))
    }

    /// File events since the last call.
    pub fn take_events(&mut self) -> Vec<FileEvent> {
        std::mem::take(&mut self.events)
    }

    /// Checks every stream's path for rotation/truncation and reads what is new.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Line>) {
        let names: Vec<Arc<str>> = self.streams.keys().cloned().collect();
        for name in names {
            self.poll_stream(&name, now, out);
        }
    }

    fn poll_stream(&mut self, name: &Arc<str>, now: Instant, out: &mut Vec<Line>) {
        let Some(mut stream) = self.streams.remove(name) else {
            return;
        };
        if let Err(e) = self.check_path(&mut stream, now) {
            tracing::debug!(stream = %stream.name, error = %e, "Cannot check the file at the path.");
        }
        let mut i = 0;
        while i < stream.files.len() {
            if !stream.files[i].done {
                match self.check_truncated(&mut stream, i, now) {
                    Ok(added) => i += added,
                    Err(e) => {
                        tracing::debug!(stream = %stream.name, error = %e, "Cannot check a file.")
                    }
                }
            }
            i += 1;
        }
        let mut budget = READ_BUDGET;
        let linger = self.linger;
        let count = stream.files.len();
        for i in 0..count {
            let successor_has_data = stream
                .files
                .get(i + 1)
                .map(|n| n.file.metadata().map(|m| m.len() > 0).unwrap_or(true))
                .unwrap_or(false);
            let t = &mut stream.files[i];
            if t.done {
                continue;
            }
            let at_eof = match read_lines(&stream.name, t, &mut self.scratch, &mut budget, out) {
                Ok(eof) => eof,
                Err(e) => {
                    tracing::warn!(stream = %stream.name, error = %e, "Read failed.");
                    false
                }
            };
            if let Some(since) = t.retired {
                if at_eof && (successor_has_data || now.duration_since(since) >= linger) {
                    finish(&stream.name, t, out);
                } else {
                    // Keep the order: nothing from newer files until this one is done.
                    break;
                }
            }
            if !at_eof {
                break;
            }
        }
        self.streams.insert(name.clone(), stream);
    }

    /// Detects that file `i` was truncated (or rewritten) underneath us, through its own
    /// descriptor, wherever it now lives. The old content after our offset then only exists
    /// in a copy (copytruncate), which is read next; then the file's new content from 0.
    /// Returns how many files were inserted after `i`.
    fn check_truncated(
        &mut self,
        stream: &mut Stream,
        i: usize,
        now: Instant,
    ) -> io::Result<usize> {
        let t = &mut stream.files[i];
        let size = t.file.metadata()?.len();
        let consumed = t.read + t.partial.len() as u64;
        if size >= consumed && t.fingerprint.matches(&t.file)? {
            if t.extend_fingerprint(size)? {
                self.events.push(FileEvent::Identified {
                    stream: stream.name.clone(),
                });
            }
            return Ok(0);
        }
        let old_fp = t.fingerprint;
        let old_read = t.read;
        let was_retired = t.retired;
        t.done = true;
        t.retired = Some(was_retired.unwrap_or(now));
        t.partial.clear();
        let file = t.file.try_clone()?;
        let known: Vec<(u64, u64)> = stream.files.iter().map(|t| (t.dev, t.ino)).collect();
        let copy = find_copy(&stream.path, old_fp, old_read, &known);
        let mut added = 0;
        if let Some(copy) = &copy {
            let serial = self.serial();
            if let Ok(mut c) = Tracked::open(serial, copy, old_read) {
                c.retired = Some(now);
                c.fresh = false;
                stream.files.insert(i + 1 + added, c);
                added += 1;
            }
        }
        self.events.push(FileEvent::Truncated {
            stream: stream.name.clone(),
            copy_found: copy.is_some(),
        });
        let serial = self.serial();
        let mut again = Tracked::from_file(serial, file, 0)?;
        again.retired = was_retired;
        stream.files.insert(i + 1 + added, again);
        Ok(added + 1)
    }

    /// Files that were created at the path *and* rotated away between two looks (a fast
    /// writer, or while the shipper was down): siblings named `{file}.*` that are newer than
    /// the newest known file, neither known nor a copy of a known file, nor the file now at
    /// the path. They are queued, oldest first, before the file at the path.
    fn missed_rotations(&mut self, stream: &mut Stream, at_path: Option<(u64, u64)>, now: Instant) {
        let Some(newest) = stream
            .files
            .back()
            .and_then(|t| t.file.metadata().ok())
            .and_then(|m| m.modified().ok())
        else {
            return;
        };
        let Some(name) = stream
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return;
        };
        let Some(dir) = stream.path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{name}.");
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            if !fname.starts_with(&prefix)
                || [".gz", ".zip", ".bz2", ".xz", ".zst", ".lz4"]
                    .iter()
                    .any(|x| fname.ends_with(x))
            {
                continue;
            }
            let p = e.path();
            let Ok(f) = File::open(&p) else { continue };
            let Ok(m) = f.metadata() else { continue };
            let Ok(mtime) = m.modified() else { continue };
            if !m.is_file()
                || mtime < newest
                || at_path == Some((m.dev(), m.ino()))
                || stream.knows(&m, &f)
            {
                continue;
            }
            found.push((mtime, p));
        }
        found.sort();
        for (_, p) in found {
            let serial = self.serial();
            if let Ok(mut t) = Tracked::open(serial, &p, 0) {
                tracing::info!(stream = %stream.name, file = %p.display(), "Reading a file rotated away before it was seen.");
                t.retired = Some(now);
                stream.files.push_back(t);
                self.events.push(FileEvent::Opened {
                    stream: stream.name.clone(),
                });
            }
        }
    }

    /// Compares the file at the stream's path with the current one.
    fn check_path(&mut self, stream: &mut Stream, now: Instant) -> io::Result<()> {
        let meta = match std::fs::metadata(&stream.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Renamed away or deleted: keep draining through the open descriptor.
                if let Some(cur) = stream.files.back_mut() {
                    if cur.retired.is_none() {
                        cur.retired = Some(now);
                        self.events.push(FileEvent::Rotated {
                            stream: stream.name.clone(),
                        });
                    }
                    // Files that came and went while the path was empty.
                    self.missed_rotations(stream, None, now);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let current = stream.files.back_mut().filter(|t| t.retired.is_none());
        match current {
            Some(cur) if cur.dev == meta.dev() && cur.ino == meta.ino() => {
                // Same file; truncation is checked on the descriptor (see `check_truncated`).
            }
            Some(cur) => {
                // Another file at the path: rotation or delete + re-create.
                cur.retired = Some(now);
                self.events.push(FileEvent::Rotated {
                    stream: stream.name.clone(),
                });
                self.missed_rotations(stream, Some((meta.dev(), meta.ino())), now);
                let serial = self.serial();
                stream
                    .files
                    .push_back(Tracked::open(serial, &stream.path, 0)?);
                self.events.push(FileEvent::Opened {
                    stream: stream.name.clone(),
                });
            }
            None => {
                // Nothing current: first sight, or a new file after the old one vanished.
                // A restored-but-retired file may be this very file (renamed back): skip it.
                let known = stream.files.iter().any(|t| {
                    !t.done
                        && t.dev == meta.dev()
                        && t.ino == meta.ino()
                        && t.fingerprint.matches(&t.file).unwrap_or(false)
                });
                if !known {
                    self.missed_rotations(stream, Some((meta.dev(), meta.ino())), now);
                    let serial = self.serial();
                    stream
                        .files
                        .push_back(Tracked::open(serial, &stream.path, 0)?);
                    self.events.push(FileEvent::Opened {
                        stream: stream.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Marks everything up to `end` of physical file `file` of `stream` as acknowledged, and
    /// forgets files that are done and fully acknowledged.
    /// Returns whether a drained (rotated away) file was closed and forgotten by it.
    pub fn commit(&mut self, stream: &str, file: u64, end: u64) -> bool {
        let mut closed = false;
        if let Some(s) = self.streams.get_mut(stream) {
            for t in s.files.iter_mut() {
                if t.serial == file && end > t.committed {
                    t.committed = end;
                }
            }
            while s
                .files
                .front()
                .is_some_and(|t| t.done && t.committed >= t.read && s.files.len() > 1)
            {
                s.forget_front();
                closed = true;
            }
            if s.files.len() == 1 && s.files[0].done && s.files[0].committed >= s.files[0].read {
                s.forget_front();
                closed = true;
            }
        }
        closed
    }

    /// The committed positions of every stream, for the checkpoint.
    pub fn positions(&self) -> Positions {
        self.streams
            .iter()
            .filter(|(_, s)| !s.files.is_empty() || !s.forgotten.is_empty())
            .map(|(name, s)| {
                let done = s.forgotten.iter().map(|(dev, ino, fp)| FilePosition {
                    dev: *dev,
                    ino: *ino,
                    fingerprint: *fp,
                    offset: 0,
                    done: true,
                });
                (
                    name.to_string(),
                    done.chain(s.files.iter().map(Tracked::position)).collect(),
                )
            })
            .collect()
    }

    /// Bytes not yet acknowledged per stream (file sizes minus committed offsets).
    pub fn lag(&self) -> BTreeMap<Arc<str>, u64> {
        self.streams
            .iter()
            .map(|(name, s)| {
                let lag = s
                    .files
                    .iter()
                    .filter(|t| !t.done || t.committed < t.read)
                    .map(|t| {
                        let size = if t.done {
                            t.read
                        } else {
                            t.file.metadata().map(|m| m.len()).unwrap_or(t.read)
                        };
                        size.saturating_sub(t.committed)
                    })
                    .sum();
                (name.clone(), lag)
            })
            .collect()
    }

    /// Number of open files.
    pub fn open_files(&self) -> usize {
        self.streams.values().map(|s| s.files.len()).sum()
    }
}

/// Reads complete lines; returns whether the end of the file was reached.
fn read_lines(
    stream: &Arc<str>,
    t: &mut Tracked,
    buf: &mut [u8],
    budget: &mut usize,
    out: &mut Vec<Line>,
) -> io::Result<bool> {
    loop {
        if *budget == 0 {
            return Ok(false);
        }
        let n = t.file.read(buf)?;
        if n == 0 {
            return Ok(true);
        }
        *budget = budget.saturating_sub(n);
        let mut chunk = &buf[..n];
        while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            let mut data = std::mem::take(&mut t.partial);
            data.extend_from_slice(&chunk[..=i]);
            chunk = &chunk[i + 1..];
            t.read += data.len() as u64;
            out.push(Line {
                stream: stream.clone(),
                file: t.serial,
                end: t.read,
                data,
                new_file: std::mem::take(&mut t.fresh),
            });
        }
        t.partial.extend_from_slice(chunk);
        if t.partial.len() >= MAX_LINE_BYTES {
            let data = std::mem::take(&mut t.partial);
            t.read += data.len() as u64;
            out.push(Line {
                stream: stream.clone(),
                file: t.serial,
                end: t.read,
                data,
                new_file: std::mem::take(&mut t.fresh),
            });
        }
    }
}

/// A replaced file is done: its unterminated last line (if any) is delivered with a `\n`.
fn finish(stream: &Arc<str>, t: &mut Tracked, out: &mut Vec<Line>) {
    if !t.partial.is_empty() {
        let mut data = std::mem::take(&mut t.partial);
        t.read += data.len() as u64;
        data.push(b'\n');
        out.push(Line {
            stream: stream.clone(),
            file: t.serial,
            end: t.read,
            data,
            new_file: std::mem::take(&mut t.fresh),
        });
    }
    t.done = true;
}

/// The copy copytruncate made of `path`: a sibling starting with the same bytes and at
/// least `offset` long (newest first).
fn find_copy(path: &Path, fp: Fingerprint, offset: u64, known: &[(u64, u64)]) -> Option<PathBuf> {
    if fp.len == 0 {
        return None;
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p == path {
            continue;
        }
        let Ok(f) = File::open(&p) else { continue };
        let Ok(m) = f.metadata() else { continue };
        if !m.is_file()
            || m.len() < offset
            || known.contains(&(m.dev(), m.ino()))
            || !fp.matches(&f).unwrap_or(false)
        {
            continue;
        }
        let mtime = m.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(t, _)| mtime > *t) {
            best = Some((mtime, p));
        }
    }
    best.map(|(_, p)| p)
}
