//! The Kubernetes deployment target end to end: the in-process manager (real API, store,
//! controller and Flink REST client) with `KUBECONFIG` pointing at the strict fake API
//! server, whose service proxy forwards to an in-process fake Flink: the manager sees its
//! jobs RUNNING, takes savepoints and cancels through the same path as on a real cluster
//! (`spec.kubernetes.flinkRest: proxy`). A target created with VVP's body, a deployment on
//! it: its objects applied with the suite's labels, RUNNING once the JobManager runs the
//! job, CANCELLED deletes them (and stops the namespace's watch); an image that cannot be
//! pulled fails the start with the kubelet's message; pods waiting for a node or in a crash
//! loop hold the start up to the pod condition timeout (the controller's clock is moved by
//! hand); a resume after SUSPENDED restores from the savepoint; a manager that dies between
//! applying the objects and recording them adopts them in its next life.

#[path = "support/fake_kube.rs"]
mod fake_kube;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use fake_kube::{FakeKube, Scenario};
use job_manager::{
    clock::Clock,
    flink::{fake::FakeFlink, rest::RestFlink, Flink},
    testing::Harness,
    Config,
};
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

/// The controller's wall clock, moved by the test (the fake API server and the HTTP
/// clients keep real time).
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

struct Setup {
    h: Harness<RestFlink>,
    /// The Flink behind the JobManager Services.
    flink: Arc<FakeFlink>,
    fake: FakeKube,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A new life of the manager on the same data, cluster and clock.
    fn restart(self) -> Setup {
        let Setup {
            h,
            flink,
            fake,
            clock,
            _dir,
        } = self;
        drop(h);
        let h = manager(_dir.path(), clock.clone());
        Setup {
            h,
            flink,
            fake,
            clock,
            _dir,
        }
    }
}

fn manager(dir: &std::path::Path, clock: Arc<ManualClock>) -> Harness<RestFlink> {
    Harness::open_with_clock(
        &dir.join("data"),
        Arc::new(RestFlink::new(Duration::from_secs(5))),
        config(),
        clock,
    )
}

/// The manager over the fake cluster, with target `ack` (`target` as its `spec.kubernetes`
/// beyond the namespace).
async fn setup_with(scenario: Scenario, target: Value) -> Setup {
    let fake = FakeKube::start(scenario, &[NS]).await;
    let flink = Arc::new(FakeFlink::new());
    fake.serve_flink(flink.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(dir.path(), &fake);
    std::env::set_var("KUBECONFIG", &path);
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let h = manager(dir.path(), clock.clone());
    let mut spec = json!({"namespace": NS, "flinkRest": "proxy"});
    for (k, v) in target.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(json!({"metadata": {"name": "ack"}, "spec": {"kubernetes": spec}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    Setup {
        h,
        flink,
        fake,
        clock,
        _dir: dir,
    }
}

async fn setup(scenario: Scenario) -> Setup {
    setup_with(scenario, json!({})).await
}

async fn create<F: Flink>(h: &Harness<F>) -> String {
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

async fn deployment<F: Flink>(h: &Harness<F>, id: &str) -> Value {
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
fn newest_job<F: Flink>(h: &Harness<F>) -> Option<(String, String)> {
    let t = h.state.store.read();
    t.jobs
        .values()
        .max_by_key(|j| j.metadata.created_at)
        .map(|j| (j.metadata.id.to_string(), j.status.flink_job_id.clone()))
}

/// Reconciles until the deployment is in `state`. The manager learns everything from the
/// fake cluster: the pods from its watch, the job's status from Flink behind the service
/// proxy.
async fn reconcile_until(s: &Setup, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.h.controller.reconcile_all().await;
        let d = deployment(&s.h, id).await;
        if d["status"]["state"] == state {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deployment not {state}: {d}\nevents: {:?}",
            events(&s.h)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reconciles until an event matching `pred` was recorded; returns it.
async fn event_until(s: &Setup, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.h.controller.reconcile_all().await;
        if let Some(e) = events(&s.h).into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such event: {:?}",
            events(&s.h)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events<F: Flink>(h: &Harness<F>) -> Vec<String> {
    let t = h.state.store.read();
    t.events
        .values()
        .flatten()
        .map(|e| format!("{}: {}", e.spec.name, e.spec.message))
        .collect()
}

/// Waits (real time) until `pred` holds.
async fn eventually(what: &str, pred: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pred() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_vvp_kubernetes_target_runs_and_cancels_a_deployment() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Healthy).await;
    // A target created with exactly VVP's body reads back in VVP's shape (no `type`).
    let body = json!({"metadata":{"name":"vvp"},"spec":{"kubernetes":{"namespace":"flink-jobs"}}});
    let (st, v) =
        s.h.call(
            "POST",
            "/api/v1/namespaces/default/deployment-targets",
            Some(body),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) =
        s.h.call(
            "GET",
            "/api/v1/namespaces/default/deployment-targets/vvp",
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["spec"], json!({"kubernetes": {"namespace": NS}}));

    let id = create(&s.h).await;
    reconcile_until(&s, &id, "RUNNING").await;
    let (job, fid) = newest_job(&s.h).unwrap();
    // The manager asked Flink, through the API server's service proxy, about the job the
    // JobManager runs; it neither uploaded nor submitted anything (application mode).
    let asked = s.fake.proxy_calls();
    assert!(
        asked.iter().any(|c| c.method == "GET"
            && c.path == format!("/jobs/{fid}")
            && c.service == format!("job-{job}-jobmanager:rest")),
        "{asked:?}"
    );
    assert!(!s.flink.calls_of("job_status").is_empty());
    assert!(s.flink.calls_of("upload_jar").is_empty());
    assert!(s.flink.calls_of("run_jar").is_empty());
    assert_eq!(
        s.flink.jobs().keys().cloned().collect::<Vec<_>>(),
        vec![fid.clone()]
    );

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
    // The savepoint directory comes from the config's base.
    let cm = s
        .fake
        .object("", "configmaps", NS, &format!("job-{job}-config"))
        .unwrap()
        .to_string();
    assert!(
        cm.contains(&format!("oss://bucket/flink-savepoints/default/{id}")),
        "{cm}"
    );
    // One watch of the namespace while it has a job.
    assert_eq!(s.fake.open_watches(), 1);

    // CANCELLED: Flink cancels the job (through the proxy), the objects are deleted, and
    // with its last job gone the namespace is no longer watched.
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "CANCELLED"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "CANCELLED").await;
    assert_eq!(s.flink.calls_of("cancel").len(), 1);
    assert!(s
        .fake
        .proxy_calls()
        .iter()
        .any(|c| c.method == "PATCH" && c.path == format!("/jobs/{fid}")));
    assert_eq!(s.flink.jobs()[&fid].status, "CANCELED");
    eventually("objects deleted", || {
        s.fake.names("batch", "jobs", NS).is_empty()
            && s.fake.names("apps", "deployments", NS).is_empty()
            && s.fake.names("", "services", NS).is_empty()
            && s.fake.names("", "configmaps", NS).is_empty()
    })
    .await;
    eventually("the namespace's watch closed", || {
        s.fake.open_watches() == 0
    })
    .await;

    // A new job in the namespace watches it again.
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "RUNNING"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "RUNNING").await;
    assert_eq!(s.fake.open_watches(), 1);
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_start_with_the_kubelets_message() {
    let _env = KUBE_ENV.lock().await;
    // The registry says the image does not exist: no wait can help, the start fails at once.
    let s = setup(Scenario::ImagePullBackOff).await;
    let id = create(&s.h).await;
    let d = reconcile_until(&s, &id, "FAILED").await;
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
async fn unschedulable_pods_wait_for_the_autoscaler_and_the_job_runs_once_they_are_scheduled() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Unschedulable).await;
    let id = create(&s.h).await;
    // At once: an event with the scheduler's words, naming the pod.
    let e = event_until(&s, |e| e.contains("Unschedulable")).await;
    let (job, _) = newest_job(&s.h).unwrap();
    assert!(e.starts_with("ClusterNotReady: "), "{e}");
    assert!(e.contains(&format!("job-{job}-jobmanager-0")), "{e}");
    assert!(
        e.contains("0/3 nodes are available: 3 Insufficient cpu"),
        "{e}"
    );
    assert!(e.contains("the start fails if this lasts 5m"), "{e}");
    // Four minutes later (longer than the cluster start timeout, shorter than the pod
    // condition timeout) the start still waits, and said so once.
    s.clock.advance(Duration::from_secs(240));
    for _ in 0..3 {
        s.h.controller.reconcile_all().await;
    }
    let d = deployment(&s.h, &id).await;
    assert_eq!(d["status"]["state"], "TRANSITIONING", "{d}");
    let waiting = events(&s.h)
        .into_iter()
        .filter(|e| e.contains("Unschedulable"))
        .count();
    assert_eq!(waiting, 1, "{:?}", events(&s.h));
    // The autoscaler's node arrives: the pods run, the JobManager runs the job.
    s.fake.heal_pods(NS);
    reconcile_until(&s, &id, "RUNNING").await;
    assert!(
        !events(&s.h)
            .iter()
            .any(|e| e.starts_with("JobCreationFailed")),
        "{:?}",
        events(&s.h)
    );
}

#[tokio::test]
async fn a_pod_condition_that_lasts_past_the_targets_bound_fails_the_start_with_its_message() {
    let _env = KUBE_ENV.lock().await;
    let s = setup_with(
        Scenario::CrashLoopBackOff,
        json!({"podConditionTimeout": "2m"}),
    )
    .await;
    let id = create(&s.h).await;
    let e = event_until(&s, |e| e.contains("CrashLoopBackOff")).await;
    assert!(e.contains("keeps crashing"), "{e}");
    assert!(e.contains("the start fails if this lasts 2m"), "{e}");
    s.clock.advance(Duration::from_secs(90));
    s.h.controller.reconcile_all().await;
    let d = deployment(&s.h, &id).await;
    assert_eq!(d["status"]["state"], "TRANSITIONING", "{d}");
    s.clock.advance(Duration::from_secs(31));
    let d = reconcile_until(&s, &id, "FAILED").await;
    let failure = d["status"]["failure"]["message"].to_string();
    assert!(
        failure.contains("CrashLoopBackOff for 2m (the pod condition timeout)"),
        "{failure}"
    );
    assert!(
        failure.contains("Could not find or load main class com.example.Missing"),
        "{failure}"
    );
    // The failed job's objects are deleted.
    eventually("objects deleted", || {
        s.fake.names("batch", "jobs", NS).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_resume_after_suspend_restores_from_the_savepoint() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Healthy).await;
    let id = create(&s.h).await;
    reconcile_until(&s, &id, "RUNNING").await;
    let (first, first_fid) = newest_job(&s.h).unwrap();
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "SUSPENDED"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "SUSPENDED").await;
    // Stop-with-savepoint went to Flink through the proxy, into the target's directory.
    let stop = s
        .fake
        .proxy_calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.path == format!("/jobs/{first_fid}/stop"))
        .expect("stop-with-savepoint through the proxy");
    let body: Value = serde_json::from_slice(&stop.body).unwrap();
    assert_eq!(
        body["targetDirectory"],
        format!("oss://bucket/flink-savepoints/default/{id}")
    );
    assert_eq!(s.flink.calls_of("stop_with_savepoint").len(), 1);
    let location = {
        let t = s.h.state.store.read();
        t.savepoints
            .values()
            .find_map(|sp| sp.status.location.clone())
            .expect("the savepoint recorded")
    };
    // The next job is newer.
    s.clock.advance(Duration::from_secs(1));
    let (st, v) =
        s.h.call(
            "PATCH",
            &format!("/api/v1/namespaces/default/deployments/{id}"),
            Some(json!({"spec": {"state": "RUNNING"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    reconcile_until(&s, &id, "RUNNING").await;
    let (second, second_fid) = newest_job(&s.h).unwrap();
    assert_ne!(first, second);
    let jm = s
        .fake
        .object("batch", "jobs", NS, &format!("job-{second}-jobmanager"))
        .unwrap();
    let args = jm["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains(&format!("\"--fromSavepoint\",\"{location}\"")),
        "{args}"
    );
    // Flink restored the new job from it.
    assert_eq!(
        s.flink.jobs()[&second_fid]
            .request
            .savepoint_path
            .as_deref(),
        Some(location.as_str())
    );
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
    let d = reconcile_until(&s, &id, "FAILED").await;
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
    // Nothing of the job is left to watch.
    eventually("the namespace's watch closed", || {
        s.fake.open_watches() == 0
    })
    .await;
}

#[tokio::test]
async fn a_missing_namespace_fails_the_start_saying_so() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::NamespaceMissing).await;
    let id = create(&s.h).await;
    let d = reconcile_until(&s, &id, "FAILED").await;
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
    // The pods wait for a node: the start is in progress when the manager restarts.
    let s = setup(Scenario::Unschedulable).await;
    let id = create(&s.h).await;
    event_until(&s, |e| e.contains("Unschedulable")).await;
    let (job, fid) = newest_job(&s.h).unwrap();
    let s = s.restart();
    s.fake.heal_pods(NS);
    reconcile_until(&s, &id, "RUNNING").await;
    let (again, again_fid) = newest_job(&s.h).unwrap();
    assert_eq!(
        (&job, &fid),
        (&again, &again_fid),
        "the restarted manager started another job"
    );
    for (resource, name) in [
        ("jobs", format!("job-{job}-jobmanager")),
        ("configmaps", format!("job-{job}-config")),
        ("services", format!("job-{job}-jobmanager")),
        ("deployments", format!("job-{job}-taskmanager")),
    ] {
        assert_eq!(s.fake.creates(resource, &name), 1, "{resource}/{name}");
    }
    assert_eq!(s.flink.jobs().len(), 1);
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
}

#[tokio::test]
async fn a_manager_that_dies_between_applying_and_recording_adopts_the_objects() {
    let _env = KUBE_ENV.lock().await;
    let s = setup(Scenario::Healthy).await;
    let id = create(&s.h).await;
    // The TaskManager Deployment is the last object applied: the manager dies waiting for
    // the API server's answer, after the JobManager Job exists and before the cluster is
    // recorded in the store.
    let arrived = s.fake.hold_applies("deployments");
    let controller = s.h.controller.clone();
    let life = tokio::spawn(async move {
        loop {
            controller.reconcile_all().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the TaskManager Deployment was never applied");
    life.abort();
    let _ = life.await;
    let (job, fid) = newest_job(&s.h).unwrap();
    {
        let t = s.h.state.store.read();
        let j = t.jobs.values().next().unwrap();
        assert!(
            j.status.cluster.is_none(),
            "the cluster was recorded: {:?}",
            j.status
        );
    }
    let jm = format!("job-{job}-jobmanager");
    assert!(s.fake.object("batch", "jobs", NS, &jm).is_some());
    s.fake.release_applies();

    let s = s.restart();
    reconcile_until(&s, &id, "RUNNING").await;
    // The same job, its JobManager Job created once and running the job id fixed before
    // the crash; Flink ran one job, nothing was submitted.
    assert_eq!(newest_job(&s.h), Some((job.clone(), fid.clone())));
    assert_eq!(s.fake.creates("jobs", &jm), 1);
    assert_eq!(s.fake.names("batch", "jobs", NS), vec![jm.clone()]);
    assert_eq!(
        s.fake
            .creates("deployments", &format!("job-{job}-taskmanager")),
        1
    );
    let args = s.fake.object("batch", "jobs", NS, &jm).unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["args"]
        .to_string();
    assert!(args.contains(&format!("\"--job-id\",\"{fid}\"")), "{args}");
    assert_eq!(
        s.flink.jobs().keys().cloned().collect::<Vec<_>>(),
        vec![fid]
    );
    assert!(s.flink.calls_of("run_jar").is_empty());
    assert!(s.fake.violations().is_empty(), "{:?}", s.fake.violations());
}
