//! A real Alertmanager (Debian's `prometheus-alertmanager`) notifying the real gateway, which
//! delivers to the strict DingTalk stand-in: every alert arrives firing and then resolved,
//! none is lost, the robot's rate limit is never exceeded.

mod support;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::testkit::{self, http};
use dingtalk_alert::transport::SystemClock;
use serde_json::json;
use support::{RobotCfg, StandIn};

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-alert");
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POSTs JSON with a content type (Alertmanager's API insists on one).
fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, raw)
}

fn rfc3339(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn alertmanager_alerts_fire_and_resolve_through_the_gateway_without_loss() {
    if !Path::new(ALERTMANAGER).exists() {
        eprintln!("SKIP alertmanager test: {ALERTMANAGER} is absent (apt-get install prometheus-alertmanager)");
        return;
    }
    let s = StandIn::new(Arc::new(SystemClock));
    let base = s.serve_in_background();
    let (token, secret) = ("tok-am-e2e", "SECam-e2e");
    s.robot(
        token,
        RobotCfg {
            secret: Some(secret.into()),
            keyword: Some("Alert".into()),
        },
    );

    // The gateway, with a keyword robot and signing.
    let dir = testkit::tempfile_dir();
    let gw_cfg = dir.join("dingtalk.yml");
    std::fs::write(
        &gw_cfg,
        format!(
            "targets:\n  oncall:\n    access_token: {token}\n    secret: {secret}\n    keyword: Alert\n    url: {base}\n"
        ),
    )
    .unwrap();
    let gw_port = testkit::free_port();
    let gw_addr: SocketAddr = ([127, 0, 0, 1], gw_port).into();
    let _gw = Killed(
        Command::new(BIN)
            .args(["--web.listen-address", &gw_addr.to_string()])
            .args(["--config.file", gw_cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait("gateway healthy", Duration::from_secs(20), || {
        matches!(http(gw_addr, "GET", "/-/healthy", ""), Ok((200, _)))
    });

    // Alertmanager routing by alertname to the gateway, resolved notifications on.
    let am_cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &am_cfg,
        format!(
            r#"route:
  receiver: dingtalk
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: dingtalk
    webhook_configs:
      - url: http://{gw_addr}/dingtalk/oncall/send
        send_resolved: true
"#
        ),
    )
    .unwrap();
    let am_port = testkit::free_port();
    let am_addr: SocketAddr = ([127, 0, 0, 1], am_port).into();
    let _am = Killed(
        Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", am_cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait("alertmanager ready", Duration::from_secs(30), || {
        matches!(http(am_addr, "GET", "/-/ready", ""), Ok((200, _)))
    });

    // 8 groups of 5 alerts.
    let alerts = |ends_at: &str| {
        let list: Vec<_> = (0..8)
            .flat_map(|g| (0..5).map(move |i| (g, i)))
            .map(|(g, i)| {
                json!({
                    "labels": {"alertname": format!("AmGroup{g}"), "instance": format!("inst-{g}-{i}"), "severity": "critical"},
                    "annotations": {"summary": format!("summary {g}-{i}")},
                    "startsAt": rfc3339(-60),
                    "endsAt": ends_at,
                    "generatorURL": "http://prometheus.test:9090/graph",
                })
            })
            .collect();
        serde_json::Value::Array(list).to_string()
    };
    let (code, body) = post_json(am_addr, "/api/v2/alerts", &alerts(&rfc3339(3600)));
    assert_eq!(code, 200, "{body}");

    let all_in = |resolved: bool| {
        let texts: Vec<String> = s.accepted().iter().map(|a| a.text()).collect();
        (0..8).all(|g| {
            (0..5).all(|i| {
                let needle = format!("`instance=inst-{g}-{i}`");
                texts.iter().any(|t| {
                    let (firing, resolved_part) =
                        t.split_once("✅ Resolved").unwrap_or((t.as_str(), ""));
                    if resolved {
                        resolved_part.contains(&needle)
                    } else {
                        firing.contains(&needle)
                    }
                })
            })
        })
    };
    wait(
        "all 40 alerts firing at DingTalk",
        Duration::from_secs(120),
        || all_in(false),
    );
    // Resolve them all.
    let (code, body) = post_json(am_addr, "/api/v2/alerts", &alerts(&rfc3339(-1)));
    assert_eq!(code, 200, "{body}");
    wait(
        "all 40 alerts resolved at DingTalk",
        Duration::from_secs(120),
        || all_in(true),
    );

    assert_eq!(s.violations(), 0);
    assert!(s.max_per_minute(token) <= 20);
    let log = s.log();
    assert!(
        log.iter().all(|(_, _, code)| *code == 0),
        "DingTalk rejected a request: {log:?}"
    );
    let metrics = http(gw_addr, "GET", "/metrics", "").unwrap().1;
    for line in metrics.lines() {
        if line.starts_with("dingtalk_alert_alerts_failed_total")
            || line.starts_with("dingtalk_alert_alerts_rejected_total")
        {
            panic!("alerts lost: {line}");
        }
    }
    assert!(
        testkit::metric(
            &metrics,
            r#"dingtalk_alert_alerts_delivered_total{target="oncall"}"#
        )
        .unwrap()
            >= 80.0
    );
    let _ = std::fs::remove_dir_all(dir);
}
