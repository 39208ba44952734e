//! JARs of the artifact store on a Kubernetes target, end to end: the in-process manager
//! (real API, store and controller; Flink faked) with `KUBECONFIG` pointing at the strict
//! fake API server, and its API served on 127.0.0.1 for the init container's script.
//!
//! - The job's download token reaches the pods only through the job's Secret; it downloads
//!   exactly that artifact (run with the init container's own script and `curl`), nothing
//!   else, is refused once expired or once the job's cluster is torn down, and is never in
//!   an API answer or a log line.
//! - While the job runs its token is renewed before it expires: the Secret gets a new one
//!   that downloads the JAR, the old one works until its own expiry, and neither once the
//!   job's cluster is torn down.
//! - Without `kubernetes.manager_url` such a job fails to start, naming the setting.
//! - Settings a Kubernetes target does not apply are reported as warnings.

#[path = "support/fake_kube.rs"]
mod fake_kube;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::{body::Body, http::Request};
use fake_kube::{FakeKube, Scenario};
use job_manager::{
    artifacts::tokens::DownloadGrant,
    flink::fake::FakeFlink,
    kubernetes::fetch,
    store::Write1,
    testing::{Harness, TOKEN},
    Config,
};
use k8s_openapi::api::{batch::v1::Job as K8sJob, core::v1::Secret};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const NS: &str = "flink-jobs";

/// `KUBECONFIG` is process-wide: one scenario at a time sets and uses it.
static KUBE_ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything this test binary logs (tracing), to check that no token is ever logged.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn kubeconfig(dir: &std::path::Path, fake: &FakeKube) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ack\n\
             clusters:\n- name: ack\n  cluster: {{server: \"{}\"}}\n\
             users:\n- name: ci\n  user: {{token: not-checked-by-the-fake}}\n\
             contexts:\n- name: ack\n  context: {{cluster: ack, user: ci}}\n",
            fake.url()
        ),
    )
    .unwrap();
    path
}

struct Setup {
    h: Harness,
    flink: Arc<FakeFlink>,
    fake: FakeKube,
    dir: tempfile::TempDir,
}

/// A manager whose config says pods reach it at `manager_url`, with target `ack`.
async fn setup(manager_url: Option<String>) -> Setup {
    setup_with(manager_url, |_| {}).await
}

/// [`setup`] with more configuration.
async fn setup_with(manager_url: Option<String>, configure: impl FnOnce(&mut Config)) -> Setup {
    let fake = FakeKube::start(Scenario::Healthy, &[NS]).await;
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("KUBECONFIG", kubeconfig(dir.path(), &fake));
    let mut config = Config::default();
    config.kubernetes.manager_url = manager_url;
    configure(&mut config);
    config.artifacts.remote.allowed_schemes = vec!["https".into()];
    config.artifacts.remote.allowed_hosts = vec!["repo.example.com".into()];
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(&dir.path().join("data"), flink.clone(), config);
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(json!({"metadata":{"name":"ack"},"spec":{"kubernetes":{"namespace":NS}}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    Setup {
        h,
        flink,
        fake,
        dir,
    }
}

async fn create(h: &Harness, template_spec: Value) -> (u16, Value) {
    h.call(
        "POST",
        "/api/v1/namespaces/default/deployments",
        Some(json!({
            "metadata": {"name": "orders"},
            "spec": {"state": "RUNNING", "deploymentTargetName": "ack",
                     "template": {"spec": template_spec}}
        })),
    )
    .await
}

fn newest_job(h: &Harness) -> Option<job_manager::model::Job> {
    let t = h.state.store.read();
    t.jobs
        .values()
        .max_by_key(|j| j.metadata.created_at)
        .cloned()
}

async fn reconcile_until(s: &Setup, id: &str, state: &str, jm_runs_job: bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.h.controller.reconcile_all().await;
        if jm_runs_job {
            if let Some(j) = newest_job(&s.h) {
                let jm = format!("job-{}-jobmanager", j.metadata.id);
                if s.fake.object("batch", "jobs", NS, &jm).is_some() {
                    s.flink.start_application_job(&j.status.flink_job_id);
                }
            }
        }
        let (st, v) =
            s.h.call(
                "GET",
                &format!("/api/v1/namespaces/default/deployments/{id}"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        if v["data"]["status"]["state"] == state {
            return v["data"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deployment not {state}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET of a path with a bearer token: status and body text.
async fn get_with(h: &Harness, method: &str, path: &str, token: &str) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// curl and sh as the fetcher image has them (curl 7.71+ for `--retry-all-errors`).
fn curl_usable() -> bool {
    let out = std::process::Command::new("curl").arg("--version").output();
    let Ok(out) = out else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let version: Vec<u32> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    version.as_slice() >= [7, 71].as_slice()
}

#[tokio::test]
async fn a_stored_jar_is_downloaded_with_a_token_of_that_artifact_only() {
    let _env = KUBE_ENV.lock().await;
    let logs = logs();
    // The manager's API on 127.0.0.1, where the init container's script downloads from.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = setup(Some(format!("http://{addr}"))).await;
    let router = s.h.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let store = job_manager::artifacts::dir(&s.dir.path().join("data"), "default");
    std::fs::write(store.join("other.jar"), b"PK other").unwrap();
    let jar = std::fs::read(store.join("test-job.jar")).unwrap();

    let (st, v) = create(
        &s.h,
        json!({"artifact": {"kind": "JAR", "jarUri": s.h.jar_uri, "flinkVersion": "1.20"},
               "parallelism": 1}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    reconcile_until(&s, &id, "RUNNING", true).await;
    let job = newest_job(&s.h).unwrap();
    let job_id = job.metadata.id;

    // The token is in the job's Secret, owned by the JobManager Job.
    let secret_name = format!("job-{job_id}-artifact-token");
    let secret: Secret =
        serde_json::from_value(s.fake.object("", "secrets", NS, &secret_name).unwrap()).unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert!(token.starts_with("jmdl_"), "a download token");
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].name,
        format!("job-{job_id}-jobmanager")
    );
    // The store keeps its hash and scope, not the token.
    let grant = job
        .status
        .cluster
        .as_ref()
        .unwrap()
        .kubernetes
        .as_ref()
        .unwrap();
    let grant = grant.artifact_token.clone().expect("the grant is recorded");
    assert_eq!(grant.sha256, hex::encode(Sha256::digest(token.as_bytes())));
    assert_eq!(
        (grant.namespace.as_str(), grant.artifact.as_str()),
        ("default", "test-job.jar")
    );
    let ttl = grant.expires_at - chrono::Utc::now();
    assert!(
        ttl > chrono::Duration::minutes(59) && ttl <= chrono::Duration::hours(1),
        "{ttl}"
    );
    // No other object carries it: the pods read it from the Secret by reference.
    let jm_value = s
        .fake
        .object("batch", "jobs", NS, &format!("job-{job_id}-jobmanager"))
        .unwrap();
    for (group, resource, name) in [
        ("batch", "jobs", format!("job-{job_id}-jobmanager")),
        ("apps", "deployments", format!("job-{job_id}-taskmanager")),
        ("", "configmaps", format!("job-{job_id}-config")),
        ("", "services", format!("job-{job_id}-jobmanager")),
    ] {
        let o = s
            .fake
            .object(group, resource, NS, &name)
            .unwrap()
            .to_string();
        assert!(!o.contains(&token), "{resource}/{name} holds the token");
    }
    let jm: K8sJob = serde_json::from_value(jm_value).unwrap();
    let init = jm
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap()[0]
        .clone();

    // The init container's own script and curl download exactly the JAR.
    if curl_usable() {
        let out_dir = tempfile::tempdir().unwrap();
        let target = out_dir.path().join("job.jar");
        let mut cmd = tokio::process::Command::new(&init.command.clone().unwrap()[0]);
        cmd.args(&init.command.clone().unwrap()[1..])
            .args(init.args.clone().unwrap())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for e in init.env.clone().unwrap() {
            let value = match (e.value, e.value_from) {
                (Some(v), _) => v,
                (None, Some(from)) => {
                    let r = from.secret_key_ref.unwrap();
                    assert_eq!(r.name, secret_name);
                    assert_eq!(r.key, "token");
                    token.clone()
                }
                _ => panic!("{} has no value", e.name),
            };
            cmd.env(&e.name, value);
        }
        cmd.env(fetch::PATH_ENV, &target);
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&target).unwrap(), jar);
    } else {
        eprintln!("skipping the init container's script: curl 7.71 or newer is not installed");
    }

    // The token itself, over the API: its artifact and nothing else.
    let download = "/artifacts/v1/namespaces/default/artifacts:download";
    let (st, body) = get_with(
        &s.h,
        "GET",
        &format!("{download}?filename=test-job.jar"),
        &token,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body.as_bytes(), jar.as_slice());
    let mut refused = vec![];
    for (method, path, want) in [
        ("GET", format!("{download}?filename=other.jar"), 403),
        (
            "GET",
            "/artifacts/v1/namespaces/team-b/artifacts:download?filename=test-job.jar".into(),
            403,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/deployments".to_string(),
            403,
        ),
        (
            "GET",
            "/artifacts/v1/namespaces/default/artifacts:list".to_string(),
            403,
        ),
        (
            "DELETE",
            "/artifacts/v1/namespaces/default/artifacts:delete?filename=test-job.jar".into(),
            403,
        ),
        ("POST", format!("{download}?filename=test-job.jar"), 405),
    ] {
        let (st, body) = get_with(&s.h, method, &path, &token).await;
        assert_eq!(st, want, "{method} {path}: {body}");
        assert!(!body.contains(&token), "{method} {path} echoes the token");
        refused.push(body);
    }
    assert!(
        refused[0].contains("allows only GET of artifact test-job.jar in namespace default"),
        "{}",
        refused[0]
    );
    assert!(
        refused[2].contains("download token allows only GET of its artifact"),
        "{}",
        refused[2]
    );
    assert!(store.join("test-job.jar").exists(), "nothing deleted");

    // Never in an API answer.
    for path in [
        format!("/api/v1/namespaces/default/deployments/{id}"),
        "/api/v1/namespaces/default/jobs".to_string(),
        format!("/api/v1/namespaces/default/jobs/{job_id}"),
        format!("/api/v1/namespaces/default/events?deploymentId={id}"),
    ] {
        let (st, v) = s.h.call("GET", &path, None).await;
        assert_eq!(st, 200, "{path}: {v}");
        assert!(!v.to_string().contains(&token), "{path} returns the token");
    }

    // Expired: the same token, once its recorded expiry has passed, is refused.
    let mut expired = job.clone();
    let k = expired
        .status
        .cluster
        .as_mut()
        .unwrap()
        .kubernetes
        .as_mut()
        .unwrap();
    k.artifact_token.as_mut().unwrap().expires_at =
        chrono::Utc::now() - chrono::Duration::seconds(1);
    s.h.state.store.write(vec![Write1::Job(expired)]).unwrap();
    let (st, body) = get_with(
        &s.h,
        "GET",
        &format!("{download}?filename=test-job.jar"),
        &token,
    )
    .await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("download token expired at"), "{body}");
    s.h.state
        .store
        .write(vec![Write1::Job(job.clone())])
        .unwrap();
    let (st, _) = get_with(
        &s.h,
        "GET",
        &format!("{download}?filename=test-job.jar"),
        &token,
    )
    .await;
    assert_eq!(st, 200);

    // Revoked with the cluster: cancel the deployment.
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "CANCELLED"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "CANCELLED", false).await;
    let (st, body) = get_with(
        &s.h,
        "GET",
        &format!("{download}?filename=test-job.jar"),
        &token,
    )
    .await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.fake.object("", "secrets", NS, &secret_name).is_some() {
        assert!(std::time::Instant::now() < deadline, "the Secret is left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Never logged (the log does hold the downloads and refusals).
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("Artifact downloaded with its job's download token."),
        "the capture works"
    );
    assert!(!text.contains(&token), "a log line holds the token");
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
    server.abort();
}

fn secret_token(s: &Setup, name: &str) -> String {
    let secret: Secret =
        serde_json::from_value(s.fake.object("", "secrets", NS, name).expect("the Secret"))
            .unwrap();
    String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap()
}

fn recorded_grant(s: &Setup) -> DownloadGrant {
    newest_job(&s.h)
        .and_then(|j| j.status.cluster)
        .and_then(|c| c.kubernetes)
        .and_then(|k| k.artifact_token)
        .expect("the grant is recorded")
}

#[tokio::test]
async fn the_token_is_renewed_while_the_job_runs_and_the_old_one_ends_at_its_expiry() {
    let _env = KUBE_ENV.lock().await;
    let ttl = Duration::from_secs(4);
    // Pods are not run here: the API answers in process.
    let s = setup_with(Some("http://127.0.0.1:9".into()), |c| {
        c.kubernetes.artifact_token_ttl = ttl;
    })
    .await;
    let store = job_manager::artifacts::dir(&s.dir.path().join("data"), "default");
    let jar = std::fs::read(store.join("test-job.jar")).unwrap();
    let jar = String::from_utf8_lossy(&jar).into_owned();
    let (st, v) = create(
        &s.h,
        json!({"artifact": {"kind": "JAR", "jarUri": s.h.jar_uri, "flinkVersion": "1.20"},
               "parallelism": 1}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    reconcile_until(&s, &id, "RUNNING", true).await;
    let job_id = newest_job(&s.h).unwrap().metadata.id;
    let secret_name = format!("job-{job_id}-artifact-token");
    let download = "/artifacts/v1/namespaces/default/artifacts:download?filename=test-job.jar";
    let old = secret_token(&s, &secret_name);
    let old_grant = recorded_grant(&s);
    assert_eq!(
        get_with(&s.h, "GET", download, &old).await,
        (200, jar.clone())
    );

    // More than half the lifetime left: an observation leaves the token alone.
    let half = chrono::Duration::from_std(ttl / 2).unwrap();
    s.h.controller.reconcile_all().await;
    if old_grant.expires_at - chrono::Utc::now() > half + chrono::Duration::milliseconds(300) {
        assert_eq!(secret_token(&s, &secret_name), old, "renewed too early");
        assert_eq!(recorded_grant(&s), old_grant);
    }

    // Less than half: the observation renews it, Secret first, then the record.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let new = loop {
        s.h.controller.reconcile_all().await;
        let t = secret_token(&s, &secret_name);
        if t != old {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token is not renewed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let renewed_at = chrono::Utc::now();
    assert!(
        old_grant.expires_at - renewed_at < half + chrono::Duration::milliseconds(200),
        "renewed with more than half the lifetime left"
    );
    assert!(new.starts_with("jmdl_"), "a download token");
    let new_grant = recorded_grant(&s);
    assert_eq!(
        new_grant.sha256,
        hex::encode(Sha256::digest(new.as_bytes()))
    );
    assert!(new_grant.expires_at > old_grant.expires_at);
    assert_eq!(
        (new_grant.namespace.as_str(), new_grant.artifact.as_str()),
        ("default", "test-job.jar")
    );
    // Still the job's Secret (owned by the JobManager Job, so deleted with it).
    let secret: Secret =
        serde_json::from_value(s.fake.object("", "secrets", NS, &secret_name).unwrap()).unwrap();
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].name,
        format!("job-{job_id}-jobmanager")
    );
    // A pod created now gets the new token, which downloads the JAR; one that read the
    // Secret just before still downloads with the old one.
    assert_eq!(
        get_with(&s.h, "GET", download, &new).await,
        (200, jar.clone())
    );
    assert_eq!(
        get_with(&s.h, "GET", download, &old).await,
        (200, jar.clone())
    );

    // The old one ends at its own expiry; the new one goes on.
    let wait = (old_grant.expires_at - chrono::Utc::now()).num_milliseconds() + 50;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let (st, body) = get_with(&s.h, "GET", download, &old).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("download token expired at"), "{body}");
    assert_eq!(
        get_with(&s.h, "GET", download, &new).await,
        (200, jar.clone())
    );

    // Torn down: the current token is refused.
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "CANCELLED"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "CANCELLED", false).await;
    let (st, body) = get_with(&s.h, "GET", download, &new).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
}

#[tokio::test]
async fn without_the_managers_url_a_stored_jar_fails_the_start_naming_the_setting() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(None).await;
    let (st, v) = create(
        &s.h,
        json!({"artifact": {"kind": "JAR", "jarUri": s.h.jar_uri}, "parallelism": 1}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let d = reconcile_until(&s, &id, "FAILED", false).await;
    let failure = d["status"]["failure"]["message"].to_string();
    assert!(failure.contains("kubernetes.manager_url"), "{failure}");
    assert!(
        failure.contains("spec.template.spec.artifact.jarUri"),
        "{failure}"
    );
    assert!(
        s.fake.names("batch", "jobs", NS).is_empty(),
        "nothing applied"
    );
    assert!(s.fake.names("", "secrets", NS).is_empty());
}

#[tokio::test]
async fn settings_a_kubernetes_target_does_not_apply_are_warnings() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(None).await;
    let body = json!({
        "metadata": {"name": "orders"},
        "spec": {"state": "CANCELLED", "deploymentTargetName": "ack",
                 "template": {"spec": {
                     "artifact": {"kind": "JAR", "jarUri": "https://repo.example.com/a.jar"},
                     "parallelism": 1,
                     "flinkConfiguration": {
                         "kubernetes.container.image": "flink:1.17",
                         "rest.port": "9999",
                         "execution.checkpointing.interval": "30s"
                     },
                     "kubernetes": {"pods": {"labels": {"team": "orders"}}}
                 }}}
    });
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/deployments")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = s.h.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let headers: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|h| h.to_str().unwrap().to_string())
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let warnings: Vec<String> = serde_json::from_value(v["warnings"].clone()).unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].starts_with(
            "spec.template.spec.flinkConfiguration[\"kubernetes.container.image\"] has no effect on deployment target \"ack\" (kubernetes): "
        ),
        "{warnings:#?}"
    );
    assert!(warnings[0].contains("flinkImageRegistry"), "{warnings:#?}");
    assert!(
        warnings[1]
            .starts_with("spec.template.spec.flinkConfiguration[\"rest.port\"] has no effect"),
        "{warnings:#?}"
    );
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(headers[0].starts_with("299 job-manager \""), "{headers:?}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("2 settings have no effect"),
        "{v}"
    );
    let id = v["data"]["metadata"]["id"].as_str().unwrap();
    let (st, ev) =
        s.h.call(
            "GET",
            &format!("/api/v1/namespaces/default/events?deploymentId={id}"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{ev}");
    assert!(
        ev.to_string().contains("SettingsWithoutEffect")
            && ev.to_string().contains("kubernetes.container.image"),
        "{ev}"
    );
}
