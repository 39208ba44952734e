//! kill -9 of the real shipper, repeatedly, while a writer appends at a high rate and
//! rotates by renaming: everything written must arrive in the local directory, in order,
//! exactly once (the local sink cuts unacknowledged output back on restart).

use std::{
    fs::OpenOptions,
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::testkit::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

fn writer(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut size = 0usize;
        let mut rotations = 0;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut chunk = String::new();
            for _ in 0..100 {
                n += 1;
                chunk.push_str(&format!(
                    "2024-01-01 00:00:{:02},{:03} INFO  org.example.Writer{:<40} [] - record {n} {}\n",
                    (n / 1000) % 60,
                    n % 1000,
                    "",
                    "p".repeat((n % 50) as usize)
                ));
                if n.is_multiple_of(97) {
                    chunk.push_str(&format!(
                        "java.lang.IllegalStateException: failure {n}\n\tat org.example.A.b(A.java:{n})\nCaused by: java.io.IOException: x\n\t... 7 more\n"
                    ));
                }
            }
            f.write_all(chunk.as_bytes()).unwrap();
            size += chunk.len();
            all.push_str(&chunk);
            if size > 1 << 20 {
                // log4j2-style rollover: rename, then open a new file.
                rotations += 1;
                let to = path.with_extension(format!("log.{rotations}"));
                std::fs::rename(&path, to).unwrap();
                f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap();
                size = 0;
            }
            std::thread::sleep(Duration::from_millis(4));
        }
        all
    })
}

#[test]
fn repeated_kill_9_during_writes_and_rotation_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let path = logs.join("taskmanager.log");
    std::fs::write(&path, "").unwrap();
    let glob = format!("{}/*.log", logs.display());
    let args = [
        "--input",
        glob.as_str(),
        "--output.dir",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(path.clone(), stop.clone());
    for round in 0..6u64 {
        let mut p = Proc::start(BIN, &args);
        std::thread::sleep(Duration::from_millis(300 + 170 * round));
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    let _p = Proc::start(BIN, &args);
    let target = out.join("taskmanager.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = String::new();
    while Instant::now() < deadline {
        got = std::fs::read_to_string(&target).unwrap_or_default();
        if got.len() >= written.len() {
            // Give a possible duplicate a moment to show.
            std::thread::sleep(Duration::from_millis(1500));
            got = std::fs::read_to_string(&target).unwrap_or_default();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if got != written {
        let g: Vec<&str> = got.lines().collect();
        let w: Vec<&str> = written.lines().collect();
        let first_diff = g.iter().zip(&w).position(|(a, b)| a != b);
        panic!(
            "delivered {} lines / {} bytes, written {} lines / {} bytes; first difference at line {:?}: got {:?} want {:?}",
            g.len(),
            got.len(),
            w.len(),
            written.len(),
            first_diff,
            first_diff.and_then(|i| g.get(i)),
            first_diff.and_then(|i| w.get(i)),
        );
    }
    assert!(written.len() > 1 << 20, "the writer rotated at least once");
}
