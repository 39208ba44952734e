//! What makes a DeploymentTarget valid. VVP's target documents carry no `spec.type` (every
//! VVP target is a Kubernetes namespace); here `spec.type` says which kind runs the jobs.

use serde_json::Value;

use super::{names::is_dns_label, Invalid, Result};
use crate::model::{DeploymentTarget, TargetKind};

/// Before decoding: a target document with a `spec` must say where its jobs run.
pub fn check_kind_given(document: &Value) -> Result<()> {
    if document.pointer("/spec/type").is_none()
        && document.pointer("/spec/kubernetes").is_none()
        && document.get("spec").is_some_and(Value::is_object)
    {
        return Err(Invalid::field(
            "spec.kubernetes.namespace or spec.type",
            "is required: a Kubernetes namespace the jobs run in (VVP's shape), or type local (a Flink cluster per job on the manager's host) or session (spec.restUrl of an existing cluster)",
        ));
    }
    Ok(())
}

/// Checks a decoded target: what each kind needs and what only some kinds may have.
pub fn validate(target: &DeploymentTarget) -> Result<()> {
    match target.spec.kind {
        TargetKind::Session => {
            let url = target.spec.rest_url.as_deref().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Invalid::field(
                    "spec.restUrl",
                    "must be the session cluster's REST URL (http:// or https://) for a session target",
                ));
            }
        }
        TargetKind::Local => {
            if target.spec.rest_url.is_some() {
                return Err(Invalid::field(
                    "spec.restUrl",
                    "is only allowed for session targets",
                ));
            }
        }
        TargetKind::Kubernetes => {
            if target.spec.rest_url.is_some() {
                return Err(Invalid::field(
                    "spec.restUrl",
                    "is only allowed for session targets; a Kubernetes target's Flink REST API is its JobManager Service (spec.kubernetes.flinkRest: service or proxy)",
                ));
            }
            let Some(k) = &target.spec.kubernetes else {
                return Err(Invalid::field(
                    "spec.kubernetes.namespace",
                    "is required for a Kubernetes target",
                ));
            };
            if !is_dns_label(&k.namespace) {
                return Err(Invalid::field(
                    "spec.kubernetes.namespace",
                    format!(
                        "{:?} is not a Kubernetes namespace name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
                        k.namespace
                    ),
                ));
            }
            if k.context.as_deref().is_some_and(str::is_empty) {
                return Err(Invalid::field(
                    "spec.kubernetes.context",
                    "must not be empty (omit it for the current context)",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(doc: Value) -> Result<()> {
        check_kind_given(&doc)?;
        validate(&serde_json::from_value(doc).unwrap())
    }

    #[test]
    fn each_kind_is_checked_and_the_refusal_names_the_field() {
        check(json!({"metadata": {"name": "ack"}, "spec": {"kubernetes": {"namespace": "flink-jobs"}}})).unwrap();
        check(json!({"metadata": {"name": "s"}, "spec": {"type": "session", "restUrl": "https://f:8081"}})).unwrap();
        let cases = [
            (
                json!({"spec": {}}),
                "spec.kubernetes.namespace or spec.type is required",
            ),
            (
                json!({"spec": {"type": "session"}}),
                "spec.restUrl must be the session cluster's REST URL",
            ),
            (
                json!({"spec": {"type": "local", "restUrl": "http://x"}}),
                "spec.restUrl is only allowed for session targets",
            ),
            (
                json!({"spec": {"kubernetes": {"namespace": "Flink_Jobs"}}}),
                "spec.kubernetes.namespace \"Flink_Jobs\" is not a Kubernetes namespace name",
            ),
            (
                json!({"spec": {"kubernetes": {"namespace": "a", "context": ""}}}),
                "spec.kubernetes.context must not be empty",
            ),
        ];
        for (doc, want) in cases {
            let got = check(doc.clone()).unwrap_err().to_string();
            assert!(got.starts_with(want), "{doc}: {got}");
        }
    }
}
