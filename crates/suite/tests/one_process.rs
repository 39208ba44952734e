//! `flink-suite` runs all four components in one process on their default ports, reloads
//! all of them on one SIGHUP and drains all of them on SIGTERM.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use common::testkit::{http, metric, wait_for};

const PORTS: [(u16, &str); 4] = [
    (9091, "metrics_gateway"),
    (8060, "dingtalk_alert"),
    (8686, "log_shipper"),
    (8080, "job_manager"),
];

#[test]
fn all_four_components_start_reload_and_drain_together() {
    if PORTS
        .iter()
        .any(|(p, _)| std::net::TcpListener::bind(("0.0.0.0", *p)).is_err())
    {
        eprintln!("SKIP: a default port (9091, 8060, 8686, 8080) is in use on this machine");
        return;
    }
    let dir = common::testkit::tempfile_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flink-suite"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--shutdown.grace-period", "10s"])
        .env("FLINK_HOME", dir.join("no-flink"))
        .env_remove("JOB_MANAGER_BOOTSTRAP_TOKEN")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn flink-suite");
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    for (port, _) in PORTS {
        wait_for(
            || matches!(http(addr(port), "GET", "/-/healthy", ""), Ok((200, _))),
            &format!("port {port} healthy"),
        );
    }
    let ts = |port: u16, prefix: &str| {
        let text = http(addr(port), "GET", "/metrics", "")
            .map(|r| r.1)
            .unwrap_or_default();
        metric(
            &text,
            &format!("{prefix}_config_last_reload_success_timestamp_seconds"),
        )
        .unwrap_or(0.0)
    };
    let before: Vec<f64> = PORTS.iter().map(|(p, n)| ts(*p, n)).collect();
    std::thread::sleep(Duration::from_millis(20));
    let ok = Command::new("kill")
        .args(["-s", "HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    for (i, (port, prefix)) in PORTS.iter().enumerate() {
        wait_for(
            || ts(*port, prefix) > before[i],
            &format!("{prefix} reloaded on SIGHUP"),
        );
    }
    assert!(dir.join("data").is_dir(), "data dir created");

    // The local suite creates an owner token (0600) so the job-manager API is usable.
    let token_file = dir.join("data/job-manager/bootstrap-token");
    let token = std::fs::read_to_string(&token_file).expect("bootstrap token file");
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let list = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(addr(8080)).unwrap();
        use std::io::{Read, Write};
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /api/v1/namespaces/default/deployments HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        list(Some(&token)).starts_with("HTTP/1.1 200"),
        "{}",
        list(Some(&token))
    );
    assert!(list(None).starts_with("HTTP/1.1 401"), "{}", list(None));
    let ok = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let mut status = None;
    for _ in 0..600 {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let status = status.expect("exited within the grace period");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}
