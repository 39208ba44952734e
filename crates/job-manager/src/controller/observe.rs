//! Observing a running job: Flink's job status, restarts and instability, schedules.

#[allow(unused_imports)]
use super::*;

impl<F: Flink> Controller<F> {
    pub(super) async fn observe(&self, rec: &DeploymentRecord, mut job: Job) -> Result<()> {
        let d = &rec.deployment;
        let Some(cluster) = job.status.cluster.clone() else {
            return Ok(());
        };
        let provider = self.providers.for_cluster(&cluster);
        if let Some(renewed) = provider.renew(&job, &cluster).await {
            job.status.cluster = Some(renewed);
            self.write(d.id(), vec![Write1::Job(job.clone())])?;
        }
        let rest = provider.flink_rest(&cluster);
        let rest = rest.as_str();
        let fid = job.status.flink_job_id.clone();
        let settings = (self.settings)();
        let mut status = d.status.clone();
        let mut control = rec.control.clone();
        let observed = match self.flink.job_status(rest, &fid).await {
            Ok(s) => s,
            Err(e @ FlinkError::Unreachable { .. }) => {
                let mut presence = provider.observe(&cluster);
                let mut unreachable = e.to_string();
                if let Presence::Waiting {
                    reason,
                    message,
                    bound,
                    ..
                } = &presence
                {
                    // A JobManager in a crash loop may come back (Flink restores the job
                    // from its checkpoints): gone only once the condition outlasts its
                    // bound.
                    let waited = self.note_pod_condition(job.metadata.id, reason);
                    unreachable = format!("{unreachable}; {reason}: {message}");
                    if waited >= *bound {
                        presence = Presence::Gone(format!(
                            "{reason} for {} (the pod condition timeout): {message}",
                            humantime_serde::re::humantime::format_duration(*bound)
                        ));
                    }
                } else {
                    self.forget_pod_condition(job.metadata.id);
                }
                if let Presence::Gone(why) = presence {
                    // The cluster is gone (host reboot, killed): the job cannot come back on
                    // its own. FAILED; a user action restarts it from its state.
                    job.status.state = JobState::Failed;
                    job.status.ended_at = Some(self.now());
                    let msg = format!("Job {}: {why}.", job.metadata.id);
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
                    &unreachable,
                ) {
                    self.event(d, Some(job.metadata.id), CLUSTER_UNREACHABLE, unreachable);
                    self.commit(d.id(), status, control, vec![])?;
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.forget_pod_condition(job.metadata.id);
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
                self.event(
                    d,
                    Some(job.metadata.id),
                    "JobFinished",
                    format!("Flink job {fid} finished."),
                );
                self.commit(d.id(), status, control, vec![Write1::Job(job.clone())])?;
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
}
