//! The reconciling controller: moves every deployment towards its desired state, one
//! persisted step at a time, and records what it did as events.
//!
//! Each deployment carries a [`Control`] record next to its status: the transition in
//! progress ([`Phase`]) and retry counters. Every Flink side effect is preceded by a durable
//! write of what is about to happen (the job and its Flink job id, the savepoint and its
//! trigger id), so a manager killed at any point resumes where it stopped: a submission is
//! idempotent because the Flink job id is chosen by us and checked before resubmitting.
//!
//! A change of desired state while a transition runs waits until that transition reaches
//! its goal, then starts the next one.

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

use crate::{
    artifacts,
    clock::SharedClock,
    flink::{Flink, FlinkError, Operation, RunRequest},
    metrics::Metrics,
    model::{
        ClusterRef, Condition, Deployment, DeploymentState, DeploymentStatus, DesiredState, Event,
        EventMetadata, EventSpec, Failure, Job, JobMetadata, JobSpec, JobState, JobStatus,
        RestoreKind, RunningStatus, Savepoint, SavepointOrigin, SavepointState, TargetKind,
        UpgradeKind,
    },
    store::{DeploymentRecord, Store, Write1},
    target::{LocalClusters, LocalSpec},
    template,
};

/// Condition types.
pub const CLUSTER_UNREACHABLE: &str = "ClusterUnreachable";
pub const JOB_FAILING: &str = "JobFailing";
pub const JOB_UNSTABLE: &str = "JobUnstable";

/// Deployments reconciled at the same time.
pub const MAX_CONCURRENT_RECONCILES: usize = 16;
/// Longest one reconcile step of one deployment may take (every Flink call has its own,
/// shorter timeout; this bounds a step that makes many).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);
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
    local: LocalClusters,
    settings: Arc<dyn Fn() -> Settings + Send + Sync>,
    data_dir: PathBuf,
    /// Flink's jar id per (cluster, file), with the file's (modified, length) at upload: an
    /// artifact replaced with `?overwrite=true` is uploaded again.
    jars: Mutex<HashMap<(String, PathBuf), UploadedJar>>,
    /// Local clusters whose daemons this process launched or checked.
    launched: Mutex<std::collections::HashSet<Uuid>>,
    http: reqwest::Client,
    metrics: Metrics,
    clock: SharedClock,
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
            local,
            settings,
            data_dir,
            jars: Mutex::new(HashMap::new()),
            launched: Mutex::new(Default::default()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            metrics,
            clock,
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
        loop {
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
            self.metrics.reconcile_errors.inc();
            tracing::warn!(deployment = %id, timeout = ?STEP_TIMEOUT, "Reconcile step timed out; retrying on the next pass.");
        }
    }

    /// One step for one deployment; errors are logged and retried on the next pass.
    pub async fn reconcile(&self, id: Uuid) {
        let Some(rec) = self.store.read().deployments.get(&id).cloned() else {
            return;
        };
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
        if let Err(error) = self.store.append_event(e) {
            tracing::error!(%error, "Cannot record event.");
        }
    }

    fn commit(
        &self,
        id: Uuid,
        status: DeploymentStatus,
        control: Control,
        extra: Vec<Write1>,
    ) -> Result<()> {
        self.store.modify(id, move |r| {
            r.deployment.status = status;
            r.control = control;
            extra
        })?;
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

    // ---- Idle: converged or about to start a transition --------------------------------

    async fn idle(&self, rec: DeploymentRecord) -> Result<()> {
        let d = &rec.deployment;
        let desired = d.spec.state;
        let job = self
            .current_job(d)
            .filter(|j| !j.status.state.is_terminal());
        let failed = d.status.state == DeploymentState::Failed;
        let user_acted = rec.control.failed_at_version != Some(d.metadata.resource_version);
        if failed && !user_acted {
            // FAILED waits for a user action, except that a live job can still be stopped.
            return Ok(());
        }
        match (desired, job) {
            (DesiredState::Running, Some(job)) if job.status.state == JobState::Started => {
                if job.spec.deployment_spec.template != d.spec.template
                    && d.spec.upgrade_strategy.kind != UpgradeKind::None
                {
                    return self.begin_upgrade(&rec, job);
                }
                if failed {
                    // The user changed something not needing an upgrade: clear FAILED.
                    let mut status = d.status.clone();
                    status.state = DeploymentState::Running;
                    status.failure = None;
                    let mut control = rec.control.clone();
                    control.failed_at_version = None;
                    return self.commit(d.id(), status, control, vec![]);
                }
                self.observe(&rec, job).await
            }
            (DesiredState::Running, _) => self.begin_start(&rec),
            (goal @ (DesiredState::Suspended | DesiredState::Cancelled), Some(job)) => {
                self.begin_stop(&rec, job, goal)
            }
            (goal, None) => {
                if d.status.state != goal.reached() {
                    let mut status = d.status.clone();
                    status.state = goal.reached();
                    status.failure = None;
                    if let Some(r) = status.running.as_mut() {
                        r.conditions.clear();
                    }
                    let mut control = rec.control.clone();
                    control.failed_at_version = None;
                    self.commit(d.id(), status, control, vec![])?;
                    self.event(
                        d,
                        None,
                        "DeploymentStateChanged",
                        format!("Deployment is {}.", goal.reached()),
                    );
                }
                Ok(())
            }
        }
    }

    fn fail(
        &self,
        rec: &DeploymentRecord,
        job: Option<&Job>,
        reason: &str,
        message: String,
        extra: Vec<Write1>,
    ) -> Result<()> {
        let d = &rec.deployment;
        let mut status = d.status.clone();
        status.state = DeploymentState::Failed;
        // No job runs any more: health conditions of a running job no longer apply (the
        // failure says what happened).
        if let Some(r) = status.running.as_mut() {
            r.conditions
                .retain(|c| c.kind != JOB_FAILING && c.kind != JOB_UNSTABLE);
        }
        status.failure = Some(Failure {
            reason: reason.into(),
            message: message.clone(),
            failed_at: self.now(),
        });
        let control = Control {
            phase: Phase::Idle,
            failed_at_version: Some(d.metadata.resource_version),
            ..rec.control.clone()
        };
        self.commit(d.id(), status, control, extra)?;
        self.metrics.deployments_failed.inc();
        self.event(d, job.map(|j| j.metadata.id), reason, message);
        Ok(())
    }

    fn savepoint_dir(&self, d: &Deployment) -> Option<String> {
        let cfg = &d.spec.template.spec.flink_configuration;
        let from_cfg = cfg
            .get("execution.checkpointing.savepoint-dir")
            .or_else(|| cfg.get("state.savepoints.dir"))
            .cloned();
        if let Some(dir) = from_cfg {
            let ctx = self.ctx(d, "");
            return template::render_config(
                &std::collections::BTreeMap::from([("dir".to_string(), dir.clone())]),
                &ctx,
            )
            .ok()
            .and_then(|m| m.get("dir").cloned())
            .or(Some(dir));
        }
        let t = self.store.read();
        let target = t.targets.get(&(
            d.metadata.namespace.clone(),
            d.spec.deployment_target_name.clone(),
        ));
        match target {
            Some(t) if t.spec.savepoint_dir.is_some() => t.spec.savepoint_dir.clone(),
            Some(t) if t.spec.kind == TargetKind::Local => Some(
                self.local
                    .default_savepoint_dir(&d.metadata.namespace, &d.id().to_string()),
            ),
            _ => None,
        }
    }

    /// The savepoint directory the manager itself configured for `d` (the target's
    /// `savepointDir`, or the `local` target's per-deployment directory), as a `file:` URI.
    /// `None` when the deployment chose its own directory in `flinkConfiguration` or the
    /// target has none: then retention deletes no files.
    fn managed_savepoint_dir(&self, d: &Deployment) -> Option<String> {
        let cfg = &d.spec.template.spec.flink_configuration;
        if cfg.contains_key("execution.checkpointing.savepoint-dir")
            || cfg.contains_key("state.savepoints.dir")
        {
            return None;
        }
        let t = self.store.read();
        let target = t.targets.get(&(
            d.metadata.namespace.clone(),
            d.spec.deployment_target_name.clone(),
        ))?;
        match (&target.spec.savepoint_dir, target.spec.kind) {
            (Some(dir), _) => Some(dir.clone()),
            (None, TargetKind::Local) => Some(
                self.local
                    .default_savepoint_dir(&d.metadata.namespace, &d.id().to_string()),
            ),
            (None, _) => None,
        }
    }

    fn ctx(&self, d: &Deployment, job: &str) -> template::Context {
        template::Context {
            namespace: d.metadata.namespace.clone(),
            deployment_id: d.id().to_string(),
            deployment_name: d.metadata.name.clone(),
            job_id: job.to_string(),
        }
    }

    fn pick_restore(&self, d: &Deployment) -> Option<(String, Uuid)> {
        let kind = d.spec.restore_strategy.kind;
        if kind == RestoreKind::None {
            return None;
        }
        let t = self.store.read();
        t.savepoints
            .values()
            .filter(|s| s.metadata.deployment_id == d.id())
            .filter(|s| s.status.state == SavepointState::Completed)
            .filter(|s| {
                kind == RestoreKind::LatestState
                    || s.metadata.origin != SavepointOrigin::RetainedCheckpoint
            })
            .filter_map(|s| {
                Some((
                    s.status.completed_at?,
                    s.status.location.clone()?,
                    s.metadata.id,
                ))
            })
            .max_by_key(|(at, _, _)| *at)
            .map(|(_, l, id)| (l, id))
    }

    fn begin_start(&self, rec: &DeploymentRecord) -> Result<()> {
        let d = &rec.deployment;
        let restore = self.pick_restore(d);
        let id = Uuid::new_v4();
        let now = self.now();
        let job = Job {
            kind: "Job".into(),
            api_version: "v1".into(),
            metadata: JobMetadata {
                id,
                namespace: d.metadata.namespace.clone(),
                deployment_id: d.id(),
                deployment_name: d.metadata.name.clone(),
                created_at: now,
                annotations: d.spec.template.metadata.annotations.clone(),
            },
            spec: JobSpec {
                deployment_spec: d.spec.clone(),
                restored_from: restore.as_ref().map(|r| r.0.clone()),
                restored_savepoint_id: restore.as_ref().map(|r| r.1),
                allow_non_restored_state: d.spec.restore_strategy.allow_non_restored_state,
                deployment_target_name: d.spec.deployment_target_name.clone(),
            },
            status: JobStatus {
                state: JobState::Starting,
                flink_job_id: id.simple().to_string(),
                submission_attempts: 0,
                submitted: false,
                cluster: None,
                started_at: None,
                ended_at: None,
                observed_flink_job_status: None,
                num_restarts: 0,
                failure: None,
            },
        };
        let mut status = d.status.clone();
        status.state = DeploymentState::Transitioning;
        status.failure = None;
        status.running = Some(RunningStatus {
            job_id: Some(id),
            transition_time: Some(now),
            conditions: vec![],
        });
        let control = Control {
            phase: Phase::Starting {
                job: id,
                since: now,
            },
            job_attempts: 0,
            failed_at_version: None,
            restart_samples: vec![],
            next_scheduled: None,
            start_error: None,
        };
        self.commit(d.id(), status, control, vec![Write1::Job(job)])?;
        self.event(
            d,
            Some(id),
            "JobStarting",
            match &restore {
                Some((loc, _)) => format!("Starting job {id}, restoring state from {loc}."),
                None => format!("Starting job {id} without restoring state."),
            },
        );
        self.store.notify(d.id());
        Ok(())
    }

    fn begin_upgrade(&self, rec: &DeploymentRecord, job: Job) -> Result<()> {
        let d = &rec.deployment;
        let stateful = d.spec.upgrade_strategy.kind == UpgradeKind::Stateful;
        self.event(
            d,
            Some(job.metadata.id),
            "UpgradeStarted",
            format!(
                "Spec changed; {} upgrade of job {}.",
                if stateful { "STATEFUL" } else { "STATELESS" },
                job.metadata.id
            ),
        );
        self.begin_stop_inner(
            rec,
            job,
            DesiredState::Running,
            stateful,
            SavepointOrigin::StatefulUpgrade,
        )
    }

    fn begin_stop(&self, rec: &DeploymentRecord, job: Job, goal: DesiredState) -> Result<()> {
        if job.status.state == JobState::Starting {
            // Not submitted yet (or unknown): nothing to save; cancel the attempt.
            return self.begin_stop_inner(rec, job, goal, false, SavepointOrigin::Suspend);
        }
        let with_savepoint = goal == DesiredState::Suspended;
        self.begin_stop_inner(rec, job, goal, with_savepoint, SavepointOrigin::Suspend)
    }

    fn begin_stop_inner(
        &self,
        rec: &DeploymentRecord,
        mut job: Job,
        goal: DesiredState,
        with_savepoint: bool,
        origin: SavepointOrigin,
    ) -> Result<()> {
        let d = &rec.deployment;
        let mut extra = vec![];
        let savepoint = if with_savepoint {
            let sp = new_savepoint(d, Some(job.metadata.id), origin);
            let id = sp.metadata.id;
            extra.push(Write1::Savepoint(sp));
            Some(id)
        } else {
            None
        };
        job.status.state = JobState::Terminating;
        extra.push(Write1::Job(job.clone()));
        let mut status = d.status.clone();
        status.state = DeploymentState::Transitioning;
        if let Some(r) = status.running.as_mut() {
            r.transition_time = Some(self.now());
        }
        let control = Control {
            phase: Phase::Stopping {
                job: job.metadata.id,
                goal,
                savepoint,
                cancel_requested: false,
            },
            ..rec.control.clone()
        };
        self.commit(d.id(), status, control, extra)?;
        self.event(
            d,
            Some(job.metadata.id),
            "JobStopping",
            if with_savepoint {
                format!("Stopping job {} with a savepoint.", job.metadata.id)
            } else {
                format!("Cancelling job {}.", job.metadata.id)
            },
        );
        self.store.notify(d.id());
        Ok(())
    }

    // ---- Starting ----------------------------------------------------------------------

    async fn starting(
        &self,
        rec: DeploymentRecord,
        job_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<()> {
        let d = &rec.deployment;
        let Some(mut job) = self.job(job_id) else {
            // The job record vanished (should not happen): start over.
            let mut control = rec.control.clone();
            control.phase = Phase::Idle;
            return self.commit(d.id(), d.status.clone(), control, vec![]);
        };
        let spec = &job.spec.deployment_spec;
        let ctx = self.ctx(d, &job.metadata.id.to_string());
        let rendered = match template::render_config(&spec.template.spec.flink_configuration, &ctx)
        {
            Ok(r) => r,
            Err(e) => {
                return self.job_failed_to_start(&rec, job, format!("spec.template.spec.{e}"), true)
            }
        };
        // 1. A cluster to run on.
        let cluster = match &job.status.cluster {
            Some(c) => c.clone(),
            None => {
                let target = self
                    .store
                    .read()
                    .targets
                    .get(&(
                        d.metadata.namespace.clone(),
                        job.spec.deployment_target_name.clone(),
                    ))
                    .cloned();
                let Some(target) = target else {
                    return self.job_failed_to_start(
                        &rec,
                        job,
                        format!(
                            "deployment target {:?} does not exist in namespace {}",
                            d.spec.deployment_target_name, d.metadata.namespace
                        ),
                        true,
                    );
                };
                let cluster = match target.spec.kind {
                    TargetKind::Session => ClusterRef {
                        rest_url: target.spec.rest_url.clone().unwrap_or_default(),
                        local_dir: None,
                        log_dir: None,
                    },
                    TargetKind::Local => {
                        let log4j =
                            match template::render_log4j(spec.template.spec.logging.as_ref(), &ctx)
                            {
                                Ok(l) => l,
                                Err(e) => {
                                    return self.job_failed_to_start(
                                        &rec,
                                        job,
                                        format!("spec.template.spec.{e}"),
                                        true,
                                    )
                                }
                            };
                        let ns = d.metadata.namespace.clone();
                        let dep = d.id().to_string();
                        let sp_dir = self.local.default_savepoint_dir(&ns, &dep);
                        let ck_dir = self.local.default_checkpoint_dir(&ns, &dep);
                        let res = spec.template.spec.resources.as_ref();
                        let env = spec
                            .template
                            .spec
                            .kubernetes
                            .as_ref()
                            .map(|k| k.pods.env_vars.clone())
                            .unwrap_or_default();
                        let settings = (self.settings)();
                        let ls = LocalSpec {
                            namespace: &ns,
                            deployment_id: &dep,
                            job_id: &job.metadata.id.to_string(),
                            flink_configuration: &rendered,
                            parallelism: spec.template.spec.parallelism.max(1) as u32,
                            jobmanager_memory: res
                                .and_then(|r| r.jobmanager.as_ref())
                                .and_then(|r| r.memory.as_deref()),
                            taskmanager_memory: res
                                .and_then(|r| r.taskmanager.as_ref())
                                .and_then(|r| r.memory.as_deref()),
                            log4j: &log4j,
                            env: &env,
                            savepoint_dir: &sp_dir,
                            checkpoint_dir: &ck_dir,
                            metrics_gateway: settings.metrics_gateway.as_deref(),
                        };
                        match self.local.start(&ls) {
                            Ok(c) => {
                                self.launched
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(job_id);
                                c
                            }
                            Err(e) => {
                                return self.job_failed_to_start(&rec, job, e.to_string(), true)
                            }
                        }
                    }
                };
                job.status.cluster = Some(cluster.clone());
                self.store.write(vec![Write1::Job(job.clone())])?;
                if cluster.local_dir.is_some() {
                    self.event(
                        d,
                        Some(job_id),
                        "ClusterStarting",
                        format!(
                            "Starting a local Flink cluster at {} (logs in {}).",
                            cluster.rest_url,
                            cluster.log_dir.clone().unwrap_or_default()
                        ),
                    );
                }
                cluster
            }
        };
        if cluster.local_dir.is_some()
            && self
                .launched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(job_id)
        {
            // Started by an earlier life of this manager: make sure both daemons run.
            let env = spec
                .template
                .spec
                .kubernetes
                .as_ref()
                .map(|k| k.pods.env_vars.clone())
                .unwrap_or_default();
            self.local.resume(&cluster, &env);
        }
        let rest = cluster.rest_url.as_str();
        let fid = job.status.flink_job_id.clone();
        let timeout = (self.settings)().cluster_start_timeout;
        let overdue = self.overdue(since);

        // 2. Submitted already (perhaps by a previous life of this manager)?
        let observed = match self.flink.job_status(rest, &fid).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                return self.start_held_up(&rec, job, since, e);
            }
            Err(e) => return Err(e.into()),
        };
        match observed.as_deref() {
            None => {
                if cluster.local_dir.is_some() {
                    let o = match self.flink.overview(rest).await {
                        Ok(o) => o,
                        Err(e) if e.is_transient() => {
                            return self.start_held_up(&rec, job, since, e);
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let need = spec.template.spec.parallelism.max(1) as u32;
                    if o.taskmanagers == 0 || o.slots_total < need {
                        if overdue {
                            return self.job_failed_to_start(
                                &rec,
                                job,
                                format!("local cluster has {} task slots after {timeout:?}; {need} needed", o.slots_total),
                                true,
                            );
                        }
                        return Ok(()); // TaskManager not registered yet
                    }
                }
                self.submit(&rec, job, since, rest, rendered).await
            }
            Some("RUNNING") => {
                job.status.state = JobState::Started;
                job.status.submitted = true;
                job.status.started_at = Some(self.now());
                job.status.observed_flink_job_status = Some("RUNNING".into());
                let mut status = d.status.clone();
                status.state = DeploymentState::Running;
                status.failure = None;
                status.running = Some(RunningStatus {
                    job_id: Some(job_id),
                    transition_time: Some(self.now()),
                    conditions: vec![],
                });
                let control = Control {
                    phase: Phase::Idle,
                    job_attempts: 0,
                    failed_at_version: None,
                    restart_samples: vec![],
                    next_scheduled: None,
                    start_error: None,
                };
                self.commit(d.id(), status, control, vec![Write1::Job(job.clone())])?;
                self.metrics.jobs_started.inc();
                self.event(
                    d,
                    Some(job_id),
                    "JobRunning",
                    format!("Job {job_id} is RUNNING (Flink job {fid})."),
                );
                Ok(())
            }
            Some(s @ ("FAILED" | "CANCELED")) => {
                let cause = self
                    .flink
                    .root_exception(rest, &fid)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| format!("Flink job {fid} is {s}"));
                self.job_failed_to_start(&rec, job, cause, false)
            }
            Some("FINISHED") => {
                job.status.state = JobState::Finished;
                job.status.ended_at = Some(self.now());
                let mut status = d.status.clone();
                status.state = DeploymentState::Finished;
                let mut control = rec.control.clone();
                control.phase = Phase::Idle;
                self.commit(d.id(), status, control, vec![Write1::Job(job.clone())])?;
                self.teardown(&job);
                self.event(
                    d,
                    Some(job_id),
                    "JobFinished",
                    format!("Job {job_id} finished."),
                );
                Ok(())
            }
            Some(other) => {
                if job.status.observed_flink_job_status.as_deref() != Some(other) {
                    job.status.observed_flink_job_status = Some(other.to_string());
                    job.status.submitted = true;
                    self.store.write(vec![Write1::Job(job)])?;
                }
                Ok(())
            }
        }
    }

    async fn submit(
        &self,
        rec: &DeploymentRecord,
        mut job: Job,
        since: DateTime<Utc>,
        rest: &str,
        rendered: std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let d = &rec.deployment;
        let spec = &job.spec.deployment_spec.template.spec;
        let jar = match self
            .resolve_jar(&d.metadata.namespace, &spec.artifact.jar_uri)
            .await
        {
            Ok(p) => p,
            Err(e) => return self.job_failed_to_start(rec, job, e, true),
        };
        let ctx = self.ctx(d, &job.metadata.id.to_string());
        let main_args = template::render(spec.artifact.main_args.as_deref().unwrap_or(""), &ctx);
        let main_args = match main_args {
            Ok(a) => a,
            Err(e) => {
                return self.job_failed_to_start(
                    rec,
                    job,
                    format!("spec.template.spec.artifact.mainArgs: {e}"),
                    true,
                )
            }
        };
        let args = match template::split_args(&main_args) {
            Ok(a) => a,
            Err(e) => {
                return self.job_failed_to_start(
                    rec,
                    job,
                    format!("spec.template.spec.artifact.mainArgs: {e}"),
                    true,
                )
            }
        };
        let jar_id = match self.upload(rest, &jar).await {
            Ok(j) => j,
            Err(e) if e.is_transient() => return self.start_held_up(rec, job, since, e),
            Err(e) => return self.job_failed_to_start(rec, job, e.to_string(), false),
        };
        let req = RunRequest {
            entry_class: spec.artifact.entry_class.clone(),
            parallelism: spec.parallelism.max(1) as u32,
            program_args: args,
            savepoint_path: job.spec.restored_from.clone(),
            allow_non_restored_state: job.spec.allow_non_restored_state,
            job_id: job.status.flink_job_id.clone(),
            flink_configuration: if job
                .status
                .cluster
                .as_ref()
                .is_some_and(|c| c.local_dir.is_some())
            {
                Default::default()
            } else {
                rendered
            },
        };
        job.status.submission_attempts += 1;
        match self.flink.run_jar(rest, &jar_id, &req).await {
            Ok(fid) => {
                self.metrics.flink_submissions.inc();
                job.status.submitted = true;
                job.status.flink_job_id = fid.clone();
                self.store.write(vec![Write1::Job(job.clone())])?;
                self.event(
                    d,
                    Some(job.metadata.id),
                    "JobSubmitted",
                    format!(
                        "Submitted Flink job {fid} (parallelism {}).",
                        req.parallelism
                    ),
                );
                self.store.notify(d.id());
                Ok(())
            }
            Err(FlinkError::Http { status: 404, .. }) => {
                // The cluster forgot the jar (restarted): upload again next time.
                self.jars
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(rest.to_string(), jar));
                Ok(())
            }
            Err(e @ FlinkError::Unreachable { .. }) => self.start_held_up(rec, job, since, e),
            Err(e) => self.job_failed_to_start(rec, job, e.to_string(), false),
        }
    }

    /// Whether a start that began at `since` is older than the cluster start timeout.
    fn overdue(&self, since: DateTime<Utc>) -> bool {
        self.now()
            .signed_duration_since(since)
            .to_std()
            .unwrap_or_default()
            > (self.settings)().cluster_start_timeout
    }

    /// Something held up a start (the cluster does not answer yet, or Flink answers 5xx,
    /// e.g. to the JAR upload): an event with Flink's own error the first time that error
    /// is seen, then FAILED once the start is older than the cluster start timeout.
    fn start_held_up(
        &self,
        rec: &DeploymentRecord,
        job: Job,
        since: DateTime<Utc>,
        error: FlinkError,
    ) -> Result<()> {
        let d = &rec.deployment;
        let timeout = (self.settings)().cluster_start_timeout;
        let mut cause = error.to_string();
        if let Some(logs) = job.status.cluster.as_ref().and_then(|c| c.log_dir.as_ref()) {
            cause.push_str(&format!(" (cluster logs in {logs})"));
        }
        if self.overdue(since) {
            return self.job_failed_to_start(
                rec,
                job,
                format!("the Flink cluster did not accept the job within the cluster start timeout ({timeout:?}): {cause}"),
                true,
            );
        }
        if rec.control.start_error.as_deref() != Some(cause.as_str()) {
            let mut control = rec.control.clone();
            control.start_error = Some(cause.clone());
            self.commit(d.id(), d.status.clone(), control, vec![])?;
            self.event(
                d,
                Some(job.metadata.id),
                "ClusterNotReady",
                format!(
                    "Job {} is held up; retrying until the cluster start timeout ({timeout:?}): {cause}",
                    job.metadata.id
                ),
            );
        }
        Ok(())
    }

    async fn upload(&self, rest: &str, jar: &std::path::Path) -> Result<String, FlinkError> {
        let key = (rest.to_string(), jar.to_path_buf());
        let version = std::fs::metadata(jar)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if let Some((id, _)) = self
            .jars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(_, v)| version.is_some() && *v == version)
        {
            return Ok(id.clone());
        }
        let id = self.flink.upload_jar(rest, jar).await?;
        self.jars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (id.clone(), version));
        Ok(id)
    }

    /// A local path for a jarUri, checked again here (defence in depth: the API checked it
    /// when it was set, but the store, the config or the file may have changed since): a
    /// file of the namespace's own artifact store, or an allowed remote URI downloaded into
    /// `<data-dir>/jar-cache` with the address checks and limits of [`artifacts::remote`].
    async fn resolve_jar(&self, namespace: &str, uri: &str) -> Result<PathBuf, String> {
        let cfg = (self.settings)().artifacts;
        let field = "spec.template.spec.artifact.jarUri";
        match artifacts::check(&self.data_dir, namespace, uri, &cfg) {
            Ok(artifacts::JarRef::Stored(path)) => Ok(path),
            Ok(artifacts::JarRef::Remote(url)) => {
                artifacts::remote::fetch(url.as_str(), &cfg, &self.data_dir.join("jar-cache"))
                    .await
                    .map_err(|e| {
                        self.metrics.jar_uris_refused.inc();
                        format!("{field} {e}")
                    })
            }
            Err(e) => {
                self.metrics.jar_uris_refused.inc();
                Err(format!("{field} {e}"))
            }
        }
    }

    /// A start attempt failed: retry with a fresh Flink job id, or give up after
    /// `maxJobCreationAttempts` (at once when `permanent`).
    fn job_failed_to_start(
        &self,
        rec: &DeploymentRecord,
        mut job: Job,
        reason: String,
        permanent: bool,
    ) -> Result<()> {
        let d = &rec.deployment;
        let attempts = rec.control.job_attempts + 1;
        let max = d.spec.max_job_creation_attempts.max(1) as u32;
        self.event(
            d,
            Some(job.metadata.id),
            "JobCreationFailed",
            format!(
                "Attempt {attempts}/{max} to start job {} failed: {reason}",
                job.metadata.id
            ),
        );
        if permanent || attempts >= max {
            job.status.state = JobState::Failed;
            job.status.ended_at = Some(self.now());
            job.status.failure = Some(Failure {
                reason: "JobCreationFailed".into(),
                message: reason.clone(),
                failed_at: self.now(),
            });
            self.teardown(&job);
            let mut rec2 = rec.clone();
            rec2.control.job_attempts = attempts;
            return self.fail(
                &rec2,
                Some(&job),
                "JobCreationFailed",
                format!("Job could not be started after {attempts} attempt(s): {reason}"),
                vec![Write1::Job(job.clone())],
            );
        }
        // Flink keeps a failed submission under its id: use a new one for the retry.
        job.status.flink_job_id = Uuid::new_v4().simple().to_string();
        job.status.submitted = false;
        let mut control = rec.control.clone();
        control.job_attempts = attempts;
        self.commit(d.id(), d.status.clone(), control, vec![Write1::Job(job)])
    }

    fn teardown(&self, job: &Job) {
        if let Some(c) = &job.status.cluster {
            if c.local_dir.is_some() {
                self.local.stop(c);
            }
        }
    }

    // ---- Stopping ----------------------------------------------------------------------

    async fn stopping(
        &self,
        rec: DeploymentRecord,
        job_id: Uuid,
        goal: DesiredState,
        savepoint: Option<Uuid>,
        cancel_requested: bool,
    ) -> Result<()> {
        let d = &rec.deployment;
        let Some(mut job) = self.job(job_id) else {
            return self.stopped(&rec, None, goal, None);
        };
        let Some(cluster) = job.status.cluster.clone() else {
            return self.stopped(&rec, Some(job), goal, None);
        };
        let rest = cluster.rest_url.as_str();
        let fid = job.status.flink_job_id.clone();
        if let Some(sp_id) = savepoint {
            let Some(mut sp) = self.store.read().savepoints.get(&sp_id).cloned() else {
                return self.stopped(&rec, Some(job), goal, None);
            };
            match sp.status.trigger_id.clone() {
                None => {
                    let dir = self.savepoint_dir(d);
                    match self
                        .flink
                        .stop_with_savepoint(rest, &fid, dir.as_deref())
                        .await
                    {
                        Ok(trigger) => {
                            sp.status.state = SavepointState::Started;
                            sp.status.trigger_id = Some(trigger);
                            sp.status.attempts += 1;
                            self.store.write(vec![Write1::Savepoint(sp)])?;
                            self.metrics.savepoints_triggered.inc();
                            Ok(())
                        }
                        Err(e)
                            if e.is_transient()
                                && !matches!(e, FlinkError::Http { status: 500, .. }) =>
                        {
                            Err(e.into())
                        }
                        Err(e) => self.savepoint_attempt_failed(&rec, job, sp, goal, e.to_string()),
                    }
                }
                Some(trigger) => match self.flink.savepoint_status(rest, &fid, &trigger).await? {
                    Operation::InProgress => Ok(()),
                    Operation::Completed { location } => {
                        sp.status.state = SavepointState::Completed;
                        sp.status.location = Some(location.clone());
                        sp.status.completed_at = Some(self.now());
                        self.store.write(vec![Write1::Savepoint(sp)])?;
                        self.event(
                            d,
                            Some(job_id),
                            "SavepointCompleted",
                            format!("Stopped job {job_id} with savepoint {location}."),
                        );
                        job.status.observed_flink_job_status = Some("FINISHED".into());
                        self.stopped(&rec, Some(job), goal, Some(JobState::Suspended))
                    }
                    Operation::Failed { cause } => {
                        self.savepoint_attempt_failed(&rec, job, sp, goal, cause)
                    }
                },
            }
        } else {
            if !job.status.submitted {
                return self.stopped(&rec, Some(job), goal, Some(JobState::Cancelled));
            }
            if !cancel_requested {
                if d.spec.restore_strategy.kind == RestoreKind::LatestState {
                    if let Ok(c) = self.flink.checkpoints(rest, &fid).await {
                        if let Some(loc) = c.latest_completed {
                            let mut sp =
                                new_savepoint(d, Some(job_id), SavepointOrigin::RetainedCheckpoint);
                            sp.metadata.kind = "RETAINED_CHECKPOINT".into();
                            sp.status.state = SavepointState::Completed;
                            sp.status.location = Some(loc);
                            sp.status.completed_at = Some(self.now());
                            self.store.write(vec![Write1::Savepoint(sp)])?;
                        }
                    }
                }
                match self.flink.cancel(rest, &fid).await {
                    Ok(()) | Err(FlinkError::Http { status: 404, .. }) => {}
                    Err(FlinkError::Unreachable { .. }) if cluster.local_dir.is_some() => {
                        // A local cluster that does not answer (still booting, or gone) is
                        // stopped by tearing it down.
                        return self.stopped(&rec, Some(job), goal, Some(JobState::Cancelled));
                    }
                    Err(e) => return Err(e.into()),
                }
                let mut control = rec.control.clone();
                control.phase = Phase::Stopping {
                    job: job_id,
                    goal,
                    savepoint: None,
                    cancel_requested: true,
                };
                self.commit(d.id(), d.status.clone(), control, vec![])?;
                self.store.notify(d.id());
                return Ok(());
            }
            match self.flink.job_status(rest, &fid).await {
                Ok(None) => self.stopped(&rec, Some(job), goal, Some(JobState::Cancelled)),
                Ok(Some(s)) if matches!(s.as_str(), "CANCELED" | "FAILED" | "FINISHED") => {
                    self.stopped(&rec, Some(job), goal, Some(JobState::Cancelled))
                }
                Ok(Some(_)) => Ok(()),
                Err(FlinkError::Unreachable { .. }) if cluster.local_dir.is_some() => {
                    // A local cluster that is gone has no job left.
                    self.stopped(&rec, Some(job), goal, Some(JobState::Cancelled))
                }
                Err(e) => Err(e.into()),
            }
        }
    }

    fn savepoint_attempt_failed(
        &self,
        rec: &DeploymentRecord,
        job: Job,
        mut sp: Savepoint,
        goal: DesiredState,
        cause: String,
    ) -> Result<()> {
        let d = &rec.deployment;
        let attempts = sp.status.attempts.max(1);
        let max = d.spec.max_savepoint_creation_attempts.max(1) as u32;
        self.event(
            d,
            Some(job.metadata.id),
            "SavepointFailed",
            format!("Savepoint attempt {attempts}/{max} failed: {cause}"),
        );
        if attempts >= max {
            sp.status.state = SavepointState::Failed;
            sp.status.failure = Some(Failure {
                reason: "SavepointFailed".into(),
                message: cause.clone(),
                failed_at: self.now(),
            });
            let mut job = job;
            job.status.state = JobState::Started;
            return self.fail(
                rec,
                Some(&job),
                "SavepointCreationFailed",
                format!(
                    "Could not take a savepoint to reach {}{} after {attempts} attempt(s): {cause}. The job keeps running.",
                    goal,
                    if goal == DesiredState::Running { " (upgrade)" } else { "" }
                ),
                vec![Write1::Savepoint(sp), Write1::Job(job.clone())],
            );
        }
        sp.status.trigger_id = None;
        sp.status.attempts = attempts;
        self.store.write(vec![Write1::Savepoint(sp)])?;
        Ok(())
    }

    /// The job is stopped: reach `goal`, or start the new spec (upgrade).
    fn stopped(
        &self,
        rec: &DeploymentRecord,
        job: Option<Job>,
        goal: DesiredState,
        job_state: Option<JobState>,
    ) -> Result<()> {
        let d = &rec.deployment;
        // The user may have asked for something else meanwhile: an upgrade (goal RUNNING)
        // ends in the state now desired.
        let goal = if goal == DesiredState::Running {
            d.spec.state
        } else {
            goal
        };
        let mut extra = vec![];
        if let Some(mut j) = job.clone() {
            if let Some(s) = job_state {
                j.status.state = s;
            }
            j.status.ended_at = Some(self.now());
            self.teardown(&j);
            extra.push(Write1::Job(j));
        }
        self.delete_metric_groups(d);
        if goal == DesiredState::Running {
            // Upgrade: the old job is gone; the next idle pass starts the new spec.
            let mut status = d.status.clone();
            status.state = DeploymentState::Transitioning;
            let mut control = rec.control.clone();
            control.phase = Phase::Idle;
            self.commit(d.id(), status, control, extra)?;
            let mut rec2 = rec.clone();
            rec2.control.phase = Phase::Idle;
            if let Some(j) = &job {
                rec2.deployment.status.running = Some(RunningStatus {
                    job_id: Some(j.metadata.id),
                    transition_time: Some(self.now()),
                    conditions: vec![],
                });
            }
            return self.begin_start(&rec2);
        }
        let mut status = d.status.clone();
        status.state = goal.reached();
        status.failure = None;
        if let Some(r) = status.running.as_mut() {
            r.conditions.clear();
            r.transition_time = Some(self.now());
        }
        let control = Control {
            phase: Phase::Idle,
            ..Control::default()
        };
        self.commit(d.id(), status, control, extra)?;
        self.event(
            d,
            job.as_ref().map(|j| j.metadata.id),
            "DeploymentStateChanged",
            format!("Deployment is {}.", goal.reached()),
        );
        self.store.notify(d.id());
        Ok(())
    }

    fn delete_metric_groups(&self, d: &Deployment) {
        let Some(url) = (self.settings)().metrics_gateway else {
            return;
        };
        let selector = format!(
            "{{{}=\"{}\"}}",
            common::labels::fields::DEPLOYMENT_ID,
            d.id()
        );
        let http = self.http.clone();
        let id = d.id();
        tokio::spawn(async move {
            let u = format!("{}/api/v1/groups", url.trim_end_matches('/'));
            match http
                .delete(&u)
                .query(&[("match[]", selector.as_str())])
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(deployment = %id, "Deleted metric groups from the metrics-gateway.")
                }
                Ok(r) => {
                    tracing::warn!(deployment = %id, status = %r.status(), "metrics-gateway refused to delete metric groups.")
                }
                Err(error) => {
                    tracing::warn!(deployment = %id, %error, "Cannot reach the metrics-gateway to delete metric groups.")
                }
            }
        });
    }

    // ---- Observing a running job -------------------------------------------------------

    async fn observe(&self, rec: &DeploymentRecord, mut job: Job) -> Result<()> {
        let d = &rec.deployment;
        let Some(cluster) = job.status.cluster.clone() else {
            return Ok(());
        };
        let rest = cluster.rest_url.as_str();
        let fid = job.status.flink_job_id.clone();
        let settings = (self.settings)();
        let mut status = d.status.clone();
        let mut control = rec.control.clone();
        let observed = match self.flink.job_status(rest, &fid).await {
            Ok(s) => s,
            Err(e @ FlinkError::Unreachable { .. }) => {
                if cluster.local_dir.is_some() && !self.local.is_running(&cluster) {
                    // The local cluster is gone (host reboot, killed): the job cannot come
                    // back on its own. FAILED; a user action restarts it from its state.
                    job.status.state = JobState::Failed;
                    job.status.ended_at = Some(self.now());
                    let msg = format!(
                        "The local Flink cluster of job {} at {rest} is not running any more.",
                        job.metadata.id
                    );
                    job.status.failure = Some(Failure {
                        reason: "ClusterLost".into(),
                        message: msg.clone(),
                        failed_at: self.now(),
                    });
                    self.teardown(&job);
                    return self.fail(
                        rec,
                        Some(&job),
                        "ClusterLost",
                        msg,
                        vec![Write1::Job(job.clone())],
                    );
                }
                if set_condition(
                    &mut status,
                    CLUSTER_UNREACHABLE,
                    true,
                    "RestUnreachable",
                    &e.to_string(),
                ) {
                    self.commit(d.id(), status, control, vec![])?;
                    self.event(d, Some(job.metadata.id), CLUSTER_UNREACHABLE, e.to_string());
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut changed =
            set_condition(&mut status, CLUSTER_UNREACHABLE, false, "RestReachable", "");
        let mut events = vec![];
        match observed.as_deref() {
            None => {
                job.status.state = JobState::Failed;
                job.status.ended_at = Some(self.now());
                let msg = format!("Flink job {fid} no longer exists on the cluster at {rest}.");
                self.teardown(&job);
                return self.fail(
                    rec,
                    Some(&job),
                    "JobLost",
                    msg,
                    vec![Write1::Job(job.clone())],
                );
            }
            Some("FAILED") | Some("CANCELED") => {
                let s = observed.clone().unwrap_or_default();
                let cause = self.flink.root_exception(rest, &fid).await.ok().flatten();
                job.status.state = if s == "FAILED" {
                    JobState::Failed
                } else {
                    JobState::Cancelled
                };
                job.status.observed_flink_job_status = Some(s.clone());
                job.status.ended_at = Some(self.now());
                let message = match (&s[..], &cause) {
                    ("FAILED", Some(c)) => format!("Flink job {fid} FAILED: {c}"),
                    ("FAILED", None) => format!("Flink job {fid} FAILED."),
                    _ => format!("Flink job {fid} was cancelled outside job-manager."),
                };
                job.status.failure = Some(Failure {
                    reason: "JobFailed".into(),
                    message: message.clone(),
                    failed_at: self.now(),
                });
                self.teardown(&job);
                let mut rec2 = rec.clone();
                rec2.deployment.status = status;
                return self.fail(
                    &rec2,
                    Some(&job),
                    "JobFailed",
                    message,
                    vec![Write1::Job(job.clone())],
                );
            }
            Some("FINISHED") => {
                job.status.state = JobState::Finished;
                job.status.ended_at = Some(self.now());
                status.state = DeploymentState::Finished;
                self.teardown(&job);
                self.commit(d.id(), status, control, vec![Write1::Job(job.clone())])?;
                self.event(
                    d,
                    Some(job.metadata.id),
                    "JobFinished",
                    format!("Flink job {fid} finished."),
                );
                return Ok(());
            }
            Some(s) => {
                let failing = matches!(s, "RESTARTING" | "FAILING");
                let msg = if failing {
                    self.flink
                        .root_exception(rest, &fid)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| format!("Flink job is {s}"))
                } else {
                    String::new()
                };
                if set_condition(
                    &mut status,
                    JOB_FAILING,
                    failing,
                    if failing {
                        "JobRestarting"
                    } else {
                        "JobRunning"
                    },
                    &msg,
                ) {
                    changed = true;
                    if failing {
                        events.push((JOB_FAILING, format!("Job is failing ({s}): {msg}")));
                    }
                }
                if job.status.observed_flink_job_status.as_deref() != Some(s) {
                    job.status.observed_flink_job_status = Some(s.to_string());
                    changed = true;
                }
            }
        }
        // Restarts and instability.
        if let Ok(Some(n)) = self.flink.num_restarts(rest, &fid).await {
            let now = self.now();
            let window = chrono::Duration::from_std(settings.unstable_window).unwrap_or_default();
            control
                .restart_samples
                .retain(|(t, _)| now.signed_duration_since(*t) <= window);
            if control.restart_samples.last().map(|(_, v)| *v) != Some(n) {
                control.restart_samples.push((now, n));
                changed = true;
            }
            let base = control
                .restart_samples
                .first()
                .map(|(_, v)| *v)
                .unwrap_or(n);
            let rising = n.saturating_sub(base);
            let unstable = rising >= settings.unstable_restarts;
            let msg = format!("{rising} restart(s) within {:?}", settings.unstable_window);
            if set_condition(
                &mut status,
                JOB_UNSTABLE,
                unstable,
                if unstable {
                    "FrequentRestarts"
                } else {
                    "Stable"
                },
                &msg,
            ) {
                changed = true;
                if unstable {
                    events.push((JOB_UNSTABLE, format!("Job is unstable: {msg}.")));
                }
            }
            if job.status.num_restarts != n {
                job.status.num_restarts = n;
                changed = true;
            }
        }
        // Scheduled savepoints.
        let mut extra = vec![];
        if let Some(sched) = &d.spec.savepoint_schedule {
            if let Ok(schedule) = cron::Schedule::from_str(&sched.cron) {
                let now = self.now();
                match control.next_scheduled {
                    None => {
                        control.next_scheduled = schedule.after(&now).next();
                        changed = true;
                    }
                    Some(due) if due <= now => {
                        extra.push(Write1::Savepoint(new_savepoint(
                            d,
                            Some(job.metadata.id),
                            SavepointOrigin::Scheduled,
                        )));
                        control.next_scheduled = schedule.after(&now).next();
                        changed = true;
                    }
                    Some(_) => {}
                }
            }
        } else if control.next_scheduled.is_some() {
            control.next_scheduled = None;
            changed = true;
        }
        if changed || !extra.is_empty() {
            extra.push(Write1::Job(job.clone()));
            self.commit(d.id(), status, control, extra)?;
        }
        for (name, msg) in events {
            self.event(d, Some(job.metadata.id), name, msg);
        }
        self.savepoints(d, &job, rest).await
    }

    /// Drives user-requested and scheduled savepoints of the running job.
    async fn savepoints(&self, d: &Deployment, job: &Job, rest: &str) -> Result<()> {
        let open: Vec<Savepoint> = self
            .store
            .read()
            .savepoints
            .values()
            .filter(|s| s.metadata.deployment_id == d.id())
            .filter(|s| {
                matches!(
                    s.metadata.origin,
                    SavepointOrigin::UserRequest | SavepointOrigin::Scheduled
                )
            })
            .filter(|s| {
                matches!(
                    s.status.state,
                    SavepointState::Pending | SavepointState::Started
                )
            })
            .cloned()
            .collect();
        let fid = &job.status.flink_job_id;
        let max = d.spec.max_savepoint_creation_attempts.max(1) as u32;
        for mut sp in open {
            match sp.status.trigger_id.clone() {
                None => {
                    let dir = self.savepoint_dir(d);
                    sp.status.attempts += 1;
                    sp.metadata.job_id = Some(job.metadata.id);
                    match self
                        .flink
                        .trigger_savepoint(rest, fid, dir.as_deref())
                        .await
                    {
                        Ok(t) => {
                            sp.status.state = SavepointState::Started;
                            sp.status.trigger_id = Some(t);
                            self.metrics.savepoints_triggered.inc();
                        }
                        Err(e) if matches!(e, FlinkError::Unreachable { .. }) => {
                            return Err(e.into())
                        }
                        Err(e) => self.savepoint_failed(d, &mut sp, max, e.to_string()),
                    }
                    self.store.write(vec![Write1::Savepoint(sp)])?;
                }
                Some(t) => match self.flink.savepoint_status(rest, fid, &t).await {
                    Ok(Operation::InProgress) => {}
                    Ok(Operation::Completed { location }) => {
                        sp.status.state = SavepointState::Completed;
                        sp.status.location = Some(location.clone());
                        sp.status.completed_at = Some(self.now());
                        let origin = sp.metadata.origin;
                        self.store.write(vec![Write1::Savepoint(sp)])?;
                        self.event(
                            d,
                            Some(job.metadata.id),
                            "SavepointCompleted",
                            format!("Savepoint completed at {location}."),
                        );
                        if origin == SavepointOrigin::Scheduled {
                            self.retain_scheduled(d)?;
                        }
                    }
                    Ok(Operation::Failed { cause }) => {
                        self.savepoint_failed(d, &mut sp, max, cause);
                        self.store.write(vec![Write1::Savepoint(sp)])?;
                    }
                    Err(FlinkError::Http { status: 404, .. }) => {
                        // The cluster forgot the trigger: trigger again.
                        sp.status.trigger_id = None;
                        self.store.write(vec![Write1::Savepoint(sp)])?;
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Ok(())
    }

    fn savepoint_failed(&self, d: &Deployment, sp: &mut Savepoint, max: u32, cause: String) {
        self.event(
            d,
            sp.metadata.job_id,
            "SavepointFailed",
            format!(
                "Savepoint {} attempt {}/{max} failed: {cause}",
                sp.metadata.id, sp.status.attempts
            ),
        );
        sp.status.trigger_id = None;
        if sp.status.attempts >= max {
            sp.status.state = SavepointState::Failed;
            sp.status.failure = Some(Failure {
                reason: "SavepointFailed".into(),
                message: cause,
                failed_at: self.now(),
            });
        } else {
            sp.status.state = SavepointState::Pending;
        }
    }

    /// Keeps the newest `retain` scheduled savepoints; deletes older records and their files.
    fn retain_scheduled(&self, d: &Deployment) -> Result<()> {
        let Some(sched) = &d.spec.savepoint_schedule else {
            return Ok(());
        };
        let mut done: Vec<Savepoint> = self
            .store
            .read()
            .savepoints
            .values()
            .filter(|s| s.metadata.deployment_id == d.id())
            .filter(|s| {
                s.metadata.origin == SavepointOrigin::Scheduled
                    && s.status.state == SavepointState::Completed
            })
            .cloned()
            .collect();
        done.sort_by_key(|s| std::cmp::Reverse(s.status.completed_at));
        let old: Vec<Savepoint> = done.into_iter().skip(sched.retain as usize).collect();
        if old.is_empty() {
            return Ok(());
        }
        let root = self.managed_savepoint_dir(d);
        for s in &old {
            let Some(location) = s.status.location.as_deref() else {
                continue;
            };
            match deletable_savepoint(root.as_deref(), location) {
                Ok(Some(path)) => {
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    if let Err(error) = removed {
                        tracing::warn!(deployment = %d.id(), %location, %error, "Cannot delete an expired savepoint.");
                    }
                }
                Ok(None) => {}
                Err(why) => {
                    self.metrics.savepoint_deletions_refused.inc();
                    self.event(
                        d,
                        s.metadata.job_id,
                        "SavepointNotDeleted",
                        format!(
                            "Expired savepoint {} at {location} was left alone: {why}.",
                            s.metadata.id
                        ),
                    );
                }
            }
        }
        self.store.write(
            old.iter()
                .map(|s| Write1::RemoveSavepoint(s.metadata.id))
                .collect(),
        )?;
        self.event(
            d,
            None,
            "SavepointsRetained",
            format!(
                "Deleted {} scheduled savepoint(s) beyond the newest {}.",
                old.len(),
                sched.retain
            ),
        );
        Ok(())
    }
}

/// The local path of a `file:` URI (`file:///p`, `file://localhost/p`, `file:/p`).
fn local_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file:")?;
    let p = match rest.strip_prefix("//") {
        Some(after) => after.strip_prefix("localhost").unwrap_or(after),
        None => rest,
    };
    p.starts_with('/').then(|| PathBuf::from(p))
}

/// Where an expired savepoint may be deleted: strictly inside `root` (the directory the
/// manager configured) after resolving symlinks, never `root` itself. `Ok(None)`: already
/// gone. `Err`: why it is left alone.
pub fn deletable_savepoint(root: Option<&str>, location: &str) -> Result<Option<PathBuf>, String> {
    let Some(root) = root else {
        return Err("the deployment's savepoint directory is not one the manager configured (set in flinkConfiguration or absent), so the manager deletes no savepoint files".into());
    };
    let Some(root_path) = local_path(root) else {
        return Err(format!(
            "the savepoint directory {root} is not a local file: directory"
        ));
    };
    let Some(path) = local_path(location) else {
        return Err("the location is not a local file: path".into());
    };
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("the location contains `..`".into());
    }
    let root_canon = std::fs::canonicalize(&root_path)
        .map_err(|e| format!("the savepoint directory {root} cannot be resolved: {e}"))?;
    let canon = match std::fs::canonicalize(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if path.starts_with(&root_path) {
                Ok(None)
            } else {
                Err(format!("it is outside the savepoint directory {root}"))
            };
        }
        Err(e) => return Err(format!("it cannot be resolved: {e}")),
    };
    if canon == root_canon || !canon.starts_with(&root_canon) {
        return Err(format!(
            "it resolves to {}, which is not inside the savepoint directory {root}",
            canon.display()
        ));
    }
    Ok(Some(canon))
}

/// Sets a condition; true when its status changed.
fn set_condition(
    status: &mut DeploymentStatus,
    kind: &str,
    on: bool,
    reason: &str,
    message: &str,
) -> bool {
    let running = status.running.get_or_insert_with(RunningStatus::default);
    let want = if on { "True" } else { "False" };
    match running.conditions.iter_mut().find(|c| c.kind == kind) {
        Some(c) if c.status == want => {
            if on && c.message != message {
                c.message = message.to_string();
            }
            false
        }
        Some(c) => {
            c.status = want.into();
            c.reason = reason.into();
            c.message = message.into();
            c.last_transition_time = Utc::now();
            true
        }
        None if !on => false,
        None => {
            running.conditions.push(Condition {
                kind: kind.into(),
                status: want.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: Utc::now(),
            });
            true
        }
    }
}
