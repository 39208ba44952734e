//! The real binary: the bootstrap token from the environment, the default namespace and
//! `local` target at first start, artifact upload/download and the 50 MB limit, state kept
//! across a restart.

mod support;

use std::time::Duration;

use common::testkit::Proc;
use serde_json::Value;

const ENV_TOKEN: &str = "env-bootstrap-token-42";

async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut r = client.get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bootstrap_token_from_env_artifacts_and_upload_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Only this test binary's process sees the variable (one test per binary).
    std::env::set_var("JOB_MANAGER_BOOTSTRAP_TOKEN", ENV_TOKEN);
    let p = Proc::start(support::BIN, &["--data-dir", data.to_str().unwrap()]);
    let base = format!("http://{}", p.addr);
    let http = reqwest::Client::new();

    let (s, v) = get(&http, &base, "/api/v1/namespaces/default/deployments", None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["success"], false);
    let (s, v) = get(
        &http,
        &base,
        "/api/v1/namespaces/default/deployment-targets",
        Some(ENV_TOKEN),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["items"][0]["metadata"]["name"], "local");

    // Upload, metadata, download: the bytes come back and the uri points at them.
    let jar: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let upload = |name: &str, bytes: Vec<u8>| {
        let boundary = "b0undary";
        let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        http.post(format!(
            "{base}/artifacts/v1/namespaces/default/artifacts:upload"
        ))
        .bearer_auth(ENV_TOKEN)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
    };
    let resp = upload("job-1.0.jar", jar.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let v: Value = resp.json().await.unwrap();
    let uri = v["data"]["uri"].as_str().unwrap();
    assert_eq!(
        std::fs::read(uri.strip_prefix("file://").unwrap()).unwrap(),
        jar
    );
    assert_eq!(v["data"]["size"], 200_000);
    let (s, v) = get(
        &http,
        &base,
        "/artifacts/v1/namespaces/default/artifacts:list",
        Some(ENV_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["items"][0]["filename"], "job-1.0.jar");
    let bytes = http
        .get(format!(
            "{base}/artifacts/v1/namespaces/default/artifacts:download?filename=job-1.0.jar"
        ))
        .bearer_auth(ENV_TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), jar.as_slice());

    // Just over 50 MB: 413 naming the limit; nothing stored.
    let big = vec![7u8; 50 * 1024 * 1024 + 1];
    let resp = upload("big.jar", big).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("50 MB"), "{v}");
    let (_, v) = get(
        &http,
        &base,
        "/artifacts/v1/namespaces/default/artifacts:list",
        Some(ENV_TOKEN),
    )
    .await;
    assert_eq!(v["data"]["items"].as_array().unwrap().len(), 1);

    // Restart on the same data dir: the artifact and the namespace are still there.
    drop(p);
    let p = Proc::start(support::BIN, &["--data-dir", data.to_str().unwrap()]);
    let base = format!("http://{}", p.addr);
    let (s, v) = get(
        &http,
        &base,
        "/artifacts/v1/namespaces/default/artifacts:getMetadata?filename=job-1.0.jar",
        Some(ENV_TOKEN),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (s, _) = get(
        &http,
        &base,
        "/namespaces/v1/namespaces/default",
        Some("wrong"),
    )
    .await;
    assert_eq!(s, 401);
}
