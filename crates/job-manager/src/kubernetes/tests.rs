//! Builder tests that need the crate's internals; the rendered output is tested end to end
//! in `tests/kubernetes_render.rs`.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::model::Deployment;

fn deployment() -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "orders", "namespace": "default", "id": "5d6b1f6e-0000-4000-8000-000000000001"},
        "spec": {"template": {"spec": {
            "artifact": {"kind": "JAR", "jarUri": "https://repo.example.com/orders-1.0.jar", "entryClass": "com.example.Orders"},
            "parallelism": 2
        }}}
    }))
    .unwrap()
}

fn request(d: &Deployment) -> JobRequest<'_> {
    let job = Uuid::parse_str("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a").unwrap();
    JobRequest {
        deployment: d,
        target_namespace: "flink-jobs",
        job_id: job,
        flink_job_id: job.simple().to_string(),
        restore: None,
        savepoint_dir: None,
        checkpoint_dir: None,
        metrics_gateway_url: None,
        artifact_store: None,
    }
}

#[test]
fn owner_references_point_at_the_jobmanager_job() {
    let d = deployment();
    let mut o = build(&request(&d), &Settings::default()).unwrap();
    assert!(o.service.metadata.owner_references.is_none());
    o.set_owner("uid-1");
    for m in [
        &o.config_map.metadata,
        &o.service.metadata,
        &o.taskmanager.metadata,
    ] {
        let r = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(r.kind, "Job");
        assert_eq!(r.api_version, "batch/v1");
        assert_eq!(r.uid, "uid-1");
        assert_eq!(r.name, o.jobmanager.metadata.name.clone().unwrap());
        assert_eq!(r.controller, Some(true));
    }
    assert!(o.jobmanager.metadata.owner_references.is_none());
}

/// The init container of the JobManager pod and its environment by name.
fn fetcher(
    o: &JobObjects,
) -> (
    k8s_openapi::api::core::v1::Container,
    BTreeMap<String, k8s_openapi::api::core::v1::EnvVar>,
) {
    let pod = o.jobmanager.spec.clone().unwrap().template.spec.unwrap();
    let init = pod.init_containers.unwrap()[0].clone();
    let env = init
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    (init, env)
}

fn secret_ref(e: &k8s_openapi::api::core::v1::EnvVar) -> (String, String) {
    let r = e.value_from.clone().unwrap().secret_key_ref.unwrap();
    (r.name, r.key)
}

#[test]
fn store_artifacts_are_fetched_from_the_manager_with_the_token_secret() {
    let mut d = deployment();
    d.spec.template.spec.artifact.jar_uri =
        "file:///var/lib/job-manager/artifacts/default/my+job.jar".into();
    let err = build(&request(&d), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("artifact.jarUri"), "{err}");
    assert!(err.contains("kubernetes.manager_url"), "{err}");
    let mut r = request(&d);
    let token = common::Secret::new("jmdl_0123456789abcdef");
    r.artifact_store = Some(ArtifactStore {
        base_url: "http://job-manager.flink-suite:8080/".into(),
        token: Some(token.clone()),
    });
    let o = build(&r, &Settings::default()).unwrap();
    let (init, env) = fetcher(&o);
    assert_eq!(init.command.clone().unwrap(), ["sh", "-c"]);
    assert_eq!(init.args.clone().unwrap(), [fetch::FETCH_SCRIPT]);
    assert_eq!(
        env[fetch::URL_ENV].value.as_deref(),
        Some("http://job-manager.flink-suite:8080/artifacts/v1/namespaces/default/artifacts:download?filename=my%2Bjob.jar")
    );
    assert_eq!(
        env[fetch::PATH_ENV].value.as_deref(),
        Some("/opt/flink/usrlib/myjob.jar")
    );
    let secret_name = ArtifactStore::token_secret_name(r.job_id);
    assert_eq!(
        secret_ref(&env[fetch::TOKEN_ENV]),
        (secret_name.clone(), fetch::SECRET_TOKEN_KEY.to_string())
    );
    // The token is in the Secret, and nowhere else.
    let secret = o.secret.clone().unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some(secret_name.as_str()));
    assert_eq!(
        secret.data.clone().unwrap()[fetch::SECRET_TOKEN_KEY].0,
        token.expose().as_bytes()
    );
    let mut without_secret = o.clone();
    without_secret.secret = None;
    let text = serde_json::to_string(&without_secret.to_values().unwrap()).unwrap();
    assert!(!text.contains(token.expose()));
    assert!(
        !format!("{o:?}").contains(token.expose()),
        "Debug shows no token"
    );
    // Owned by the JobManager Job like the rest.
    let mut owned = o.clone();
    owned.set_owner("uid-1");
    assert_eq!(
        owned.secret.unwrap().metadata.owner_references.unwrap()[0].uid,
        "uid-1"
    );
    d.spec.template.spec.artifact.jar_uri = "oss://bucket/job.jar".into();
    let err = build(&request(&d), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("http:// or https://"), "{err}");
}

#[test]
fn credentials_in_a_jar_uri_go_to_the_secret_not_the_pod_spec() {
    for uri in [
        "https://ci:s3cr3t@repo.example.com/orders-1.0.jar",
        "https://bucket.oss-cn-hangzhou.aliyuncs.com/orders-1.0.jar?Expires=1&OSSAccessKeyId=ak&Signature=s1gn",
    ] {
        let mut d = deployment();
        d.spec.template.spec.artifact.jar_uri = uri.into();
        let r = request(&d);
        let o = build(&r, &Settings::default()).unwrap();
        let (_, env) = fetcher(&o);
        assert_eq!(
            secret_ref(&env[fetch::URL_ENV]),
            (
                ArtifactStore::token_secret_name(r.job_id),
                fetch::SECRET_URL_KEY.to_string()
            )
        );
        assert!(!env.contains_key(fetch::TOKEN_ENV));
        let secret = o.secret.clone().unwrap();
        assert_eq!(
            secret.data.clone().unwrap()[fetch::SECRET_URL_KEY].0,
            uri.as_bytes()
        );
        let mut rest = o.clone();
        rest.secret = None;
        let text = serde_json::to_string(&rest.to_values().unwrap()).unwrap();
        for part in ["s3cr3t", "s1gn", "Signature"] {
            assert!(!text.contains(part), "{part} in {text}");
        }
    }
    // Without credentials the URL stays readable and no Secret is made.
    let d = deployment();
    let o = build(&request(&d), &Settings::default()).unwrap();
    assert!(o.secret.is_none());
    let (_, env) = fetcher(&o);
    assert_eq!(
        env[fetch::URL_ENV].value.as_deref(),
        Some("https://repo.example.com/orders-1.0.jar")
    );
    // A quote would end curl's config value: refused, without the credentials.
    let mut d = deployment();
    d.spec.template.spec.artifact.jar_uri = "https://u:pw@repo.example.com/a\"b.jar".into();
    let err = build(&request(&d), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("percent-encode"), "{err}");
    assert!(!err.contains("pw"), "{err}");
}

#[test]
fn bad_values_are_named() {
    let mut d = deployment();
    d.spec.template.spec.artifact.flink_version = Some("one point twenty".into());
    let err = build(&request(&d), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.template.spec.artifact.flinkVersion:"),
        "{err}"
    );
    let mut d = deployment();
    d.spec.template.spec.resources = Some(crate::model::Resources {
        jobmanager: None,
        taskmanager: Some(crate::model::ResourceSpec {
            cpu: Some(0.0),
            memory: None,
        }),
    });
    let err = build(&request(&d), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("resources.taskmanager.cpu"), "{err}");
    let mut d = deployment();
    d.spec.template.spec.artifact.kind = "SQLSCRIPT".into();
    let err = build(&request(&d), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.template.spec.artifact.kind:"),
        "{err}"
    );
    let d = deployment();
    let mut r = request(&d);
    r.flink_job_id = "not-hex".into();
    assert!(build(&r, &Settings::default()).is_err());
}

#[test]
fn logs_go_to_stdout_too_unless_the_configuration_is_not_properties() {
    let d = deployment();
    let o = build(&request(&d), &Settings::default()).unwrap();
    let data = o.config_map.data.unwrap();
    let log4j = &data[objects::LOG4J_FILE];
    assert!(log4j.contains("rootLogger.appenderRef.console.ref = ConsoleAppender"));
    assert!(log4j.contains("appender.main.fileName = ${sys:log.file}"));
    assert!(o.notes.is_empty(), "{:?}", o.notes);
    let mut d = deployment();
    d.spec.template.spec.logging = Some(crate::model::Logging {
        logging_profile: None,
        log4j_loggers: Default::default(),
        log4j2_configuration_template: Some(
            "<Configuration><!-- {{ deploymentName }} --></Configuration>".into(),
        ),
    });
    let o = build(&request(&d), &Settings::default()).unwrap();
    let data = o.config_map.data.unwrap();
    assert_eq!(
        data[objects::LOG4J_FILE],
        "<Configuration><!-- orders --></Configuration>"
    );
    assert!(
        o.notes.iter().any(|n| n.contains("stdout appender")),
        "{:?}",
        o.notes
    );
}
