//! The real `log-shipper` binary shipping to the local directory sink, through the flags the
//! outside checks use: `--input GLOB --output.dir DIR --data-dir DIR`.

use std::{
    fs::OpenOptions,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use common::testkit::{self, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn wait_for_content(path: &Path, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got == want {
            return got;
        }
        if Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const TRACE: &str = "2024-01-01 00:00:01,000 ERROR org.apache.flink.runtime.taskmanager.Task            [] - Source: gen (1/1) switched from RUNNING to FAILED.\n\
java.lang.RuntimeException: boom\n\
\tat a.B.c(B.java:1)\n\
Caused by: java.io.IOException: disk\n\
\t... 12 more\n";

#[test]
fn ships_each_input_file_as_written_through_rename_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&logs).unwrap();
    let jm = logs.join("jobmanager.log");
    let tm = logs.join("taskmanager.log");
    append(&jm, "2024-01-01 00:00:00,000 INFO  x [] - one\n");
    append(&tm, TRACE);
    let glob = format!("{}/*.log", logs.display());
    let args = [
        "--input",
        glob.as_str(),
        "--output.dir",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let p = Proc::start(BIN, &args);
    let mut jm_all = String::from("2024-01-01 00:00:00,000 INFO  x [] - one\n");
    let got = wait_for_content(
        &out.join("jobmanager.log"),
        &jm_all,
        Duration::from_secs(15),
    );
    assert_eq!(got, jm_all);
    let got = wait_for_content(&out.join("taskmanager.log"), TRACE, Duration::from_secs(15));
    assert_eq!(got, TRACE, "multiline event intact and in order");

    // log4j2-style rename rotation: the tail of the old file is written just before the
    // rename and must arrive before the new file's first line.
    let tail = "2024-01-01 00:00:02,000 INFO  x [] - last line of the old file\n";
    append(&jm, tail);
    jm_all.push_str(tail);
    std::fs::rename(&jm, logs.join("jobmanager.log.1")).unwrap();
    let first = "2024-01-01 00:00:03,000 INFO  x [] - first line of the new file\n";
    append(&jm, first);
    jm_all.push_str(first);
    let got = wait_for_content(
        &out.join("jobmanager.log"),
        &jm_all,
        Duration::from_secs(15),
    );
    assert_eq!(got, jm_all);

    let lines = p.metric(&format!(
        "log_shipper_read_lines_total{{file=\"{}\",sink=\"dir\"}}",
        jm.display()
    ));
    assert_eq!(lines, Some(3.0));
    let rotated = p.metric("log_shipper_file_events_total{event=\"rotated\",sink=\"dir\"}");
    assert_eq!(rotated, Some(1.0));
    testkit::wait_for(
        || {
            p.metric(&format!(
                "log_shipper_checkpoint_lag_bytes{{file=\"{}\",sink=\"dir\"}}",
                jm.display()
            )) == Some(0.0)
        },
        "checkpoint lag 0 once everything is acknowledged",
    );
    assert_eq!(
        p.metric("log_shipper_events_shipped_total{sink=\"dir\"}"),
        Some(4.0),
        "3 jobmanager events + 1 taskmanager event (the stack trace is one)"
    );

    // Stop, write while down, start again: only the new lines are added.
    p.signal("TERM");
    let mut p = p;
    assert!(p
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let down = "2024-01-01 00:00:04,000 INFO  x [] - written while the shipper was down\n";
    append(&jm, down);
    jm_all.push_str(down);
    let _p = Proc::start(BIN, &args);
    let got = wait_for_content(
        &out.join("jobmanager.log"),
        &jm_all,
        Duration::from_secs(15),
    );
    assert_eq!(got, jm_all, "nothing lost or doubled across a restart");
    let got = std::fs::read_to_string(out.join("taskmanager.log")).unwrap();
    assert_eq!(got, TRACE);
}

#[test]
fn json_format_carries_parsed_log4j_fields() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&logs).unwrap();
    append(&logs.join("tm.log"), TRACE);
    append(
        &logs.join("tm.log"),
        "2024-01-01 00:00:02,500 WARN  org.a.B [] - after\n",
    );
    let glob = format!("{}/*.log", logs.display());
    let _p = Proc::start(
        BIN,
        &[
            "--input",
            &glob,
            "--output.dir",
            out.to_str().unwrap(),
            "--output.format",
            "json",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
    );
    let path = out.join("tm.log");
    testkit::wait_for(
        || {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count()
                == 2
        },
        "two JSON events",
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["level"], "ERROR");
    assert_eq!(
        events[0]["logger"],
        "org.apache.flink.runtime.taskmanager.Task"
    );
    assert_eq!(events[0]["time"], "2024-01-01 00:00:01,000");
    let msg = events[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("Source: gen (1/1) switched from RUNNING to FAILED.\njava.lang.RuntimeException: boom\n\tat a.B.c"), "{msg}");
    assert!(msg.ends_with("\t... 12 more"), "{msg}");
    assert_eq!(events[0]["file"], "tm.log");
    assert_eq!(events[1]["message"], "after");
}

#[test]
fn starts_with_no_arguments_on_flink_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    std::fs::create_dir_all(home.join("log")).unwrap();
    append(
        &home.join("log/flink-standalonesession.log"),
        "2024-01-01 00:00:00,000 INFO  x [] - hi\n",
    );
    append(
        &home.join("log/flink-standalonesession.out"),
        "stdout line\n",
    );
    let port = testkit::free_port();
    let mut child = std::process::Command::new(BIN)
        .current_dir(home)
        .env("FLINK_HOME", home)
        .env("LOG_SHIPPER_TEST_PORT", port.to_string())
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = home.join("data/log-shipper/output");
    testkit::wait_for(
        || {
            std::fs::read_to_string(out.join("flink-standalonesession.out")).unwrap_or_default()
                == "stdout line\n"
                && std::fs::read_to_string(out.join("flink-standalonesession.log"))
                    .unwrap_or_default()
                    .ends_with("hi\n")
        },
        "default inputs shipped to the default local sink",
    );
    assert!(home.join("data/log-shipper/checkpoints/dir.json").is_file());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_input_glob_is_named() {
    let out = std::process::Command::new(BIN)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--input",
            "log/[.log",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log/[.log"), "{err}");
}

#[test]
fn a_reload_restarts_the_pipeline_on_the_new_config_where_it_left_off() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&logs).unwrap();
    let cfg = dir.path().join("config.yml");
    let glob = format!("{}/*.log", logs.display());
    std::fs::write(
        &cfg,
        format!(
            "inputs: [{{glob: '{glob}'}}]\nsinks: {{dir: {{path: '{}'}}}}\n",
            out.display()
        ),
    )
    .unwrap();
    let app = logs.join("app.log");
    append(&app, "2024-01-01 00:00:00,000 INFO  a.B [] - before\n");
    let p = Proc::start(
        BIN,
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
    );
    let target = out.join("app.log");
    testkit::wait_for(
        || {
            std::fs::read_to_string(&target)
                .unwrap_or_default()
                .ends_with("before\n")
        },
        "first line shipped raw",
    );
    std::fs::write(
        &cfg,
        format!(
            "inputs: [{{glob: '{glob}'}}]\nsinks: {{dir: {{path: '{}', format: json}}}}\n",
            out.display()
        ),
    )
    .unwrap();
    p.signal("HUP");
    testkit::wait_for(
        || p.metric("log_shipper_config_reloads_total{result=\"success\"}") == Some(1.0),
        "reload counted",
    );
    std::thread::sleep(Duration::from_millis(300));
    append(&app, "2024-01-01 00:00:01,000 WARN  a.B [] - after\n");
    testkit::wait_for(
        || {
            std::fs::read_to_string(&target)
                .unwrap_or_default()
                .lines()
                .count()
                == 2
        },
        "second line shipped",
    );
    let text = std::fs::read_to_string(&target).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "2024-01-01 00:00:00,000 INFO  a.B [] - before");
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        second["message"], "after",
        "the new format applies, nothing re-sent"
    );
}

#[test]
fn same_file_names_from_two_directories_do_not_share_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("out"),
    );
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    append(&a.join("app.log"), "from a\n");
    let ga = format!("{}/*.log", a.display());
    let gb = format!("{}/*.log", b.display());
    let _p = Proc::start(
        BIN,
        &[
            "--input",
            &ga,
            "--input",
            &gb,
            "--output.dir",
            out.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
    );
    testkit::wait_for(
        || std::fs::read_to_string(out.join("app.log")).unwrap_or_default() == "from a\n",
        "a/app.log shipped as app.log",
    );
    append(&b.join("app.log"), "from b\n");
    let qualified = out.join(b.join("app.log").strip_prefix("/").unwrap());
    testkit::wait_for(
        || std::fs::read_to_string(&qualified).unwrap_or_default() == "from b\n",
        "b/app.log shipped under its full path",
    );
    assert_eq!(
        std::fs::read_to_string(out.join("app.log")).unwrap(),
        "from a\n"
    );
}
