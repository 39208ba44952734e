//! The live Kubernetes client of the Kubernetes target: applies a Job's objects, tears them
//! down, observes their pods and says where Flink's REST API answers.
//!
//! - Credentials come from the standard inference ([`kube::Config::infer`]: `KUBECONFIG` or
//!   `~/.kube/config`, else the in-cluster service account), optionally with a kubeconfig
//!   context ([`KubeCluster::connect`]); tests hand in a client ([`KubeCluster::new`]).
//! - [`KubeCluster::ensure`] applies the objects with server-side apply (field manager
//!   [`FIELD_MANAGER`], forced) in dependency order: ConfigMap (and the artifact download
//!   token's Secret), JobManager Job, then those again, the Service and the TaskManager
//!   Deployment owned by the Job's uid. Apply is idempotent and the names derive from the
//!   fixed job id, so a manager that crashed mid-start adopts what exists and creates
//!   nothing twice.
//! - [`KubeCluster::teardown`] deletes the Job with `propagationPolicy: Background`, so the
//!   garbage collector removes what it owns (and the ConfigMap and Secret, in case a crash
//!   left them without owner).
//! - Every call is bounded by a call timeout ([`DEFAULT_CALL_TIMEOUT`]); errors say what to
//!   do and map to conditions ([`Error::condition`]).
//! - [`KubeCluster::observe`] reads the pods of a job from a reflector fed by one
//!   `kube-runtime` watcher per Kubernetes namespace ([`super::observe`]), which runs while
//!   the namespace has jobs: it starts with the first and stops when the last is torn down.
//! - [`KubeCluster::flink_rest_base_url`]: the JobManager Service's cluster DNS name, or with
//!   [`FlinkRestAccess::Proxy`] the API server's service proxy, which
//!   [`KubeCluster::flink_rest_via_proxy`] calls with the client's credentials.
//!
//! Every (verb, resource) used here is granted by [`super::rbac::PERMISSIONS`] (tested by
//! recording the fake API server's requests).

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use k8s_openapi::{
    api::{
        batch::v1::Job as K8sJob,
        core::v1::{ConfigMap, Pod, Secret as K8sSecret},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ByteString,
};
use kube::{
    api::{DeleteParams, Patch, PatchParams},
    Api, Client, Resource,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use super::{
    config_map_name,
    flink_conf::REST_PORT,
    jobmanager_name,
    observe::{ClusterCondition, ClusterObservation, NamespaceWatch, Reason},
    ArtifactStore, JobObjects,
};

/// How long one call (get, apply, delete, proxied request) may take: the client has no read
/// timeout of its own (watches stay open), and a black-holed API server must not hold a
/// reconcile forever.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "job-manager";
/// The name of the JobManager Service's REST port (used by the service proxy path).
pub const REST_PORT_NAME: &str = "rest";

/// How the manager reaches Flink's REST API of a job on Kubernetes
/// (`kubernetes.flinkRest: service | proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlinkRestAccess {
    /// The JobManager Service's cluster DNS name (a manager running in the cluster).
    #[default]
    Service,
    /// The API server's service proxy (a manager outside the cluster, tests).
    Proxy,
}

/// Flink REST base URLs that are API server service proxy URLs, with the client whose
/// credentials they need: [`crate::flink::rest::RestFlink`] sends requests to these URLs
/// through [`KubeCluster::flink_rest_via_proxy`] instead of plain HTTP.
type ProxyRoutes = Mutex<BTreeMap<String, (KubeCluster, JobRef)>>;

fn proxy_routes() -> &'static ProxyRoutes {
    static ROUTES: OnceLock<ProxyRoutes> = OnceLock::new();
    ROUTES.get_or_init(ProxyRoutes::default)
}

/// Registers a job's Flink REST base URL when `cluster` reaches Flink through the service
/// proxy; returns the base URL either way.
pub fn route_flink_rest(cluster: &KubeCluster, job: &JobRef) -> String {
    let url = cluster.flink_rest_base_url(job);
    if cluster.flink_rest == FlinkRestAccess::Proxy {
        proxy_routes()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.clone(), (cluster.clone(), job.clone()));
    }
    url
}

/// The client and job of a registered service proxy base URL.
pub fn proxy_route(rest: &str) -> Option<(KubeCluster, JobRef)> {
    proxy_routes()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(rest.trim_end_matches('/'))
        .cloned()
}

/// Whether `rest` is an API server service proxy URL (`…/api/v1/namespaces/<ns>/services/
/// <name>:<port>/proxy`): without a registered route it must not be called as plain HTTP
/// (it would go without credentials).
pub fn is_service_proxy_url(rest: &str) -> bool {
    let r = rest.trim_end_matches('/');
    r.contains("/api/v1/namespaces/") && r.contains("/services/") && r.ends_with("/proxy")
}

/// Forgets a job's service proxy route (its objects are deleted).
pub fn forget_flink_rest(rest: &str) {
    proxy_routes()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(rest.trim_end_matches('/'));
}

/// Which job's objects, in which Kubernetes namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    /// The Kubernetes namespace (the target's `spec.kubernetes.namespace`).
    pub namespace: String,
    /// The job id the object names and the `flink-suite.io/job-id` label carry.
    pub job_id: Uuid,
}

/// The read-only artifact download token of a job, kept in a Secret the init container reads
/// (see [`super::ArtifactStore`]).
pub struct DownloadToken<'a> {
    /// `job-<jobId>-artifact-token` ([`super::ArtifactStore::token_secret_name`]).
    pub secret_name: &'a str,
    /// The key in the Secret ([`super::ArtifactStore::token_key`]).
    pub key: &'a str,
    pub token: &'a common::Secret,
}

impl std::fmt::Debug for DownloadToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadToken")
            .field("secret_name", &self.secret_name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The Secret holding a job's download token, labelled like the JobManager Job.
fn token_secret(objects: &JobObjects, t: &DownloadToken<'_>) -> K8sSecret {
    K8sSecret {
        metadata: ObjectMeta {
            name: Some(t.secret_name.to_string()),
            labels: objects.jobmanager.metadata.labels.clone(),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [(
                t.key.to_string(),
                ByteString(t.token.expose().as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// Why a Kubernetes call failed, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target namespace does not exist (the API server's 404 on the namespace).
    #[error("Kubernetes namespace {namespace} does not exist: create it (kubectl create namespace {namespace}) or change the deployment target's spec.kubernetes.namespace")]
    NamespaceMissing { namespace: String },
    /// RBAC does not allow the call. `verb` and `resource` are those the API server's
    /// authorizer names (apply of a new object also needs `create`), else the call's own.
    #[error("job-manager is not allowed to {verb} {resource} in Kubernetes namespace {namespace} (the API server answered: {message}); grant it with the Role printed by `job-manager rbac --namespace {namespace}`")]
    Forbidden {
        verb: String,
        /// `resource` or `resource.group` (as kubectl spells it).
        resource: String,
        namespace: String,
        message: String,
    },
    /// The API server refused the request (a 4xx other than the above).
    #[error("Kubernetes refused to {verb} {resource} {name} in namespace {namespace}: {message} ({code})")]
    Rejected {
        verb: &'static str,
        resource: String,
        name: String,
        namespace: String,
        code: u16,
        /// The API server's message and reason.
        message: String,
    },
    /// The API server did not answer, or answered 5xx / 408 / 429.
    #[error("Kubernetes API unavailable while trying to {verb} {resource} in namespace {namespace}: {source}")]
    Unavailable {
        verb: &'static str,
        resource: String,
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server accepted the connection but did not answer in time.
    #[error("Kubernetes API did not answer within {after:?} while trying to {verb} {resource} in namespace {namespace}")]
    Timeout {
        verb: &'static str,
        resource: String,
        namespace: String,
        after: Duration,
    },
    /// An object to apply has no name.
    #[error("the {kind} to apply has no metadata.name")]
    Unnamed { kind: &'static str },
    /// Credentials could not be loaded.
    #[error("cannot load Kubernetes credentials{}: {message}", context.as_ref().map(|c| format!(" for context {c}")).unwrap_or_default())]
    Credentials {
        context: Option<String>,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying the same call later may succeed (API server down, 5xx, 408, 429, a
    /// write conflict). A missing namespace or permission needs the user.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } => true,
            Error::Rejected { code, .. } => *code == 409,
            _ => false,
        }
    }

    /// The condition a deployment shows for this error (the same vocabulary as the pods').
    pub fn condition(&self) -> ClusterCondition {
        let reason = match self {
            Error::NamespaceMissing { .. } => Reason::NamespaceMissing,
            Error::Forbidden { .. } => Reason::Forbidden,
            Error::Unavailable { .. } | Error::Timeout { .. } => Reason::Unreachable,
            Error::Rejected { .. } | Error::Unnamed { .. } | Error::Credentials { .. } => {
                Reason::Rejected
            }
        };
        ClusterCondition {
            reason,
            pod: None,
            message: self.to_string(),
        }
    }

    /// Classifies a failed call from what the API server answered.
    pub(crate) fn from_kube(
        e: kube::Error,
        verb: &'static str,
        resource: &str,
        name: &str,
        namespace: &str,
    ) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 404 && is_namespace_missing(&s, namespace) => {
                Error::NamespaceMissing {
                    namespace: namespace.to_string(),
                }
            }
            kube::Error::Api(s) if s.is_forbidden() => {
                let (verb, resource) = denied(&s.message, verb, resource);
                Error::Forbidden {
                    verb,
                    resource,
                    namespace: namespace.to_string(),
                    message: s.message.clone(),
                }
            }
            kube::Error::Api(s)
                if s.code >= 500 || s.code == 408 || s.code == 429 || s.code == 0 =>
            {
                Error::Unavailable {
                    verb,
                    resource: resource.to_string(),
                    namespace: namespace.to_string(),
                    source: Box::new(kube::Error::Api(s)),
                }
            }
            kube::Error::Api(s) => Error::Rejected {
                verb,
                resource: resource.to_string(),
                name: name.to_string(),
                namespace: namespace.to_string(),
                code: s.code,
                message: format!("{} ({})", s.message, s.reason),
            },
            other => Error::Unavailable {
                verb,
                resource: resource.to_string(),
                namespace: namespace.to_string(),
                source: Box::new(other),
            },
        }
    }
}

/// The verb and resource a 403 is about. The RBAC authorizer's message has a fixed form,
/// `... cannot VERB resource "RESOURCE" in API group "GROUP" ...`; when the message is not of
/// that form the call's own verb and resource are named.
pub(crate) fn denied(message: &str, verb: &str, resource: &str) -> (String, String) {
    let parsed = (|| {
        let rest = &message[message.find(" cannot ")? + " cannot ".len()..];
        let (v, rest) = rest.split_once(" resource \"")?;
        let (r, rest) = rest.split_once('"')?;
        let group = rest
            .strip_prefix(" in API group \"")
            .and_then(|g| g.split_once('"'))
            .map(|(g, _)| g)
            .unwrap_or_default();
        let valid = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-'))
        };
        (valid(v) && valid(r)).then(|| {
            let r = if group.is_empty() {
                r.to_string()
            } else {
                format!("{r}.{group}")
            };
            (v.to_string(), r)
        })
    })();
    parsed.unwrap_or_else(|| (verb.to_string(), resource.to_string()))
}

fn context_options(context: &str) -> kube::config::KubeConfigOptions {
    kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    }
}

fn credentials(
    context: Option<&str>,
    path: Option<&std::path::Path>,
    e: impl std::fmt::Display,
) -> Error {
    Error::Credentials {
        context: context.map(str::to_string),
        message: match path {
            Some(p) => format!("{}: {e}", p.display()),
            None => e.to_string(),
        },
    }
}

/// A 404 whose details name the namespace itself (`namespaces "X" not found`), not the object.
fn is_namespace_missing(s: &kube::core::Status, namespace: &str) -> bool {
    s.details
        .as_ref()
        .is_some_and(|d| d.kind == "namespaces" && (d.name.is_empty() || d.name == namespace))
}

/// The client of one Kubernetes cluster (one credential set); namespaces are per call.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    /// The client of service proxy calls: without the client's own retries of 503 (a
    /// JobManager Service without a ready endpoint answers 503 until Flink is up; the
    /// controller asks again on its next pass instead of within one call).
    proxy_client: Client,
    /// The API server's base URL (for service proxy URLs), without a trailing `/`.
    api_url: String,
    flink_rest: FlinkRestAccess,
    call_timeout: Duration,
    /// The watcher of each namespace that has jobs, and those jobs: a namespace's watcher
    /// stops when its last job is torn down ([`KubeCluster::forget`]).
    watches: Arc<Mutex<BTreeMap<String, Watched>>>,
}

/// A namespace's watcher and the jobs that need it.
struct Watched {
    watch: Arc<NamespaceWatch>,
    jobs: std::collections::BTreeSet<Uuid>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("api_url", &self.api_url)
            .field("flink_rest", &self.flink_rest)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// Connects with the standard inference (`KUBECONFIG` / `~/.kube/config`, else the
    /// in-cluster service account); with `context`, that kubeconfig context.
    pub async fn connect(context: Option<&str>, flink_rest: FlinkRestAccess) -> Result<Self> {
        let config = match context {
            Some(c) => kube::Config::from_kubeconfig(&context_options(c))
                .await
                .map_err(|e| credentials(context, None, e))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| credentials(None, None, e))?,
        };
        Self::from_config(config, context, flink_rest)
    }

    /// Connects with the kubeconfig file at `path` (its current context, or `context`).
    pub async fn connect_kubeconfig(
        path: &std::path::Path,
        context: Option<&str>,
        flink_rest: FlinkRestAccess,
    ) -> Result<Self> {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| credentials(context, Some(path), e))?;
        let opts = context.map(context_options).unwrap_or_default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &opts)
            .await
            .map_err(|e| credentials(context, Some(path), e))?;
        Self::from_config(config, context, flink_rest)
    }

    fn from_config(
        config: kube::Config,
        context: Option<&str>,
        flink_rest: FlinkRestAccess,
    ) -> Result<Self> {
        let api_url = config.cluster_url.to_string();
        let mut no_retry = config.clone();
        no_retry.default_retry = false;
        let client = Client::try_from(config).map_err(|e| credentials(context, None, e))?;
        let proxy_client = Client::try_from(no_retry).map_err(|e| credentials(context, None, e))?;
        let mut cluster = Self::new(client, &api_url, flink_rest);
        cluster.proxy_client = proxy_client;
        Ok(cluster)
    }

    /// A cluster over an existing client whose API server answers at `api_url`.
    pub fn new(client: Client, api_url: &str, flink_rest: FlinkRestAccess) -> Self {
        Self {
            proxy_client: client.clone(),
            client,
            api_url: api_url.trim_end_matches('/').to_string(),
            flink_rest,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            watches: Arc::default(),
        }
    }

    /// Bounds every call by `timeout` instead of [`DEFAULT_CALL_TIMEOUT`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Runs one call within the call timeout.
    async fn timed<T>(
        &self,
        verb: &'static str,
        resource: &str,
        namespace: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    verb,
                    resource: resource.to_string(),
                    namespace: namespace.to_string(),
                    after: self.call_timeout,
                })
            })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Applies a job's objects (idempotent; adopts what exists). Returns the JobManager
    /// Job's uid, which owns the rest.
    pub async fn ensure(
        &self,
        job: &JobRef,
        objects: &JobObjects,
        token: Option<&DownloadToken<'_>>,
    ) -> Result<String> {
        let ns = job.namespace.as_str();
        let jobs: Api<K8sJob> = Api::namespaced(self.client.clone(), ns);
        let jm_name = name_of(&objects.jobmanager, "Job")?;
        let existing = self
            .timed("get", "jobs", ns, async {
                jobs.get_opt(&jm_name)
                    .await
                    .map_err(|e| Error::from_kube(e, "get", "jobs", &jm_name, ns))
            })
            .await?;
        if existing
            .as_ref()
            .is_some_and(|j| j.metadata.deletion_timestamp.is_some())
        {
            // A teardown is still collecting it: applying now would feed a dying Job.
            return Err(Error::Rejected {
                verb: "patch",
                resource: "jobs".into(),
                name: jm_name,
                namespace: ns.into(),
                code: 409,
                message:
                    "the JobManager Job is still being deleted; it is applied again once it is gone"
                        .into(),
            });
        }
        let mut secret = objects
            .secret
            .clone()
            .or_else(|| token.map(|t| token_secret(objects, t)));
        let uid = match existing.and_then(|j| j.metadata.uid) {
            Some(uid) => {
                tracing::info!(namespace = ns, job = %jm_name, "Adopting the existing JobManager Job.");
                uid
            }
            None => {
                // The JobManager mounts the ConfigMap (and its init container reads the
                // token): they come first, without an owner yet.
                self.apply(ns, &objects.config_map, "configmaps").await?;
                if let Some(secret) = &secret {
                    self.apply(ns, secret, "secrets").await?;
                }
                let created = self.apply(ns, &objects.jobmanager, "jobs").await?;
                created.metadata.uid.ok_or_else(|| Error::Rejected {
                    verb: "patch",
                    resource: "jobs".into(),
                    name: jm_name.clone(),
                    namespace: ns.into(),
                    code: 200,
                    message: "the applied Job came back without metadata.uid".into(),
                })?
            }
        };
        let mut owned = objects.clone();
        owned.set_owner(&uid);
        // Re-applying the Job adopts one a crashed manager created (same spec, same name).
        self.apply(ns, &owned.jobmanager, "jobs").await?;
        self.apply(ns, &owned.config_map, "configmaps").await?;
        if let Some(secret) = &mut secret {
            secret.metadata.owner_references = owned.config_map.metadata.owner_references.clone();
            self.apply(ns, secret, "secrets").await?;
        }
        self.apply(ns, &owned.service, "services").await?;
        self.apply(ns, &owned.taskmanager, "deployments").await?;
        Ok(uid)
    }

    /// Server-side apply of one object (forced: the manager owns these objects).
    async fn apply<K>(&self, ns: &str, obj: &K, resource: &'static str) -> Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let name = name_of(obj, resource)?;
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let mut body = obj.clone();
        // The API server sets these; sending them would be a precondition or a conflict.
        body.meta_mut().resource_version = None;
        body.meta_mut().namespace = None;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.timed("patch", resource, ns, async {
            api.patch(&name, &params, &Patch::Apply(&body))
                .await
                .map_err(|e| Error::from_kube(e, "patch", resource, &name, ns))
        })
        .await
    }

    /// Deletes a job's objects: the JobManager Job with background propagation (the garbage
    /// collector removes the Service, Deployment, ConfigMap, token Secret and pods it owns)
    /// and the ConfigMap and token Secret directly (a crash may have left them without
    /// owner). Absent objects are fine.
    pub async fn teardown(&self, job: &JobRef) -> Result<()> {
        self.forget(job);
        let ns = job.namespace.as_str();
        let name = jobmanager_name(job.job_id);
        let jobs: Api<K8sJob> = Api::namespaced(self.client.clone(), ns);
        if self.delete(&jobs, "jobs", &name, ns).await? {
            tracing::info!(namespace = ns, job = %name, "Deleted the JobManager Job and what it owns.");
        }
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        self.delete(&cms, "configmaps", &config_map_name(job.job_id), ns)
            .await?;
        let secrets: Api<K8sSecret> = Api::namespaced(self.client.clone(), ns);
        let secret = ArtifactStore::token_secret_name(job.job_id);
        self.delete(&secrets, "secrets", &secret, ns).await?;
        Ok(())
    }

    /// Deletes one object with background propagation; false when it did not exist.
    async fn delete<K>(
        &self,
        api: &Api<K>,
        resource: &'static str,
        name: &str,
        ns: &str,
    ) -> Result<bool>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.timed("delete", resource, ns, async {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 404 && !is_namespace_missing(&s, ns) => {
                    Ok(false)
                }
                Err(e) => Err(Error::from_kube(e, "delete", resource, name, ns)),
            }
        })
        .await
    }

    /// What the pods of a job look like now, from the namespace's watcher (started on first
    /// use, on the current Tokio runtime). Until the watcher's first list completes,
    /// `synced` is false.
    pub fn observe(&self, job: &JobRef) -> ClusterObservation {
        self.watch_job(job).observe(&job.job_id.to_string())
    }

    /// The watcher of a job's namespace, started when the namespace's first job needs it;
    /// it runs until the namespace's last job is forgotten ([`KubeCluster::forget`]).
    pub fn watch_job(&self, job: &JobRef) -> Arc<NamespaceWatch> {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let watched = w.entry(job.namespace.clone()).or_insert_with(|| {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &job.namespace);
            tracing::debug!(namespace = %job.namespace, "Watching the suite's pods.");
            Watched {
                watch: Arc::new(NamespaceWatch::start(api, &job.namespace)),
                jobs: Default::default(),
            }
        });
        watched.jobs.insert(job.job_id);
        watched.watch.clone()
    }

    /// The job's pods need no watching any more (its objects are being deleted): the
    /// namespace's watcher stops when this was its last job.
    pub fn forget(&self, job: &JobRef) {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let Some(watched) = w.get_mut(&job.namespace) else {
            return;
        };
        watched.jobs.remove(&job.job_id);
        if watched.jobs.is_empty() {
            w.remove(&job.namespace);
            tracing::debug!(namespace = %job.namespace, "No jobs left: stopped watching the namespace's pods.");
        }
    }

    /// The namespaces watched now.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Flink's REST base URL of a job (no trailing `/`).
    pub fn flink_rest_base_url(&self, job: &JobRef) -> String {
        let svc = jobmanager_name(job.job_id);
        match self.flink_rest {
            FlinkRestAccess::Service => {
                format!("http://{svc}.{}.svc:{REST_PORT}", job.namespace)
            }
            FlinkRestAccess::Proxy => format!(
                "{}/api/v1/namespaces/{}/services/{svc}:{REST_PORT_NAME}/proxy",
                self.api_url, job.namespace
            ),
        }
    }

    /// A request to Flink's REST API through the API server's service proxy, with the
    /// client's credentials (`path` like `/overview` or `/jobs/<id>/savepoints`; `body` with
    /// its content type). Returns Flink's status and body.
    pub async fn flink_rest_via_proxy(
        &self,
        job: &JobRef,
        method: axum::http::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, bytes::Bytes)> {
        let verb = match method.as_str() {
            "GET" | "HEAD" => "get",
            "POST" => "create",
            "PATCH" => "patch",
            "PUT" => "update",
            "DELETE" => "delete",
            _ => "get",
        };
        let ns = job.namespace.as_str();
        let uri = format!(
            "/api/v1/namespaces/{ns}/services/{}:{REST_PORT_NAME}/proxy{path}",
            jobmanager_name(job.job_id)
        );
        let unavailable = |source: kube::Error| Error::Unavailable {
            verb,
            resource: "services/proxy".into(),
            namespace: ns.to_string(),
            source: Box::new(source),
        };
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(axum::http::header::CONTENT_TYPE, content_type);
                kube::client::Body::from(bytes)
            }
            None => kube::client::Body::empty(),
        };
        let req = req
            .body(body)
            .map_err(|e| unavailable(kube::Error::HttpError(e)))?;
        let (status, bytes) = self
            .timed(verb, "services/proxy", ns, async {
                let res = self.proxy_client.send(req).await.map_err(unavailable)?;
                let status = res.status().as_u16();
                let bytes = http_body_util::BodyExt::collect(res.into_body())
                    .await
                    .map_err(unavailable)?
                    .to_bytes();
                Ok((status, bytes))
            })
            .await?;
        if status == 403 {
            let message = serde_json::from_slice::<kube::core::Status>(&bytes)
                .map(|s| s.message)
                .unwrap_or_default();
            let (verb, resource) = denied(&message, verb, "services/proxy");
            return Err(Error::Forbidden {
                verb,
                resource,
                namespace: ns.to_string(),
                message,
            });
        }
        // An error the API server answered itself (a `Status`: the Service is gone, it has no
        // ready endpoint yet, the proxy cannot connect) is Flink being unreachable, not
        // Flink's answer: a 404 must not read as "Flink does not know the job".
        if status >= 400 {
            if let Some(s) = api_server_status(&bytes) {
                return Err(unavailable(kube::Error::Api(
                    kube::core::Status::failure(&s.message, &s.reason)
                        .with_code(status)
                        .boxed(),
                )));
            }
        }
        Ok((status, bytes))
    }
}

/// The API server's own `Status` body, if `bytes` is one (Flink's errors are
/// `{"errors": [...]}`).
fn api_server_status(bytes: &[u8]) -> Option<kube::core::Status> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("Status") {
        return None;
    }
    serde_json::from_value(v).ok()
}

fn name_of<K: Resource>(obj: &K, kind: &'static str) -> Result<String> {
    obj.meta()
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or(Error::Unnamed { kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, kind: &str, name: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("m", reason)
                .with_code(code)
                .with_details(kube::core::response::StatusDetails {
                    name: name.into(),
                    group: String::new(),
                    kind: kind.into(),
                    uid: String::new(),
                    causes: vec![],
                    retry_after_seconds: 0,
                })
                .boxed(),
        )
    }

    #[test]
    fn a_missing_namespace_is_told_apart_from_a_missing_object() {
        let e = Error::from_kube(
            status(404, "NotFound", "namespaces", "flink-jobs"),
            "patch",
            "configmaps",
            "c",
            "flink-jobs",
        );
        assert_eq!(
            e.to_string().split(':').next().unwrap(),
            "Kubernetes namespace flink-jobs does not exist"
        );
        let e = Error::from_kube(
            status(404, "NotFound", "jobs", "job-1-jobmanager"),
            "get",
            "jobs",
            "job-1-jobmanager",
            "flink-jobs",
        );
        assert!(matches!(e, Error::Rejected { code: 404, .. }), "{e:?}");
        assert_eq!(e.condition().reason, Reason::Rejected);
        let missing = Error::NamespaceMissing {
            namespace: "flink-jobs".into(),
        };
        assert_eq!(missing.condition().reason.as_str(), "NamespaceMissing");
        assert_eq!(missing.condition().message, missing.to_string());
    }

    #[test]
    fn a_denial_names_the_authorizers_verb_and_resource() {
        let m = "deployments.apps \"job-1-taskmanager\" is forbidden: User \"system:serviceaccount:flink-suite:job-manager\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"flink-jobs\"";
        assert_eq!(
            denied(m, "patch", "deployments"),
            ("create".into(), "deployments.apps".into())
        );
        let m = "services \"x\" is forbidden: User \"u\" cannot get resource \"services/proxy\" in API group \"\" in the namespace \"n\"";
        assert_eq!(
            denied(m, "get", "services/proxy"),
            ("get".into(), "services/proxy".into())
        );
        // Another authorizer's wording: the call's own verb and resource.
        assert_eq!(
            denied("access denied by webhook", "patch", "jobs"),
            ("patch".into(), "jobs".into())
        );
    }

    #[test]
    fn only_outages_and_conflicts_are_transient() {
        let t = |code, reason| {
            Error::from_kube(
                status(code, reason, "jobs", "j"),
                "patch",
                "jobs",
                "j",
                "ns",
            )
            .is_transient()
        };
        assert!(t(503, "ServiceUnavailable"));
        assert!(t(429, "TooManyRequests"));
        assert!(t(409, "Conflict"));
        assert!(!t(403, "Forbidden"));
        assert!(!t(422, "Invalid"));
    }
}
