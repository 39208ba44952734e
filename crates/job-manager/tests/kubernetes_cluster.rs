//! Scenario tests of the Kubernetes target's live client against a strict fake API server
//! (`support/fake_kube.rs`): start, adoption after a crash, pod failures turned into
//! conditions, a missing namespace, a forbidden verb, teardown, Flink REST through the
//! service proxy, and every request covered by the RBAC rules the manager prints.

#[path = "support/fake_kube.rs"]
mod fake_kube;

use std::time::Duration;

use axum::http::Method;
use common::labels::{self, Component};
use fake_kube::{Access, FakeKube, Scenario};
use job_manager::kubernetes::{
    cluster::{DownloadToken, Error, FlinkRestAccess, JobRef, KubeCluster},
    observe::{ClusterObservation, Reason},
    rbac, JobObjects, JobRequest, Settings,
};
use job_manager::{kubernetes, model::Deployment};
use serde_json::json;
use uuid::Uuid;

const NS: &str = "flink-jobs";
const JOB: &str = "0b7a3f2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b";
const DEPLOYMENT: &str = "5d6b1f6e-0000-4000-8000-000000000001";
const IMAGE: &str = "flink:1.17-scala_2.12-java11";

fn job() -> JobRef {
    JobRef {
        namespace: NS.into(),
        job_id: JOB.parse().unwrap(),
    }
}

/// The objects of one job as the render module builds them for a small deployment.
fn objects() -> JobObjects {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "orders", "namespace": "default", "id": DEPLOYMENT},
        "spec": {"template": {"spec": {
            "artifact": {"kind": "JAR", "jarUri": "https://repo.example.com/orders-1.0.jar",
                         "entryClass": "com.example.Orders", "flinkVersion": "1.17"},
            "parallelism": 2,
            "flinkConfiguration": {"taskmanager.numberOfTaskSlots": "1"},
        }}},
    }))
    .unwrap();
    let job_id: Uuid = JOB.parse().unwrap();
    let o = kubernetes::build(
        &JobRequest {
            deployment: &deployment,
            target_namespace: NS,
            job_id,
            flink_job_id: job_id.simple().to_string(),
            restore: None,
            savepoint_dir: None,
            checkpoint_dir: None,
            metrics_gateway_url: None,
            artifact_store: None,
        },
        &Settings::default(),
    )
    .unwrap();
    let image = o
        .jobmanager
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some(IMAGE));
    o
}

async fn start(scenario: Scenario) -> (FakeKube, KubeCluster) {
    let fake = FakeKube::start(scenario, &[NS]).await;
    let cluster = KubeCluster::new(fake.client(), &fake.url(), FlinkRestAccess::Proxy);
    (fake, cluster)
}

/// Waits (on the watcher's change signal, not a poll) until `pred` holds.
async fn wait_for(
    cluster: &KubeCluster,
    pred: impl Fn(&ClusterObservation) -> bool,
) -> ClusterObservation {
    let watch = cluster.watch_job(&job());
    let mut changes = watch.changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let obs = cluster.observe(&job());
        if pred(&obs) {
            return obs;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!("observation never matched; last: {obs:#?}");
        }
    }
}

/// Every request the fake saw is allowed by the manager's RBAC rules.
fn assert_rbac_covers(fake: &FakeKube) {
    let missing: Vec<Access> = fake
        .accesses()
        .into_iter()
        .filter(|a| !rbac::allows(&a.group, &a.resource, &a.verb))
        .collect();
    assert!(
        missing.is_empty(),
        "requests outside the RBAC rules: {missing:?}"
    );
    assert!(
        fake.violations().is_empty(),
        "the fake refused requests: {:?}",
        fake.violations()
    );
}

#[tokio::test]
async fn start_applies_the_objects_in_order_labelled_and_owned_by_the_jobmanager_job() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    let uid = cluster.ensure(&job(), &objects(), None).await.unwrap();
    assert_eq!(
        fake.created_order(),
        [
            format!("configmaps/job-{JOB}-config"),
            format!("jobs/job-{JOB}-jobmanager"),
            format!("services/job-{JOB}-jobmanager"),
            format!("deployments/job-{JOB}-taskmanager"),
        ]
    );
    let job_obj = fake
        .object("batch", "jobs", NS, &format!("job-{JOB}-jobmanager"))
        .unwrap();
    assert_eq!(job_obj["metadata"]["uid"], uid.as_str());
    for (group, resource, name) in [
        ("", "configmaps", format!("job-{JOB}-config")),
        ("", "services", format!("job-{JOB}-jobmanager")),
        ("apps", "deployments", format!("job-{JOB}-taskmanager")),
    ] {
        let o = fake.object(group, resource, NS, &name).unwrap();
        let refs = &o["metadata"]["ownerReferences"];
        assert_eq!(refs[0]["uid"], uid.as_str(), "{resource}: {refs}");
        assert_eq!(refs[0]["kind"], "Job");
        assert_eq!(refs[0]["controller"], true);
        assert_eq!(o["metadata"]["labels"][labels::JOB_ID], JOB);
    }
    // The JobManager and two TaskManagers come up; the watcher sees them.
    let obs = wait_for(&cluster, |o| o.pods.len() == 3 && o.jobmanager_ready()).await;
    assert!(obs.synced);
    assert!(obs.conditions.is_empty(), "{:?}", obs.conditions);
    assert_eq!(
        obs.pods
            .iter()
            .filter(|p| p.component == Some(Component::TaskManager))
            .count(),
        2
    );
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_restarted_manager_adopts_a_half_started_job_and_creates_nothing_twice() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    // The first manager applied the ConfigMap and the Job, then died.
    let objs = objects();
    let pp = kube::api::PatchParams::apply("job-manager").force();
    let raw = fake.client();
    kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(raw.clone(), NS)
        .patch(
            &format!("job-{JOB}-config"),
            &pp,
            &kube::api::Patch::Apply(&objs.config_map),
        )
        .await
        .unwrap();
    let first = kube::Api::<k8s_openapi::api::batch::v1::Job>::namespaced(raw, NS)
        .patch(
            &format!("job-{JOB}-jobmanager"),
            &pp,
            &kube::api::Patch::Apply(&objs.jobmanager),
        )
        .await
        .unwrap();
    let creates_before = fake.total_creates();

    // The new manager (a new client) starts the same job.
    let uid = cluster.ensure(&job(), &objs, None).await.unwrap();
    assert_eq!(Some(uid.clone()), first.metadata.uid, "the Job was adopted");
    // And once more, as a reconcile pass after a second crash would.
    let restarted = KubeCluster::new(fake.client(), &fake.url(), FlinkRestAccess::Proxy);
    assert_eq!(restarted.ensure(&job(), &objs, None).await.unwrap(), uid);

    for (resource, name) in [
        ("configmaps", format!("job-{JOB}-config")),
        ("jobs", format!("job-{JOB}-jobmanager")),
        ("services", format!("job-{JOB}-jobmanager")),
        ("deployments", format!("job-{JOB}-taskmanager")),
        ("pods", format!("job-{JOB}-jobmanager-0")),
    ] {
        assert_eq!(fake.creates(resource, &name), 1, "{resource}/{name}");
    }
    // Only the Service, the Deployment and its two pods are new.
    assert_eq!(fake.total_creates(), creates_before + 4);
    let cm = fake
        .object("", "configmaps", NS, &format!("job-{JOB}-config"))
        .unwrap();
    assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], uid.as_str());
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn objects_carrying_a_stale_resource_version_still_apply() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    // Objects read back earlier (e.g. from a previous life) carry an old resourceVersion;
    // sent as is, the API server would take it as a precondition and answer 409.
    let mut stale = objects();
    stale.jobmanager.metadata.resource_version = Some("1".into());
    stale.service.metadata.resource_version = Some("1".into());
    stale.taskmanager.metadata.resource_version = Some("1".into());
    stale.config_map.metadata.resource_version = Some("1".into());
    cluster.ensure(&job(), &stale, None).await.unwrap();
    assert_rbac_covers(&fake);
}

async fn condition_of(scenario: Scenario, reason: Reason) -> (String, Option<String>) {
    let (fake, cluster) = start(scenario).await;
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    let obs = wait_for(&cluster, |o| {
        o.conditions.iter().any(|c| c.reason == reason)
    })
    .await;
    let c = obs.worst().unwrap().clone();
    assert_eq!(c.reason, reason, "most severe first: {:?}", obs.conditions);
    assert!(!obs.jobmanager_ready());
    assert_rbac_covers(&fake);
    (c.message, c.pod)
}

#[tokio::test]
async fn image_pull_back_off_becomes_a_condition_with_the_kubelets_message() {
    let (msg, pod) = condition_of(Scenario::ImagePullBackOff, Reason::ImagePullBackOff).await;
    assert_eq!(pod.as_deref(), Some(&*format!("job-{JOB}-jobmanager-0")));
    assert!(msg.contains(&format!("cannot pull image {IMAGE}")), "{msg}");
    assert!(msg.contains("Back-off pulling image"), "{msg}");
    assert!(msg.contains("flinkImageTag"), "{msg}");
}

#[tokio::test]
async fn crash_loop_back_off_names_the_last_exit() {
    let (msg, _) = condition_of(Scenario::CrashLoopBackOff, Reason::CrashLoopBackOff).await;
    assert!(
        msg.starts_with(&format!("JobManager pod job-{JOB}-jobmanager-0")),
        "{msg}"
    );
    assert!(msg.contains("keeps crashing (restarted 4 times, last exit code 1 (Error): Could not find or load main class com.example.Missing)"), "{msg}");
    assert!(msg.contains("--previous"), "{msg}");
}

#[tokio::test]
async fn an_oom_killed_jobmanager_points_at_its_memory() {
    let (msg, _) = condition_of(Scenario::OomKilled, Reason::OomKilled).await;
    assert!(
        msg.contains("exceeding its memory limit (OOMKilled"),
        "{msg}"
    );
    assert!(
        msg.contains("spec.template.spec.resources.jobmanager.memory"),
        "{msg}"
    );
}

#[tokio::test]
async fn unschedulable_pods_carry_the_schedulers_message() {
    let (msg, _) = condition_of(Scenario::Unschedulable, Reason::Unschedulable).await;
    assert!(
        msg.contains("cannot be scheduled: 0/3 nodes are available: 3 Insufficient cpu."),
        "{msg}"
    );
}

#[tokio::test]
async fn the_watch_sees_a_running_pod_start_crashing() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    wait_for(&cluster, |o| o.jobmanager_ready()).await;
    let lists_before = fake.accesses().iter().filter(|a| a.verb == "list").count();
    let pod = format!("job-{JOB}-jobmanager-0");
    fake.set_pod_status(
        NS,
        &pod,
        fake_kube::pod_status(
            &Scenario::CrashLoopBackOff,
            true,
            &pod,
            kubernetes::pods::MAIN_CONTAINER,
            IMAGE,
        ),
    );
    let obs = wait_for(&cluster, |o| !o.conditions.is_empty()).await;
    assert_eq!(obs.conditions[0].reason, Reason::CrashLoopBackOff);
    // Delivered by the open watch, not by listing again.
    let lists_after = fake.accesses().iter().filter(|a| a.verb == "list").count();
    assert_eq!(lists_before, lists_after);
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_missing_namespace_is_named_and_nothing_is_created() {
    let (fake, cluster) = start(Scenario::NamespaceMissing).await;
    let err = cluster.ensure(&job(), &objects(), None).await.unwrap_err();
    assert!(matches!(err, Error::NamespaceMissing { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("Kubernetes namespace flink-jobs does not exist"),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(fake.total_creates(), 0);
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_forbidden_apply_names_the_missing_verb_and_resource() {
    let (fake, cluster) = start(Scenario::Forbidden {
        verb: "patch",
        resource: "services",
    })
    .await;
    let err = cluster.ensure(&job(), &objects(), None).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "job-manager is not allowed to patch services in Kubernetes namespace flink-jobs"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("cannot patch resource \"services\" in API group \"\""),
        "the API server's message: {msg}"
    );
    assert!(
        msg.contains("job-manager rbac --namespace flink-jobs"),
        "{msg}"
    );
    assert!(!err.is_transient());
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_forbidden_create_through_apply_names_create() {
    let (fake, cluster) = start(Scenario::Forbidden {
        verb: "create",
        resource: "deployments",
    })
    .await;
    let err = cluster.ensure(&job(), &objects(), None).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("job-manager is not allowed to create deployments.apps in Kubernetes namespace flink-jobs"),
        "{err}"
    );
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_forbidden_pod_list_shows_as_a_condition() {
    let (fake, cluster) = start(Scenario::Forbidden {
        verb: "list",
        resource: "pods",
    })
    .await;
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    let obs = wait_for(&cluster, |o| !o.conditions.is_empty()).await;
    let c = obs.worst().unwrap();
    assert_eq!(c.reason, Reason::Forbidden);
    assert!(
        c.message.starts_with(
            "job-manager is not allowed to list pods in Kubernetes namespace flink-jobs"
        ),
        "{}",
        c.message
    );
    assert!(!obs.synced);
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn teardown_deletes_the_job_and_everything_it_owns() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    wait_for(&cluster, |o| o.pods.len() == 3).await;
    cluster.teardown(&job()).await.unwrap();
    for (group, resource) in [
        ("", "configmaps"),
        ("batch", "jobs"),
        ("", "services"),
        ("apps", "deployments"),
        ("", "pods"),
    ] {
        assert!(
            fake.names(group, resource, NS).is_empty(),
            "{resource} left: {:?}",
            fake.names(group, resource, NS)
        );
    }
    let deletes = fake.deletes();
    assert_eq!(
        deletes[0],
        (
            format!("jobs/job-{JOB}-jobmanager"),
            NS.to_string(),
            Some("Background".to_string())
        )
    );
    // The watcher sees the pods go.
    wait_for(&cluster, |o| o.pods.is_empty()).await;
    // Tearing down again (a retry after a crash) is fine.
    cluster.teardown(&job()).await.unwrap();
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn flink_rest_is_reached_through_the_service_or_the_api_servers_proxy() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    assert_eq!(
        cluster.flink_rest_base_url(&job()),
        format!(
            "{}/api/v1/namespaces/{NS}/services/job-{JOB}-jobmanager:rest/proxy",
            fake.url()
        )
    );
    let in_cluster = KubeCluster::new(fake.client(), &fake.url(), FlinkRestAccess::Service);
    assert_eq!(
        in_cluster.flink_rest_base_url(&job()),
        format!("http://job-{JOB}-jobmanager.{NS}.svc:8081")
    );
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    let (code, body) = cluster
        .flink_rest_via_proxy(&job(), Method::GET, "/overview", None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("\"slots-total\""), "{body}");
    let trigger = br#"{"target-directory":"oss://bucket/flink-savepoints","cancel-job":false}"#;
    let (code, body) = cluster
        .flink_rest_via_proxy(
            &job(),
            Method::POST,
            &format!(
                "/jobs/{}/savepoints",
                Uuid::parse_str(JOB).unwrap().simple()
            ),
            Some(("application/json", trigger.to_vec())),
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("request-id"));
    // The base URL works for a plain HTTP client too (the fake needs no credentials).
    let url = format!("{}/overview", cluster.flink_rest_base_url(&job()));
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    let calls = fake.proxy_calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].service, format!("job-{JOB}-jobmanager:rest"));
    assert_eq!(calls[0].path, "/overview");
    assert_eq!(calls[1].method, "POST");
    assert_eq!(calls[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(calls[1].body, trigger);
    assert_eq!(calls[2].path, "/overview");
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn the_download_token_secret_is_applied_before_the_job_owned_by_it_and_deleted_with_it() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    let job_id: Uuid = JOB.parse().unwrap();
    let secret_name = kubernetes::ArtifactStore::token_secret_name(job_id);
    let value = common::Secret::new("download-token-0123456789");
    let token = DownloadToken {
        secret_name: &secret_name,
        key: "token",
        token: &value,
    };
    assert!(!format!("{token:?}").contains("download-token-0123456789"));
    let uid = cluster
        .ensure(&job(), &objects(), Some(&token))
        .await
        .unwrap();
    assert_eq!(
        fake.created_order()[..3],
        [
            format!("configmaps/job-{JOB}-config"),
            format!("secrets/{secret_name}"),
            format!("jobs/job-{JOB}-jobmanager"),
        ]
    );
    let s = fake.object("", "secrets", NS, &secret_name).unwrap();
    assert_eq!(s["data"]["token"], "ZG93bmxvYWQtdG9rZW4tMDEyMzQ1Njc4OQ==");
    assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], uid.as_str());
    assert_eq!(s["metadata"]["labels"][labels::JOB_ID], JOB);
    cluster.teardown(&job()).await.unwrap();
    assert!(fake.names("", "secrets", NS).is_empty());
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_job_still_being_deleted_is_not_applied_to_until_it_is_gone() {
    let (fake, cluster) = start(Scenario::Healthy).await;
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    let name = format!("job-{JOB}-jobmanager");
    fake.mark_terminating("batch", "jobs", NS, &name);
    let patches_before = fake.accesses().iter().filter(|a| a.verb == "patch").count();
    let err = cluster.ensure(&job(), &objects(), None).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("still being deleted"), "{err}");
    let patches_after = fake.accesses().iter().filter(|a| a.verb == "patch").count();
    assert_eq!(
        patches_before, patches_after,
        "nothing applied to a dying Job"
    );
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_kubeconfig_context_picks_the_cluster() {
    let fake = FakeKube::start(Scenario::Healthy, &[NS]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: other\n\
             clusters:\n\
             - name: ack\n  cluster: {{server: \"{}\"}}\n\
             - name: other\n  cluster: {{server: \"http://127.0.0.1:9\"}}\n\
             users:\n- name: ci\n  user: {{token: not-checked-by-the-fake}}\n\
             contexts:\n\
             - name: ack\n  context: {{cluster: ack, user: ci}}\n\
             - name: other\n  context: {{cluster: other, user: ci}}\n",
            fake.url()
        ),
    )
    .unwrap();
    let cluster = KubeCluster::connect_kubeconfig(&path, Some("ack"), FlinkRestAccess::Proxy)
        .await
        .unwrap();
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    assert_eq!(fake.creates("jobs", &format!("job-{JOB}-jobmanager")), 1);
    assert!(cluster.flink_rest_base_url(&job()).starts_with(&fake.url()));

    let err = KubeCluster::connect_kubeconfig(&path, Some("prod"), FlinkRestAccess::Service)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot load Kubernetes credentials for context prod"),
        "{err}"
    );
    assert_rbac_covers(&fake);
}

#[tokio::test]
async fn a_black_holed_api_server_fails_each_call_within_the_call_timeout() {
    let fake = FakeKube::start(Scenario::BlackHole, &[NS]).await;
    let cluster = KubeCluster::new(fake.client(), &fake.url(), FlinkRestAccess::Proxy)
        .with_call_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = cluster.ensure(&job(), &objects(), None).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { verb: "get", .. }), "{err:?}");
    assert!(err.is_transient());
    let err = cluster.teardown(&job()).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Kubernetes API did not answer within 200ms while trying to delete jobs"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The watcher has not listed anything: the observation says it does not know yet.
    let obs = cluster.observe(&job());
    assert!(!obs.synced && obs.pods.is_empty());
}

#[tokio::test]
async fn flink_rest_in_proxy_mode_goes_through_the_api_server_with_the_clusters_credentials() {
    use job_manager::flink::{rest::RestFlink, Flink};
    let fake = FakeKube::start(Scenario::Healthy, &[NS]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ack\n\
             clusters:\n- name: ack\n  cluster: {{server: \"{}\"}}\n\
             users:\n- name: ci\n  user: {{token: proxy-token}}\n\
             contexts:\n- name: ack\n  context: {{cluster: ack, user: ci}}\n",
            fake.url()
        ),
    )
    .unwrap();
    let cluster = KubeCluster::connect_kubeconfig(&path, None, FlinkRestAccess::Proxy)
        .await
        .unwrap();
    cluster.ensure(&job(), &objects(), None).await.unwrap();
    let rest = kubernetes::cluster::route_flink_rest(&cluster, &job());
    assert!(rest.starts_with(&fake.url()), "{rest}");
    let flink = RestFlink::default();
    let o = flink.overview(&rest).await.unwrap();
    assert_eq!((o.taskmanagers, o.slots_total), (1, 2));
    let fid = Uuid::parse_str(JOB).unwrap().simple().to_string();
    let trigger = flink
        .trigger_savepoint(&rest, &fid, Some("oss://bucket/flink-savepoints"))
        .await
        .unwrap();
    assert_eq!(trigger, "5e1b5a7a2f6c4bd1a1b0c0ffee000001");
    // Flink's own errors keep their status (not taken for an unreachable cluster).
    let err = flink.checkpoints(&rest, &fid).await.unwrap_err();
    assert!(
        matches!(
            err,
            job_manager::flink::FlinkError::Http { status: 404, .. }
        ),
        "{err:?}"
    );
    let calls = fake.proxy_calls();
    assert_eq!(calls[0].path, "/overview");
    assert_eq!(calls[1].method, "POST");
    assert!(calls[1].path.ends_with("/savepoints"), "{:?}", calls[1]);
    assert!(String::from_utf8_lossy(&calls[1].body).contains("oss://bucket/flink-savepoints"));
    for c in &calls {
        assert_eq!(
            c.authorization.as_deref(),
            Some("Bearer proxy-token"),
            "{c:?}"
        );
    }
    // A proxy URL without its client (forgotten, or a restarted manager not reconnected
    // yet) is never called without credentials: it is unreachable (retried).
    kubernetes::cluster::forget_flink_rest(&rest);
    let err = flink.overview(&rest).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(fake.proxy_calls().len(), calls.len());
}
