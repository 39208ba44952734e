//! The real `dingtalk-alert` process against the DingTalk stand-in on loopback: the flag
//! interface, signed delivery, secrets kept out of logs/metrics/config, the outbound timeout.

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::testkit;
use support::{payload, standin, Gw, RobotCfg, Script};

fn sample_body() -> String {
    // The body a real Alertmanager 0.25 sent, when the reference copy is around.
    if let Some(shared) = testkit::shared_dir("process::sample_body") {
        let text =
            std::fs::read_to_string(shared.join("samples/alertmanager/am-webhook-sample.json"))
                .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        return v["body"].to_string();
    }
    payload("HighCPU", 2, "firing").to_string()
}

#[test]
fn flag_target_delivers_signed_messages_and_never_shows_its_secrets() {
    let (s, base) = standin();
    let token = "tok-FLAG-0123456789";
    let secret = "SECflag-abcdefghijklmnop";
    s.robot(
        token,
        RobotCfg {
            secret: Some(secret.into()),
            keyword: None,
        },
    );
    // One failure first, so the failure path logs too.
    s.script([Script::Answer(502, "bad gateway".into())]);
    let gw = Gw::start(
        &[
            "--dingtalk.access-token",
            token,
            "--dingtalk.secret",
            secret,
            "--dingtalk.url",
            &base,
            "--log.level",
            "debug",
        ],
        &[],
    );
    let (code, body) = gw.post("/dingtalk/default/send", &sample_body());
    assert_eq!(code, 200, "{body}");
    testkit::wait_for(|| !s.accepted().is_empty(), "message at DingTalk");
    let acc = &s.accepted()[0];
    assert_eq!(acc.body["msgtype"], "markdown");
    assert!(acc.text().contains("HighCPU"), "{}", acc.text());
    assert_eq!(
        gw.metric(r#"dingtalk_alert_messages_sent_total{target="default"}"#),
        1.0
    );
    assert_eq!(
        gw.metric(r#"dingtalk_alert_retries_total{reason="http_5xx",target="default"}"#),
        1.0
    );

    // A second gateway whose DingTalk is unreachable: errors are logged, URL-free.
    let closed = format!("http://127.0.0.1:{}", testkit::free_port());
    let gw2 = Gw::start(
        &["--dingtalk.url", &closed],
        &[
            ("DINGTALK_ACCESS_TOKEN", token),
            ("DINGTALK_SECRET", secret),
        ],
    );
    assert_eq!(gw2.post("/dingtalk/default/send", &sample_body()).0, 200);
    testkit::wait_for(
        || gw2.metric(r#"dingtalk_alert_retries_total{reason="network",target="default"}"#) >= 1.0,
        "network failure counted",
    );

    for g in [&gw, &gw2] {
        let exposed = [
            g.get("/metrics"),
            g.get("/-/config"),
            g.get("/api/v1/targets"),
            g.logs(),
        ];
        for text in exposed {
            assert!(!text.contains(token), "token leaked:\n{text}");
            assert!(!text.contains(secret), "secret leaked:\n{text}");
        }
    }
    let logs = gw2.logs();
    assert!(
        logs.contains("will retry") && logs.contains("network"),
        "{logs}"
    );
    assert!(gw.logs().contains("http_5xx"), "{}", gw.logs());
    assert!(gw.get("/-/config").contains("<secret>"));
}

#[test]
fn outbound_timeout_is_really_applied() {
    let (s, base) = standin();
    s.robot("tok-slow", RobotCfg::default());
    s.script([
        Script::Hang(Duration::from_secs(20)),
        Script::Hang(Duration::from_secs(20)),
    ]);
    let dir = testkit::tempfile_dir();
    let cfg = dir.join("dingtalk.yml");
    std::fs::write(
        &cfg,
        "delivery: {timeout: 300ms, max_attempts: 2, backoff_base: 100ms, backoff_max: 200ms}\n",
    )
    .unwrap();
    let tok = dir.join("token");
    std::fs::write(&tok, "tok-slow\n").unwrap();
    let gw = Gw::start(
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--dingtalk.access-token-file",
            tok.to_str().unwrap(),
            "--dingtalk.url",
            &base,
        ],
        &[],
    );
    let start = Instant::now();
    assert_eq!(
        gw.post(
            "/dingtalk/default/send",
            &payload("slow", 3, "firing").to_string()
        )
        .0,
        200
    );
    testkit::wait_for(
        || {
            gw.metric(r#"dingtalk_alert_alerts_failed_total{reason="timeout",target="default"}"#)
                == 3.0
        },
        "alerts given up after two timeouts",
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "two 300 ms timeouts took {:?}",
        start.elapsed()
    );
    assert!(s.accepted().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_requests_get_clear_4xx_answers() {
    let (_s, base) = standin();
    let gw = Gw::start(
        &["--dingtalk.access-token", "tok", "--dingtalk.url", &base],
        &[],
    );
    let (code, body) = gw.post("/dingtalk/default/send", "not json");
    assert_eq!(code, 400);
    assert!(
        body.contains("invalid Alertmanager webhook payload"),
        "{body}"
    );
    let (code, body) = gw.post("/dingtalk/other/send", &sample_body());
    assert_eq!(code, 404);
    assert!(body.contains("configured targets: [default]"), "{body}");
}

#[test]
fn reload_adds_targets_and_a_bad_config_keeps_the_running_one() {
    let (s, base) = standin();
    s.robot("tok-a", RobotCfg::default());
    s.robot("tok-b", RobotCfg::default());
    let dir = testkit::tempfile_dir();
    let cfg = dir.join("dingtalk.yml");
    std::fs::write(
        &cfg,
        format!("targets: {{a: {{access_token: tok-a, url: '{base}'}}}}\n"),
    )
    .unwrap();
    let gw = Gw::start(&["--config.file", cfg.to_str().unwrap()], &[]);
    let body = payload("reload", 1, "firing").to_string();
    assert_eq!(gw.post("/dingtalk/b/send", &body).0, 404);

    std::fs::write(
        &cfg,
        format!("targets: {{a: {{access_token: tok-a, url: '{base}'}}, b: {{access_token: tok-b, url: '{base}'}}}}\n"),
    )
    .unwrap();
    assert_eq!(gw.post("/-/reload", "").0, 200);
    assert_eq!(gw.post("/dingtalk/b/send", &body).0, 200);
    testkit::wait_for(
        || s.accepted().iter().any(|a| a.token == "tok-b"),
        "message via the new target",
    );

    // A template that does not compile: reload refused, naming the field; both targets work.
    std::fs::write(
        &cfg,
        format!(
            "targets: {{a: {{access_token: tok-a, url: '{base}', text_template: '{{{{ x'}}}}\n"
        ),
    )
    .unwrap();
    let (code, msg) = gw.post("/-/reload", "");
    assert_eq!(code, 500);
    assert!(msg.contains("targets.a.text_template"), "{msg}");
    assert_eq!(gw.post("/dingtalk/a/send", &body).0, 200);
    assert_eq!(gw.post("/dingtalk/b/send", &body).0, 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_delivers_what_it_can_within_the_grace_period_and_reports_the_rest() {
    let (s, base) = standin();
    s.robot("tok-drain", RobotCfg::default());
    let dir = testkit::tempfile_dir();
    let cfg = dir.join("dingtalk.yml");
    // One message per minute: the second notification must wait longer than the grace.
    std::fs::write(&cfg, "delivery: {messages_per_minute: 1}\n").unwrap();
    let mut gw = Gw::start(
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--dingtalk.access-token",
            "tok-drain",
            "--dingtalk.url",
            &base,
            "--shutdown.grace-period",
            "3s",
        ],
        &[],
    );
    assert_eq!(
        gw.post(
            "/dingtalk/default/send",
            &payload("one", 1, "firing").to_string()
        )
        .0,
        200
    );
    testkit::wait_for(|| s.accepted().len() == 1, "first message");
    assert_eq!(
        gw.post(
            "/dingtalk/default/send",
            &payload("two", 2, "firing").to_string()
        )
        .0,
        200
    );
    let start = Instant::now();
    assert!(Command::new("kill")
        .args(["-s", "TERM", &gw.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(st) = gw.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "no exit within the grace period"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "it tried to deliver first"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("undelivered alerts") && logs.contains("alerts=2"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Every field of the file takes effect on reload (none is restart-only): delivery limits
/// and a rotated token file apply to the next request without a restart.
#[test]
fn a_reload_applies_delivery_limits_and_a_rotated_token_file() {
    let (s, base) = standin();
    s.robot("tok-old", RobotCfg::default());
    s.robot("tok-new", RobotCfg::default());
    let dir = testkit::tempfile_dir();
    let tok = dir.join("token");
    std::fs::write(&tok, "tok-old\n").unwrap();
    let cfg = dir.join("dingtalk.yml");
    let write = |max: usize| {
        std::fs::write(
            &cfg,
            format!(
                "targets: {{a: {{access_token_file: '{}', url: '{base}'}}}}\ndelivery: {{max_alerts_per_request: {max}}}\n",
                tok.display()
            ),
        )
        .unwrap()
    };
    write(10);
    let gw = Gw::start(&["--config.file", cfg.to_str().unwrap()], &[]);
    let five = payload("five", 5, "firing").to_string();
    assert_eq!(gw.post("/dingtalk/a/send", &five).0, 200);
    testkit::wait_for(
        || s.accepted().iter().any(|a| a.token == "tok-old"),
        "delivered with the first token",
    );

    write(4);
    std::fs::write(&tok, "tok-new\n").unwrap();
    assert_eq!(gw.post("/-/reload", "").0, 200);
    let (code, body) = gw.post("/dingtalk/a/send", &five);
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("at most 4"), "{body}");
    assert_eq!(
        gw.post(
            "/dingtalk/a/send",
            &payload("four", 4, "firing").to_string()
        )
        .0,
        200
    );
    testkit::wait_for(
        || s.accepted().iter().any(|a| a.token == "tok-new"),
        "delivered with the rotated token",
    );
    let _ = std::fs::remove_dir_all(dir);
}
