//! `run_main` with real signals sent to this test process (its own binary, so no other test
//! shares the signal handlers): a drain that exceeds the grace period is cut short, a second
//! signal quits at once, SIGHUP becomes a reload request, and a clean drain exits cleanly.

use std::{process::Command, time::Duration};

use common::lifecycle::{run_main, Lifecycle, Outcome};

fn kill_self(sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &std::process::id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_drive_drain_reload_and_forced_exit() {
    // 1. SIGHUP → reload request; SIGTERM → drain; the service stops cleanly.
    let lc = Lifecycle::new();
    let mut reloads = lc.reloads();
    let svc = lc.clone();
    let main = tokio::spawn(run_main(
        "t",
        Duration::from_secs(5),
        lc.clone(),
        async move {
            svc.shutdown().await;
            Ok(())
        },
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    kill_self("HUP");
    tokio::time::timeout(Duration::from_secs(5), reloads.recv())
        .await
        .expect("reload requested")
        .expect("channel open");
    kill_self("TERM");
    assert_eq!(main.await.unwrap(), Outcome::Clean);

    // 2. A service that ignores shutdown is cut off when the grace period ends.
    let lc = Lifecycle::new();
    let start = std::time::Instant::now();
    let main = tokio::spawn(run_main(
        "t",
        Duration::from_millis(300),
        lc.clone(),
        futures::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    kill_self("INT");
    assert_eq!(main.await.unwrap(), Outcome::GraceExceeded);
    assert!(start.elapsed() < Duration::from_secs(5));

    // 3. A second signal during a long drain quits at once.
    let lc = Lifecycle::new();
    let main = tokio::spawn(run_main(
        "t",
        Duration::from_secs(600),
        lc.clone(),
        futures::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    kill_self("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lc.is_shutting_down(), "first signal started the drain");
    kill_self("TERM");
    let outcome = tokio::time::timeout(Duration::from_secs(5), main)
        .await
        .expect("quit at once")
        .unwrap();
    assert_eq!(outcome, Outcome::Forced);
}
