//! Kubernetes mode: a strict stand-in for the Kubernetes API (bearer token, exact label and
//! field selectors, the real PodList shape, 401 on a bad token, 500s) and a directory laid
//! out like kubelet's /var/log/pods with CRI-format files; the real binary ships the suite
//! pods' container logs with their labels, picks up new pods, ignores foreign ones and keeps
//! shipping through an API outage.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    extract::{Path as AxPath, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use common::testkit;
use log_shipper::{
    kubernetes::{KubernetesConfig, Lister, PodLabels},
    record::{LabelSource, StaticLabels},
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");
const TOKEN: &str = "sa-token-abc";
const NODE: &str = "node-1";
const DEP: &str = "5d6b1f6e-0000-4000-8000-000000000001";
const JOB: &str = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5";

#[derive(Default)]
struct Api {
    /// Every pod in the "cluster": (node, pod JSON).
    pods: Mutex<Vec<(String, Value)>>,
    /// Answer 500 to everything.
    down: AtomicBool,
    requests: AtomicUsize,
    rejected: Mutex<Vec<String>>,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": message, "reason": reason, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

/// `GET /api/v1/pods`, as strict as the API server about what the shipper must send.
async fn list_pods(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&api, None, &headers, &q)
}

/// `GET /api/v1/namespaces/{namespace}/pods`.
async fn list_namespaced_pods(
    State(api): State<Arc<Api>>,
    AxPath(ns): AxPath<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&api, Some(&ns), &headers, &q)
}

fn list(
    api: &Api,
    namespace: Option<&str>,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Response {
    let n = api.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if api.down.load(Ordering::SeqCst) || n % 5 == 4 {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcdserver: request timed out",
        );
    }
    let (Some(ls), Some(fs)) = (q.get("labelSelector"), q.get("fieldSelector")) else {
        api.rejected.lock().unwrap().push(format!("{q:?}"));
        return status(StatusCode::BAD_REQUEST, "BadRequest", "selectors missing");
    };
    if ls != "app.kubernetes.io/part-of=flink-suite" || fs != &format!("spec.nodeName={NODE}") {
        api.rejected.lock().unwrap().push(format!("{q:?}"));
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unexpected selectors",
        );
    }
    let items: Vec<Value> = api
        .pods
        .lock()
        .unwrap()
        .iter()
        .filter(|(node, pod)| {
            namespace.is_none_or(|ns| pod["metadata"]["namespace"] == ns)
                && node == NODE
                && pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "flink-suite"
        })
        .map(|(_, p)| p.clone())
        .collect();
    Json(json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "12345"},
        "items": items,
    }))
    .into_response()
}

fn pod(name: &str, uid: &str, labels: Value, ip: &str) -> Value {
    pod_in("flink", name, uid, labels, ip)
}

fn pod_in(ns: &str, name: &str, uid: &str, labels: Value, ip: &str) -> Value {
    json!({
        "metadata": {
            "name": name, "namespace": ns, "uid": uid, "resourceVersion": "100",
            "creationTimestamp": "2024-01-01T00:00:00Z", "labels": labels,
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "flink-main-container", "image": "flink:1.18"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "10.0.0.1"},
    })
}

fn suite_labels(component: &str, job: Option<&str>) -> Value {
    let mut l = json!({
        "app.kubernetes.io/part-of": "flink-suite",
        "app.kubernetes.io/managed-by": "job-manager",
        "app.kubernetes.io/component": component,
        "flink-suite.io/namespace": "team-a",
        "flink-suite.io/deployment-id": DEP,
        "flink-suite.io/deployment-name": "wordcount",
    });
    if let Some(j) = job {
        l["flink-suite.io/job-id"] = json!(j);
    }
    l
}

/// Serves `api` on 127.0.0.1 from a thread of its own; returns the base URL.
fn serve(api: Arc<Api>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new()
                .route("/api/v1/pods", get(list_pods))
                .route("/api/v1/namespaces/{ns}/pods", get(list_namespaced_pods))
                .with_state(api);
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn append(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// CRI lines: `(stream, tag, message)`.
fn cri(lines: &[(&str, &str, &str)]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, (s, t, m))| format!("2024-01-01T00:00:0{}.123456789Z {s} {t} {m}\n", i % 10))
        .collect()
}

fn read_json(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn config(dir: &Path, url: &str, pods: &Path, token: &Path) -> PathBuf {
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "kubernetes:\n  node_name: {NODE}\n  pod_log_dir: {}\n  api_url: {url}\n  token_file: {}\n  resync_interval: 200ms\nmultiline: {{timeout: 300ms}}\npoll_interval: 50ms\n",
            pods.display(),
            token.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn ships_suite_pods_container_logs_with_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let out = dir.path().join("out");
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    let api = Arc::new(Api::default());
    api.pods.lock().unwrap().push((
        NODE.into(),
        pod(
            "wordcount-jm-0",
            "uid-jm",
            suite_labels("jobmanager", Some(JOB)),
            "10.1.0.5",
        ),
    ));
    // Another workload on this node, and a suite pod on another node.
    api.pods.lock().unwrap().push((
        NODE.into(),
        pod("nginx-1", "uid-nginx", json!({"app": "nginx"}), "10.1.0.9"),
    ));
    api.pods.lock().unwrap().push((
        "node-2".into(),
        pod(
            "wordcount-tm-9",
            "uid-tm9",
            suite_labels("taskmanager", Some(JOB)),
            "10.2.0.5",
        ),
    ));
    let url = serve(api.clone());

    let jm_log = pods.join("flink_wordcount-jm-0_uid-jm/flink-main-container/0.log");
    append(
        &jm_log,
        &cri(&[
            ("stdout", "F", "2024-01-01 00:00:00,000 INFO  org.apache.flink.runtime.entrypoint.ClusterEntrypoint [] - Starting."),
            ("stdout", "P", "2024-01-01 00:00:01,000 INFO  org.example.Big [] - a very "),
            ("stdout", "P", "long line split "),
            ("stdout", "F", "by the runtime"),
            ("stderr", "F", "2024-01-01 00:00:02,000 ERROR org.apache.flink.runtime.taskmanager.Task [] - Source switched to FAILED."),
            ("stderr", "F", "java.lang.RuntimeException: boom"),
            ("stderr", "F", "\tat org.example.Job.map(Job.java:42)"),
            ("stderr", "F", "Caused by: java.io.IOException: disk"),
            ("stderr", "F", "\t... 3 more"),
            ("stdout", "F", "2024-01-01 00:00:03,000 INFO  org.example.After [] - after the trace"),
        ]),
    );
    let foreign = pods.join("default_nginx-1_uid-nginx/nginx/0.log");
    append(&foreign, &cri(&[("stdout", "F", "GET / 200")]));
    let other_node = pods.join("flink_wordcount-tm-9_uid-tm9/flink-main-container/0.log");
    append(&other_node, &cri(&[("stdout", "F", "not on this node")]));

    let cfg = config(dir.path(), &url, &pods, &token);
    let state = dir.path().join("state");
    let args = [
        "--config.file",
        cfg.to_str().unwrap(),
        "--data-dir",
        state.to_str().unwrap(),
        "--output.dir",
        out.to_str().unwrap(),
        "--output.format",
        "json",
        "--kubernetes",
        "--kubernetes.namespace",
        "flink",
    ];
    let mut p = testkit::Proc::start(BIN, &args);

    // OSS path / local layout: logs/{namespace}/{deploymentId}/{jobId}/{pod}/{file}.
    let pod_dir = out.join(format!("logs/team-a/{DEP}/{JOB}/wordcount-jm-0"));
    let jm_out = pod_dir.join("flink_wordcount-jm-0_uid-jm/flink-main-container/0.log");
    testkit::wait_for(
        || read_json(&jm_out).len() >= 4,
        "the JobManager's 4 events",
    );
    let recs = read_json(&jm_out);
    assert_eq!(recs.len(), 4, "{recs:#?}");
    for r in &recs {
        assert_eq!(r["namespace"], "team-a");
        assert_eq!(r["deploymentId"], DEP);
        assert_eq!(r["deploymentName"], "wordcount");
        assert_eq!(r["jobId"], JOB);
        assert_eq!(r["component"], "jobmanager");
        assert_eq!(r["pod"], "wordcount-jm-0");
        assert_eq!(r["container"], "flink-main-container");
    }
    assert_eq!(recs[0]["message"], "Starting.");
    assert_eq!(recs[0]["level"], "INFO");
    // Partial lines joined with their final part, CRI prefixes gone.
    assert_eq!(recs[1]["message"], "a very long line split by the runtime");
    // The stack trace is one event with its log line.
    assert_eq!(recs[2]["level"], "ERROR");
    assert_eq!(
        recs[2]["message"],
        "Source switched to FAILED.\njava.lang.RuntimeException: boom\n\tat org.example.Job.map(Job.java:42)\nCaused by: java.io.IOException: disk\n\t... 3 more"
    );
    assert_eq!(recs[3]["message"], "after the trace");

    // A pod started later is picked up (a TaskManager of the same job).
    api.pods.lock().unwrap().push((
        NODE.into(),
        pod(
            "wordcount-tm-1",
            "uid-tm1",
            suite_labels("taskmanager", Some(JOB)),
            "10.1.0.6",
        ),
    ));
    let tm_log = pods.join("flink_wordcount-tm-1_uid-tm1/flink-main-container/0.log");
    append(
        &tm_log,
        &cri(&[("stdout", "F", "2024-01-01 00:00:05,000 INFO  org.apache.flink.runtime.taskexecutor.TaskExecutor [] - TM up")]),
    );
    let tm_out = out.join(format!(
        "logs/team-a/{DEP}/{JOB}/wordcount-tm-1/flink_wordcount-tm-1_uid-tm1/flink-main-container/0.log"
    ));
    testkit::wait_for(
        || !read_json(&tm_out).is_empty(),
        "the new TaskManager's log",
    );
    let tm = read_json(&tm_out);
    assert_eq!(tm[0]["component"], "taskmanager");
    assert_eq!(tm[0]["message"], "TM up");

    // API outage: known pods keep shipping, failures are counted.
    api.down.store(true, Ordering::SeqCst);
    testkit::wait_for(
        || {
            p.metric("log_shipper_kubernetes_list_errors_total{code=\"http_500\"}")
                .unwrap_or(0.0)
                >= 2.0
        },
        "list errors counted during the outage",
    );
    append(
        &jm_log,
        &cri(&[(
            "stdout",
            "F",
            "2024-01-01 00:00:09,000 WARN  org.example.X [] - during the outage",
        )]),
    );
    testkit::wait_for(
        || {
            read_json(&jm_out)
                .iter()
                .any(|r| r["message"] == "during the outage")
        },
        "a line written during the API outage",
    );
    api.down.store(false, Ordering::SeqCst);

    // The TaskManager's pod is deleted right after its last words: they are still shipped,
    // then its file is let go (the JobManager's stays open).
    append(
        &tm_log,
        &cri(&[
            (
                "stdout",
                "P",
                "2024-01-01 00:00:10,000 INFO  org.example.Y [] - last ",
            ),
            ("stdout", "F", "words"),
        ]),
    );
    api.pods
        .lock()
        .unwrap()
        .retain(|(_, p)| p["metadata"]["name"] != "wordcount-tm-1");
    testkit::wait_for(
        || {
            read_json(&tm_out)
                .iter()
                .any(|r| r["message"] == "last words")
        },
        "the deleted pod's last line",
    );
    testkit::wait_for(
        || p.metric("log_shipper_open_files{sink=\"dir\"}") == Some(1.0),
        "the deleted pod's file let go",
    );
    append(
        &jm_log,
        &cri(&[(
            "stdout",
            "F",
            "2024-01-01 00:00:11,000 INFO  org.example.X [] - still here",
        )]),
    );
    testkit::wait_for(
        || {
            read_json(&jm_out)
                .iter()
                .any(|r| r["message"] == "still here")
        },
        "the live pod still shipped",
    );

    // Restarted while the API is down: the checkpointed file resumes with its labels
    // (remembered pods), nothing is shipped twice.
    api.down.store(true, Ordering::SeqCst);
    p.signal("TERM");
    assert!(p.wait_exit(std::time::Duration::from_secs(30)).is_some());
    append(
        &jm_log,
        &cri(&[(
            "stdout",
            "F",
            "2024-01-01 00:00:12,000 INFO  org.example.X [] - after the restart",
        )]),
    );
    let _p = testkit::Proc::start(BIN, &args);
    testkit::wait_for(
        || {
            read_json(&jm_out)
                .iter()
                .any(|r| r["message"] == "after the restart")
        },
        "a line written while the shipper was down, after a restart with the API down",
    );
    let msgs: Vec<String> = read_json(&jm_out)
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        msgs.iter().filter(|m| m.as_str() == "Starting.").count(),
        1,
        "{msgs:?}"
    );
    assert_eq!(msgs.last().unwrap(), "after the restart");
    api.down.store(false, Ordering::SeqCst);

    // Nothing of the foreign pod or the other node's pod was shipped.
    let all: Vec<String> = walk(&out);
    assert!(
        all.iter()
            .all(|f| !f.contains("nginx") && !f.contains("tm-9")),
        "{all:?}"
    );
    assert!(api.rejected.lock().unwrap().is_empty());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p.to_string_lossy().into_owned());
            }
        }
    }
    v
}

#[tokio::test]
async fn lister_sends_the_token_and_selectors_and_labels_name_the_sls_topic() {
    let api = Arc::new(Api::default());
    api.pods.lock().unwrap().push((
        NODE.into(),
        pod(
            "wordcount-jm-0",
            "uid-jm",
            suite_labels("jobmanager", Some(JOB)),
            "10.1.0.5",
        ),
    ));
    // Claims to be part of the suite but lacks the deployment labels: not a suite Flink pod.
    api.pods.lock().unwrap().push((
        NODE.into(),
        pod(
            "half-labelled",
            "uid-half",
            json!({"app.kubernetes.io/part-of": "flink-suite"}),
            "10.1.0.7",
        ),
    ));
    // A suite pod of this node in another namespace: listed cluster-wide, not when only
    // `flink` is asked for.
    api.pods.lock().unwrap().push((
        NODE.into(),
        pod_in(
            "other",
            "elsewhere-jm-0",
            "uid-other",
            suite_labels("jobmanager", None),
            "10.1.0.8",
        ),
    ));
    let url = serve(api.clone());
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");

    std::fs::write(&token, "wrong-token").unwrap();
    let cfg = KubernetesConfig {
        enabled: true,
        node_name: Some(NODE.into()),
        pod_log_dir: dir.path().join("pods"),
        api_url: Some(url),
        token_file: token.clone(),
        ..KubernetesConfig::default()
    };
    let lister = Lister::new(&cfg).unwrap();
    let err = lister.list().await.unwrap_err();
    assert_eq!(err.code(), "http_401");
    assert!(!err.to_string().contains("wrong-token"), "{err}");

    // The token file is re-read at every list (projected tokens rotate).
    std::fs::write(&token, TOKEN).unwrap();
    let all = lister.list().await.unwrap();
    let mut names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["elsewhere-jm-0", "wordcount-jm-0"]);
    let lister = Lister::new(&KubernetesConfig {
        namespaces: vec!["flink".into()],
        ..cfg.clone()
    })
    .unwrap();
    let pods = lister.list().await.unwrap();
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].ip.as_deref(), Some("10.1.0.5"));

    let labels = PodLabels::new(cfg.pod_log_dir.clone(), Arc::new(StaticLabels::default()));
    let path = cfg
        .pod_log_dir
        .join("flink_wordcount-jm-0_uid-jm/flink-main-container/0.log");
    assert!(!labels.accepts(&path), "unknown before the first list");
    labels.set_pods(pods);
    assert!(labels.accepts(&path));
    assert!(labels.cri(&path));
    let l = labels.labels_for(&path);
    assert_eq!(l.topic(), format!("team-a:{DEP}:{JOB}"));
    assert_eq!(l.source.as_deref(), Some("10.1.0.5"));
    assert_eq!(
        l.path_segments(),
        vec!["team-a", DEP, JOB, "wordcount-jm-0"]
    );
    let half = cfg.pod_log_dir.join("flink_half-labelled_uid-half/c/0.log");
    assert!(!labels.accepts(&half));
    // Gone from the list: no new files are watched, but the labels stay known for files
    // still being read.
    labels.set_pods(Vec::new());
    assert!(!labels.accepts(&path));
    assert_eq!(
        labels.labels_for(&path).topic(),
        format!("team-a:{DEP}:{JOB}")
    );
    assert_eq!(api.rejected.lock().unwrap().len(), 0);

    // Remembered across restarts: before any list, a checkpointed file keeps its labels.
    let state = dir.path().join("state/kubernetes-pods.json");
    let saving = PodLabels::new(cfg.pod_log_dir.clone(), Arc::new(StaticLabels::default()))
        .with_state_file(state.clone());
    let listed = lister.list().await.unwrap();
    saving.set_pods(listed.clone());
    // The pod list is replaced, never rewritten in place (temp file, fsync, rename): a link
    // to the old file keeps the old list, and no temporary file is left behind.
    let before = std::fs::read(&state).unwrap();
    let old = dir.path().join("kubernetes-pods.old");
    std::fs::hard_link(&state, &old).unwrap();
    let mut moved = listed;
    moved[0].ip = Some("10.1.0.99".into());
    saving.set_pods(moved);
    assert_eq!(
        std::fs::read(&old).unwrap(),
        before,
        "state file written in place"
    );
    let now = String::from_utf8(std::fs::read(&state).unwrap()).unwrap();
    assert!(now.contains("10.1.0.99"), "{now}");
    let leftovers: Vec<_> = std::fs::read_dir(state.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["kubernetes-pods.json"]);
    let restarted = PodLabels::new(cfg.pod_log_dir.clone(), Arc::new(StaticLabels::default()))
        .with_state_file(state);
    let l = restarted.labels_for(&path);
    assert_eq!(l.topic(), format!("team-a:{DEP}:{JOB}"));
    assert_eq!(l.component.as_deref(), Some("jobmanager"));
    assert!(!restarted.gone(&path), "not gone before the first list");
    assert!(
        !restarted.accepts(&path),
        "new files wait for the first list"
    );
}
