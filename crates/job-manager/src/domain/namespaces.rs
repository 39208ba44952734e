//! Namespaces: every namespace comes with its `local` deployment target.

use chrono::Utc;
use serde_json::json;

use crate::{
    model::{DeploymentTarget, Namespace, TargetKind, TargetSpec},
    store::Write1,
};

/// The `local` target every namespace has.
pub fn local_target(ns: &str) -> DeploymentTarget {
    serde_json::from_value::<DeploymentTarget>(json!({
        "metadata": {"name": crate::LOCAL_TARGET, "namespace": ns, "resourceVersion": 1},
        "spec": {"type": "local"}
    }))
    .unwrap_or_else(|_| DeploymentTarget {
        kind: "DeploymentTarget".into(),
        api_version: "v1".into(),
        metadata: Default::default(),
        spec: TargetSpec {
            kind: TargetKind::Local,
            rest_url: None,
            savepoint_dir: None,
            kubernetes: None,
        },
    })
}

/// The writes that create a namespace with its `local` target.
pub fn new_namespace_writes(n: Namespace) -> Vec<Write1> {
    let mut target = local_target(&n.metadata.name);
    target.metadata.created_at = Some(Utc::now());
    target.metadata.id = Some(uuid::Uuid::new_v4());
    vec![Write1::Namespace(n), Write1::Target(target)]
}
