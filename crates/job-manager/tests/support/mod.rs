//! Helpers for tests that drive the real `job-manager` binary over HTTP.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::testkit::Proc;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_job-manager");
pub const TOKEN: &str = "bootstrap-secret-for-tests";

/// A running manager with its data dir and bootstrap token.
pub struct Manager {
    pub proc: Proc,
    pub base: String,
    pub data: PathBuf,
    pub http: reqwest::Client,
}

impl Manager {
    /// Starts the binary on `data` with the bootstrap token (from a file) and `extra` flags.
    pub fn start(data: &Path, extra: &[&str]) -> Manager {
        std::fs::create_dir_all(data).unwrap();
        let token_file = data.join("bootstrap-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let config = data.join("config.yml");
        if !config.exists() {
            std::fs::write(&config, "controller:\n  poll_interval: 300ms\n").unwrap();
        }
        let mut args = vec![
            "--data-dir",
            data.to_str().unwrap(),
            "--bootstrap-token-file",
            token_file.to_str().unwrap(),
            "--config.file",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let proc = Proc::start(BIN, &args);
        Manager {
            base: format!("http://{}", proc.addr),
            proc,
            data: data.to_path_buf(),
            http: reqwest::Client::new(),
        }
    }

    /// Like [`Manager::start`], with extra environment variables for the process.
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Manager {
        std::fs::create_dir_all(data).unwrap();
        let token_file = data.join("bootstrap-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let config = data.join("config.yml");
        if !config.exists() {
            std::fs::write(&config, "controller:\n  poll_interval: 300ms\n").unwrap();
        }
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], common::testkit::free_port()).into();
        let child = std::process::Command::new(BIN)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data)
            .arg("--bootstrap-token-file")
            .arg(&token_file)
            .arg("--config.file")
            .arg(&config)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn job-manager");
        let mut proc = Proc { child, addr };
        proc.wait_healthy(Duration::from_secs(30));
        Manager {
            base: format!("http://{addr}"),
            proc,
            data: data.to_path_buf(),
            http: reqwest::Client::new(),
        }
    }

    /// Kills the process with SIGKILL (no cleanup of any kind).
    pub fn kill9(mut self) {
        self.proc.signal("KILL");
        let _ = self.proc.wait_exit(Duration::from_secs(5));
    }

    /// A request with the bootstrap token; JSON body if given. Returns status and envelope.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(TOKEN), method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Uploads `bytes` as artifact `name` (multipart field `file`).
    pub async fn upload(&self, ns: &str, name: &str, bytes: &[u8]) -> (u16, Value) {
        let boundary = "----test-boundary-7f3a";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/java-archive\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!(
                "{}/artifacts/v1/namespaces/{ns}/artifacts:upload",
                self.base
            ))
            .bearer_auth(TOKEN)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The deployment's `data`.
    pub async fn deployment(&self, id: &str) -> Value {
        let (s, v) = self
            .call(
                "GET",
                &format!("/api/v1/namespaces/default/deployments/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["data"].clone()
    }

    /// Events of a deployment, as "Name: message" lines.
    pub async fn events(&self, id: &str) -> Vec<String> {
        let (_, v) = self
            .call(
                "GET",
                &format!("/api/v1/namespaces/default/events?deploymentId={id}"),
                None,
            )
            .await;
        v["data"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["spec"]["name"].as_str().unwrap_or(""),
                    e["spec"]["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// Waits until the deployment's status.state is `state` (panics with its events if not).
    pub async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.deployment(id).await;
            if d["status"]["state"] == state {
                return d;
            }
            if Instant::now() > deadline {
                panic!(
                    "deployment {id} not {state} after {timeout:?}: {}\nevents:\n{}",
                    d["status"],
                    self.events(id).await.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Jobs of a deployment, oldest first.
    pub async fn jobs(&self, id: &str) -> Vec<Value> {
        let (_, v) = self
            .call(
                "GET",
                &format!("/api/v1/namespaces/default/jobs?deploymentId={id}"),
                None,
            )
            .await;
        v["data"]["items"].as_array().cloned().unwrap_or_default()
    }

    /// Savepoints of a deployment, oldest first.
    pub async fn savepoints(&self, id: &str) -> Vec<Value> {
        let (_, v) = self
            .call(
                "GET",
                &format!("/api/v1/namespaces/default/savepoints?deploymentId={id}"),
                None,
            )
            .await;
        v["data"]["items"].as_array().cloned().unwrap_or_default()
    }
}

/// Polls `f` until it returns `Some`, up to `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
