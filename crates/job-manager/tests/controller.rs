//! The controller against the fake Flink: transitions, upgrades, restore, retries, health
//! conditions, savepoint schedules and recovery after a crash at awkward moments.

use std::sync::Arc;

use job_manager::{flink::fake::FakeFlink, store::Write1, testing::Harness, Config};
use serde_json::{json, Value};

fn config() -> Config {
    let mut c = Config::default();
    c.controller.unstable_restarts = 3;
    c
}

async fn harness(dir: &std::path::Path, flink: Arc<FakeFlink>) -> Harness {
    let h = Harness::open(dir, flink, config());
    h.fake_target().await;
    h
}

async fn create(h: &Harness, name: &str, extra: Value) -> String {
    let mut body = json!({
        "metadata": {"name": name},
        "spec": {
            "state": "RUNNING",
            "deploymentTargetName": "fake",
            "template": {"spec": {
                "artifact": {"jarUri": h.jar_uri, "entryClass": "x.Main", "mainArgs": "--name {{ deploymentName }}"},
                "parallelism": 1
            }}
        }
    });
    merge(&mut body, &extra);
    let (s, v) = h
        .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["metadata"]["id"].as_str().unwrap().to_string()
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

async fn patch(h: &Harness, id: &str, body: Value) {
    let (s, v) = h
        .call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn get(h: &Harness, id: &str) -> Value {
    let (s, v) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

async fn items(h: &Harness, path: &str) -> Vec<Value> {
    let (s, v) = h.call("GET", path, None).await;
    assert_eq!(s, 200, "{v}");
    v["data"]["items"].as_array().unwrap().clone()
}

async fn jobs(h: &Harness, id: &str) -> Vec<Value> {
    items(
        h,
        &format!("/api/v1/namespaces/default/jobs?deploymentId={id}"),
    )
    .await
}

async fn savepoints(h: &Harness, id: &str) -> Vec<Value> {
    items(
        h,
        &format!("/api/v1/namespaces/default/savepoints?deploymentId={id}"),
    )
    .await
}

async fn event_names(h: &Harness, id: &str) -> Vec<String> {
    items(
        h,
        &format!("/api/v1/namespaces/default/events?deploymentId={id}"),
    )
    .await
    .iter()
    .map(|e| {
        format!(
            "{}: {}",
            e["spec"]["name"].as_str().unwrap(),
            e["spec"]["message"].as_str().unwrap()
        )
    })
    .collect()
}

fn state(d: &Value) -> &str {
    d["status"]["state"].as_str().unwrap()
}

fn condition<'a>(d: &'a Value, kind: &str) -> Option<&'a Value> {
    d["status"]["running"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[tokio::test]
async fn start_submits_once_with_rendered_args_and_reaches_running() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "orders", json!({})).await;
    h.settle(20).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "RUNNING");
    let js = jobs(&h, &id).await;
    assert_eq!(js.len(), 1);
    assert_eq!(js[0]["status"]["state"], "STARTED");
    let fid = js[0]["status"]["flinkJobId"].as_str().unwrap();
    let flink_jobs = h.flink.jobs();
    assert_eq!(flink_jobs.len(), 1);
    let req = &flink_jobs[fid].request;
    assert_eq!(req.program_args, vec!["--name", "orders"]);
    assert_eq!(req.entry_class.as_deref(), Some("x.Main"));
    assert_eq!(req.savepoint_path, None);
    assert_eq!(h.flink.calls_of("run_jar").len(), 1);
    let ev = event_names(&h, &id).await.join("\n");
    for n in ["JobStarting", "JobSubmitted", "JobRunning"] {
        assert!(ev.contains(n), "{ev}");
    }
}

#[tokio::test]
async fn stateful_upgrade_stops_with_savepoint_and_restores_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "up", json!({})).await;
    h.settle(20).await;
    patch(
        &h,
        &id,
        json!({"spec": {"template": {"spec": {"parallelism": 3}}}}),
    )
    .await;
    h.settle(30).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "RUNNING");
    let js = jobs(&h, &id).await;
    assert_eq!(js.len(), 2);
    assert_eq!(js[0]["status"]["state"], "SUSPENDED");
    let sps = savepoints(&h, &id).await;
    assert_eq!(sps.len(), 1);
    assert_eq!(sps[0]["metadata"]["origin"], "STATEFUL_UPGRADE");
    assert_eq!(sps[0]["status"]["state"], "COMPLETED");
    let loc = sps[0]["status"]["location"].as_str().unwrap();
    assert_eq!(js[1]["spec"]["restoredFrom"], loc);
    let fid = js[1]["status"]["flinkJobId"].as_str().unwrap();
    let req = h.flink.jobs()[fid].request.clone();
    assert_eq!(req.savepoint_path.as_deref(), Some(loc));
    assert_eq!(req.parallelism, 3);
    // Order of Flink calls: stop-with-savepoint before the new submission; never a cancel.
    let ops: Vec<&str> = h
        .flink
        .calls()
        .iter()
        .map(|c| c.op)
        .filter(|o| matches!(*o, "run_jar" | "stop_with_savepoint" | "cancel"))
        .collect();
    assert_eq!(ops, vec!["run_jar", "stop_with_savepoint", "run_jar"]);
}

#[tokio::test]
async fn stateless_upgrade_cancels_and_restore_none_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "sl", json!({"spec": {"upgradeStrategy": {"kind": "STATELESS"}, "restoreStrategy": {"kind": "NONE"}}})).await;
    h.settle(20).await;
    patch(
        &h,
        &id,
        json!({"spec": {"template": {"spec": {"flinkConfiguration": {"a": "b"}}}}}),
    )
    .await;
    h.settle(30).await;
    assert_eq!(state(&get(&h, &id).await), "RUNNING");
    assert!(h.flink.calls_of("stop_with_savepoint").is_empty());
    assert_eq!(h.flink.calls_of("cancel").len(), 1);
    let js = jobs(&h, &id).await;
    assert_eq!(js[0]["status"]["state"], "CANCELLED");
    assert!(js[1]["spec"]["restoredFrom"].is_null());
    // Session target: the rendered configuration travels with the submission.
    let fid = js[1]["status"]["flinkJobId"].as_str().unwrap();
    assert_eq!(h.flink.jobs()[fid].request.flink_configuration["a"], "b");
}

#[tokio::test]
async fn upgrade_strategy_none_leaves_the_running_job_alone() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(
        &h,
        "none",
        json!({"spec": {"upgradeStrategy": {"kind": "NONE"}}}),
    )
    .await;
    h.settle(20).await;
    patch(
        &h,
        &id,
        json!({"spec": {"template": {"spec": {"parallelism": 2}}}}),
    )
    .await;
    h.settle(20).await;
    assert_eq!(jobs(&h, &id).await.len(), 1);
    assert_eq!(h.flink.calls_of("run_jar").len(), 1);
}

#[tokio::test]
async fn suspend_then_resume_restores_from_the_suspend_savepoint_then_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "sus", json!({})).await;
    h.settle(20).await;
    patch(&h, &id, json!({"spec": {"state": "SUSPENDED"}})).await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "SUSPENDED");
    let sps = savepoints(&h, &id).await;
    assert_eq!(sps[0]["metadata"]["origin"], "SUSPEND");
    let loc = sps[0]["status"]["location"].as_str().unwrap().to_string();
    patch(&h, &id, json!({"spec": {"state": "RUNNING"}})).await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "RUNNING");
    let js = jobs(&h, &id).await;
    assert_eq!(js[1]["spec"]["restoredFrom"], loc.as_str());
    patch(&h, &id, json!({"spec": {"state": "CANCELLED"}})).await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "CANCELLED");
    let js = jobs(&h, &id).await;
    assert_eq!(js[1]["status"]["state"], "CANCELLED");
    let fid = js[1]["status"]["flinkJobId"].as_str().unwrap();
    assert_eq!(h.flink.jobs()[fid].status, "CANCELED");
}

#[tokio::test]
async fn a_new_desired_state_waits_for_the_running_transition_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "tr", json!({})).await;
    h.settle(20).await;
    h.flink.hold_operations(true);
    patch(&h, &id, json!({"spec": {"state": "SUSPENDED"}})).await;
    h.settle(6).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    // The user changes their mind while the savepoint is in progress.
    patch(&h, &id, json!({"spec": {"state": "RUNNING"}})).await;
    h.settle(6).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    assert_eq!(
        h.flink.calls_of("run_jar").len(),
        1,
        "no new job before SUSPENDED is reached"
    );
    h.flink.complete_operations();
    h.settle(30).await;
    assert_eq!(state(&get(&h, &id).await), "RUNNING");
    let ev = event_names(&h, &id).await;
    let suspended = ev
        .iter()
        .position(|e| e.contains("Deployment is SUSPENDED"))
        .expect("SUSPENDED reached");
    let restarted = ev
        .iter()
        .rposition(|e| e.starts_with("JobStarting"))
        .unwrap();
    assert!(suspended < restarted, "{ev:?}");
}

#[tokio::test]
async fn savepoint_failures_are_retried_then_the_deployment_fails_and_waits_for_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(
        &h,
        "spf",
        json!({"spec": {"maxSavepointCreationAttempts": 3}}),
    )
    .await;
    h.settle(20).await;
    h.flink
        .fail_savepoints(100, "java.io.IOException: disk full");
    patch(&h, &id, json!({"spec": {"state": "SUSPENDED"}})).await;
    h.settle(30).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED");
    let msg = d["status"]["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("disk full") && msg.contains("3 attempt"),
        "{msg}"
    );
    assert_eq!(h.flink.calls_of("stop_with_savepoint").len(), 3);
    // The job keeps running in Flink; nothing more happens without the user.
    h.settle(10).await;
    assert_eq!(h.flink.calls_of("stop_with_savepoint").len(), 3);
    assert_eq!(h.flink.jobs().values().next().unwrap().status, "RUNNING");
    patch(&h, &id, json!({"spec": {"state": "CANCELLED"}})).await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "CANCELLED");
}

#[tokio::test]
async fn job_creation_attempts_are_bounded_and_failed_needs_a_user_action() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    h.flink.fail_runs(
        2,
        "Could not execute application.; java.lang.IllegalArgumentException: bad flag",
    );
    let id = create(&h, "jf", json!({"spec": {"maxJobCreationAttempts": 2}})).await;
    h.settle(20).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED");
    assert!(
        d["status"]["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("bad flag"),
        "{d}"
    );
    assert_eq!(h.flink.calls_of("run_jar").len(), 2);
    h.settle(10).await;
    assert_eq!(
        h.flink.calls_of("run_jar").len(),
        2,
        "FAILED is not retried on its own"
    );
    // A user action (any spec change) retries.
    patch(
        &h,
        &id,
        json!({"spec": {"template": {"spec": {"parallelism": 2}}}}),
    )
    .await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "RUNNING");
}

#[tokio::test]
async fn health_conditions_follow_flink() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "health", json!({})).await;
    h.settle(20).await;
    let fid = jobs(&h, &id).await[0]["status"]["flinkJobId"]
        .as_str()
        .unwrap()
        .to_string();

    h.flink
        .set_status(&fid, "RESTARTING", Some("java.lang.RuntimeException: boom"));
    h.flink.set_restarts(&fid, 1);
    h.settle(5).await;
    let d = get(&h, &id).await;
    let c = condition(&d, "JobFailing").unwrap();
    assert_eq!(c["status"], "True");
    assert!(c["message"].as_str().unwrap().contains("boom"));

    h.flink.set_status(&fid, "RUNNING", None);
    h.flink.set_restarts(&fid, 4);
    h.settle(5).await;
    let d = get(&h, &id).await;
    assert_eq!(condition(&d, "JobFailing").unwrap()["status"], "False");
    assert_eq!(
        condition(&d, "JobUnstable").unwrap()["status"],
        "True",
        "{d}"
    );
    assert_eq!(jobs(&h, &id).await[0]["status"]["numRestarts"], 4);

    h.flink.set_unreachable(true);
    h.settle(5).await;
    assert_eq!(
        condition(&get(&h, &id).await, "ClusterUnreachable").unwrap()["status"],
        "True"
    );
    h.flink.set_unreachable(false);
    h.settle(5).await;
    assert_eq!(
        condition(&get(&h, &id).await, "ClusterUnreachable").unwrap()["status"],
        "False"
    );

    h.flink.set_status(
        &fid,
        "FAILED",
        Some("java.lang.IllegalStateException: gave up"),
    );
    h.settle(5).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED");
    assert!(d["status"]["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("gave up"));
    assert_eq!(jobs(&h, &id).await[0]["status"]["state"], "FAILED");
    let ev = event_names(&h, &id).await.join("\n");
    for n in [
        "JobFailing",
        "JobUnstable",
        "ClusterUnreachable",
        "JobFailed",
    ] {
        assert!(ev.contains(n), "{ev}");
    }
}

#[tokio::test(start_paused = true)]
async fn user_and_scheduled_savepoints_with_retention() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(
        &h,
        "sched",
        json!({"spec": {"savepointSchedule": {"cron": "0 0 * * * *", "retain": 2}}}),
    )
    .await;
    h.settle(20).await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/savepoints",
            Some(json!({"metadata": {"deploymentId": id}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    h.settle(10).await;
    let sps = savepoints(&h, &id).await;
    assert_eq!(sps.len(), 1);
    assert_eq!(sps[0]["metadata"]["origin"], "USER_REQUEST");
    assert_eq!(sps[0]["status"]["state"], "COMPLETED");
    // Within the hour, the hourly schedule takes none.
    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    h.settle(5).await;
    assert_eq!(h.flink.calls_of("trigger_savepoint").len(), 1);
    // Four hours pass (the controller's clock follows tokio's paused time).
    for _ in 0..4 {
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        h.settle(10).await;
    }
    let sps = savepoints(&h, &id).await;
    let scheduled: Vec<_> = sps
        .iter()
        .filter(|s| s["metadata"]["origin"] == "SCHEDULED")
        .collect();
    assert_eq!(scheduled.len(), 2, "retain 2: {sps:?}");
    assert!(scheduled
        .iter()
        .all(|s| s["status"]["state"] == "COMPLETED"));
    assert_eq!(h.flink.calls_of("trigger_savepoint").len(), 5);
    // The user's savepoint is not subject to the schedule's retention.
    assert!(sps
        .iter()
        .any(|s| s["metadata"]["origin"] == "USER_REQUEST"));
}

#[tokio::test]
async fn restart_after_a_lost_write_does_not_submit_twice() {
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = harness(dir.path(), flink.clone()).await;
    let id = create(&h, "crash", json!({})).await;
    // Step until Flink has the job, then pretend the write after the submission was lost.
    for _ in 0..10 {
        h.controller.reconcile_all().await;
        if !flink.jobs().is_empty() {
            break;
        }
    }
    assert_eq!(flink.jobs().len(), 1);
    let job = h.state.store.read().jobs.values().next().unwrap().clone();
    let mut lost = job.clone();
    lost.status.submitted = false;
    h.state.store.write(vec![Write1::Job(lost)]).unwrap();
    drop(h);

    let h = Harness::open(dir.path(), flink.clone(), config());
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "RUNNING");
    assert_eq!(
        flink.calls_of("run_jar").len(),
        1,
        "the job was found, not resubmitted"
    );
    assert_eq!(flink.jobs().len(), 1);
}

#[tokio::test]
async fn restart_during_a_savepoint_resumes_polling_the_same_operation() {
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = harness(dir.path(), flink.clone()).await;
    let id = create(&h, "crash2", json!({})).await;
    h.settle(20).await;
    flink.hold_operations(true);
    patch(&h, &id, json!({"spec": {"state": "SUSPENDED"}})).await;
    h.settle(4).await;
    assert_eq!(flink.calls_of("stop_with_savepoint").len(), 1);
    drop(h);

    let h = Harness::open(dir.path(), flink.clone(), config());
    h.settle(4).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    flink.complete_operations();
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "SUSPENDED");
    assert_eq!(
        flink.calls_of("stop_with_savepoint").len(),
        1,
        "not triggered twice"
    );
}

#[tokio::test]
async fn delete_is_refused_while_running_and_allowed_once_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "del", json!({})).await;
    h.settle(20).await;
    let (s, v) = h
        .call(
            "DELETE",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("RUNNING"), "{v}");
    patch(&h, &id, json!({"spec": {"state": "CANCELLED"}})).await;
    h.settle(20).await;
    let (s, v) = h
        .call(
            "DELETE",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(jobs(&h, &id).await.is_empty());
    let (s, _) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn cancel_deletes_the_deployments_metric_groups_from_the_metrics_gateway() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"deleted\":1}").await;
            let _ = tx.send(head).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.metrics_gateway.url = Some(format!("http://{addr}"));
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), c);
    h.fake_target().await;
    let id = create(&h, "mg", json!({})).await;
    h.settle(20).await;
    patch(&h, &id, json!({"spec": {"state": "CANCELLED"}})).await;
    h.settle(20).await;
    let line = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let decoded = line
        .replace("%7B", "{")
        .replace("%7D", "}")
        .replace("%3D", "=")
        .replace("%22", "\"")
        .replace("%5B", "[")
        .replace("%5D", "]");
    assert!(
        decoded.starts_with("DELETE /api/v1/groups?match[]="),
        "{line}"
    );
    assert!(
        decoded.contains(&format!("{{deploymentId=\"{id}\"}}")),
        "{decoded}"
    );
}

#[tokio::test]
async fn a_local_cluster_that_is_gone_fails_the_deployment_and_a_user_action_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = harness(dir.path(), flink.clone()).await;
    let id = create(&h, "lost", json!({})).await;
    h.settle(20).await;
    // Make the job's cluster look like a local one whose processes are gone.
    let mut job = h.state.store.read().jobs.values().next().unwrap().clone();
    let local = dir.path().join("local").join(job.metadata.id.to_string());
    std::fs::create_dir_all(local.join("pid")).unwrap();
    if let Some(c) = job.status.cluster.as_mut() {
        c.local_dir = Some(local.display().to_string());
    }
    h.state.store.write(vec![Write1::Job(job)]).unwrap();
    flink.set_unreachable(true);
    h.settle(5).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED", "{d}");
    assert_eq!(d["status"]["failure"]["reason"], "ClusterLost");
    flink.set_unreachable(false);
    h.settle(5).await;
    assert_eq!(state(&get(&h, &id).await), "FAILED", "waits for the user");
    patch(
        &h,
        &id,
        json!({"metadata": {"annotations": {"restart": "1"}}}),
    )
    .await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "RUNNING");
    assert_eq!(jobs(&h, &id).await.len(), 2);
}

fn config_with_start_timeout(timeout: std::time::Duration) -> Config {
    let mut c = config();
    c.controller.cluster_start_timeout = timeout;
    c
}

const UPLOAD_500: &str =
    "org.apache.flink.runtime.rest.handler.RestHandlerException: UploadDirectory is not absolute.";

#[tokio::test(start_paused = true)]
async fn a_cluster_that_refuses_the_jar_becomes_an_event_then_failed_within_the_start_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(
        dir.path(),
        flink.clone(),
        config_with_start_timeout(std::time::Duration::from_secs(60)),
    );
    h.fake_target().await;
    flink.fail_uploads(Some(UPLOAD_500));
    let id = create(&h, "no-upload", json!({})).await;
    h.settle(10).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    let held: Vec<String> = event_names(&h, &id)
        .await
        .into_iter()
        .filter(|e| e.starts_with("ClusterNotReady"))
        .collect();
    assert_eq!(held.len(), 1, "one event per distinct error: {held:?}");
    assert!(
        held[0].contains("UploadDirectory is not absolute"),
        "{held:?}"
    );
    // Retries within the timeout add no events.
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    h.settle(10).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    assert_eq!(
        event_names(&h, &id)
            .await
            .iter()
            .filter(|e| e.starts_with("ClusterNotReady"))
            .count(),
        1
    );
    // Past the cluster start timeout: FAILED with Flink's own error, and no more retries.
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    h.settle(10).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED", "{d}");
    let msg = d["status"]["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("UploadDirectory is not absolute") && msg.contains("60s"),
        "{msg}"
    );
    assert_eq!(jobs(&h, &id).await[0]["status"]["state"], "FAILED");
    let uploads = flink.calls_of("upload_jar").len();
    h.settle(10).await;
    assert_eq!(flink.calls_of("upload_jar").len(), uploads, "FAILED waits");
    assert!(flink.calls_of("run_jar").is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_cluster_fails_the_start_after_the_timeout_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(
        dir.path(),
        flink.clone(),
        config_with_start_timeout(std::time::Duration::from_secs(20)),
    );
    h.fake_target().await;
    flink.set_unreachable(true);
    let id = create(&h, "down", json!({})).await;
    h.settle(10).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    tokio::time::advance(std::time::Duration::from_secs(21)).await;
    h.settle(10).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED");
    assert!(
        d["status"]["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{d}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_desired_state_ends_the_current_start_attempt() {
    for goal in ["CANCELLED", "SUSPENDED"] {
        let dir = tempfile::tempdir().unwrap();
        let flink = Arc::new(FakeFlink::new());
        let h = harness(dir.path(), flink.clone()).await;
        flink.fail_uploads(Some(UPLOAD_500));
        let id = create(&h, "stuck", json!({})).await;
        h.settle(10).await;
        assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
        patch(&h, &id, json!({"spec": {"state": goal}})).await;
        // No time passes: the attempt ends at once, not at the start timeout.
        h.settle(10).await;
        let d = get(&h, &id).await;
        assert_eq!(state(&d), goal, "{d}");
        assert_eq!(jobs(&h, &id).await[0]["status"]["state"], "CANCELLED");
        let uploads = flink.calls_of("upload_jar").len();
        h.settle(5).await;
        assert_eq!(flink.calls_of("upload_jar").len(), uploads);
        let ev = event_names(&h, &id).await.join("\n");
        assert!(ev.contains(&format!("Deployment is {goal}.")), "{ev}");
    }
}

#[tokio::test]
async fn patching_running_on_a_failed_deployment_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    h.flink
        .fail_runs(1, "java.lang.IllegalArgumentException: bad flag");
    let id = create(&h, "retry", json!({"spec": {"maxJobCreationAttempts": 1}})).await;
    h.settle(20).await;
    assert_eq!(state(&get(&h, &id).await), "FAILED");
    // The desired state already is RUNNING; saying it again is the user's retry (VVP).
    patch(&h, &id, json!({"spec": {"state": "RUNNING"}})).await;
    h.settle(20).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "RUNNING", "{d}");
    assert!(d["status"].get("failure").is_none(), "{d}");
    assert_eq!(h.flink.calls_of("run_jar").len(), 2);
}

#[tokio::test]
async fn a_failed_deployment_does_not_show_job_failing() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), Arc::new(FakeFlink::new())).await;
    let id = create(&h, "gone", json!({})).await;
    h.settle(20).await;
    let fid = jobs(&h, &id).await[0]["status"]["flinkJobId"]
        .as_str()
        .unwrap()
        .to_string();
    h.flink
        .set_status(&fid, "RESTARTING", Some("java.lang.RuntimeException: boom"));
    h.settle(5).await;
    assert_eq!(
        condition(&get(&h, &id).await, "JobFailing").unwrap()["status"],
        "True"
    );
    h.flink.set_status(&fid, "FAILED", None);
    h.settle(5).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED");
    assert!(
        condition(&d, "JobFailing").is_none_or(|c| c["status"] != "True"),
        "{d}"
    );
    assert!(d["status"]["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("boom"));
}

#[tokio::test(start_paused = true)]
async fn a_black_holed_session_cluster_does_not_delay_other_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = harness(dir.path(), flink.clone()).await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(json!({
                "metadata": {"name": "hole"},
                "spec": {"type": "session", "restUrl": "http://hole:8081", "savepointDir": "file:///fake/savepoints"}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    flink.black_hole("http://hole:8081");
    // Several on the black hole, created first, and one healthy deployment.
    let mut holed = vec![];
    for i in 0..3 {
        holed.push(
            create(
                &h,
                &format!("holed-{i}"),
                json!({"spec": {"deploymentTargetName": "hole"}}),
            )
            .await,
        );
    }
    let healthy = create(&h, "healthy", json!({})).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(h.controller.clone().run(async {
        let _ = stopped.await;
    }));
    let t0 = tokio::time::Instant::now();
    loop {
        if state(&get(&h, &healthy).await) == "RUNNING" {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "the healthy deployment waited for the black-holed cluster"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Reached well before one step's timeout: nobody waited on the black hole.
    assert!(
        t0.elapsed() < job_manager::controller::STEP_TIMEOUT / 4,
        "{:?}",
        t0.elapsed()
    );
    for id in &holed {
        assert_eq!(state(&get(&h, id).await), "TRANSITIONING");
    }
    let _ = stop.send(());
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn instability_counts_restarts_within_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.controller.unstable_window = std::time::Duration::from_secs(600);
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), c);
    h.fake_target().await;
    let id = create(&h, "flaky", json!({})).await;
    h.settle(20).await;
    let fid = jobs(&h, &id).await[0]["status"]["flinkJobId"]
        .as_str()
        .unwrap()
        .to_string();
    // Three restarts spread over nine minutes: within the window, unstable.
    for n in 1..=3 {
        tokio::time::advance(std::time::Duration::from_secs(180)).await;
        h.flink.set_restarts(&fid, n);
        h.settle(5).await;
    }
    let d = get(&h, &id).await;
    assert_eq!(
        condition(&d, "JobUnstable").unwrap()["status"],
        "True",
        "{d}"
    );
    // Ten quiet minutes later the old restarts have left the window: stable again.
    tokio::time::advance(std::time::Duration::from_secs(601)).await;
    h.settle(5).await;
    let d = get(&h, &id).await;
    assert_eq!(
        condition(&d, "JobUnstable").unwrap()["status"],
        "False",
        "{d}"
    );
    // The same three restarts spread over more than the window never make it unstable.
    for n in 4..=6 {
        tokio::time::advance(std::time::Duration::from_secs(400)).await;
        h.flink.set_restarts(&fid, n);
        h.settle(5).await;
        let d = get(&h, &id).await;
        assert_eq!(
            condition(&d, "JobUnstable").unwrap()["status"],
            "False",
            "{d}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_cluster_that_exits_while_starting_fails_with_its_logged_error_before_the_timeout()
{
    let dir = tempfile::tempdir().unwrap();
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(
        dir.path(),
        flink.clone(),
        config_with_start_timeout(std::time::Duration::from_secs(180)),
    );
    h.fake_target().await;
    flink.set_unreachable(true);
    let id = create(&h, "exits", json!({})).await;
    h.settle(5).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    // Make the job's cluster a local one whose JobManager exited after logging why.
    let mut job = h.state.store.read().jobs.values().next().unwrap().clone();
    let local = dir.path().join("local").join(job.metadata.id.to_string());
    let logs = dir.path().join("logs-of-job");
    std::fs::create_dir_all(local.join("pid")).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("flink-u-standalonesession-0-host.log"),
        "INFO starting\n2026 ERROR org.apache.flink.runtime.entrypoint.ClusterEntrypoint [] - Could not start cluster entrypoint: java.net.BindException: Address already in use\n",
    )
    .unwrap();
    if let Some(c) = job.status.cluster.as_mut() {
        c.local_dir = Some(local.display().to_string());
        c.log_dir = Some(logs.display().to_string());
    }
    h.state.store.write(vec![Write1::Job(job)]).unwrap();
    // Within the grace nothing is decided (its processes may still be launching).
    h.settle(5).await;
    assert_eq!(state(&get(&h, &id).await), "TRANSITIONING");
    tokio::time::advance(std::time::Duration::from_secs(21)).await;
    h.settle(5).await;
    let d = get(&h, &id).await;
    assert_eq!(state(&d), "FAILED", "{d}");
    let msg = d["status"]["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("not running any more") && msg.contains("Address already in use"),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_acts_on_store_changes_without_waiting_for_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.controller.poll_interval = std::time::Duration::from_secs(3600);
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), c);
    h.fake_target().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(h.controller.clone().run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let t0 = tokio::time::Instant::now();
    let id = create(&h, "prompt", json!({})).await;
    let wait_for = |want: &'static str| {
        let h = &h;
        let id = id.clone();
        async move {
            while state(&get(h, &id).await) != want {
                assert!(
                    t0.elapsed() < std::time::Duration::from_secs(60),
                    "still not {want}: only the hourly pass would have found it"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_for("RUNNING").await;
    // (A savepoint in progress is polled at the poll interval; a cancel needs no polling.)
    patch(&h, &id, json!({"spec": {"state": "CANCELLED"}})).await;
    wait_for("CANCELLED").await;
    let _ = stop.send(());
    run.await.unwrap();
}
