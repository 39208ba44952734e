//! End to end against real Apache Flink (standalone clusters started by the `local` target):
//! create → RUNNING (with a kill -9 of the manager mid-start) → savepoint → STATEFUL upgrade
//! to parallelism 2 restoring state → SUSPEND → RUNNING from the suspend savepoint →
//! CANCELLED; and a job that fails (`--fail-after-records`) ends FAILED with Flink's cause (and no lingering `JobFailing True`).
//!
//! Needs FLINK_HOME and FLINK_TEST_JOB_JAR (`eval "$(scripts/flink/fetch.sh)"`; CI does it in
//! .ci/setup.d/flink.sh). Skips with a message when they are absent.

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{json, Value};
use support::{eventually, Manager};

fn flink() -> Option<(PathBuf, PathBuf)> {
    let cache = std::env::var_os("FLINK_SUITE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/flink-suite")));
    let home = std::env::var_os("FLINK_HOME")
        .map(PathBuf::from)
        .or_else(|| cache.as_ref().map(|c| c.join("flink-2.3.0")));
    let jar = std::env::var_os("FLINK_TEST_JOB_JAR")
        .map(PathBuf::from)
        .or_else(|| cache.as_ref().map(|c| c.join("counter-job-2.3.0.jar")));
    match (home, jar) {
        (Some(h), Some(j)) if h.join("bin/jobmanager.sh").is_file() && j.is_file() => Some((h, j)),
        _ => {
            eprintln!(
                "SKIP real-Flink tests: Flink is not available. Run `eval \"$(scripts/flink/fetch.sh)\"` \
                 (needs python3/pip and a JDK 17) to set FLINK_HOME and FLINK_TEST_JOB_JAR; CI does this in .ci/setup.d/flink.sh."
            );
            None
        }
    }
}

/// Kills every Flink daemon started under `data` when dropped (also when a test fails).
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

async fn flink_get(rest: &str, path: &str) -> Option<Value> {
    let r = reqwest::get(format!("{rest}{path}")).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn current_job<'a>(d: &Value, jobs: &'a [Value]) -> &'a Value {
    let id = d["status"]["running"]["jobId"]
        .as_str()
        .expect("running job id");
    jobs.iter()
        .find(|j| j["metadata"]["id"] == id)
        .expect("job listed")
}

fn rest_of(job: &Value) -> String {
    job["status"]["cluster"]["restUrl"]
        .as_str()
        .expect("cluster rest url")
        .to_string()
}

/// The path Flink says the job restored from (polls: checkpoint stats appear after start).
async fn restored_from(rest: &str, fid: &str) -> String {
    eventually(
        "Flink to report the restored savepoint",
        Duration::from_secs(30),
        || async {
            flink_get(rest, &format!("/jobs/{fid}/checkpoints"))
                .await
                .and_then(|v| {
                    v.pointer("/latest/restored/external_path")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
        },
    )
    .await
}

fn same_location(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim_start_matches("file:")
            .trim_start_matches("//")
            .trim_end_matches('/')
            .to_string()
    };
    norm(a) == norm(b)
}

async fn wait_cluster_gone(rest: &str) {
    eventually(
        "the local cluster to stop",
        Duration::from_secs(60),
        || async { flink_get(rest, "/overview").await.is_none().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_lifecycle_on_real_flink() {
    let Some((home, jar)) = flink() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _reaper = Reaper(data.clone());
    let home_s = home.to_str().unwrap().to_string();
    let m = Manager::start(&data, &["--flink-home", &home_s]);

    // Upload the job jar; its uri is the jarUri.
    let (s, up) = m
        .upload("default", "counter-job.jar", &std::fs::read(&jar).unwrap())
        .await;
    assert_eq!(s, 201, "{up}");
    let uri = up["data"]["uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("file://"), "{uri}");

    let (s, created) = m
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(json!({
                "metadata": {"name": "counter", "labels": {"team": "e2e"}},
                "spec": {
                    "state": "RUNNING",
                    "upgradeStrategy": {"kind": "STATEFUL"},
                    "restoreStrategy": {"kind": "LATEST_SAVEPOINT"},
                    "template": {"spec": {
                        "artifact": {"kind": "JAR", "jarUri": uri, "entryClass": "suite.probe.CounterJob",
                                      "mainArgs": "--rate 200 --name counter-{{ deploymentId }}"},
                        "parallelism": 1,
                        "flinkConfiguration": {"execution.checkpointing.interval": "2s"}
                    }}
                }
            })),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["data"]["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // kill -9 while the cluster is starting, restart: it must converge with one Flink job.
    let first = eventually("a job with a cluster", Duration::from_secs(20), || async {
        let jobs = m.jobs(&id).await;
        jobs.first()
            .filter(|j| j["status"]["cluster"]["restUrl"].is_string())
            .cloned()
    })
    .await;
    assert_eq!(m.deployment(&id).await["status"]["state"], "TRANSITIONING");
    m.kill9();
    let m = Manager::start(&data, &["--flink-home", &home_s]);
    let d = m.wait_state(&id, "RUNNING", Duration::from_secs(150)).await;
    let jobs = m.jobs(&id).await;
    assert_eq!(jobs.len(), 1, "no second job after the restart: {jobs:?}");
    let job = current_job(&d, &jobs).clone();
    assert_eq!(job["metadata"]["id"], first["metadata"]["id"]);
    let rest = rest_of(&job);
    let overview = flink_get(&rest, "/jobs/overview").await.unwrap();
    assert_eq!(
        overview["jobs"].as_array().unwrap().len(),
        1,
        "exactly one Flink job: {overview}"
    );
    assert_eq!(job["status"]["state"], "STARTED");

    // A user savepoint.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, sp) = m
        .call(
            "POST",
            "/api/v1/namespaces/default/savepoints",
            Some(json!({"metadata": {"deploymentId": id}})),
        )
        .await;
    assert_eq!(s, 201, "{sp}");
    let sp_id = sp["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let user_sp = eventually(
        "the user savepoint to complete",
        Duration::from_secs(60),
        || async {
            let (_, v) = m
                .call(
                    "GET",
                    &format!("/api/v1/namespaces/default/savepoints/{sp_id}"),
                    None,
                )
                .await;
            match v["data"]["status"]["state"].as_str() {
                Some("COMPLETED") => Some(v["data"].clone()),
                Some("FAILED") => panic!("savepoint failed: {v}"),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(user_sp["metadata"]["origin"], "USER_REQUEST");
    let loc = user_sp["status"]["location"].as_str().unwrap();
    assert!(
        Path::new(loc.trim_start_matches("file:").trim_start_matches("//")).exists(),
        "{loc}"
    );

    // STATEFUL upgrade: parallelism 1 → 2, restoring from the upgrade savepoint.
    let rv = d["metadata"]["resourceVersion"].as_u64().unwrap();
    let (s, v) = m
        .call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"metadata": {"resourceVersion": rv}, "spec": {"template": {"spec": {"parallelism": 2}}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let d = eventually(
        "the upgraded job to run",
        Duration::from_secs(150),
        || async {
            let d = m.deployment(&id).await;
            let jobs = m.jobs(&id).await;
            (d["status"]["state"] == "RUNNING" && jobs.len() == 2).then_some(d)
        },
    )
    .await;
    let jobs = m.jobs(&id).await;
    assert_eq!(
        jobs[0]["status"]["state"], "SUSPENDED",
        "old job stopped with a savepoint"
    );
    let job2 = current_job(&d, &jobs).clone();
    let sps = m.savepoints(&id).await;
    let upgrade_sp = sps
        .iter()
        .find(|s| s["metadata"]["origin"] == "STATEFUL_UPGRADE")
        .expect("upgrade savepoint");
    let upgrade_loc = upgrade_sp["status"]["location"].as_str().unwrap();
    assert!(same_location(
        job2["spec"]["restoredFrom"].as_str().unwrap(),
        upgrade_loc
    ));
    let rest2 = rest_of(&job2);
    let fid2 = job2["status"]["flinkJobId"].as_str().unwrap();
    let restored = restored_from(&rest2, fid2).await;
    assert!(
        same_location(&restored, upgrade_loc),
        "Flink restored from {restored}, expected {upgrade_loc}"
    );
    let details = flink_get(&rest2, &format!("/jobs/{fid2}")).await.unwrap();
    let max_par = details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["parallelism"].as_u64())
        .max();
    assert_eq!(max_par, Some(2), "new parallelism applied: {details}");
    wait_cluster_gone(&rest).await;

    // SUSPEND with a savepoint, then RUNNING from it.
    let (s, v) = m
        .call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "SUSPENDED"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    m.wait_state(&id, "SUSPENDED", Duration::from_secs(60))
        .await;
    let sps = m.savepoints(&id).await;
    let suspend_sp = sps
        .iter()
        .find(|s| s["metadata"]["origin"] == "SUSPEND")
        .expect("suspend savepoint")
        .clone();
    assert_eq!(suspend_sp["status"]["state"], "COMPLETED");
    let suspend_loc = suspend_sp["status"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    wait_cluster_gone(&rest2).await;
    let (s, v) = m
        .call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "RUNNING"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let d = m.wait_state(&id, "RUNNING", Duration::from_secs(150)).await;
    let jobs = m.jobs(&id).await;
    assert_eq!(jobs.len(), 3);
    let job3 = current_job(&d, &jobs).clone();
    assert!(same_location(
        job3["spec"]["restoredFrom"].as_str().unwrap(),
        &suspend_loc
    ));
    let rest3 = rest_of(&job3);
    let restored = restored_from(&rest3, job3["status"]["flinkJobId"].as_str().unwrap()).await;
    assert!(
        same_location(&restored, &suspend_loc),
        "resumed from {restored}, expected {suspend_loc}"
    );

    // Delete is refused while RUNNING.
    let (s, v) = m
        .call(
            "DELETE",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");

    // CANCELLED: the job is cancelled and the cluster stopped.
    let (s, v) = m
        .call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "CANCELLED"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    m.wait_state(&id, "CANCELLED", Duration::from_secs(60))
        .await;
    let jobs = m.jobs(&id).await;
    assert_eq!(jobs[2]["status"]["state"], "CANCELLED");
    wait_cluster_gone(&rest3).await;
    let events = m.events(&id).await.join("\n");
    for name in [
        "JobStarting",
        "ClusterStarting",
        "JobSubmitted",
        "JobRunning",
        "SavepointCompleted",
        "UpgradeStarted",
        "DeploymentStateChanged",
    ] {
        assert!(events.contains(name), "event {name} missing:\n{events}");
    }
    // The job's logs are where log-shipper looks for them.
    let log_dir = job3["status"]["cluster"]["logDir"].as_str().unwrap();
    assert!(
        log_dir.contains(&format!("logs/default/{id}/")),
        "{log_dir}"
    );
    let logs: Vec<_> = std::fs::read_dir(log_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        logs.iter().any(|n| n.to_string_lossy().ends_with(".log")),
        "{logs:?}"
    );
    let (s, _) = m
        .call(
            "DELETE",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // A job that fails after some records, with a bounded restart strategy: JobFailing, then FAILED.
    let (s, created) = m
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(json!({
                "metadata": {"name": "failing"},
                "spec": {
                    "state": "RUNNING",
                    "template": {"spec": {
                        "artifact": {"jarUri": uri, "entryClass": "suite.probe.CounterJob",
                                      "mainArgs": "--rate 100 --fail-after-records 300"},
                        "flinkConfiguration": {
                            "restart-strategy.type": "fixed-delay",
                            "restart-strategy.fixed-delay.attempts": "2",
                            "restart-strategy.fixed-delay.delay": "1 s"
                        }
                    }}
                }
            })),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let fid = created["data"]["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = m.wait_state(&fid, "FAILED", Duration::from_secs(180)).await;
    // FAILED says what happened in `failure`; no job runs, so no `JobFailing True` lingers.
    let conds = d["status"]["running"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !conds
            .iter()
            .any(|c| c["type"] == "JobFailing" && c["status"] == "True"),
        "JobFailing condition on a FAILED deployment: {conds:?}"
    );
    let msg = d["status"]["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("failing on purpose"),
        "failure reason comes from Flink: {msg}"
    );
    let jobs = m.jobs(&fid).await;
    assert_eq!(jobs.last().unwrap()["status"]["state"], "FAILED");
    assert!(
        jobs.last().unwrap()["status"]["numRestarts"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{jobs:?}"
    );
    // FAILED waits for the user: it stays FAILED.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(m.deployment(&fid).await["status"]["state"], "FAILED");
    wait_cluster_gone(&rest_of(&jobs[0])).await;
}
