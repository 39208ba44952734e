//! job-manager controller benchmark (run: `cargo bench -p job-manager --bench controller`).
//!
//! With 1,000 RUNNING deployments on the fake Flink (the real store on disk, the real API
//! router and controller loop), measures:
//! 1. latency from a desired-state PATCH (API call returns) to the resulting Flink REST call
//!    (stop-with-savepoint for SUSPENDED, jar run for RUNNING), goal ≤ 100 ms;
//! 2. wall and CPU time of one reconcile pass over all 1,000 deployments, goal ≤ 1 s.
//!
//! Ververica Platform itself cannot run here, so there is no peer ratio; the figures are
//! compared with the goals of issue 7.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
use serde_json::json;

const DEPLOYMENTS: usize = 1000;
const PATCHES: usize = 40;
const PASSES: usize = 20;

/// User + system CPU time of this process (from /proc, 10 ms resolution).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the command name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let dir = std::env::temp_dir().join(format!("jm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(&dir, flink.clone(), Config::default());
    h.fake_target().await;

    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(DEPLOYMENTS);
    for i in 0..DEPLOYMENTS {
        let (s, v) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/deployments",
                Some(json!({
                    "metadata": {"name": format!("bench-{i}")},
                    "spec": {"state": "RUNNING", "deploymentTargetName": "fake",
                             "template": {"spec": {"artifact": {"jarUri": h.jar_uri}}}}
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        ids.push(
            v["data"]["metadata"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let created = t0.elapsed();
    h.settle(20).await;
    let running = h
        .state
        .store
        .read()
        .deployments
        .values()
        .filter(|r| r.deployment.status.state == job_manager::model::DeploymentState::Running)
        .count();
    assert_eq!(
        running, DEPLOYMENTS,
        "all deployments RUNNING before measuring"
    );
    println!(
        "setup: {DEPLOYMENTS} deployments created in {:.2?} and RUNNING after {:.2?}",
        created,
        t0.elapsed()
    );

    // 2. Reconcile passes over 1,000 running deployments (each observes its job: status,
    // restarts).
    let mut walls = vec![];
    let cpu0 = cpu_time();
    for _ in 0..PASSES {
        let t = Instant::now();
        h.controller.reconcile_all().await;
        walls.push(t.elapsed());
    }
    let cpu = cpu_time().saturating_sub(cpu0);
    let pass_p50 = pct(walls.clone(), 0.5);
    let pass_max = pct(walls.clone(), 1.0);
    let cpu_per_pass = cpu / PASSES as u32;

    // 1. PATCH → Flink call latency with the controller loop running.
    let lifecycle = common::Lifecycle::new();
    let ctl = tokio::spawn(h.controller.clone().run(lifecycle.shutdown()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = vec![];
    for n in 0..PATCHES {
        let (want_state, op) = if n % 2 == 0 {
            ("SUSPENDED", "stop_with_savepoint")
        } else {
            ("RUNNING", "run_jar")
        };
        // Alternate: suspend deployment k, later resume it.
        let target = &ids[n / 2];
        let before = flink.calls_of(op).len();
        let (s, v) = h
            .call(
                "PATCH",
                &format!("/api/v1/namespaces/default/deployments/{target}"),
                Some(json!({"spec": {"state": want_state}})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let patched = Instant::now();
        let deadline = patched + Duration::from_secs(10);
        loop {
            let calls = flink.calls_of(op);
            if calls.len() > before {
                let at = calls[before].at;
                lat.push(at.saturating_duration_since(patched));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no {op} within 10 s of the PATCH"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Let the transition finish before the next PATCH.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = h.state.store.read().deployments[&target.parse().unwrap_or_default()]
                .deployment
                .status
                .state;
            let done = match want_state {
                "SUSPENDED" => d == job_manager::model::DeploymentState::Suspended,
                _ => d == job_manager::model::DeploymentState::Running,
            };
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "transition to {want_state} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    lifecycle.request_shutdown();
    let _ = ctl.await;

    let p50 = pct(lat.clone(), 0.5);
    let p99 = pct(lat.clone(), 0.99);
    let max = pct(lat, 1.0);
    println!(
        "PATCH → Flink REST call ({PATCHES} PATCHes, 1,000 deployments, controller loop running): p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}  (goal ≤ 100 ms: {})",
        if max <= Duration::from_millis(100) { "met" } else { "NOT met" }
    );
    println!(
        "reconcile pass over {DEPLOYMENTS} RUNNING deployments ({PASSES} passes): wall p50 {pass_p50:.2?}, max {pass_max:.2?}; CPU {cpu_per_pass:.2?} per pass  (goal ≤ 1 s: {})",
        if pass_max <= Duration::from_secs(1) { "met" } else { "NOT met" }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
