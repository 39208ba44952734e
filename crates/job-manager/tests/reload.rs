//! Reloads are honest: each config field either takes effect at reload, observed here
//! through the API or the controller, or the reload is refused naming the field and the
//! running config stays in force (issue 17).
//!
//! The manager is the in-process one of [`job_manager::testing`], but its config comes from a
//! file that each test rewrites before calling the same reload that SIGHUP and
//! `POST /-/reload` call.

use std::{path::Path, sync::Arc};

use axum::{body::Body, http::Request};
use common::{ConfigHandle, Secret};
use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

const USER_HEADER: &str = "X-Forwarded-User";

/// A manager whose config is read from `dir/job-manager.yml` (written with `yaml` first).
fn manager(dir: &Path, yaml: &str) -> (Harness, ConfigHandle<Config>) {
    let file = dir.join("job-manager.yml");
    std::fs::write(&file, yaml).unwrap();
    let registry = prometheus::Registry::new();
    let handle = ConfigHandle::<Config>::from_file("job_manager", &registry, Some(file)).unwrap();
    let data = dir.join("data");
    let store = job_manager::store::Store::open(&data).unwrap();
    let store =
        job_manager::prepare_store(store, Some(&Secret::new(job_manager::testing::TOKEN))).unwrap();
    let flink = Arc::new(FakeFlink::new());
    let (state, controller) = job_manager::assemble(
        store,
        flink.clone(),
        &data,
        None,
        handle.clone(),
        job_manager::metrics::Metrics::register("job_manager", &registry),
        Arc::new(job_manager::clock::TokioClock::new()),
    );
    let artifacts = job_manager::artifacts::dir(&data, job_manager::DEFAULT_NAMESPACE);
    std::fs::create_dir_all(&artifacts).unwrap();
    let jar = std::fs::canonicalize(&artifacts).unwrap().join("job.jar");
    std::fs::write(&jar, b"PK\x03\x04 not really a jar").unwrap();
    let router = job_manager::app(state.clone());
    let h = Harness {
        state,
        controller,
        flink,
        router,
        jar_uri: format!("file://{}", jar.display()),
    };
    (h, handle)
}

/// Rewrites the config file and reloads, as SIGHUP does.
async fn reload(dir: &Path, handle: &ConfigHandle<Config>, yaml: &str) -> Result<(), String> {
    std::fs::write(dir.join("job-manager.yml"), yaml).unwrap();
    handle.reload_config().await.map_err(|e| e.to_string())
}

/// A multipart upload of `bytes` as `name`, without a Content-Length (as a chunked upload
/// arrives), so only the body limit stops it.
async fn upload(h: &Harness, name: &str, bytes: &[u8]) -> (u16, Value) {
    let boundary = "reload-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let req = Request::builder()
        .method("POST")
        .uri("/artifacts/v1/namespaces/default/artifacts:upload?overwrite=true")
        .header(
            "Authorization",
            format!("Bearer {}", job_manager::testing::TOKEN),
        )
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn deployment(name: &str, jar_uri: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "deploymentTargetName": "fake",
            "template": {"spec": {"artifact": {"jarUri": jar_uri, "entryClass": "x.Main"}}}
        }
    })
}

fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_auth_proxy_header_applies_at_reload_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "");
    let (s, v) = h
        .call(
            "PATCH",
            "/namespaces/v1/namespaces/default",
            Some(
                json!({"spec": {"roleBindings": [{"role": "viewer", "members": ["user:alice"]}]}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let as_alice = || {
        h.request(
            "GET",
            "/api/v1/namespaces/default/deployments",
            &[(USER_HEADER, "alice")],
            None,
        )
    };
    let (s, v) = as_alice().await;
    assert_eq!(s, 401, "the header is not trusted yet: {v}");

    reload(
        dir.path(),
        &handle,
        &format!("auth:\n  proxy_user_header: {USER_HEADER}\n"),
    )
    .await
    .unwrap();
    let (s, v) = as_alice().await;
    assert_eq!(s, 200, "trusted from the reload on: {v}");

    reload(dir.path(), &handle, "").await.unwrap();
    let (s, v) = as_alice().await;
    assert_eq!(s, 401, "no longer trusted once removed: {v}");
}

#[tokio::test]
async fn the_upload_limit_applies_at_reload_lowered_and_raised() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "artifacts:\n  max_upload_bytes: 1024\n");
    // 200 KiB: beyond the limit and beyond the multipart allowance read before the handler.
    let big = vec![b'x'; 200 * 1024];
    let (s, v) = upload(&h, "big.jar", &big).await;
    assert_eq!(s, 413, "{v}");
    assert!(message(&v).contains("1024 bytes"), "{v}");

    reload(
        dir.path(),
        &handle,
        "artifacts:\n  max_upload_bytes: 1048576\n",
    )
    .await
    .unwrap();
    let (s, v) = upload(&h, "big.jar", &big).await;
    assert_eq!(s, 201, "the raised limit is in force: {v}");
    assert_eq!(v["data"]["size"], 200 * 1024);

    reload(
        dir.path(),
        &handle,
        "artifacts:\n  max_upload_bytes: 2048\n",
    )
    .await
    .unwrap();
    let (s, v) = upload(&h, "big.jar", &big).await;
    assert_eq!(s, 413, "the lowered limit is in force: {v}");
    assert!(message(&v).contains("2048 bytes"), "{v}");
    let (s, v) = upload(&h, "small.jar", &[b'y'; 2000]).await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn the_request_body_limit_applies_at_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "");
    h.fake_target().await;
    let body = deployment("first", &h.jar_uri);
    let (s, v) = h
        .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    reload(dir.path(), &handle, "api:\n  max_body_bytes: 64\n")
        .await
        .unwrap();
    let body = deployment("second", &h.jar_uri);
    let (s, v) = h
        .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
        .await;
    assert_eq!(s, 413, "{v}");
    assert!(message(&v).contains("64 bytes (api.max_body_bytes)"), "{v}");
}

#[tokio::test]
async fn remote_artifact_rules_apply_at_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "");
    h.fake_target().await;
    let create = |name: &'static str| {
        let body = deployment(name, "http://127.0.0.1:9/job.jar");
        h.call("POST", "/api/v1/namespaces/default/deployments", Some(body))
    };
    let (s, v) = create("remote-before").await;
    assert_eq!(s, 400, "remote jarUris are refused by default: {v}");
    assert!(message(&v).contains("jarUri"), "{v}");

    reload(
        dir.path(),
        &handle,
        "artifacts:\n  remote:\n    allowed_schemes: [http]\n    allowed_hosts: [127.0.0.1]\n",
    )
    .await
    .unwrap();
    let (s, v) = create("remote-after").await;
    assert_eq!(s, 201, "allowed from the reload on: {v}");
}

#[tokio::test]
async fn the_metrics_gateway_url_applies_at_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "");
    h.fake_target().await;
    let body = deployment("charted", &h.jar_uri);
    let (s, v) = h
        .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let path = format!("/console/v1/namespaces/default/deployments/{id}/metrics?query=heap");
    let (s, v) = h.call("GET", &path, None).await;
    assert_eq!(s, 503, "{v}");
    assert!(message(&v).contains("metrics_gateway.url"), "{v}");

    // A gateway that is not there: the console now tries it (502) instead of saying none is
    // configured.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    reload(
        dir.path(),
        &handle,
        &format!("metrics_gateway:\n  url: {url}\n"),
    )
    .await
    .unwrap();
    let (s, v) = h.call("GET", &path, None).await;
    assert_eq!(s, 502, "{v}");
    assert!(message(&v).contains("metrics gateway"), "{v}");
}

#[tokio::test(start_paused = true)]
async fn controller_settings_apply_at_the_next_observation() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "controller:\n  unstable_restarts: 5\n");
    h.fake_target().await;
    let mut body = deployment("flaky", &h.jar_uri);
    body["spec"]["state"] = json!("RUNNING");
    let (s, v) = h
        .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    h.settle(20).await;
    let (_, jobs) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/jobs?deploymentId={id}"),
            None,
        )
        .await;
    let fid = jobs["data"]["items"][0]["status"]["flinkJobId"]
        .as_str()
        .unwrap()
        .to_string();
    let unstable = || async {
        let (_, d) = h
            .call(
                "GET",
                &format!("/api/v1/namespaces/default/deployments/{id}"),
                None,
            )
            .await;
        d["data"]["status"]["running"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "JobUnstable")
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
    };
    for n in 1..=3 {
        tokio::time::advance(std::time::Duration::from_secs(30)).await;
        h.flink.set_restarts(&fid, n);
        h.settle(5).await;
    }
    assert_ne!(
        unstable().await.as_deref(),
        Some("True"),
        "3 restarts, 5 needed"
    );

    reload(dir.path(), &handle, "controller:\n  unstable_restarts: 3\n")
        .await
        .unwrap();
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    h.flink.set_restarts(&fid, 4);
    h.settle(5).await;
    assert_eq!(
        unstable().await.as_deref(),
        Some("True"),
        "the reloaded threshold of 3 is in force"
    );
}

#[tokio::test]
async fn store_and_leader_election_settings_are_refused_at_reload_by_name_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (h, handle) = manager(dir.path(), "api:\n  max_body_bytes: 1048576\n");
    h.fake_target().await;
    for (field, yaml) in [
        (
            "store.url",
            "api:\n  max_body_bytes: 64\nstore:\n  url: postgres://jm@127.0.0.1:5432/jm\n",
        ),
        (
            "store.password_file",
            "api:\n  max_body_bytes: 64\nstore:\n  password_file: /run/secrets/pg\n",
        ),
        (
            "leader_election",
            "api:\n  max_body_bytes: 64\nleader_election:\n  lease: job-manager\n",
        ),
    ] {
        let err = reload(dir.path(), &handle, yaml).await.unwrap_err();
        assert!(
            err.contains(&format!("`{field}`")) && err.contains("restart"),
            "{err}"
        );
        let cur = handle.current();
        assert_eq!(
            cur.store,
            Default::default(),
            "{field}: the old store config"
        );
        assert_eq!(
            cur.api.max_body_bytes, 1048576,
            "{field}: nothing of the refused reload applies"
        );
        // The API still runs on the old config: a body over 64 bytes is accepted.
        let body = deployment(&format!("after-{field}"), &h.jar_uri);
        let (s, v) = h
            .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
            .await;
        assert_eq!(s, 201, "{v}");
    }
}
