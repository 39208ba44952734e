//! The `kubernetes` target (VVP's: `spec.kubernetes.namespace`): one Flink cluster per job
//! in application mode, its objects built by [`crate::kubernetes::build`] and applied by
//! [`KubeCluster`] with server-side apply.
//!
//! - Credentials: the standard inference (`KUBECONFIG` / `~/.kube/config`, else the
//!   in-cluster service account), or the target's `spec.kubernetes.context`. One client per
//!   (context, Flink REST access), created on first use and kept.
//! - The JobManager runs the job itself with the Flink job id the manager fixed, restoring
//!   from the savepoint the controller chose ([`ClusterProvider::runs_job_itself`]): the
//!   controller never uploads or submits.
//! - A pod that cannot run (from the namespace's watcher) is reported with the kubelet's or
//!   scheduler's words: a condition that may pass (Unschedulable while a cluster
//!   autoscaler adds a node, CrashLoopBackOff, OOMKilled, an image pull that failed for a
//!   reason other than the image) is [`Presence::Waiting`], bounded by the target's
//!   `podConditionTimeout` or `kubernetes.pod_condition_timeout` (default 5 minutes, the
//!   Flink Kubernetes Operator's readiness timeout); one that cannot (a missing image or
//!   access to it, an invalid image name, a missing permission) is [`Presence::Gone`], so
//!   the start fails at once.
//! - With `spec.kubernetes.flinkRest: proxy`, Flink's REST base URL is the API server's
//!   service proxy URL, registered so that [`crate::flink::rest::RestFlink`] calls it with the
//!   cluster's credentials ([`kubernetes::cluster::route_flink_rest`]).
//! - A JAR in the artifact store is downloaded by the pods with a token of that one
//!   artifact ([`crate::artifacts::tokens`]), recorded (as its hash) in the cluster record;
//!   while the job runs it is renewed once less than half its lifetime remains (the Secret
//!   gets the new token first, then the record its hash), so a pod created hours later
//!   (a TaskManager rescheduled after a node failure) still downloads the JAR; teardown
//!   revokes it.
//! - Teardown deletes the JobManager Job (the garbage collector removes what it owns).
//! - Default directories: `<kubernetes.savepoint_base>/<namespace>/<deploymentId>` (and
//!   `/checkpoints` below it), else `file:///flink-data/savepoints/<namespace>/<deploymentId>`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;

use super::{ClusterProvider, ClusterRequest, Error, Presence, Provided};
use crate::{
    controller::Settings,
    kubernetes::{
        self,
        cluster::{FlinkRestAccess, JobRef, KubeCluster},
        observe::Reason,
        JobRequest, Restore,
    },
    model::{ClusterRef, Deployment, Job, KubernetesClusterRef},
};

/// Where savepoints go when neither the deployment, its target nor the config choose.
pub const FALLBACK_SAVEPOINT_BASE: &str = "file:///flink-data/savepoints";

type Key = (Option<String>, FlinkRestAccess);

/// The provider of `kubernetes` targets.
pub struct Kubernetes {
    settings: Arc<dyn Fn() -> Settings + Send + Sync>,
    clients: Arc<Mutex<HashMap<Key, KubeCluster>>>,
}

impl Kubernetes {
    pub fn new(settings: Arc<dyn Fn() -> Settings + Send + Sync>) -> Self {
        Self {
            settings,
            clients: Arc::default(),
        }
    }

    /// The client of a context, connected on first use.
    async fn client(
        clients: &Mutex<HashMap<Key, KubeCluster>>,
        context: Option<&str>,
        access: FlinkRestAccess,
    ) -> Result<KubeCluster, kubernetes::cluster::Error> {
        let key = (context.map(str::to_string), access);
        if let Some(c) = clients.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(c.clone());
        }
        let c = KubeCluster::connect(context, access).await?;
        Ok(clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(c)
            .clone())
    }

    fn cached(&self, k: &KubernetesClusterRef) -> Option<KubeCluster> {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(k.context.clone(), k.flink_rest))
            .cloned()
    }

    fn base(&self, d: &Deployment) -> String {
        let base = (self.settings)()
            .kubernetes
            .savepoint_base
            .unwrap_or_else(|| FALLBACK_SAVEPOINT_BASE.into());
        format!(
            "{}/{}/{}",
            base.trim_end_matches('/'),
            d.metadata.namespace,
            d.id()
        )
    }
}

/// A Kubernetes error: retried when it may pass (API server down, timeout, conflict), else
/// the start fails with it.
fn kube_error(e: kubernetes::cluster::Error) -> Error {
    if e.is_transient() {
        Error::Transient(e.to_string())
    } else {
        Error::Spec(e.to_string())
    }
}

impl Kubernetes {
    /// After a restart of the manager: the client of a job's cluster again (its pods'
    /// watcher, and its service proxy route when Flink REST goes through the API server),
    /// connected in the background.
    fn reconnect(&self, cluster: &ClusterRef) {
        let Some(k) = cluster.kubernetes.clone() else {
            return;
        };
        let proxied = k.flink_rest == FlinkRestAccess::Proxy;
        if let Some(c) = self.cached(&k) {
            if proxied && kubernetes::cluster::proxy_route(&cluster.rest_url).is_none() {
                kubernetes::cluster::route_flink_rest(&c, &job_ref(&k));
            }
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let clients = self.clients.clone();
        rt.spawn(async move {
            match Self::client(&clients, k.context.as_deref(), k.flink_rest).await {
                Ok(c) => {
                    c.watch_job(&job_ref(&k));
                    if proxied {
                        kubernetes::cluster::route_flink_rest(&c, &job_ref(&k));
                    }
                }
                Err(e) => {
                    tracing::warn!(namespace = %k.namespace, job = %k.job_id, "Cannot reach Kubernetes for the job's cluster: {e}");
                }
            }
        });
    }
}

/// Puts a renewed download token into the job's existing Secret (server-side apply of the
/// Secret as it is, labels and owner included, with only the token changed). `false` when
/// the Secret is gone (the job's objects are being deleted): nothing is created again.
async fn apply_token(
    cluster: &KubeCluster,
    job: &JobRef,
    token: &common::Secret,
) -> Result<bool, String> {
    use k8s_openapi::{api::core::v1::Secret as K8sSecret, ByteString};
    use kube::api::{Api, Patch, PatchParams};
    let name = kubernetes::ArtifactStore::token_secret_name(job.job_id);
    let api: Api<K8sSecret> = Api::namespaced(cluster.client().clone(), &job.namespace);
    let where_ = |verb: &str| {
        format!(
            "{verb} of Secret {name} in Kubernetes namespace {}",
            job.namespace
        )
    };
    let Some(mut secret) = api
        .get_opt(&name)
        .await
        .map_err(|e| format!("{}: {e}", where_("get")))?
    else {
        return Ok(false);
    };
    let meta = &mut secret.metadata;
    meta.managed_fields = None;
    meta.resource_version = None;
    meta.namespace = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.generation = None;
    secret.data = Some(
        [(
            kubernetes::fetch::SECRET_TOKEN_KEY.to_string(),
            ByteString(token.expose().as_bytes().to_vec()),
        )]
        .into(),
    );
    secret.string_data = None;
    let params = PatchParams::apply(kubernetes::cluster::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&secret))
        .await
        .map_err(|e| format!("{}: {e}", where_("apply")))?;
    Ok(true)
}

fn job_ref(k: &KubernetesClusterRef) -> JobRef {
    JobRef {
        namespace: k.namespace.clone(),
        job_id: k.job_id,
    }
}

impl ClusterProvider for Kubernetes {
    fn ensure<'a>(&'a self, req: ClusterRequest<'a>) -> BoxFuture<'a, Result<Provided, Error>> {
        Box::pin(async move {
            let Some(target) = req.target.spec.kubernetes.as_ref() else {
                return Err(Error::Spec(format!(
                    "deployment target {:?} has no spec.kubernetes.namespace",
                    req.target.metadata.name
                )));
            };
            let access = target.flink_rest.unwrap_or_default();
            let settings = (self.settings)();
            // The job's spec (what runs), with its placeholders rendered.
            let mut deployment = req.deployment.clone();
            deployment.spec = req.job.spec.deployment_spec.clone();
            deployment.spec.template.spec.flink_configuration = req.flink_configuration.clone();
            let job_id = req.job.metadata.id;
            let savepoint_dir = req
                .target
                .spec
                .savepoint_dir
                .clone()
                .or_else(|| self.default_savepoint_dir(req.deployment));
            // A JAR in the artifact store: the pods download it from the manager with a
            // token of that one artifact (see `artifacts::tokens`).
            let (artifact_store, artifact_token) = crate::artifacts::tokens::for_job(
                &deployment.spec.template.spec.artifact.jar_uri,
                &req.deployment.metadata.namespace,
                job_id,
                &settings.kubernetes,
                chrono::Utc::now(),
            )
            .map_err(|e| Error::Spec(e.to_string()))?
            .unzip();
            let objects = kubernetes::build(
                &JobRequest {
                    deployment: &deployment,
                    target_namespace: &target.namespace,
                    job_id,
                    flink_job_id: req.job.status.flink_job_id.clone(),
                    restore: req.job.spec.restored_from.clone().map(|path| Restore {
                        path,
                        allow_non_restored_state: req.job.spec.allow_non_restored_state,
                    }),
                    savepoint_dir,
                    checkpoint_dir: self.default_checkpoint_dir(req.deployment),
                    metrics_gateway_url: req.metrics_gateway.map(str::to_string),
                    artifact_store,
                },
                &settings.kubernetes,
            )
            .map_err(|e| Error::Spec(e.to_string()))?;
            let cluster = Self::client(&self.clients, target.context.as_deref(), access)
                .await
                .map_err(kube_error)?;
            let job = JobRef {
                namespace: target.namespace.clone(),
                job_id,
            };
            // The watcher first, so the pods' troubles are known when Flink does not answer.
            cluster.watch_job(&job);
            if let Err(e) = cluster.ensure(&job, &objects, None).await {
                // Nothing of this attempt to watch (a retry watches again).
                cluster.forget(&job);
                return Err(kube_error(e));
            }
            Ok(Provided {
                cluster: ClusterRef {
                    rest_url: kubernetes::cluster::route_flink_rest(&cluster, &job),
                    local_dir: None,
                    log_dir: None,
                    kubernetes: Some(KubernetesClusterRef {
                        namespace: target.namespace.clone(),
                        job_id,
                        context: target.context.clone(),
                        flink_rest: access,
                        pod_condition_timeout: target.pod_condition_timeout,
                        artifact_token,
                    }),
                },
                note: Some(format!(
                    "Applied the objects of job {job_id} in Kubernetes namespace {} (JobManager Job {}).",
                    target.namespace,
                    kubernetes::jobmanager_name(job_id)
                )),
            })
        })
    }

    fn adopt(&self, _job: &Job, cluster: &ClusterRef) {
        self.reconnect(cluster);
    }

    fn flink_rest(&self, cluster: &ClusterRef) -> String {
        // Until the client is back (after a restart of the manager), calls to a service
        // proxy URL answer "unreachable" and are retried.
        self.reconnect(cluster);
        cluster.rest_url.clone()
    }

    fn observe(&self, cluster: &ClusterRef) -> Presence {
        let Some(k) = &cluster.kubernetes else {
            return Presence::Present;
        };
        let Some(client) = self.cached(k) else {
            // Not connected in this life yet: nothing known.
            return Presence::Present;
        };
        let seen = client.observe(&job_ref(k));
        match seen.worst() {
            // The watcher cannot reach the API server: nothing known about the pods.
            Some(c) if c.reason == Reason::Unreachable => Presence::Present,
            Some(c) if c.is_permanent() => Presence::Gone(format!("{}: {}", c.reason, c.message)),
            Some(c) => Presence::Waiting {
                reason: c.reason.to_string(),
                pod: c.pod.clone(),
                message: c.message.clone(),
                bound: k
                    .pod_condition_timeout
                    .unwrap_or_else(|| (self.settings)().kubernetes.pod_condition_timeout),
            },
            None => Presence::Present,
        }
    }

    fn renew<'a>(
        &'a self,
        _job: &'a Job,
        cluster: &'a ClusterRef,
    ) -> BoxFuture<'a, Option<ClusterRef>> {
        Box::pin(async move {
            let k = cluster.kubernetes.as_ref()?;
            let current = k.artifact_token.as_ref()?;
            let ttl = (self.settings)().kubernetes.artifact_token_ttl;
            let (token, grant) =
                crate::artifacts::tokens::renewal(current, ttl, chrono::Utc::now())?;
            let client = match Self::client(&self.clients, k.context.as_deref(), k.flink_rest).await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(namespace = %k.namespace, job = %k.job_id, "Cannot renew the job's artifact download token (retried at the next observation): {e}");
                    return None;
                }
            };
            match apply_token(&client, &job_ref(k), &token).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(namespace = %k.namespace, job = %k.job_id, "The job's artifact token Secret is gone; its download token is not renewed.");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(namespace = %k.namespace, job = %k.job_id, "Cannot renew the job's artifact download token (retried at the next observation): {e}");
                    return None;
                }
            }
            tracing::info!(namespace = %k.namespace, job = %k.job_id, expires_at = %grant.expires_at, "Renewed the job's artifact download token.");
            let mut renewed = cluster.clone();
            if let Some(rk) = renewed.kubernetes.as_mut() {
                rk.artifact_token = Some(grant);
            }
            Some(renewed)
        })
    }

    fn teardown(&self, cluster: &ClusterRef) {
        let Some(k) = cluster.kubernetes.clone() else {
            return;
        };
        crate::artifacts::tokens::revoke_job(k.job_id);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(namespace = %k.namespace, job = %k.job_id, "No runtime to delete the job's Kubernetes objects on.");
            return;
        };
        kubernetes::cluster::forget_flink_rest(&cluster.rest_url);
        let clients = self.clients.clone();
        rt.spawn(async move {
            let job = job_ref(&k);
            let result = match Self::client(&clients, k.context.as_deref(), k.flink_rest).await {
                Ok(c) => c.teardown(&job).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(namespace = %k.namespace, job = %k.job_id, "Could not delete the job's Kubernetes objects: {e}");
            }
        });
    }

    fn default_savepoint_dir(&self, d: &Deployment) -> Option<String> {
        Some(self.base(d))
    }

    fn default_checkpoint_dir(&self, d: &Deployment) -> Option<String> {
        Some(format!("{}/checkpoints", self.base(d)))
    }

    fn logs(&self, cluster: &ClusterRef) -> Option<String> {
        cluster.kubernetes.as_ref().map(|k| {
            format!(
                "kubectl -n {} logs job/{}",
                k.namespace,
                kubernetes::jobmanager_name(k.job_id)
            )
        })
    }

    fn exit_grace(&self) -> Duration {
        // A pod condition is the kubelet's or scheduler's verdict, not a process still
        // being launched.
        Duration::ZERO
    }

    fn runs_job_itself(&self) -> bool {
        true
    }

    fn dedicated(&self) -> bool {
        true
    }
}
