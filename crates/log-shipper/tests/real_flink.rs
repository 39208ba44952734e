//! A real Flink session cluster (from PyPI, via scripts/flink/fetch.sh) writes its logs while a
//! job fails; the shipper follows the log directory and the failure's stack trace arrives as
//! one event with its log4j fields.
//!
//! Needs FLINK_HOME and FLINK_TEST_JOB_JAR (`eval "$(scripts/flink/fetch.sh)"`; CI does it in
//! .ci/setup.d/flink.sh). Skips with a message when they are not set.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::testkit::{self, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

struct Cluster {
    home: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    fn script(&self, name: &str, arg: &str) {
        let status = Command::new(self.home.join("bin").join(name))
            .arg(arg)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{name} {arg}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in ["taskmanager.sh", "jobmanager.sh"] {
            let _ = Command::new(self.home.join("bin").join(s))
                .arg("stop")
                .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}

fn env_block(shipped: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in shipped.lines() {
        if line.starts_with("env:") {
            inside = true;
        } else if inside && !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            break;
        }
        if inside && !line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        v.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    v
}

#[test]
fn a_failing_jobs_stack_trace_arrives_as_one_event() {
    let (Some(home), Some(jar)) = (
        std::env::var_os("FLINK_HOME").map(PathBuf::from),
        std::env::var_os("FLINK_TEST_JOB_JAR").map(PathBuf::from),
    ) else {
        eprintln!(
            "SKIP a_failing_jobs_stack_trace_arrives_as_one_event: FLINK_HOME / FLINK_TEST_JOB_JAR \
             not set; run `eval \"$(scripts/flink/fetch.sh)\"` (needs python3/pip and a JDK 17); \
             CI does this in .ci/setup.d/flink.sh."
        );
        return;
    };
    let w = tempfile::tempdir().unwrap();
    let (conf, log, out) = (
        w.path().join("conf"),
        w.path().join("log"),
        w.path().join("out"),
    );
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    for f in [
        "log4j.properties",
        "log4j-cli.properties",
        "log4j-console.properties",
    ] {
        std::fs::copy(home.join("conf").join(f), conf.join(f)).unwrap();
    }
    let shipped = std::fs::read_to_string(home.join("conf/config.yaml")).unwrap();
    let (rest, rpc) = (testkit::free_port(), testkit::free_port());
    let wd = w.path().display();
    std::fs::write(
        conf.join("config.yaml"),
        format!(
            "{}  pid:\n    dir: {wd}/pid\n\
             jobmanager: {{bind-host: 127.0.0.1, rpc: {{address: 127.0.0.1, port: {rpc}}}, memory: {{process: {{size: 1g}}}}}}\n\
             taskmanager: {{bind-host: 127.0.0.1, host: 127.0.0.1, numberOfTaskSlots: 1, memory: {{process: {{size: 1536m}}}}}}\n\
             rest: {{address: 127.0.0.1, bind-address: 127.0.0.1, port: {rest}}}\n\
             parallelism: {{default: 1}}\n\
             web: {{upload: {{dir: {wd}/upload}}}}\n",
            env_block(&shipped)
        ),
    )
    .unwrap();
    let cluster = Cluster {
        home: home.clone(),
        env: vec![
            ("FLINK_CONF_DIR", conf.display().to_string()),
            ("FLINK_LOG_DIR", log.display().to_string()),
            ("FLINK_IDENT_STRING", "shipper-test".into()),
        ],
    };
    let glob = format!("{}/*.log", log.display());
    let _shipper = Proc::start(
        BIN,
        &[
            "--input",
            &glob,
            "--output.dir",
            out.to_str().unwrap(),
            "--output.format",
            "json",
            "--data-dir",
            w.path().join("data").to_str().unwrap(),
        ],
    );
    cluster.script("jobmanager.sh", "start");
    cluster.script("taskmanager.sh", "start");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], rest).into();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((200, body)) = testkit::http(addr, "GET", "/overview", "") {
            if body.contains("\"taskmanagers\":1") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "Flink did not start");
        std::thread::sleep(Duration::from_millis(500));
    }
    let run = Command::new(home.join("bin/flink"))
        .args(["run", "-d", "-m", &format!("127.0.0.1:{rest}")])
        .arg(&jar)
        .args(["--rate", "200", "--fail-after-records", "300"])
        .envs(cluster.env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let failure = loop {
        let found = events(&out).into_iter().find(|e| {
            let m = e["message"].as_str().unwrap_or("");
            e["level"].is_string()
                && m.contains("failing on purpose")
                && m.contains("\tat suite.probe.CounterJob")
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no shipped event with the failure's stack trace"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let message = failure["message"].as_str().unwrap();
    let first_line = message.lines().next().unwrap();
    assert!(
        !first_line.starts_with('\t') && !first_line.starts_with("java."),
        "the event starts with the log line that carries the trace: {first_line:?}"
    );
    assert!(message.lines().count() > 5, "{message}");
    assert!(
        failure["logger"]
            .as_str()
            .unwrap()
            .starts_with("org.apache.flink"),
        "{failure}"
    );
    assert!(failure["time"].as_str().unwrap().len() == 23, "{failure}");
    // No stack frame was shipped as an event of its own.
    let orphans = events(&out)
        .into_iter()
        .filter(|e| e["message"].as_str().unwrap_or("").starts_with("\tat "))
        .count();
    assert_eq!(orphans, 0, "stack frames shipped on their own");
    drop(cluster);
}
