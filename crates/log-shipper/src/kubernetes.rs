//! Kubernetes pod discovery: the suite's Flink pods on this node and their container logs.
//!
//! The pods are listed from the Kubernetes API (`GET /api/v1/pods` with the suite's label
//! selector and `fieldSelector=spec.nodeName=<node>`) every `resync_interval`; their container
//! logs are kubelet's files `{pod_log_dir}/{namespace}_{pod}_{uid}/{container}/{n}.log` in the
//! CRI log format. [`PodLabels`] is the [`LabelSource`] that gives every file its pod's
//! labels (namespace, deployment id, job id, component, pod, container) and keeps files of
//! foreign pods out. A failed list is logged and counted and the last good pod set is kept,
//! so an API outage never stops shipping the known pods.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use common::{labels::FlinkPodLabels, Secret};
use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};

use crate::record::{LabelSource, Labels};

/// The in-cluster service-account token.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The in-cluster service-account CA.
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

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
    /// Bearer token file (re-read at every list, as projected tokens rotate).
    pub token_file: PathBuf,
    /// CA bundle of the API server (used for `https` when the file exists).
    pub ca_file: PathBuf,
    /// How often the pods are listed again.
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
            resync_interval: Duration::from_secs(30),
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

/// The pods known from the last good list, shared between the lister and the routes.
#[derive(Debug, Default)]
struct PodSet {
    /// Pods of the last good list, by uid.
    live: HashMap<String, Pod>,
    /// Every pod ever seen, by uid (labels of files still being read after the pod is gone).
    seen: HashMap<String, Pod>,
    /// Whether a list has succeeded yet (before it, no pod is known to be gone).
    listed: bool,
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

    /// Replaces the live pod set (after a good list).
    pub fn set_pods(&self, pods: Vec<Pod>) {
        let mut set = self.pods.write().unwrap_or_else(|e| e.into_inner());
        set.live.clear();
        set.listed = true;
        let mut changed = false;
        for p in pods {
            if set.seen.get(&p.uid) != Some(&p) {
                set.seen.insert(p.uid.clone(), p.clone());
                changed = true;
            }
            set.live.insert(p.uid.clone(), p);
        }
        if changed {
            self.save(&set);
        }
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
        let Some((_, _, uid, _)) = self.parse_path(path) else {
            return false;
        };
        let set = self.pods.read().unwrap_or_else(|e| e.into_inner());
        set.listed && !set.live.contains_key(&uid)
    }
}

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No API URL configured and not in a cluster.
    #[error("kubernetes.api_url is not set and KUBERNETES_SERVICE_HOST is not in the environment")]
    NoApiUrl,
    /// No node name.
    #[error("kubernetes.node_name is not set and NODE_NAME is not in the environment")]
    NoNodeName,
    /// The token file is unreadable.
    #[error("kubernetes.token_file {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file is unusable.
    #[error("kubernetes.ca_file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The request failed.
    #[error("listing pods: {0}")]
    Http(#[from] reqwest::Error),
    /// The API server answered with an error.
    #[error("listing pods: HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The Status message.
        message: String,
    },
}

impl ListError {
    /// A short code for the error metric.
    pub fn code(&self) -> String {
        match self {
            Self::NoApiUrl | Self::NoNodeName => "config".into(),
            Self::Token { .. } => "token".into(),
            Self::Ca { .. } => "ca".into(),
            Self::Http(_) => "connect".into(),
            Self::Status { status, .. } => format!("http_{status}"),
        }
    }
}

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<PodItem>,
}

#[derive(Deserialize)]
struct PodItem {
    metadata: Metadata,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: String,
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct PodStatus {
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
}

/// Lists the suite's pods on one node.
pub struct Lister {
    cfg: KubernetesConfig,
    client: reqwest::Client,
    url: String,
    node: String,
}

impl Lister {
    /// A lister for `cfg` (the CA is read now; the token at every list).
    pub fn new(cfg: &KubernetesConfig) -> Result<Self, ListError> {
        let url = cfg.api_url().ok_or(ListError::NoApiUrl)?;
        let node = cfg.node_name().ok_or(ListError::NoNodeName)?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5));
        if url.starts_with("https") && cfg.ca_file.exists() {
            let pem = std::fs::read(&cfg.ca_file).map_err(|e| ListError::Ca {
                path: cfg.ca_file.clone(),
                message: e.to_string(),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ListError::Ca {
                path: cfg.ca_file.clone(),
                message: e.to_string(),
            })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build()?;
        Ok(Self {
            cfg: cfg.clone(),
            client,
            url: url.trim_end_matches('/').to_string(),
            node,
        })
    }

    /// One list: the suite's pods on this node (pods without valid suite labels are left
    /// out with a debug message), from every configured namespace or the whole cluster.
    pub async fn list(&self) -> Result<Vec<Pod>, ListError> {
        if self.cfg.namespaces.is_empty() {
            return self.list_at(format!("{}/api/v1/pods", self.url)).await;
        }
        let mut pods = Vec::new();
        for ns in &self.cfg.namespaces {
            let ns = percent_encoding::utf8_percent_encode(ns, percent_encoding::NON_ALPHANUMERIC);
            pods.extend(
                self.list_at(format!("{}/api/v1/namespaces/{ns}/pods", self.url))
                    .await?,
            );
        }
        Ok(pods)
    }

    async fn list_at(&self, url: String) -> Result<Vec<Pod>, ListError> {
        let token =
            std::fs::read_to_string(&self.cfg.token_file).map_err(|source| ListError::Token {
                path: self.cfg.token_file.clone(),
                source,
            })?;
        let token = Secret::new(token.trim().to_string());
        let resp = self
            .client
            .get(url)
            .query(&[
                ("labelSelector", common::labels::selector(None)),
                ("fieldSelector", format!("spec.nodeName={}", self.node)),
            ])
            .bearer_auth(token.expose())
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| body.chars().take(200).collect());
            return Err(ListError::Status {
                status: status.as_u16(),
                message,
            });
        }
        let list: PodList = resp.json().await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| match FlinkPodLabels::from_labels(&p.metadata.labels) {
                Ok(labels) => Some(Pod {
                    k8s_namespace: p.metadata.namespace,
                    name: p.metadata.name,
                    uid: p.metadata.uid,
                    ip: p.status.pod_ip.filter(|s| !s.is_empty()),
                    labels,
                }),
                Err(error) => {
                    tracing::debug!(pod = %p.metadata.name, %error, "Not a suite Flink pod; ignored.");
                    None
                }
            })
            .collect())
    }

    /// Lists every `resync_interval` into `target` until `stop`; failures are logged and
    /// counted in `errors` (label `code`) and the last good set is kept.
    pub async fn run(
        self,
        target: PodLabels,
        errors: IntCounterVec,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            match self.list().await {
                Ok(pods) => {
                    let before = target.live_uids();
                    let after: HashSet<String> = pods.iter().map(|p| p.uid.clone()).collect();
                    if before != after {
                        tracing::info!(pods = ?pods.iter().map(|p| &p.name).collect::<Vec<_>>(), "Suite pods on this node.");
                    }
                    target.set_pods(pods);
                }
                Err(error) => {
                    errors.with_label_values(&[&error.code()]).inc();
                    tracing::warn!(%error, "Cannot list pods; keeping the last known pods.");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.resync_interval) => {}
            }
        }
    }
}
