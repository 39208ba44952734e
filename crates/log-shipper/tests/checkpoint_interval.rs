//! `checkpoint_interval`: acknowledged batches are checkpointed at most once per interval
//! (new files, rotation and shutdown at once); a `kill -9` before the checkpoint re-sends the
//! acknowledged batches and loses nothing.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::testkit::{wait_for, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
    out: PathBuf,
    data: PathBuf,
    config: PathBuf,
    glob: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    Setup {
        log: logs.join("app.log"),
        out: dir.path().join("out"),
        data: dir.path().join("data"),
        config: dir.path().join("ls.yml"),
        glob: format!("{}/*.log", logs.display()),
        _dir: dir,
    }
}

impl Setup {
    /// Writes the config (10-event batches, so one append is many acknowledged batches).
    fn start(&self, interval: &str) -> Proc {
        std::fs::write(
            &self.config,
            format!(
                "checkpoint_interval: {interval}\npoll_interval: 20ms\nmultiline: {{timeout: 50ms}}\n\
                 sinks:\n  dir: {{path: {}, batch: {{max_events: 10, timeout: 20ms}}}}\n",
                self.out.display()
            ),
        )
        .unwrap();
        Proc::start(
            BIN,
            &[
                "--input",
                &self.glob,
                "--config.file",
                self.config.to_str().unwrap(),
                "--data-dir",
                self.data.to_str().unwrap(),
            ],
        )
    }

    fn checkpoint(&self) -> String {
        std::fs::read_to_string(self.data.join("checkpoints/dir.json")).unwrap_or_default()
    }

    /// The acknowledged offset of the log file in the checkpoint.
    fn checkpointed_offset(&self) -> u64 {
        let text = self.checkpoint();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        doc["files"][self.log.to_str().unwrap()]
            .as_array()
            .and_then(|files| files.last())
            .and_then(|f| f["offset"].as_u64())
            .unwrap_or(0)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.out.join("app.log")).unwrap_or_default()
    }

    fn wait_output(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.output() != want {
            assert!(
                Instant::now() < deadline,
                "output has {} bytes, want {}",
                self.output().len(),
                want.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn append(path: &Path, all: &mut String, from: u64, n: u64) {
    let mut text = String::new();
    for i in from..from + n {
        text.push_str(&format!(
            "2024-01-01 00:00:{:02},{:03} INFO  org.example.App [] - event {i}\n",
            i / 1000 % 60,
            i % 1000
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    all.push_str(&text);
}

#[test]
fn acknowledged_batches_within_the_interval_are_not_checkpointed_and_kill_9_resends_them() {
    let s = setup();
    let mut written = String::new();
    append(&s.log, &mut written, 0, 100);
    let mut p = s.start("1h");
    s.wait_output(&written);
    // Ten acknowledged batches, but only the new file was checkpointed (at once, before any
    // acknowledgement): its offset is still 0.
    let first = s.checkpoint();
    assert!(
        first.contains("app.log"),
        "new file checkpointed at once: {first}"
    );
    assert_eq!(s.checkpointed_offset(), 0, "{first}");
    append(&s.log, &mut written, 100, 50);
    s.wait_output(&written);
    assert_eq!(
        s.checkpoint(),
        first,
        "five more acknowledged batches within the interval: no checkpoint write"
    );

    p.child.kill().unwrap(); // SIGKILL: the acknowledged batches were never checkpointed
    p.child.wait().unwrap();
    let p = s.start("0s");
    // Every event since the checkpoint is sent again; the local sink cut its copy back to
    // the checkpointed length first, so the copy is exact: nothing lost, nothing doubled.
    s.wait_output(&written);
    wait_for(
        || p.metric("log_shipper_events_shipped_total{sink=\"dir\"}") == Some(150.0),
        "all 150 events re-sent after the kill",
    );
    // With `0s`, every acknowledged batch is checkpointed.
    wait_for(
        || s.checkpointed_offset() == written.len() as u64,
        "checkpoint at the end of the file",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.output(), written, "no duplicate appeared");
}

#[test]
fn the_checkpoint_follows_after_the_interval_and_at_shutdown() {
    let s = setup();
    let mut written = String::new();
    append(&s.log, &mut written, 0, 40);
    let mut p = s.start("1h");
    s.wait_output(&written);
    assert_eq!(s.checkpointed_offset(), 0);
    p.signal("TERM");
    assert!(p
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|e| e.success()));
    assert_eq!(
        s.checkpointed_offset(),
        written.len() as u64,
        "a clean shutdown stores the checkpoint"
    );

    let _p = s.start("300ms");
    append(&s.log, &mut written, 40, 40);
    s.wait_output(&written);
    // Without any further event or shutdown, the checkpoint catches up once the interval
    // has passed.
    wait_for(
        || s.checkpointed_offset() == written.len() as u64,
        "checkpoint within the interval",
    );
}
