//! Ververica Platform compatibility at the API's edge: VVP's ways of naming a deployment's
//! target (`deploymentTargetId`, `sessionClusterName`), and the settings a VVP client may
//! send that have no effect on the chosen target.
//!
//! A setting without effect is accepted (so VVP documents are taken as they are) but never
//! dropped silently: the answer carries it three ways, none of which a VVP client trips
//! over:
//! - `warnings`: an extra top-level field of the envelope, one sentence per setting, naming
//!   the field and why;
//! - `message`: says how many settings had no effect (instead of `OK`/`Created`);
//! - `Warning: 299 job-manager "…"` response headers (RFC 7234), one per setting, as the
//!   Kubernetes API server reports its warnings (kubectl and client-go print them).
//!
//! The deployment also gets an event `SettingsWithoutEffect` listing them, whenever that
//! list changes.

use axum::{
    http::{HeaderValue, StatusCode},
    response::IntoResponse,
};
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{ApiError, ApiResult, AppState};
use crate::{
    model::{Deployment, DeploymentTarget, Event, EventMetadata, EventSpec, TargetKind},
    store::Tables,
};

/// The name of the event that lists settings without effect.
pub const NO_EFFECT_EVENT: &str = "SettingsWithoutEffect";

/// Resolves VVP's other ways of naming the target into `spec.deploymentTargetName`:
/// `deploymentTargetId` (a target's `metadata.id`) and `sessionClusterName` (a `session`
/// target's name). `explicit_name` is the `deploymentTargetName` the request itself carried
/// (not one from defaults or the stored deployment); it must agree.
pub fn resolve_target(
    d: &mut Deployment,
    t: &Tables,
    explicit_name: Option<&str>,
) -> Result<(), ApiError> {
    let ns = d.metadata.namespace.clone();
    let mut chosen: Option<(String, &'static str)> = None;
    if let Some(id) = d.spec.deployment_target_id {
        let Some(target) = t
            .targets
            .values()
            .find(|x| x.metadata.namespace == ns && x.metadata.id == Some(id))
        else {
            return Err(ApiError::invalid(format!(
                "spec.deploymentTargetId: no deployment target with id {id} in namespace {ns}"
            )));
        };
        chosen = Some((target.metadata.name.clone(), "spec.deploymentTargetId"));
    }
    if let Some(session) = &d.spec.session_cluster_name {
        match t.targets.get(&(ns.clone(), session.clone())) {
            Some(x) if x.spec.kind == TargetKind::Session => {}
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "spec.sessionClusterName: deployment target {session:?} in namespace {ns} is not a session target"
                )))
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "spec.sessionClusterName: no session deployment target named {session:?} in namespace {ns} (create one with spec.type session and spec.restUrl)"
                )))
            }
        }
        if let Some((other, field)) = &chosen {
            if other != session {
                return Err(ApiError::invalid(format!(
                    "spec.sessionClusterName {session:?} and {field} (target {other:?}) name different targets: set one of them"
                )));
            }
        }
        chosen = Some((session.clone(), "spec.sessionClusterName"));
    }
    if let Some((name, field)) = chosen {
        if let Some(given) = explicit_name {
            if given != name {
                return Err(ApiError::invalid(format!(
                    "spec.deploymentTargetName {given:?} and {field} (target {name:?}) name different targets: set one of them"
                )));
            }
        }
        d.spec.deployment_target_name = name;
    }
    Ok(())
}

/// The settings of `d` that the target `target` does not apply, one sentence each (field
/// path first). Empty when everything applies.
pub fn no_effect(d: &Deployment, target: &DeploymentTarget) -> Vec<String> {
    let ts = &d.spec.template.spec;
    let mut found: Vec<(&str, &str)> = Vec::new();
    if !ts.artifact.additional_dependencies.is_empty() {
        found.push((
            "spec.template.spec.artifact.additionalDependencies",
            "no target downloads additional dependencies; package them into the JAR",
        ));
    }
    if d.spec.job_failure_expiration_time.is_some() {
        found.push((
            "spec.jobFailureExpirationTime",
            "failures do not expire; a FAILED deployment waits for a user action",
        ));
    }
    let k8s = ts.kubernetes.as_ref();
    let pods = k8s.map(|k| &k.pods);
    let pod_fields: Vec<&str> = pods
        .map(|p| {
            let mut v = vec![];
            for (set, name) in [
                (!p.labels.is_empty(), "labels"),
                (!p.annotations.is_empty(), "annotations"),
                (!p.node_selector.is_empty(), "nodeSelector"),
                (p.affinity.is_some(), "affinity"),
                (!p.tolerations.is_empty(), "tolerations"),
                (!p.volumes.is_empty(), "volumes"),
                (!p.volume_mounts.is_empty(), "volumeMounts"),
                (!p.image_pull_secrets.is_empty(), "imagePullSecrets"),
                (p.security_context.is_some(), "securityContext"),
                (!p.env_vars.is_empty(), "envVars"),
            ] {
                if set {
                    v.push(name);
                }
            }
            v
        })
        .unwrap_or_default();
    let k8s_fields: Vec<&str> = k8s
        .map(|k| {
            let mut v = vec![];
            if !k.labels.is_empty() {
                v.push("spec.template.spec.kubernetes.labels");
            }
            if k.job_manager_pod_template.is_some() {
                v.push("spec.template.spec.kubernetes.jobManagerPodTemplate");
            }
            if k.task_manager_pod_template.is_some() {
                v.push("spec.template.spec.kubernetes.taskManagerPodTemplate");
            }
            v
        })
        .unwrap_or_default();
    let a = &ts.artifact;
    let image_fields: Vec<&str> = [
        (
            a.flink_image_registry.is_some(),
            "spec.template.spec.artifact.flinkImageRegistry",
        ),
        (
            a.flink_image_repository.is_some(),
            "spec.template.spec.artifact.flinkImageRepository",
        ),
        (
            a.flink_image_tag.is_some(),
            "spec.template.spec.artifact.flinkImageTag",
        ),
        (
            a.flink_version.is_some(),
            "spec.template.spec.artifact.flinkVersion",
        ),
    ]
    .into_iter()
    .filter_map(|(set, f)| set.then_some(f))
    .collect();
    let res = ts.resources.as_ref();
    let cpu_fields: Vec<&str> = [
        (
            res.and_then(|r| r.jobmanager.as_ref())
                .is_some_and(|r| r.cpu.is_some()),
            "spec.template.spec.resources.jobmanager.cpu",
        ),
        (
            res.and_then(|r| r.taskmanager.as_ref())
                .is_some_and(|r| r.cpu.is_some()),
            "spec.template.spec.resources.taskmanager.cpu",
        ),
    ]
    .into_iter()
    .filter_map(|(set, f)| set.then_some(f))
    .collect();
    let memory_fields: Vec<&str> = [
        (
            res.and_then(|r| r.jobmanager.as_ref())
                .is_some_and(|r| r.memory.is_some()),
            "spec.template.spec.resources.jobmanager.memory",
        ),
        (
            res.and_then(|r| r.taskmanager.as_ref())
                .is_some_and(|r| r.memory.is_some()),
            "spec.template.spec.resources.taskmanager.memory",
        ),
    ]
    .into_iter()
    .filter_map(|(set, f)| set.then_some(f))
    .collect();
    let mut out: Vec<String> = found
        .into_iter()
        .map(|(f, why)| format!("{f} has no effect: {why}"))
        .collect();
    let on = format!(
        "on deployment target {:?} ({})",
        target.metadata.name,
        target.spec.kind.as_str()
    );
    let mut say = |field: String, why: &str| out.push(format!("{field} has no effect {on}: {why}"));
    match target.spec.kind {
        TargetKind::Local => {
            for p in pod_fields.iter().filter(|p| **p != "envVars") {
                say(
                    format!("spec.template.spec.kubernetes.pods.{p}"),
                    "it runs Flink as processes on the manager's host, not in pods (only envVars apply)",
                );
            }
            for f in &k8s_fields {
                say(
                    f.to_string(),
                    "it runs Flink as processes on the manager's host, not in pods",
                );
            }
            if ts.number_of_task_managers.is_some() {
                say(
                    "spec.template.spec.numberOfTaskManagers".into(),
                    "it starts one TaskManager with one slot per unit of parallelism",
                );
            }
            for f in &image_fields {
                say(
                    f.to_string(),
                    "it runs the Flink distribution in FLINK_HOME, not an image",
                );
            }
            for f in &cpu_fields {
                say(
                    f.to_string(),
                    "it does not limit CPU (memory applies as the process size)",
                );
            }
        }
        TargetKind::Session => {
            for p in &pod_fields {
                say(
                    format!("spec.template.spec.kubernetes.pods.{p}"),
                    "the session cluster's processes already run; configure them where the cluster is started",
                );
            }
            for f in &k8s_fields {
                say(
                    f.to_string(),
                    "the session cluster's pods already exist; configure them where the cluster is started",
                );
            }
            if ts.number_of_task_managers.is_some() {
                say(
                    "spec.template.spec.numberOfTaskManagers".into(),
                    "the session cluster's size is its own",
                );
            }
            for f in image_fields.iter().chain(&cpu_fields).chain(&memory_fields) {
                say(
                    f.to_string(),
                    "the session cluster already runs with its own image and resources",
                );
            }
            if let Some(l) = &ts.logging {
                for (set, f) in [
                    (
                        l.logging_profile.is_some(),
                        "spec.template.spec.logging.loggingProfile",
                    ),
                    (
                        !l.log4j_loggers.is_empty(),
                        "spec.template.spec.logging.log4jLoggers",
                    ),
                    (
                        l.log4j2_configuration_template.is_some(),
                        "spec.template.spec.logging.log4j2ConfigurationTemplate",
                    ),
                ] {
                    if set {
                        say(
                            f.to_string(),
                            "a session cluster's logging is configured where the cluster is started",
                        );
                    }
                }
            }
        }
        // Pods, images, resources and logging all shape the job's own pods; what the target
        // does not apply is Flink's native-Kubernetes options and what the builder replaces.
        TargetKind::Kubernetes => {
            let ns = target
                .spec
                .kubernetes
                .as_ref()
                .map(|k| k.namespace.as_str())
                .unwrap_or_default();
            for n in crate::kubernetes::no_effect::no_effect(d, ns) {
                say(n.field, &n.why);
            }
        }
    }
    out
}

/// The settings of `d` without effect on its target (looked up in `t`; none when the target
/// does not exist, which validation refuses anyway).
pub fn no_effect_in(d: &Deployment, t: &Tables) -> Vec<String> {
    t.targets
        .get(&(
            d.metadata.namespace.clone(),
            d.spec.deployment_target_name.clone(),
        ))
        .map(|target| no_effect(d, target))
        .unwrap_or_default()
}

/// A successful answer in the envelope, with `warnings` (see the module docs).
pub fn ok_with_warnings(
    status: StatusCode,
    data: impl Serialize,
    warnings: &[String],
) -> ApiResult {
    let data = serde_json::to_value(data).map_err(ApiError::internal)?;
    let reason = status.canonical_reason().unwrap_or("OK");
    let message = match warnings.len() {
        0 => reason.to_string(),
        1 => format!(
            "{reason}; 1 setting has no effect on the deployment's target: {}",
            warnings[0]
        ),
        n => format!(
            "{reason}; {n} settings have no effect on the deployment's target, see warnings"
        ),
    };
    let mut body = json!({
        "success": true,
        "httpCode": status.as_u16(),
        "message": message,
        "reason": null,
        "data": data,
    });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    let mut resp = (status, axum::Json(body)).into_response();
    for w in warnings {
        let text: String = w
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect::<String>()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 job-manager \"{text}\"")) {
            resp.headers_mut().append(axum::http::header::WARNING, v);
        }
    }
    Ok(resp)
}

/// Records the settings without effect as an event on the deployment, unless its latest
/// such event already says the same.
pub fn record_no_effect(st: &AppState, d: &Deployment, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    let message = format!(
        "Accepted without effect on deployment target {:?}: {}",
        d.spec.deployment_target_name,
        warnings.join("; ")
    );
    let same = st
        .store
        .read()
        .events
        .get(&d.id())
        .and_then(|l| l.iter().rev().find(|e| e.spec.name == NO_EFFECT_EVENT))
        .is_some_and(|e| e.spec.message == message);
    if same {
        return;
    }
    let event = Event {
        kind: "Event".into(),
        api_version: "v1".into(),
        metadata: EventMetadata {
            id: Uuid::new_v4(),
            namespace: d.metadata.namespace.clone(),
            deployment_id: d.id(),
            job_id: None,
            created_at: Utc::now(),
        },
        spec: EventSpec {
            name: NO_EFFECT_EVENT.into(),
            message,
        },
    };
    if let Err(error) = st.store.append_event(event) {
        tracing::error!(deployment = %d.id(), %error, "Cannot record the settings without effect as an event.");
    }
}

/// `spec.deploymentTargetName` as the request body itself gives it.
pub fn explicit_target_name(body: &Value) -> Option<&str> {
    body.pointer("/spec/deploymentTargetName")
        .and_then(Value::as_str)
}

/// VVP spellings stored in this API's: `artifact.kind: jar` (as VVP documents it) is `JAR`.
pub fn normalize(d: &mut Deployment) {
    let kind = &mut d.spec.template.spec.artifact.kind;
    if kind.eq_ignore_ascii_case("jar") {
        *kind = "JAR".into();
    }
}
