//! Attacks on dingtalk-alert's unauthenticated webhook: each is refused with a clear
//! answer, leaves the queues as they were and the service answering.
//!
//! - Memory: alerts of megabytes each fill a queue bounded by bytes, not only by count.
//! - CPU: a request with very many alerts is refused by count; previews stay linear.
//! - Secrets: a robot token that URL encoding changes never shows, in any spelling.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Body;
use dingtalk_alert::{
    api,
    gateway::Gateway,
    metrics::Metrics,
    transport::{BoxFuture, Reply, SystemClock, Transport, TransportError},
};
use http_body_util::BodyExt;
use prometheus::Registry;
use serde_json::{json, Value};
use support::{payload, standin, Gw, Script};
use tower::ServiceExt;

/// A DingTalk that never answers: whatever is accepted stays queued (or in flight).
struct Silent;

impl Transport for Silent {
    fn post(
        &self,
        _url: String,
        _body: Vec<u8>,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(std::future::pending())
    }
}

struct App {
    g: Arc<Gateway>,
    router: axum::Router,
    registry: Registry,
}

impl App {
    fn new(yaml: &str) -> Self {
        let registry = Registry::new();
        let g = Gateway::start(
            support::compiled(yaml),
            Arc::new(Silent),
            Arc::new(SystemClock),
            Metrics::register("dingtalk_alert", &registry),
        );
        // The service's own body limit (`lib::run`), not axum's 2 MB default.
        let router = api::router(g.clone()).layer(axum::extract::DefaultBodyLimit::max(32 << 20));
        App {
            g,
            router,
            registry,
        }
    }

    async fn post(&self, path: &str, body: String) -> (u16, Value, Option<String>) {
        let resp = self
            .router
            .clone()
            .oneshot(
                axum::http::Request::post(path)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            retry_after,
        )
    }

    fn metric(&self, series: &str) -> f64 {
        common::testkit::metric(&common::telemetry::encode(&self.registry), series).unwrap_or(0.0)
    }
}

/// One alert whose description is `bytes` long.
fn big_alert(name: &str, bytes: usize) -> String {
    let mut p = payload(name, 1, "firing");
    p["alerts"][0]["annotations"]["description"] = json!("x".repeat(bytes));
    p.to_string()
}

#[tokio::test]
async fn megabyte_alerts_fill_a_byte_bounded_queue_then_get_503_and_nothing_changes() {
    // The default bound (16 MiB per target) against alerts of 1.9 MB, as in the report.
    let app = App::new("targets: {ops: {access_token: tok}}");
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..12 {
        let (code, body, retry_after) = app
            .post(
                "/dingtalk/ops/send",
                big_alert(&format!("big{i}"), 1_900_000),
            )
            .await;
        match code {
            200 => accepted += 1,
            503 => {
                refused = Some((body, retry_after));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (body, retry_after) = refused.expect("the queue never filled");
    assert_eq!(accepted, 8, "16 MiB hold eight alerts of 1.9 MB");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("`delivery.max_queued_bytes`")
            && msg.contains("`ops`")
            && msg.contains("retry"),
        "{msg}"
    );
    assert_eq!(retry_after.as_deref(), Some("30"));

    // The state is what it was before the refused request.
    let queued = app.metric(r#"dingtalk_alert_queue_bytes{target="ops"}"#);
    assert!(queued <= (16 << 20) as f64 && queued > 15e6, "{queued}");
    assert_eq!(app.g.pending(), 8);
    assert_eq!(
        app.metric(
            r#"dingtalk_alert_alerts_rejected_total{reason="queue_bytes_full",target="ops"}"#
        ),
        1.0
    );
    // Refused again, still nothing added; the routed endpoint is bounded the same way.
    let again = app
        .post("/dingtalk/ops/send", big_alert("more", 1_900_000))
        .await;
    assert_eq!(again.0, 503);
    assert_eq!(app.g.pending(), 8);
    assert_eq!(
        app.metric(r#"dingtalk_alert_queue_bytes{target="ops"}"#),
        queued
    );
    // Alive: a small alert still fits, the API answers.
    assert_eq!(
        app.post(
            "/dingtalk/ops/send",
            payload("small", 1, "firing").to_string()
        )
        .await
        .0,
        200
    );
    assert_eq!(app.g.pending(), 9);
}

#[tokio::test]
async fn routed_requests_are_bounded_by_bytes_too() {
    let app = App::new(
        "targets: {ops: {access_token: tok}}\nfallback_targets: [ops]\ndelivery: {max_queued_bytes: 100000}",
    );
    assert_eq!(
        app.post("/dingtalk/send", big_alert("a", 60_000)).await.0,
        200
    );
    let (code, body, _) = app.post("/dingtalk/send", big_alert("b", 60_000)).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("over `delivery.max_queued_bytes` (100000)"),
        "{body}"
    );
    assert_eq!(app.g.pending(), 1);
}

#[tokio::test]
async fn too_many_alerts_in_one_request_get_413_naming_the_cap_and_nothing_is_queued() {
    let app = App::new(
        "targets: {ops: {access_token: tok}}\nfallback_targets: [ops]\ndelivery: {max_alerts_per_request: 50}",
    );
    let body = payload("many", 51, "firing").to_string();
    for path in [
        "/dingtalk/ops/send",
        "/dingtalk/send",
        "/dingtalk/ops/preview",
    ] {
        let (code, answer, _) = app.post(path, body.clone()).await;
        assert_eq!(code, 413, "{path}: {answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(
            msg.contains("51 alerts")
                && msg.contains("at most 50")
                && msg.contains("`delivery.max_alerts_per_request`"),
            "{msg}"
        );
    }
    assert_eq!(app.g.pending(), 0);
    assert_eq!(
        app.metric(r#"dingtalk_alert_alerts_received_total{target="ops"}"#),
        0.0
    );
    let ok = payload("fifty", 50, "firing").to_string();
    assert_eq!(app.post("/dingtalk/ops/send", ok).await.0, 200);
    assert_eq!(app.g.pending(), 50);
}

#[tokio::test]
async fn a_preview_of_thousands_of_alerts_is_answered_quickly_and_shows_every_alert() {
    let app = App::new("targets: {ops: {access_token: tok}}");
    let n = 4_000;
    let started = Instant::now();
    let (code, body, _) = app
        .post(
            "/dingtalk/ops/preview",
            payload("p", n, "firing").to_string(),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(code, 200);
    let messages = body["messages"].as_array().unwrap();
    let carried: u64 = messages.iter().map(|m| m["alerts"].as_u64().unwrap()).sum();
    assert_eq!(carried, n as u64);
    assert!(messages
        .iter()
        .all(|m| m["bytes"].as_u64().unwrap() <= 20_000));
    // Quadratic previews took minutes at this size; linear ones take well under that even
    // in a debug build on a busy machine.
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[tokio::test]
async fn a_request_of_duplicates_is_merged_in_linear_time() {
    // Alerts without fingerprints (identity = their labels), sent twice: each copy replaces
    // its queued twin. A linear search per alert made the second request take half a minute
    // of CPU, under the queue's lock, at 10,000 alerts.
    let app = App::new("targets: {ops: {access_token: tok}}\ndelivery: {max_queued_alerts: 20000}");
    let mut p = payload("dup", 10_000, "firing");
    for a in p["alerts"].as_array_mut().unwrap() {
        a["fingerprint"] = json!("");
    }
    let body = p.to_string();
    assert_eq!(app.post("/dingtalk/ops/send", body.clone()).await.0, 200);
    let started = Instant::now();
    assert_eq!(app.post("/dingtalk/ops/send", body).await.0, 200);
    let took = started.elapsed();
    let dedup = app.metric(r#"dingtalk_alert_alerts_deduplicated_total{target="ops"}"#);
    // The worker may hold up to one batch (500) in flight, which a twin cannot replace.
    assert!(dedup >= 9_500.0, "{dedup}");
    assert!(app.g.pending() <= 10_500, "{}", app.g.pending());
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_token_that_url_encoding_changes_never_shows_in_any_spelling() {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const QUERY: &AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'&')
        .add(b'+')
        .add(b'=');
    let token = "tok/é+ &=%x-1";
    let upper = utf8_percent_encode(token, NON_ALPHANUMERIC).to_string();
    let spellings = [
        token.to_string(),
        upper.clone(),
        upper.to_lowercase(),
        utf8_percent_encode(token, QUERY)
            .to_string()
            .replace("%20", "+"),
    ];
    let (s, base) = standin();
    // DingTalk-like answers that echo the request URL back, in every spelling.
    let echo = spellings
        .iter()
        .map(|t| format!("/robot/send?access_token={t}"))
        .collect::<Vec<_>>()
        .join(" ");
    s.script([
        Script::Answer(502, format!("upstream failed for {echo}")),
        Script::Answer(
            200,
            json!({"errcode": 300001, "errmsg": format!("token is not exist: {echo}")}).to_string(),
        ),
    ]);
    let gw = Gw::start(
        &["--dingtalk.url", &base, "--log.level", "debug"],
        &[("DINGTALK_ACCESS_TOKEN", token)],
    );
    assert_eq!(
        gw.post(
            "/dingtalk/default/send",
            &payload("enc", 1, "firing").to_string()
        )
        .0,
        200
    );
    common::testkit::wait_for(
        || {
            gw.metric(r#"dingtalk_alert_alerts_failed_total{reason="bad_token",target="default"}"#)
                == 1.0
        },
        "alert given up after the token error",
    );
    let logs = gw.logs();
    assert!(logs.contains("token is not exist"), "{logs}");
    assert!(logs.contains("<secret>"), "{logs}");
    let exposed = [
        ("/metrics", gw.get("/metrics")),
        ("/-/config", gw.get("/-/config")),
        ("/api/v1/targets", gw.get("/api/v1/targets")),
        ("logs", logs),
    ];
    for (name, text) in exposed {
        for form in &spellings {
            assert!(
                !text.contains(form.as_str()),
                "{name} shows {form}:\n{text}"
            );
        }
    }
}
