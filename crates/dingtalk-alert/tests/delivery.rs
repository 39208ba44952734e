//! Delivery behaviour against the strict DingTalk stand-in, in process and under paused
//! Tokio time (minutes of rate limiting and bans pass instantly and exactly).

mod support;

use std::{sync::Arc, time::Duration};

use axum::body::Body;
use dingtalk_alert::{alert, api, gateway::Gateway, metrics::Metrics, transport::TokioClock};
use http_body_util::BodyExt;
use prometheus::Registry;
use serde_json::{json, Value};
use support::{payload, RobotCfg, Script, StandIn};
use tokio::time::Instant;
use tower::ServiceExt;

const NOW_MS: i64 = 1_764_000_000_000;

struct Rig {
    g: Arc<Gateway>,
    s: StandIn,
    registry: Registry,
}

impl Rig {
    fn new(yaml: &str) -> Self {
        Self::with_clocks(yaml, NOW_MS, NOW_MS)
    }

    fn with_clocks(yaml: &str, gateway_ms: i64, dingtalk_ms: i64) -> Self {
        let s = StandIn::new(Arc::new(TokioClock::new(dingtalk_ms)));
        let registry = Registry::new();
        let metrics = Metrics::register("dingtalk_alert", &registry);
        let g = Gateway::start(
            support::compiled(yaml),
            Arc::new(s.clone()),
            Arc::new(TokioClock::new(gateway_ms)),
            metrics,
        );
        Rig { g, s, registry }
    }

    fn send(&self, target: &str, p: Value) {
        let n = alert::parse(p.to_string().as_bytes()).unwrap();
        self.g.enqueue(target, n).unwrap();
    }

    fn metric(&self, series: &str) -> f64 {
        common::testkit::metric(&common::telemetry::encode(&self.registry), series).unwrap_or(0.0)
    }

    /// Lets (paused) time run until nothing is pending, at most `limit`.
    async fn settle(&self, limit: Duration) {
        let start = Instant::now();
        while self.g.pending() > 0 {
            assert!(
                start.elapsed() < limit,
                "still {} alerts pending after {limit:?}",
                self.g.pending()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn texts(&self) -> String {
        self.s
            .accepted()
            .iter()
            .map(|a| a.text())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const SIGNED: &str = "targets: {ops: {access_token: tok-ops, secret: SECops}}";

fn signed_robot() -> RobotCfg {
    RobotCfg {
        secret: Some("SECops".into()),
        keyword: None,
    }
}

#[tokio::test(start_paused = true)]
async fn burst_of_200_alerts_in_10_seconds_stays_under_20_per_minute_and_loses_nothing() {
    let rig = Rig::new(SIGNED);
    rig.s.robot("tok-ops", signed_robot());
    let start = Instant::now();
    // 40 notifications of 5 alerts, one every 250 ms: 200 alerts in 10 s.
    for i in 0..40 {
        rig.send("ops", payload(&format!("burst{i:02}"), 5, "firing"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(start.elapsed() <= Duration::from_secs(10));
    rig.settle(Duration::from_secs(15 * 60)).await;

    assert_eq!(rig.s.violations(), 0, "DingTalk's limit was exceeded");
    let max = rig.s.max_per_minute("tok-ops");
    assert!(max <= 20, "{max} requests in one minute");
    let accepted = rig.s.accepted();
    assert_eq!(
        accepted.len(),
        rig.s.log().len(),
        "every request was accepted"
    );
    let texts = rig.texts();
    for i in 0..40 {
        for j in 0..5 {
            let name = format!("burst{i:02}-{j:03}");
            assert!(texts.contains(&name), "{name} never reached DingTalk");
        }
    }
    // Queued alerts were merged: far fewer messages than notifications.
    assert!(accepted.len() < 40, "{} messages", accepted.len());
    assert!(accepted.iter().all(|a| a.bytes <= 20_000));
    assert_eq!(
        rig.metric(r#"dingtalk_alert_alerts_delivered_total{target="ops"}"#),
        200.0
    );
    assert_eq!(
        rig.metric(r#"dingtalk_alert_queue_alerts{target="ops"}"#),
        0.0
    );
    assert!(rig.metric(r#"dingtalk_alert_rate_limit_waits_total{target="ops"}"#) >= 1.0);
    assert!(rig.metric(r#"dingtalk_alert_messages_merged_total{target="ops"}"#) >= 1.0);
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_and_then_deliver() {
    let rig = Rig::new(
        "targets: {ops: {access_token: tok-ops, secret: SECops}}\n\
         delivery: {timeout: 5s, backoff_base: 1s, backoff_max: 4s, max_attempts: 5}",
    );
    rig.s.robot("tok-ops", signed_robot());
    rig.s.script([
        Script::Answer(502, "<html>Bad Gateway</html>".into()),
        Script::Answer(200, r#"{"errcode":-1,"errmsg":"系统繁忙"}"#.into()),
        Script::Hang(Duration::from_secs(30)),
    ]);
    let start = Instant::now();
    rig.send("ops", payload("retry", 2, "firing"));
    rig.settle(Duration::from_secs(120)).await;
    assert_eq!(rig.s.accepted().len(), 1);
    assert!(rig.texts().contains("retry-001"));
    for reason in ["http_5xx", "busy", "timeout"] {
        assert_eq!(
            rig.metric(&format!(
                r#"dingtalk_alert_retries_total{{reason="{reason}",target="ops"}}"#
            )),
            1.0,
            "{reason}"
        );
    }
    // Backoff 0.5–1 s, 1–2 s, 2–4 s, plus the 5 s timeout.
    let took = rig.s.accepted()[0].at - start;
    assert!(
        took >= Duration::from_millis(8_500) && took <= Duration::from_secs(12),
        "{took:?}"
    );
    assert_eq!(
        rig.metric(r#"dingtalk_alert_alerts_delivered_total{target="ops"}"#),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_are_counted_and_logged_not_silent() {
    let rig = Rig::new(
        "targets: {ops: {access_token: tok-ops}}\n\
         delivery: {backoff_base: 1s, backoff_max: 2s, max_attempts: 3}",
    );
    rig.s.robot("tok-ops", RobotCfg::default());
    rig.s
        .script((0..3).map(|_| Script::Answer(503, "unavailable".into())));
    rig.send("ops", payload("doomed", 3, "firing"));
    rig.settle(Duration::from_secs(60)).await;
    assert!(rig.s.accepted().is_empty());
    assert_eq!(
        rig.metric(r#"dingtalk_alert_alerts_failed_total{reason="http_5xx",target="ops"}"#),
        3.0
    );
    assert_eq!(
        rig.metric(r#"dingtalk_alert_messages_failed_total{reason="http_5xx",target="ops"}"#),
        3.0
    );
}

#[tokio::test(start_paused = true)]
async fn robot_banned_by_someone_else_is_waited_out_without_loss() {
    let rig = Rig::new(SIGNED);
    rig.s.robot("tok-ops", signed_robot());
    // Another sender overruns the robot: DingTalk bans it for 10 minutes.
    for _ in 0..21 {
        rig.s.handle("access_token=tok-ops", b"{}");
    }
    assert_eq!(rig.s.violations(), 1);
    let start = Instant::now();
    rig.send("ops", payload("banned", 3, "firing"));
    rig.settle(Duration::from_secs(20 * 60)).await;
    let accepted = rig.s.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(
        accepted[0].at - start >= support::BAN,
        "sent during the ban"
    );
    assert!(rig.texts().contains("banned-002"));
    assert!(rig.metric(r#"dingtalk_alert_retries_total{reason="too_fast",target="ops"}"#) >= 9.0);
    // Our own requests never overran the robot a second time.
    assert_eq!(rig.s.violations(), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_retrying_cannot_fix_are_not_retried_and_are_told_apart() {
    let rig = Rig::new(
        r#"
targets:
  badsign: {access_token: tok-a, secret: SECwrong}
  nokeyword: {access_token: tok-b}
  badtoken: {access_token: tok-unknown}
  skewed: {access_token: tok-c, secret: SECc}
"#,
    );
    rig.s.robot(
        "tok-a",
        RobotCfg {
            secret: Some("SECright".into()),
            keyword: None,
        },
    );
    rig.s.robot(
        "tok-b",
        RobotCfg {
            secret: None,
            keyword: Some("值班".into()),
        },
    );
    rig.send("badsign", payload("a", 1, "firing"));
    rig.send("nokeyword", payload("b", 1, "firing"));
    rig.send("badtoken", payload("c", 1, "firing"));
    rig.settle(Duration::from_secs(60)).await;
    assert!(rig.s.accepted().is_empty());
    assert_eq!(rig.s.log().len(), 3, "one request each, no retries");
    for (target, reason) in [
        ("badsign", "sign"),
        ("nokeyword", "keyword"),
        ("badtoken", "bad_token"),
    ] {
        assert_eq!(
            rig.metric(&format!(
                r#"dingtalk_alert_alerts_failed_total{{reason="{reason}",target="{target}"}}"#
            )),
            1.0,
            "{target}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn signature_older_than_an_hour_is_rejected_by_dingtalk() {
    // Our clock is 2 hours behind DingTalk's.
    let rig = Rig::with_clocks(SIGNED, NOW_MS - 7_200_000, NOW_MS);
    rig.s.robot("tok-ops", signed_robot());
    rig.send("ops", payload("skew", 1, "firing"));
    rig.settle(Duration::from_secs(60)).await;
    assert!(rig.s.accepted().is_empty());
    assert_eq!(
        rig.metric(r#"dingtalk_alert_alerts_failed_total{reason="sign",target="ops"}"#),
        1.0
    );
    // 59 minutes behind is still inside DingTalk's window.
    let rig = Rig::with_clocks(SIGNED, NOW_MS - 59 * 60_000, NOW_MS);
    rig.s.robot("tok-ops", signed_robot());
    rig.send("ops", payload("skew", 1, "firing"));
    rig.settle(Duration::from_secs(60)).await;
    assert_eq!(rig.s.accepted().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn keyword_robots_get_the_keyword_and_mentions_really_notify() {
    let rig = Rig::new(
        r#"
targets:
  kw:
    access_token: tok-k
    keyword: 值班
    message_type: text
    mentions: {mobiles: ["13800000000"], user_ids: ["manager01"]}
"#,
    );
    rig.s.robot(
        "tok-k",
        RobotCfg {
            secret: None,
            keyword: Some("值班".into()),
        },
    );
    rig.send("kw", payload("kw", 1, "firing"));
    rig.settle(Duration::from_secs(60)).await;
    let acc = rig.s.accepted();
    assert_eq!(acc.len(), 1);
    assert_eq!(acc[0].notified, ["13800000000"]);
    assert_eq!(acc[0].body["at"]["atUserIds"], json!(["manager01"]));
    assert_eq!(acc[0].body["msgtype"], "text");
}

#[tokio::test(start_paused = true)]
async fn oversized_alert_is_truncated_under_the_cap_and_delivered() {
    let rig = Rig::new("targets: {ops: {access_token: tok-ops, message_type: actionCard}}");
    rig.s.robot("tok-ops", RobotCfg::default());
    let mut p = payload("huge", 1, "firing");
    p["alerts"][0]["annotations"]["description"] = json!("堆栈 stack frame\n".repeat(3_000));
    rig.send("ops", p);
    rig.settle(Duration::from_secs(60)).await;
    let acc = rig.s.accepted();
    assert_eq!(
        acc.len(),
        1,
        "DingTalk accepted it (it rejects > 20000 bytes)"
    );
    assert!(
        acc[0].bytes <= 20_000 && acc[0].bytes > 18_000,
        "{}",
        acc[0].bytes
    );
    assert!(acc[0].text().contains("huge-000"));
    assert!(acc[0].text().contains("bytes of this message were cut"));
    assert_eq!(
        acc[0].body["actionCard"]["singleURL"],
        "http://am.example:9093"
    );
    assert_eq!(
        rig.metric(r#"dingtalk_alert_messages_truncated_total{target="ops"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_notifications_while_queued_are_deduplicated_and_firing_then_resolved_both_arrive()
{
    let rig =
        Rig::new("targets: {ops: {access_token: tok-ops}}\ndelivery: {messages_per_minute: 1}");
    rig.s.robot("tok-ops", RobotCfg::default());
    rig.send("ops", payload("first", 1, "firing"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // While the robot's one slot per minute is used, the same group repeats and resolves.
    rig.send("ops", payload("dup", 2, "firing"));
    rig.send("ops", payload("dup", 2, "firing"));
    rig.send("ops", payload("dup", 2, "resolved"));
    rig.settle(Duration::from_secs(300)).await;
    let acc = rig.s.accepted();
    assert_eq!(acc.len(), 2, "second message merges everything queued");
    let second = acc[1].text();
    assert_eq!(
        second.matches("**dup-001**").count(),
        2,
        "firing and resolved once each:\n{second}"
    );
    assert!(second.contains("[FIRING:2, RESOLVED:2]"), "{second}");
    assert_eq!(
        rig.metric(r#"dingtalk_alert_alerts_deduplicated_total{target="ops"}"#),
        2.0
    );
}

async fn call(app: &axum::Router, uri: &str, body: String) -> (u16, Value) {
    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::post(uri)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(start_paused = true)]
async fn api_answers_what_alertmanager_needs() {
    let rig = Rig::new(
        r#"
targets:
  ops: {access_token: tok-ops}
  db: {access_token: tok-db}
routes:
  - {match: {team: db}, targets: [db], continue: true}
  - {match_re: {severity: "crit.*"}, targets: [ops]}
delivery: {max_queued_alerts: 50, messages_per_minute: 1}
"#,
    );
    rig.s.robot("tok-ops", RobotCfg::default());
    rig.s.robot("tok-db", RobotCfg::default());
    let app = api::router(rig.g.clone());

    let (code, body) = call(
        &app,
        "/dingtalk/ops/send",
        payload("x", 2, "firing").to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["alerts"]["ops"], 2);

    let (code, body) = call(
        &app,
        "/dingtalk/nope/send",
        payload("x", 1, "firing").to_string(),
    )
    .await;
    assert_eq!(code, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown target `nope`"),
        "{body}"
    );

    let (code, body) = call(&app, "/dingtalk/ops/send", "{\"alerts\": 1}".into()).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("column"), "{body}");

    // Routing by labels.
    let mut p = payload("routed", 2, "firing");
    p["alerts"][0]["labels"]["team"] = json!("db");
    p["alerts"][1]["labels"]["severity"] = json!("warning");
    p["alerts"][1]["labels"]["team"] = json!("web");
    let (code, body) = call(&app, "/dingtalk/send", p.to_string()).await;
    assert_eq!(code, 422, "alert 1 has no route and no fallback: {body}");
    p["alerts"][1]["labels"]["severity"] = json!("critical");
    let (code, body) = call(&app, "/dingtalk/send", p.to_string()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["alerts"], json!({"db": 1, "ops": 2}));

    // Full queue: 503 so Alertmanager retries; nothing half-accepted.
    let (code, _) = call(
        &app,
        "/dingtalk/ops/send",
        payload("fill", 60, "firing").to_string(),
    )
    .await;
    assert_eq!(code, 503);
    assert_eq!(
        rig.metric(r#"dingtalk_alert_alerts_rejected_total{reason="queue_full",target="ops"}"#),
        60.0
    );

    // Preview renders without sending.
    let before = rig.s.log().len();
    let (code, body) = call(
        &app,
        "/dingtalk/ops/preview",
        payload("pv", 120, "firing").to_string(),
    )
    .await;
    assert_eq!(code, 200);
    let msgs = body["messages"].as_array().unwrap();
    assert!(msgs.len() >= 2, "120 alerts need several messages");
    assert_eq!(
        msgs.iter()
            .map(|m| m["alerts"].as_u64().unwrap())
            .sum::<u64>(),
        120
    );
    assert!(msgs.iter().all(|m| m["bytes"].as_u64().unwrap() <= 20_000));
    assert_eq!(msgs[0]["body"]["msgtype"], "markdown");
    assert_eq!(rig.s.log().len(), before);

    rig.settle(Duration::from_secs(600)).await;
    let texts = rig.texts();
    assert!(
        texts.contains("routed-000") && texts.contains("routed-001") && texts.contains("x-001")
    );
}

/// Model test: random arrival schedules and random DingTalk failures, same invariants every
/// time: every alert arrives, DingTalk's rate limit is never exceeded, no body is too big.
#[tokio::test(start_paused = true)]
async fn random_schedules_and_failures_never_lose_alerts_or_exceed_the_limit() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    for seed in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let rig = Rig::new(
            "targets: {ops: {access_token: tok-ops, secret: SECops}}\n\
             delivery: {timeout: 2s, max_attempts: 50, backoff_max: 10s, too_fast_attempts: 50}",
        );
        rig.s.robot("tok-ops", signed_robot());
        let mut names = Vec::new();
        for k in 0..rng.gen_range(5..40) {
            let n = rng.gen_range(1..30);
            let prefix = format!("s{seed}n{k}");
            // Sometimes DingTalk misbehaves before the next request.
            match rng.gen_range(0..10) {
                0 => rig.s.script([Script::Answer(500, "oops".into())]),
                1 => rig.s.script([Script::Hang(Duration::from_secs(5))]),
                2 => rig.s.script([Script::Answer(
                    200,
                    r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#
                        .into(),
                )]),
                _ => {}
            }
            rig.send("ops", payload(&prefix, n, "firing"));
            if rng.gen_bool(0.2) {
                // Alertmanager repeating the same notification.
                rig.send("ops", payload(&prefix, n, "firing"));
            }
            names.extend((0..n).map(|i| format!("{prefix}-{i:03}")));
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20_000))).await;
        }
        rig.settle(Duration::from_secs(3 * 3600)).await;
        assert_eq!(rig.s.violations(), 0, "seed {seed}");
        assert!(rig.s.max_per_minute("tok-ops") <= 20, "seed {seed}");
        assert!(
            rig.s.accepted().iter().all(|a| a.bytes <= 20_000),
            "seed {seed}"
        );
        let texts = rig.texts();
        for name in &names {
            assert!(
                texts.contains(&format!("**{name}**")),
                "seed {seed}: {name} lost"
            );
        }
        assert_eq!(
            rig.metric(r#"dingtalk_alert_alerts_delivered_total{target="ops"}"#) as usize
                + rig.metric(r#"dingtalk_alert_alerts_deduplicated_total{target="ops"}"#) as usize,
            rig.metric(r#"dingtalk_alert_alerts_received_total{target="ops"}"#) as usize,
            "seed {seed}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn too_long_answer_makes_the_gateway_resend_smaller() {
    let rig = Rig::new("targets: {ops: {access_token: tok-ops}}");
    rig.s.robot("tok-ops", RobotCfg::default());
    // DingTalk (say, counting bytes differently) refuses the first, full-size body.
    rig.s.script([Script::Answer(
        200,
        r#"{"errcode":460101,"errmsg":"message too long, exceed 20000 bytes"}"#.into(),
    )]);
    rig.send("ops", payload("long", 120, "firing"));
    rig.settle(Duration::from_secs(600)).await;
    let acc = rig.s.accepted();
    assert!(
        acc.iter().all(|a| a.bytes <= 15_000),
        "resent under 3/4 of the first body"
    );
    let texts = rig.texts();
    for i in 0..120 {
        assert!(
            texts.contains(&format!("**long-{i:03}**")),
            "long-{i:03} lost"
        );
    }
    assert_eq!(
        rig.metric(r#"dingtalk_alert_retries_total{reason="too_long",target="ops"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn targets_sharing_a_robot_share_its_limit() {
    let rig = Rig::new(
        "targets: {a: {access_token: tok-shared, mentions: {mobiles: ['1']}}, b: {access_token: tok-shared}}",
    );
    rig.s.robot("tok-shared", RobotCfg::default());
    for i in 0..30 {
        rig.send("a", payload(&format!("a{i}"), 1, "firing"));
        rig.send("b", payload(&format!("b{i}"), 1, "firing"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    rig.settle(Duration::from_secs(600)).await;
    assert_eq!(rig.s.violations(), 0);
    assert!(rig.s.max_per_minute("tok-shared") <= 20);
    let texts = rig.texts();
    for i in 0..30 {
        assert!(
            texts.contains(&format!("**a{i}-000**")) && texts.contains(&format!("**b{i}-000**"))
        );
    }
}
