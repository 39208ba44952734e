//! The `local` target: one standalone Flink cluster per job on this host, started from
//! `FLINK_HOME` by [`LocalClusters`]; its daemons outlive a crash of the manager and are
//! adopted (restarted if one is missing) by the next life.

use std::{collections::HashSet, sync::Mutex};

use futures::future::BoxFuture;
use uuid::Uuid;

use super::{ClusterProvider, ClusterRequest, Error, Presence, Provided};
use crate::{
    model::{ClusterRef, Deployment, EnvVar, Job},
    target::{LocalClusters, LocalSpec},
    template,
};

/// The provider of `local` targets.
pub struct Local {
    clusters: LocalClusters,
    /// Jobs whose daemons this process launched or checked.
    launched: Mutex<HashSet<Uuid>>,
}

impl Local {
    pub fn new(clusters: LocalClusters) -> Self {
        Self {
            clusters,
            launched: Mutex::new(HashSet::new()),
        }
    }

    fn env(job: &Job) -> Vec<EnvVar> {
        job.spec
            .deployment_spec
            .template
            .spec
            .kubernetes
            .as_ref()
            .map(|k| k.pods.env_vars.clone())
            .unwrap_or_default()
    }
}

impl ClusterProvider for Local {
    fn ensure<'a>(&'a self, req: ClusterRequest<'a>) -> BoxFuture<'a, Result<Provided, Error>> {
        let started = (|| -> Result<Provided, Error> {
            let spec = &req.job.spec.deployment_spec.template.spec;
            let log4j = template::render_log4j(spec.logging.as_ref(), req.context)
                .map_err(|e| Error::Spec(format!("spec.template.spec.{e}")))?;
            let ns = req.deployment.metadata.namespace.clone();
            let dep = req.deployment.id().to_string();
            let sp_dir = self.clusters.default_savepoint_dir(&ns, &dep);
            let ck_dir = self.clusters.default_checkpoint_dir(&ns, &dep);
            let res = spec.resources.as_ref();
            let env = Self::env(req.job);
            let job_id = req.job.metadata.id.to_string();
            let ls = LocalSpec {
                namespace: &ns,
                deployment_id: &dep,
                job_id: &job_id,
                flink_configuration: req.flink_configuration,
                parallelism: spec.parallelism.max(1) as u32,
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
                metrics_gateway: req.metrics_gateway,
            };
            let cluster = self.clusters.start(&ls)?;
            self.launched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(req.job.metadata.id);
            let note = format!(
                "Starting a local Flink cluster at {} (logs in {}).",
                cluster.rest_url,
                cluster.log_dir.clone().unwrap_or_default()
            );
            Ok(Provided {
                cluster,
                note: Some(note),
            })
        })();
        Box::pin(async move { started })
    }

    fn adopt(&self, job: &Job, cluster: &ClusterRef) {
        let first = self
            .launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.metadata.id);
        if first {
            // Started by an earlier life of this manager: make sure both daemons run.
            self.clusters.resume(cluster, &Self::env(job));
        }
    }

    fn observe(&self, cluster: &ClusterRef) -> Presence {
        if self.clusters.is_running(cluster) {
            Presence::Present
        } else {
            Presence::Gone(format!(
                "the local Flink cluster at {} is not running any more",
                cluster.rest_url
            ))
        }
    }

    fn teardown(&self, cluster: &ClusterRef) {
        self.clusters.stop(cluster);
    }

    fn default_savepoint_dir(&self, d: &Deployment) -> Option<String> {
        Some(
            self.clusters
                .default_savepoint_dir(&d.metadata.namespace, &d.id().to_string()),
        )
    }

    fn default_checkpoint_dir(&self, d: &Deployment) -> Option<String> {
        Some(
            self.clusters
                .default_checkpoint_dir(&d.metadata.namespace, &d.id().to_string()),
        )
    }

    fn logs(&self, cluster: &ClusterRef) -> Option<String> {
        cluster.log_dir.clone()
    }

    fn last_error(&self, cluster: &ClusterRef) -> Option<String> {
        last_error_in(std::path::Path::new(cluster.log_dir.as_deref()?))
    }

    fn dedicated(&self) -> bool {
        true
    }
}

/// Bytes read from the end of each JobManager log file.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The last `ERROR` line (or exception line) of the JobManager's logs in `dir`
/// (`*standalonesession*.log` and `.out`), trimmed to 500 characters.
fn last_error_in(dir: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("standalonesession")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let mut found = None;
    for (_, path) in files {
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
            .is_err()
        {
            continue;
        }
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some(line) = text
            .lines()
            .rev()
            .find(|l| l.contains(" ERROR ") || l.contains("Exception:") || l.starts_with("Error:"))
        {
            found = Some(line.trim().chars().take(500).collect::<String>());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_of_the_jobmanager_log_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("flink-u-standalonesession-0-host.log"),
            "2026-01-01 INFO  starting\n2026-01-01 ERROR org.apache.flink.runtime.entrypoint.ClusterEntrypoint [] - Could not start cluster entrypoint StandaloneSessionClusterEntrypoint.\n2026-01-01 INFO  shutting down\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("flink-u-taskexecutor-0-host.log"),
            "x ERROR other\n",
        )
        .unwrap();
        let e = last_error_in(dir.path()).unwrap();
        assert!(e.contains("Could not start cluster entrypoint"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(last_error_in(empty.path()), None);
    }
}
