//! A strict fake of the Kubernetes API for `coordination.k8s.io/v1` Leases only, on
//! 127.0.0.1: GET one Lease (404 with a Status body when absent), POST (409 AlreadyExists),
//! PUT (the body's `metadata.resourceVersion` must be the stored one, else 409 Conflict;
//! missing it is a 422 here, as the manager must always name the version it read), every
//! object checked for `apiVersion`, `kind` and a name matching the path. Other paths answer
//! 404. Every request is recorded as (verb, namespace, name) so a test can compare the
//! verbs with the RBAC the deploy files grant.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};

const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";

#[derive(Default)]
struct Inner {
    leases: BTreeMap<(String, String), Value>,
    rv: u64,
    /// The next PUT of a lease is refused with 409 (as if another replica wrote first).
    conflict_next_put: bool,
    requests: Vec<(String, String, String)>,
}

/// The fake server; stops on drop.
pub struct FakeLeases {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLeases {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLeases {
    pub async fn start() -> FakeLeases {
        let inner = Arc::new(Mutex::new(Inner {
            rv: 1000,
            ..Default::default()
        }));
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeLeases { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url().parse().unwrap())).unwrap()
    }

    /// A kubeconfig file naming the fake (for the binary).
    pub fn kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\ncurrent-context: fake\n",
                self.url()
            ),
        )
        .unwrap();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored lease.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .leases
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The holder of a stored lease (`""` when released).
    pub fn holder(&self, ns: &str, name: &str) -> Option<String> {
        self.lease(ns, name).map(|l| {
            l["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    }

    pub fn conflict_next_put(&self) {
        self.lock().conflict_next_put = true;
    }

    /// (verb, namespace, name) of every request.
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.lock().requests.clone()
    }
}

fn status(code: u16, reason: &str, message: String) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        })
        .to_string(),
    )
        .into_response()
}

fn ok(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

/// Checks the envelope of a Lease body; its name.
fn check(body: &Value, path_name: Option<&str>) -> Result<String, Box<Response>> {
    if body["apiVersion"] != "coordination.k8s.io/v1" || body["kind"] != "Lease" {
        return Err(Box::new(status(
            400,
            "BadRequest",
            format!(
                "the object is a {:?} of {:?}, not a coordination.k8s.io/v1 Lease",
                body["kind"], body["apiVersion"]
            ),
        )));
    }
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(Box::new(status(
            422,
            "Invalid",
            "metadata.name: Required value".into(),
        )));
    }
    if path_name.is_some_and(|p| p != name) {
        return Err(Box::new(status(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
        )));
    }
    Ok(name.to_string())
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(rest) = uri.path().strip_prefix(PREFIX) else {
        return status(404, "NotFound", format!("{} not served", uri.path()));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (ns, name) = match parts.as_slice() {
        [ns, "leases"] => (ns.to_string(), None),
        [ns, "leases", name] => (ns.to_string(), Some(name.to_string())),
        _ => return status(404, "NotFound", format!("{} not served", uri.path())),
    };
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    let verb = match (&method, &name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        _ => return status(405, "MethodNotAllowed", format!("{method} {}", uri.path())),
    };
    g.requests.push((
        verb.to_string(),
        ns.clone(),
        name.clone().unwrap_or_default(),
    ));
    let parsed = || serde_json::from_slice::<Value>(&body);
    match verb {
        "get" => {
            let name = name.unwrap_or_default();
            match g.leases.get(&(ns, name.clone())) {
                Some(l) => ok(StatusCode::OK, l),
                None => status(
                    404,
                    "NotFound",
                    format!("leases.coordination.k8s.io \"{name}\" not found"),
                ),
            }
        }
        "create" => {
            let Ok(mut obj) = parsed() else {
                return status(400, "BadRequest", "the body is not JSON".into());
            };
            let name = match check(&obj, None) {
                Ok(n) => n,
                Err(r) => return *r,
            };
            if g.leases.contains_key(&(ns.clone(), name.clone())) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            g.rv += 1;
            obj["metadata"]["resourceVersion"] = json!(g.rv.to_string());
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["uid"] = json!(format!("uid-{}", g.rv));
            g.leases.insert((ns, name), obj.clone());
            ok(StatusCode::CREATED, &obj)
        }
        _ => {
            let Ok(mut obj) = parsed() else {
                return status(400, "BadRequest", "the body is not JSON".into());
            };
            let name = match check(&obj, name.as_deref()) {
                Ok(n) => n,
                Err(r) => return *r,
            };
            let Some(stored) = g.leases.get(&(ns.clone(), name.clone())).cloned() else {
                return status(
                    404,
                    "NotFound",
                    format!("leases.coordination.k8s.io \"{name}\" not found"),
                );
            };
            let Some(rv) = obj["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
            else {
                return status(
                    422,
                    "Invalid",
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                        .into(),
                );
            };
            let conflict = std::mem::take(&mut g.conflict_next_put);
            if conflict || stored["metadata"]["resourceVersion"] != rv.as_str() {
                return status(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                );
            }
            g.rv += 1;
            obj["metadata"]["resourceVersion"] = json!(g.rv.to_string());
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["uid"] = stored["metadata"]["uid"].clone();
            g.leases.insert((ns, name), obj.clone());
            ok(StatusCode::OK, &obj)
        }
    }
}
