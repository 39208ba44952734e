//! The outage buffer: batches a sink could not take yet, spilled to disk in order.
//!
//! While a sink is down, the shipper keeps reading (Flink keeps only ~10 MB of logs before
//! rotation deletes them) and appends each batch here as one file, written to a temporary
//! name, fsynced and renamed; only then are the batch's file offsets checkpointed. The head
//! is retried with backoff and deleted once the sink acknowledged it (after the checkpoint
//! holding the sink's new state is stored). The size is bounded: when full, either reading
//! stops (`block`) or the oldest batch is dropped (`drop_oldest`), counted.

use std::{
    collections::VecDeque,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    config::Overflow,
    multiline::Event,
    record::{Record, StreamInfo},
};

const MAGIC: &[u8; 4] = b"LSB1";

#[derive(Debug)]
struct Entry {
    seq: u64,
    bytes: u64,
    events: usize,
}

/// A directory of spilled batches.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    policy: Overflow,
    queue: VecDeque<Entry>,
    next_seq: u64,
    bytes: u64,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated buffer file",
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

impl DiskBuffer {
    /// Opens (and creates) the buffer directory, picking up batches left by a previous run.
    pub fn open(dir: PathBuf, max_bytes: u64, policy: Overflow) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".batch")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
            let events = read_count(&e.path()).unwrap_or(0);
            entries.push(Entry { seq, bytes, events });
        }
        entries.sort_by_key(|e| e.seq);
        let next_seq = entries.last().map(|e| e.seq + 1).unwrap_or(1);
        let bytes = entries.iter().map(|e| e.bytes).sum();
        Ok(Self {
            dir,
            max_bytes,
            policy,
            queue: entries.into(),
            next_seq,
            bytes,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.batch"))
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Events buffered.
    pub fn events(&self) -> usize {
        self.queue.iter().map(|e| e.events).sum()
    }

    /// Whether reading must stop: full under the `block` policy.
    pub fn blocked(&self) -> bool {
        self.policy == Overflow::Block && self.bytes >= self.max_bytes
    }

    /// Appends a batch durably. Under `drop_oldest`, first drops the oldest batches until
    /// it fits; returns the number of events dropped.
    pub fn push(&mut self, batch: &[Record]) -> io::Result<usize> {
        let mut body =
            Vec::with_capacity(64 + batch.iter().map(|r| r.event.data.len() + 64).sum::<usize>());
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&(batch.len() as u32).to_le_bytes());
        for r in batch {
            put_bytes(&mut body, r.stream.path.as_bytes());
            body.extend_from_slice(&r.event.end.to_le_bytes());
            let t = r
                .read_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            body.extend_from_slice(&t.as_secs().to_le_bytes());
            body.extend_from_slice(&t.subsec_nanos().to_le_bytes());
            put_bytes(&mut body, &r.event.data);
        }
        let mut dropped = 0;
        if self.policy == Overflow::DropOldest {
            while !self.queue.is_empty() && self.bytes + body.len() as u64 > self.max_bytes {
                dropped += self.queue.front().map(|e| e.events).unwrap_or(0);
                self.pop()?;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.path(seq);
        common::fs::write_atomic(&path, &body)?;
        self.bytes += body.len() as u64;
        self.queue.push_back(Entry {
            seq,
            bytes: body.len() as u64,
            events: batch.len(),
        });
        Ok(dropped)
    }

    /// The oldest batch, with stream information from `info` (by input path).
    pub fn head(
        &self,
        info: &mut dyn FnMut(&str) -> Arc<StreamInfo>,
    ) -> io::Result<Option<Vec<Record>>> {
        let Some(e) = self.queue.front() else {
            return Ok(None);
        };
        let raw = std::fs::read(self.path(e.seq))?;
        let mut c = Cursor(&raw);
        if c.take(4)? != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a buffer file",
            ));
        }
        let n = c.u32()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let path = String::from_utf8_lossy(c.bytes()?).into_owned();
            let end = c.u64()?;
            let secs = c.u64()?;
            let nanos = c.u32()?;
            let data = c.bytes()?.to_vec();
            let stream = info(&path);
            out.push(Record {
                event: Event {
                    stream: Arc::from(path.as_str()),
                    file: 0,
                    end,
                    data,
                },
                stream,
                read_at: SystemTime::UNIX_EPOCH + Duration::new(secs, nanos),
            });
        }
        Ok(Some(out))
    }

    /// Deletes the oldest batch.
    pub fn pop(&mut self) -> io::Result<()> {
        if let Some(e) = self.queue.pop_front() {
            self.bytes = self.bytes.saturating_sub(e.bytes);
            match std::fs::remove_file(self.path(e.seq)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }
}

fn read_count(path: &Path) -> io::Result<usize> {
    let raw = std::fs::read(path)?;
    let mut c = Cursor(&raw);
    c.take(4)?;
    Ok(c.u32()? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Labels;

    fn rec(text: &str) -> Record {
        let stream = Arc::new(StreamInfo {
            path: "/l/a.log".into(),
            file_name: "a.log".into(),
            relative: "a.log".into(),
            labels: Labels::default(),
        });
        Record {
            event: Event {
                stream: Arc::from("/l/a.log"),
                file: 1,
                end: 7,
                data: text.as_bytes().to_vec(),
            },
            stream,
            read_at: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
        }
    }

    #[test]
    fn survives_reopen_in_order_and_drops_oldest_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = DiskBuffer::open(dir.path().into(), 10_000, Overflow::DropOldest).unwrap();
        b.push(&[rec("one\n"), rec("two\n")]).unwrap();
        b.push(&[rec("three\n")]).unwrap();
        drop(b);
        let mut b = DiskBuffer::open(dir.path().into(), 10_000, Overflow::DropOldest).unwrap();
        assert_eq!(b.events(), 3);
        let mut info = |_: &str| rec("").stream;
        let head = b.head(&mut info).unwrap().unwrap();
        assert_eq!(head[1].event.data, b"two\n");
        assert_eq!(
            head[0].read_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(5)
        );
        b.pop().unwrap();
        let head = b.head(&mut info).unwrap().unwrap();
        assert_eq!(head[0].event.data, b"three\n");

        let mut small = DiskBuffer::open(dir.path().join("s"), 150, Overflow::DropOldest).unwrap();
        assert_eq!(small.push(&[rec(&"x".repeat(60))]).unwrap(), 0);
        assert_eq!(
            small.push(&[rec(&"y".repeat(60))]).unwrap(),
            1,
            "oldest dropped"
        );
        assert_eq!(small.events(), 1);
        let head = small.head(&mut info).unwrap().unwrap();
        assert!(head[0].event.data.starts_with(b"y"));

        let mut blocking = DiskBuffer::open(dir.path().join("b"), 50, Overflow::Block).unwrap();
        assert!(!blocking.blocked());
        blocking.push(&[rec(&"z".repeat(60))]).unwrap();
        assert!(blocking.blocked());
    }
}
