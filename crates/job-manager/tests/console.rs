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

struct Served {
    h: Harness,
    base: String,
    flink: String,
    seen: Seen,
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
