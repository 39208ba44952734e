//! Kubernetes discovery watches pods: against a strict stand-in for the API server (see
//! `support/fake_kube.rs`), a pod added or deleted is seen within moments through the watch
//! (no new list), a pod that lives only briefly is still seen, and when the watch has
//! fallen behind a compacted history (410 Gone) the watcher lists again and the pod set
//! follows the new list. API errors are counted and the known pods kept.

mod support;

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use log_shipper::{
    kubernetes::{KubernetesConfig, PodLabels, PodWatcher},
    record::{LabelSource, StaticLabels},
};
use prometheus::{IntCounterVec, Opts};
use serde_json::json;
use support::fake_kube::{pod, pod_in, suite_labels, FakeKube, DEP, JOB, NODE, TOKEN};
use tokio_util::sync::CancellationToken;

/// Waits (polling every 10 ms, at most 10 s) until `f` holds; returns how long it took.
async fn eventually(what: &str, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

struct Running {
    labels: PodLabels,
    errors: IntCounterVec,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pods: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(url: &str, token: &str, namespaces: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let pods = dir.path().join("pods");
        let cfg = KubernetesConfig {
            enabled: true,
            node_name: Some(NODE.into()),
            pod_log_dir: pods.clone(),
            api_url: Some(url.to_string()),
            token_file,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            ..KubernetesConfig::default()
        };
        let labels = PodLabels::new(pods.clone(), Arc::new(StaticLabels::default()));
        let errors =
            IntCounterVec::new(Opts::new("list_errors_total", "errors"), &["code"]).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(PodWatcher::new(&cfg).unwrap().run(
            labels.clone(),
            errors.clone(),
            stop.clone(),
        ));
        Self {
            labels,
            errors,
            stop,
            task,
            pods,
            _dir: dir,
        }
    }

    fn log(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.pods
            .join(format!("{ns}_{name}_{uid}/flink-main-container/0.log"))
    }

    fn errors(&self, code: &str) -> u64 {
        self.errors.with_label_values(&[code]).get()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the watcher stops when asked")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_added_and_deleted_are_seen_through_the_watch_and_a_410_relists() {
    let api = Arc::new(FakeKube::default());
    api.add_flink_pod("wc-jm-0", "uid-jm", "jobmanager", "10.1.0.5");
    api.add(
        NODE,
        pod("nginx-1", "uid-nginx", json!({"app": "nginx"}), "10.1.0.9"),
    );
    let url = api.serve();
    let w = Running::start(&url, TOKEN, &[]);

    let jm = w.log("flink", "wc-jm-0", "uid-jm");
    eventually("the listed JobManager", || w.labels.accepts(&jm)).await;
    assert!(!w.labels.gone(&jm));
    assert!(!w.labels.accepts(&w.log("flink", "nginx-1", "uid-nginx")));
    assert_eq!(api.lists.load(Ordering::SeqCst), 1);

    // Added: seen through the open watch, well within the 30 s the old poll took, no list.
    let tm = w.log("flink", "wc-tm-1", "uid-tm1");
    api.add_flink_pod("wc-tm-1", "uid-tm1", "taskmanager", "10.1.0.6");
    let took = eventually("the added TaskManager", || w.labels.accepts(&tm)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        w.labels.labels_for(&tm).component.as_deref(),
        Some("taskmanager")
    );

    // Deleted: gone (its files are let go once read), its labels still known.
    api.delete("wc-jm-0");
    let took = eventually("the deleted JobManager gone", || w.labels.gone(&jm)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        w.labels.labels_for(&jm).topic(),
        format!("team-a:{DEP}:{JOB}")
    );

    // A pod that lives for a moment (created and deleted between two polls of old) is
    // seen: its file gets the pod's labels.
    let short = w.log("flink", "wc-tm-2", "uid-tm2");
    api.add_flink_pod("wc-tm-2", "uid-tm2", "taskmanager", "10.1.0.7");
    api.delete("wc-tm-2");
    eventually("the short-lived pod's labels", || {
        w.labels.labels_for(&short).deployment_id.as_deref() == Some(DEP)
    })
    .await;
    eventually("the short-lived pod gone", || w.labels.gone(&short)).await;
    assert_eq!(
        api.lists.load(Ordering::SeqCst),
        1,
        "all of it through one watch"
    );

    // History compacted while the watch is down, and changes happened meanwhile: resuming
    // gets 410 Gone, the watcher lists again and follows the new list.
    let late = w.log("flink", "wc-tm-3", "uid-tm3");
    api.compact_with(|pods| {
        pods.retain(|(_, p)| p["metadata"]["name"] != "wc-tm-1");
        pods.push((
            NODE.into(),
            pod(
                "wc-tm-3",
                "uid-tm3",
                suite_labels("taskmanager", Some(JOB)),
                "10.1.0.8",
            ),
        ));
    });
    eventually("the pod added during the gap", || w.labels.accepts(&late)).await;
    eventually("the pod deleted during the gap gone", || w.labels.gone(&tm)).await;
    assert!(api.gone.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        api.lists.load(Ordering::SeqCst),
        2,
        "one list again after 410"
    );
    assert!(w.errors("http_410") >= 1);

    // An outage: the watch ends and cannot start again; failures are counted, the known
    // pods stay, and the watch resumes when the API answers again.
    api.down.store(true, Ordering::SeqCst);
    api.drop_watches();
    eventually("errors counted during the outage", || {
        w.errors("http_500") >= 1
    })
    .await;
    assert!(w.labels.accepts(&late));
    api.down.store(false, Ordering::SeqCst);
    let after = w.log("flink", "wc-tm-4", "uid-tm4");
    api.add_flink_pod("wc-tm-4", "uid-tm4", "taskmanager", "10.1.0.9");
    eventually("a pod added after the outage", || w.labels.accepts(&after)).await;

    assert!(
        api.rejected.lock().unwrap().is_empty(),
        "{:?}",
        api.rejected.lock().unwrap()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_watches_and_a_refused_token() {
    let api = Arc::new(FakeKube::default());
    api.add_flink_pod("wc-jm-0", "uid-jm", "jobmanager", "10.1.0.5");
    api.add(
        NODE,
        pod_in(
            "other",
            "o-jm-0",
            "uid-o",
            suite_labels("jobmanager", None),
            "10.1.0.8",
        ),
    );
    // Claims to be part of the suite but lacks the deployment labels.
    api.add(
        NODE,
        pod(
            "half",
            "uid-half",
            json!({"app.kubernetes.io/part-of": "flink-suite"}),
            "10.1.0.7",
        ),
    );
    let url = api.serve();

    // A token the API server refuses: counted as http_401, nothing known, retried.
    let w = Running::start(&url, "wrong-token", &[]);
    eventually("the 401 counted", || w.errors("http_401") >= 1).await;
    assert!(!w.labels.accepts(&w.log("flink", "wc-jm-0", "uid-jm")));
    w.stop().await;

    // Only the configured namespaces are watched, each one on its own.
    let w = Running::start(&url, TOKEN, &["flink"]);
    let jm = w.log("flink", "wc-jm-0", "uid-jm");
    eventually("the flink namespace listed", || w.labels.accepts(&jm)).await;
    assert!(!w.labels.accepts(&w.log("other", "o-jm-0", "uid-o")));
    assert!(!w.labels.accepts(&w.log("flink", "half", "uid-half")));
    assert_eq!(w.labels.labels_for(&jm).source.as_deref(), Some("10.1.0.5"));
    // A pod of a namespace that is not watched is never known to be gone.
    assert!(!w.labels.gone(&w.log("other", "o-jm-0", "uid-o")));
    assert!(
        api.rejected.lock().unwrap().is_empty(),
        "{:?}",
        api.rejected.lock().unwrap()
    );
    w.stop().await;
}
