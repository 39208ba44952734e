//! The Kubernetes deployment target end to end: the in-process manager (real API, store and
//! controller; Flink faked in process) with `KUBECONFIG` pointing at the strict fake API
//! server. A target created with VVP's body, a deployment on it: its objects applied with
//! the suite's labels, RUNNING once the JobManager runs the job, CANCELLED deletes them; an
//! image that cannot be pulled fails the start with the kubelet's message; a resume after
//! SUSPENDED restores from the savepoint.

#[path = "support/fake_kube.rs"]
mod fake_kube;

use std::{sync::Arc, time::Duration};

use fake_kube::{FakeKube, Scenario};
use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
use serde_json::{json, Value};

const NS: &str = "flink-jobs";

/// `KUBECONFIG` is process-wide: one scenario at a time sets and uses it.
static KUBE_ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A kubeconfig whose current context is the fake API server.
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

fn config() -> Config {
    let mut c = Config::default();
    c.artifacts.remote.allowed_schemes = vec!["https".into()];
    c.artifacts.remote.allowed_hosts = vec!["repo.example.com".into()];
    c.kubernetes.savepoint_base = Some("oss://bucket/flink-savepoints".into());
    c
}

struct Setup {
    h: Harness,
    flink: Arc<FakeFlink>,
    fake: FakeKube,
    _dir: tempfile::TempDir,
}

async fn setup(scenario: Scenario) -> Setup {
    let fake = FakeKube::start(scenario, &[NS]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(dir.path(), &fake);
    std::env::set_var("KUBECONFIG", &path);
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(&dir.path().join("data"), flink.clone(), config());
    // Exactly VVP's body.
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(
                json!({"metadata":{"name":"ack"},"spec":{"kubernetes":{"namespace":"flink-jobs"}}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    Setup {
        h,
        flink,
        fake,
        _dir: dir,
    }
}

async fn create(h: &Harness) -> String {
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(json!({
                "metadata": {"name": "orders"},
                "spec": {
                    "state": "RUNNING",
                    "deploymentTargetName": "ack",
                    "upgradeStrategy": {"kind": "STATEFUL"},
                    "restoreStrategy": {"kind": "LATEST_SAVEPOINT"},
                    "template": {"spec": {
                        "artifact": {"kind": "JAR", "jarUri": "https://repo.example.com/orders-1.0.jar",
                                     "entryClass": "com.example.Orders", "flinkVersion": "1.17"},
                        "parallelism": 1,
                        "kubernetes": {"pods": {"labels": {"team": "orders"}}}
                    }}
                }
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["metadata"]["id"].as_str().unwrap().to_string()
}

async fn deployment(h: &Harness, id: &str) -> Value {
    let (s, v) = h
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

/// The newest job of the deployment: (job id, Flink job id).
fn newest_job(h: &Harness) -> Option<(String, String)> {
    let t = h.state.store.read();
    t.jobs
        .values()
        .max_by_key(|j| j.metadata.created_at)
        .map(|j| (j.metadata.id.to_string(), j.status.flink_job_id.clone()))
}

/// Reconciles until the deployment is in `state`; with `jm_runs_job`, the JobManager starts
/// the job once its Job object exists (as Flink's standalone-job entry point does).
async fn reconcile_until(s: &Setup, id: &str, state: &str, jm_runs_job: bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.h.controller.reconcile_all().await;
        if jm_runs_job {
            if let Some((job, fid)) = newest_job(&s.h) {
                let jm = format!("job-{job}-jobmanager");
                if s.fake.object("batch", "jobs", NS, &jm).is_some() {
                    s.flink.start_application_job(&fid);
                }
            }
        }
        let d = deployment(&s.h, id).await;
        if d["status"]["state"] == state {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deployment not {state}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(h: &Harness) -> Vec<String> {
    let t = h.state.store.read();
    t.events
        .values()
        .flatten()
        .map(|e| format!("{}: {}", e.spec.name, e.spec.message))
        .collect()
}

#[tokio::test]
async fn a_vvp_kubernetes_target_runs_and_cancels_a_deployment() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Healthy).await;
    // The target reads back in VVP's shape (no `type`).
    let (st, v) =
        s.h.call(
            "GET",
            "/api/v1/namespaces/default/deployment-targets/ack",
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["spec"], json!({"kubernetes": {"namespace": NS}}));

    let id = create(&s.h).await;
    reconcile_until(&s, &id, "RUNNING", true).await;
    let (job, fid) = newest_job(&s.h).unwrap();
    // Application mode: the manager neither uploaded nor submitted anything.
    assert!(s.flink.calls_of("upload_jar").is_empty());
    assert!(s.flink.calls_of("run_jar").is_empty());

    for (group, resource, name) in [
        ("", "configmaps", format!("job-{job}-config")),
        ("batch", "jobs", format!("job-{job}-jobmanager")),
        ("", "services", format!("job-{job}-jobmanager")),
        ("apps", "deployments", format!("job-{job}-taskmanager")),
    ] {
        let o = s
            .fake
            .object(group, resource, NS, &name)
            .unwrap_or_else(|| panic!("{resource}/{name} was not applied"));
        let l = &o["metadata"]["labels"];
        assert_eq!(l["app.kubernetes.io/part-of"], "flink-suite", "{resource}");
        assert_eq!(l["flink-suite.io/deployment-id"], id.as_str(), "{resource}");
        assert_eq!(l["flink-suite.io/job-id"], job.as_str(), "{resource}");
        if resource == "jobs" || resource == "deployments" {
            let pod = &o["spec"]["template"]["metadata"]["labels"];
            assert_eq!(pod["app.kubernetes.io/part-of"], "flink-suite");
            assert_eq!(pod["flink-suite.io/deployment-id"], id.as_str());
            assert_eq!(pod["flink-suite.io/job-id"], job.as_str());
            assert_eq!(pod["team"], "orders", "{resource}: {pod}");
        }
    }
    // The JobManager runs the job under the id the manager fixed, with the savepoint
    // directory from the config's base.
    let jm = s
        .fake
        .object("batch", "jobs", NS, &format!("job-{job}-jobmanager"))
        .unwrap();
    let args = jm["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains(&fid), "{args}");
    let cm = s
        .fake
        .object("", "configmaps", NS, &format!("job-{job}-config"))
        .unwrap()
        .to_string();
    assert!(
        cm.contains(&format!("oss://bucket/flink-savepoints/default/{id}")),
        "{cm}"
    );

    // CANCELLED: Flink cancels the job, the objects are deleted.
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "CANCELLED"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "CANCELLED", false).await;
    assert_eq!(s.flink.calls_of("cancel").len(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !s.fake.names("batch", "jobs", NS).is_empty()
        || !s.fake.names("apps", "deployments", NS).is_empty()
        || !s.fake.names("", "services", NS).is_empty()
        || !s.fake.names("", "configmaps", NS).is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "objects left: {:?}",
            s.fake.names("batch", "jobs", NS)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_start_with_the_kubelets_message() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::ImagePullBackOff).await;
    let id = create(&s.h).await;
    let d = reconcile_until(&s, &id, "FAILED", false).await;
    let failure = d["status"]["failure"]["message"].to_string();
    assert!(failure.contains("ImagePullBackOff"), "{failure}");
    assert!(failure.contains("Back-off pulling image"), "{failure}");
    assert!(
        events(&s.h)
            .iter()
            .any(|e| e.contains("Back-off pulling image")),
        "{:?}",
        events(&s.h)
    );
}

#[tokio::test]
async fn a_resume_after_suspend_restores_from_the_savepoint() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Healthy).await;
    let id = create(&s.h).await;
    reconcile_until(&s, &id, "RUNNING", true).await;
    let (first, _) = newest_job(&s.h).unwrap();
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "SUSPENDED"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "SUSPENDED", false).await;
    assert_eq!(s.flink.calls_of("stop_with_savepoint").len(), 1);
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "RUNNING"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "RUNNING", true).await;
    let (second, _) = newest_job(&s.h).unwrap();
    assert_ne!(first, second);
    let jm = s
        .fake
        .object("batch", "jobs", NS, &format!("job-{second}-jobmanager"))
        .unwrap();
    let args = jm["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--fromSavepoint"), "{args}");
}

#[tokio::test]
async fn a_missing_permission_fails_the_start_naming_the_verb_and_resource() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Forbidden {
        verb: "patch",
        resource: "services",
    })
    .await;
    let id = create(&s.h).await;
    let d = reconcile_until(&s, &id, "FAILED", false).await;
    let failure = d["status"]["failure"]["message"].to_string();
    assert!(
        failure.contains("not allowed to patch services in Kubernetes namespace flink-jobs"),
        "{failure}"
    );
    assert!(
        events(&s.h)
            .iter()
            .any(|e| e.contains("job-manager rbac --namespace flink-jobs")),
        "{:?}",
        events(&s.h)
    );
}

#[tokio::test]
async fn a_missing_namespace_fails_the_start_saying_so() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::NamespaceMissing).await;
    let id = create(&s.h).await;
    let d = reconcile_until(&s, &id, "FAILED", false).await;
    let failure = d["status"]["failure"]["message"].to_string();
    assert!(
        failure.contains("Kubernetes namespace flink-jobs does not exist"),
        "{failure}"
    );
}

#[tokio::test]
async fn an_api_server_that_does_not_answer_holds_the_start_up_until_the_start_timeout() {
    let _env = KUBE_ENV.lock().await;
    // A port nothing listens on: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ack\n\
             clusters:\n- name: ack\n  cluster: {{server: \"http://{closed}\"}}\n\
             users:\n- name: ci\n  user: {{token: t}}\n\
             contexts:\n- name: ack\n  context: {{cluster: ack, user: ci}}\n"
        ),
    )
    .unwrap();
    std::env::set_var("KUBECONFIG", &path);
    let mut c = config();
    c.controller.cluster_start_timeout = Duration::from_secs(1);
    let flink = Arc::new(FakeFlink::new());
    let h = Harness::open(&dir.path().join("data"), flink, c);
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(
                json!({"metadata":{"name":"ack"},"spec":{"kubernetes":{"namespace":"flink-jobs"}}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = create(&h).await;
    h.controller.reconcile_all().await;
    h.controller.reconcile_all().await;
    let d = deployment(&h, &id).await;
    assert_ne!(d["status"]["state"], "FAILED", "{d}");
    assert!(
        events(&h)
            .iter()
            .any(|e| e.starts_with("ClusterNotReady") && e.contains("Kubernetes API unavailable")),
        "{:?}",
        events(&h)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.controller.reconcile_all().await;
    let d = deployment(&h, &id).await;
    assert_eq!(d["status"]["state"], "FAILED", "{d}");
    let failure = d["status"]["failure"]["message"].to_string();
    assert!(failure.contains("Kubernetes API unavailable"), "{failure}");
}

#[tokio::test]
async fn a_manager_restarted_mid_start_adopts_the_objects_and_creates_nothing_twice() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Healthy).await;
    let id = create(&s.h).await;
    // The objects are applied; the JobManager has not started the job yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (job, _) = loop {
        s.h.controller.reconcile_all().await;
        if let Some((job, fid)) = newest_job(&s.h) {
            if s.fake
                .object("batch", "jobs", NS, &format!("job-{job}-jobmanager"))
                .is_some()
            {
                break (job, fid);
            }
        }
        assert!(std::time::Instant::now() < deadline, "nothing applied");
    };
    let Setup {
        h,
        flink,
        fake,
        _dir,
    } = s;
    drop(h);
    // A new life of the manager on the same data.
    let h = Harness::open(&_dir.path().join("data"), flink.clone(), config());
    let s = Setup {
        h,
        flink,
        fake,
        _dir,
    };
    reconcile_until(&s, &id, "RUNNING", true).await;
    let (again, _) = newest_job(&s.h).unwrap();
    assert_eq!(job, again, "the restarted manager started another job");
    for (resource, name) in [
        ("jobs", format!("job-{job}-jobmanager")),
        ("configmaps", format!("job-{job}-config")),
        ("services", format!("job-{job}-jobmanager")),
        ("deployments", format!("job-{job}-taskmanager")),
    ] {
        assert_eq!(s.fake.creates(resource, &name), 1, "{resource}/{name}");
    }
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
}
