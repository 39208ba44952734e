//! What makes a Deployment valid: its fields one by one, its target in the namespace, its
//! templates; and the defaults a new document is placed over.

use std::{collections::BTreeMap, str::FromStr};

use serde_json::{json, Value};

use super::{Invalid, Result};
use crate::{
    model::{Deployment, DesiredState, TargetKind},
    store::Tables,
    target, template,
};

/// Log levels log4j2 accepts in `logging.log4jLoggers`.
const LOG_LEVELS: &[&str] = &[
    "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "ALL",
];

/// Checks a deployment against the rules and the namespace's targets in `t`; the error
/// names the first field that breaks one.
pub fn validate(d: &Deployment, t: &Tables) -> Result<()> {
    let ns = &d.metadata.namespace;
    let name = &d.metadata.name;
    if name.trim().is_empty() {
        return Err(Invalid::field("metadata.name", "must not be empty"));
    }
    if name.len() > 253 || name.chars().any(char::is_control) {
        return Err(Invalid::field(
            "metadata.name",
            "must be at most 253 characters without control characters",
        ));
    }
    let s = &d.spec;
    let ts = &s.template.spec;
    if ts.parallelism < 1 {
        return Err(Invalid::field(
            "spec.template.spec.parallelism",
            format!("must be ≥ 1 (got {})", ts.parallelism),
        ));
    }
    if ts.parallelism > 10_000 {
        return Err(Invalid::field(
            "spec.template.spec.parallelism",
            "must be ≤ 10000",
        ));
    }
    if s.max_job_creation_attempts < 1 {
        return Err(Invalid::field("spec.maxJobCreationAttempts", "must be ≥ 1"));
    }
    if s.max_savepoint_creation_attempts < 1 {
        return Err(Invalid::field(
            "spec.maxSavepointCreationAttempts",
            "must be ≥ 1",
        ));
    }
    check_artifact(d)?;
    for k in ts.flink_configuration.keys() {
        target::check_config_key(k)?;
    }
    check_logging(d)?;
    check_env_vars(d)?;
    if let Some(sched) = &s.savepoint_schedule {
        cron::Schedule::from_str(&sched.cron).map_err(|e| {
            Invalid::field(
                "spec.savepointSchedule.cron",
                format!(
                    "{:?} is invalid: {e} (use six fields with seconds, e.g. \"0 */10 * * * *\")",
                    sched.cron
                ),
            )
        })?;
        if sched.retain < 1 {
            return Err(Invalid::field(
                "spec.savepointSchedule.retain",
                "must be ≥ 1",
            ));
        }
    }
    let Some(target) = t
        .targets
        .get(&(ns.clone(), s.deployment_target_name.clone()))
    else {
        return Err(Invalid::Reference {
            field: "spec.deploymentTargetName",
            missing: format!(
                "no deployment target named {:?} in namespace {ns}",
                s.deployment_target_name
            ),
        });
    };
    if target.spec.kind == TargetKind::Local {
        let env = ts.kubernetes.iter().flat_map(|k| &k.pods.env_vars);
        for (i, e) in env.enumerate() {
            if let Some(reason) = target::refused_env_var(&e.name) {
                return Err(Invalid::field(
                    format!("spec.template.spec.kubernetes.pods.envVars[{i}].name"),
                    format!(
                        "{} is not allowed on the local target {:?}: {reason}",
                        e.name, s.deployment_target_name
                    ),
                ));
            }
        }
    }
    if let Some(k) = &ts.kubernetes {
        // VVP: `pods` and the pod templates are exclusive; on a Kubernetes target the pod
        // options are also parsed strictly here, so a misspelt field is a 400, not a failed start.
        if target.spec.kind == TargetKind::Kubernetes {
            crate::kubernetes::pods::customisation(Some(k))?;
        } else {
            crate::kubernetes::pods::check_exclusive(k)?;
        }
    }
    if s.state == DesiredState::Suspended && target.spec.kind == TargetKind::Session {
        let has_dir = ts
            .flink_configuration
            .contains_key("execution.checkpointing.savepoint-dir")
            || ts.flink_configuration.contains_key("state.savepoints.dir")
            || target.spec.savepoint_dir.is_some();
        if !has_dir {
            return Err(Invalid::field(
                "spec.state",
                format!(
                    "SUSPENDED needs a savepoint directory so that state is not lost: set spec.template.spec.flinkConfiguration[\"execution.checkpointing.savepoint-dir\"] or spec.savepointDir of deployment target {:?}",
                    s.deployment_target_name
                ),
            ));
        }
    }
    Ok(())
}

/// `artifact`: a JAR with a `jarUri` of a scheme the manager can fetch. (Whether the URI
/// may be used, its store or remote host, is [`crate::artifacts::check`]'s.)
fn check_artifact(d: &Deployment) -> Result<()> {
    let artifact = &d.spec.template.spec.artifact;
    if artifact.kind != "JAR" {
        return Err(Invalid::field(
            "spec.template.spec.artifact.kind",
            format!("{:?} is not supported: use JAR", artifact.kind),
        ));
    }
    let uri = &artifact.jar_uri;
    if uri.is_empty() {
        return Err(Invalid::field(
            "spec.template.spec.artifact.jarUri",
            "must not be empty",
        ));
    }
    if !(uri.starts_with("file://")
        || uri.starts_with('/')
        || uri.starts_with("http://")
        || uri.starts_with("https://"))
    {
        return Err(Invalid::field(
            "spec.template.spec.artifact.jarUri",
            format!(
                "{uri:?} is not supported: use file://, http:// or https:// (upload JARs to /artifacts/v1/namespaces/{}/artifacts:upload)",
                d.metadata.namespace
            ),
        ));
    }
    Ok(())
}

/// `logging`: a known profile and log4j2 levels.
fn check_logging(d: &Deployment) -> Result<()> {
    let Some(l) = &d.spec.template.spec.logging else {
        return Ok(());
    };
    if let Some(p) = &l.logging_profile {
        if !template::LOGGING_PROFILES.contains(&p.as_str()) {
            return Err(Invalid::field(
                "spec.template.spec.logging.loggingProfile",
                format!(
                    "{p:?} is unknown: use {}",
                    template::LOGGING_PROFILES.join(", ")
                ),
            ));
        }
    }
    for (logger, level) in &l.log4j_loggers {
        if !LOG_LEVELS.contains(&level.to_ascii_uppercase().as_str()) {
            return Err(Invalid::field(
                format!("spec.template.spec.logging.log4jLoggers[\"{logger}\"]"),
                format!(
                    "level {level:?} is invalid: use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or OFF"
                ),
            ));
        }
    }
    Ok(())
}

/// `kubernetes.pods.envVars`: names a process environment can carry, values without NUL.
fn check_env_vars(d: &Deployment) -> Result<()> {
    let Some(k) = &d.spec.template.spec.kubernetes else {
        return Ok(());
    };
    for (i, e) in k.pods.env_vars.iter().enumerate() {
        let name_ok = e.name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
            && e.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !name_ok {
            return Err(Invalid::field(
                format!("spec.template.spec.kubernetes.pods.envVars[{i}].name"),
                format!(
                    "{:?} is invalid: use letters, digits, '_', '-' and '.', not starting with a digit",
                    e.name
                ),
            ));
        }
        if e.value.contains('\0') {
            return Err(Invalid::field(
                format!("spec.template.spec.kubernetes.pods.envVars[{i}].value"),
                format!("of {} must not contain a NUL character", e.name),
            ));
        }
    }
    Ok(())
}

/// Checks the templates of a deployment (syntax, known placeholders, the rendering bounds)
/// by rendering them with sample values. Rendering is bounded by the template fuel but not
/// free: callers run it outside the store's lock.
pub fn check_templates(d: &Deployment) -> Result<()> {
    let ts = &d.spec.template.spec;
    if let Some(args) = &ts.artifact.main_args {
        template::check(args).map_err(Invalid::MainArgs)?;
        template::split_args(args).map_err(Invalid::MainArgs)?;
    }
    let sample = template::Context {
        namespace: "ns".into(),
        deployment_id: "id".into(),
        deployment_name: "name".into(),
        job_id: "job".into(),
    };
    template::render_config(&ts.flink_configuration, &sample).map_err(Invalid::Template)?;
    if let Some(l) = &ts.logging {
        if l.log4j2_configuration_template.is_some() {
            template::render_log4j(Some(l), &sample).map_err(Invalid::Template)?;
        }
    }
    Ok(())
}

/// The built-in defaults every namespace starts with.
pub fn builtin_defaults() -> Value {
    json!({
        "spec": {
            "state": "CANCELLED",
            "upgradeStrategy": {"kind": "STATEFUL"},
            "restoreStrategy": {"kind": "LATEST_SAVEPOINT", "allowNonRestoredState": false},
            "deploymentTargetName": crate::LOCAL_TARGET,
            "maxSavepointCreationAttempts": 4,
            "maxJobCreationAttempts": 4,
            "template": {"spec": {"parallelism": 1, "flinkConfiguration": {}}}
        }
    })
}

/// Deep merge: values of `over` win; objects merge recursively.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// A whole Deployment document as the user sent it, over the built-in defaults and the
/// namespace's own (`namespace_defaults`), not yet decoded.
pub fn over_defaults(namespace_defaults: Option<&Value>, document: &Value) -> Value {
    let mut merged = builtin_defaults();
    if let Some(def) = namespace_defaults {
        deep_merge(&mut merged, def);
    }
    deep_merge(&mut merged, document);
    merged
}

/// Places a decoded document in the namespace `ns` it was sent to: it must be a
/// Deployment, and a namespace it names must be that one.
pub fn place_in(d: &mut Deployment, ns: &str) -> Result<()> {
    if d.kind != "Deployment" {
        return Err(Invalid::field(
            "kind",
            format!("{:?} must be Deployment", d.kind),
        ));
    }
    if !d.metadata.namespace.is_empty() && d.metadata.namespace != ns {
        return Err(Invalid::field(
            "metadata.namespace",
            format!(
                "{:?} does not match the namespace {ns:?} of the URL",
                d.metadata.namespace
            ),
        ));
    }
    d.metadata.namespace = ns.to_string();
    Ok(())
}

/// What [`check_templates`] looks at: equal inputs render alike.
pub type TemplateInputs<'a> = (
    Option<&'a String>,
    &'a BTreeMap<String, String>,
    Option<&'a crate::model::Logging>,
);

/// The inputs of [`check_templates`] for `d`.
pub fn template_inputs(d: &Deployment) -> TemplateInputs<'_> {
    let ts = &d.spec.template.spec;
    (
        ts.artifact.main_args.as_ref(),
        &ts.flink_configuration,
        ts.logging.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::DeploymentTarget, store::Tables};

    /// `ns` with its `local` target and a `session` target without a savepoint directory.
    fn tables() -> Tables {
        let mut t = Tables::default();
        let local = crate::domain::namespaces::local_target("ns");
        t.targets
            .insert(("ns".into(), crate::LOCAL_TARGET.into()), local);
        let session: DeploymentTarget = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"type": "session", "restUrl": "http://127.0.0.1:8081"}
        }))
        .unwrap();
        t.targets.insert(("ns".into(), "s".into()), session);
        t
    }

    /// A document over the built-in defaults, placed in `ns`.
    fn deployment(doc: Value) -> Deployment {
        let base = json!({
            "metadata": {"name": "orders"},
            "spec": {"template": {"spec": {"artifact": {"kind": "JAR", "jarUri": "file:///a/job.jar"}}}}
        });
        let mut merged = over_defaults(None, &base);
        deep_merge(&mut merged, &doc);
        let mut d: Deployment = serde_json::from_value(merged).unwrap();
        place_in(&mut d, "ns").unwrap();
        d
    }

    fn refusal(doc: Value) -> String {
        validate(&deployment(doc), &tables())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_valid_document_passes_and_each_refusal_names_its_field() {
        validate(&deployment(json!({})), &tables()).unwrap();
        let cases = [
            (
                json!({"spec": {"template": {"spec": {"parallelism": 0}}}}),
                "spec.template.spec.parallelism must be ≥ 1 (got 0)",
            ),
            (
                json!({"spec": {"maxJobCreationAttempts": 0}}),
                "spec.maxJobCreationAttempts must be ≥ 1",
            ),
            (
                json!({"spec": {"template": {"spec": {"artifact": {"kind": "PYTHON"}}}}}),
                "spec.template.spec.artifact.kind \"PYTHON\" is not supported: use JAR",
            ),
            (
                json!({"spec": {"template": {"spec": {"artifact": {"jarUri": "s3://b/j.jar"}}}}}),
                "spec.template.spec.artifact.jarUri \"s3://b/j.jar\" is not supported: use file://, http:// or https:// (upload JARs to /artifacts/v1/namespaces/ns/artifacts:upload)",
            ),
            (
                json!({"spec": {"template": {"spec": {"logging": {"log4jLoggers": {"a.b": "LOUD"}}}}}}),
                "spec.template.spec.logging.log4jLoggers[\"a.b\"] level \"LOUD\" is invalid: use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or OFF",
            ),
            (
                json!({"spec": {"savepointSchedule": {"cron": "0 0 * * * *", "retain": 0}}}),
                "spec.savepointSchedule.retain must be ≥ 1",
            ),
            (
                json!({"spec": {"deploymentTargetName": "nowhere"}}),
                "spec.deploymentTargetName: no deployment target named \"nowhere\" in namespace ns",
            ),
            (
                json!({"spec": {"deploymentTargetName": "s", "state": "SUSPENDED"}}),
                "spec.state SUSPENDED needs a savepoint directory",
            ),
        ];
        for (doc, want) in cases {
            let got = refusal(doc.clone());
            assert!(got.starts_with(want), "{doc}: {got}");
        }
    }

    #[test]
    fn templates_and_placement_name_their_fields() {
        let d = deployment(
            json!({"spec": {"template": {"spec": {"flinkConfiguration": {"k": "{{ nope }}"}}}}}),
        );
        let e = check_templates(&d).unwrap_err();
        assert!(matches!(e, Invalid::Template(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("spec.template.spec.flinkConfiguration[\"k\"]"),
            "{e}"
        );
        let d = deployment(
            json!({"spec": {"template": {"spec": {"artifact": {"mainArgs": "--a \"open"}}}}}),
        );
        let e = check_templates(&d).unwrap_err().to_string();
        assert!(
            e.starts_with("spec.template.spec.artifact.mainArgs: "),
            "{e}"
        );
        let mut d = deployment(json!({}));
        d.metadata.namespace = "other".into();
        assert_eq!(
            place_in(&mut d, "ns").unwrap_err().to_string(),
            "metadata.namespace \"other\" does not match the namespace \"ns\" of the URL"
        );
    }
}
