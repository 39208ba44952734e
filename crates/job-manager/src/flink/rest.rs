//! The real Flink REST client (Flink 1.20 and 2.x).

use std::{path::Path, time::Duration};

use axum::http::Method;
use serde_json::{json, Value};

use super::{Checkpoints, Flink, FlinkError, Operation, Overview, Result, RunRequest};

/// The status reported while a RUNNING job still has tasks being scheduled or deployed.
pub const DEPLOYING_TASKS: &str = "RUNNING_DEPLOYING_TASKS";

/// Talks to Flink's REST API with reqwest.
#[derive(Clone)]
pub struct RestFlink {
    http: reqwest::Client,
}

impl Default for RestFlink {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl RestFlink {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// One request to `rest` + `path`: plain HTTP, or through the Kubernetes API server's
    /// service proxy with the cluster's credentials when `rest` is a registered proxy URL
    /// ([`crate::kubernetes::cluster::route_flink_rest`]).
    async fn send(
        &self,
        rest: &str,
        what: &str,
        method: Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<(u16, Value)> {
        let unreachable = |message: String| FlinkError::Unreachable {
            url: rest.to_string(),
            message,
        };
        let (status, text) = match crate::kubernetes::cluster::proxy_route(rest) {
            Some((cluster, job)) => {
                let (status, bytes) = cluster
                    .flink_rest_via_proxy(
                        &job,
                        method,
                        path,
                        body.as_ref().map(|(ct, b)| (ct.as_str(), b.clone())),
                    )
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                (status, String::from_utf8_lossy(&bytes).into_owned())
            }
            None if crate::kubernetes::cluster::is_service_proxy_url(rest) => {
                return Err(unreachable(
                    "the Kubernetes client for this service proxy URL is not connected yet".into(),
                ));
            }
            None => {
                let url = format!("{}{path}", rest.trim_end_matches('/'));
                let mut req = self.http.request(method, url);
                if let Some((ct, b)) = body {
                    req = req.header("Content-Type", ct).body(b);
                }
                let resp = req.send().await.map_err(|e| unreachable(e.to_string()))?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(|e| unreachable(e.to_string()))?;
                (status, text)
            }
        };
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if status >= 400 {
            return Err(FlinkError::Http {
                status,
                what: what.to_string(),
                message: error_text(&body),
            });
        }
        Ok((status, body))
    }

    async fn get(&self, rest: &str, path: &str) -> Result<Value> {
        Ok(self
            .send(rest, &format!("GET {path}"), Method::GET, path, None)
            .await?
            .1)
    }

    async fn post(&self, rest: &str, path: &str, body: Value) -> Result<Value> {
        let json = (
            "application/json".to_string(),
            body.to_string().into_bytes(),
        );
        Ok(self
            .send(
                rest,
                &format!("POST {path}"),
                Method::POST,
                path,
                Some(json),
            )
            .await?
            .1)
    }
}

/// Flink errors are `{"errors": ["…", "<stack trace>"]}`; keep the first line of each.
fn error_text(body: &Value) -> String {
    match body.get("errors").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|s| {
                // A stack trace: its innermost cause says what went wrong.
                s.lines()
                    .rfind(|l| l.trim_start().starts_with("Caused by:"))
                    .map(|l| l.trim().trim_start_matches("Caused by:").trim())
                    .unwrap_or_else(|| s.lines().next().unwrap_or(""))
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        None => body.to_string().chars().take(500).collect(),
    }
}

/// First line of a Java stack trace plus its innermost cause, e.g.
/// `JobException: Recovery is suppressed … (caused by IllegalStateException: boom)`.
pub fn summarize_trace(trace: &str) -> String {
    let first = trace.lines().next().unwrap_or("").trim();
    let cause = trace
        .lines()
        .rfind(|l| l.trim_start().starts_with("Caused by:"))
        .map(|l| l.trim().trim_start_matches("Caused by:").trim());
    match cause {
        Some(c) if !c.is_empty() && c != first => format!("{first} (caused by {c})"),
        _ => first.to_string(),
    }
}

fn protocol(what: &str, body: &Value) -> FlinkError {
    FlinkError::Protocol(format!(
        "unexpected answer from Flink to {what}: {}",
        body.to_string().chars().take(300).collect::<String>()
    ))
}

fn str_field(body: &Value, what: &str, key: &str) -> Result<String> {
    body.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| protocol(what, body))
}

/// A failure cause from an operation result: Flink 1.x/2.x put the exception class and
/// stack trace under `failure-cause`.
fn failure_cause(v: &Value) -> String {
    let trace = v
        .get("stack-trace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The most specific "Caused by" line usually says what went wrong.
    let caused = trace
        .lines()
        .rfind(|l| l.trim_start().starts_with("Caused by:"))
        .map(|l| l.trim().trim_start_matches("Caused by:").trim().to_string());
    let first = trace.lines().next().map(|l| l.trim().to_string());
    caused
        .or(first)
        .filter(|s| !s.is_empty())
        .or_else(|| v.get("class").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| v.to_string())
}

impl Flink for RestFlink {
    async fn overview(&self, rest: &str) -> Result<Overview> {
        let v = self.get(rest, "/overview").await?;
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        Ok(Overview {
            taskmanagers: n("taskmanagers"),
            slots_total: n("slots-total"),
            slots_available: n("slots-available"),
        })
    }

    async fn upload_jar(&self, rest: &str, jar: &Path) -> Result<String> {
        let bytes = tokio::fs::read(jar)
            .await
            .map_err(|e| FlinkError::Protocol(format!("cannot read jar {}: {e}", jar.display())))?;
        let name = jar
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".jar"))
            .map(str::to_string)
            .unwrap_or_else(|| "artifact.jar".into());
        // multipart/form-data with one part, field `jarfile`.
        let boundary = format!("----job-manager-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(bytes.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{name}\"\r\nContent-Type: application/x-java-archive\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let (_, v) = self
            .send(
                rest,
                "POST /jars/upload",
                Method::POST,
                "/jars/upload",
                Some((content_type, body)),
            )
            .await?;
        let filename = str_field(&v, "POST /jars/upload", "filename")?;
        filename
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| protocol("POST /jars/upload", &v))
    }

    async fn run_jar(&self, rest: &str, jar_id: &str, req: &RunRequest) -> Result<String> {
        let mut body = json!({
            "parallelism": req.parallelism,
            "programArgsList": req.program_args,
            "allowNonRestoredState": req.allow_non_restored_state,
            "jobId": req.job_id,
        });
        if let Some(c) = &req.entry_class {
            body["entryClass"] = json!(c);
        }
        if let Some(p) = &req.savepoint_path {
            body["savepointPath"] = json!(p);
        }
        if !req.flink_configuration.is_empty() {
            body["flinkConfiguration"] = json!(req.flink_configuration);
        }
        let path = format!("/jars/{jar_id}/run");
        let v = self.post(rest, &path, body).await?;
        str_field(&v, &path, "jobid")
    }

    async fn job_status(&self, rest: &str, job: &str) -> Result<Option<String>> {
        match self.get(rest, &format!("/jobs/{job}")).await {
            Ok(v) => {
                let state = str_field(&v, "GET /jobs/{id}", "state")?;
                // Flink says RUNNING while tasks are still being deployed; a savepoint then
                // fails ("task is not being executed"). Report that phase separately.
                let deploying = state == "RUNNING"
                    && v.get("vertices")
                        .and_then(Value::as_array)
                        .is_some_and(|vs| {
                            vs.iter().any(|x| {
                                !matches!(
                                    x.get("status").and_then(Value::as_str),
                                    Some("RUNNING") | Some("FINISHED") | None
                                )
                            })
                        });
                Ok(Some(if deploying {
                    DEPLOYING_TASKS.to_string()
                } else {
                    state
                }))
            }
            Err(FlinkError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn trigger_savepoint(&self, rest: &str, job: &str, dir: Option<&str>) -> Result<String> {
        let mut body = json!({"cancel-job": false});
        if let Some(d) = dir {
            body["target-directory"] = json!(d);
        }
        let path = format!("/jobs/{job}/savepoints");
        let v = self.post(rest, &path, body).await?;
        str_field(&v, &path, "request-id")
    }

    async fn stop_with_savepoint(
        &self,
        rest: &str,
        job: &str,
        dir: Option<&str>,
    ) -> Result<String> {
        let mut body = json!({"drain": false});
        if let Some(d) = dir {
            body["targetDirectory"] = json!(d);
        }
        let path = format!("/jobs/{job}/stop");
        let v = self.post(rest, &path, body).await?;
        str_field(&v, &path, "request-id")
    }

    async fn savepoint_status(&self, rest: &str, job: &str, trigger: &str) -> Result<Operation> {
        let path = format!("/jobs/{job}/savepoints/{trigger}");
        let v = self.get(rest, &path).await?;
        let status = v
            .pointer("/status/id")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol(&path, &v))?;
        if status != "COMPLETED" {
            return Ok(Operation::InProgress);
        }
        let op = v.get("operation").cloned().unwrap_or(Value::Null);
        if let Some(cause) = op.get("failure-cause") {
            return Ok(Operation::Failed {
                cause: failure_cause(cause),
            });
        }
        match op.get("location").and_then(Value::as_str) {
            Some(l) => Ok(Operation::Completed {
                location: l.to_string(),
            }),
            None => Err(protocol(&path, &v)),
        }
    }

    async fn cancel(&self, rest: &str, job: &str) -> Result<()> {
        self.send(
            rest,
            "PATCH /jobs/{id}?mode=cancel",
            Method::PATCH,
            &format!("/jobs/{job}?mode=cancel"),
            None,
        )
        .await?;
        Ok(())
    }

    async fn root_exception(&self, rest: &str, job: &str) -> Result<Option<String>> {
        let v = self.get(rest, &format!("/jobs/{job}/exceptions")).await?;
        // Flink 1.x: `root-exception` (a stack trace); 2.x: `exceptionHistory.entries`.
        if let Some(e) = v
            .pointer("/exceptionHistory/entries/0")
            .filter(|e| !e.is_null())
        {
            let name = e.get("exceptionName").and_then(Value::as_str).unwrap_or("");
            let trace = e.get("stacktrace").and_then(Value::as_str).unwrap_or("");
            let summary = summarize_trace(trace);
            return Ok(Some(if summary.is_empty() {
                name.to_string()
            } else {
                summary
            }));
        }
        Ok(v.get("root-exception")
            .and_then(Value::as_str)
            .map(summarize_trace)
            .filter(|s| !s.is_empty()))
    }

    async fn checkpoints(&self, rest: &str, job: &str) -> Result<Checkpoints> {
        let v = self.get(rest, &format!("/jobs/{job}/checkpoints")).await?;
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        Ok(Checkpoints {
            latest_completed: s("/latest/completed/external_path"),
            restored_from: s("/latest/restored/external_path"),
        })
    }

    async fn num_restarts(&self, rest: &str, job: &str) -> Result<Option<u64>> {
        let v = self
            .get(rest, &format!("/jobs/{job}/metrics?get=numRestarts"))
            .await?;
        Ok(v.as_array().and_then(|a| {
            a.iter()
                .find(|m| m.get("id").and_then(Value::as_str) == Some("numRestarts"))
                .and_then(|m| m.get("value"))
                .and_then(|x| match x {
                    Value::String(s) => s.parse::<f64>().ok().map(|f| f as u64),
                    Value::Number(n) => n.as_f64().map(|f| f as u64),
                    _ => None,
                })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exception_summary_keeps_the_innermost_cause() {
        let t = "org.apache.flink.runtime.JobException: Recovery is suppressed\n\tat a\nCaused by: java.lang.IllegalStateException: failing on purpose\n\tat b";
        assert_eq!(
            summarize_trace(t),
            "org.apache.flink.runtime.JobException: Recovery is suppressed (caused by java.lang.IllegalStateException: failing on purpose)"
        );
        assert_eq!(summarize_trace("x.Y: only\n\tat z"), "x.Y: only");
    }

    #[test]
    fn failure_cause_prefers_the_innermost_cause() {
        let v = json!({"class": "java.util.concurrent.CompletionException",
            "stack-trace": "java.util.concurrent.CompletionException: outer\n\tat x\nCaused by: java.io.IOException: target directory not writable\n\tat y"});
        assert_eq!(
            failure_cause(&v),
            "java.io.IOException: target directory not writable"
        );
        assert_eq!(
            error_text(
                &json!({"errors": ["Could not execute application.", "org.x.ProgramInvocationException: main failed\n\tat a\nCaused by: java.lang.IllegalArgumentException: unknown flag x\n\tat b"]})
            ),
            "Could not execute application.; java.lang.IllegalArgumentException: unknown flag x"
        );
    }
}
