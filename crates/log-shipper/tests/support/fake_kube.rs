//! A strict stand-in for the part of the Kubernetes API log-shipper uses: pods, listed and
//! watched, cluster-wide (`/api/v1/pods`) or per namespace
//! (`/api/v1/namespaces/{ns}/pods`), on 127.0.0.1.
//!
//! Strict like the API server about what the client must send, and recording what it
//! rejects so a test can assert nothing was: the bearer token (else 401 with a Status
//! body), exactly the suite's label selector and `spec.nodeName` field selector, only query
//! parameters the API knows for a list or watch, a numeric `resourceVersion` on a watch.
//! Like the API server it gives every change a new `resourceVersion`, answers a list with
//! the current one, streams a watch as JSON lines (`ADDED`/`MODIFIED`/`DELETED`, objects
//! with their `resourceVersion`) from the version asked for, and answers a watch from a
//! version older than its compacted history with an `ERROR` event holding a 410 `Expired`
//! Status (what etcd compaction does), after which a client must list again.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    body::{Body, Bytes},
    extract::{Path as AxPath, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

pub const TOKEN: &str = "sa-token-abc";
pub const NODE: &str = "node-1";
pub const SELECTOR: &str = "app.kubernetes.io/part-of=flink-suite";

/// Query parameters the API server accepts on a pod list or watch.
const KNOWN_PARAMS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "watch",
    "timeoutSeconds",
    "allowWatchBookmarks",
    "sendInitialEvents",
];

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    kind: &'static str,
    node: String,
    object: Value,
}

#[derive(Default)]
struct State_ {
    /// Every pod in the "cluster": (node, pod JSON).
    pods: Vec<(String, Value)>,
    rv: u64,
    history: Vec<Event>,
    /// Watches from a version at or below this one get 410 Gone.
    compacted: u64,
}

/// The fake API server's state; share it with `Arc` and [`FakeKube::serve`] it.
pub struct FakeKube {
    state: Mutex<State_>,
    events: broadcast::Sender<Event>,
    /// Bumped to end every open watch (a restarted API server, a dropped connection).
    generation: watch::Sender<u64>,
    /// Answer 500 to everything.
    pub down: AtomicBool,
    /// Lists answered (requests without `watch`).
    pub lists: AtomicUsize,
    /// Watches started.
    pub watches: AtomicUsize,
    /// Watches answered with 410 Gone.
    pub gone: AtomicUsize,
    /// Requests refused for what they sent (not for the token).
    pub rejected: Mutex<Vec<String>>,
}

impl Default for FakeKube {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(1024).0,
            generation: watch::channel(0).0,
            down: AtomicBool::new(false),
            lists: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            gone: AtomicUsize::new(0),
            rejected: Mutex::default(),
        }
    }
}

impl FakeKube {
    /// Gives `object` the next resourceVersion and tells the watches.
    fn record(&self, st: &mut State_, kind: &'static str, node: &str, object: &mut Value) {
        st.rv += 1;
        object["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let e = Event {
            rv: st.rv,
            kind,
            node: node.to_string(),
            object: object.clone(),
        };
        st.history.push(e.clone());
        let _ = self.events.send(e);
    }

    /// Creates a pod on `node` (watchers see ADDED).
    pub fn add(&self, node: &str, mut pod: Value) {
        let mut st = self.state.lock().unwrap();
        self.record(&mut st, "ADDED", node, &mut pod);
        st.pods.push((node.to_string(), pod));
    }

    /// Creates a suite Flink pod of job [`JOB`] in namespace `flink` on this node.
    pub fn add_flink_pod(&self, name: &str, uid: &str, component: &str, ip: &str) {
        self.add(NODE, pod(name, uid, suite_labels(component, Some(JOB)), ip));
    }

    /// Deletes the pod called `name` (watchers see DELETED).
    pub fn delete(&self, name: &str) {
        let mut st = self.state.lock().unwrap();
        let Some(i) = st
            .pods
            .iter()
            .position(|(_, p)| p["metadata"]["name"] == name)
        else {
            return;
        };
        let (node, mut pod) = st.pods.remove(i);
        self.record(&mut st, "DELETED", &node, &mut pod);
    }

    /// Changes the pods with `change` while the history is compacted away (etcd
    /// compaction) and every open watch ends: a client resuming from a version it saw gets
    /// 410 Gone and must list again to learn of the change.
    pub fn compact_with(&self, change: impl FnOnce(&mut Vec<(String, Value)>)) {
        let mut st = self.state.lock().unwrap();
        change(&mut st.pods);
        st.rv += 1;
        let rv = st.rv.to_string();
        for (_, p) in st.pods.iter_mut() {
            p["metadata"]["resourceVersion"] = json!(rv);
        }
        st.compacted = st.rv;
        st.history.clear();
        drop(st);
        self.drop_watches();
    }

    /// Ends every open watch (the client resumes from the last version it saw).
    pub fn drop_watches(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Serves on 127.0.0.1 from a thread of its own; returns the base URL.
    pub fn serve(self: &Arc<Self>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let api = self.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/api/v1/pods", get(all_pods))
                    .route("/api/v1/namespaces/{ns}/pods", get(namespaced_pods))
                    .with_state(api);
                axum::serve(l, app).await.unwrap();
            });
        });
        format!("http://{addr}")
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (code, Json(status_body(code.as_u16(), reason, message))).into_response()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn all_pods(
    State(api): State<Arc<FakeKube>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    pods(api, None, &headers, q)
}

async fn namespaced_pods(
    State(api): State<Arc<FakeKube>>,
    AxPath(ns): AxPath<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    pods(api, Some(ns), &headers, q)
}

fn pods(
    api: Arc<FakeKube>,
    namespace: Option<String>,
    headers: &HeaderMap,
    q: HashMap<String, String>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if api.down.load(Ordering::SeqCst) {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcdserver: request timed out",
        );
    }
    let reject = |why: &str| {
        api.rejected.lock().unwrap().push(format!("{why}: {q:?}"));
        status(StatusCode::BAD_REQUEST, "BadRequest", why)
    };
    if let Some(k) = q.keys().find(|k| !KNOWN_PARAMS.contains(&k.as_str())) {
        return reject(&format!("unknown query parameter {k}"));
    }
    if q.get("labelSelector").map(String::as_str) != Some(SELECTOR)
        || q.get("fieldSelector") != Some(&format!("spec.nodeName={NODE}"))
    {
        return reject("unexpected selectors");
    }
    let wanted = {
        let namespace = namespace.clone();
        move |node: &str, pod: &Value| {
            node == NODE
                && namespace
                    .as_deref()
                    .is_none_or(|ns| pod["metadata"]["namespace"] == ns)
                && pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "flink-suite"
        }
    };
    let watching = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    let st = api.state.lock().unwrap();
    if !watching {
        api.lists.fetch_add(1, Ordering::SeqCst);
        let items: Vec<Value> = st
            .pods
            .iter()
            .filter(|(n, p)| wanted(n, p))
            .map(|(_, p)| p.clone())
            .collect();
        return Json(json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }))
        .into_response();
    }
    let Some(from) = q.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()) else {
        drop(st);
        return reject("a watch needs a numeric resourceVersion");
    };
    api.watches.fetch_add(1, Ordering::SeqCst);
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let line = |kind: &str, object: &Value| {
        Ok(Bytes::from(
            json!({"type": kind, "object": object}).to_string() + "\n",
        ))
    };
    if from < st.compacted {
        api.gone.fetch_add(1, Ordering::SeqCst);
        let msg = format!("too old resource version: {from} ({})", st.compacted);
        let _ = tx.try_send(line("ERROR", &status_body(410, "Expired", &msg)));
    } else {
        let backlog: Vec<Event> = st
            .history
            .iter()
            .filter(|e| e.rv > from && wanted(&e.node, &e.object))
            .cloned()
            .collect();
        let mut rx = api.events.subscribe();
        let mut generation = api.generation.subscribe();
        generation.mark_unchanged();
        tokio::spawn(async move {
            let mut last = from;
            for e in backlog {
                last = e.rv;
                if tx.send(line(e.kind, &e.object)).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    _ = generation.changed() => return,
                    _ = tx.closed() => return,
                    r = rx.recv() => match r {
                        Ok(e) if e.rv > last && wanted(&e.node, &e.object) => {
                            last = e.rv;
                            if tx.send(line(e.kind, &e.object)).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
    }
    drop(st);
    let stream = futures::stream::unfold(out, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "cannot stream",
            )
        })
}

/// A pod of namespace `ns` as the API server returns it.
pub fn pod_in(ns: &str, name: &str, uid: &str, labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": uid,
            "creationTimestamp": "2024-01-01T00:00:00Z", "labels": labels,
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "flink-main-container", "image": "flink:1.18"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "10.0.0.1"},
    })
}

/// A pod of namespace `flink`.
pub fn pod(name: &str, uid: &str, labels: Value, ip: &str) -> Value {
    pod_in("flink", name, uid, labels, ip)
}

pub const DEP: &str = "5d6b1f6e-0000-4000-8000-000000000001";
pub const JOB: &str = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5";

/// The labels job-manager puts on a suite pod.
pub fn suite_labels(component: &str, job: Option<&str>) -> Value {
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
