//! Two managers on one PostgreSQL database and one (in-process, shared) fake Flink: the
//! leader dies in the middle of a STATEFUL upgrade and the other replica takes over and
//! finishes it with exactly one Flink job running. "Dies" is what a killed process leaves
//! behind: its controller stops at an arbitrary await point (the task is aborted) and its
//! database sessions close (the store is dropped), releasing the leader lock.
//!
//! Skips (with a message) when PostgreSQL is not installed, like `postgres_store.rs`.

mod pg_support;
mod support;

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use job_manager::{flink::fake::FakeFlink, store::Store, testing::Harness, Config};
use pg_support::Pg;
use serde_json::{json, Value};

const DEPS: &str = "/api/v1/namespaces/default/deployments";

/// A manager of the pair: the in-process harness and its running controller.
struct Replica {
    h: Harness,
    controller: tokio::task::JoinHandle<()>,
}

impl Replica {
    fn start(pg: &Pg, url: &str, data: &Path, flink: Arc<FakeFlink>) -> Replica {
        let store = Store::open_at(data, Some(url), Some(&pg.password_file())).expect("store");
        let mut config = Config::default();
        config.controller.poll_interval = Duration::from_millis(200);
        let h = Harness::with_store(data, store, flink, config);
        let controller = tokio::spawn(h.controller.clone().run(std::future::pending::<()>()));
        Replica { h, controller }
    }

    /// Kills the replica: its controller stops wherever it is, its sessions close.
    async fn kill(self) {
        self.controller.abort();
        let _ = self.controller.await;
        drop(self.h);
    }

    fn leads(&self) -> bool {
        self.h.state.store.is_leader()
    }
}

async fn eventually<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    f: impl FnMut() -> Fut,
) -> T {
    support::eventually(what, Duration::from_secs(secs), f).await
}

async fn deployment(h: &Harness, id: &str) -> Value {
    let (s, v) = h.call("GET", &format!("{DEPS}/{id}"), None).await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

async fn jobs(h: &Harness, id: &str) -> Vec<Value> {
    let (s, v) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/jobs?deploymentId={id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut items = v["data"]["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|j| {
        j["metadata"]["createdAt"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    items
}

fn running_flink_jobs(flink: &FakeFlink) -> Vec<String> {
    flink
        .jobs()
        .into_iter()
        .filter(|(_, j)| j.status == "RUNNING")
        .map(|(id, _)| id)
        .collect()
}

/// Starts A (which leads) and B (which follows) on a fresh database, and a RUNNING
/// deployment with a STATEFUL upgrade strategy started by A.
async fn pair(pg: &Pg, db: &str, flink: &Arc<FakeFlink>) -> (Replica, Replica, String) {
    let url = pg.database(db);
    // One data directory, as a shared volume: artifacts are files under it.
    let data = pg.dir.path().join(format!("shared-{db}"));
    let a = Replica::start(pg, &url, &data, flink.clone());
    eventually("a leads", 10, || async { a.leads().then_some(()) }).await;
    let b = Replica::start(pg, &url, &data, flink.clone());
    a.h.fake_target().await;
    let (s, v) =
        a.h.call(
            "POST",
            DEPS,
            Some(json!({
                "metadata": {"name": "takeover"},
                "spec": {
                    "state": "RUNNING",
                    "deploymentTargetName": "fake",
                    "upgradeStrategy": {"kind": "STATEFUL"},
                    "restoreStrategy": {"kind": "LATEST_SAVEPOINT"},
                    "template": {"spec": {
                        "artifact": {"jarUri": a.h.jar_uri, "entryClass": "x.Main"},
                        "parallelism": 1
                    }}
                }
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    eventually("a runs the job", 20, || async {
        let d = deployment(&a.h, &id).await;
        (d["status"]["state"] == "RUNNING" && running_flink_jobs(flink).len() == 1).then_some(())
    })
    .await;
    assert!(!b.leads(), "one leader");
    (a, b, id)
}

/// Starts the STATEFUL upgrade (parallelism 1 → 2) through A's API.
async fn upgrade(a: &Replica, id: &str) {
    let d = deployment(&a.h, id).await;
    let (s, v) =
        a.h.call(
            "PATCH",
            &format!("{DEPS}/{id}"),
            Some(json!({
                "metadata": {"resourceVersion": d["metadata"]["resourceVersion"]},
                "spec": {"template": {"spec": {"parallelism": 2}}}
            })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// B leads, the deployment is RUNNING at parallelism 2 from the upgrade's savepoint, and
/// Flink runs exactly one job: that one.
async fn b_finishes_the_upgrade(b: &Replica, flink: &FakeFlink, id: &str) {
    eventually("b leads", 15, || async { b.leads().then_some(()) }).await;
    let (d, js) = eventually("b finishes the upgrade", 30, || async {
        // A follower's memory lags the database by up to a second (then it reloads).
        let (s, d) = b.h.call("GET", &format!("{DEPS}/{id}"), None).await;
        if s != 200 {
            return None;
        }
        let d = d["data"].clone();
        let js = jobs(&b.h, id).await;
        (d["status"]["state"] == "RUNNING"
            && js.len() == 2
            && js[1]["status"]["state"] == "STARTED")
            .then_some((d, js))
    })
    .await;
    assert_eq!(d["spec"]["template"]["spec"]["parallelism"], 2);
    assert_eq!(js[0]["status"]["state"], "SUSPENDED", "{js:?}");
    let running = running_flink_jobs(flink);
    assert_eq!(running.len(), 1, "exactly one Flink job: {running:?}");
    assert_eq!(js[1]["status"]["flinkJobId"], running[0].as_str());
    let req = flink.jobs()[&running[0]].request.clone();
    assert_eq!(req.parallelism, 2);
    let (s, v) =
        b.h.call(
            "GET",
            &format!("/api/v1/namespaces/default/savepoints?deploymentId={id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let sps = v["data"]["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(sps.len(), 1, "one savepoint for the upgrade: {sps:?}");
    assert_eq!(sps[0]["status"]["state"], "COMPLETED");
    assert_eq!(
        req.savepoint_path.as_deref(),
        sps[0]["status"]["location"].as_str(),
        "restored from the upgrade's savepoint"
    );
    // Everything settles: no further submission happens after the takeover's.
    let submissions = flink.calls_of("run_jar").len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(flink.calls_of("run_jar").len(), submissions);
    assert_eq!(running_flink_jobs(flink).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_while_the_upgrade_savepoint_is_in_progress() {
    let Some(pg) = Pg::start() else { return };
    let flink = Arc::new(FakeFlink::new());
    let (a, b, id) = pair(&pg, "takeover_savepoint", &flink).await;
    flink.hold_operations(true);
    upgrade(&a, &id).await;
    // A triggered the stop-with-savepoint and recorded its trigger; Flink has not finished.
    eventually("savepoint triggered and recorded", 20, || async {
        let (_, v) =
            a.h.call(
                "GET",
                &format!("/api/v1/namespaces/default/savepoints?deploymentId={id}"),
                None,
            )
            .await;
        (flink.calls_of("stop_with_savepoint").len() == 1
            && v["data"]["items"][0]["status"]["state"] == "STARTED")
            .then_some(())
    })
    .await;
    a.kill().await;
    eventually("b leads", 15, || async { b.leads().then_some(()) }).await;
    flink.complete_operations();
    b_finishes_the_upgrade(&b, &flink, &id).await;
    assert_eq!(
        flink.calls_of("stop_with_savepoint").len(),
        1,
        "b polled a's savepoint, it did not take another"
    );
    assert_eq!(flink.calls_of("run_jar").len(), 2);
    b.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_after_submitting_the_upgraded_job_before_recording_it() {
    let Some(pg) = Pg::start() else { return };
    let flink = Arc::new(FakeFlink::new());
    let (a, b, id) = pair(&pg, "takeover_submit", &flink).await;
    // Flink accepts A's submission of the upgraded job, but A never hears back.
    flink.hang_after_run(true);
    upgrade(&a, &id).await;
    eventually("the upgraded job reached Flink", 20, || async {
        (flink.calls_of("run_jar").len() == 2).then_some(())
    })
    .await;
    a.kill().await;
    flink.hang_after_run(false);
    b_finishes_the_upgrade(&b, &flink, &id).await;
    assert_eq!(
        flink.calls_of("run_jar").len(),
        2,
        "b found the submitted job in Flink instead of submitting it again"
    );
    b.kill().await;
}
