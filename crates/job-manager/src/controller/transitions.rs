//! Transitions between phases: what an idle deployment starts (start, upgrade, stop),
//! how a stop ends (the goal reached, or the upgrade's new start) and FAILED.

#[allow(unused_imports)]
use super::*;

impl<F: Flink> Controller<F> {
    pub(super) async fn idle(&self, rec: DeploymentRecord) -> Result<()> {
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
                    self.event(
                        d,
                        None,
                        "DeploymentStateChanged",
                        format!("Deployment is {}.", goal.reached()),
                    );
                    self.commit(d.id(), status, control, vec![])?;
                }
                Ok(())
            }
        }
    }

    pub(super) fn fail(
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
        self.event(d, job.map(|j| j.metadata.id), reason, message);
        self.commit(d.id(), status, control, extra)?;
        self.metrics.deployments_failed.inc();
        Ok(())
    }

    pub(super) fn pick_restore(&self, d: &Deployment) -> Option<(String, Uuid)> {
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

    pub(super) fn begin_start(&self, rec: &DeploymentRecord) -> Result<()> {
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
        self.event(
            d,
            Some(id),
            "JobStarting",
            match &restore {
                Some((loc, _)) => format!("Starting job {id}, restoring state from {loc}."),
                None => format!("Starting job {id} without restoring state."),
            },
        );
        self.commit(d.id(), status, control, vec![Write1::Job(job)])?;
        self.store.notify(d.id());
        Ok(())
    }

    pub(super) fn begin_upgrade(&self, rec: &DeploymentRecord, job: Job) -> Result<()> {
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

    pub(super) fn begin_stop(
        &self,
        rec: &DeploymentRecord,
        job: Job,
        goal: DesiredState,
    ) -> Result<()> {
        if job.status.state == JobState::Starting {
            // Not submitted yet (or unknown): nothing to save; cancel the attempt.
            return self.begin_stop_inner(rec, job, goal, false, SavepointOrigin::Suspend);
        }
        let with_savepoint = goal == DesiredState::Suspended;
        self.begin_stop_inner(rec, job, goal, with_savepoint, SavepointOrigin::Suspend)
    }

    pub(super) fn begin_stop_inner(
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
        self.commit(d.id(), status, control, extra)?;
        self.store.notify(d.id());
        Ok(())
    }

    /// The job is stopped: reach `goal`, or start the new spec (upgrade).
    pub(super) fn stopped(
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
        self.event(
            d,
            job.as_ref().map(|j| j.metadata.id),
            "DeploymentStateChanged",
            format!("Deployment is {}.", goal.reached()),
        );
        self.commit(d.id(), status, control, extra)?;
        self.store.notify(d.id());
        Ok(())
    }

    pub(super) fn teardown(&self, job: &Job) {
        self.forget_start(job.metadata.id);
        if let Some(c) = &job.status.cluster {
            self.providers.for_cluster(c).teardown(c);
        }
    }
}
