//! The reconciling controller: moves every deployment towards its desired state, one
//! persisted step at a time, and records what it did as events.
//!
//! Each deployment carries a [`Control`] record next to its status: the transition in
//! progress ([`Phase`]) and retry counters. Every Flink side effect is preceded by a durable
//! write of what is about to happen (the job and its Flink job id, the savepoint and its
//! trigger id), so a manager killed at any point resumes where it stopped: a submission is
//! idempotent because the Flink job id is chosen by us and checked before resubmitting.
//!
//! A new desired state ends a start attempt at once (the job is cancelled, its cluster torn
//! down); a stop in progress (a savepoint being taken) reaches its goal first, then the next
//! transition starts. A start held up by the cluster (no answer, Flink answering 5xx) is an
//! event with Flink's error, then FAILED at the cluster start timeout (sooner when the
//! job's own cluster exited). FAILED waits for a user action: a new spec, or the desired
//! state RUNNING said again.
//!
//! The controller learns what changed from the store ([`Store::take_changed`]), reconciles
//! deployments concurrently with a bound, and knows target kinds only through
//! [`crate::provider::ClusterProvider`]. Time comes from a [`crate::clock::Clock`].
//!
//! # Layout
//! - this module: the run loop, dispatch by phase, records and events;
//! - `transitions`: from idle to start, upgrade or stop; FAILED; the end of a stop;
//! - `start`: cluster, submission, JAR upload, retries and the start timeout;
//! - `stop`: stop-with-savepoint or cancel, then the goal;
//! - `observe`: a running job's status, restarts, instability, schedules;
//! - `savepoints`: savepoints of a running job, directories, retention;
//! - `conditions`: the health conditions.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    path::PathBuf,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crate::model::{new_savepoint, Control, Phase};

mod conditions;
mod observe;
mod savepoints;
mod start;
mod stop;
mod transitions;

use conditions::set_condition;
pub use conditions::{CLUSTER_UNREACHABLE, JOB_FAILING, JOB_UNSTABLE};
pub use savepoints::deletable_savepoint;

use crate::{
    artifacts,
    clock::SharedClock,
    flink::{Flink, FlinkError, Operation, RunRequest},
    metrics::Metrics,
    model::{
        Deployment, DeploymentState, DeploymentStatus, DesiredState, Event, EventMetadata,
        EventSpec, Failure, Job, JobMetadata, JobSpec, JobState, JobStatus, RestoreKind,
        RunningStatus, Savepoint, SavepointOrigin, SavepointState, UpgradeKind,
    },
    provider::{ClusterRequest, Presence, Providers},
    store::{DeploymentRecord, Store, Write1},
    target::LocalClusters,
    template,
};

/// Deployments reconciled at the same time.
pub const MAX_CONCURRENT_RECONCILES: usize = 16;

/// How often a follower (another replica holds the leader lock) checks for leadership and
/// reloads the store (so its API shows the leader's writes at most this late).
pub const FOLLOWER_CHECK: Duration = Duration::from_secs(1);
/// Longest one reconcile step of one deployment may take (every Flink call has its own,
/// shorter timeout; this bounds a step that makes many).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a starting cluster's processes may take to appear before a missing process
/// means the cluster exited.
pub const CLUSTER_EXIT_GRACE: Duration = Duration::from_secs(20);
/// How long a starting cluster's REST API may stay unreachable (its JVM booting) before the
/// start records a `ClusterNotReady` event.
pub const NOT_READY_GRACE: Duration = Duration::from_secs(30);
/// How long steps in flight may finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Knobs of the controller (from the config file; re-read on every pass).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often running jobs are observed.
    pub poll_interval: Duration,
    /// Restarts within `unstable_window` that make a job unstable.
    pub unstable_restarts: u64,
    pub unstable_window: Duration,
    /// How long a local cluster may take to accept a job.
    pub cluster_start_timeout: Duration,
    /// metrics-gateway base URL; dead deployments' metric groups are deleted there.
    pub metrics_gateway: Option<String>,
    /// The artifact policy (which jarUris may run, the download limits).
    pub artifacts: crate::config::ArtifactsConfig,
    /// The Kubernetes target's settings (images, default savepoint base).
    pub kubernetes: crate::kubernetes::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            unstable_restarts: 3,
            unstable_window: Duration::from_secs(600),
            cluster_start_timeout: Duration::from_secs(180),
            metrics_gateway: None,
            artifacts: Default::default(),
            kubernetes: Default::default(),
        }
    }
}

/// Why a reconcile step stopped early (logged; the next pass retries).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Flink(#[from] FlinkError),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Flink's id of an uploaded JAR and the file's (modified, length) at that time.
type UploadedJar = (String, Option<(std::time::SystemTime, u64)>);

/// The controller.
pub struct Controller<F> {
    store: Arc<Store>,
    flink: Arc<F>,
    providers: Providers,
    settings: Arc<dyn Fn() -> Settings + Send + Sync>,
    data_dir: PathBuf,
    /// Flink's jar id per (cluster, file), with the file's (modified, length) at upload: an
    /// artifact replaced with `?overwrite=true` is uploaded again.
    jars: Mutex<HashMap<(String, PathBuf), UploadedJar>>,
    http: reqwest::Client,
    metrics: Metrics,
    clock: SharedClock,
    /// When this process first worked on each starting job (a cluster adopted from an
    /// earlier life gets its own grace to bring missing processes back).
    first_seen: Mutex<HashMap<Uuid, DateTime<Utc>>>,
    /// The pod condition each job's cluster shows, and since when (Kubernetes targets).
    held: Mutex<HashMap<Uuid, start::Held>>,
    /// Events of the deployments whose step is in progress, not yet written: the step's
    /// next [`Controller::commit`] writes them in its transaction (a change and the event
    /// reporting it persist together or not at all); the rest at the end of the step.
    staged: Mutex<HashMap<Uuid, Vec<Event>>>,
}

impl<F: Flink> Controller<F> {
    pub fn new(
        store: Arc<Store>,
        flink: Arc<F>,
        local: LocalClusters,
        settings: Arc<dyn Fn() -> Settings + Send + Sync>,
        data_dir: PathBuf,
        metrics: Metrics,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            flink,
            providers: Providers::new(local, settings.clone()),
            settings,
            data_dir,
            jars: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            metrics,
            clock,
            first_seen: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            staged: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Reconciles changed deployments at once and every deployment each poll interval, until
    /// `shutdown` completes. Deployments are reconciled concurrently (at most
    /// [`MAX_CONCURRENT_RECONCILES`] at a time, one step per deployment at a time, each
    /// bounded by [`STEP_TIMEOUT`]), so a cluster that does not answer holds up only its own
    /// deployments. On shutdown, steps in flight get [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_RECONCILES));
        let mut tasks: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut again: BTreeSet<Uuid> = BTreeSet::new();
        // The periodic pass in progress: when it started and what is left of it.
        let mut pass: Option<(Instant, BTreeSet<Uuid>)> = None;
        let mut next_full = tokio::time::Instant::now();
        // Of replicas sharing a database only the leader reconciles; a new leader first
        // reloads what the old one wrote.
        let mut was_leader = true;
        loop {
            let leader = self.store.is_leader();
            if !leader {
                self.metrics.leader.set(0);
                was_leader = false;
                // A follower's API serves memory: refresh it with the leader's writes.
                if let Err(e) = self.store.reload() {
                    tracing::warn!("Follower cannot reload the store: {e}");
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(FOLLOWER_CHECK) => {}
                }
                continue;
            }
            if !was_leader {
                if let Err(e) = self.store.reload() {
                    tracing::warn!("New leader cannot reload the store: {e}");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(FOLLOWER_CHECK) => {}
                    }
                    continue;
                }
                was_leader = true;
                next_full = tokio::time::Instant::now();
            }
            // Shown as leader only once the old leader's writes are loaded.
            self.metrics.leader.set(1);
            let mut due = self.store.take_changed();
            if tokio::time::Instant::now() >= next_full {
                let all: BTreeSet<Uuid> = self.store.read().deployments.keys().copied().collect();
                if pass.is_none() {
                    pass = Some((Instant::now(), all.clone()));
                }
                due.extend(all);
                next_full = tokio::time::Instant::now() + (self.settings)().poll_interval;
            }
            for id in due {
                if in_flight.values().any(|v| *v == id) {
                    again.insert(id);
                    continue;
                }
                let this = self.clone();
                let limit = limit.clone();
                let handle = tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    this.reconcile_bounded(id).await;
                });
                in_flight.insert(handle.id(), id);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.store.changed() => {}
                _ = tokio::time::sleep_until(next_full) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let task = match &done {
                        Ok((task, ())) => *task,
                        Err(e) => e.id(),
                    };
                    if let Some(id) = in_flight.remove(&task) {
                        if again.remove(&id) {
                            self.store.notify(id);
                        }
                        if let Some((started, left)) = pass.as_mut() {
                            left.remove(&id);
                            if left.is_empty() {
                                self.metrics
                                    .reconcile_pass_seconds
                                    .observe(started.elapsed().as_secs_f64());
                                pass = None;
                            }
                        }
                    }
                }
            }
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                steps = tasks.len(),
                "Reconcile steps still running at shutdown were abandoned; the next start resumes them."
            );
        }
    }

    /// One pass over every deployment (concurrently, bounded like [`Controller::run`]).
    pub async fn reconcile_all(&self) {
        use futures::StreamExt;
        let start = Instant::now();
        let ids: Vec<Uuid> = self.store.read().deployments.keys().copied().collect();
        futures::stream::iter(ids)
            .for_each_concurrent(MAX_CONCURRENT_RECONCILES, |id| self.reconcile_bounded(id))
            .await;
        self.metrics
            .reconcile_pass_seconds
            .observe(start.elapsed().as_secs_f64());
    }

    /// [`Controller::reconcile`] bounded by [`STEP_TIMEOUT`].
    async fn reconcile_bounded(&self, id: Uuid) {
        if tokio::time::timeout(STEP_TIMEOUT, self.reconcile(id))
            .await
            .is_err()
        {
            self.flush_events(id);
            self.metrics.reconcile_errors.inc();
            tracing::warn!(deployment = %id, timeout = ?STEP_TIMEOUT, "Reconcile step timed out; retrying on the next pass.");
        }
    }

    /// Writes the events staged by deployment `id`'s step and ends the staging.
    fn flush_events(&self, id: Uuid) {
        let staged = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        for e in staged.unwrap_or_default() {
            if let Err(error) = self.store.append_event(e) {
                tracing::error!(%error, "Cannot record event.");
            }
        }
    }

    /// One step for one deployment; errors are logged and retried on the next pass.
    pub async fn reconcile(&self, id: Uuid) {
        let Some(rec) = self.store.read().deployments.get(&id).cloned() else {
            return;
        };
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Vec::new());
        let result = match rec.control.phase.clone() {
            Phase::Idle => self.idle(rec).await,
            Phase::Starting { job, .. } if rec.deployment.spec.state != DesiredState::Running => {
                // A new desired state ends the start attempt at once.
                match self.job(job) {
                    Some(j) => self.begin_stop(&rec, j, rec.deployment.spec.state),
                    None => self.stopped(&rec, None, rec.deployment.spec.state, None),
                }
            }
            Phase::Starting { job, since } => self.starting(rec, job, since).await,
            Phase::Stopping {
                job,
                goal,
                savepoint,
                cancel_requested,
            } => {
                self.stopping(rec, job, goal, savepoint, cancel_requested)
                    .await
            }
        };
        self.flush_events(id);
        if let Err(error) = result {
            self.metrics.reconcile_errors.inc();
            tracing::warn!(deployment = %id, %error, "Reconcile step failed; retrying on the next pass.");
        }
    }

    fn event(&self, d: &Deployment, job: Option<Uuid>, name: &str, message: String) {
        tracing::info!(deployment = %d.id(), job = ?job, event = name, "{message}");
        let e = Event {
            kind: "Event".into(),
            api_version: "v1".into(),
            metadata: EventMetadata {
                id: Uuid::new_v4(),
                namespace: d.metadata.namespace.clone(),
                deployment_id: d.id(),
                job_id: job,
                created_at: self.now(),
            },
            spec: EventSpec {
                name: name.into(),
                message,
            },
        };
        let e = {
            let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            match staged.get_mut(&d.id()) {
                Some(list) => {
                    list.push(e);
                    return;
                }
                None => e,
            }
        };
        if let Err(error) = self.store.append_event(e) {
            tracing::error!(%error, "Cannot record event.");
        }
    }

    /// The events staged by deployment `id`'s step so far, as writes (taken: a failed
    /// commit drops them with the change they report).
    fn staged_events(&self, id: Uuid) -> Vec<Write1> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(Write1::Event)
            .collect()
    }

    /// Persists a deployment's status and control, the `extra` writes and the events its
    /// step recorded so far in one transaction.
    fn commit(
        &self,
        id: Uuid,
        status: DeploymentStatus,
        control: Control,
        mut extra: Vec<Write1>,
    ) -> Result<()> {
        extra.extend(self.staged_events(id));
        self.store.modify(id, move |r| {
            r.deployment.status = status;
            r.control = control;
            extra
        })?;
        Ok(())
    }

    /// Persists `writes` of deployment `id`'s step with the events it recorded so far.
    fn write(&self, id: Uuid, mut writes: Vec<Write1>) -> Result<()> {
        writes.extend(self.staged_events(id));
        self.store.write(writes)?;
        Ok(())
    }

    fn job(&self, id: Uuid) -> Option<Job> {
        self.store.read().jobs.get(&id).cloned()
    }

    fn current_job(&self, d: &Deployment) -> Option<Job> {
        d.status
            .running
            .as_ref()
            .and_then(|r| r.job_id)
            .and_then(|j| self.job(j))
    }

    fn ctx(&self, d: &Deployment, job: &str) -> template::Context {
        template::Context {
            namespace: d.metadata.namespace.clone(),
            deployment_id: d.id().to_string(),
            deployment_name: d.metadata.name.clone(),
            job_id: job.to_string(),
        }
    }
}
