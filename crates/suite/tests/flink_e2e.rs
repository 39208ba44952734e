//! A newcomer's first run, end to end with real Apache Flink: `flink-suite` with only its
//! embedded defaults (plus short intervals in `suite.yml`) and a strict DingTalk stand-in
//! named by `DINGTALK_URL`, started in an empty directory so that the data dir is the
//! relative default `./data`. Upload the probe job, run it on `local`, see its metrics at
//! the gateway; a second deployment whose job keeps failing raises the bundled
//! `FlinkJobRestarting`, which arrives signed at the stand-in naming the deployment; the
//! failure's stack trace arrives in the shipped log as one event with the deployment's
//! labels; cancelling deletes the deployment's metric groups. While the probe runs, the
//! web console's `real-flink` browser journey (job-manager's `tests/console/journeys.py`)
//! checks the list, the deployment page, Flink's own UI through the proxy and a savepoint
//! taken with the console's button (skipped without Chromium or Python's playwright).
//!
//! Needs FLINK_HOME and FLINK_TEST_JOB_JAR (`eval "$(scripts/flink/fetch.sh)"`; CI does it
//! in .ci/setup.d/flink.sh). Skips with a message when they are absent.

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{json, Value};
use support::{api, eventually, series_with, upload, DingTalk, Suite};

fn flink() -> Option<(PathBuf, PathBuf)> {
    let home = std::env::var_os("FLINK_HOME").map(PathBuf::from);
    let jar = std::env::var_os("FLINK_TEST_JOB_JAR").map(PathBuf::from);
    match (home, jar) {
        (Some(h), Some(j)) if h.join("bin/jobmanager.sh").is_file() && j.is_file() => Some((h, j)),
        _ => {
            eprintln!(
                "SKIP flink-suite end to end with real Flink: FLINK_HOME and FLINK_TEST_JOB_JAR are not set \
                 (or do not exist). Run `eval \"$(scripts/flink/fetch.sh)\"` (python3/pip, JDK 17) first; \
                 CI does this in .ci/setup.d/flink.sh."
            );
            None
        }
    }
}

/// Kills every Flink daemon the local target started under `data` when dropped (also when
/// an assertion fails).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(self.0.join("local")) else {
            return;
        };
        for d in dirs.flatten() {
            let Ok(pids) = std::fs::read_dir(d.path().join("pid")) else {
                continue;
            };
            for p in pids.flatten() {
                if let Ok(text) = std::fs::read_to_string(p.path()) {
                    for pid in text.split_whitespace() {
                        let _ = std::process::Command::new("kill")
                            .args(["-9", pid])
                            .status();
                    }
                }
            }
        }
    }
}

fn deployment(s: &Suite, token: &str, id: &str) -> Value {
    api(
        s.ports.job_manager,
        token,
        "GET",
        &format!("/api/v1/namespaces/default/deployments/{id}"),
        None,
    )
    .1["data"]
        .clone()
}

fn wait_state(s: &Suite, token: &str, id: &str, state: &str, timeout: Duration) -> Value {
    eventually(&format!("deployment {id} {state}"), timeout, || {
        let d = deployment(s, token, id);
        (d["status"]["state"] == state).then_some(d)
    })
}

fn create(s: &Suite, token: &str, name: &str, uri: &str, main_args: &str, conf: Value) -> String {
    let (status, created) = api(
        s.ports.job_manager,
        token,
        "POST",
        "/api/v1/namespaces/default/deployments",
        Some(json!({
            "metadata": {"name": name},
            "spec": {
                "state": "RUNNING",
                "deploymentTargetName": "local",
                "template": {"spec": {
                    "artifact": {"kind": "JAR", "jarUri": uri,
                                 "entryClass": "suite.probe.CounterJob", "mainArgs": main_args},
                    "parallelism": 1,
                    "flinkConfiguration": conf
                }}
            }
        })),
    );
    assert_eq!(status, 201, "{created}");
    created["data"]["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every JSON event under `dir` (the local sink writes one object per line).
fn shipped_events(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
            }
        }
    }
    out
}

/// Runs job-manager's browser journey `real-flink` (`tests/console/journeys.py`: Playwright
/// driving Debian's Chromium) against this suite while deployment `name` runs job `job`.
/// Skips with a message when `/usr/bin/chromium` or Python's `playwright` is missing.
fn console_journey(s: &Suite, token: &str, name: &str, job: &str) {
    const CHROMIUM: &str = "/usr/bin/chromium";
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !Path::new(CHROMIUM).exists() || !playwright {
        eprintln!(
            "SKIP the console journey on real Flink: needs {CHROMIUM} (apt-get install chromium) \
             and Python's playwright (pip install playwright)"
        );
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("../job-manager/tests/console/journeys.py");
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target"))
        .join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .arg("real-flink")
        .env("JM_URL", format!("http://{}", s.ports.job_manager))
        .env("JM_TOKEN", token)
        .env("JM_DEPLOYMENT", name)
        .env("JM_JOB", job)
        .env("JM_SCREENSHOTS", &shots)
        .env("JM_CHROMIUM", CHROMIUM)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    // Read both pipes on threads so a chatty browser cannot block on a full pipe.
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = String::new();
            let _ = r.read_to_string(&mut v);
            v
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the console journey on real Flink took over 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    println!("{stdout}");
    assert!(
        status.success(),
        "the console journey on real Flink failed ({status}):\n{stdout}\n{stderr}"
    );
    println!(
        "console journey on real Flink passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

#[test]
fn first_job_metrics_alert_logs_and_cancel_with_real_flink() {
    let Some((home, jar)) = flink() else {
        return;
    };
    let robot = DingTalk::start("e2e-robot-token", "SECe2e-robot-secret");
    let cwd = common::testkit::tempfile_dir();
    std::fs::write(
        cwd.join("suite.yml"),
        "flink-suite:\n  rule_evaluation_interval: 2s\n  self_metrics_interval: 2s\n\
         job-manager:\n  controller: {poll_interval: 1s}\n",
    )
    .unwrap();
    let mut s = Suite::start(
        &cwd,
        &["--config.file", "suite.yml"],
        &[
            ("FLINK_HOME", home.display().to_string()),
            ("DINGTALK_URL", robot.base_url()),
            ("DINGTALK_ACCESS_TOKEN", "e2e-robot-token".into()),
            ("DINGTALK_SECRET", "SECe2e-robot-secret".into()),
        ],
    );
    let data = cwd.join("data");
    let _reaper = Reaper(data.join("job-manager"));
    let token = s.token();

    // Upload the probe job; its URI is absolute although the data dir is `./data`.
    let (status, up) = upload(
        s.ports.job_manager,
        &token,
        "probe.jar",
        &std::fs::read(&jar).unwrap(),
    );
    assert_eq!(status, 201, "{up}");
    let uri = up["data"]["uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("file:///") && !uri.contains("/./"), "{uri}");

    // The probe, and a job that fails after 300 records, again and again.
    let probe = create(&s, &token, "probe", &uri, "--rate 50", json!({}));
    let failing = create(
        &s,
        &token,
        "failing",
        &uri,
        "--rate 100 --fail-after-records 300",
        json!({
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "1000",
            "restart-strategy.fixed-delay.delay": "2 s"
        }),
    );
    let d = wait_state(&s, &token, &probe, "RUNNING", Duration::from_secs(240));
    let probe_job = d["status"]["running"]["jobId"]
        .as_str()
        .unwrap()
        .to_string();

    // Its metrics at the gateway, under the suite's grouping key.
    let dep_label = format!("deploymentId=\"{probe}\"");
    let job_label = format!("jobId=\"{probe_job}\"");
    eventually(
        "the probe's metrics at the gateway",
        Duration::from_secs(90),
        || {
            series_with(
                &s.gateway("/metrics"),
                &[
                    "flink_jobmanager_job_numRestarts{",
                    &dep_label,
                    &job_label,
                    "namespace=\"default\"",
                ],
            )
        },
    );

    // The console on this real Flink: list, deployment page, Flink's own UI through the
    // proxy, a savepoint triggered with the button.
    console_journey(&s, &token, "probe", &probe_job);

    // The failing deployment raises the bundled restart alert: signed, naming it.
    let alert = eventually(
        "FlinkJobRestarting at the DingTalk stand-in",
        Duration::from_secs(180),
        || {
            robot.received().into_iter().find(|r| {
                let b = r.body.to_string();
                b.contains("FlinkJobRestarting") && b.contains(&failing)
            })
        },
    );
    assert!(
        alert.accepted,
        "signed as DingTalk checks: {}",
        alert.reason
    );
    assert!(
        robot.received().iter().all(|r| r.accepted),
        "every request signed: {:?}",
        robot
            .received()
            .iter()
            .map(|r| &r.reason)
            .collect::<Vec<_>>()
    );

    // The failure's stack trace in the shipped log: one event, with the deployment's labels.
    let failing_job = deployment(&s, &token, &failing)["status"]["running"]["jobId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let shipped = data.join("log-shipper/output/logs/default").join(&failing);
    let event = eventually(
        "the stack trace in the shipped log",
        Duration::from_secs(60),
        || {
            shipped_events(&shipped).into_iter().find(|e| {
                let m = e["message"].as_str().unwrap_or("");
                m.contains("failing on purpose") && m.contains("\n\tat ")
            })
        },
    );
    assert_eq!(event["deploymentId"], failing.as_str(), "{event}");
    assert_eq!(event["namespace"], "default", "{event}");
    assert!(
        event["jobId"].as_str().is_some_and(|j| !j.is_empty()),
        "{event}"
    );
    if !failing_job.is_empty() {
        assert!(
            shipped.join(&failing_job).is_dir() || event["jobId"] == failing_job.as_str(),
            "{event}"
        );
    }
    assert!(
        event["pod"]
            .as_str()
            .is_some_and(|p| p.starts_with("jobmanager-") || p.starts_with("taskmanager-")),
        "{event}"
    );

    // Cancelling deletes the probe's metric groups.
    let (status, body) = api(
        s.ports.job_manager,
        &token,
        "PATCH",
        &format!("/api/v1/namespaces/default/deployments/{probe}"),
        Some(json!({"spec": {"state": "CANCELLED"}})),
    );
    assert_eq!(status, 200, "{body}");
    wait_state(&s, &token, &probe, "CANCELLED", Duration::from_secs(120));
    // Its groups (not, e.g., an `ALERTS` series the rules keep until they resolve).
    let groups_of = |dep: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(&s.gateway("/api/v1/metrics")).unwrap_or(Value::Null);
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|g| g["labels"]["deploymentId"] == dep)
                    .map(|g| g["labels"].to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Gone, and still gone after more than one reporter interval (10 s): the reporters may
    // push once more while their processes exit; job-manager deletes again once they have.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut empty_since: Option<std::time::Instant> = None;
    loop {
        let left = groups_of(&probe);
        if left.is_empty() {
            if empty_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                >= Duration::from_secs(12)
            {
                break;
            }
        } else {
            empty_since = None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the probe's groups not gone for good 90 s after CANCELLED: {left:?}\n{}",
            s.gateway("/metrics")
                .lines()
                .filter(|l| l.contains(&dep_label))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        series_with(&s.gateway("/metrics"), &["flink_", &dep_label]),
        None,
        "no Flink series of the probe left"
    );

    let (status, body) = api(
        s.ports.job_manager,
        &token,
        "PATCH",
        &format!("/api/v1/namespaces/default/deployments/{failing}"),
        Some(json!({"spec": {"state": "CANCELLED"}})),
    );
    assert_eq!(status, 200, "{body}");
    wait_state(&s, &token, &failing, "CANCELLED", Duration::from_secs(120));

    // A job that fails without restarts ends FAILED; setting RUNNING again retries it
    // (VVP semantics): a second job is created for the same deployment.
    let retried = create(
        &s,
        &token,
        "retried",
        &uri,
        "--rate 100 --fail-after-records 300",
        json!({"restart-strategy.type": "none"}),
    );
    wait_state(&s, &token, &retried, "FAILED", Duration::from_secs(240));
    let jobs_of = |dep: &str| -> usize {
        api(
            s.ports.job_manager,
            &token,
            "GET",
            &format!("/api/v1/namespaces/default/jobs?deploymentId={dep}"),
            None,
        )
        .1["data"]["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = jobs_of(&retried);
    assert!(before >= 1, "the failed deployment has its job");
    let (status, body) = api(
        s.ports.job_manager,
        &token,
        "PATCH",
        &format!("/api/v1/namespaces/default/deployments/{retried}"),
        Some(json!({"spec": {"state": "RUNNING"}})),
    );
    assert_eq!(status, 200, "{body}");
    eventually(
        "a new job for the retried deployment",
        Duration::from_secs(240),
        || (jobs_of(&retried) > before).then_some(()),
    );
    let (status, body) = api(
        s.ports.job_manager,
        &token,
        "PATCH",
        &format!("/api/v1/namespaces/default/deployments/{retried}"),
        Some(json!({"spec": {"state": "CANCELLED"}})),
    );
    assert_eq!(status, 200, "{body}");
    wait_state(&s, &token, &retried, "CANCELLED", Duration::from_secs(120));

    let status = s
        .stop(Duration::from_secs(20))
        .expect("exits within the grace period");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(cwd);
}
