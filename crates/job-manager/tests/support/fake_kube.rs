//! A strict fake Kubernetes API server on 127.0.0.1 for the Kubernetes target's tests.
//!
//! It speaks the part of the API the manager's client uses and checks each request the way
//! the API server (plus the job and deployment controllers and the kubelet) would:
//!
//! - GET of one object, LIST (label selectors, `resourceVersion` in the list metadata) and
//!   WATCH (`?watch=true`, JSON lines from the given `resourceVersion` on, held open).
//! - Server-side apply: `PATCH` with `Content-Type: application/apply-patch+yaml` (else 415),
//!   `fieldManager` (else 422), `apiVersion`/`kind`/`metadata.name` matching the path,
//!   a stale `metadata.resourceVersion` → 409, an immutable Job pod template changed → 422.
//!   Applying an object that does not exist also needs `create` permission.
//! - Suite rules checked on top (recorded as [`Violation`]s, answered 422): the suite's labels
//!   on every object and pod template, owner references naming the JobManager Job's real uid
//!   on everything else, a Deployment selector matching its template.
//! - DELETE with a `propagationPolicy` (`Foreground`/`Background` remove the owned objects
//!   and pods; none, as a Job defaults to orphaning, is a violation).
//! - Scenarios ([`Scenario`]): the pods the fake "controllers" create come up Running or in a
//!   failure state; a missing namespace answers 404 `namespaces "X" not found`; a forbidden
//!   (verb, resource) answers 403 with the API server's Status body.
//!
//! Every request is recorded as (verb, group, resource, namespace) so a test can compare the
//! verbs the client used with the RBAC rules the manager prints.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use job_manager::flink::fake::FakeFlink;

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// The service account the fake pretends the manager runs as (in 403 messages).
pub const USER: &str = "system:serviceaccount:flink-suite:job-manager";
/// The field manager every apply must name.
pub const FIELD_MANAGER: &str = "job-manager";

/// How the fake cluster behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// Pods are scheduled, pull their image and run.
    Healthy,
    /// The image does not exist: pods wait in `ImagePullBackOff`.
    ImagePullBackOff,
    /// The JobManager container exits with an error and is restarted with back-off.
    CrashLoopBackOff,
    /// The JobManager container was killed for exceeding its memory limit.
    OomKilled,
    /// No node has room: pods stay `Pending` with the scheduler's message.
    Unschedulable,
    /// The target namespace does not exist.
    NamespaceMissing,
    /// The API server accepts connections and never answers (a black-holed control plane).
    BlackHole,
    /// The manager's service account may not `verb` `resource` (e.g. `patch`, `services`).
    Forbidden {
        verb: &'static str,
        resource: &'static str,
    },
}

/// One request as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource, with `/subresource` when there is one (`services/proxy`).
    pub resource: String,
    pub namespace: String,
}

/// A request the fake refused because it broke a rule of the API server or of the suite.
#[derive(Debug, Clone)]
pub struct Violation {
    pub method: String,
    pub path: String,
    pub message: String,
}

/// A request to the Flink REST API through the service proxy.
#[derive(Debug, Clone)]
pub struct ProxyCall {
    pub method: String,
    pub namespace: String,
    /// `name:port`, as in the path.
    pub service: String,
    /// The path below `/proxy`.
    pub path: String,
    pub content_type: Option<String>,
    /// The `Authorization` header (the client's credentials).
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Stored {
    /// The live object (with server fields and status).
    object: Value,
    /// The last applied configuration (for immutability checks).
    applied: Value,
}

#[derive(Debug, Clone)]
struct WatchEvent {
    rv: u64,
    key: Kind,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// (group, resource)
type Kind = (String, String);

struct Inner {
    scenario: Scenario,
    namespaces: BTreeSet<String>,
    objects: BTreeMap<(Kind, String, String), Stored>,
    rv: u64,
    history: Vec<WatchEvent>,
    accesses: Vec<Access>,
    violations: Vec<Violation>,
    creates: BTreeMap<(String, String), u32>,
    proxy_calls: Vec<ProxyCall>,
    /// Order in which objects were created: `resource/name`.
    created_order: Vec<String>,
    deletes: Vec<(String, String, Option<String>)>,
    /// The Flink behind the JobManager Services (see [`FakeKube::serve_flink`]).
    flink: Option<Arc<FakeFlink>>,
    /// Applies of this resource are held (never answered) once they arrive; the Notify
    /// fires on arrival.
    hold: Option<(String, Arc<tokio::sync::Notify>)>,
}

/// A running fake API server.
pub struct FakeKube {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    open_watches: Arc<AtomicUsize>,
    events: broadcast::Sender<WatchEvent>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct App {
    inner: Arc<Mutex<Inner>>,
    open_watches: Arc<AtomicUsize>,
    events: broadcast::Sender<WatchEvent>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    /// Starts the fake with the namespaces that exist (unless the scenario removes them).
    pub async fn start(scenario: Scenario, namespaces: &[&str]) -> FakeKube {
        let mut ns: BTreeSet<String> = namespaces.iter().map(|s| s.to_string()).collect();
        if scenario == Scenario::NamespaceMissing {
            ns.clear();
        }
        let inner = Arc::new(Mutex::new(Inner {
            scenario,
            namespaces: ns,
            objects: BTreeMap::new(),
            rv: 100,
            history: vec![],
            accesses: vec![],
            violations: vec![],
            creates: BTreeMap::new(),
            proxy_calls: vec![],
            created_order: vec![],
            deletes: vec![],
            flink: None,
            hold: None,
        }));
        let (events, _) = broadcast::channel(1024);
        let open_watches = Arc::new(AtomicUsize::new(0));
        let app = App {
            inner: inner.clone(),
            open_watches: open_watches.clone(),
            events: events.clone(),
        };
        let router = Router::new().fallback(handle).with_state(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeKube {
            addr,
            inner,
            open_watches,
            events,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client pointed at the fake.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `flink` behind every JobManager Service: the service proxy forwards Flink REST
    /// calls to it while the JobManager pod is ready (else it answers 503 "no endpoints
    /// available", as the API server does), and a ready JobManager pod runs its job in
    /// application mode: the Flink job id and savepoint of the Job's `--job-id` and
    /// `--fromSavepoint` arguments.
    pub fn serve_flink(&self, flink: Arc<FakeFlink>) {
        self.lock().flink = Some(flink);
    }

    /// Holds every apply of `resource` from now on (never answered, as a manager that dies
    /// in the middle of it sees it); the returned Notify fires when one arrives.
    pub fn hold_applies(&self, resource: &str) -> Arc<tokio::sync::Notify> {
        let n = Arc::new(tokio::sync::Notify::new());
        self.lock().hold = Some((resource.to_string(), n.clone()));
        n
    }

    /// Answers applies again.
    pub fn release_applies(&self) {
        self.lock().hold = None;
    }

    /// Watch requests whose connection is open now.
    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }

    /// Every (verb, group, resource, namespace) requested so far.
    pub fn accesses(&self) -> Vec<Access> {
        self.lock().accesses.clone()
    }

    /// Requests refused for breaking a rule.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// How many times `resource/name` was created.
    pub fn creates(&self, resource: &str, name: &str) -> u32 {
        self.lock()
            .creates
            .get(&(resource.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The total number of objects created (pods included).
    pub fn total_creates(&self) -> u32 {
        self.lock().creates.values().sum()
    }

    /// `resource/name` of the objects the client created, in order (pods excluded).
    pub fn created_order(&self) -> Vec<String> {
        self.lock().created_order.clone()
    }

    /// (resource/name, namespace, propagationPolicy) of every DELETE.
    pub fn deletes(&self) -> Vec<(String, String, Option<String>)> {
        self.lock().deletes.clone()
    }

    /// Flink REST calls made through the service proxy.
    pub fn proxy_calls(&self) -> Vec<ProxyCall> {
        self.lock().proxy_calls.clone()
    }

    /// The live object, if it exists.
    pub fn object(&self, group: &str, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(
                (group.to_string(), resource.to_string()),
                ns.to_string(),
                name.to_string(),
            ))
            .map(|s| s.object.clone())
    }

    /// Names of the objects of a resource in a namespace.
    pub fn names(&self, group: &str, resource: &str, ns: &str) -> Vec<String> {
        self.lock()
            .objects
            .keys()
            .filter(|(k, n, _)| k.0 == group && k.1 == resource && n == ns)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// Marks an object as being deleted (a foreground deletion waiting for its dependents).
    pub fn mark_terminating(&self, group: &str, resource: &str, ns: &str, name: &str) {
        let mut g = self.lock();
        let key = (
            (group.to_string(), resource.to_string()),
            ns.to_string(),
            name.to_string(),
        );
        let Some(mut stored) = g.objects.get(&key).cloned() else {
            panic!("no {resource} {ns}/{name}");
        };
        stored.object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        let ev = g.put(key, stored, "MODIFIED");
        let _ = self.events.send(ev);
    }

    /// Every pod in `ns` comes up Running and ready (the scheduler found a node the
    /// autoscaler added, the image arrived); watchers see MODIFIED.
    pub fn heal_pods(&self, ns: &str) {
        let pods: Vec<(String, String, String)> = {
            let g = self.lock();
            g.objects
                .iter()
                .filter(|((k, n, _), _)| k.1 == "pods" && n == ns)
                .map(|((_, _, name), s)| {
                    let c = &s.object["spec"]["containers"][0];
                    (
                        name.clone(),
                        c["name"]
                            .as_str()
                            .unwrap_or("flink-main-container")
                            .to_string(),
                        c["image"].as_str().unwrap_or("flink").to_string(),
                    )
                })
                .collect()
        };
        for (pod, container, image) in pods {
            let status = pod_status(&Scenario::Healthy, false, &pod, &container, &image);
            self.set_pod_status(ns, &pod, status);
        }
    }

    /// Replaces a pod's status (what the kubelet would report next); watchers see MODIFIED.
    pub fn set_pod_status(&self, ns: &str, name: &str, status: Value) {
        let mut g = self.lock();
        let key = (
            ("".to_string(), "pods".to_string()),
            ns.to_string(),
            name.to_string(),
        );
        let Some(mut stored) = g.objects.get(&key).cloned() else {
            panic!("no pod {ns}/{name}");
        };
        stored.object["status"] = status;
        let ev = g.put(key, stored, "MODIFIED");
        let _ = self.events.send(ev);
    }
}

impl Inner {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores an object with a new resourceVersion and records the watch event.
    fn put(
        &mut self,
        key: (Kind, String, String),
        mut stored: Stored,
        kind: &'static str,
    ) -> WatchEvent {
        let rv = self.next_rv();
        stored.object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let ev = WatchEvent {
            rv,
            key: key.0.clone(),
            namespace: key.1.clone(),
            kind,
            object: stored.object.clone(),
        };
        self.objects.insert(key, stored);
        self.history.push(ev.clone());
        ev
    }

    fn remove(&mut self, key: &(Kind, String, String)) -> Option<WatchEvent> {
        let stored = self.objects.remove(key)?;
        let rv = self.next_rv();
        let mut object = stored.object;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let ev = WatchEvent {
            rv,
            key: key.0.clone(),
            namespace: key.1.clone(),
            kind: "DELETED",
            object,
        };
        self.history.push(ev.clone());
        Some(ev)
    }

    fn violation(&mut self, method: &Method, path: &str, message: String) -> Response {
        self.violations.push(Violation {
            method: method.to_string(),
            path: path.to_string(),
            message: message.clone(),
        });
        status(422, "Invalid", &message, None)
    }
}

/// A Kubernetes `Status` failure body.
fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A parsed API path.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: String,
    resource: String,
    name: Option<String>,
    /// `proxy` path below a service, or another subresource.
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(9, '/').collect();
    let (group, version, rest) = match *parts.first()? {
        "api" => ("".to_string(), parts.get(1)?.to_string(), &parts[2..]),
        "apis" => (
            parts.get(1)?.to_string(),
            parts.get(2)?.to_string(),
            &parts[3..],
        ),
        _ => return None,
    };
    if rest.first() != Some(&"namespaces") {
        return None;
    }
    let namespace = rest.get(1)?.to_string();
    let resource = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
    let name = rest.get(3).map(|s| s.to_string());
    let sub = if rest.len() > 4 {
        Some(rest[4..].join("/"))
    } else {
        None
    };
    Some(Target {
        group,
        version,
        namespace,
        resource,
        name,
        sub,
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn kind_of(group: &str, resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match (group, resource) {
        ("", "configmaps") => ("v1", "ConfigMap"),
        ("", "services") => ("v1", "Service"),
        ("", "pods") => ("v1", "Pod"),
        ("", "secrets") => ("v1", "Secret"),
        ("batch", "jobs") => ("batch/v1", "Job"),
        ("apps", "deployments") => ("apps/v1", "Deployment"),
        _ => return None,
    })
}

/// Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`.
fn matches_selector(labels: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let q = query(&uri);
    let Some(t) = parse_path(&path) else {
        return status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
            None,
        );
    };
    let watch = q
        .get("watch")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    let verb = match (&method, &t.name, &t.sub) {
        (&Method::GET, _, Some(s)) if s.starts_with("proxy") => "get",
        (&Method::POST, _, Some(s)) if s.starts_with("proxy") => "create",
        (&Method::PATCH, _, Some(s)) if s.starts_with("proxy") => "patch",
        (&Method::GET, None, _) if watch => "watch",
        (&Method::GET, None, _) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::PATCH, Some(_), _) => "patch",
        (&Method::DELETE, Some(_), _) => "delete",
        (&Method::POST, None, _) => "create",
        (&Method::PUT, Some(_), _) => "update",
        _ => "unknown",
    };
    let resource_path = match (&t.sub, t.name.as_deref()) {
        (Some(s), Some(_)) if s.starts_with("proxy") => format!("{}/proxy", t.resource),
        _ => t.resource.clone(),
    };
    let access = Access {
        verb: verb.to_string(),
        group: t.group.clone(),
        resource: resource_path.clone(),
        namespace: t.namespace.clone(),
    };

    let (black_hole, denied, held) = {
        let mut g = app.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.accesses.push(access.clone());
        let denied = matches!(&g.scenario, Scenario::Forbidden { verb: fv, resource: fr }
            if *fv == verb && *fr == resource_path);
        let held = g
            .hold
            .clone()
            .filter(|(r, _)| verb == "patch" && *r == t.resource)
            .map(|(_, n)| n);
        (g.scenario == Scenario::BlackHole, denied, held)
    };
    if black_hole {
        return std::future::pending::<Response>().await;
    }
    if denied {
        return forbidden(&access, t.name.as_deref());
    }
    if let Some(arrived) = held {
        arrived.notify_one();
        return std::future::pending::<Response>().await;
    }
    // The Flink REST API through the service proxy.
    if let (Some(sub), Some(service)) = (&t.sub, &t.name) {
        return proxy(&app, &t, sub, service, &method, &uri, &headers, &body).await;
    }
    let mut g = app.inner.lock().unwrap_or_else(|e| e.into_inner());
    let key_kind: Kind = (t.group.clone(), t.resource.clone());
    let ns_exists = g.namespaces.contains(&t.namespace);

    let Some((api_version, kind)) = kind_of(&t.group, &t.resource) else {
        return status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
            None,
        );
    };
    if t.version != "v1" {
        return status(
            404,
            "NotFound",
            &format!("the fake serves only v1 APIs ({path})"),
            None,
        );
    }

    match verb {
        "list" => {
            let sel = q.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = g
                .objects
                .iter()
                .filter(|((k, n, _), s)| {
                    *k == key_kind
                        && *n == t.namespace
                        && matches_selector(&s.object["metadata"]["labels"], &sel)
                })
                .map(|(_, s)| s.object.clone())
                .collect();
            ok_json(&json!({
                "kind": format!("{kind}List"), "apiVersion": api_version,
                "metadata": {"resourceVersion": g.rv.to_string()},
                "items": items,
            }))
        }
        "watch" => {
            let sel = q.get("labelSelector").cloned().unwrap_or_default();
            let from: u64 = q
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(g.rv);
            let timeout = q
                .get("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(290u64)
                .min(290);
            let wants = {
                let key_kind = key_kind.clone();
                let ns = t.namespace.clone();
                move |e: &WatchEvent| {
                    e.rv > from
                        && e.key == key_kind
                        && e.namespace == ns
                        && matches_selector(&e.object["metadata"]["labels"], &sel)
                }
            };
            let backlog: Vec<WatchEvent> = g.history.iter().filter(|e| wants(e)).cloned().collect();
            let mut rx = app.events.subscribe();
            drop(g);
            let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
            let open = WatchOpen::new(app.open_watches.clone());
            tokio::spawn(async move {
                let _open = open;
                let line = |e: &WatchEvent| {
                    Bytes::from(json!({"type": e.kind, "object": e.object}).to_string() + "\n")
                };
                let mut last = from;
                for e in &backlog {
                    last = e.rv;
                    if tx.send(Ok(line(e))).await.is_err() {
                        return;
                    }
                }
                let deadline = tokio::time::sleep(Duration::from_secs(timeout));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => return,
                        // The client closed the watch.
                        _ = tx.closed() => return,
                        r = rx.recv() => match r {
                            Ok(e) if e.rv > last && wants(&e) => {
                                last = e.rv;
                                if tx.send(Ok(line(&e))).await.is_err() { return; }
                            }
                            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            });
            let stream = futures::stream::unfold(out, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| status(500, "InternalError", "cannot stream", None))
        }
        "get" => {
            let name = t.name.clone().unwrap_or_default();
            match g
                .objects
                .get(&(key_kind, t.namespace.clone(), name.clone()))
            {
                Some(s) => ok_json(&s.object),
                None => not_found(&t.resource, &name),
            }
        }
        "patch" => {
            let name = t.name.clone().unwrap_or_default();
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if ct != "application/apply-patch+yaml" {
                let msg =
                    format!("the fake accepts only server-side apply, got content type {ct:?}");
                g.violations.push(Violation {
                    method: method.to_string(),
                    path: path.clone(),
                    message: msg.clone(),
                });
                return status(415, "UnsupportedMediaType", &msg, None);
            }
            match q.get("fieldManager") {
                Some(m) if m == FIELD_MANAGER => {}
                other => {
                    return g.violation(
                        &method,
                        &path,
                        format!("fieldManager must be {FIELD_MANAGER:?} for apply, got {other:?}"),
                    );
                }
            }
            if !ns_exists {
                return namespace_missing(&t.namespace);
            }
            let applied: Value = match serde_yaml::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return status(
                        400,
                        "BadRequest",
                        &format!("cannot parse apply body: {e}"),
                        None,
                    )
                }
            };
            if applied["apiVersion"] != api_version || applied["kind"] != kind {
                return g.violation(
                    &method,
                    &path,
                    format!(
                        "apply body is {} {}, path says {api_version} {kind}",
                        applied["apiVersion"], applied["kind"]
                    ),
                );
            }
            if applied["metadata"]["name"] != name.as_str() {
                return g.violation(
                    &method,
                    &path,
                    format!(
                        "metadata.name {} does not match the path's {name}",
                        applied["metadata"]["name"]
                    ),
                );
            }
            if let Some(ns) = applied["metadata"]["namespace"].as_str() {
                if ns != t.namespace {
                    return status(
                        400,
                        "BadRequest",
                        "the namespace of the object does not match the namespace on the request",
                        None,
                    );
                }
            }
            if let Err(msg) = check_suite_rules(&g, &t.namespace, kind, &applied) {
                return g.violation(&method, &path, msg);
            }
            let key = (key_kind.clone(), t.namespace.clone(), name.clone());
            let existing = g.objects.get(&key).cloned();
            if let (Some(rv), Some(ex)) =
                (applied["metadata"]["resourceVersion"].as_str(), &existing)
            {
                if ex.object["metadata"]["resourceVersion"].as_str() != Some(rv) {
                    return status(409, "Conflict", &format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", t.resource), Some(json!({"name": name, "kind": t.resource})));
                }
            }
            let stored = match existing {
                Some(ex) => {
                    if kind == "Job"
                        && ex.applied["spec"]["template"] != applied["spec"]["template"]
                    {
                        return g.violation(&method, &path, format!("Job.batch \"{name}\" is invalid: spec.template: Invalid value: field is immutable"));
                    }
                    let mut object = merge_applied(&ex.object, &applied);
                    object["metadata"]["uid"] = ex.object["metadata"]["uid"].clone();
                    Stored { object, applied }
                }
                None => {
                    // Creating through apply is also a create.
                    let create = Access {
                        verb: "create".into(),
                        ..access.clone()
                    };
                    g.accesses.push(create);
                    if let Scenario::Forbidden {
                        verb: "create",
                        resource: fr,
                    } = g.scenario.clone()
                    {
                        if fr == t.resource {
                            return forbidden(
                                &Access {
                                    verb: "create".into(),
                                    ..access
                                },
                                Some(&name),
                            );
                        }
                    }
                    let mut object = applied.clone();
                    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                    object["metadata"]["namespace"] = json!(t.namespace);
                    object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                    if kind == "Job" {
                        default_job(&mut object);
                    }
                    *g.creates
                        .entry((t.resource.clone(), name.clone()))
                        .or_default() += 1;
                    g.created_order.push(format!("{}/{name}", t.resource));
                    Stored { object, applied }
                }
            };
            let created = !g.objects.contains_key(&key);
            let ev = g.put(key, stored, if created { "ADDED" } else { "MODIFIED" });
            let _ = app.events.send(ev.clone());
            // The job and deployment controllers create the pods.
            if created && (kind == "Job" || kind == "Deployment") {
                let pods = make_pods(&g.scenario, kind, &ev.object);
                for pod in pods {
                    let pname = pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    *g.creates.entry(("pods".into(), pname.clone())).or_default() += 1;
                    let pkey = (
                        ("".to_string(), "pods".to_string()),
                        t.namespace.clone(),
                        pname,
                    );
                    let pev = g.put(
                        pkey,
                        Stored {
                            object: pod.clone(),
                            applied: pod,
                        },
                        "ADDED",
                    );
                    let _ = app.events.send(pev);
                }
            }
            ok_json(&ev.object)
        }
        "delete" => {
            let name = t.name.clone().unwrap_or_default();
            let opts: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let policy = opts["propagationPolicy"]
                .as_str()
                .map(str::to_string)
                .or_else(|| q.get("propagationPolicy").cloned());
            g.deletes.push((
                format!("{}/{name}", t.resource),
                t.namespace.clone(),
                policy.clone(),
            ));
            let key = (key_kind, t.namespace.clone(), name.clone());
            let Some(uid) = g
                .objects
                .get(&key)
                .map(|s| s.object["metadata"]["uid"].clone())
            else {
                return not_found(&t.resource, &name);
            };
            if let Some(pre) = opts["preconditions"]["resourceVersion"].as_str() {
                let cur = g.objects.get(&key).and_then(|s| {
                    s.object["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_string)
                });
                if cur.as_deref() != Some(pre) {
                    return status(409, "Conflict", &format!("Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition ({pre}) does not match the ResourceVersion in record ({}). The object might have been modified", t.resource, cur.unwrap_or_default()), None);
                }
            }
            match policy.as_deref() {
                Some("Foreground") | Some("Background") => {}
                other => {
                    return g.violation(&method, &path, format!("delete of {}/{name} without propagationPolicy Foreground/Background (got {other:?}): a Job's dependents would be orphaned", t.resource));
                }
            }
            let Some(ev) = g.remove(&key) else {
                return not_found(&t.resource, &name);
            };
            let _ = app.events.send(ev.clone());
            // Garbage collection of dependents, transitively.
            let mut owners = vec![uid];
            while let Some(owner) = owners.pop() {
                let owned: Vec<_> = g
                    .objects
                    .iter()
                    .filter(|(_, s)| {
                        s.object["metadata"]["ownerReferences"]
                            .as_array()
                            .map(|refs| refs.iter().any(|r| r["uid"] == owner))
                            .unwrap_or(false)
                    })
                    .map(|(k, s)| (k.clone(), s.object["metadata"]["uid"].clone()))
                    .collect();
                for (k, u) in owned {
                    if let Some(ev) = g.remove(&k) {
                        let _ = app.events.send(ev);
                    }
                    owners.push(u);
                }
            }
            ok_json(
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": t.resource, "group": t.group}}),
            )
        }
        _ => status(
            405,
            "MethodNotAllowed",
            &format!("{method} is not supported by the fake on {path}"),
            None,
        ),
    }
}

/// Counts a watch request as open while it lives.
struct WatchOpen(Arc<AtomicUsize>);

impl WatchOpen {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for WatchOpen {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request to a Service's proxy subresource: Flink's REST API behind a JobManager Service
/// (the [`FakeFlink`] of [`FakeKube::serve_flink`], else canned answers).
#[allow(clippy::too_many_arguments)]
async fn proxy(
    app: &App,
    t: &Target,
    sub: &str,
    service: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if !sub.starts_with("proxy") || t.resource != "services" {
        return status(404, "NotFound", "subresource not served by the fake", None);
    }
    let svc_name = service.split(':').next().unwrap_or_default().to_string();
    let rest = sub.trim_start_matches("proxy").to_string();
    // What the API server decides before it forwards (the lock is not held across the call).
    let forward = {
        let mut g = app.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.proxy_calls.push(ProxyCall {
            method: method.to_string(),
            namespace: t.namespace.clone(),
            service: service.to_string(),
            path: rest.clone(),
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: body.to_vec(),
        });
        let key = (
            ("".to_string(), "services".to_string()),
            t.namespace.clone(),
            svc_name.clone(),
        );
        if !g.objects.contains_key(&key) {
            return status(
                404,
                "NotFound",
                &format!("services \"{svc_name}\" not found"),
                Some(json!({"name": svc_name, "kind": "services"})),
            );
        }
        match g.flink.clone() {
            Some(flink) => match ready_jobmanager(&g, &t.namespace, &svc_name) {
                Some(args) => Some((flink, args)),
                None => {
                    return status(
                        503,
                        "ServiceUnavailable",
                        &format!("no endpoints available for service \"{svc_name}\""),
                        None,
                    );
                }
            },
            None => None,
        }
    };
    let Some((flink, args)) = forward else {
        return match (method.as_str(), rest.as_str()) {
            ("POST", p) if p.ends_with("/savepoints") => {
                ok_json(&json!({"request-id": "5e1b5a7a2f6c4bd1a1b0c0ffee000001"}))
            }
            (_, "/overview") => ok_json(
                &json!({"taskmanagers": 1, "slots-total": 2, "slots-available": 2, "flink-version": "1.17.2"}),
            ),
            (_, "/config") => ok_json(&json!({"flink-version": "1.17.2"})),
            (_, rest) => (
                StatusCode::NOT_FOUND,
                [("content-type", "application/json")],
                json!({"errors": ["Not found: ".to_string() + rest]}).to_string(),
            )
                .into_response(),
        };
    };
    // The JobManager runs its job (application mode) once it is up.
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(job) = arg("--job-id") {
        flink.start_application_job_from(&job, arg("--fromSavepoint").as_deref());
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.clone(),
    };
    let base = format!("{}/{svc_name}", t.namespace);
    let (code, v) = flink
        .serve_rest(&base, method.as_str(), &path_and_query, body)
        .await;
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The container args of the JobManager Job `name` when one of its pods is ready (the
/// Service has an endpoint).
fn ready_jobmanager(g: &Inner, ns: &str, name: &str) -> Option<Vec<String>> {
    let ready = g.objects.iter().any(|((k, n, _), s)| {
        k.1 == "pods"
            && n == ns
            && s.object["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|o| o["kind"] == "Job" && o["name"] == name))
            && s.object["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ready"] == true))
    });
    if !ready {
        return None;
    }
    let job = g.objects.get(&(
        ("batch".to_string(), "jobs".to_string()),
        ns.to_string(),
        name.to_string(),
    ))?;
    Some(
        job.object["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
        Some(json!({"name": name, "kind": resource})),
    )
}

fn namespace_missing(ns: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("namespaces \"{ns}\" not found"),
        Some(json!({"name": ns, "kind": "namespaces"})),
    )
}

/// The API server's 403 for an RBAC denial.
fn forbidden(a: &Access, name: Option<&str>) -> Response {
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", a.resource),
        None => a.resource.clone(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{USER}\" cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{}\"",
        a.verb, a.resource, a.group, a.namespace
    );
    status(
        403,
        "Forbidden",
        &message,
        Some(json!({"name": name.unwrap_or_default(), "group": a.group, "kind": a.resource})),
    )
}

/// Fields the manager owns come from the applied configuration; server fields and status stay.
fn merge_applied(live: &Value, applied: &Value) -> Value {
    let mut out = applied.clone();
    for k in ["uid", "creationTimestamp", "namespace"] {
        out["metadata"][k] = live["metadata"][k].clone();
    }
    if !live["status"].is_null() {
        out["status"] = live["status"].clone();
    }
    if live["kind"] == "Job" {
        out["spec"]["selector"] = live["spec"]["selector"].clone();
        if let Some(labels) = live["spec"]["template"]["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                out["spec"]["template"]["metadata"]["labels"][k] = v.clone();
            }
        }
    }
    out
}

/// What the API server defaults on a new Job: a selector on its uid, also in the template.
fn default_job(job: &mut Value) {
    let uid = job["metadata"]["uid"].clone();
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] = uid;
    job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] =
        job["metadata"]["name"].clone();
    job["status"] = json!({"active": 1});
}

const SUITE_OBJECT_LABELS: &[&str] = &[
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "flink-suite.io/job-id",
];
const SUITE_POD_LABELS: &[&str] = &[
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
    "flink-suite.io/deployment-id",
    "flink-suite.io/job-id",
];

/// The suite's rules: labels everywhere, owner references on everything but the Job.
fn check_suite_rules(g: &Inner, ns: &str, kind: &str, obj: &Value) -> Result<(), String> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    for l in SUITE_OBJECT_LABELS {
        if obj["metadata"]["labels"][l]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            return Err(format!("{kind} {name} lacks label {l}"));
        }
    }
    if kind == "Job" || kind == "Deployment" {
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        for l in SUITE_POD_LABELS {
            if labels[l].as_str().unwrap_or_default().is_empty() {
                return Err(format!("{kind} {name}: pod template lacks label {l}"));
            }
        }
    }
    if kind == "Deployment" {
        let sel = &obj["spec"]["selector"]["matchLabels"];
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        let ok = sel
            .as_object()
            .map(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
            .unwrap_or(false);
        if !ok {
            return Err(format!("Deployment.apps \"{name}\" is invalid: spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"));
        }
    }
    if kind == "Job" {
        if !obj["spec"]["selector"].is_null() && obj["spec"]["manualSelector"] != true {
            return Err(format!("Job.batch \"{name}\" is invalid: spec.selector: Invalid value: `selector` not auto-generated"));
        }
        return Ok(());
    }
    // Everything else belongs to the JobManager Job of the same job id.
    let refs = obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if refs.is_empty() && (kind == "ConfigMap" || kind == "Secret") {
        // The ConfigMap and Secret come before the Job exists; adopted once it is there.
        return Ok(());
    }
    let ok = refs.iter().any(|r| {
        r["apiVersion"] == "batch/v1"
            && r["kind"] == "Job"
            && r["name"].as_str().is_some_and(|n| {
                g.objects
                    .get(&(
                        ("batch".into(), "jobs".into()),
                        ns.to_string(),
                        n.to_string(),
                    ))
                    .is_some_and(|j| j.object["metadata"]["uid"] == r["uid"])
            })
    });
    if !ok {
        return Err(format!(
            "{kind} {name}: ownerReferences must name an existing JobManager Job by its uid (got {})",
            Value::Array(refs)
        ));
    }
    if refs.iter().any(|r| r["blockOwnerDeletion"] == true) {
        return Err(format!("{kind} {name}: blockOwnerDeletion needs update on jobs/finalizers, which the manager's Role does not grant"));
    }
    Ok(())
}

/// The pods the job or deployment controller creates, in the scenario's state.
fn make_pods(scenario: &Scenario, kind: &str, owner: &Value) -> Vec<Value> {
    let name = owner["metadata"]["name"].as_str().unwrap_or_default();
    let labels = owner["spec"]["template"]["metadata"]["labels"].clone();
    let replicas = if kind == "Job" {
        1
    } else {
        owner["spec"]["replicas"].as_u64().unwrap_or(1)
    };
    let container = owner["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("flink-main-container")
        .to_string();
    let image = owner["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("flink")
        .to_string();
    (0..replicas)
        .map(|i| {
            let pod = format!("{name}-{i}");
            let jm = kind == "Job";
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": pod, "namespace": owner["metadata"]["namespace"], "labels": labels,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "ownerReferences": [{
                        "apiVersion": owner["apiVersion"], "kind": kind, "name": name,
                        "uid": owner["metadata"]["uid"], "controller": true,
                    }],
                },
                "spec": {"containers": [{"name": container, "image": image}]},
                "status": pod_status(scenario, jm, &pod, &container, &image),
            })
        })
        .collect()
}

/// A pod status as the kubelet and scheduler report it.
pub fn pod_status(
    scenario: &Scenario,
    jobmanager: bool,
    pod: &str,
    container: &str,
    image: &str,
) -> Value {
    let running = json!({
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": container, "image": image, "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}}}],
    });
    match scenario {
        Scenario::ImagePullBackOff => json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": container, "image": image, "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\": ErrImagePull: failed to pull and unpack image \"{image}\": not found")}}}],
        }),
        Scenario::CrashLoopBackOff if jobmanager => json!({
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": container, "image": image, "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": format!("back-off 1m20s restarting failed container={container} pod={pod}")}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                    "message": "Could not find or load main class com.example.Missing"}}}],
        }),
        Scenario::OomKilled if jobmanager => json!({
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": container, "image": image, "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": format!("back-off 20s restarting failed container={container} pod={pod}")}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}],
        }),
        Scenario::Unschedulable => json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."}],
        }),
        _ => running,
    }
}
