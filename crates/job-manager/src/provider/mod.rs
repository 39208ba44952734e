//! Where a job's Flink cluster comes from: one [`ClusterProvider`] per deployment target
//! kind, so the controller never branches on target kinds.
//!
//! - [`local`]: a standalone cluster per job, started by the manager from `FLINK_HOME`
//!   (see [`crate::target`]).
//! - [`session`]: an existing session cluster the job is submitted to.
//! - [`kubernetes`]: a cluster per job in a Kubernetes namespace (application mode).
//!
//! A provider brings a job's cluster up ([`ClusterProvider::ensure`]), adopts one an earlier
//! life of the manager started, says whether it still exists when its REST API does not
//! answer, tears it down, and names its default savepoint and checkpoint directories, its
//! logs and its Flink REST base URL.

pub mod kubernetes;
pub mod local;
pub mod session;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;

use crate::{
    controller::Settings,
    model::{ClusterRef, Deployment, DeploymentTarget, Job, TargetKind},
    target::LocalClusters,
    template,
};

/// What a provider gets to bring up a job's cluster.
pub struct ClusterRequest<'a> {
    pub deployment: &'a Deployment,
    pub job: &'a Job,
    pub target: &'a DeploymentTarget,
    /// The job's Flink configuration, placeholders rendered.
    pub flink_configuration: &'a BTreeMap<String, String>,
    /// Placeholder values (for the log4j template).
    pub context: &'a template::Context,
    /// PushGateway-compatible URL for Flink's metric reporter, if any.
    pub metrics_gateway: Option<&'a str>,
}

/// A cluster being brought up.
#[derive(Debug, Clone)]
pub struct Provided {
    pub cluster: ClusterRef,
    /// What to tell the user (an event), e.g. where a new cluster's logs are.
    pub note: Option<String>,
}

/// Why a cluster cannot be provided: the start fails at once with this message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The deployment's spec cannot be used (the message names the field).
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    Local(#[from] crate::target::Error),
    /// The cluster's control plane did not answer or asked to retry (the start is held up
    /// and retried until the cluster start timeout).
    #[error("{0}")]
    Transient(String),
}

/// Whether a job's cluster still exists, as far as its provider can tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Presence {
    Present,
    /// It exists but cannot run now, for a reason that may pass on its own (a pod the
    /// scheduler cannot place until a cluster autoscaler adds a node, a container in
    /// back-off): a start waits for it up to `bound`, then fails with `message`.
    Waiting {
        /// The condition (`Unschedulable`, `CrashLoopBackOff`, …); a new reason starts a new
        /// wait.
        reason: String,
        /// The pod it concerns, if one.
        pod: Option<String>,
        /// What the scheduler or the kubelet says, and what to change.
        message: String,
        /// How long the condition may last before the start fails.
        bound: Duration,
    },
    /// It is gone and will not come back on its own; why.
    Gone(String),
}

/// One kind of deployment target.
pub trait ClusterProvider: Send + Sync {
    /// Brings up the job's cluster, or names the existing one. Flink's REST API answers at
    /// [`ClusterProvider::flink_rest`] once it is up (the controller polls).
    fn ensure<'a>(&'a self, req: ClusterRequest<'a>) -> BoxFuture<'a, Result<Provided, Error>>;
    /// After a restart of the manager: makes sure a cluster an earlier life started runs.
    /// Called before every start step; acts once per job and process.
    fn adopt(&self, _job: &Job, _cluster: &ClusterRef) {}
    /// Whether the job's cluster still exists (asked when its REST API does not answer).
    fn observe(&self, cluster: &ClusterRef) -> Presence;
    /// While the job runs (each observe step): renews what its cluster holds that expires
    /// (the Kubernetes target's artifact download token); the cluster record to write when
    /// it changed.
    fn renew<'a>(
        &'a self,
        _job: &'a Job,
        _cluster: &'a ClusterRef,
    ) -> BoxFuture<'a, Option<ClusterRef>> {
        Box::pin(async { None })
    }
    /// Removes the job's cluster; a shared cluster stays.
    fn teardown(&self, cluster: &ClusterRef);
    /// The savepoint directory when neither the deployment nor its target chose one.
    fn default_savepoint_dir(&self, d: &Deployment) -> Option<String>;
    /// The checkpoint directory when the deployment chose none.
    fn default_checkpoint_dir(&self, d: &Deployment) -> Option<String>;
    /// Where the cluster's logs are, when the manager knows.
    fn logs(&self, cluster: &ClusterRef) -> Option<String>;
    /// Flink's own last error from the cluster's logs, when the provider can read them
    /// (what a cluster that exited while starting says about why).
    fn last_error(&self, _cluster: &ClusterRef) -> Option<String> {
        None
    }
    /// Flink's REST base URL of the cluster.
    fn flink_rest(&self, cluster: &ClusterRef) -> String {
        cluster.rest_url.clone()
    }
    /// Whether the cluster belongs to this one job: then the job's configuration is the
    /// cluster's (not sent with the submission), the cluster must register enough task
    /// slots before the job is submitted, and a cluster that does not answer while the job
    /// is being stopped is stopped by tearing it down.
    fn dedicated(&self) -> bool;
    /// How long a starting cluster's processes may take to appear before
    /// [`ClusterProvider::observe`] saying `Gone` fails the start.
    fn exit_grace(&self) -> Duration {
        crate::controller::CLUSTER_EXIT_GRACE
    }
    /// Whether the cluster runs the job itself (application mode, with the Flink job id the
    /// manager fixed): the controller then waits for the job instead of submitting it.
    fn runs_job_itself(&self) -> bool {
        false
    }
}

/// The providers of this manager, one per target kind.
pub struct Providers {
    local: local::Local,
    session: session::Session,
    kubernetes: kubernetes::Kubernetes,
}

impl Providers {
    pub fn new(local: LocalClusters, settings: Arc<dyn Fn() -> Settings + Send + Sync>) -> Self {
        Self {
            local: local::Local::new(local),
            session: session::Session,
            kubernetes: kubernetes::Kubernetes::new(settings),
        }
    }

    /// The provider of a target kind.
    pub fn for_target(&self, kind: TargetKind) -> &dyn ClusterProvider {
        match kind {
            TargetKind::Local => &self.local,
            TargetKind::Session => &self.session,
            TargetKind::Kubernetes => &self.kubernetes,
        }
    }

    /// The provider that made `cluster` (known from the cluster record, so a target deleted
    /// or changed since does not matter).
    pub fn for_cluster(&self, cluster: &ClusterRef) -> &dyn ClusterProvider {
        if cluster.kubernetes.is_some() {
            &self.kubernetes
        } else if cluster.local_dir.is_some() {
            &self.local
        } else {
            &self.session
        }
    }
}
