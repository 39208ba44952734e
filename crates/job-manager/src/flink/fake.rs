//! An in-memory Flink for unit tests and the benchmark. It checks calls the way Flink does
//! (unknown jar → 404, duplicate job id → error, savepoint of a job that is not running →
//! error) and records every call with its time, so tests can assert what the controller did.

use std::{collections::BTreeMap, path::Path, sync::Mutex, time::Instant};

use super::{Checkpoints, Flink, FlinkError, Operation, Overview, Result, RunRequest};

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    /// E.g. `run_jar`, `stop_with_savepoint`, `cancel`.
    pub op: &'static str,
    pub job: Option<String>,
}

/// A fake job.
#[derive(Debug, Clone)]
pub struct FakeJob {
    pub status: String,
    pub request: RunRequest,
    pub restarts: u64,
    pub exception: Option<String>,
}

#[derive(Debug, Clone)]
struct Op {
    job: String,
    stop: bool,
    result: Option<Operation>,
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<String, FakeJob>,
    jars: BTreeMap<String, String>,
    ops: BTreeMap<String, Op>,
    calls: Vec<Call>,
    unreachable: bool,
    /// Operations stay IN_PROGRESS until [`FakeFlink::complete_operations`].
    hold_operations: bool,
    /// The next N savepoint operations fail with this cause.
    fail_savepoints: Option<(u32, String)>,
    /// The next N job submissions are refused with this message.
    fail_runs: Option<(u32, String)>,
    /// JAR uploads answer 500 with this message (as Flink does when its upload directory is
    /// unusable).
    fail_uploads: Option<String>,
    /// REST URLs whose calls never answer (a black-holed address).
    black_holes: std::collections::BTreeSet<String>,
    /// Job submissions are accepted (the job runs) but never answered.
    hang_after_run: bool,
    /// Locations the next completed savepoints report (then the default one).
    savepoint_locations: std::collections::VecDeque<String>,
    next: u64,
}

/// The fake. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct FakeFlink {
    inner: Mutex<Inner>,
}

impl FakeFlink {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, i: &mut Inner, op: &'static str, job: Option<&str>) -> Result<()> {
        i.calls.push(Call {
            at: Instant::now(),
            op,
            job: job.map(str::to_string),
        });
        if i.unreachable {
            return Err(FlinkError::Unreachable {
                url: "fake".into(),
                message: "connection refused".into(),
            });
        }
        Ok(())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Calls of one kind.
    pub fn calls_of(&self, op: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.op == op)
            .cloned()
            .collect()
    }

    /// Forgets recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The jobs Flink knows.
    pub fn jobs(&self) -> BTreeMap<String, FakeJob> {
        self.lock().jobs.clone()
    }

    /// A job `RUNNING` as an application-mode JobManager starts it itself (no upload, no
    /// `run_jar`), with the Flink job id it was given.
    pub fn start_application_job(&self, job: &str) {
        self.start_application_job_from(job, None);
    }

    /// [`FakeFlink::start_application_job`], restored from `savepoint`
    /// (`--fromSavepoint`). A job Flink knows already is left as it is (a JobManager
    /// restarted with the same job id recovers it, it does not run it twice).
    pub fn start_application_job_from(&self, job: &str, savepoint: Option<&str>) {
        self.lock().jobs.entry(job.to_string()).or_insert(FakeJob {
            status: "RUNNING".into(),
            request: RunRequest {
                job_id: job.to_string(),
                savepoint_path: savepoint.map(str::to_string),
                ..Default::default()
            },
            restarts: 0,
            exception: None,
        });
    }

    /// Sets a job's status (e.g. `RESTARTING`, `FAILED`) as if Flink changed it.
    pub fn set_status(&self, job: &str, status: &str, exception: Option<&str>) {
        let mut i = self.lock();
        if let Some(j) = i.jobs.get_mut(job) {
            j.status = status.to_string();
            if let Some(e) = exception {
                j.exception = Some(e.to_string());
            }
        }
    }

    /// Sets a job's restart counter.
    pub fn set_restarts(&self, job: &str, n: u64) {
        if let Some(j) = self.lock().jobs.get_mut(job) {
            j.restarts = n;
        }
    }

    /// Makes every call fail as unreachable (or not).
    pub fn set_unreachable(&self, down: bool) {
        self.lock().unreachable = down;
    }

    /// Holds savepoint operations IN_PROGRESS until released.
    pub fn hold_operations(&self, hold: bool) {
        self.lock().hold_operations = hold;
    }

    /// Fails the next `n` savepoint operations with `cause`.
    pub fn fail_savepoints(&self, n: u32, cause: &str) {
        self.lock().fail_savepoints = Some((n, cause.to_string()));
    }

    /// Calls to `rest` never answer from now on (as a black-holed address, before any
    /// client timeout); calls to other URLs are unaffected.
    pub fn black_hole(&self, rest: &str) {
        self.lock().black_holes.insert(rest.to_string());
    }

    /// Never completes for a black-holed `rest`.
    async fn gate(&self, rest: &str) {
        let hole = self.lock().black_holes.contains(rest);
        if hole {
            std::future::pending::<()>().await;
        }
    }

    /// Answers every JAR upload with 500 and `message` (or, with `None`, accepts them again).
    pub fn fail_uploads(&self, message: Option<&str>) {
        self.lock().fail_uploads = message.map(str::to_string);
    }

    /// The synchronous part of a submission: the job id, and whether to hang.
    fn submit(&self, jar_id: &str, req: &RunRequest) -> Result<(String, bool)> {
        let mut i = self.lock();
        self.record(&mut i, "run_jar", Some(&req.job_id))?;
        if !i.jars.contains_key(jar_id) {
            return Err(FlinkError::Http {
                status: 404,
                what: "run_jar".into(),
                message: format!("Jar file {jar_id} does not exist"),
            });
        }
        if let Some((n, msg)) = &mut i.fail_runs {
            if *n > 0 {
                *n -= 1;
                let message = msg.clone();
                return Err(FlinkError::Http {
                    status: 400,
                    what: "run_jar".into(),
                    message,
                });
            }
        }
        if i.jobs.contains_key(&req.job_id) {
            return Err(FlinkError::Http {
                status: 500,
                what: "run_jar".into(),
                message: format!(
                    "DuplicateJobSubmissionException: Job has already been submitted: {}",
                    req.job_id
                ),
            });
        }
        i.jobs.insert(
            req.job_id.clone(),
            FakeJob {
                status: "RUNNING".into(),
                request: req.clone(),
                restarts: 0,
                exception: None,
            },
        );
        Ok((req.job_id.clone(), i.hang_after_run))
    }

    /// Accepts job submissions (the job runs) but never answers them, as a manager that dies
    /// between its submission and its write of the result sees it (or not, again).
    pub fn hang_after_run(&self, hang: bool) {
        self.lock().hang_after_run = hang;
    }

    /// Refuses the next `n` job submissions with `message`.
    pub fn fail_runs(&self, n: u32, message: &str) {
        self.lock().fail_runs = Some((n, message.to_string()));
    }

    fn finish_op(i: &mut Inner, trigger: &str) {
        let Some(op) = i.ops.get(trigger).cloned() else {
            return;
        };
        if op.result.is_some() {
            return;
        }
        let failing = match &mut i.fail_savepoints {
            Some((n, cause)) if *n > 0 => {
                *n -= 1;
                Some(cause.clone())
            }
            _ => None,
        };
        let result = match failing {
            Some(cause) => Operation::Failed { cause },
            None => {
                if op.stop {
                    if let Some(j) = i.jobs.get_mut(&op.job) {
                        j.status = "FINISHED".into();
                    }
                }
                Operation::Completed {
                    location: i
                        .savepoint_locations
                        .pop_front()
                        .unwrap_or_else(|| format!("file:///fake/savepoints/savepoint-{trigger}")),
                }
            }
        };
        if let Some(o) = i.ops.get_mut(trigger) {
            o.result = Some(result);
        }
    }

    /// The next completed savepoints report these locations, in order (as a Flink that lies,
    /// or writes where it was not told to, would).
    pub fn report_savepoint_locations(&self, locations: &[&str]) {
        self.lock()
            .savepoint_locations
            .extend(locations.iter().map(|l| l.to_string()));
    }

    /// Completes every held operation.
    pub fn complete_operations(&self) {
        let mut i = self.lock();
        i.hold_operations = false;
        let keys: Vec<String> = i.ops.keys().cloned().collect();
        for k in keys {
            Self::finish_op(&mut i, &k);
        }
    }

    fn start_op(&self, op: &'static str, job: &str, stop: bool) -> Result<String> {
        let mut i = self.lock();
        self.record(&mut i, op, Some(job))?;
        match i.jobs.get(job).map(|j| j.status.clone()) {
            None => Err(FlinkError::Http {
                status: 404,
                what: op.into(),
                message: format!("Job {job} not found"),
            }),
            Some(s) if s != "RUNNING" => Err(FlinkError::Http {
                status: 500,
                what: op.into(),
                message: format!("Job {job} is not running (state {s})"),
            }),
            Some(_) => {
                i.next += 1;
                let trigger = format!("trigger-{}", i.next);
                i.ops.insert(
                    trigger.clone(),
                    Op {
                        job: job.to_string(),
                        stop,
                        result: None,
                    },
                );
                if !i.hold_operations {
                    Self::finish_op(&mut i, &trigger);
                }
                Ok(trigger)
            }
        }
    }
}

impl Flink for FakeFlink {
    async fn overview(&self, rest: &str) -> Result<Overview> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "overview", None)?;
        Ok(Overview {
            taskmanagers: 1,
            slots_total: 64,
            slots_available: 64,
        })
    }

    async fn upload_jar(&self, rest: &str, jar: &Path) -> Result<String> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "upload_jar", None)?;
        if let Some(message) = i.fail_uploads.clone() {
            return Err(FlinkError::Http {
                status: 500,
                what: "upload_jar".into(),
                message,
            });
        }
        i.next += 1;
        let id = format!("{}_{}", i.next, jar.display());
        i.jars.insert(id.clone(), jar.display().to_string());
        Ok(id)
    }

    async fn run_jar(&self, rest: &str, jar_id: &str, req: &RunRequest) -> Result<String> {
        self.gate(rest).await;
        let (id, hang) = self.submit(jar_id, req)?;
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(id)
    }

    async fn job_status(&self, rest: &str, job: &str) -> Result<Option<String>> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "job_status", Some(job))?;
        Ok(i.jobs.get(job).map(|j| j.status.clone()))
    }

    async fn trigger_savepoint(&self, rest: &str, job: &str, _dir: Option<&str>) -> Result<String> {
        self.gate(rest).await;
        self.start_op("trigger_savepoint", job, false)
    }

    async fn stop_with_savepoint(
        &self,
        rest: &str,
        job: &str,
        _dir: Option<&str>,
    ) -> Result<String> {
        self.gate(rest).await;
        self.start_op("stop_with_savepoint", job, true)
    }

    async fn savepoint_status(&self, rest: &str, job: &str, trigger: &str) -> Result<Operation> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "savepoint_status", Some(job))?;
        match i.ops.get(trigger) {
            None => Err(FlinkError::Http {
                status: 404,
                what: "savepoint_status".into(),
                message: format!("unknown trigger {trigger}"),
            }),
            Some(op) => Ok(op.result.clone().unwrap_or(Operation::InProgress)),
        }
    }

    async fn cancel(&self, rest: &str, job: &str) -> Result<()> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "cancel", Some(job))?;
        match i.jobs.get_mut(job) {
            None => Err(FlinkError::Http {
                status: 404,
                what: "cancel".into(),
                message: format!("Job {job} not found"),
            }),
            Some(j) => {
                if !matches!(j.status.as_str(), "FINISHED" | "FAILED" | "CANCELED") {
                    j.status = "CANCELED".into();
                }
                Ok(())
            }
        }
    }

    async fn root_exception(&self, rest: &str, job: &str) -> Result<Option<String>> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "root_exception", Some(job))?;
        Ok(i.jobs.get(job).and_then(|j| j.exception.clone()))
    }

    async fn checkpoints(&self, rest: &str, job: &str) -> Result<Checkpoints> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "checkpoints", Some(job))?;
        Ok(Checkpoints {
            latest_completed: i
                .jobs
                .get(job)
                .map(|_| format!("file:///fake/checkpoints/{job}/chk-1")),
            restored_from: i
                .jobs
                .get(job)
                .and_then(|j| j.request.savepoint_path.clone()),
        })
    }

    async fn num_restarts(&self, rest: &str, job: &str) -> Result<Option<u64>> {
        self.gate(rest).await;
        let mut i = self.lock();
        self.record(&mut i, "num_restarts", Some(job))?;
        Ok(i.jobs.get(job).map(|j| j.restarts))
    }
}

/// The fake's face as Flink's REST API (the paths and JSON shapes of Flink 1.x that
/// [`super::rest::RestFlink`] reads), so a test can put it behind an HTTP front, such as a
/// fake Kubernetes API server's service proxy, and the manager reaches it the way it reaches
/// a real cluster.
impl FakeFlink {
    /// Answers one request: `method`, `path` (below the REST base URL, query included) and
    /// its body. `rest` names the cluster (for [`FakeFlink::black_hole`]). Returns the HTTP
    /// status and the JSON body, errors as Flink writes them (`{"errors": [...]}`).
    pub async fn serve_rest(
        &self,
        rest: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        use serde_json::{json, Value};
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let dir = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let answer: Result<(u16, Value)> = match (method, parts.as_slice()) {
            ("GET", ["overview"]) => self.overview(rest).await.map(|o| {
                (
                    200,
                    json!({"taskmanagers": o.taskmanagers, "slots-total": o.slots_total,
                        "slots-available": o.slots_available, "flink-version": "1.17.2"}),
                )
            }),
            ("GET", ["config"]) => Ok((200, json!({"flink-version": "1.17.2"}))),
            ("GET", ["jobs", job]) => self.job_status(rest, job).await.map(|s| match s {
                Some(state) => (200, json!({"jid": job, "state": state, "vertices": []})),
                None => not_found(job),
            }),
            ("PATCH", ["jobs", job]) if query.contains("mode=cancel") => {
                self.cancel(rest, job).await.map(|()| (202, json!({})))
            }
            ("POST", ["jobs", job, "savepoints"]) => self
                .trigger_savepoint(rest, job, dir("target-directory").as_deref())
                .await
                .map(|t| (202, json!({"request-id": t}))),
            ("POST", ["jobs", job, "stop"]) => self
                .stop_with_savepoint(rest, job, dir("targetDirectory").as_deref())
                .await
                .map(|t| (202, json!({"request-id": t}))),
            ("GET", ["jobs", job, "savepoints", trigger]) => self
                .savepoint_status(rest, job, trigger)
                .await
                .map(|op| match op {
                    Operation::InProgress => (200, json!({"status": {"id": "IN_PROGRESS"}})),
                    Operation::Completed { location } => (
                        200,
                        json!({"status": {"id": "COMPLETED"}, "operation": {"location": location}}),
                    ),
                    Operation::Failed { cause } => (
                        200,
                        json!({"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {
                            "class": "java.util.concurrent.CompletionException",
                            "stack-trace": cause}}}),
                    ),
                }),
            ("GET", ["jobs", job, "exceptions"]) => self
                .root_exception(rest, job)
                .await
                .map(|e| (200, json!({"root-exception": e}))),
            ("GET", ["jobs", job, "checkpoints"]) => self.checkpoints(rest, job).await.map(|c| {
                let path = |p: Option<String>| p.map(|p| json!({"external_path": p}));
                (
                    200,
                    json!({"latest": {"completed": path(c.latest_completed),
                            "restored": path(c.restored_from)}}),
                )
            }),
            ("GET", ["jobs", job, "metrics"]) => {
                self.num_restarts(rest, job).await.map(|n| match n {
                    Some(n) => (200, json!([{"id": "numRestarts", "value": n.to_string()}])),
                    None => not_found(job),
                })
            }
            _ => Ok((
                404,
                json!({"errors": [format!("Not found: /{}", parts.join("/"))]}),
            )),
        };
        match answer {
            Ok(a) => a,
            Err(FlinkError::Http {
                status, message, ..
            }) => (status, json!({"errors": [message]})),
            Err(e) => (503, json!({"errors": [e.to_string()]})),
        }
    }
}

/// Flink's 404 for a job it does not know.
fn not_found(job: &str) -> (u16, serde_json::Value) {
    (
        404,
        serde_json::json!({"errors": [format!("Job {job} not found")]}),
    )
}
