//! Alerts from our rule engine delivered to a real Alertmanager (Debian
//! `prometheus-alertmanager`, skipped with a message when absent) and to a webhook.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promql_engine::labels::Labels;
use promql_engine::rules::file::parse_rules;
use promql_engine::rules::manager::EvalSettings;
use promql_engine::rules::notifier::{Notifier, NotifierConfig};
use promql_engine::rules::runtime::RuleEngine;
use promql_engine::MemStorage;

const AM: &str = "/usr/bin/prometheus-alertmanager";

const RULES: &str = r#"
groups:
  - name: flink
    rules:
      - alert: TaskManagerDown
        expr: up{job="taskmanager"} == 0
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.instance }} is down in {{ $externalLabels.cluster }}'
"#;

fn engine(cfg: NotifierConfig) -> (Arc<RuleEngine>, Arc<Notifier>) {
    let notifier = Notifier::new(cfg);
    let settings = EvalSettings {
        external_labels: BTreeMap::from([("cluster".to_string(), "prod-a".to_string())]),
        ..EvalSettings::default()
    };
    let eng = RuleEngine::new(Arc::new(MemStorage::new()), settings, notifier.clone());
    eng.set_groups(parse_rules("rules.yml", RULES).unwrap());
    (eng, notifier)
}

fn up(v: f64) -> (Labels, f64) {
    (
        Labels::new([
            ("__name__", "up"),
            ("job", "taskmanager"),
            ("instance", "tm-1"),
        ]),
        v,
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_real_alertmanager_and_resolve_there() {
    if !Path::new(AM).exists() {
        eprintln!("SKIP alerts_reach_a_real_alertmanager_and_resolve_there: {AM} is not installed");
        return;
    }
    let dir = common::testkit::tempfile_dir();
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: 'null'\n  group_wait: 1s\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let storage = format!("--storage.path={}", dir.join("data").display());
    let cfg = format!("--config.file={}", dir.join("am.yml").display());
    let am = tokio::task::spawn_blocking(move || {
        common::testkit::Proc::start(AM, &[&cfg, &storage, "--cluster.listen-address="])
    })
    .await
    .unwrap();
    let base = format!("http://{}", am.addr);
    let (eng, notifier) = engine(NotifierConfig {
        alertmanagers: vec![base.clone()],
        external_labels: BTreeMap::from([("cluster".to_string(), "prod-a".to_string())]),
        ..NotifierConfig::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(notifier.clone().run(async {
        let _ = stop_rx.await;
    }));
    let t0 = now_ms();
    let (l, v) = up(0.0);
    eng.storage().append(&l, t0 - 1000, v);
    eng.eval_at(t0);
    let client = reqwest::Client::new();
    let mut found = None;
    for _ in 0..100 {
        let alerts: serde_json::Value = client
            .get(format!("{base}/api/v2/alerts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(a) = alerts.as_array().and_then(|a| a.first()) {
            found = Some(a.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = found.expect("alert never appeared in Alertmanager");
    assert_eq!(a["labels"]["alertname"], "TaskManagerDown");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["instance"], "tm-1");
    assert_eq!(
        a["labels"]["cluster"], "prod-a",
        "external labels are added"
    );
    assert_eq!(a["annotations"]["summary"], "tm-1 is down in prod-a");
    let starts = chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).unwrap();
    assert_eq!(starts.timestamp_millis(), t0);
    let ends = chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        ends.timestamp_millis(),
        t0 + 4 * 60_000,
        "endsAt = 4 x resend delay, as Prometheus sets it"
    );

    // The series recovers: the resolved alert is sent and disappears from the active list.
    let t1 = now_ms();
    eng.storage().append(&l, t1 - 10, 1.0);
    eng.eval_at(t1);
    let mut gone = false;
    for _ in 0..100 {
        let alerts: serde_json::Value = client
            .get(format!("{base}/api/v2/alerts?active=true"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if alerts.as_array().is_some_and(|a| a.is_empty()) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "alert did not resolve in Alertmanager");
    // Alertmanager applies an alert before it answers; the notifier counts it after.
    for _ in 0..100 {
        if notifier.stats.sent.load(Ordering::Relaxed) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(notifier.stats.sent.load(Ordering::Relaxed) >= 2);
    let _ = stop_tx.send(());
    runner.await.unwrap();
}

#[derive(Clone, Default)]
struct Hook {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    fail_first: Arc<Mutex<u32>>,
}

async fn hook_handler(
    axum::extract::State(h): axum::extract::State<Hook>,
    body: axum::Json<serde_json::Value>,
) -> axum::http::StatusCode {
    {
        let mut f = h.fail_first.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    h.bodies.lock().unwrap().push(body.0);
    axum::http::StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_alertmanager_payload_v4_after_retries() {
    let hook = Hook {
        fail_first: Arc::new(Mutex::new(2)),
        ..Hook::default()
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook_handler))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (eng, notifier) = engine(NotifierConfig {
        webhook: Some(format!("http://{addr}/hook")),
        initial_backoff: Duration::from_millis(20),
        ..NotifierConfig::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(notifier.clone().run(async {
        let _ = stop_rx.await;
    }));
    let t0 = now_ms();
    let (l, v) = up(0.0);
    eng.storage().append(&l, t0 - 1000, v);
    eng.eval_at(t0);
    for _ in 0..100 {
        if !hook.bodies.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = hook
        .bodies
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("webhook never received the alert");
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["groupLabels"]["alertname"], "TaskManagerDown");
    assert_eq!(body["alerts"][0]["labels"]["instance"], "tm-1");
    assert_eq!(
        body["alerts"][0]["annotations"]["summary"],
        "tm-1 is down in prod-a"
    );
    assert_eq!(
        notifier.stats.errors.load(Ordering::Relaxed),
        2,
        "two 503s were retried"
    );
    assert_eq!(notifier.stats.failed.load(Ordering::Relaxed), 0);
    let _ = stop_tx.send(());
    runner.await.unwrap();
}

#[tokio::test]
async fn unreachable_receiver_gives_up_and_counts() {
    let port = common::testkit::free_port();
    let (eng, notifier) = engine(NotifierConfig {
        webhook: Some(format!("http://127.0.0.1:{port}/hook")),
        initial_backoff: Duration::from_millis(5),
        max_attempts: 3,
        ..NotifierConfig::default()
    });
    let t0 = now_ms();
    let (l, v) = up(0.0);
    eng.storage().append(&l, t0 - 1000, v);
    eng.eval_at(t0);
    // Shutdown immediately: run() flushes the queue once before returning.
    notifier.clone().run(async {}).await;
    assert_eq!(notifier.stats.failed.load(Ordering::Relaxed), 1);
    assert_eq!(notifier.stats.errors.load(Ordering::Relaxed), 3);
}
