//! The web console in a real browser: `tests/console/journeys.py` drives Debian's Chromium
//! through Playwright against a manager served on 127.0.0.1 (the real store, API router,
//! console and controller; Flink replaced by the in-memory fake, and a small stand-in for
//! Flink's web UI behind the session target so the `/flink/…` proxy has something to
//! reach). Skips with a message when Python's `playwright` or `/usr/bin/chromium` is missing.
//!
//! Also, without a browser: `GET /` is the page and the proxy's role rules.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{Method, Uri},
    routing::any,
    Router,
};
use job_manager::{
    flink::fake::FakeFlink,
    testing::{Harness, TOKEN},
    Config,
};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the stand-in Flink UI was asked.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A stand-in for a Flink cluster's web UI and REST API on 127.0.0.1.
async fn flink_ui() -> (String, Seen) {
    async fn handle(
        State(seen): State<Seen>,
        method: Method,
        uri: Uri,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        seen.lock()
            .unwrap()
            .push((method.to_string(), uri.path().to_string()));
        match (method.as_str(), uri.path()) {
            ("GET", "/") => axum::response::Html(
                "<!doctype html><html><head><title>Apache Flink Web Dashboard</title></head>\
                 <body><h1>Apache Flink Web Dashboard</h1></body></html>",
            )
            .into_response(),
            ("GET", "/jobs/overview") => axum::Json(json!({"jobs": []})).into_response(),
            ("PATCH", _) => {
                (axum::http::StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
            }
            _ => axum::http::StatusCode::NOT_FOUND.into_response(),
        }
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/", any(handle))
        .route("/{*rest}", any(handle))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.ok() });
    (format!("http://{addr}"), seen)
}

/// A stand-in for the metrics-gateway's query API: `POST /api/v1/query_range` answers a
/// series over the asked range for the Flink metrics the console charts (none for failed
/// checkpoints, so "no data" is shown too); every query is recorded.
async fn gateway() -> (String, Seen) {
    async fn handle(State(seen): State<Seen>, uri: Uri, body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        let query = form.get("query").cloned().unwrap_or_default();
        seen.lock()
            .unwrap()
            .push((uri.path().to_string(), query.clone()));
        if uri.path() != "/api/v1/query_range" {
            return axum::http::StatusCode::ACCEPTED.into_response();
        }
        let num = |k: &str| {
            form.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (start, end, step) = (num("start"), num("end"), num("step").max(1.0));
        let last = [
            ("numRecordsIn", 1500.0),
            ("numRecordsOut", 1200.0),
            ("numRestarts", 2.0),
            ("lastCheckpointDuration", 830.0),
            ("backPressured", 120.0),
            (
                "jobmanager_Status_JVM_Memory_Heap_Used",
                256.0 * 1024.0 * 1024.0,
            ),
            (
                "taskmanager_Status_JVM_Memory_Heap_Used",
                512.0 * 1024.0 * 1024.0,
            ),
        ]
        .into_iter()
        .find(|(m, _)| query.contains(m))
        .map(|(_, v)| v);
        let result = match last {
            Some(v) => {
                let n = ((end - start) / step) as usize;
                let values: Vec<Value> = (0..=n)
                    .map(|i| {
                        // A wave rising to the last value.
                        let x = v
                            * (0.5 + 0.5 * i as f64 / n.max(1) as f64)
                            * if i % 7 == 3 { 0.9 } else { 1.0 };
                        json!([start + i as f64 * step, x.to_string()])
                    })
                    .collect();
                json!([{"metric": {}, "values": values}])
            }
            None => json!([]),
        };
        axum::Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
            .into_response()
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/{*rest}", any(handle))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.ok() });
    (format!("http://{addr}"), seen)
}

struct Served {
    h: Harness,
    base: String,
    flink: String,
    seen: Seen,
    queries: Seen,
    _dir: tempfile::TempDir,
}

/// The manager over the fake Flink, served on 127.0.0.1 with its controller running, a
/// `fake` session target in front of the stand-in Flink UI.
async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.controller.poll_interval = Duration::from_millis(200);
    // As behind a trusted auth proxy; tokens work beside it.
    config.auth.proxy_user_header = Some("X-Forwarded-User".into());
    let (gateway, queries) = gateway().await;
    config.metrics_gateway.url = Some(gateway);
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), config);
    let (flink, seen) = flink_ui().await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(json!({
                "metadata": {"name": "fake"},
                "spec": {"type": "session", "restUrl": flink, "savepointDir": "file:///fake/savepoints"}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    // A Kubernetes target (VVP's body) for the Advanced view's pod options: deployments on
    // it stay CANCELLED, so no cluster is ever contacted.
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(json!({"metadata": {"name": "k8s"}, "spec": {"kubernetes": {"namespace": "flink-jobs"}}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let router = h.router.clone();
    tokio::spawn(async move { axum::serve(l, router).await.ok() });
    tokio::spawn(h.controller.clone().run(std::future::pending::<()>()));
    Served {
        h,
        base,
        flink,
        seen,
        queries,
        _dir: dir,
    }
}

async fn create(h: &Harness, name: &str, state: &str, labels: Value) -> String {
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"state": state, "deploymentTargetName": "fake",
                         "template": {"spec": {"artifact": {"kind": "JAR", "jarUri": h.jar_uri, "entryClass": "com.example.Orders"}, "parallelism": 2}}}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["metadata"]["id"].as_str().unwrap().to_string()
}

async fn token(h: &Harness, name: &str, role: &str) -> String {
    let (s, v) = h
        .call(
            "POST",
            "/apitokens/v1/namespaces/default/apitokens",
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["secret"].as_str().unwrap().to_string()
}

async fn wait_running(s: &Served, id: &str) {
    for _ in 0..100 {
        let (_, v) =
            s.h.call(
                "GET",
                &format!("/api/v1/namespaces/default/deployments/{id}"),
                None,
            )
            .await;
        if v["data"]["status"]["state"] == "RUNNING" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {id} did not reach RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_page_and_flink_ui_proxy_without_a_browser() {
    let s = serve().await;
    let http = reqwest::Client::new();

    let r = http.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(r.text().await.unwrap().contains("/console/assets/app.js"));
    let r = http
        .get(format!("{}/console/assets/i18n.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let r = http
        .get(format!("{}/console/assets/nope.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let id = create(&s.h, "orders", "RUNNING", json!({})).await;
    let stopped = create(&s.h, "stopped", "CANCELLED", json!({})).await;
    wait_running(&s, &id).await;
    let viewer = token(&s.h, "viewer", "viewer").await;
    let ui = format!("{}/flink/default/{id}/", s.base);

    // No credentials: 401, as HTML for a browser navigation.
    let r = http
        .get(&ui)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("sign in to the console"));

    // The cookie: exchanged for the bearer token, HttpOnly, SameSite=Strict, Path=/flink/.
    let r = http
        .post(format!("{}/flink/-/session", s.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/flink/",
        "Max-Age=3600",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(
        !cookie.contains(&viewer),
        "the cookie must not carry the token"
    );
    let pair = cookie.split(';').next().unwrap().to_string();

    // Viewer reads the UI (also by deployment name) and its REST calls...
    let r = http.get(&ui).header("Cookie", &pair).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Apache Flink Web Dashboard"));
    let r = http
        .get(format!("{}/flink/default/orders/jobs/overview?x=1", s.base))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ...but may not cancel a job through it.
    let r = http
        .patch(format!("{ui}jobs/0123?mode=cancel"))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("editor"));
    // An editor may.
    let editor = token(&s.h, "editor", "editor").await;
    let r = http
        .patch(format!("{ui}jobs/0123?mode=cancel"))
        .bearer_auth(&editor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Not RUNNING: refused naming why; no path escapes; unknown cookie: 401.
    let r = http
        .get(format!("{}/flink/default/{stopped}/", s.base))
        .bearer_auth(&editor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("not RUNNING"));
    let r = http
        .get(format!("{ui}a/%2e%2e/..;/x"))
        .bearer_auth(&editor)
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 404, "{}", r.status());
    let r = http
        .get(&ui)
        .header("Cookie", "jm_flink_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Sign-out forgets the session.
    let r = http
        .delete(format!("{}/flink/-/session", s.base))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http.get(&ui).header("Cookie", &pair).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Flink saw no credentials of ours.
    let seen = s.seen.lock().unwrap().clone();
    assert!(seen.contains(&("GET".into(), "/".into())), "{seen:?}");
    assert!(seen.contains(&("PATCH".into(), "/jobs/0123".into())));
    assert_eq!(
        seen.iter().filter(|(m, _)| m == "PATCH").count(),
        1,
        "the viewer's PATCH must not reach Flink: {seen:?}"
    );

    // The role endpoint the console uses to disable actions.
    let (st, v) =
        s.h.call_as(
            Some(&viewer),
            "GET",
            "/console/v1/namespaces/default/me",
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["role"], "viewer");
    assert_eq!(v["data"]["principal"]["name"], "viewer");
    let _ = &s.flink;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_panels_are_read_from_the_gateway_for_the_deployment_only() {
    let s = serve().await;
    let id = create(&s.h, "orders", "RUNNING", json!({})).await;
    wait_running(&s, &id).await;
    let viewer = token(&s.h, "viewer", "viewer").await;
    let path = format!("/console/v1/namespaces/default/deployments/{id}/metrics");
    let (_, d) =
        s.h.call(
            "GET",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    let job = d["data"]["status"]["running"]["jobId"]
        .as_str()
        .unwrap()
        .to_string();

    // A viewer reads a panel: points over the asked range, the unit, the running job.
    let (st, v) =
        s.h.call_as(
            Some(&viewer),
            "GET",
            &format!("{path}?query=recordsIn&range=900"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["unit"], "1/s");
    assert_eq!(v["data"]["jobId"], job.as_str());
    let points = v["data"]["series"][0]["points"].as_array().unwrap();
    assert!(points.len() > 100, "{}", points.len());
    assert_eq!(points.last().unwrap()[1], 1500.0);
    let q = s.queries.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(
        q,
        format!(
            "sum(rate(flink_taskmanager_job_task_numRecordsIn{{namespace=\"default\",deploymentId=\"{id}\",jobId=\"{job}\"}}[1m]))"
        )
    );
    // Two series for heap.
    let (st, v) =
        s.h.call_as(Some(&viewer), "GET", &format!("{path}?query=heap"), None)
            .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["series"].as_array().unwrap().len(), 2);

    // No PromQL of the caller's reaches the gateway: only named panels and ranges.
    let before = s.queries.lock().unwrap().len();
    for (q, want) in [
        ("query=up", "unknown panel \"up\""),
        ("query=sum(up)", "unknown panel"),
        ("", "name a panel"),
        ("query=heap&range=5", "range: 5"),
    ] {
        let (st, v) =
            s.h.call_as(Some(&viewer), "GET", &format!("{path}?{q}"), None)
                .await;
        assert_eq!(st, 400, "{q}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(want), "{q}: {msg}");
        if q.starts_with("query=up") {
            assert!(msg.contains("recordsIn"), "{msg}");
        }
    }
    assert_eq!(s.queries.lock().unwrap().len(), before);
    // Unauthenticated: 401; another namespace's or an unknown deployment: 404.
    let (st, _) =
        s.h.call_as(None, "GET", &format!("{path}?query=heap"), None)
            .await;
    assert_eq!(st, 401);
    let (st, v) =
        s.h.call(
            "GET",
            &format!(
                "/console/v1/namespaces/default/deployments/{}/metrics?query=heap",
                uuid_like()
            ),
            None,
        )
        .await;
    assert_eq!(st, 404, "{v}");
    assert!(s
        .queries
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/api/v1/query_range")
        .all(|(_, q)| q.contains(&format!("deploymentId=\"{id}\""))));
}

/// Points the running job of deployment `id` at `dir` as its log directory, as the local
/// provider records it (the fake Flink's clusters have none).
fn set_log_dir(h: &Harness, id: &str, dir: &std::path::Path) {
    let id = uuid::Uuid::parse_str(id).unwrap();
    h.state
        .store
        .transact(|t| {
            let job = t.deployments[&id]
                .deployment
                .status
                .running
                .as_ref()
                .and_then(|r| r.job_id)
                .unwrap();
            let mut j = t.jobs[&job].clone();
            j.status.cluster.as_mut().unwrap().log_dir = Some(dir.display().to_string());
            Ok::<_, job_manager::store::Error>((vec![job_manager::store::Write1::Job(j)], ()))
        })
        .unwrap();
}

/// A JobManager log of `lines` numbered lines (and a TaskManager log beside it).
fn write_logs(dir: &std::path::Path, lines: usize) {
    let body: String = (0..lines)
        .map(|i| format!("2026-11-29 10:00:00,000 INFO  org.apache.flink.runtime.jobmaster.JobMaster [] - line {i}\n"))
        .collect();
    std::fs::write(dir.join("flink-u-standalonesession-0-host.log"), body).unwrap();
    std::fs::write(dir.join("flink-u-taskexecutor-0-host.log"), "taskmanager\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_the_bounded_tail_of_the_jobmanager_log_of_the_job() {
    let s = serve().await;
    let id = create(&s.h, "orders", "RUNNING", json!({})).await;
    wait_running(&s, &id).await;
    let viewer = token(&s.h, "viewer", "viewer").await;
    let path = format!("/console/v1/namespaces/default/deployments/{id}/logs");
    // A session target keeps no log files here: said so.
    let (st, v) = s.h.call_as(Some(&viewer), "GET", &path, None).await;
    assert_eq!(st, 404, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("only local targets"),
        "{v}"
    );

    let logs = tempfile::tempdir().unwrap();
    write_logs(logs.path(), 20_000);
    // The test writes the job record behind the controller's back; an observation that read the
    // record just before may write it back without the log dir, so set it again until it holds.
    let mut answer = None;
    for _ in 0..20 {
        set_log_dir(&s.h, &id, logs.path());
        let (st, v) = s.h.call_as(Some(&viewer), "GET", &path, None).await;
        if st == 200 {
            answer = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let v = answer.expect("the job's log dir was never kept");
    let text = v["data"]["text"].as_str().unwrap();
    assert!(text.len() as u64 <= job_manager::console::logs::MAX_TAIL);
    assert!(
        text.ends_with("line 19999\n"),
        "{}",
        &text[text.len() - 40..]
    );
    assert!(text.starts_with("2026-11-29"), "cut at a line start");
    assert_eq!(v["data"]["truncated"], true);
    assert_eq!(v["data"]["file"], "flink-u-standalonesession-0-host.log");
    // Query parameters name no file: the same log whatever is asked.
    let (_, w) =
        s.h.call_as(
            Some(&viewer),
            "GET",
            &format!("{path}?file=/etc/passwd&path=../x"),
            None,
        )
        .await;
    assert_eq!(w["data"]["file"], v["data"]["file"]);
    let (st, _) = s.h.call_as(None, "GET", &path, None).await;
    assert_eq!(st, 401);
    let (st, _) =
        s.h.call(
            "GET",
            &format!("/console/v1/namespaces/other/deployments/{id}/logs"),
            None,
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn metrics_without_a_configured_gateway_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    h.fake_target().await;
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(json!({
                "metadata": {"name": "orders"},
                "spec": {"deploymentTargetName": "fake",
                         "template": {"spec": {"artifact": {"kind": "JAR", "jarUri": h.jar_uri}}}}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap();
    let (s, v) = h
        .call(
            "GET",
            &format!("/console/v1/namespaces/default/deployments/{id}/metrics?query=heap"),
            None,
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("metrics_gateway.url"));
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

fn playwright_available() -> Result<(), String> {
    if !std::path::Path::new(CHROMIUM).exists() {
        return Err(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let ok = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Err("python3 cannot import playwright (pip install playwright)".into());
    }
    Ok(())
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journeys() {
    if let Err(why) = playwright_available() {
        eprintln!("SKIPPED browser_journeys: {why}");
        return;
    }
    let s = serve().await;
    let orders = create(&s.h, "orders", "RUNNING", json!({"team": "payments"})).await;
    create(&s.h, "reports", "CANCELLED", json!({"team": "bi"})).await;
    wait_running(&s, &orders).await;
    let logs = tempfile::tempdir().unwrap();
    write_logs(logs.path(), 3000);
    set_log_dir(&s.h, &orders, logs.path());
    let viewer = token(&s.h, "viewer", "viewer").await;
    let (st, v) =
        s.h.call(
            "PATCH",
            "/namespaces/v1/namespaces/default",
            Some(
                json!({"spec": {"roleBindings": [{"role": "editor", "members": ["user:alice"]}]}}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("wordcount.jar");
    std::fs::write(&jar, b"PK\x03\x04 a test jar").unwrap();
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console/journeys.py");
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("JM_URL", &s.base)
        .env("JM_TOKEN", TOKEN)
        .env("JM_VIEWER_TOKEN", &viewer)
        .env("JM_JAR", &jar)
        .env("JM_SCREENSHOTS", &shots)
        .env("JM_CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("browser journeys took over 180 s")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser journeys failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!(
        "browser journeys passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    // The deployment made in the browser went through the proxy to the stand-in UI.
    assert!(s
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(m, p)| m == "GET" && p == "/"));
}

/// The job templates page saves the namespace's deployment defaults with their
/// `resourceVersion`: a save based on an older version is refused (409) instead of
/// overwriting someone else's change; VVP bodies without one are still applied.
#[tokio::test]
async fn deployment_defaults_are_versioned_and_refuse_a_stale_save() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    h.fake_target().await;
    let url = "/api/v1/namespaces/default/deployment-defaults";
    let spec = |p: i64| json!({"template": {"spec": {"parallelism": p}}});

    // Nothing stored yet: version 0, the built-in defaults.
    let (s, v) = h.call("GET", url, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 0);
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 1);

    // A VVP body (no resourceVersion) is applied; each change counts one up.
    let (s, v) = h.call("PUT", url, Some(json!({"spec": spec(2)}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1);
    let (s, v) = h
        .call(
            "PUT",
            url,
            Some(json!({"metadata": {"resourceVersion": 1}, "spec": spec(3)})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);
    // Saving the same spec again changes nothing.
    let (s, v) = h
        .call(
            "PUT",
            url,
            Some(json!({"metadata": {"resourceVersion": 2}, "spec": spec(3)})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);

    // Another editor still holding version 1: refused, naming both versions; nothing lost.
    for method in ["PUT", "PATCH"] {
        let (s, v) = h
            .call(
                method,
                url,
                Some(json!({"metadata": {"resourceVersion": 1}, "spec": spec(9)})),
            )
            .await;
        assert_eq!(s, 409, "{method}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("resourceVersion 1 is stale") && msg.contains("at 2"),
            "{msg}"
        );
    }
    let (_, v) = h.call("GET", url, None).await;
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 3);
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);

    // A merge patch with the current version; a malformed version is a 400 naming it.
    let (s, v) = h
        .call(
            "PATCH",
            url,
            Some(
                json!({"metadata": {"resourceVersion": 2}, "spec": {"maxJobCreationAttempts": 7}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 3);
    assert_eq!(v["data"]["spec"]["maxJobCreationAttempts"], 7);
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 3);
    let (s, v) = h
        .call(
            "PUT",
            url,
            Some(json!({"metadata": {"resourceVersion": "three"}, "spec": spec(4)})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("metadata.resourceVersion"));

    // A new deployment takes the defaults' spec, not their version.
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(json!({
                "metadata": {"name": "orders"},
                "spec": {"deploymentTargetName": "fake",
                         "template": {"spec": {"artifact": {"kind": "JAR", "jarUri": h.jar_uri}}}}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1);
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 3);
    assert_eq!(v["data"]["spec"]["maxJobCreationAttempts"], 7);

    // The version survives a restart of the store.
    drop(h);
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    let (_, v) = h.call("GET", url, None).await;
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 3);
}
