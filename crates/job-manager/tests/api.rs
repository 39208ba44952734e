//! The HTTP API: the owner/editor/viewer matrix on every route for every kind of caller,
//! the VVP envelope, JSON and YAML bodies, validation messages that name the field,
//! optimistic concurrency, defaults, clone, tokens and members.

use std::sync::Arc;

use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
use serde_json::{json, Value};

const USER_HEADER: &str = "X-Forwarded-User";

fn harness(dir: &std::path::Path) -> Harness {
    let mut c = Config::default();
    c.auth.proxy_user_header = Some(USER_HEADER.into());
    Harness::open(dir, Arc::new(FakeFlink::new()), c)
}

fn deployment(h: &Harness, name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"template": {"spec": {"artifact": {"jarUri": h.jar_uri}}}}
    })
}

async fn token(h: &Harness, ns: &str, name: &str, role: &str) -> String {
    let (s, v) = h
        .call(
            "POST",
            &format!("/apitokens/v1/namespaces/{ns}/apitokens"),
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["secret"].as_str().unwrap().to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Need {
    Viewer,
    Editor,
    Owner,
    /// Any authenticated caller.
    Any,
    /// Only the bootstrap token.
    Admin,
}

/// A caller and its role in `default` (0 none, 1 viewer, 2 editor, 3 owner).
struct Who {
    label: &'static str,
    headers: Vec<(&'static str, String)>,
    rank: u8,
    admin: bool,
}

#[tokio::test]
async fn every_route_enforces_the_role_matrix_for_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    // A second namespace whose owner must not reach `default`.
    let (s, v) = h
        .call(
            "POST",
            "/namespaces/v1/namespaces",
            Some(json!({"metadata": {"name": "team-b"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let viewer = token(&h, "default", "t-viewer", "viewer").await;
    let editor = token(&h, "default", "t-editor", "editor").await;
    let owner = token(&h, "default", "t-owner", "owner").await;
    let other = token(&h, "team-b", "t-owner", "owner").await;
    let (s, v) = h
        .call(
            "PATCH",
            "/namespaces/v1/namespaces/default",
            Some(json!({"spec": {"roleBindings": [
                {"role": "viewer", "members": ["user:alice"]},
                {"role": "editor", "members": ["user:bob"]},
                {"role": "owner", "members": ["user:carol"]}
            ]}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/namespaces/default/deployments",
            Some(deployment(&h, "subject")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let dep = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let uuid = "00000000-0000-4000-8000-000000000000";

    let bearer = |t: &str| vec![("Authorization", format!("Bearer {t}"))];
    let user = |u: &str| vec![(USER_HEADER, u.to_string())];
    let callers = vec![
        Who {
            label: "anonymous",
            headers: vec![],
            rank: 0,
            admin: false,
        },
        Who {
            label: "bad token",
            headers: bearer("jm_not_a_token"),
            rank: 0,
            admin: false,
        },
        Who {
            label: "owner of team-b",
            headers: bearer(&other),
            rank: 0,
            admin: false,
        },
        Who {
            label: "user:dave (no binding)",
            headers: user("dave"),
            rank: 0,
            admin: false,
        },
        Who {
            label: "viewer token",
            headers: bearer(&viewer),
            rank: 1,
            admin: false,
        },
        Who {
            label: "user:alice (viewer)",
            headers: user("alice"),
            rank: 1,
            admin: false,
        },
        Who {
            label: "editor token",
            headers: bearer(&editor),
            rank: 2,
            admin: false,
        },
        Who {
            label: "user:bob (editor)",
            headers: user("bob"),
            rank: 2,
            admin: false,
        },
        Who {
            label: "owner token",
            headers: bearer(&owner),
            rank: 3,
            admin: false,
        },
        Who {
            label: "user:carol (owner)",
            headers: user("carol"),
            rank: 3,
            admin: false,
        },
        Who {
            label: "bootstrap",
            headers: bearer(job_manager::testing::TOKEN),
            rank: 3,
            admin: true,
        },
    ];
    let ns = "/api/v1/namespaces/default";
    let art = "/artifacts/v1/namespaces/default";
    let routes: Vec<(&str, String, Option<Value>, Need)> = vec![
        ("GET", format!("{ns}/deployments"), None, Need::Viewer),
        (
            "GET",
            format!("{ns}/deployments?labelSelector=team%3Da"),
            None,
            Need::Viewer,
        ),
        ("GET", format!("{ns}/deployments/{dep}"), None, Need::Viewer),
        ("GET", format!("{ns}/jobs"), None, Need::Viewer),
        ("GET", format!("{ns}/jobs/{uuid}"), None, Need::Viewer),
        ("GET", format!("{ns}/savepoints"), None, Need::Viewer),
        ("GET", format!("{ns}/savepoints/{uuid}"), None, Need::Viewer),
        (
            "GET",
            format!("{ns}/events?deploymentId={dep}"),
            None,
            Need::Viewer,
        ),
        (
            "GET",
            format!("{ns}/deployment-targets"),
            None,
            Need::Viewer,
        ),
        (
            "GET",
            format!("{ns}/deployment-targets/local"),
            None,
            Need::Viewer,
        ),
        (
            "GET",
            format!("{ns}/deployment-defaults"),
            None,
            Need::Viewer,
        ),
        ("GET", format!("{art}/artifacts:list"), None, Need::Viewer),
        (
            "GET",
            format!("{art}/artifacts:getMetadata?filename=x.jar"),
            None,
            Need::Viewer,
        ),
        (
            "GET",
            format!("{art}/artifacts:download?filename=x.jar"),
            None,
            Need::Viewer,
        ),
        (
            "GET",
            "/namespaces/v1/namespaces/default".into(),
            None,
            Need::Viewer,
        ),
        ("GET", "/namespaces/v1/namespaces".into(), None, Need::Any),
        (
            "POST",
            format!("{ns}/deployments"),
            Some(deployment(&h, "made-by-matrix")),
            Need::Editor,
        ),
        (
            "PATCH",
            format!("{ns}/deployments/{dep}"),
            Some(json!({"metadata": {"annotations": {"a": "b"}}})),
            Need::Editor,
        ),
        (
            "POST",
            format!("{ns}/deployments/{dep}/clone"),
            None,
            Need::Editor,
        ),
        (
            "POST",
            format!("{ns}/savepoints"),
            Some(json!({"metadata": {"deploymentId": dep}})),
            Need::Editor,
        ),
        (
            "DELETE",
            format!("{ns}/savepoints/{uuid}"),
            None,
            Need::Editor,
        ),
        (
            "POST",
            format!("{ns}/deployment-targets"),
            Some(
                json!({"metadata": {"name": "sess"}, "spec": {"type": "session", "restUrl": "http://127.0.0.1:1"}}),
            ),
            Need::Owner,
        ),
        (
            "DELETE",
            format!("{ns}/deployment-targets/missing"),
            None,
            Need::Owner,
        ),
        (
            "PUT",
            format!("{ns}/deployment-defaults"),
            Some(json!({"spec": {}})),
            Need::Editor,
        ),
        (
            "PATCH",
            format!("{ns}/deployment-defaults"),
            Some(json!({"spec": {}})),
            Need::Editor,
        ),
        (
            "POST",
            format!("{art}/artifacts:upload"),
            Some(json!({})),
            Need::Editor,
        ),
        (
            "DELETE",
            format!("{art}/artifacts:delete?filename=x.jar"),
            None,
            Need::Editor,
        ),
        (
            "DELETE",
            format!("{ns}/deployments/{uuid}"),
            None,
            Need::Editor,
        ),
        (
            "GET",
            "/apitokens/v1/namespaces/default/apitokens".into(),
            None,
            Need::Owner,
        ),
        (
            "GET",
            "/apitokens/v1/namespaces/default/apitokens/t-viewer".into(),
            None,
            Need::Owner,
        ),
        (
            "POST",
            "/apitokens/v1/namespaces/default/apitokens".into(),
            Some(json!({"name": "matrix", "role": "viewer"})),
            Need::Owner,
        ),
        (
            "DELETE",
            "/apitokens/v1/namespaces/default/apitokens/missing".into(),
            None,
            Need::Owner,
        ),
        (
            "PATCH",
            "/namespaces/v1/namespaces/default".into(),
            Some(json!({})),
            Need::Owner,
        ),
        (
            "POST",
            "/namespaces/v1/namespaces".into(),
            Some(json!({"metadata": {"name": "made-by-matrix"}})),
            Need::Admin,
        ),
        (
            "DELETE",
            "/namespaces/v1/namespaces/missing".into(),
            None,
            Need::Admin,
        ),
    ];
    let mut checked = 0;
    for (method, path, body, need) in &routes {
        for who in &callers {
            let headers: Vec<(&str, &str)> =
                who.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, env) = h.request(method, path, &headers, body.clone()).await;
            let authenticated = who.rank > 0
                || who.label == "owner of team-b"
                || who.label.starts_with("user:dave");
            let allowed = match need {
                Need::Any => authenticated,
                Need::Admin => who.admin,
                Need::Viewer => who.rank >= 1,
                Need::Editor => who.rank >= 2,
                Need::Owner => who.rank >= 3,
            };
            let ctx = format!("{method} {path} as {}: {status} {env}", who.label);
            if !authenticated {
                assert_eq!(status, 401, "{ctx}");
            } else if allowed {
                assert!(status != 401 && status != 403, "{ctx}");
            } else {
                assert_eq!(status, 403, "{ctx}");
                assert!(
                    env["message"].as_str().unwrap_or("").contains("default")
                        || *need == Need::Admin,
                    "{ctx}"
                );
            }
            // Every answer is the envelope.
            assert_eq!(env["httpCode"], status, "{ctx}");
            assert_eq!(env["success"], status < 400, "{ctx}");
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * callers.len());
}

#[tokio::test]
async fn validation_errors_name_the_field_and_good_state_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let ns = "/api/v1/namespaces/default/deployments";
    let mut bad = deployment(&h, "bad");
    bad["spec"]["template"]["spec"]["parallelism"] = json!(0);
    let (s, v) = h.call("POST", ns, Some(bad)).await;
    assert_eq!(s, 400);
    assert_eq!(
        v["message"],
        "spec.template.spec.parallelism must be ≥ 1 (got 0)"
    );
    assert_eq!(v["success"], false);
    assert_eq!(v["reason"], "ValidationFailed");

    let mut bad = deployment(&h, "bad");
    bad["spec"]["template"]["spec"]["parallelism"] = json!("two");
    let (s, v) = h.call("POST", ns, Some(bad)).await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.template.spec.parallelism: invalid type"),
        "{v}"
    );

    let mut bad = deployment(&h, "bad");
    bad["spec"]["template"]["spec"]["paralelism"] = json!(2);
    let (s, v) = h.call("POST", ns, Some(bad)).await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("spec.template.spec")
            && v["message"].as_str().unwrap().contains("paralelism"),
        "{v}"
    );

    for (field, value, needle) in [
        ("state", json!("PAUSED"), "spec.state"),
        (
            "deploymentTargetName",
            json!("nowhere"),
            "spec.deploymentTargetName",
        ),
        (
            "savepointSchedule",
            json!({"cron": "every minute"}),
            "spec.savepointSchedule.cron",
        ),
        (
            "maxJobCreationAttempts",
            json!(0),
            "spec.maxJobCreationAttempts",
        ),
    ] {
        let mut bad = deployment(&h, "bad");
        bad["spec"][field] = value;
        let (s, v) = h.call("POST", ns, Some(bad)).await;
        assert_eq!(s, 400, "{field}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{field}: {v}"
        );
    }
    let mut bad = deployment(&h, "bad");
    bad["spec"]["template"]["spec"]["flinkConfiguration"] = json!({"k": "{{ jobid }}"});
    let (s, v) = h.call("POST", ns, Some(bad)).await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("flinkConfiguration[\"k\"]"),
        "{v}"
    );
    let (s, v) = h.call("POST", ns, Some(json!({"metadata": {"name": "x"}, "spec": {"template": {"spec": {"artifact": {"jarUri": "ftp://x/y.jar"}}}}}))).await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("spec.template.spec.artifact.jarUri"),
        "{v}"
    );

    // A good one, then a bad PATCH leaves it as it was.
    let (s, v) = h.call("POST", ns, Some(deployment(&h, "good"))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{ns}/{id}"),
            Some(json!({"spec": {"template": {"spec": {"parallelism": -1}}}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = h.call("GET", &format!("{ns}/{id}"), None).await;
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 1);
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1);
    // Names are unique per namespace.
    let (s, v) = h.call("POST", ns, Some(deployment(&h, "good"))).await;
    assert_eq!(s, 409, "{v}");
}

#[tokio::test]
async fn yaml_bodies_resource_versions_defaults_clone_and_label_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let ns = "/api/v1/namespaces/default";
    // Namespace defaults are merged under what the user sends.
    let (s, v) = h
        .call("PATCH", &format!("{ns}/deployment-defaults"), Some(json!({"spec": {"template": {"spec": {"parallelism": 3, "flinkConfiguration": {"execution.checkpointing.interval": "5s", "k": "{{ deploymentName }}"}}}}})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 3);
    let yaml = format!(
        "metadata:\n  name: from-yaml\n  labels:\n    team: b\nspec:\n  template:\n    spec:\n      artifact:\n        jarUri: {}\n      flinkConfiguration:\n        k: mine\n",
        h.jar_uri
    );
    let (s, v) = h
        .request(
            "POST",
            &format!("{ns}/deployments"),
            &[
                (
                    "Authorization",
                    &format!("Bearer {}", job_manager::testing::TOKEN),
                ),
                ("Content-Type", "application/yaml"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 400, "empty body refused: {v}");
    let resp = {
        use tower::ServiceExt;
        h.router
            .clone()
            .oneshot(
                axum::http::Request::builder()
                    .method("POST")
                    .uri(format!("{ns}/deployments"))
                    .header(
                        "Authorization",
                        format!("Bearer {}", job_manager::testing::TOKEN),
                    )
                    .header("Content-Type", "application/yaml")
                    .body(axum::body::Body::from(yaml))
                    .unwrap(),
            )
            .await
            .unwrap()
    };
    assert_eq!(resp.status(), 201);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let d = &v["data"];
    assert_eq!(
        d["spec"]["template"]["spec"]["parallelism"], 3,
        "default applied"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["flinkConfiguration"]["k"], "mine",
        "user wins"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["flinkConfiguration"]["execution.checkpointing.interval"],
        "5s"
    );
    let id = d["metadata"]["id"].as_str().unwrap().to_string();

    // Optimistic concurrency.
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{ns}/deployments/{id}"),
            Some(json!({"metadata": {"resourceVersion": 1, "labels": {"team": "c"}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{ns}/deployments/{id}"),
            Some(json!({"metadata": {"resourceVersion": 1, "labels": {"team": "d"}}})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("resourceVersion 1 is stale"),
        "{v}"
    );

    // Label selectors.
    h.call(
        "POST",
        &format!("{ns}/deployments"),
        Some(deployment(&h, "other")),
    )
    .await;
    let (_, v) = h
        .call(
            "GET",
            &format!("{ns}/deployments?labelSelector=team%3Dc"),
            None,
        )
        .await;
    let names: Vec<_> = v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("from-yaml")]);

    // Clone: "Fork of", CANCELLED, new id, same spec.
    let (s, v) = h
        .call("POST", &format!("{ns}/deployments/{id}/clone"), None)
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["metadata"]["name"], "Fork of from-yaml");
    assert_eq!(v["data"]["spec"]["state"], "CANCELLED");
    assert_ne!(v["data"]["metadata"]["id"], id.as_str());
    assert_eq!(v["data"]["spec"]["template"], d["spec"]["template"]);
    let (_, v) = h
        .call("POST", &format!("{ns}/deployments/{id}/clone"), None)
        .await;
    assert_eq!(v["data"]["metadata"]["name"], "Fork of from-yaml (2)");

    // A savepoint needs a running job.
    let (s, v) = h
        .call(
            "POST",
            &format!("{ns}/savepoints"),
            Some(json!({"metadata": {"deploymentId": id}})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = h
        .call(
            "POST",
            &format!("{ns}/savepoints"),
            Some(json!({"metadata": {}})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("metadata.deploymentId"));
}

#[tokio::test]
async fn suspend_on_a_session_target_without_a_savepoint_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let ns = "/api/v1/namespaces/default";
    let (s, v) = h.call("POST", &format!("{ns}/deployment-targets"), Some(json!({"metadata": {"name": "sess"}, "spec": {"type": "session", "restUrl": "http://127.0.0.1:1"}}))).await;
    assert_eq!(s, 201, "{v}");
    let mut d = deployment(&h, "s");
    d["spec"]["deploymentTargetName"] = json!("sess");
    d["spec"]["state"] = json!("SUSPENDED");
    let (s, v) = h
        .call("POST", &format!("{ns}/deployments"), Some(d.clone()))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("execution.checkpointing.savepoint-dir"),
        "{v}"
    );
    d["spec"]["template"]["spec"]["flinkConfiguration"] =
        json!({"execution.checkpointing.savepoint-dir": "file:///sp/{{ deploymentId }}"});
    let (s, v) = h.call("POST", &format!("{ns}/deployments"), Some(d)).await;
    assert_eq!(s, 201, "{v}");
    // A target in use cannot be deleted.
    let (s, _) = h
        .call("DELETE", &format!("{ns}/deployment-targets/sess"), None)
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn tokens_show_their_secret_once_and_store_only_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let secret = token(&h, "default", "ci", "editor").await;
    assert!(secret.starts_with("jm_") && secret.len() > 32);
    let (_, v) = h
        .call("GET", "/apitokens/v1/namespaces/default/apitokens", None)
        .await;
    let text = v.to_string();
    assert!(!text.contains(&secret), "{text}");
    assert!(text.contains("\"ci\"") && text.contains("editor"));
    // Not on disk either.
    let mut found = false;
    for e in walk(dir.path()) {
        if std::fs::read(&e)
            .map(|b| String::from_utf8_lossy(&b).contains(&secret))
            .unwrap_or(false)
        {
            found = true;
        }
    }
    assert!(!found, "the secret is stored only hashed");
    // It works, and stops working once deleted.
    let (s, _) = h
        .call_as(
            Some(&secret),
            "GET",
            "/api/v1/namespaces/default/deployments",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h
        .call(
            "POST",
            "/apitokens/v1/namespaces/default/apitokens",
            Some(json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, v) = h
        .call(
            "POST",
            "/apitokens/v1/namespaces/default/apitokens",
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("role:"), "{v}");
    let (s, _) = h
        .call(
            "DELETE",
            "/apitokens/v1/namespaces/default/apitokens/ci",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h
        .call_as(
            Some(&secret),
            "GET",
            "/api/v1/namespaces/default/deployments",
            None,
        )
        .await;
    assert_eq!(s, 401);
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

#[tokio::test]
async fn members_must_be_written_user_colon_uid() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    for bad in ["user: alice", "alice", "group:ops", "user:"] {
        let (s, v) = h
            .call(
                "PATCH",
                "/namespaces/v1/namespaces/default",
                Some(json!({"spec": {"roleBindings": [{"role": "editor", "members": [bad]}]}})),
            )
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("spec.roleBindings[0].members[0]"),
            "{v}"
        );
    }
    let (_, v) = h
        .call("GET", "/namespaces/v1/namespaces/default", None)
        .await;
    assert_eq!(
        v["data"]["spec"]["roleBindings"],
        json!([]),
        "bad input did not change the namespace"
    );
}

#[tokio::test]
async fn default_namespace_and_local_target_exist_from_the_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let (s, v) = h
        .call("GET", "/api/v1/namespaces/default/deployment-targets", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["items"][0]["metadata"]["name"], "local");
    assert_eq!(v["data"]["items"][0]["spec"]["type"], "local");
    let (s, v) = h
        .call("GET", "/api/v1/namespaces/nope/deployments", None)
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn answers_in_yaml_when_asked() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let resp = h
        .router
        .clone()
        .oneshot(
            axum::http::Request::builder()
                .uri("/api/v1/namespaces/default/deployment-targets")
                .header(
                    "Authorization",
                    format!("Bearer {}", job_manager::testing::TOKEN),
                )
                .header("Accept", "application/yaml")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_yaml::from_slice(&body).unwrap();
    assert_eq!(v["data"]["items"][0]["metadata"]["name"], "local");
    assert!(String::from_utf8_lossy(&body).contains("success: true"));
}
