//! Settings of a deployment that a Kubernetes target accepts but does not apply, for the
//! API to report (`warnings`, `Warning` headers, an event; see `api::compat`).
//!
//! Two sources, both from what the target actually does:
//! - Flink's own options for its *native* Kubernetes integration (`kubernetes.container.image`,
//!   `kubernetes.jobmanager.cpu`, `kubernetes.pod-template-file…`, …) in
//!   `flinkConfiguration`: the target runs Flink in standalone application mode and builds
//!   the pods itself, so Flink never reads them; the warning names the setting that does
//!   the job here.
//! - What the object builder replaced or ignored ([`super::JobObjects::notes`]): keys of
//!   `flinkConfiguration` the manager sets (addresses, ports), memory sizes overridden by
//!   `resources`, user labels replaced by the suite's, a log4j2 template that is not in
//!   properties format. The builder runs on the deployment as it would for a start.

use uuid::Uuid;

use super::{build, ArtifactStore, JobRequest, Settings};
use crate::model::Deployment;

/// One setting without effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEffect {
    /// The field path, e.g. `spec.template.spec.flinkConfiguration["rest.port"]`.
    pub field: String,
    /// Why, and what applies instead.
    pub why: String,
}

/// Flink options of its native Kubernetes integration, with what to use here instead.
const NATIVE_OPTIONS: &[(&str, &str)] = &[
    ("kubernetes.container.image", IMAGE),
    ("kubernetes.container.image.ref", IMAGE),
    (
        "kubernetes.container.image.pull-policy",
        "set imagePullPolicy in kubernetes.jobManagerPodTemplate/taskManagerPodTemplate",
    ),
    (
        "kubernetes.container.image.pull-secrets",
        "use spec.template.spec.kubernetes.pods.imagePullSecrets",
    ),
    ("kubernetes.jobmanager.cpu", JM_CPU),
    ("kubernetes.jobmanager.cpu.amount", JM_CPU),
    ("kubernetes.jobmanager.cpu.limit-factor", JM_CPU),
    (
        "kubernetes.jobmanager.memory.limit-factor",
        "the pods' memory limit is spec.template.spec.resources.jobmanager.memory",
    ),
    ("kubernetes.taskmanager.cpu", TM_CPU),
    ("kubernetes.taskmanager.cpu.amount", TM_CPU),
    ("kubernetes.taskmanager.cpu.limit-factor", TM_CPU),
    (
        "kubernetes.taskmanager.memory.limit-factor",
        "the pods' memory limit is spec.template.spec.resources.taskmanager.memory",
    ),
    ("kubernetes.jobmanager.labels", LABELS),
    ("kubernetes.taskmanager.labels", LABELS),
    ("kubernetes.jobmanager.annotations", ANNOTATIONS),
    ("kubernetes.taskmanager.annotations", ANNOTATIONS),
    ("kubernetes.jobmanager.node-selector", NODE_SELECTOR),
    ("kubernetes.taskmanager.node-selector", NODE_SELECTOR),
    ("kubernetes.jobmanager.tolerations", TOLERATIONS),
    ("kubernetes.taskmanager.tolerations", TOLERATIONS),
    ("kubernetes.pod-template-file", TEMPLATES),
    ("kubernetes.pod-template-file.default", TEMPLATES),
    ("kubernetes.pod-template-file.jobmanager", TEMPLATES),
    ("kubernetes.pod-template-file.taskmanager", TEMPLATES),
    ("kubernetes.service-account", SERVICE_ACCOUNT),
    ("kubernetes.jobmanager.service-account", SERVICE_ACCOUNT),
    ("kubernetes.taskmanager.service-account", SERVICE_ACCOUNT),
    (
        "kubernetes.rest-service.exposed.type",
        "job-manager creates a ClusterIP Service; reach Flink's UI through job-manager's console or the target's flinkRest: proxy",
    ),
    (
        "kubernetes.jobmanager.replicas",
        "one JobManager runs per job; with high-availability.type: kubernetes it is restarted",
    ),
    (
        "kubernetes.secrets",
        "mount Secrets with spec.template.spec.kubernetes.pods.volumes and volumeMounts",
    ),
    (
        "kubernetes.env.secretKeyRef",
        "use spec.template.spec.kubernetes.pods.envVars (valueFrom.secretKeyRef)",
    ),
    (
        "kubernetes.hadoop.conf.config-map.name",
        "mount the ConfigMap with spec.template.spec.kubernetes.pods.volumes and volumeMounts",
    ),
    (
        "kubernetes.jobmanager.owner.reference",
        "job-manager sets the owner references of a job's objects itself",
    ),
];

const IMAGE: &str = "use spec.template.spec.artifact.flinkImageRegistry/flinkImageRepository/flinkImageTag or flinkVersion";
const JM_CPU: &str = "use spec.template.spec.resources.jobmanager.cpu";
const TM_CPU: &str = "use spec.template.spec.resources.taskmanager.cpu";
const LABELS: &str = "use spec.template.spec.kubernetes.pods.labels";
const ANNOTATIONS: &str = "use spec.template.spec.kubernetes.pods.annotations";
const NODE_SELECTOR: &str = "use spec.template.spec.kubernetes.pods.nodeSelector";
const TOLERATIONS: &str = "use spec.template.spec.kubernetes.pods.tolerations";
const TEMPLATES: &str =
    "use spec.template.spec.kubernetes.jobManagerPodTemplate/taskManagerPodTemplate";
const SERVICE_ACCOUNT: &str =
    "set serviceAccountName in spec.template.spec.kubernetes.jobManagerPodTemplate/taskManagerPodTemplate";

/// Prefixes of Flink options only its native Kubernetes or YARN integrations read.
const NATIVE_PREFIXES: &[(&str, &str)] = &[
    (
        "containerized.master.env.",
        "only Flink's native Kubernetes and YARN integrations read it; use spec.template.spec.kubernetes.pods.envVars",
    ),
    (
        "containerized.taskmanager.env.",
        "only Flink's native Kubernetes and YARN integrations read it; use spec.template.spec.kubernetes.pods.envVars",
    ),
];

/// The settings of `d` a Kubernetes target in `target_namespace` does not apply.
pub fn no_effect(d: &Deployment, target_namespace: &str) -> Vec<NoEffect> {
    let mut out: Vec<NoEffect> = Vec::new();
    let conf = &d.spec.template.spec.flink_configuration;
    for key in conf.keys() {
        let field = format!("spec.template.spec.flinkConfiguration[{key:?}]");
        if let Some((_, instead)) = NATIVE_OPTIONS.iter().find(|(k, _)| k == key) {
            out.push(NoEffect {
                field,
                why: format!(
                    "Flink reads it only in its native Kubernetes mode; job-manager runs Flink in standalone application mode and builds the pods itself: {instead}"
                ),
            });
        } else if let Some((_, why)) = NATIVE_PREFIXES.iter().find(|(p, _)| key.starts_with(p)) {
            out.push(NoEffect {
                field,
                why: (*why).to_string(),
            });
        }
    }
    for note in builder_notes(d, target_namespace) {
        if let Some(n) = from_note(&note) {
            if !out.iter().any(|o| o.field == n.field) {
                out.push(n);
            }
        }
    }
    out
}

/// The builder's notes for `d`, built as for a start (placeholder ids; a JAR in the artifact
/// store as if the manager's URL were set). A deployment the builder refuses has none here:
/// its start fails with the builder's error.
fn builder_notes(d: &Deployment, target_namespace: &str) -> Vec<String> {
    let job_id = Uuid::nil();
    let req = JobRequest {
        deployment: d,
        target_namespace,
        job_id,
        flink_job_id: "0".repeat(32),
        restore: None,
        savepoint_dir: None,
        checkpoint_dir: None,
        metrics_gateway_url: None,
        artifact_store: Some(ArtifactStore {
            base_url: "http://job-manager".into(),
            token: None,
        }),
    };
    build(&req, &Settings::default())
        .map(|o| o.notes)
        .unwrap_or_default()
}

/// A builder note as a field and a reason: notes start with the field path below
/// `spec.template.spec` (`flinkConfiguration["k"] …`, `kubernetes.labels["k"] …`), or with
/// `logging:`.
fn from_note(note: &str) -> Option<NoEffect> {
    if let Some(rest) = note.strip_prefix("logging: ") {
        return Some(NoEffect {
            field: "spec.template.spec.logging.log4j2ConfigurationTemplate".into(),
            why: rest.to_string(),
        });
    }
    let end = note.find("] ")? + 1;
    let (field, rest) = note.split_at(end);
    let rest = rest.trim_start();
    let why = if rest.starts_with("is ") {
        format!("it {rest}")
    } else if rest.starts_with('(') {
        format!("its value {rest}")
    } else {
        rest.to_string()
    };
    Some(NoEffect {
        field: format!("spec.template.spec.{field}"),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(spec: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "orders", "namespace": "default"},
            "spec": {"template": {"spec": spec}}
        }))
        .expect("a deployment")
    }

    #[test]
    fn native_options_and_what_the_builder_replaced_are_reported() {
        let d = deployment(serde_json::json!({
            "artifact": {"kind": "JAR", "jarUri": "file:///data/artifacts/default/orders.jar"},
            "flinkConfiguration": {
                "kubernetes.container.image": "flink:1.17",
                "kubernetes.taskmanager.cpu.amount": "2",
                "containerized.master.env.TZ": "UTC",
                "rest.port": "9999",
                "execution.checkpointing.interval": "30s",
                "taskmanager.memory.process.size": "2g"
            },
            "resources": {"taskmanager": {"memory": "4g"}},
            "kubernetes": {"labels": {"app.kubernetes.io/part-of": "other"}}
        }));
        let found = no_effect(&d, "flink-jobs");
        let fields: Vec<&str> = found.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.flinkConfiguration[\"containerized.master.env.TZ\"]",
                "spec.template.spec.flinkConfiguration[\"kubernetes.container.image\"]",
                "spec.template.spec.flinkConfiguration[\"kubernetes.taskmanager.cpu.amount\"]",
                "spec.template.spec.kubernetes.labels[\"app.kubernetes.io/part-of\"]",
                "spec.template.spec.flinkConfiguration[\"taskmanager.memory.process.size\"]",
                "spec.template.spec.flinkConfiguration[\"rest.port\"]",
            ],
            "{found:#?}"
        );
        assert!(found[1].why.contains("flinkImageRegistry"), "{found:#?}");
        assert!(found[2].why.contains("resources.taskmanager.cpu"));
        assert!(found[3].why.contains("replaced"));
        assert!(found[4].why.contains("resources.taskmanager.memory"));
        assert!(found[5].why.starts_with("it is set by job-manager"));
    }

    #[test]
    fn a_deployment_that_uses_only_what_applies_has_no_warnings() {
        let d = deployment(serde_json::json!({
            "artifact": {"kind": "JAR", "jarUri": "https://repo.example.com/a.jar"},
            "flinkConfiguration": {"high-availability.type": "kubernetes", "kubernetes.cluster-id": "x"},
            "kubernetes": {"pods": {"labels": {"team": "a"}}}
        }));
        assert_eq!(no_effect(&d, "flink-jobs"), []);
    }
}
