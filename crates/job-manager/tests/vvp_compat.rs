//! Ververica Platform clients against job-manager: request bodies as VVP documents them
//! (API tokens with fully qualified names, Deployments and DeploymentTargets with every VVP
//! 2.x field, `PUT` upserts, logging profiles), and what job-manager answers: VVP's shapes
//! inside the envelope, and settings that have no effect on the chosen target reported,
//! never dropped silently.

use std::sync::Arc;

use axum::{body::Body, http::Request};
use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKENS: &str = "/apitokens/v1/namespaces/default/apitokens";
const API: &str = "/api/v1/namespaces/default";

fn harness(dir: &std::path::Path) -> Harness {
    Harness::open(dir, Arc::new(FakeFlink::new()), Config::default())
}

/// A request with the bootstrap token: status, `Warning` headers and the envelope.
async fn call_with_headers(
    h: &Harness,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Vec<String>, Value) {
    let mut req = Request::builder().method(method).uri(path).header(
        "Authorization",
        format!("Bearer {}", job_manager::testing::TOKEN),
    );
    let body = match body {
        Some(b) => {
            req = req.header("Content-Type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = h
        .router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, warnings, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn api_tokens_take_vvp_fully_qualified_names_and_answer_in_vvp_shape() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    // The request body exactly as VVP documents it.
    let (s, v) = h
        .call(
            "POST",
            TOKENS,
            Some(json!({"name": "namespaces/default/apitokens/ci-token", "role": "editor"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let t = &v["data"]["apiToken"];
    assert_eq!(t["name"], "namespaces/default/apitokens/ci-token", "{v}");
    assert_eq!(t["role"], "editor");
    let created = t["createTime"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    let secret = t["secret"].as_str().unwrap().to_string();
    assert!(secret.len() > 32);
    // The token works.
    let (s, _) = h
        .call_as(Some(&secret), "GET", &format!("{API}/deployments"), None)
        .await;
    assert_eq!(s, 200);

    // The short form is the same token: a second create under it is a conflict.
    let (s, v) = h
        .call(
            "POST",
            TOKENS,
            Some(json!({"name": "ci-token", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 409, "{v}");

    // GET by the short name and by the fully qualified one (URL-encoded and as path
    // segments): VVP's shape, and never the secret again.
    for path in [
        format!("{TOKENS}/ci-token"),
        format!("{TOKENS}/namespaces%2Fdefault%2Fapitokens%2Fci-token"),
        format!("{TOKENS}/namespaces/default/apitokens/ci-token"),
    ] {
        let (s, v) = h.call("GET", &path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        assert_eq!(
            v["data"]["apiToken"],
            json!({"name": "namespaces/default/apitokens/ci-token", "role": "editor", "createTime": created}),
            "{path}"
        );
        assert!(!v.to_string().contains(&secret), "{path}: {v}");
    }
    let (_, v) = h.call("GET", TOKENS, None).await;
    assert_eq!(
        v["data"]["apiTokens"][0]["name"],
        "namespaces/default/apitokens/ci-token"
    );
    assert!(!v.to_string().contains(&secret), "{v}");

    // Another namespace in the name is refused, naming it.
    let (s, v) = h
        .call(
            "POST",
            TOKENS,
            Some(json!({"name": "namespaces/other/apitokens/x", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("\"other\"") && m.contains("\"default\""), "{m}");
    let (s, v) = h
        .call(
            "POST",
            TOKENS,
            Some(json!({"name": "namespaces/default/x", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // DELETE by the fully qualified name revokes it.
    let (s, v) = h
        .call(
            "DELETE",
            &format!("{TOKENS}/namespaces/default/apitokens/ci-token"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains(&secret));
    let (s, _) = h
        .call_as(Some(&secret), "GET", &format!("{API}/deployments"), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = h.call("GET", &format!("{TOKENS}/ci-token"), None).await;
    assert_eq!(s, 404);
}

/// A Deployment as VVP documents it (artifact `kind: jar`, image fields, pod options,
/// `numberOfTaskManagers`, logging); the JAR is the harness's uploaded artifact (a remote
/// https jarUri needs `artifacts.remote` allowed, which is another test's business).
fn vvp_deployment(h: &Harness, name: &str) -> Value {
    json!({
        "kind": "Deployment",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "displayName": "Top Speed Windowing",
            "labels": {"env": "testing"},
            "annotations": {"owner": "team-a"}
        },
        "spec": {
            "state": "CANCELLED",
            "upgradeStrategy": {"kind": "STATEFUL"},
            "restoreStrategy": {"kind": "LATEST_STATE", "allowNonRestoredState": false},
            "maxSavepointCreationAttempts": 4,
            "maxJobCreationAttempts": 4,
            "jobFailureExpirationTime": "PT10M",
            "template": {
                "metadata": {"annotations": {"flink.queryable-state.enabled": "false"}},
                "spec": {
                    "artifact": {
                        "kind": "jar",
                        "jarUri": h.jar_uri,
                        "additionalDependencies": ["s3://bucket/object"],
                        "entryClass": "org.apache.flink.streaming.examples.windowing.TopSpeedWindowing",
                        "mainArgs": "--windowSize 10 --windowUnit minutes",
                        "flinkVersion": "1.17",
                        "flinkImageRegistry": "registry.ververica.com",
                        "flinkImageRepository": "v2.11/flink",
                        "flinkImageTag": "1.17.2-stream1-scala_2.12"
                    },
                    "parallelism": 2,
                    "numberOfTaskManagers": 2,
                    "resources": {
                        "jobmanager": {"cpu": 1, "memory": "1G"},
                        "taskmanager": {"cpu": 1.5, "memory": "2G"}
                    },
                    "flinkConfiguration": {"taskmanager.numberOfTaskSlots": "1"},
                    "logging": {
                        "loggingProfile": "default",
                        "log4jLoggers": {"": "INFO", "com.company": "DEBUG"}
                    },
                    "kubernetes": {
                        "pods": {
                            "labels": {"team": "data"},
                            "nodeSelector": {"disktype": "ssd"},
                            "envVars": [{"name": "TEAM", "value": "data"}]
                        }
                    }
                }
            }
        }
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn events(h: &Harness, id: &str) -> Vec<Value> {
    let (_, v) = h
        .call("GET", &format!("{API}/events?deploymentId={id}"), None)
        .await;
    v["data"]["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_vvp_deployment_is_accepted_whole_and_what_the_local_target_ignores_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    // VVP names the target by id.
    let (_, v) = h
        .call("GET", &format!("{API}/deployment-targets/local"), None)
        .await;
    let local_id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    let mut body = vvp_deployment(&h, "top-speed");
    body["spec"]["deploymentTargetId"] = json!(local_id);
    let (s, headers, v) =
        call_with_headers(&h, "POST", &format!("{API}/deployments"), Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let d = &v["data"];
    assert_eq!(d["spec"]["deploymentTargetName"], "local");
    assert_eq!(d["spec"]["deploymentTargetId"], json!(local_id));
    assert_eq!(d["metadata"]["displayName"], "Top Speed Windowing");
    assert_eq!(d["spec"]["template"]["spec"]["artifact"]["kind"], "JAR");
    assert_eq!(
        d["spec"]["template"]["spec"]["artifact"]["flinkImageTag"],
        "1.17.2-stream1-scala_2.12"
    );
    let warnings = strings(&v["warnings"]);
    for field in [
        "spec.template.spec.numberOfTaskManagers",
        "spec.template.spec.kubernetes.pods.labels",
        "spec.template.spec.kubernetes.pods.nodeSelector",
        "spec.template.spec.artifact.flinkImageRegistry",
        "spec.template.spec.artifact.flinkImageRepository",
        "spec.template.spec.artifact.flinkImageTag",
        "spec.template.spec.resources.jobmanager.cpu",
        "spec.template.spec.resources.taskmanager.cpu",
        "spec.template.spec.artifact.additionalDependencies",
        "spec.jobFailureExpirationTime",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(field)),
            "{field} not reported: {warnings:#?}"
        );
    }
    // What the local target does apply is not reported.
    for applied in [
        "spec.template.spec.kubernetes.pods.envVars",
        "spec.template.spec.resources.jobmanager.memory",
        "spec.template.spec.logging",
        "spec.template.spec.parallelism",
    ] {
        assert!(
            !warnings.iter().any(|w| w.starts_with(applied)),
            "{applied} reported: {warnings:#?}"
        );
    }
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{} settings have no effect", warnings.len())),
        "{v}"
    );
    assert_eq!(headers.len(), warnings.len(), "{headers:#?}");
    assert!(headers[0].starts_with("299 job-manager \""), "{headers:#?}");
    // And as an event on the deployment.
    let id = d["metadata"]["id"].as_str().unwrap().to_string();
    let ev = events(&h, &id).await;
    let no_effect: Vec<_> = ev
        .iter()
        .filter(|e| e["spec"]["name"] == "SettingsWithoutEffect")
        .collect();
    assert_eq!(no_effect.len(), 1, "{ev:#?}");
    let m = no_effect[0]["spec"]["message"].as_str().unwrap();
    assert!(m.contains("spec.template.spec.numberOfTaskManagers"), "{m}");

    // A PATCH that changes nothing new keeps one event; one that drops a setting records
    // the new list.
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{API}/deployments/{id}"),
            Some(json!({"spec": {"template": {"spec": {"parallelism": 3}}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(strings(&v["warnings"]).len(), warnings.len());
    let count = |ev: &[Value]| {
        ev.iter()
            .filter(|e| e["spec"]["name"] == "SettingsWithoutEffect")
            .count()
    };
    assert_eq!(count(&events(&h, &id).await), 1);
    let (s, v) = h
        .call(
            "PATCH",
            &format!("{API}/deployments/{id}"),
            Some(json!({"spec": {"template": {"spec": {"numberOfTaskManagers": null}}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(strings(&v["warnings"]).len(), warnings.len() - 1);
    assert_eq!(count(&events(&h, &id).await), 2);

    // A deployment with nothing unapplied answers as before: no warnings.
    let (s, headers, v) = call_with_headers(
        &h,
        "POST",
        &format!("{API}/deployments"),
        Some(json!({"metadata": {"name": "plain"}, "spec": {"template": {"spec": {"artifact": {"jarUri": h.jar_uri}}}}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(v.get("warnings").is_none() && headers.is_empty(), "{v}");
    assert_eq!(v["message"], "Created");

    // A target id that does not exist, or that disagrees with the name, is named.
    let mut body = vvp_deployment(&h, "other");
    body["spec"]["deploymentTargetId"] = json!(uuid::Uuid::new_v4());
    let (s, v) = h
        .call("POST", &format!("{API}/deployments"), Some(body))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("spec.deploymentTargetId"));
}

#[tokio::test]
async fn a_session_target_says_plainly_what_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    h.fake_target().await;
    // VVP's session mode: sessionClusterName instead of a target.
    let mut body = vvp_deployment(&h, "on-session");
    body["spec"]["sessionClusterName"] = json!("fake");
    body["spec"]["template"]["spec"]["logging"]["log4j2ConfigurationTemplate"] =
        json!("<Configuration/>");
    let (s, v) = h
        .call("POST", &format!("{API}/deployments"), Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["spec"]["deploymentTargetName"], "fake");
    let warnings = strings(&v["warnings"]);
    for field in [
        "spec.template.spec.numberOfTaskManagers",
        "spec.template.spec.resources.taskmanager.memory",
        "spec.template.spec.kubernetes.pods.envVars",
        "spec.template.spec.logging.loggingProfile",
        "spec.template.spec.logging.log4jLoggers",
        "spec.template.spec.logging.log4j2ConfigurationTemplate",
        "spec.template.spec.artifact.flinkImageTag",
    ] {
        let w = warnings
            .iter()
            .find(|w| w.starts_with(field))
            .unwrap_or_else(|| panic!("{field} not reported: {warnings:#?}"));
        assert!(w.contains("on deployment target \"fake\" (session)"), "{w}");
    }
    // sessionClusterName must name a session target, and agree with a given target name.
    let mut body = vvp_deployment(&h, "bad-session");
    body["spec"]["sessionClusterName"] = json!("local");
    let (s, v) = h
        .call("POST", &format!("{API}/deployments"), Some(body))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("spec.sessionClusterName: deployment target \"local\""),
        "{v}"
    );
    let mut body = vvp_deployment(&h, "both");
    body["spec"]["sessionClusterName"] = json!("fake");
    body["spec"]["deploymentTargetName"] = json!("local");
    let (s, v) = h
        .call("POST", &format!("{API}/deployments"), Some(body))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("name different targets"),
        "{v}"
    );
}

#[tokio::test]
async fn put_upserts_deployments_with_resource_version_checks() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let url = format!("{API}/deployments/top-speed");
    let (s, v) = h
        .call("PUT", &url, Some(vvp_deployment(&h, "top-speed")))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1);
    // Replace: the body is the whole new deployment (parallelism changed, pods dropped).
    let mut body = vvp_deployment(&h, "top-speed");
    body["metadata"]["resourceVersion"] = json!(1);
    body["spec"]["template"]["spec"]["parallelism"] = json!(4);
    body["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("kubernetes");
    let (s, v) = h
        .call(
            "PUT",
            &format!("{API}/deployments/{id}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["id"], json!(id));
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);
    assert_eq!(v["data"]["spec"]["template"]["spec"]["parallelism"], 4);
    assert!(v["data"]["spec"]["template"]["spec"]
        .get("kubernetes")
        .is_none());
    // The same body again carries a stale resourceVersion.
    let (s, v) = h.call("PUT", &url, Some(body)).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("resourceVersion 1 is stale"));
    // An id in the URL creates the deployment with that id; a body disagreeing is named.
    let new_id = uuid::Uuid::new_v4();
    let (s, v) = h
        .call(
            "PUT",
            &format!("{API}/deployments/{new_id}"),
            Some(vvp_deployment(&h, "by-id")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["metadata"]["id"], json!(new_id));
    let (s, v) = h
        .call(
            "PUT",
            &format!("{API}/deployments/another"),
            Some(vvp_deployment(&h, "not-another")),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("metadata.name"));
    let (_, v) = h.call("GET", &format!("{API}/deployments"), None).await;
    assert_eq!(v["data"]["items"].as_array().unwrap().len(), 2, "{v}");
}

#[tokio::test]
async fn put_upserts_deployment_targets_for_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let url = format!("{API}/deployment-targets/sess");
    let target = json!({
        "kind": "DeploymentTarget",
        "apiVersion": "v1",
        "metadata": {"name": "sess", "namespace": "default",
                     "labels": {"labelName": "labelValue"},
                     "annotations": {"annotationName": "annotationValue"}},
        "spec": {"type": "session", "restUrl": "http://127.0.0.1:1"}
    });
    let (s, v) = h.call("PUT", &url, Some(target.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["metadata"]["labels"]["labelName"], "labelValue");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1);
    let mut changed = target.clone();
    changed["spec"]["restUrl"] = json!("http://127.0.0.1:2");
    changed["metadata"]["resourceVersion"] = json!(1);
    let (s, v) = h.call("PUT", &url, Some(changed.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["spec"]["restUrl"], "http://127.0.0.1:2");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);
    let (s, v) = h.call("PUT", &url, Some(changed)).await;
    assert_eq!(s, 409, "{v}");
    // Editors read targets but do not write them, as in VVP.
    let (s, v) = h
        .call(
            "POST",
            TOKENS,
            Some(json!({"name": "ed", "role": "editor"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let editor = v["data"]["apiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = h.call_as(Some(&editor), "PUT", &url, Some(target)).await;
    assert_eq!(s, 403);
    // VVP's own target body (a Kubernetes namespace, no spec.type) is a Kubernetes target,
    // read back in the same shape.
    let vvp =
        json!({"metadata": {"name": "ack"}, "spec": {"kubernetes": {"namespace": "flink-jobs"}}});
    let (s, v) = h
        .call("PUT", &format!("{API}/deployment-targets/ack"), Some(vvp))
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let (s, v) = h
        .call("GET", &format!("{API}/deployment-targets/ack"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["spec"],
        json!({"kubernetes": {"namespace": "flink-jobs"}})
    );
    // Neither a kind nor a namespace: refused naming both.
    let (s, v) = h
        .call(
            "PUT",
            &format!("{API}/deployment-targets/nothing"),
            Some(json!({"metadata": {"name": "nothing"}, "spec": {}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.kubernetes.namespace or spec.type is required"),
        "{v}"
    );
    // A namespace Kubernetes would refuse is named.
    let (s, v) = h
        .call(
            "PUT",
            &format!("{API}/deployment-targets/bad"),
            Some(json!({"metadata": {"name": "bad"}, "spec": {"kubernetes": {"namespace": "Flink_Jobs"}}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with(
            "spec.kubernetes.namespace \"Flink_Jobs\" is not a Kubernetes namespace name"
        ),
        "{v}"
    );
}

#[tokio::test]
async fn logging_profiles_are_recognised_and_an_unknown_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    for (i, p) in ["default", "oss", "sls"].iter().enumerate() {
        let mut body = vvp_deployment(&h, &format!("p{i}"));
        body["spec"]["template"]["spec"]["logging"]["loggingProfile"] = json!(p);
        let (s, v) = h
            .call("POST", &format!("{API}/deployments"), Some(body))
            .await;
        assert_eq!(s, 201, "{p}: {v}");
    }
    let mut body = vvp_deployment(&h, "bad");
    body["spec"]["template"]["spec"]["logging"]["loggingProfile"] = json!("kafka");
    let (s, v) = h
        .call("POST", &format!("{API}/deployments"), Some(body))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["message"],
        "spec.template.spec.logging.loggingProfile \"kafka\" is unknown: use default, oss, sls"
    );
    // A custom XML template (VVP's format) with the user's loggers is accepted.
    let mut body = vvp_deployment(&h, "xml");
    body["spec"]["template"]["spec"]["logging"]["log4j2ConfigurationTemplate"] = json!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Configuration><Loggers>{% for l in userConfiguredLoggers %}<Logger name=\"{{ l.name }}\" level=\"{{ l.level }}\"/>{% endfor %}<Root level=\"{{ rootLoggerLogLevel }}\"/></Loggers></Configuration>"
    );
    let (s, v) = h
        .call("POST", &format!("{API}/deployments"), Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn pod_options_and_pod_templates_are_exclusive_and_misspelt_pod_options_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let target =
        json!({"metadata": {"name": "ack"}, "spec": {"kubernetes": {"namespace": "flink-jobs"}}});
    let (status, _, body) = call_with_headers(
        &h,
        "POST",
        &format!("{API}/deployment-targets"),
        Some(target),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // `pods` together with a pod template: refused on every target kind, naming both.
    let mut both = vvp_deployment(&h, "both");
    both["spec"]["template"]["spec"]["kubernetes"]["taskManagerPodTemplate"] =
        json!({"metadata": {"labels": {"tier": "tm"}}});
    h.fake_target().await;
    for target in ["fake", "ack"] {
        both["spec"]["deploymentTargetName"] = json!(target);
        let (status, _, body) = call_with_headers(
            &h,
            "POST",
            &format!("{API}/deployments"),
            Some(both.clone()),
        )
        .await;
        assert_eq!(status, 400, "{target}: {body}");
        let msg = body.to_string();
        assert!(
            msg.contains("kubernetes.pods") && msg.contains("taskManagerPodTemplate"),
            "{target}: {msg}"
        );
    }

    // On a Kubernetes target the pod options are Kubernetes objects, parsed strictly.
    let mut typo = vvp_deployment(&h, "typo");
    typo["spec"]["deploymentTargetName"] = json!("ack");
    typo["spec"]["template"]["spec"]["kubernetes"]["pods"]["tolerations"] =
        json!([{"key": "dedicated", "operatr": "Exists"}]);
    let (status, _, body) =
        call_with_headers(&h, "POST", &format!("{API}/deployments"), Some(typo)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("operatr"), "{body}");

    // Nothing was stored by the refusals; the same document without the mistakes is accepted.
    let (_, _, list) = call_with_headers(&h, "GET", &format!("{API}/deployments"), None).await;
    assert!(!list.to_string().contains("\"both\""), "{list}");
    let mut ok = vvp_deployment(&h, "ok");
    ok["spec"]["deploymentTargetName"] = json!("ack");
    let (status, _, body) =
        call_with_headers(&h, "POST", &format!("{API}/deployments"), Some(ok)).await;
    assert_eq!(status, 201, "{body}");
}
