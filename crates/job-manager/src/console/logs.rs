//! `GET /console/v1/namespaces/{ns}/deployments/{id}/logs`: the tail of the JobManager log
//! of a deployment's job (the running one, else the newest), where its target keeps log
//! files on this host (`local` clusters). Viewer role.
//!
//! The directory comes from the job's record only (`status.cluster.logDir`, written by the
//! provider when it started the cluster); nothing in the request names a path. At most
//! [`MAX_TAIL`] bytes are returned, cut at a line start.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
};
use serde_json::json;

use crate::{
    api::{auth::Caller, ok, ApiError, ApiResult, AppState},
    model::Role,
};

/// Most bytes of the log returned.
pub const MAX_TAIL: u64 = 64 * 1024;

/// The newest JobManager log file in `dir` (`*standalonesession*.log`, as Flink's scripts
/// name it).
fn jobmanager_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.contains("standalonesession") && n.ends_with(".log")
        })
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// The last `max` bytes of `path` (from the first whole line), its size, and whether the
/// start was left out.
fn tail(path: &Path, max: u64) -> std::io::Result<(String, u64, bool)> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let from = size.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((size - from) as usize);
    f.take(max).read_to_end(&mut buf)?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if from > 0 {
        if let Some(i) = text.find('\n') {
            text.drain(..=i);
        }
    }
    Ok((text, size, from > 0))
}

pub async fn jobmanager(
    caller: Caller,
    State(app): State<AppState>,
    UrlPath((ns, id)): UrlPath<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let not_found = || ApiError::not_found(format!("deployment {id} not found in namespace {ns}"));
    let (name, job, dir) = {
        let t = app.store.read();
        let uid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
        let rec = t
            .deployments
            .get(&uid)
            .filter(|r| r.deployment.metadata.namespace == ns)
            .ok_or_else(not_found)?;
        let d = &rec.deployment;
        let running = d.status.running.as_ref().and_then(|r| r.job_id);
        let job = running.and_then(|j| t.jobs.get(&j)).or_else(|| {
            t.jobs
                .values()
                .filter(|j| j.metadata.deployment_id == uid)
                .max_by_key(|j| j.metadata.created_at)
        });
        let job = job.ok_or_else(|| {
            ApiError::not_found(format!(
                "deployment {} has no job yet: start it to have logs",
                d.metadata.name
            ))
        })?;
        (
            d.metadata.name.clone(),
            job.metadata.id,
            job.status.cluster.as_ref().and_then(|c| c.log_dir.clone()),
        )
    };
    let dir = dir.ok_or_else(|| {
        ApiError::not_found(format!(
            "the target of deployment {name} keeps no log files on the manager's host (only local targets do); read them where the cluster runs"
        ))
    })?;
    let found = tokio::task::spawn_blocking(move || {
        let path = jobmanager_log(Path::new(&dir))?;
        let file = path.file_name()?.to_string_lossy().into_owned();
        Some(tail(&path, MAX_TAIL).map(|t| (file, t)))
    })
    .await
    .map_err(ApiError::internal)?;
    let (file, (text, size, truncated)) = found
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "job {job} of deployment {name} has no JobManager log yet"
            ))
        })?
        .map_err(|e| ApiError::internal(format!("reading the JobManager log of job {job}: {e}")))?;
    ok(
        StatusCode::OK,
        json!({
            "jobId": job,
            "file": file,
            "size": size,
            "truncated": truncated,
            "text": text,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_starts_at_a_whole_line_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("flink-u-standalonesession-0-h.log");
        let body: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, &body).unwrap();
        std::fs::write(dir.path().join("flink-u-taskexecutor-0-h.log"), "tm").unwrap();
        assert_eq!(jobmanager_log(dir.path()).unwrap(), p);
        let (text, size, cut) = tail(&p, 100).unwrap();
        assert!(cut);
        assert_eq!(size, body.len() as u64);
        assert!(text.len() <= 100);
        assert!(text.starts_with("line "), "{text}");
        assert!(text.ends_with("line 4999\n"));
        let (all, _, cut) = tail(&p, MAX_TAIL).unwrap();
        assert!(!cut);
        assert_eq!(all, body);
        assert!(jobmanager_log(&dir.path().join("missing")).is_none());
    }
}
