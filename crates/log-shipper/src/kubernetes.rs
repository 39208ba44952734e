//! Kubernetes pod discovery: the suite's Flink pods on this node and their container logs.
//!
//! The pods are watched through the Kubernetes API with `kube-runtime`'s watcher (a list,
//! then a watch from its `resourceVersion`, the suite's label selector and
//! `fieldSelector=spec.nodeName=<node>`), so a pod is seen as soon as the API server has it,
//! however short-lived; when the watch falls too far behind (`410 Gone`) the watcher lists
//! again and the pod set is replaced by the new list. Container logs are kubelet's files
//! `{pod_log_dir}/{namespace}_{pod}_{uid}/{container}/{n}.log` in the CRI log format.
//! [`PodLabels`] is the [`LabelSource`] that gives every file its pod's labels (namespace,
//! deployment id, job id, component, pod, container) and keeps files of foreign pods out.
//! A failed list or watch is logged and counted and retried with back-off while the last
//! known pod set is kept, so an API outage never stops shipping the known pods.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use common::labels::FlinkPodLabels;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::runtime::{watcher, WatchStreamExt};
use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};

use crate::record::{LabelSource, Labels};

/// The in-cluster service-account token.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The in-cluster service-account CA.
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The former polling interval, now unused (see [`KubernetesConfig::resync_interval`]).
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The `kubernetes` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Discover pods and ship their container logs.
    pub enabled: bool,
    /// This node (default `$NODE_NAME`, set from `spec.nodeName` by the Downward API).
    pub node_name: Option<String>,
    /// kubelet's pod log directory.
    pub pod_log_dir: PathBuf,
    /// API server URL (default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`).
    pub api_url: Option<String>,
    /// Bearer token file (re-read at least once a minute, as projected tokens rotate).
    pub token_file: PathBuf,
    /// CA bundle of the API server (used for `https` when the file exists; re-read about
    /// once a minute, as the in-cluster CA rotates).
    pub ca_file: PathBuf,
    /// No longer used: pods are watched, not polled. Accepted so that existing files load;
    /// a value other than the default is reported with a warning at start.
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    /// Kubernetes namespaces to list pods in (needs only a namespaced Role); empty: all
    /// namespaces (needs a ClusterRole to list pods).
    pub namespaces: Vec<String>,
    /// How lines of container logs become events (default `log4j_timestamp`).
    pub multiline: Option<crate::multiline::Mode>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            node_name: None,
            pod_log_dir: PathBuf::from("/var/log/pods"),
            api_url: None,
            token_file: PathBuf::from(DEFAULT_TOKEN_FILE),
            ca_file: PathBuf::from(DEFAULT_CA_FILE),
            resync_interval: DEFAULT_RESYNC_INTERVAL,
            namespaces: Vec::new(),
            multiline: None,
        }
    }
}

impl KubernetesConfig {
    /// The glob of every container log file under `pod_log_dir`.
    pub fn glob(&self) -> String {
        self.pod_log_dir
            .join("*")
            .join("*")
            .join("*.log")
            .to_string_lossy()
            .into_owned()
    }

    /// The API server URL, from the config or the in-cluster environment.
    pub fn api_url(&self) -> Option<String> {
        self.api_url.clone().or_else(|| {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Some(format!("https://{host}:{port}"))
        })
    }

    /// The node name, from the config or `$NODE_NAME`.
    pub fn node_name(&self) -> Option<String> {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .filter(|s| !s.is_empty())
    }
}

/// One suite pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Kubernetes namespace.
    pub k8s_namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// Pod IP.
    pub ip: Option<String>,
    /// The suite's labels.
    pub labels: FlinkPodLabels,
}

/// The pods known from the watch, shared between the watcher and the routes.
#[derive(Debug, Default)]
struct PodSet {
    /// Pods that exist now, by uid.
    live: HashMap<String, Pod>,
    /// Every pod ever seen, by uid (labels of files still being read after the pod is gone).
    seen: HashMap<String, Pod>,
    /// The scopes (`None`: the whole cluster, else a namespace) listed completely at least
    /// once; before that, no pod of the scope is known to be gone.
    listed: HashSet<Option<String>>,
}

impl PodSet {
    fn listed(&self, namespace: &str) -> bool {
        self.listed.contains(&None) || self.listed.contains(&Some(namespace.to_string()))
    }

    /// Records `p` as seen; whether that changed what is remembered.
    fn see(&mut self, p: &Pod) -> bool {
        if self.seen.get(&p.uid) == Some(p) {
            return false;
        }
        self.seen.insert(p.uid.clone(), p.clone());
        true
    }
}

/// A pod as remembered on disk (`{data-dir}/kubernetes-pods.json`).
#[derive(Serialize, Deserialize)]
struct SavedPod {
    name: String,
    namespace: String,
    uid: String,
    ip: Option<String>,
    labels: BTreeMap<String, String>,
}

/// The [`LabelSource`] of Kubernetes mode; clone it freely (shared state).
///
/// Every pod seen is remembered in a state file, so that after a restart (or while the API
/// is unreachable) the files of checkpointed pods get their labels before the first list.
#[derive(Clone)]
pub struct PodLabels {
    pod_log_dir: PathBuf,
    pods: Arc<RwLock<PodSet>>,
    state_file: Option<PathBuf>,
    /// Labels of files that are not container logs (other inputs).
    fallback: Arc<dyn LabelSource>,
}

impl PodLabels {
    /// An empty pod set over `pod_log_dir`.
    pub fn new(pod_log_dir: PathBuf, fallback: Arc<dyn LabelSource>) -> Self {
        Self {
            pod_log_dir,
            pods: Arc::default(),
            state_file: None,
            fallback,
        }
    }

    /// Remembers the pods seen in `path` and loads the ones remembered there (an unreadable
    /// file is reported and replaced).
    pub fn with_state_file(mut self, path: PathBuf) -> Self {
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<SavedPod>>(&bytes) {
                Ok(saved) => {
                    let mut set = self.pods.write().unwrap_or_else(|e| e.into_inner());
                    for p in saved {
                        if let Ok(labels) = FlinkPodLabels::from_labels(&p.labels) {
                            set.seen.insert(
                                p.uid.clone(),
                                Pod {
                                    k8s_namespace: p.namespace,
                                    name: p.name,
                                    uid: p.uid,
                                    ip: p.ip,
                                    labels,
                                },
                            );
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "Unreadable remembered pods; starting without them.")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "Cannot read the remembered pods.")
            }
        }
        self.state_file = Some(path);
        self
    }

    fn save(&self, set: &PodSet) {
        let Some(path) = &self.state_file else {
            return;
        };
        let saved: Vec<SavedPod> = set
            .seen
            .values()
            .map(|p| SavedPod {
                name: p.name.clone(),
                namespace: p.k8s_namespace.clone(),
                uid: p.uid.clone(),
                ip: p.ip.clone(),
                labels: p.labels.to_labels(),
            })
            .collect();
        // Durable like a checkpoint: temp file, fsync, rename, directory fsync, so a crash
        // or power loss leaves the old list or the new one, never an empty or torn file.
        let res = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|b| common::fs::write_atomic(path, &b).map_err(std::io::Error::from));
        if let Err(error) = res {
            tracing::warn!(file = %path.display(), %error, "Cannot remember the pods seen.");
        }
    }

    /// Replaces the whole live pod set (a complete list of the cluster).
    pub fn set_pods(&self, pods: Vec<Pod>) {
        self.replace_scope(None, pods);
    }

    /// Replaces the live pods of one scope (`None`: every pod; else one namespace) with a
    /// complete list of it: pods of the scope missing from `pods` are gone.
    pub fn replace_scope(&self, namespace: Option<&str>, pods: Vec<Pod>) {
        let mut set = self.pods.write().unwrap_or_else(|e| e.into_inner());
        set.live
            .retain(|_, p| namespace.is_some_and(|ns| p.k8s_namespace != ns));
        set.listed.insert(namespace.map(str::to_string));
        let mut changed = false;
        for p in pods {
            changed |= set.see(&p);
            set.live.insert(p.uid.clone(), p);
        }
        if changed {
            self.save(&set);
        }
    }

    /// A pod was added or changed.
    pub fn apply(&self, pod: Pod) {
        let mut set = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if set.see(&pod) {
            self.save(&set);
        }
        set.live.insert(pod.uid.clone(), pod);
    }

    /// A pod was deleted (or stopped being a suite pod).
    pub fn remove(&self, uid: &str) {
        let mut set = self.pods.write().unwrap_or_else(|e| e.into_inner());
        set.live.remove(uid);
    }

    /// Uids of the live pods.
    pub fn live_uids(&self) -> HashSet<String> {
        let set = self.pods.read().unwrap_or_else(|e| e.into_inner());
        set.live.keys().cloned().collect()
    }

    /// `(namespace, pod, uid, container)` of a container log path under `pod_log_dir`.
    fn parse_path(&self, path: &Path) -> Option<(String, String, String, String)> {
        let rel = path.strip_prefix(&self.pod_log_dir).ok()?;
        let mut comps = rel.components().map(|c| c.as_os_str().to_string_lossy());
        let dir = comps.next()?;
        let container = comps.next()?.into_owned();
        comps.next()?;
        let mut parts = dir.splitn(3, '_');
        let ns = parts.next()?.to_string();
        let pod = parts.next()?.to_string();
        let uid = parts.next()?.to_string();
        Some((ns, pod, uid, container))
    }
}

impl LabelSource for PodLabels {
    fn labels_for(&self, path: &Path) -> Labels {
        let Some((_, pod_name, uid, container)) = self.parse_path(path) else {
            return self.fallback.labels_for(path);
        };
        let set = self.pods.read().unwrap_or_else(|e| e.into_inner());
        match set.seen.get(&uid) {
            Some(pod) => {
                Labels::from_pod(&pod.labels, &pod.name, Some(&container), pod.ip.as_deref())
            }
            None => Labels {
                pod: Some(pod_name),
                container: Some(container),
                ..Labels::default()
            },
        }
    }

    fn accepts(&self, path: &Path) -> bool {
        match self.parse_path(path) {
            Some((_, _, uid, _)) => {
                let set = self.pods.read().unwrap_or_else(|e| e.into_inner());
                set.live.contains_key(&uid)
            }
            None => !path.starts_with(&self.pod_log_dir),
        }
    }

    fn cri(&self, path: &Path) -> bool {
        path.starts_with(&self.pod_log_dir)
    }

    fn gone(&self, path: &Path) -> bool {
        let Some((ns, _, uid, _)) = self.parse_path(path) else {
            return false;
        };
        let set = self.pods.read().unwrap_or_else(|e| e.into_inner());
        set.listed(&ns) && !set.live.contains_key(&uid)
    }
}

/// Why watching pods cannot start or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No API URL configured and not in a cluster.
    #[error("kubernetes.api_url is not set and KUBERNETES_SERVICE_HOST is not in the environment")]
    NoApiUrl,
    /// The API URL does not parse.
    #[error("kubernetes.api_url {url:?} is not a valid URL: {message}")]
    BadApiUrl {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// No node name.
    #[error("kubernetes.node_name is not set and NODE_NAME is not in the environment")]
    NoNodeName,
    /// The CA file is unusable.
    #[error("kubernetes.ca_file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The client cannot be built (an unreadable `kubernetes.token_file`, a bad CA).
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// A list or watch failed (it is retried with back-off).
    #[error("watching pods: {0}")]
    Watch(#[source] watcher::Error),
}

impl Error {
    /// A short code for the error metric: `http_<status>` for the API server's answers
    /// (`http_410` when the watch fell behind), `connect`, `token`, `config`, ...
    pub fn code(&self) -> String {
        fn client(e: &kube::Error) -> String {
            match e {
                kube::Error::Api(s) => format!("http_{}", s.code),
                kube::Error::Auth(_) => "token".into(),
                kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::HttpError(_) => "connect".into(),
                kube::Error::SerdeError(_) => "decode".into(),
                _ => "client".into(),
            }
        }
        match self {
            Self::NoApiUrl | Self::BadApiUrl { .. } | Self::NoNodeName => "config".into(),
            Self::Ca { .. } => "ca".into(),
            Self::Client(e) => client(e),
            Self::Watch(
                watcher::Error::InitialListFailed(e)
                | watcher::Error::WatchStartFailed(e)
                | watcher::Error::WatchFailed(e),
            ) => client(e),
            Self::Watch(watcher::Error::WatchError(s)) => format!("http_{}", s.code),
            Self::Watch(watcher::Error::NoResourceVersion) => "protocol".into(),
        }
    }
}

/// Watches the suite's pods on one node.
pub struct PodWatcher {
    cfg: KubernetesConfig,
    kube: kube::Config,
    node: String,
}

impl PodWatcher {
    /// A watcher for `cfg`: the URL, node name and CA are checked now; the client is built
    /// when [`PodWatcher::run`] starts, and the token file is read at every request.
    pub fn new(cfg: &KubernetesConfig) -> Result<Self, Error> {
        let url = cfg.api_url().ok_or(Error::NoApiUrl)?;
        let node = cfg.node_name().ok_or(Error::NoNodeName)?;
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::BadApiUrl {
                url: url.clone(),
                message: e.to_string(),
            })?;
        if uri.scheme().is_none() || uri.host().is_none() {
            return Err(Error::BadApiUrl {
                url,
                message: "needs a scheme and a host (https://host:port)".into(),
            });
        }
        let mut kube = kube::Config::new(uri);
        kube.default_namespace = "default".into();
        if url.starts_with("https") && cfg.ca_file.exists() {
            let pem = std::fs::read(&cfg.ca_file).map_err(|e| Error::Ca {
                path: cfg.ca_file.clone(),
                message: e.to_string(),
            })?;
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Ca {
                path: cfg.ca_file.clone(),
                message: e.to_string(),
            })?;
            kube.root_cert_file = Some(cfg.ca_file.clone());
        }
        Ok(Self {
            cfg: cfg.clone(),
            kube,
            node,
        })
    }

    /// The API client: kube's stack for `kube` (TLS with the CA re-read as it rotates),
    /// plus the bearer token read from `token_file` at every request (trimmed, as
    /// client-go does; a projected token rotates under us). An unreadable token file is
    /// logged and the request goes without one (the API server's 401 is counted as `token`).
    fn client(&self) -> Result<kube::Client, Error> {
        let token_file = self.cfg.token_file.clone();
        let auth =
            tower::util::MapRequestLayer::new(move |mut req: http::Request<kube::client::Body>| {
                match std::fs::read_to_string(&token_file) {
                    Ok(token) => {
                        let token = common::Secret::new(token.trim().to_string());
                        match http::HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                            Ok(mut v) => {
                                v.set_sensitive(true);
                                req.headers_mut().insert(http::header::AUTHORIZATION, v);
                            }
                            Err(_) => tracing::warn!(
                                file = %token_file.display(),
                                "The service account token holds characters a header cannot."
                            ),
                        }
                    }
                    Err(error) => tracing::warn!(
                        file = %token_file.display(),
                        %error,
                        "Cannot read the service account token."
                    ),
                }
                req
            });
        Ok(kube::client::ClientBuilder::try_from(self.kube.clone())
            .map_err(Error::Client)?
            .with_layer(&auth)
            .build())
    }

    /// The watcher's settings: the suite's pods on this node.
    fn watch_config(&self) -> watcher::Config {
        watcher::Config::default()
            .labels(&common::labels::selector(None))
            .fields(&format!("spec.nodeName={}", self.node))
    }

    /// Watches into `target` until `stop`. Failures are logged, counted in `errors` (label
    /// `code`) and retried with capped exponential back-off; the last known pods are kept.
    pub async fn run(
        self,
        target: PodLabels,
        errors: IntCounterVec,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if self.cfg.resync_interval != DEFAULT_RESYNC_INTERVAL {
            tracing::warn!(
                resync_interval = ?self.cfg.resync_interval,
                "kubernetes.resync_interval is no longer used: pods are watched."
            );
        }
        let token_file = self.cfg.token_file.clone();
        let count = |e: &Error| {
            let code = match e.code() {
                c if c == "http_401" && std::fs::metadata(&token_file).is_err() => "token".into(),
                c => c,
            };
            errors.with_label_values(&[&code]).inc();
        };
        let mut retry = 0;
        let client = loop {
            match self.client() {
                Ok(c) => break c,
                Err(error) => {
                    count(&error);
                    retry += 1;
                    tracing::warn!(%error, "Cannot build the Kubernetes client; keeping the last known pods.");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(common::backoff::capped_jittered(
                            Duration::from_millis(500),
                            Duration::from_secs(30),
                            retry,
                        )) => {}
                    }
                }
            }
        };
        let wc = self.watch_config();
        let scopes: Vec<Option<String>> = if self.cfg.namespaces.is_empty() {
            vec![None]
        } else {
            self.cfg.namespaces.iter().cloned().map(Some).collect()
        };
        let streams = scopes.into_iter().map(|scope| {
            let api: kube::Api<KubePod> = match &scope {
                None => kube::Api::all(client.clone()),
                Some(ns) => kube::Api::namespaced(client.clone(), ns),
            };
            watcher(api, wc.clone())
                .default_backoff()
                .map(move |ev| (scope.clone(), ev))
                .boxed()
        });
        let mut events = futures::stream::select_all(streams);
        // Pods of a list in progress, per scope, applied as a whole when it is complete.
        let mut listing: HashMap<Option<String>, Vec<Pod>> = HashMap::new();
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = events.next() => next,
            };
            let Some((scope, event)) = next else {
                return;
            };
            match event {
                Ok(watcher::Event::Init) => {
                    listing.insert(scope, Vec::new());
                }
                Ok(watcher::Event::InitApply(p)) => {
                    if let Some(pod) = suite_pod(&p) {
                        listing.entry(scope).or_default().push(pod);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    let pods = listing.remove(&scope).unwrap_or_default();
                    tracing::info!(
                        namespace = scope.as_deref().unwrap_or("*"),
                        pods = ?pods.iter().map(|p| &p.name).collect::<Vec<_>>(),
                        "Suite pods on this node listed."
                    );
                    target.replace_scope(scope.as_deref(), pods);
                }
                Ok(watcher::Event::Apply(p)) => match suite_pod(&p) {
                    Some(pod) => {
                        if !target.live_uids().contains(&pod.uid) {
                            tracing::info!(pod = %pod.name, "Suite pod added on this node.");
                        }
                        target.apply(pod);
                    }
                    None => target.remove(p.metadata.uid.as_deref().unwrap_or_default()),
                },
                Ok(watcher::Event::Delete(p)) => {
                    tracing::info!(pod = ?p.metadata.name, "Suite pod deleted.");
                    target.remove(p.metadata.uid.as_deref().unwrap_or_default());
                }
                Err(e) => {
                    let error = Error::Watch(e);
                    count(&error);
                    tracing::warn!(%error, code = %error.code(), "Kubernetes watch failed; retrying, keeping the last known pods.");
                }
            }
        }
    }
}

/// The suite pod `p` is, or `None` (with a debug message) when its labels are not a
/// complete suite identity.
fn suite_pod(p: &KubePod) -> Option<Pod> {
    let m = &p.metadata;
    let name = m.name.clone().unwrap_or_default();
    let labels = m.labels.clone().unwrap_or_default();
    match FlinkPodLabels::from_labels(&labels) {
        Ok(labels) => Some(Pod {
            k8s_namespace: m.namespace.clone().unwrap_or_default(),
            name,
            uid: m.uid.clone()?,
            ip: p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .filter(|s| !s.is_empty()),
            labels,
        }),
        Err(error) => {
            tracing::debug!(pod = %name, %error, "Not a suite Flink pod; ignored.");
            None
        }
    }
}
