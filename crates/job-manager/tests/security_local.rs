//! Attacks on the API and the `local` target (issue 10, items 4, 5 and 8), each performed
//! and refused: a 4xx in the envelope naming what is refused, nothing stored, the process
//! still answering.
//!
//! - Flink processes of the `local` target do not inherit the manager's environment, and
//!   user `envVars` that change the loader, the shell, the JVM or Flink's own variables are
//!   refused; configuration keys cannot inject lines into `config.yaml`.
//! - YAML alias bombs: refused before parsing for a caller who may not write (403), refused
//!   quickly while parsing for one who may (400); bodies are capped (413).
//! - Template bombs in `flinkConfiguration` are refused in milliseconds (400), and a
//!   deployment stored earlier with one fails at start with an event.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use job_manager::{
    flink::fake::FakeFlink,
    store::Write1,
    testing::{Harness, TOKEN},
    Config,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const NS: &str = "/api/v1/namespaces/default";

fn harness(dir: &std::path::Path) -> Harness {
    Harness::open(dir, Arc::new(FakeFlink::new()), Config::default())
}

async fn token(h: &Harness, role: &str) -> String {
    let (s, v) = h
        .call(
            "POST",
            "/apitokens/v1/namespaces/default/apitokens",
            Some(json!({"name": format!("t-{role}"), "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["secret"].as_str().unwrap().to_string()
}

/// A request with a raw body. Status and envelope.
async fn raw(
    h: &Harness,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

/// The refusal is in the envelope.
fn assert_refused(status: u16, v: &Value, want: u16, names: &[&str]) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["httpCode"], want, "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    for n in names {
        assert!(msg.contains(n), "the message names {n:?}: {msg}");
    }
}

/// About 100 KB of YAML that expands to 10^(levels+1) numbers: each level is a list of 100
/// aliases to the level below.
fn billion_laughs() -> Vec<u8> {
    let mut y = String::from("metadata:\n  name: lol\nl0: &l0 [");
    y.push_str(&vec!["1"; 100].join(","));
    y.push_str("]\n");
    for i in 1..9 {
        y.push_str(&format!("l{i}: &l{i} ["));
        y.push_str(&vec![format!("*l{}", i - 1); 100].join(","));
        y.push_str("]\n");
    }
    // Widen until it is about 100 KB.
    let mut i = 0;
    while y.len() < 100_000 {
        y.push_str(&format!(
            "w{i}: [*l8,*l8,*l8,*l8,*l8,*l8,*l8,*l8,*l8,*l8]\n"
        ));
        i += 1;
    }
    y.into_bytes()
}

fn deployment_count(h: &Harness) -> usize {
    h.state.store.read().deployments.len()
}

#[tokio::test]
async fn alias_bomb_from_a_viewer_is_refused_before_parsing_and_from_an_editor_while_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let viewer = token(&h, "viewer").await;
    let editor = token(&h, "editor").await;
    let bomb = billion_laughs();
    assert!(bomb.len() >= 100_000 && bomb.len() < 110_000);

    let started = Instant::now();
    let (s, v) = raw(
        &h,
        "POST",
        &format!("{NS}/deployments"),
        &viewer,
        "application/yaml",
        bomb.clone(),
    )
    .await;
    // 403, not 400: the body was not parsed for a caller who may not write.
    assert_refused(s, &v, 403, &["editor"]);
    let (s, v) = raw(
        &h,
        "PATCH",
        &format!("{NS}/deployment-defaults"),
        &viewer,
        "application/yaml",
        bomb.clone(),
    )
    .await;
    assert_refused(s, &v, 403, &["editor"]);

    let (s, v) = raw(
        &h,
        "POST",
        &format!("{NS}/deployments"),
        &editor,
        "application/yaml",
        bomb.clone(),
    )
    .await;
    assert_refused(s, &v, 400, &["anchors and aliases"]);
    let (s, v) = raw(
        &h,
        "PUT",
        &format!("{NS}/deployment-defaults"),
        &editor,
        "application/yaml",
        bomb,
    )
    .await;
    assert_refused(s, &v, 400, &["anchors and aliases"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "refusals took {took:?}");
    assert_eq!(deployment_count(&h), 0);
    assert!(!h.state.store.read().defaults.contains_key("default"));

    // A plain YAML body of the same editor still works.
    let yaml = format!(
        "metadata:\n  name: fine\nspec:\n  template:\n    spec:\n      artifact:\n        jarUri: {}\n",
        h.jar_uri
    );
    let (s, v) = raw(
        &h,
        "POST",
        &format!("{NS}/deployments"),
        &editor,
        "application/yaml",
        yaml.into_bytes(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn bodies_beyond_the_limit_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let big = format!(
        "{{\"metadata\": {{\"name\": \"big\", \"labels\": {{\"x\": \"{}\"}}}}}}",
        "a".repeat(1024 * 1024 + 1)
    );
    let (s, v) = raw(
        &h,
        "POST",
        &format!("{NS}/deployments"),
        TOKEN,
        "application/json",
        big.into_bytes(),
    )
    .await;
    assert_refused(s, &v, 413, &["1048576 bytes", "api.max_body_bytes"]);
    assert_eq!(v["reason"], "PayloadTooLarge");
    assert_eq!(deployment_count(&h), 0);
}

#[tokio::test]
async fn dangerous_env_vars_and_config_keys_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    for name in [
        "LD_PRELOAD",
        "BASH_ENV",
        "ENV",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "FLINK_CONF_DIR",
        "PATH",
    ] {
        let body = json!({
            "metadata": {"name": "env"},
            "spec": {"template": {"spec": {
                "artifact": {"jarUri": h.jar_uri},
                "kubernetes": {"pods": {"envVars": [
                    {"name": "TEAM", "value": "payments"},
                    {"name": name, "value": "/tmp/evil"}
                ]}}
            }}}
        });
        let (s, v) = h
            .call("POST", &format!("{NS}/deployments"), Some(body))
            .await;
        assert_refused(
            s,
            &v,
            400,
            &["spec.template.spec.kubernetes.pods.envVars[1].name", name],
        );
    }
    // A key with a newline would have written a second key into config.yaml.
    let body = json!({
        "metadata": {"name": "keys"},
        "spec": {"template": {"spec": {
            "artifact": {"jarUri": h.jar_uri},
            "flinkConfiguration": {"pipeline.name\nrest.bind-address": "0.0.0.0"}
        }}}
    });
    let (s, v) = h
        .call("POST", &format!("{NS}/deployments"), Some(body))
        .await;
    assert_refused(
        s,
        &v,
        400,
        &[
            "flinkConfiguration key",
            "pipeline.name\\nrest.bind-address",
        ],
    );
    assert_eq!(deployment_count(&h), 0);

    // A good deployment cannot be patched into one either; it stays as it was.
    let good = json!({
        "metadata": {"name": "good"},
        "spec": {"template": {"spec": {"artifact": {"jarUri": h.jar_uri}}}}
    });
    let (s, v) = h
        .call("POST", &format!("{NS}/deployments"), Some(good))
        .await;
    assert_eq!(s, 201, "{v}");
    let patch = json!({"spec": {"template": {"spec": {"kubernetes": {"pods": {"envVars": [{"name": "LD_PRELOAD", "value": "x"}]}}}}}});
    let (s, v) = h
        .call("PATCH", &format!("{NS}/deployments/good"), Some(patch))
        .await;
    assert_refused(s, &v, 400, &["LD_PRELOAD", "local target"]);
    let (_, v) = h.call("GET", &format!("{NS}/deployments/good"), None).await;
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1, "{v}");
    assert!(v["data"]["spec"]["template"]["spec"]["kubernetes"].is_null());
}

#[tokio::test]
async fn template_bombs_are_refused_quickly_without_stalling_other_writes() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let (s, v) = h
        .call(
            "POST",
            "/namespaces/v1/namespaces",
            Some(json!({"metadata": {"name": "other"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let bomb = "{% for i in range(12000) %}{% for j in range(12000) %}x{% endfor %}{% endfor %}";
    let body = json!({
        "metadata": {"name": "bomb"},
        "spec": {"template": {"spec": {
            "artifact": {"jarUri": h.jar_uri},
            "flinkConfiguration": {"pipeline.name": bomb}
        }}}
    });
    let started = Instant::now();
    let path = format!("{NS}/deployments");
    let create = h.call("POST", &path, Some(body));
    // Another namespace's write at the same time.
    let other = async {
        let t = Instant::now();
        let r = h
            .call(
                "PATCH",
                "/api/v1/namespaces/other/deployment-defaults",
                Some(json!({"spec": {"template": {"spec": {"parallelism": 2}}}})),
            )
            .await;
        (r, t.elapsed())
    };
    let ((s, v), ((so, vo), other_took)) = tokio::join!(create, other);
    let took = started.elapsed();
    assert_refused(
        s,
        &v,
        400,
        &[
            "spec.template.spec.flinkConfiguration[\"pipeline.name\"]",
            "template steps",
        ],
    );
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    assert_eq!(so, 200, "{vo}");
    assert!(other_took < Duration::from_secs(2), "{other_took:?}");
    assert_eq!(deployment_count(&h), 0);

    // Output size is bounded too.
    let body = json!({
        "metadata": {"name": "big-output"},
        "spec": {"template": {"spec": {
            "artifact": {"jarUri": h.jar_uri, "mainArgs": "{{ 'x' * 5000000 }}"}
        }}}
    });
    let (s, v) = h
        .call("POST", &format!("{NS}/deployments"), Some(body))
        .await;
    assert_refused(s, &v, 400, &["mainArgs", "renders to more than"]);
}

#[tokio::test]
async fn stored_deployments_with_refused_settings_fail_at_start_with_an_event() {
    // Deployments stored before validation existed: the local target refuses them at start.
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let (s, v) = h
        .call(
            "POST",
            &format!("{NS}/deployments"),
            Some(json!({
                "metadata": {"name": "old"},
                "spec": {"template": {"spec": {"artifact": {"jarUri": h.jar_uri}}}}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id: uuid::Uuid = v["data"]["metadata"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut rec = h.state.store.read().deployments[&id].clone();
    rec.deployment.spec.state = job_manager::model::DesiredState::Running;
    rec.deployment.spec.max_job_creation_attempts = 1;
    rec.deployment.spec.template.spec.kubernetes = Some(
        serde_json::from_value(
            json!({"pods": {"envVars": [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}]}}),
        )
        .unwrap(),
    );
    h.state.store.write(vec![Write1::Deployment(rec)]).unwrap();
    h.settle(20).await;
    let (_, v) = h.call("GET", &format!("{NS}/deployments/old"), None).await;
    assert_eq!(v["data"]["status"]["state"], "FAILED", "{v}");
    let (_, ev) = h
        .call("GET", &format!("{NS}/events?deploymentId={id}"), None)
        .await;
    let text = ev.to_string();
    assert!(
        text.contains("LD_PRELOAD is not allowed on the local target"),
        "{text}"
    );

    // The same for a template bomb stored earlier: an event and FAILED, within the bound.
    let mut rec = h.state.store.read().deployments[&id].clone();
    rec.deployment.spec.template.spec.kubernetes = None;
    rec.deployment
        .spec
        .template
        .spec
        .flink_configuration
        .insert(
            "pipeline.name".into(),
            "{% for i in range(12000) %}{% for j in range(12000) %}x{% endfor %}{% endfor %}"
                .into(),
        );
    rec.deployment.metadata.resource_version += 1;
    h.state.store.write(vec![Write1::Deployment(rec)]).unwrap();
    let started = Instant::now();
    h.settle(20).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, ev) = h
        .call("GET", &format!("{NS}/events?deploymentId={id}"), None)
        .await;
    let text = ev.to_string();
    assert!(text.contains("template steps"), "{text}");
}

// ---- Against the real binary -----------------------------------------------------------

/// A FLINK_HOME whose start scripts record their environment and exit.
fn fake_flink_home(dir: &std::path::Path) -> std::path::PathBuf {
    let home = dir.join("flink");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    std::fs::create_dir_all(home.join("conf")).unwrap();
    for s in ["jobmanager.sh", "taskmanager.sh"] {
        std::fs::write(
            home.join("bin").join(s),
            format!("env > \"$FLINK_LOG_DIR/env-{s}.tmp\" && mv \"$FLINK_LOG_DIR/env-{s}.tmp\" \"$FLINK_LOG_DIR/env-{s}\"\n"),
        )
        .unwrap();
    }
    home
}

#[tokio::test]
async fn local_flink_processes_do_not_see_the_managers_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let home = fake_flink_home(dir.path());
    let data = dir.path().join("data");
    let m = support::Manager::start_with_env(
        &data,
        &["--flink-home", home.to_str().unwrap()],
        &[
            (
                "JOB_MANAGER_BOOTSTRAP_TOKEN",
                "env-bootstrap-token-must-not-leak",
            ),
            ("DINGTALK_SECRET", "SEC-must-not-leak"),
            ("AWS_SECRET_ACCESS_KEY", "aws-must-not-leak"),
        ],
    );
    let (s, v) = m.upload("default", "job.jar", b"PK\x03\x04 fake").await;
    assert_eq!(s, 201, "{v}");
    let jar = v["data"]["uri"].as_str().unwrap().to_string();
    let (s, v) = m
        .call(
            "POST",
            &format!("{NS}/deployments"),
            Some(json!({
                "metadata": {"name": "env-check"},
                "spec": {"state": "RUNNING", "template": {"spec": {
                    "artifact": {"jarUri": jar},
                    "kubernetes": {"pods": {"envVars": [{"name": "TEAM", "value": "payments"}]}}
                }}}
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let logs = data.join("logs/default");
    let env = support::eventually(
        "the fake Flink's environment",
        Duration::from_secs(20),
        || {
            let logs = logs.clone();
            async move {
                walk(&logs)
                    .into_iter()
                    .find(|p| p.ends_with("env-jobmanager.sh"))
                    .and_then(|p| std::fs::read_to_string(p).ok())
            }
        },
    )
    .await;
    for secret in [
        "env-bootstrap-token-must-not-leak",
        "SEC-must-not-leak",
        "aws-must-not-leak",
        "JOB_MANAGER_BOOTSTRAP_TOKEN",
    ] {
        assert!(!env.contains(secret), "{secret} leaked to Flink:\n{env}");
    }
    assert!(env.contains("TEAM=payments"), "{env}");
    assert!(env.contains("FLINK_CONF_DIR="), "{env}");
    // The manager is still serving.
    let (s, _) = m.call("GET", &format!("{NS}/deployments"), None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn the_binary_survives_an_alias_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let m = support::Manager::start(&dir.path().join("data"), &[]);
    let (s, v) = m
        .call(
            "POST",
            "/apitokens/v1/namespaces/default/apitokens",
            Some(json!({"name": "ed", "role": "editor"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let editor = v["data"]["secret"].as_str().unwrap().to_string();
    let started = Instant::now();
    let resp = m
        .http
        .post(format!("{}{NS}/deployments", m.base))
        .bearer_auth(&editor)
        .header("Content-Type", "application/yaml")
        .body(billion_laughs())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("anchors and aliases"),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let (s, v) = m.call("GET", &format!("{NS}/deployments"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["items"].as_array().map(Vec::len), Some(0));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
