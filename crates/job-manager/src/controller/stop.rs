//! Stopping a job: stop-with-savepoint or cancel through Flink's REST API, then the goal.

#[allow(unused_imports)]
use super::*;

impl<F: Flink> Controller<F> {
    pub(super) async fn stopping(
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
        let rest = self.providers.for_cluster(&cluster).flink_rest(&cluster);
        let rest = rest.as_str();
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
                        self.event(
                            d,
                            Some(job_id),
                            "SavepointCompleted",
                            format!("Stopped job {job_id} with savepoint {location}."),
                        );
                        self.write(d.id(), vec![Write1::Savepoint(sp)])?;
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
                    Err(FlinkError::Unreachable { .. })
                        if self.providers.for_cluster(&cluster).dedicated() =>
                    {
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
                Err(FlinkError::Unreachable { .. })
                    if self.providers.for_cluster(&cluster).dedicated() =>
                {
                    // A local cluster that is gone has no job left.
                    self.stopped(&rec, Some(job), goal, Some(JobState::Cancelled))
                }
                Err(e) => Err(e.into()),
            }
        }
    }

    pub(super) fn savepoint_attempt_failed(
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

    pub(super) fn delete_metric_groups(&self, d: &Deployment) {
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
}
