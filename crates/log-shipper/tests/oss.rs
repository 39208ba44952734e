//! OSS AppendObject: signatures equal to the official SDKs' (recorded vectors), and the real
//! binary appending to a strict OSS stand-in through 5xx, a lost answer and position
//! mismatches, ending with the object equal to the file.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use base64::Engine;
use common::{testkit, Secret};
use hmac::{Hmac, Mac};
use log_shipper::{config::SignVersion, sinks::oss::Signer};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

fn fixed_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn signer(version: SignVersion) -> Signer {
    Signer {
        access_key_id: "LTAItest".into(),
        access_key_secret: Secret::new("testsecret"),
        version,
        region: "cn-hangzhou".into(),
    }
}

fn header<'a>(req: &'a log_shipper::sinks::oss::Request, name: &str) -> &'a str {
    &req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap()
        .1
}

/// The vectors recorded with oss2 (V1) and alibabacloud-oss-v2 (V4) in ../shared.
#[test]
fn signatures_match_the_recorded_sdk_vectors() {
    let Some(shared) = testkit::shared_dir("signatures_match_the_recorded_sdk_vectors") else {
        return;
    };
    let text = std::fs::read_to_string(shared.join("vectors/oss_vector.txt")).unwrap();
    let key = "logs/ns/dep/job/jobmanager.log";
    let v1 = signer(SignVersion::V1);
    for (position, want) in [
        (0, "+QdpGydZHrwEMCWswB8OPh1JCrM="),
        (89, "/f6HRrjOatq+V8i87VSxN36IUzU="),
    ] {
        let r = v1.sign(
            "POST",
            "flink-logs",
            key,
            &[("append", None), ("position", Some(position.to_string()))],
            &[],
            fixed_time(),
        );
        let auth = header(&r, "authorization");
        assert_eq!(auth, format!("OSS LTAItest:{want}"));
        assert!(text.contains(&format!("authorization: {auth}")));
        assert_eq!(header(&r, "date"), "Mon, 01 Jan 2024 00:00:00 GMT");
        assert_eq!(
            r.path_and_query,
            format!("/{key}?append&position={position}")
        );
    }
    let put = v1.sign("PUT", "flink-logs", key, &[], &[], fixed_time());
    assert!(text.contains(&format!("authorization: {}", header(&put, "authorization"))));

    let v4 = signer(SignVersion::V4);
    let append = v4.sign(
        "POST",
        "flink-logs",
        key,
        &[("append", None), ("position", Some("0".into()))],
        &[],
        fixed_time(),
    );
    let auth = header(&append, "authorization");
    assert!(
        text.contains(&format!("Authorization: {auth}")),
        "V4 append: {auth}"
    );
    for h in ["Content-Type", "x-oss-content-sha256", "x-oss-date", "Date"] {
        assert!(
            text.contains(&format!("{h}: {}", header(&append, h))),
            "{h}"
        );
    }
    let put = v4.sign("PUT", "flink-logs", key, &[], &[], fixed_time());
    assert!(text.contains(&format!("Authorization: {}", header(&put, "authorization"))));
}

// ---------------------------------------------------------------------------------------
// A strict OSS stand-in: verifies V1 signatures from what arrives, keeps appendable objects.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Answer 503 without appending.
    Unavailable,
    /// Append, then answer 500 as if the answer was lost.
    AppendButLoseAnswer,
}

#[derive(Default)]
struct StandIn {
    objects: BTreeMap<String, Vec<u8>>,
    script: Vec<Step>,
    rejected: Vec<String>,
    conflicts: usize,
    ranged_gets: usize,
}

type Shared = Arc<Mutex<StandIn>>;

fn error(status: StatusCode, code: &str, extra: Option<(&'static str, String)>) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{code}</Code>\n  <Message>stand-in</Message>\n  <RequestId>standin</RequestId>\n</Error>\n"
    );
    let mut resp = (status, [("content-type", "application/xml")], body).into_response();
    if let Some((k, v)) = extra {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

fn verify_v1(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<String, String> {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bucket = host.split('.').next().unwrap_or("");
    if bucket != "flink-logs" {
        return Err(format!("host {host}"));
    }
    let key = percent_encoding::percent_decode_str(uri.path().trim_start_matches('/'))
        .decode_utf8()
        .map_err(|e| e.to_string())?
        .into_owned();
    let date = headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Date")?;
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut resource = format!("/{bucket}/{key}");
    if let Some(q) = uri.query() {
        let mut parts: Vec<&str> = q.split('&').collect();
        parts.sort();
        resource.push('?');
        resource.push_str(&parts.join("&"));
    }
    let sts = format!(
        "{method}\n{}\n{}\n{date}\n{resource}",
        get("content-md5"),
        get("content-type")
    );
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(b"oss-secret").unwrap();
    mac.update(sts.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if get("authorization") != format!("OSS oss-id:{sig}") {
        return Err("SignatureDoesNotMatch".into());
    }
    Ok(key)
}

async fn object(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = s.lock().unwrap();
    let key = match verify_v1(&method, &uri, &headers) {
        Ok(k) => k,
        Err(e) => {
            st.rejected.push(e.clone());
            return error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", None);
        }
    };
    if method == Method::GET {
        let Some(obj) = st.objects.get(&key).cloned() else {
            return error(StatusCode::NOT_FOUND, "NoSuchKey", None);
        };
        st.ranged_gets += 1;
        let range = headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        return match range {
            Some((a, b)) if b < obj.len() => {
                (StatusCode::PARTIAL_CONTENT, obj[a..=b].to_vec()).into_response()
            }
            _ => (StatusCode::OK, obj).into_response(),
        };
    }
    if method != Method::POST || !q.contains_key("append") {
        return error(StatusCode::BAD_REQUEST, "InvalidArgument", None);
    }
    let Some(position) = q.get("position").and_then(|p| p.parse::<usize>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "InvalidArgument", None);
    };
    let len = st.objects.get(&key).map(Vec::len).unwrap_or(0);
    if position != len {
        st.conflicts += 1;
        return error(
            StatusCode::CONFLICT,
            "PositionNotEqualToLength",
            Some(("x-oss-next-append-position", len.to_string())),
        );
    }
    let step = if st.script.is_empty() {
        None
    } else {
        Some(st.script.remove(0))
    };
    if step == Some(Step::Unavailable) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", None);
    }
    let obj = st.objects.entry(key).or_default();
    obj.extend_from_slice(&body);
    let next = obj.len();
    if step == Some(Step::AppendButLoseAnswer) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", None);
    }
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(
        "x-oss-next-append-position",
        next.to_string().parse().unwrap(),
    );
    resp
}

#[test]
fn appends_to_a_strict_stand_in_exactly_once_through_errors_and_a_lost_answer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let shared: Shared = Arc::new(Mutex::new(StandIn {
        script: vec![Step::Unavailable, Step::AppendButLoseAnswer],
        ..Default::default()
    }));
    // An object left by an earlier run (the shipper must append after it, not overwrite).
    shared.lock().unwrap().objects.insert(
        "flink/logs/ns/dep/job/tm-0/taskmanager.log".into(),
        b"earlier run\n".to_vec(),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(object).with_state(shared.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "labels: {{namespace: ns, deploymentId: dep, jobId: job, pod: tm-0}}\n\
             sinks:\n  oss:\n    endpoint: http://127.0.0.1:{port}\n    bucket: flink-logs\n    prefix: flink/\n    \
             credentials: {{access_key_id: oss-id, access_key_secret: oss-secret}}\n    batch: {{max_events: 2, timeout: 200ms}}\n"
        ),
    )
    .unwrap();
    let mut text = String::new();
    for i in 0..7 {
        text.push_str(&format!(
            "2024-01-01 00:00:0{i},000 INFO  x [] - line {i}\n"
        ));
    }
    text.push_str(
        "2024-01-01 00:00:08,000 ERROR y [] - failed\njava.lang.Error: e\n\tat a.b(C.java:1)\n",
    );
    std::fs::write(logs.join("taskmanager.log"), &text).unwrap();
    let glob = format!("{}/*.log", logs.display());
    let p = testkit::Proc::start(
        BIN,
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--input",
            &glob,
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
    );
    let key = "flink/logs/ns/dep/job/tm-0/taskmanager.log";
    let want = format!("earlier run\n{text}");
    testkit::wait_for(
        || shared.lock().unwrap().objects.get(key).map(Vec::len) >= Some(want.len()),
        "object grows to the file's length",
    );
    std::thread::sleep(Duration::from_millis(800));
    let st = shared.lock().unwrap();
    assert!(st.rejected.is_empty(), "{:?}", st.rejected);
    assert_eq!(
        String::from_utf8_lossy(&st.objects[key]),
        want,
        "every line once, after what was there"
    );
    assert!(st.conflicts >= 2, "position mismatches were exercised");
    assert!(
        st.ranged_gets >= 1,
        "the lost answer was checked with a ranged GET"
    );
    drop(st);
    let m = p.get("/metrics").1;
    assert!(!m.contains("oss-secret"));
    assert_eq!(
        testkit::metric(&m, "log_shipper_events_shipped_total{sink=\"oss\"}"),
        Some(8.0)
    );
}
