//! Model test of the tailer: random sequences of append, rename rotation, copytruncate,
//! delete, re-create, acknowledge and crash/restart against real files. Every written line
//! must be delivered, in write order per stream (first deliveries), and a line may be
//! delivered twice only if it was delivered but not yet acknowledged when a crash happened.

use std::{
    collections::{HashMap, HashSet},
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use log_shipper::tailer::{Line, Positions, Tailer};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { stream: usize, lines: usize },
    Poll,
    Ack,
    Rotate { stream: usize },
    CopyTruncate { stream: usize },
    Delete { stream: usize },
    Crash,
}

const STREAMS: usize = 2;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..STREAMS, 1usize..12).prop_map(|(stream, lines)| Op::Append { stream, lines }),
        4 => Just(Op::Poll),
        2 => Just(Op::Ack),
        2 => (0..STREAMS).prop_map(|stream| Op::Rotate { stream }),
        2 => (0..STREAMS).prop_map(|stream| Op::CopyTruncate { stream }),
        1 => (0..STREAMS).prop_map(|stream| Op::Delete { stream }),
        2 => Just(Op::Crash),
    ]
}

struct World {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    written: Vec<Vec<String>>,
    next_line: usize,
    next_name: usize,
    /// `None` while the shipper is down (after a crash, until the next poll).
    tailer: Option<Tailer>,
    now: Instant,
    checkpoint: Positions,
    delivered: Vec<Vec<String>>,
    unacked: Vec<Line>,
    crash_window: HashMap<String, usize>,
    /// Streams replaced (renamed, truncated, deleted) since the last poll.
    replaced: HashSet<usize>,
}

impl World {
    fn new(dir: &Path) -> Self {
        let paths: Vec<PathBuf> = (0..STREAMS)
            .map(|i| dir.join(format!("s{i}.log")))
            .collect();
        let mut tailer = Tailer::new();
        for p in &paths {
            tailer.watch(p);
        }
        Self {
            dir: dir.to_path_buf(),
            paths,
            written: vec![Vec::new(); STREAMS],
            next_line: 0,
            next_name: 0,
            tailer: Some(tailer),
            now: Instant::now(),
            checkpoint: Positions::new(),
            delivered: vec![Vec::new(); STREAMS],
            unacked: Vec::new(),
            crash_window: HashMap::new(),
            replaced: HashSet::new(),
        }
    }

    fn stream_index(&self, name: &str) -> usize {
        self.paths
            .iter()
            .position(|p| p.to_string_lossy() == name)
            .expect("known stream")
    }

    fn up(&mut self) -> &mut Tailer {
        if self.tailer.is_none() {
            let mut t = Tailer::new();
            t.restore(&self.checkpoint);
            for p in &self.paths {
                t.watch(p);
            }
            self.tailer = Some(t);
        }
        self.tailer.as_mut().unwrap()
    }

    fn poll(&mut self) {
        // Time moves on between polls (past the linger of replaced files).
        self.now += Duration::from_secs(3);
        // A replaced stream counts as seen again once a poll found data at its path (an empty
        // file has no fingerprint; see the README's limits).
        let paths = self.paths.clone();
        self.replaced.retain(|s| {
            std::fs::metadata(&paths[*s])
                .map(|m| m.len() == 0)
                .unwrap_or(true)
        });
        let mut out = Vec::new();
        let now = self.now;
        let t = self.up();
        t.poll(now, &mut out);
        // Like the shipper: a checkpoint (of committed offsets) is stored when files appear
        // or are replaced, so that a file is known before its first line is acknowledged.
        if !t.take_events().is_empty() {
            self.checkpoint = t.positions();
        }
        for l in out {
            let i = self.stream_index(&l.stream);
            let text = String::from_utf8(l.data.clone()).unwrap();
            self.delivered[i].push(text);
            self.unacked.push(l);
        }
    }

    fn ack(&mut self) {
        let unacked = std::mem::take(&mut self.unacked);
        let t = self.up();
        for l in unacked {
            t.commit(&l.stream, l.file, l.end);
        }
        self.checkpoint = t.positions();
    }

    fn append(&mut self, stream: usize, lines: usize) {
        let fresh = !self.paths[stream].exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths[stream])
            .unwrap();
        for _ in 0..lines {
            let line = format!(
                "stream {stream} line {:06} {}\n",
                self.next_line,
                "x".repeat(self.next_line % 40)
            );
            self.next_line += 1;
            f.write_all(line.as_bytes()).unwrap();
            self.written[stream].push(line);
        }
        drop(f);
        if fresh {
            // The shipper sees a new file's first bytes before it could be copytruncated
            // (an empty fingerprint cannot tell a truncated file from a growing one).
            self.poll();
        }
    }

    fn side_name(&mut self, stream: usize, kind: &str) -> PathBuf {
        self.next_name += 1;
        self.dir
            .join(format!("s{stream}.log.{kind}{}", self.next_name))
    }

    fn apply(&mut self, op: &Op) {
        if let Op::CopyTruncate { stream } | Op::Delete { stream } = *op {
            // The shipper polls far more often than a file is replaced: two replacements of
            // the same path between two polls would hide a file it never saw.
            if self.replaced.contains(&stream) {
                self.append(stream, 1);
                self.poll();
            }
        }
        if let Op::Rotate { stream } | Op::CopyTruncate { stream } | Op::Delete { stream } = *op {
            self.replaced.insert(stream);
        }
        match *op {
            Op::Append { stream, lines } => self.append(stream, lines),
            Op::Poll => self.poll(),
            Op::Ack => self.ack(),
            Op::Rotate { stream } => {
                if self.paths[stream].exists() {
                    let to = self.side_name(stream, "r");
                    std::fs::rename(&self.paths[stream], to).unwrap();
                }
            }
            Op::CopyTruncate { stream } => {
                if self.paths[stream].exists() {
                    let to = self.side_name(stream, "c");
                    std::fs::copy(&self.paths[stream], to).unwrap();
                    OpenOptions::new()
                        .write(true)
                        .open(&self.paths[stream])
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
            }
            Op::Delete { stream } => {
                if self.paths[stream].exists() {
                    // A deleted file's unread lines are still read through the open
                    // descriptor; a crash after the delete would lose them, so the model
                    // deletes only what the sink has acknowledged.
                    self.poll();
                    self.poll();
                    self.ack();
                    std::fs::remove_file(&self.paths[stream]).unwrap();
                }
            }
            Op::Crash => {
                for l in self.unacked.drain(..) {
                    let text = String::from_utf8(l.data).unwrap();
                    *self.crash_window.entry(text).or_default() += 1;
                }
                self.tailer = None;
            }
        }
    }

    fn finish(&mut self) {
        for _ in 0..4 {
            self.poll();
        }
        self.ack();
    }
}

fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(dir.path());
    for op in ops {
        w.apply(op);
    }
    w.finish();
    for s in 0..STREAMS {
        let mut seen = HashSet::new();
        let mut first: Vec<&String> = Vec::new();
        let mut counts: HashMap<&String, usize> = HashMap::new();
        for l in &w.delivered[s] {
            *counts.entry(l).or_default() += 1;
            if seen.insert(l) {
                first.push(l);
            }
        }
        let written: Vec<&String> = w.written[s].iter().collect();
        prop_assert_eq!(&first, &written, "stream {}: every line, in order", s);
        for (line, n) in counts {
            let allowed = 1 + w.crash_window.get(line).copied().unwrap_or(0);
            prop_assert!(
                n <= allowed,
                "stream {}: {:?} delivered {} times, allowed {}",
                s,
                line,
                n,
                allowed
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_line_once_in_order_except_replays_after_a_crash(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops)?;
    }
}

#[test]
fn copytruncate_between_polls_reads_the_rest_from_the_copy() {
    use Op::*;
    check(&[
        Append {
            stream: 0,
            lines: 3,
        },
        Poll,
        Append {
            stream: 0,
            lines: 2,
        },
        CopyTruncate { stream: 0 },
        Append {
            stream: 0,
            lines: 9,
        },
        Poll,
    ])
    .unwrap();
}

#[test]
fn rotation_and_recreate_while_down_are_found_after_restart() {
    use Op::*;
    check(&[
        Append {
            stream: 0,
            lines: 3,
        },
        Poll,
        Ack,
        Append {
            stream: 0,
            lines: 2,
        },
        Crash,
        Rotate { stream: 0 },
        Append {
            stream: 0,
            lines: 4,
        },
        CopyTruncate { stream: 1 },
        Append {
            stream: 1,
            lines: 1,
        },
        Crash,
        Poll,
    ])
    .unwrap();
}

#[test]
fn files_created_and_rotated_away_while_down_are_still_read() {
    use Op::*;
    check(&[
        Append {
            stream: 0,
            lines: 2,
        },
        Ack,
        Crash,
        Rotate { stream: 0 },
        Append {
            stream: 0,
            lines: 3,
        },
        Rotate { stream: 0 },
        Append {
            stream: 0,
            lines: 3,
        },
        Rotate { stream: 0 },
        Append {
            stream: 0,
            lines: 1,
        },
    ])
    .unwrap();
}
