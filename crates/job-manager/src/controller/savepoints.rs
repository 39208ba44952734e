//! Savepoints of a running job (user-requested and scheduled), their directories and the
//! retention of scheduled ones (files deleted only inside the directory the manager chose).

#[allow(unused_imports)]
use super::*;

impl<F: Flink> Controller<F> {
    pub(super) fn savepoint_dir(&self, d: &Deployment) -> Option<String> {
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
        let target = target?;
        target.spec.savepoint_dir.clone().or_else(|| {
            self.providers
                .for_target(target.spec.kind)
                .default_savepoint_dir(d)
        })
    }

    /// The savepoint directory the manager itself configured for `d` (the target's
    /// `savepointDir`, or its provider's default, e.g. the `local` target's per-deployment
    /// directory), as a `file:` URI.
    /// `None` when the deployment chose its own directory in `flinkConfiguration` or the
    /// target has none: then retention deletes no files.
    pub(super) fn managed_savepoint_dir(&self, d: &Deployment) -> Option<String> {
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
        target.spec.savepoint_dir.clone().or_else(|| {
            self.providers
                .for_target(target.spec.kind)
                .default_savepoint_dir(d)
        })
    }

    /// Drives user-requested and scheduled savepoints of the running job.
    pub(super) async fn savepoints(&self, d: &Deployment, job: &Job, rest: &str) -> Result<()> {
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
                        self.event(
                            d,
                            Some(job.metadata.id),
                            "SavepointCompleted",
                            format!("Savepoint completed at {location}."),
                        );
                        self.write(d.id(), vec![Write1::Savepoint(sp)])?;
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

    pub(super) fn savepoint_failed(
        &self,
        d: &Deployment,
        sp: &mut Savepoint,
        max: u32,
        cause: String,
    ) {
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
    pub(super) fn retain_scheduled(&self, d: &Deployment) -> Result<()> {
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
