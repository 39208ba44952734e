//! SLS PutLogs: request bytes equal to the official SDK's, and the real binary shipping to a
//! strict SLS stand-in on loopback through scripted failures.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::IntoResponse,
    Router,
};
use base64::Engine;
use common::{testkit, Secret};
use hmac::{Hmac, Mac};
use log_shipper::{
    config::SignVersion,
    sinks::sls::{build_request, proto, Signer},
};
use md5::{Digest, Md5};
use prost::Message;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sls_put_logs.py");

/// Runs the official SDK on `spec`; `None` (with a SKIP line) when Python or the SDK is
/// missing on this machine (CI installs it from .ci/requirements.txt).
fn sdk(spec: &Value) -> Option<Value> {
    let child = Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIP: python3 is not installed");
        return None;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            eprintln!(
                "SKIP: the official SDK is not installed (pip install aliyun-log-python-sdk)"
            );
            return None;
        }
        panic!("SDK script failed: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn group_from(spec: &Value) -> proto::LogGroup {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    proto::LogGroup {
        logs: spec["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| proto::Log {
                time: l["time"].as_u64().unwrap() as u32,
                contents: pairs(&l["contents"])
                    .into_iter()
                    .map(|(key, value)| proto::LogContent { key, value })
                    .collect(),
                time_ns: Some(l["ns"].as_u64().unwrap() as u32),
            })
            .collect(),
        reserved: None,
        topic: Some(spec["topic"].as_str().unwrap().to_string()),
        source: Some(spec["source"].as_str().unwrap().to_string()),
        log_tags: pairs(&spec["tags"])
            .into_iter()
            .map(|(key, value)| proto::LogTag { key, value })
            .collect(),
    }
}

fn spec(version: &str, compress: bool, logs: Value) -> Value {
    json!({
        "endpoint": "cn-hangzhou.log.aliyuncs.com", "project": "my-project", "logstore": "flink-logs",
        "access_key_id": "LTAItest", "access_key_secret": "testsecret",
        "version": version, "region": "cn-hangzhou", "compress": compress,
        "topic": "ns:dep:job", "source": "10.0.0.1", "tags": [["__hostname__", "flink-jm-0"], ["__pod__", "flink-jm-0"]],
        "logs": logs, "http_date": "Mon, 01 Jan 2024 00:00:00 GMT", "v4_time": [2024, 1, 1, 0, 0, 0]
    })
}

fn ours(spec: &Value) -> log_shipper::sinks::sls::Request {
    let signer = Signer {
        access_key_id: "LTAItest".into(),
        access_key_secret: Secret::new("testsecret"),
        version: if spec["version"] == "v4" {
            SignVersion::V4
        } else {
            SignVersion::V1
        },
        region: "cn-hangzhou".into(),
    };
    let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    build_request(
        "my-project.cn-hangzhou.log.aliyuncs.com",
        "flink-logs",
        &group_from(spec),
        spec["compress"].as_bool().unwrap(),
        &signer,
        now,
    )
}

#[test]
fn put_logs_requests_equal_the_official_sdks_byte_for_byte() {
    let trace = format!(
        "Source: gen (1/1) switched from RUNNING to FAILED.\njava.lang.RuntimeException: boom\n{}",
        "\tat org.apache.flink.streaming.runtime.tasks.StreamTask.invoke(StreamTask.java:1)\n"
            .repeat(60)
    );
    let logs = json!([
        {"time": 1704067200, "ns": 123000000, "contents": [["level", "INFO"], ["logger", "org.apache.flink.runtime.jobmaster.JobMaster"], ["message", "Job started"], ["file", "jobmanager.log"]]},
        {"time": 1704067201, "ns": 1, "contents": [["level", "ERROR"], ["message", trace], ["file", "taskmanager.log"]]},
        {"time": 1704067202, "ns": 999999999, "contents": [["message", "ünïcødé 日志 ✓"], ["empty", ""]]}
    ]);
    // Over 64 KB: the reference compressor switches tables.
    let big: Vec<Value> = (0..900)
        .map(|i| json!({"time": 1704067200 + i, "ns": i * 1000 + 1, "contents": [["level", "INFO"], ["message", format!("checkpoint {i} completed in {} ms for job a0b1c2d3 with {} bytes", i * 7 % 1000, i * 13)]]}))
        .collect();
    let mut compared = 0;
    for (version, compress, logs) in [
        ("v1", true, logs.clone()),
        ("v1", false, logs.clone()),
        ("v4", true, logs.clone()),
        ("v4", false, logs),
        ("v1", true, json!(big)),
    ] {
        let s = spec(version, compress, logs);
        let Some(sdk) = sdk(&s) else { return };
        let ours = ours(&s);
        assert_eq!(
            hex::encode(&ours.body),
            sdk["body_hex"].as_str().unwrap(),
            "{version} compress={compress}: body"
        );
        assert!(sdk["url"].as_str().unwrap().ends_with(&ours.path));
        let theirs: BTreeMap<String, String> = sdk["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != "User-Agent")
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
            .collect();
        let mine: BTreeMap<String, String> = ours
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        assert_eq!(mine, theirs, "{version} compress={compress}: headers");
        compared += 1;
    }
    assert_eq!(compared, 5);
}

/// The recorded vector in ../shared (computed by the SDK); skipped when absent.
#[test]
fn matches_the_recorded_sdk_vector() {
    let Some(shared) = testkit::shared_dir("matches_the_recorded_sdk_vector") else {
        return;
    };
    let text = std::fs::read_to_string(shared.join("vectors/sls_vector.txt")).unwrap();
    let s = json!({
        "version": "v1", "compress": true, "topic": "ns:dep:job", "source": "10.0.0.1",
        "tags": [["__hostname__", "flink-jm-0"]],
        "logs": [
            {"time": 1704067200, "ns": 123000000, "contents": [["level", "INFO"], ["logger", "org.apache.flink.runtime.jobmaster.JobMaster"], ["message", "Job started"], ["file", "jobmanager.log"]]},
            {"time": 1704067201, "ns": 456000000, "contents": [["level", "ERROR"], ["logger", "org.apache.flink.runtime.taskmanager.Task"], ["message", "java.lang.RuntimeException: boom\n\tat a.B.c(B.java:1)"], ["file", "taskmanager.log"]]}
        ]
    });
    let raw = group_from(&s).encode_to_vec();
    assert!(text.contains(&hex::encode(&raw)), "protobuf bytes");
    let v1 = ours(&s);
    assert!(text.contains(&hex::encode(&v1.body)), "lz4 body");
    for (k, v) in &v1.headers {
        if k != "Host" {
            assert!(text.contains(&format!("{k}: {v}")), "header {k}: {v}");
        }
    }
    let mut s4 = s.clone();
    s4["version"] = json!("v4");
    let v4 = ours(&s4);
    let auth = &v4
        .headers
        .iter()
        .find(|(k, _)| k == "Authorization")
        .unwrap()
        .1;
    assert!(text.contains(auth.as_str()), "v4 {auth}");
}

// ---------------------------------------------------------------------------------------
// A strict SLS stand-in.

#[derive(Default)]
struct StandIn {
    /// Scripted answers for the next requests: (status, errorCode); then 200.
    script: Vec<(u16, &'static str)>,
    /// Requests that failed verification (must stay empty).
    rejected: Vec<String>,
    /// Accepted log groups.
    groups: Vec<proto::LogGroup>,
    requests: usize,
    /// Answer every valid request with 503 while set.
    down: bool,
}

type Shared = Arc<Mutex<StandIn>>;

fn verify(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Result<proto::LogGroup, String> {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(format!("missing header {k}"))
    };
    if uri.path() != "/logstores/flink-logs/shards/lb" {
        return Err(format!("path {}", uri.path()));
    }
    let host = h("host")?;
    if !host.starts_with("my-project.127.0.0.1:") {
        return Err(format!("host {host}"));
    }
    if h("x-log-apiversion")? != "0.6.0" || h("content-type")? != "application/x-protobuf" {
        return Err("api version / content type".into());
    }
    let md5 = hex::encode_upper(Md5::digest(body));
    if h("content-md5")? != md5 {
        return Err("Content-MD5".into());
    }
    // Signature v1, canonicalised from what arrived.
    let mut canon: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            (k.starts_with("x-log-") || k.starts_with("x-acs-")) && k != "x-log-date"
        })
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    canon.sort();
    let mut sts = format!("POST\n{md5}\n{}\n{}\n", h("content-type")?, h("date")?);
    for (k, v) in canon {
        sts.push_str(&format!("{k}:{v}\n"));
    }
    sts.push_str(uri.path());
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(b"standin-secret").unwrap();
    mac.update(sts.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if h("authorization")? != format!("LOG standin-id:{sig}") {
        return Err("SignatureNotMatch".into());
    }
    let raw_size: usize = h("x-log-bodyrawsize")?.parse().map_err(|_| "bodyrawsize")?;
    let raw = match headers.get("x-log-compresstype").map(|v| v.as_bytes()) {
        Some(b"lz4") => lz4_flex::block::decompress(body, raw_size).map_err(|e| e.to_string())?,
        None => body.to_vec(),
        Some(other) => return Err(format!("compress type {other:?}")),
    };
    if raw.len() != raw_size {
        return Err("bodyrawsize differs from the decompressed size".into());
    }
    proto::LogGroup::decode(raw.as_slice()).map_err(|e| e.to_string())
}

async fn put_logs(
    State(s): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut st = s.lock().unwrap();
    st.requests += 1;
    let group = match verify(&headers, &uri, &body) {
        Ok(g) => g,
        Err(e) => {
            st.rejected.push(e.clone());
            let code = if e == "SignatureNotMatch" {
                e.as_str()
            } else {
                "PostBodyInvalid"
            };
            return (
                StatusCode::BAD_REQUEST,
                [("x-log-requestid", "standin")],
                json!({"errorCode": code, "errorMessage": e}).to_string(),
            );
        }
    };
    if st.down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("x-log-requestid", "standin")],
            json!({"errorCode": "ServiceUnavailable", "errorMessage": "down"}).to_string(),
        );
    }
    if !st.script.is_empty() {
        let (status, code) = st.script.remove(0);
        return (
            StatusCode::from_u16(status).unwrap(),
            [("x-log-requestid", "standin")],
            json!({"errorCode": code, "errorMessage": "scripted"}).to_string(),
        );
    }
    st.groups.push(group);
    (
        StatusCode::OK,
        [("x-log-requestid", "standin")],
        String::new(),
    )
}

fn start_standin(script: Vec<(u16, &'static str)>) -> (Shared, u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let shared: Shared = Arc::new(Mutex::new(StandIn {
        script,
        ..Default::default()
    }));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route(
            "/logstores/{logstore}/shards/lb",
            axum::routing::post(put_logs),
        )
        .with_state(shared.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    (shared, port, rt)
}

/// The real binary shipping `glob` with config `cfg`, state under `data`.
fn shipper(cfg: &std::path::Path, glob: &str, data: &std::path::Path) -> testkit::Proc {
    testkit::Proc::start(
        BIN,
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--input",
            glob,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

fn write_config(dir: &std::path::Path, port: u16, secret: &str) -> std::path::PathBuf {
    write_config_with(dir, port, secret, "")
}

fn write_config_with(
    dir: &std::path::Path,
    port: u16,
    secret: &str,
    extra: &str,
) -> std::path::PathBuf {
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "labels: {{namespace: ns, deploymentId: dep, jobId: job, pod: flink-tm-0, source: 10.0.0.9}}\n\
             sinks:\n  sls:\n    endpoint: http://127.0.0.1:{port}\n    project: my-project\n    logstore: flink-logs\n    \
             credentials: {{access_key_id: standin-id, access_key_secret: {secret}}}\n    batch: {{max_events: 3, timeout: 200ms}}\n{extra}"
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn ships_to_a_strict_stand_in_through_5xx_and_quota_errors_without_loss() {
    let (standin, port, _rt) = start_standin(vec![
        (503, "ServiceUnavailable"),
        (403, "WriteQuotaExceed"),
        (500, "InternalServerError"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "2024-01-01 00:00:0{i},000 INFO  org.apache.flink.runtime.jobmaster.JobMaster             [] - event {i}\n"
        ));
    }
    text.push_str("2024-01-01 00:00:10,500 ERROR org.apache.flink.runtime.taskmanager.Task            [] - Task failed.\njava.lang.RuntimeException: boom\n\tat a.B.c(B.java:1)\n\t... 3 more\n");
    text.push_str("2024-01-01 00:00:11,000 INFO  x [] - after the failure\n");
    std::fs::write(logs.join("taskmanager.log"), &text).unwrap();
    let cfg = write_config(dir.path(), port, "standin-secret");
    let glob = format!("{}/*.log", logs.display());
    let p = shipper(&cfg, &glob, &dir.path().join("data"));
    testkit::wait_for(
        || {
            let st = standin.lock().unwrap();
            st.groups.iter().map(|g| g.logs.len()).sum::<usize>() >= 12
        },
        "12 events accepted by the stand-in",
    );
    std::thread::sleep(Duration::from_millis(500));
    let st = standin.lock().unwrap();
    assert!(st.rejected.is_empty(), "rejected: {:?}", st.rejected);
    let messages: Vec<String> = st
        .groups
        .iter()
        .flat_map(|g| g.logs.iter())
        .map(|l| {
            l.contents
                .iter()
                .find(|c| c.key == "message")
                .unwrap()
                .value
                .clone()
        })
        .collect();
    let mut want: Vec<String> = (0..10).map(|i| format!("event {i}")).collect();
    want.push(
        "Task failed.\njava.lang.RuntimeException: boom\n\tat a.B.c(B.java:1)\n\t... 3 more".into(),
    );
    want.push("after the failure".into());
    assert_eq!(
        messages, want,
        "every event once, in order, the stack trace as one"
    );
    let g = &st.groups[0];
    assert_eq!(g.topic.as_deref(), Some("ns:dep:job"));
    assert_eq!(g.source.as_deref(), Some("10.0.0.9"));
    assert!(g
        .log_tags
        .iter()
        .any(|t| t.key == "__pod__" && t.value == "flink-tm-0"));
    let failed = &st
        .groups
        .iter()
        .flat_map(|g| g.logs.iter())
        .nth(10)
        .unwrap();
    let field = |k: &str| {
        failed
            .contents
            .iter()
            .find(|c| c.key == k)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(field("level"), "ERROR");
    assert_eq!(field("logger"), "org.apache.flink.runtime.taskmanager.Task");
    assert_eq!(field("jobId"), "job");
    assert_eq!(failed.time, 1_704_067_210);
    assert_eq!(failed.time_ns, Some(500_000_000));
    drop(st);
    let m = p.get("/metrics").1;
    assert_eq!(
        testkit::metric(
            &m,
            "log_shipper_send_errors_total{code=\"WriteQuotaExceed\",sink=\"sls\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        testkit::metric(&m, "log_shipper_events_shipped_total{sink=\"sls\"}"),
        Some(12.0)
    );
    assert!(!m.contains("standin-secret"), "secret leaked into metrics");
}

#[test]
fn a_rejected_signature_is_not_retried_in_a_loop_and_nothing_is_dropped() {
    let (standin, port, _rt) = start_standin(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("jm.log"),
        "2024-01-01 00:00:00,000 INFO  x [] - hello\n",
    )
    .unwrap();
    let cfg = write_config(dir.path(), port, "wrong-secret");
    let glob = format!("{}/*.log", logs.display());
    let data = dir.path().join("data");
    let p = shipper(&cfg, &glob, &data);
    testkit::wait_for(|| standin.lock().unwrap().requests >= 1, "first attempt");
    std::thread::sleep(Duration::from_secs(3));
    let st = standin.lock().unwrap();
    assert_eq!(st.requests, 1, "no retry loop on SignatureNotMatch");
    assert_eq!(st.rejected, vec!["SignatureNotMatch".to_string()]);
    drop(st);
    let m = p.get("/metrics").1;
    assert_eq!(
        testkit::metric(&m, "log_shipper_buffer_events{sink=\"sls\"}"),
        Some(1.0),
        "the event waits in the outage buffer"
    );
    assert!(!m.contains("wrong-secret"));
    assert_eq!(
        std::fs::read_dir(data.join("buffer/sls")).unwrap().count(),
        1
    );
}

#[test]
fn an_outage_spills_to_disk_drops_oldest_when_full_counted_and_drains_in_order() {
    let (standin, port, _rt) = start_standin(vec![]);
    standin.lock().unwrap().down = true;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    let cfg = write_config_with(
        dir.path(),
        port,
        "standin-secret",
        "    buffer: {max_bytes: 2000, when_full: drop_oldest}\n",
    );
    let glob = format!("{}/*.log", logs.display());
    let p = shipper(&cfg, &glob, &dir.path().join("data"));
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!(
            "2024-01-01 00:00:00,{i:03} INFO  org.example.Outage [] - event {i:02} during the outage\n"
        ));
    }
    std::fs::write(logs.join("jm.log"), &text).unwrap();
    testkit::wait_for(
        || {
            p.metric("log_shipper_buffer_dropped_events_total{sink=\"sls\"}")
                .unwrap_or(0.0)
                > 0.0
        },
        "oldest batches dropped from the full buffer",
    );
    testkit::wait_for(
        || {
            let m = p.get("/metrics").1;
            testkit::metric(&m, "log_shipper_buffer_events{sink=\"sls\"}").unwrap_or(0.0)
                + testkit::metric(&m, "log_shipper_buffer_dropped_events_total{sink=\"sls\"}")
                    .unwrap_or(0.0)
                == 60.0
        },
        "every event either buffered or dropped (counted)",
    );
    let m = p.get("/metrics").1;
    let dropped =
        testkit::metric(&m, "log_shipper_buffer_dropped_events_total{sink=\"sls\"}").unwrap();
    let bytes = testkit::metric(&m, "log_shipper_buffer_bytes{sink=\"sls\"}").unwrap();
    assert!(bytes <= 2000.0, "buffer bounded: {bytes}");
    standin.lock().unwrap().down = false;
    testkit::wait_for(
        || p.metric("log_shipper_buffer_events{sink=\"sls\"}") == Some(0.0),
        "buffer drained after the outage",
    );
    let st = standin.lock().unwrap();
    let got: Vec<String> = st
        .groups
        .iter()
        .flat_map(|g| g.logs.iter())
        .map(|l| {
            l.contents
                .iter()
                .find(|c| c.key == "message")
                .unwrap()
                .value
                .clone()
        })
        .collect();
    assert_eq!(got.len() as f64, 60.0 - dropped);
    let want: Vec<String> = (60 - got.len()..60)
        .map(|i| format!("event {i:02} during the outage"))
        .collect();
    assert_eq!(got, want, "the newest events survive, in order");
}

/// A reload applies every field, secrets included, or fails naming the field: rotating the
/// AccessKey secret file and reloading ships with the new secret; a secret file that cannot
/// be read fails the reload (500, gauge 0) and the running pipeline goes on.
#[test]
fn a_reload_applies_a_rotated_secret_file_and_refuses_an_unreadable_one_by_name() {
    let (standin, port, _rt) = start_standin(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("jm.log"),
        "2024-01-01 00:00:00,000 INFO  x [] - hello\n",
    )
    .unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "wrong-secret\n").unwrap();
    let cfg = dir.path().join("config.yml");
    let write = |secret_file: &std::path::Path| {
        std::fs::write(
            &cfg,
            format!(
                "labels: {{namespace: ns, deploymentId: dep, jobId: job, pod: flink-tm-0, source: 10.0.0.9}}\n\
                 sinks:\n  sls:\n    endpoint: http://127.0.0.1:{port}\n    project: my-project\n    logstore: flink-logs\n    \
                 credentials: {{access_key_id: standin-id, access_key_secret_file: '{}'}}\n    batch: {{max_events: 3, timeout: 200ms}}\n",
                secret_file.display()
            ),
        )
        .unwrap()
    };
    write(&secret);
    let glob = format!("{}/*.log", logs.display());
    let data = dir.path().join("data");
    let p = shipper(&cfg, &glob, &data);
    testkit::wait_for(
        || standin.lock().unwrap().rejected == ["SignatureNotMatch"],
        "the wrong secret rejected",
    );

    // Rotate the secret in the file only: the config text is unchanged.
    std::fs::write(&secret, "standin-secret\n").unwrap();
    let (code, body) = testkit::http(p.addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    testkit::wait_for(
        || !standin.lock().unwrap().groups.is_empty(),
        "shipped with the rotated secret (before the 60 s retry of a rejected signature)",
    );

    // A secret file that cannot be read: refused by name, nothing changes.
    let missing = dir.path().join("no-such-secret");
    write(&missing);
    let (code, body) = testkit::http(p.addr, "POST", "/-/reload", "").unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("sinks.sls.credentials.access_key_secret_file")
            && body.contains("no-such-secret"),
        "{body}"
    );
    assert_eq!(
        p.metric("log_shipper_config_last_reload_successful"),
        Some(0.0)
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("jm.log"))
        .unwrap();
    f.write_all(b"2024-01-01 00:00:01,000 INFO  x [] - after the refused reload\n")
        .unwrap();
    testkit::wait_for(
        || {
            standin
                .lock()
                .unwrap()
                .groups
                .iter()
                .flat_map(|g| &g.logs)
                .flat_map(|l| &l.contents)
                .any(|c| c.value.contains("after the refused reload"))
        },
        "the running pipeline keeps shipping",
    );
    assert!(!p.get("/metrics").1.contains("standin-secret"));
}
