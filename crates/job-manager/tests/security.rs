//! Attacks on job-manager, each performed for real and refused: a clear 4xx in the API
//! envelope naming what is refused, nothing changed on disk, the process still serving.
//!
//! - jarUri: reading any file of the host (`file:///proc/self/environ`, symlinks, `..`,
//!   another namespace's store), SSRF through remote URIs (disabled by default; a listed host
//!   name that resolves to loopback; size and time limits), checked by the API and again by
//!   the controller; missing artifacts; uploads that would overwrite.
//! - Deployment targets: owner only.
//! - Savepoint retention: deletes only inside the savepoint directory the manager configured.
//! - Namespace deletion leaves nothing behind; clone names stay within the limit; the
//!   bootstrap token is revoked when removed and must be long enough.

mod support;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{body::Body, http::Request};
use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const JAR_FIELD: &str = "spec.template.spec.artifact.jarUri";

fn deployment(name: &str, jar_uri: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"artifact": {"jarUri": jar_uri, "entryClass": "x.Main"}}}}
    })
}

fn running_on_fake(name: &str, jar_uri: &str) -> Value {
    let mut d = deployment(name, jar_uri);
    d["spec"]["state"] = json!("RUNNING");
    d["spec"]["deploymentTargetName"] = json!("fake");
    d
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

/// A refusal: the status, the envelope, and a message containing every `needles`.
#[track_caller]
fn assert_refused(status: u16, v: &Value, want: u16, needles: &[&str]) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["httpCode"], want, "{v}");
    for n in needles {
        assert!(message(v).contains(n), "{n:?} not in {v}");
    }
}

async fn token(h: &Harness, ns: &str, name: &str, role: &str) -> String {
    let (s, v) = h
        .call(
            "POST",
            &format!("/apitokens/v1/namespaces/{ns}/apitokens"),
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["secret"].as_str().unwrap().to_string()
}

async fn deployment_names(h: &Harness, ns: &str) -> Vec<String> {
    let (s, v) = h
        .call("GET", &format!("/api/v1/namespaces/{ns}/deployments"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// A multipart upload through the in-process router.
async fn upload(h: &Harness, ns: &str, name: &str, bytes: &[u8], query: &str) -> (u16, Value) {
    let boundary = "sec-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let req = Request::builder()
        .method("POST")
        .uri(format!(
            "/artifacts/v1/namespaces/{ns}/artifacts:upload{query}"
        ))
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
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Every file under `dir` with the SHA-256 of its bytes (to show nothing changed).
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push((p.display().to_string(), sha(&std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn jar_uri_cannot_read_files_outside_the_namespace_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let h = Harness::open(data, Arc::new(FakeFlink::new()), Config::default());
    h.fake_target().await;
    let ns = "/api/v1/namespaces/default/deployments";
    let store = std::fs::canonicalize(data.join("artifacts/default")).unwrap();
    // A secret beside the store, a symlink to it inside the store, and a JAR of another
    // namespace.
    std::fs::write(data.join("secret.txt"), b"DINGTALK_SECRET=s3cr3t").unwrap();
    std::os::unix::fs::symlink(data.join("secret.txt"), store.join("evil.jar")).unwrap();
    std::os::unix::fs::symlink(data, store.join("up")).unwrap();
    let (s, v) = h
        .call(
            "POST",
            "/namespaces/v1/namespaces",
            Some(json!({"metadata": {"name": "team-b"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = upload(&h, "team-b", "theirs.jar", b"PK team-b", "").await;
    assert_eq!(s, 201, "{v}");
    let theirs = v["data"]["uri"].as_str().unwrap().to_string();
    let before = snapshot(&data.join("artifacts"));

    for (uri, why) in [
        (
            "file:///proc/self/environ".to_string(),
            "outside the artifact store of namespace default",
        ),
        (
            "/proc/self/environ".to_string(),
            "outside the artifact store of namespace default",
        ),
        (
            "file:///etc/passwd".to_string(),
            "outside the artifact store",
        ),
        (
            format!("file://{}", data.join("secret.txt").display()),
            "outside the artifact store",
        ),
        (
            format!("file://{}/../secret.txt", store.display()),
            "must not contain `..`",
        ),
        (
            format!("file://{}/up/secret.txt", store.display()),
            "outside the artifact store",
        ),
        (
            format!("file://{}/evil.jar", store.display()),
            "is not a regular file",
        ),
        (
            theirs.clone(),
            "outside the artifact store of namespace default",
        ),
        (
            "file://relative/x.jar".to_string(),
            "must be an absolute path",
        ),
        (
            format!("file://{}/nope.jar", store.display()),
            "artifact \"nope.jar\" does not exist in namespace default",
        ),
        (
            "http://127.0.0.1:8080/-/config".to_string(),
            "remote jarUris are disabled",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "remote jarUris are disabled",
        ),
    ] {
        let (s, v) = h.call("POST", ns, Some(deployment("attack", &uri))).await;
        assert_refused(s, &v, 400, &[JAR_FIELD, why]);
        assert_eq!(v["reason"], "ValidationFailed");
    }
    assert!(deployment_names(&h, "default").await.is_empty());

    // PATCH and PUT-like changes are checked as well; the deployment stays as it was.
    let (s, v) = h
        .call("POST", ns, Some(deployment("good", &h.jar_uri)))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{ns}/{id}"),
            Some(json!({"spec": {"template": {"spec": {"artifact": {"jarUri": "file:///proc/self/environ"}}}}})),
        )
        .await;
    assert_refused(s, &v, 400, &[JAR_FIELD, "outside the artifact store"]);
    let (_, v) = h.call("GET", &format!("{ns}/{id}"), None).await;
    assert_eq!(
        v["data"]["spec"]["template"]["spec"]["artifact"]["jarUri"],
        h.jar_uri
    );
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1);
    // Unrelated changes of a deployment do not re-check an unchanged jarUri.
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{ns}/{id}"),
            Some(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Defence in depth: a record that never went through the API (an older version's, or
    // a file edited on disk) is refused by the controller before Flink sees anything.
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    h.state
        .store
        .modify(uuid, |r| {
            r.deployment.spec.template.spec.artifact.jar_uri = "file:///proc/self/environ".into();
            r.deployment.spec.state = job_manager::model::DesiredState::Running;
            r.deployment.spec.deployment_target_name = "fake".into();
            vec![]
        })
        .unwrap();
    h.settle(20).await;
    let (_, v) = h.call("GET", &format!("{ns}/{id}"), None).await;
    assert_eq!(v["data"]["status"]["state"], "FAILED", "{v}");
    let why = v["data"]["status"]["failure"]["message"].as_str().unwrap();
    assert!(
        why.contains(JAR_FIELD) && why.contains("outside the artifact store"),
        "{why}"
    );
    assert!(h.flink.calls_of("upload_jar").is_empty());
    assert!(h.flink.calls_of("run_jar").is_empty());
    assert_eq!(snapshot(&data.join("artifacts")), before);
    assert_eq!(
        std::fs::read(data.join("secret.txt")).unwrap(),
        b"DINGTALK_SECRET=s3cr3t"
    );
}

/// A tiny HTTP server on 127.0.0.1: `/job.jar` (small), `/big.jar` (`big` bytes),
/// `/slow.jar` (never answers). Counts the connections it accepted.
async fn jar_server(big: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if head.starts_with("GET /job.jar") {
                    b"PK\x03\x04 remote jar".to_vec()
                } else if head.starts_with("GET /big.jar") {
                    vec![b'x'; big]
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                };
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    (port, hits)
}

fn remote_config(hosts: &[&str]) -> Config {
    let mut c = Config::default();
    c.artifacts.max_upload_bytes = 1024;
    c.artifacts.remote.allowed_schemes = vec!["http".into()];
    c.artifacts.remote.allowed_hosts = hosts.iter().map(|h| h.to_string()).collect();
    c.artifacts.remote.timeout = Duration::from_millis(500);
    c
}

async fn state_and_failure(h: &Harness, id: &str) -> (String, String) {
    let (_, v) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    (
        v["data"]["status"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["data"]["status"]["failure"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

async fn create(h: &Harness, body: Value) -> String {
    let (s, v) = h
        .call("POST", "/api/v1/namespaces/default/deployments", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["metadata"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn remote_jar_uris_need_the_operator_and_never_reach_loopback_unless_listed() {
    let (port, hits) = jar_server(2048).await;
    let ns = "/api/v1/namespaces/default/deployments";

    // The operator allowed the host name `localhost`, not its address: the name passes the
    // API's string check, but the controller resolves it, sees 127.0.0.1 and never connects.
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(
        dir.path(),
        Arc::new(FakeFlink::new()),
        remote_config(&["localhost"]),
    );
    h.fake_target().await;
    let (s, v) = h
        .call(
            "POST",
            ns,
            Some(deployment("x", &format!("http://127.0.0.1:{port}/job.jar"))),
        )
        .await;
    assert_refused(
        s,
        &v,
        400,
        &[
            JAR_FIELD,
            "host 127.0.0.1 is not in artifacts.remote.allowed_hosts",
        ],
    );
    let (s, v) = h
        .call(
            "POST",
            ns,
            Some(deployment(
                "x",
                &format!("https://localhost:{port}/job.jar"),
            )),
        )
        .await;
    assert_refused(
        s,
        &v,
        400,
        &[
            JAR_FIELD,
            "scheme https is not in artifacts.remote.allowed_schemes",
        ],
    );
    let (s, v) = h
        .call(
            "POST",
            ns,
            Some(deployment(
                "x",
                &format!("http://user:pw@localhost:{port}/job.jar"),
            )),
        )
        .await;
    assert_refused(s, &v, 400, &[JAR_FIELD, "must not carry credentials"]);
    let id = create(
        &h,
        running_on_fake("by-name", &format!("http://localhost:{port}/job.jar")),
    )
    .await;
    h.settle(20).await;
    let (state, why) = state_and_failure(&h, &id).await;
    assert_eq!(state, "FAILED");
    assert!(
        why.contains(JAR_FIELD) && why.contains("resolves to loopback address"),
        "{why}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing may connect");
    assert!(h.flink.calls_of("upload_jar").is_empty());

    // With the address itself listed, the download works, within the limits.
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(
        dir.path(),
        Arc::new(FakeFlink::new()),
        remote_config(&["127.0.0.1"]),
    );
    h.fake_target().await;
    let ok = create(
        &h,
        running_on_fake("ok", &format!("http://127.0.0.1:{port}/job.jar")),
    )
    .await;
    let big = create(
        &h,
        running_on_fake("big", &format!("http://127.0.0.1:{port}/big.jar")),
    )
    .await;
    let slow = create(
        &h,
        running_on_fake("slow", &format!("http://127.0.0.1:{port}/slow.jar")),
    )
    .await;
    h.settle(20).await;
    assert_eq!(state_and_failure(&h, &ok).await.0, "RUNNING");
    let (state, why) = state_and_failure(&h, &big).await;
    assert_eq!(state, "FAILED");
    assert!(
        why.contains("exceeds the artifact size limit of 1024 bytes"),
        "{why}"
    );
    let (state, why) = state_and_failure(&h, &slow).await;
    assert_eq!(state, "FAILED");
    assert!(why.contains("did not finish within 500ms"), "{why}");
    // Only the good JAR is cached.
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("jar-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(std::fs::read(&cached[0]).unwrap(), b"PK\x03\x04 remote jar");
}

#[tokio::test]
async fn deployment_targets_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    let viewer = token(&h, "default", "v", "viewer").await;
    let editor = token(&h, "default", "e", "editor").await;
    let owner = token(&h, "default", "o", "owner").await;
    let targets = "/api/v1/namespaces/default/deployment-targets";
    let evil = json!({"metadata": {"name": "evil"}, "spec": {"type": "session", "restUrl": "http://attacker.example:8081"}});
    let before = snapshot(&dir.path().join("store/deployment-targets"));
    for (t, role) in [(&viewer, "viewer"), (&editor, "editor")] {
        let (s, v) = h
            .call_as(Some(t), "POST", targets, Some(evil.clone()))
            .await;
        assert_refused(s, &v, 403, &["default", role]);
        if role == "editor" {
            assert!(message(&v).contains("role owner or higher required"), "{v}");
        }
        let (s, v) = h
            .call_as(Some(t), "DELETE", &format!("{targets}/local"), None)
            .await;
        assert_refused(s, &v, 403, &["owner", "default"]);
        let (s, v) = h.call_as(Some(t), "GET", targets, None).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = h
            .call_as(Some(t), "GET", &format!("{targets}/local"), None)
            .await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(
        snapshot(&dir.path().join("store/deployment-targets")),
        before
    );
    let (s, v) = h.call_as(Some(&owner), "POST", targets, Some(evil)).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = h
        .call_as(Some(&owner), "DELETE", &format!("{targets}/evil"), None)
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn savepoint_retention_deletes_only_inside_the_managed_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let data = root.join("data");
    let h = Harness::open(&data, Arc::new(FakeFlink::new()), Config::default());
    let sp = root.join("sp");
    std::fs::create_dir_all(sp.join("savepoint-inside")).unwrap();
    std::fs::write(sp.join("savepoint-inside/_metadata"), b"m").unwrap();
    for p in ["precious", "precious2", "precious3"] {
        std::fs::create_dir_all(root.join(p)).unwrap();
        std::fs::write(root.join(p).join("data"), b"keep me").unwrap();
    }
    std::os::unix::fs::symlink(root.join("precious2"), sp.join("escape")).unwrap();
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(json!({"metadata": {"name": "fake"}, "spec": {"type": "session", "restUrl": "http://fake-flink:8081", "savepointDir": format!("file://{}", sp.display())}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let mut body = running_on_fake("sched", &h.jar_uri);
    body["spec"]["savepointSchedule"] = json!({"cron": "0 0 * * * *", "retain": 1});
    let id = create(&h, body).await;
    h.settle(20).await;
    // Flink reports where the savepoints went; retention deletes the older ones.
    let hostile = [
        format!("file://{}", root.join("precious").display()),
        format!("file://{}", sp.join("escape").display()),
        format!("file://{}/../precious3", sp.display()),
        format!("file://{}", sp.display()),
        format!("file:{}", sp.join("savepoint-inside").display()),
    ];
    let locations: Vec<&str> = hostile.iter().map(String::as_str).collect();
    h.flink.report_savepoint_locations(&locations);
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    for _ in 0..6 {
        h.state
            .store
            .modify(uuid, |r| {
                r.control.next_scheduled = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
                vec![]
            })
            .unwrap();
        h.settle(10).await;
    }
    // Everything outside (or the directory itself) is still there; the one inside is gone.
    for p in ["precious", "precious2", "precious3"] {
        assert_eq!(
            std::fs::read(root.join(p).join("data")).unwrap(),
            b"keep me",
            "{p}"
        );
    }
    assert!(sp.is_dir() && sp.join("escape").exists());
    assert!(!sp.join("savepoint-inside").exists(), "inside: deleted");
    let (_, v) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/events?deploymentId={id}"),
            None,
        )
        .await;
    let refused: Vec<String> = v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["spec"]["name"] == "SavepointNotDeleted")
        .map(|e| e["spec"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    for (loc, why) in hostile.iter().zip([
        "not inside the savepoint directory",
        "not inside the savepoint directory",
        "contains `..`",
        "not inside the savepoint directory",
    ]) {
        assert!(
            refused
                .iter()
                .any(|m| m.contains(loc.as_str()) && m.contains(why)),
            "{loc}: {refused:#?}"
        );
    }
    // A deployment that chose its own directory in flinkConfiguration gets nothing deleted.
    assert!(
        job_manager::controller::deletable_savepoint(None, &hostile[4])
            .unwrap_err()
            .contains("not one the manager configured")
    );
}

#[tokio::test]
async fn a_namespace_created_again_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    let nsu = "/namespaces/v1/namespaces";
    let (s, v) = h
        .call("POST", nsu, Some(json!({"metadata": {"name": "team-c"}})))
        .await;
    assert_eq!(s, 201, "{v}");
    let api = "/api/v1/namespaces/team-c";
    let (s, v) = h
        .call(
            "PUT",
            &format!("{api}/deployment-defaults"),
            Some(json!({"spec": {"template": {"spec": {"parallelism": 7}}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = upload(&h, "team-c", "old.jar", b"PK old", "").await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = h
        .call(
            "POST",
            &format!("{api}/deployment-targets"),
            Some(json!({"metadata": {"name": "sess"}, "spec": {"type": "session", "restUrl": "http://127.0.0.1:1"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let old_token = token(&h, "team-c", "ci", "editor").await;
    // An event of a deployment of this namespace.
    let (s, v) = h
        .call(
            "POST",
            &format!("{api}/deployments"),
            Some(deployment("d", v_uri(&h, "team-c", "old.jar").as_str())),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let dep = uuid::Uuid::parse_str(v["data"]["metadata"]["id"].as_str().unwrap()).unwrap();
    h.state
        .store
        .append_event(job_manager::model::Event {
            kind: "Event".into(),
            api_version: "v1".into(),
            metadata: job_manager::model::EventMetadata {
                id: uuid::Uuid::new_v4(),
                namespace: "team-c".into(),
                deployment_id: uuid::Uuid::new_v4(),
                job_id: None,
                created_at: chrono::Utc::now(),
            },
            spec: job_manager::model::EventSpec {
                name: "Orphan".into(),
                message: "left by an older version".into(),
            },
        })
        .unwrap();
    let (s, v) = h
        .call("DELETE", &format!("{api}/deployments/{dep}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h.call("DELETE", &format!("{nsu}/team-c"), None).await;
    assert_eq!(s, 200, "{v}");
    assert!(!dir.path().join("artifacts/team-c").exists());

    let (s, v) = h
        .call("POST", nsu, Some(json!({"metadata": {"name": "team-c"}})))
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = h
        .call("GET", &format!("{api}/deployment-defaults"), None)
        .await;
    assert_eq!(
        v["data"]["spec"]["template"]["spec"]["parallelism"], 1,
        "{v}"
    );
    let (_, v) = h
        .call(
            "GET",
            "/artifacts/v1/namespaces/team-c/artifacts:list",
            None,
        )
        .await;
    assert_eq!(v["data"]["items"], json!([]), "{v}");
    let (_, v) = h.call("GET", &format!("{api}/events"), None).await;
    assert_eq!(v["data"]["items"], json!([]), "{v}");
    let (_, v) = h
        .call("GET", &format!("{api}/deployment-targets"), None)
        .await;
    let names: Vec<_> = v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("local")]);
    let (_, v) = h
        .call("GET", "/apitokens/v1/namespaces/team-c/apitokens", None)
        .await;
    assert_eq!(v["data"]["items"], json!([]), "{v}");
    let (s, v) = h
        .call_as(Some(&old_token), "GET", &format!("{api}/deployments"), None)
        .await;
    assert_refused(s, &v, 401, &["invalid or revoked"]);
    // And on disk, after a restart too.
    drop(h);
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    let (_, v) = h
        .call("GET", &format!("{api}/deployment-defaults"), None)
        .await;
    assert_eq!(
        v["data"]["spec"]["template"]["spec"]["parallelism"], 1,
        "{v}"
    );
    let (_, v) = h.call("GET", &format!("{api}/events"), None).await;
    assert_eq!(v["data"]["items"], json!([]), "{v}");
}

/// The `file://` URI of an uploaded artifact.
fn v_uri(h: &Harness, ns: &str, name: &str) -> String {
    let d = std::fs::canonicalize(job_manager::artifacts::dir(&h.state.data_dir, ns)).unwrap();
    format!("file://{}", d.join(name).display())
}

#[tokio::test]
async fn clone_refuses_a_name_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path(), Arc::new(FakeFlink::new()), Config::default());
    let ns = "/api/v1/namespaces/default/deployments";
    let name = "n".repeat(240);
    let id = create(&h, deployment(&name, &h.jar_uri)).await;
    // "Fork of " + 240 = 248 characters: fine.
    let (s, v) = h.call("POST", &format!("{ns}/{id}/clone"), None).await;
    assert_eq!(s, 201, "{v}");
    let fork = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    // Its clone would be 256 characters.
    let (s, v) = h.call("POST", &format!("{ns}/{fork}/clone"), None).await;
    assert_refused(s, &v, 400, &["metadata.name", "253"]);
    assert_eq!(deployment_names(&h, "default").await.len(), 2);
}

// ---- Against the real binary --------------------------------------------------------------

async fn upload_to(m: &support::Manager, name: &str, bytes: Vec<u8>, query: &str) -> (u16, Value) {
    let boundary = "sec-binary-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = m
        .http
        .post(format!(
            "{}/artifacts/v1/namespaces/default/artifacts:upload{query}",
            m.base
        ))
        .bearer_auth(support::TOKEN)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap())
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn uploads_never_overwrite_unasked_and_concurrent_ones_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let m = support::Manager::start(&dir.path().join("data"), &[]);
    let a: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();

    // Two concurrent uploads of a new name: exactly one is stored, the other is told why.
    let (ra, rb) = tokio::join!(
        upload_to(&m, "same.jar", a.clone(), ""),
        upload_to(&m, "same.jar", b.clone(), "")
    );
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{ra:?} {rb:?}");
    let (won, lost, bytes) = if ra.0 == 201 {
        (&ra.1, &rb.1, &a)
    } else {
        (&rb.1, &ra.1, &b)
    };
    assert_refused(
        409,
        lost,
        409,
        &["same.jar", "already exists", "?overwrite=true"],
    );
    let path = won["data"]["uri"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .to_string();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk, bytes);
    assert_eq!(won["data"]["sha256"], sha(bytes));

    // A plain re-upload is refused and changes nothing.
    let (s, v) = upload_to(&m, "same.jar", b"PK other".to_vec(), "").await;
    assert_refused(s, &v, 409, &["same.jar"]);
    assert_eq!(&std::fs::read(&path).unwrap(), bytes);

    // Asked to overwrite, concurrently: both succeed, each reports its own bytes, the file
    // is one of them whole, and no temporary file is left.
    let (ra, rb) = tokio::join!(
        upload_to(&m, "same.jar", a.clone(), "?overwrite=true"),
        upload_to(&m, "same.jar", b.clone(), "?overwrite=true")
    );
    assert_eq!((ra.0, rb.0), (201, 201), "{ra:?} {rb:?}");
    assert_eq!(ra.1["data"]["sha256"], sha(&a));
    assert_eq!(rb.1["data"]["sha256"], sha(&b));
    let now = std::fs::read(&path).unwrap();
    assert!(now == a || now == b);
    let entries: Vec<_> = std::fs::read_dir(Path::new(&path).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, vec!["same.jar".to_string()]);
    let (s, v) = upload_to(&m, "same.jar", b"x".to_vec(), "?overwrite=maybe").await;
    assert_refused(s, &v, 400, &["overwrite"]);

    // jarUri attacks against the binary: refused, and the process still serves.
    for uri in [
        "file:///proc/self/environ",
        "http://127.0.0.1:8080/-/config",
    ] {
        let (s, v) = m
            .call(
                "POST",
                "/api/v1/namespaces/default/deployments",
                Some(deployment("attack", uri)),
            )
            .await;
        assert_refused(s, &v, 400, &[JAR_FIELD]);
    }
    let missing = format!(
        "file://{}",
        Path::new(&path).with_file_name("missing.jar").display()
    );
    let (s, v) = m
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(deployment("x", &missing)),
        )
        .await;
    assert_refused(s, &v, 400, &[JAR_FIELD, "\"missing.jar\" does not exist"]);
    assert_eq!(m.proc.get("/-/healthy").0, 200);
}

/// Runs the binary expecting it to refuse to start; returns its stderr.
fn start_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(support::BIN);
    cmd.arg("--web.listen-address")
        .arg(format!("127.0.0.1:{}", common::testkit::free_port()))
        .args(args)
        .env_remove(job_manager::BOOTSTRAP_ENV)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "{status}");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the manager started although it should have refused to");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn bootstrap_token_is_revoked_when_removed_and_must_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = support::Manager::start(&data, &[]);
    let (s, v) = m
        .call("GET", "/api/v1/namespaces/default/deployments", None)
        .await;
    assert_eq!(s, 200, "{v}");
    drop(m);

    // Too short, from the environment or a file: a clear start-up error, never the token.
    let err = start_fails(
        &["--data-dir", data.to_str().unwrap()],
        &[(job_manager::BOOTSTRAP_ENV, "short-token")],
    );
    assert!(
        err.contains("JOB_MANAGER_BOOTSTRAP_TOKEN")
            && err.contains("11 characters")
            && err.contains("at least 16"),
        "{err}"
    );
    assert!(!err.contains("short-token"), "{err}");
    let file = dir.path().join("short");
    std::fs::write(&file, "abc\n").unwrap();
    let err = start_fails(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--bootstrap-token-file",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        err.contains("--bootstrap-token-file") && err.contains("at least 16"),
        "{err}"
    );

    // Removed from the configuration: the old token no longer works after the restart.
    let port = common::testkit::free_port();
    let mut p = common::testkit::Proc {
        child: std::process::Command::new(support::BIN)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data)
            .env_remove(job_manager::BOOTSTRAP_ENV)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        addr: ([127, 0, 0, 1], port).into(),
    };
    p.wait_healthy(Duration::from_secs(30));
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/namespaces/default/deployments",
            p.addr
        ))
        .bearer_auth(support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_refused(401, &v, 401, &["invalid or revoked"]);
}
