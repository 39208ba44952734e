//! Starting a job: the cluster from the target, submission with a job id chosen by the
//! manager (idempotent across restarts), the JAR upload, retries and the start timeout.

#[allow(unused_imports)]
use super::*;

/// A pod condition a job's cluster shows (in this life of the manager).
#[derive(Debug, Clone)]
pub(super) struct Held {
    reason: String,
    /// When this reason was first seen without a break.
    since: DateTime<Utc>,
    /// When any condition was last seen.
    last: DateTime<Utc>,
}

impl<F: Flink> Controller<F> {
    pub(super) async fn starting(
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
                let provider = self.providers.for_target(target.spec.kind);
                let settings = (self.settings)();
                let provided = provider
                    .ensure(ClusterRequest {
                        deployment: d,
                        job: &job,
                        target: &target,
                        flink_configuration: &rendered,
                        context: &ctx,
                        metrics_gateway: settings.metrics_gateway.as_deref(),
                    })
                    .await;
                let provided = match provided {
                    Ok(p) => p,
                    Err(crate::provider::Error::Transient(e)) => {
                        return self.start_held_up(&rec, job, since, FlinkError::Protocol(e));
                    }
                    Err(e) => return self.job_failed_to_start(&rec, job, e.to_string(), true),
                };
                let cluster = provided.cluster;
                job.status.cluster = Some(cluster.clone());
                if let Some(note) = provided.note {
                    self.event(d, Some(job_id), "ClusterStarting", note);
                }
                self.write(d.id(), vec![Write1::Job(job.clone())])?;
                cluster
            }
        };
        let provider = self.providers.for_cluster(&cluster);
        provider.adopt(&job, &cluster);
        let rest = provider.flink_rest(&cluster);
        let rest = rest.as_str();
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
            None if provider.runs_job_itself() => {
                // Application mode: the JobManager starts the job itself, with our id.
                let e = FlinkError::Protocol(format!(
                    "the JobManager has not started Flink job {fid} yet"
                ));
                self.held_up(&rec, job, since, e, true)
            }
            None => {
                if provider.dedicated() {
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
                self.event(
                    d,
                    Some(job_id),
                    "JobRunning",
                    format!("Job {job_id} is RUNNING (Flink job {fid})."),
                );
                self.commit(d.id(), status, control, vec![Write1::Job(job.clone())])?;
                self.forget_start(job_id);
                self.metrics.jobs_started.inc();
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
                self.event(
                    d,
                    Some(job_id),
                    "JobFinished",
                    format!("Job {job_id} finished."),
                );
                self.commit(d.id(), status, control, vec![Write1::Job(job.clone())])?;
                self.teardown(&job);
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

    pub(super) async fn submit(
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
                .is_some_and(|c| self.providers.for_cluster(c).dedicated())
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
                self.event(
                    d,
                    Some(job.metadata.id),
                    "JobSubmitted",
                    format!(
                        "Submitted Flink job {fid} (parallelism {}).",
                        req.parallelism
                    ),
                );
                self.write(d.id(), vec![Write1::Job(job.clone())])?;
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

    /// Drops what this process remembered about a start that ended.
    pub(super) fn forget_start(&self, job: Uuid) {
        self.first_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job);
        self.forget_pod_condition(job);
    }

    /// Whether a start that began at `since` is older than the cluster start timeout.
    pub(super) fn overdue(&self, since: DateTime<Utc>) -> bool {
        self.now()
            .signed_duration_since(since)
            .to_std()
            .unwrap_or_default()
            > (self.settings)().cluster_start_timeout
    }

    /// Notes that `job`'s cluster shows the pod condition `reason` now; returns how long it
    /// has shown it without a break (in this life of the manager).
    pub(super) fn note_pod_condition(&self, job: Uuid, reason: &str) -> Duration {
        let now = self.now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let h = held.entry(job).or_insert_with(|| Held {
            reason: reason.to_string(),
            since: now,
            last: now,
        });
        if h.reason != reason {
            h.reason = reason.to_string();
            h.since = now;
        }
        h.last = now;
        now.signed_duration_since(h.since)
            .to_std()
            .unwrap_or_default()
    }

    /// When `job`'s cluster last showed a pod condition, if it did.
    fn pod_condition_last_seen(&self, job: Uuid) -> Option<DateTime<Utc>> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job)
            .map(|h| h.last)
    }

    /// The pod condition of `job`'s cluster passed (or the job ended).
    pub(super) fn forget_pod_condition(&self, job: Uuid) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job);
    }

    /// Something held up a start (the cluster does not answer yet, or Flink answers 5xx,
    /// e.g. to the JAR upload): an event with Flink's own error the first time that error
    /// is seen, then FAILED once the start is older than the cluster start timeout. A
    /// cluster that is not reachable yet is normal while its JVM boots: the event waits for
    /// [`NOT_READY_GRACE`].
    pub(super) fn start_held_up(
        &self,
        rec: &DeploymentRecord,
        job: Job,
        since: DateTime<Utc>,
        error: FlinkError,
    ) -> Result<()> {
        let booting = matches!(error, FlinkError::Unreachable { .. });
        self.held_up(rec, job, since, error, booting)
    }

    /// [`Controller::start_held_up`]; `booting`: the cause is what a cluster whose JVM is
    /// still starting shows (no answer, the job not started yet), so its event waits for
    /// [`NOT_READY_GRACE`].
    ///
    /// Before the start timeout is looked at, the provider says whether the cluster can
    /// come up: gone (a process exited, a permanent pod condition) fails the start now; a
    /// pod condition that may pass ([`Presence::Waiting`]: Unschedulable while an
    /// autoscaler adds a node, CrashLoopBackOff) is an event at once with the scheduler's
    /// or kubelet's words, and fails the start only once it has lasted its bound. Time
    /// spent waiting on pods does not count towards the cluster start timeout: it counts
    /// from the last time a pod condition was seen.
    pub(super) fn held_up(
        &self,
        rec: &DeploymentRecord,
        job: Job,
        since: DateTime<Utc>,
        error: FlinkError,
        booting: bool,
    ) -> Result<()> {
        let d = &rec.deployment;
        let job_id = job.metadata.id;
        let timeout = (self.settings)().cluster_start_timeout;
        let mut cause = error.to_string();
        if let Some(logs) = job
            .status
            .cluster
            .as_ref()
            .and_then(|c| self.providers.for_cluster(c).logs(c))
        {
            cause.push_str(&format!(" (cluster logs in {logs})"));
        }
        let now = self.now();
        let seen = *self
            .first_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(job_id)
            .or_insert(now);
        let started_for = now
            .signed_duration_since(since.max(seen))
            .to_std()
            .unwrap_or_default();
        if let Some(c) = job.status.cluster.as_ref() {
            let provider = self.providers.for_cluster(c);
            // A cluster of this job whose process exited will not come up: fail now, with
            // what it logged (after a grace for processes still being launched).
            if started_for >= provider.exit_grace() {
                match provider.observe(c) {
                    Presence::Gone(why) => {
                        let said = provider
                            .last_error(c)
                            .map(|e| format!("; its log says: {e}"))
                            .unwrap_or_default();
                        return self.job_failed_to_start(
                            rec,
                            job,
                            format!("{why}{said} ({cause})"),
                            true,
                        );
                    }
                    Presence::Waiting {
                        reason,
                        pod,
                        message,
                        bound,
                    } => {
                        let waited = self.note_pod_condition(job_id, &reason);
                        if waited >= bound {
                            return self.job_failed_to_start(
                                rec,
                                job,
                                format!(
                                    "{reason} for {} (the pod condition timeout): {message}",
                                    humantime_serde::re::humantime::format_duration(bound)
                                ),
                                true,
                            );
                        }
                        // One event per condition and pod (a crash loop's message changes
                        // with every restart).
                        let key = format!("{reason} {}", pod.as_deref().unwrap_or_default());
                        if rec.control.start_error.as_deref() != Some(key.as_str()) {
                            let mut control = rec.control.clone();
                            control.start_error = Some(key);
                            self.event(
                                d,
                                Some(job_id),
                                "ClusterNotReady",
                                format!(
                                    "Job {job_id} is waiting for its pods ({reason}): {message}; the start fails if this lasts {}",
                                    humantime_serde::re::humantime::format_duration(bound)
                                ),
                            );
                            self.commit(d.id(), d.status.clone(), control, vec![])?;
                        }
                        return Ok(());
                    }
                    Presence::Present => {}
                }
            }
        }
        // The start timeout and the boot grace count from the last time pods were seen
        // waiting (an autoscaler's minutes are not the JVM's).
        let from = since.max(self.pod_condition_last_seen(job_id).unwrap_or(since));
        if self.overdue(from) {
            return self.job_failed_to_start(
                rec,
                job,
                format!("the Flink cluster did not accept the job within the cluster start timeout ({timeout:?}): {cause}"),
                true,
            );
        }
        let quiet_for = now
            .signed_duration_since(from.max(seen))
            .to_std()
            .unwrap_or_default();
        if booting && quiet_for < NOT_READY_GRACE {
            return Ok(());
        }
        if rec.control.start_error.as_deref() != Some(cause.as_str()) {
            let mut control = rec.control.clone();
            control.start_error = Some(cause.clone());
            self.event(
                d,
                Some(job_id),
                "ClusterNotReady",
                format!(
                    "Job {job_id} is held up; retrying until the cluster start timeout ({timeout:?}): {cause}"
                ),
            );
            self.commit(d.id(), d.status.clone(), control, vec![])?;
        }
        Ok(())
    }

    pub(super) async fn upload(
        &self,
        rest: &str,
        jar: &std::path::Path,
    ) -> Result<String, FlinkError> {
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
    pub(super) async fn resolve_jar(&self, namespace: &str, uri: &str) -> Result<PathBuf, String> {
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
    pub(super) fn job_failed_to_start(
        &self,
        rec: &DeploymentRecord,
        mut job: Job,
        reason: String,
        permanent: bool,
    ) -> Result<()> {
        self.forget_start(job.metadata.id);
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{flink::fake::FakeFlink, testing::Harness, Config};

    fn events(h: &Harness) -> Vec<String> {
        let t = h.state.store.read();
        t.events
            .values()
            .flatten()
            .map(|e| format!("{}: {}", e.spec.name, e.spec.message))
            .collect()
    }

    /// A cluster whose REST API does not answer yet (its JVM boots) is normal for a few
    /// seconds: `ClusterNotReady` is recorded only after the grace, then once.
    #[tokio::test(start_paused = true)]
    async fn a_booting_cluster_is_held_up_quietly_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let flink = Arc::new(FakeFlink::new());
        let h = Harness::open(dir.path(), flink.clone(), Config::default());
        h.fake_target().await;
        flink.set_unreachable(true);
        let (s, v) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/deployments",
                Some(serde_json::json!({
                    "metadata": {"name": "boot"},
                    "spec": {"state": "RUNNING", "deploymentTargetName": "fake",
                        "template": {"spec": {"artifact": {"kind": "JAR", "jarUri": h.jar_uri}}}}
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let not_ready = |h: &Harness| {
            events(h)
                .into_iter()
                .filter(|e| e.starts_with("ClusterNotReady"))
                .count()
        };
        for _ in 0..3 {
            h.controller.reconcile_all().await;
            tokio::time::advance(std::time::Duration::from_secs(9)).await;
        }
        assert_eq!(not_ready(&h), 0, "{:?}", events(&h));
        tokio::time::advance(super::NOT_READY_GRACE).await;
        h.controller.reconcile_all().await;
        h.controller.reconcile_all().await;
        assert_eq!(not_ready(&h), 1, "{:?}", events(&h));
        // Once it answers, the job is submitted.
        flink.set_unreachable(false);
        h.settle(10).await;
        assert_eq!(flink.calls_of("run_jar").len(), 1);
    }
}
