//! The pods of a job: VVP's pod options (`kubernetes.pods`), the pod templates
//! (`kubernetes.jobManagerPodTemplate`/`taskManagerPodTemplate`) merged over the generated
//! pods, and the suite's labels, which always win.

use std::collections::BTreeMap;

use common::labels::{Component, FlinkPodLabels, COMPONENT};
use k8s_openapi::{
    api::core::v1::{
        Affinity, EnvVar, LocalObjectReference, PodSecurityContext, PodTemplateSpec, Toleration,
        Volume, VolumeMount,
    },
    DeepMerge,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::{Error, Result};
use crate::model::KubernetesSpec;

/// The name of the Flink container in every pod (the name VVP's and Flink's pod templates
/// use for it).
pub const MAIN_CONTAINER: &str = "flink-main-container";

const K8S: &str = "spec.template.spec.kubernetes";

/// Who a job's objects belong to (what the suite's labels say).
#[derive(Debug, Clone)]
pub struct Identity {
    pub namespace: String,
    pub deployment_id: String,
    pub deployment_name: String,
    pub job_id: String,
}

impl Identity {
    /// The suite's labels for an object; `component` for the objects of one Flink process.
    pub fn labels(&self, component: Option<Component>) -> BTreeMap<String, String> {
        let mut labels = FlinkPodLabels {
            namespace: self.namespace.clone(),
            deployment_id: self.deployment_id.clone(),
            deployment_name: self.deployment_name.clone(),
            job_id: Some(self.job_id.clone()),
            component: component.unwrap_or(Component::JobManager),
        }
        .to_labels();
        if component.is_none() {
            labels.remove(COMPONENT);
        }
        labels
    }

    /// What selects the pods of one process of this job.
    pub fn selector(&self, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                common::labels::PART_OF.to_string(),
                common::labels::PART_OF_VALUE.to_string(),
            ),
            (common::labels::JOB_ID.to_string(), self.job_id.clone()),
            (COMPONENT.to_string(), component.as_str().to_string()),
        ])
    }
}

/// `kubernetes.pods`, checked and in Kubernetes types.
#[derive(Debug, Clone, Default)]
pub struct PodOptions {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_selector: BTreeMap<String, String>,
    pub affinity: Option<Affinity>,
    pub tolerations: Vec<Toleration>,
    pub volumes: Vec<Volume>,
    pub volume_mounts: Vec<VolumeMount>,
    pub env: Vec<EnvVar>,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub security_context: Option<PodSecurityContext>,
}

/// The checked pod customisation of a deployment: options or templates, never both.
#[derive(Debug, Clone, Default)]
pub struct PodCustomisation {
    pub options: PodOptions,
    pub jobmanager_template: Option<PodTemplateSpec>,
    pub taskmanager_template: Option<PodTemplateSpec>,
    /// `kubernetes.labels`: on the Jobs, Deployments and Services.
    pub object_labels: BTreeMap<String, String>,
}

/// Whether `kubernetes.pods` holds anything.
fn pods_given(k: &KubernetesSpec) -> bool {
    k.pods != crate::model::PodSpec::default()
}

/// `kubernetes.pods` and the pod templates are exclusive, as in VVP.
pub fn check_exclusive(k: &KubernetesSpec) -> Result<()> {
    let templates = match (
        k.job_manager_pod_template.is_some(),
        k.task_manager_pod_template.is_some(),
    ) {
        (false, false) => return Ok(()),
        (true, false) => "jobManagerPodTemplate",
        (false, true) => "taskManagerPodTemplate",
        (true, true) => "jobManagerPodTemplate/taskManagerPodTemplate",
    };
    if pods_given(k) {
        return Err(Error::PodsAndTemplates { templates });
    }
    Ok(())
}

/// Checks `kubernetes` of a deployment and converts it to Kubernetes types.
pub fn customisation(k: Option<&KubernetesSpec>) -> Result<PodCustomisation> {
    let Some(k) = k else {
        return Ok(PodCustomisation::default());
    };
    check_exclusive(k)?;
    let p = &k.pods;
    let base = format!("{K8S}.pods");
    check_labels(&format!("{K8S}.labels"), &k.labels)?;
    check_labels(&format!("{base}.labels"), &p.labels)?;
    check_keys(&format!("{base}.annotations"), &p.annotations)?;
    check_keys(&format!("{base}.nodeSelector"), &p.node_selector)?;
    let env = p
        .env_vars
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if e.name.is_empty() || e.name.contains('=') {
                return Err(Error::Invalid {
                    field: format!("{base}.envVars[{i}].name"),
                    message: "must be a non-empty name without '='".into(),
                });
            }
            Ok(EnvVar {
                name: e.name.clone(),
                value: Some(e.value.clone()),
                value_from: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let options = PodOptions {
        labels: p.labels.clone(),
        annotations: p.annotations.clone(),
        node_selector: p.node_selector.clone(),
        affinity: p
            .affinity
            .as_ref()
            .map(|v| strict(v, &format!("{base}.affinity")))
            .transpose()?,
        tolerations: list(&base, "tolerations", &p.tolerations)?,
        volumes: list(&base, "volumes", &p.volumes)?,
        volume_mounts: list(&base, "volumeMounts", &p.volume_mounts)?,
        env,
        image_pull_secrets: list(&base, "imagePullSecrets", &p.image_pull_secrets)?,
        security_context: p
            .security_context
            .as_ref()
            .map(|v| strict(v, &format!("{base}.securityContext")))
            .transpose()?,
    };
    let template = |v: &Option<Value>, name: &str| -> Result<Option<PodTemplateSpec>> {
        let Some(v) = v else { return Ok(None) };
        let field = format!("{K8S}.{name}");
        let t: PodTemplateSpec = strict(v, &field)?;
        if let Some(labels) = t.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
            check_labels(&format!("{field}.metadata.labels"), labels)?;
        }
        Ok(Some(t))
    };
    Ok(PodCustomisation {
        options,
        jobmanager_template: template(&k.job_manager_pod_template, "jobManagerPodTemplate")?,
        taskmanager_template: template(&k.task_manager_pod_template, "taskManagerPodTemplate")?,
        object_labels: k.labels.clone(),
    })
}

fn list<T: DeserializeOwned + Serialize>(
    base: &str,
    name: &str,
    items: &[Value],
) -> Result<Vec<T>> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| strict(v, &format!("{base}.{name}[{i}]")))
        .collect()
}

/// Notes for user labels the suite's labels replace (they are kept, with the suite's value).
pub fn overridden_labels(custom: &PodCustomisation, who: &Identity) -> Vec<String> {
    let template_labels = |t: &Option<PodTemplateSpec>| {
        t.as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    };
    let mut notes = Vec::new();
    for (field, labels, component) in [
        ("kubernetes.labels", custom.object_labels.clone(), None),
        (
            "kubernetes.pods.labels",
            custom.options.labels.clone(),
            None,
        ),
        (
            "kubernetes.jobManagerPodTemplate.metadata.labels",
            template_labels(&custom.jobmanager_template),
            Some(Component::JobManager),
        ),
        (
            "kubernetes.taskManagerPodTemplate.metadata.labels",
            template_labels(&custom.taskmanager_template),
            Some(Component::TaskManager),
        ),
    ] {
        let system = who.labels(Some(component.unwrap_or(Component::JobManager)));
        for (k, v) in &labels {
            let Some(ours) = system.get(k) else { continue };
            // Without a component, the component label differs between the two processes.
            if ours != v || (component.is_none() && k == COMPONENT) {
                notes.push(format!(
                    "{field}[\"{k}\"] is set by job-manager; {v:?} was replaced by its value"
                ));
            }
        }
    }
    notes
}

/// Applies the pod options to a generated pod (`MAIN_CONTAINER` gets the mounts and the
/// environment).
pub fn apply_options(pod: &mut PodTemplateSpec, o: &PodOptions) {
    let meta = pod.metadata.get_or_insert_with(Default::default);
    if !o.labels.is_empty() {
        meta.labels
            .get_or_insert_with(Default::default)
            .extend(o.labels.clone());
    }
    if !o.annotations.is_empty() {
        meta.annotations
            .get_or_insert_with(Default::default)
            .extend(o.annotations.clone());
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if !o.node_selector.is_empty() {
        spec.node_selector = Some(o.node_selector.clone());
    }
    if o.affinity.is_some() {
        spec.affinity = o.affinity.clone();
    }
    if !o.tolerations.is_empty() {
        spec.tolerations = Some(o.tolerations.clone());
    }
    if !o.volumes.is_empty() {
        spec.volumes
            .get_or_insert_with(Default::default)
            .extend(o.volumes.iter().cloned());
    }
    if !o.image_pull_secrets.is_empty() {
        spec.image_pull_secrets = Some(o.image_pull_secrets.clone());
    }
    if o.security_context.is_some() {
        spec.security_context = o.security_context.clone();
    }
    if let Some(main) = spec
        .containers
        .iter_mut()
        .find(|c| c.name == MAIN_CONTAINER)
    {
        if !o.volume_mounts.is_empty() {
            main.volume_mounts
                .get_or_insert_with(Default::default)
                .extend(o.volume_mounts.iter().cloned());
        }
        if !o.env.is_empty() {
            main.env
                .get_or_insert_with(Default::default)
                .extend(o.env.iter().cloned());
        }
    }
}

/// Merges a user's pod template over a generated pod: the template's values win, lists
/// keyed by name (containers, volumes, env) are merged item by item.
pub fn merge_template(pod: &mut PodTemplateSpec, template: &PodTemplateSpec) {
    pod.merge_from(template.clone());
}

/// Puts the suite's labels on a pod last, so no option or template can change them.
pub fn enforce_labels(pod: &mut PodTemplateSpec, system: &BTreeMap<String, String>) {
    pod.metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .extend(system.clone());
}

/// Deserializes a Kubernetes object strictly: a field Kubernetes does not know is an error
/// naming it (k8s-openapi itself ignores unknown fields, which would hide typos).
pub fn strict<T: DeserializeOwned + Serialize>(v: &Value, field: &str) -> Result<T> {
    let parsed: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Error::Invalid {
            field: if path == "." || path.is_empty() {
                field.to_string()
            } else {
                format!("{field}.{path}")
            },
            message: inner.to_string(),
        }
    })?;
    let back = serde_json::to_value(&parsed).map_err(|e| Error::Invalid {
        field: field.to_string(),
        message: e.to_string(),
    })?;
    if let Some(unknown) = first_unknown(v, &back, field) {
        return Err(Error::Invalid {
            field: unknown,
            message: "unknown field (not part of the Kubernetes object)".into(),
        });
    }
    Ok(parsed)
}

/// The path of the first key of `given` that `parsed` lost.
fn first_unknown(given: &Value, parsed: &Value, path: &str) -> Option<String> {
    match (given, parsed) {
        (Value::Object(g), Value::Object(p)) => g.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            match p.get(k) {
                None if v.is_null() => None,
                None => Some(here),
                Some(pv) => first_unknown(v, pv, &here),
            }
        }),
        (Value::Array(g), Value::Array(p)) => g
            .iter()
            .zip(p)
            .enumerate()
            .find_map(|(i, (gv, pv))| first_unknown(gv, pv, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn check_keys(field: &str, m: &BTreeMap<String, String>) -> Result<()> {
    for k in m.keys() {
        if let Err(why) = check_qualified_name(k) {
            return Err(Error::Invalid {
                field: format!("{field}[\"{k}\"]"),
                message: format!("invalid key: {why}"),
            });
        }
    }
    Ok(())
}

/// Label keys and values as Kubernetes accepts them.
pub fn check_labels(field: &str, m: &BTreeMap<String, String>) -> Result<()> {
    check_keys(field, m)?;
    for (k, v) in m {
        let ok = v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && (v.is_empty()
                || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.ends_with(|c: char| c.is_ascii_alphanumeric())));
        if !ok {
            return Err(Error::Invalid {
                field: format!("{field}[\"{k}\"]"),
                message: format!(
                    "{v:?} is not a valid label value (at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending alphanumeric)"
                ),
            });
        }
    }
    Ok(())
}

/// `[prefix/]name`: prefix a DNS subdomain, name ≤ 63 of `[A-Za-z0-9._-]`, alphanumeric ends.
fn check_qualified_name(k: &str) -> std::result::Result<(), &'static str> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err("the prefix before '/' must be a lower-case DNS subdomain");
        }
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("the name must be 1-63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending alphanumeric")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_parsing_names_unknown_and_wrong_fields() {
        let err = strict::<Toleration>(
            &json!({"key": "k", "operater": "Exists"}),
            "spec.template.spec.kubernetes.pods.tolerations[0]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.template.spec.kubernetes.pods.tolerations[0].operater"),
            "{err}"
        );
        let err = strict::<PodTemplateSpec>(
            &json!({"spec": {"containers": [{"name": "x", "resources": {"limits": {"cpu": 1}}, "imagePullPolicy": 3}]}}),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.spec.containers[0].imagePullPolicy"),
            "{err}"
        );
        let ok: PodTemplateSpec = strict(
            &json!({"metadata": {"creationTimestamp": null, "labels": {"a": "b"}}, "spec": {"containers": []}}),
            "t",
        )
        .unwrap();
        assert_eq!(ok.metadata.unwrap().labels.unwrap()["a"], "b");
    }

    #[test]
    fn label_checks_name_the_label() {
        let bad = BTreeMap::from([("team".to_string(), "pay ments".to_string())]);
        let err = check_labels("x.labels", &bad).unwrap_err().to_string();
        assert!(err.contains("x.labels[\"team\"]"), "{err}");
        let bad = BTreeMap::from([("Example.com/a".to_string(), "v".to_string())]);
        assert!(check_labels("x", &bad).is_err());
        let good = BTreeMap::from([
            ("example.com/team".to_string(), "payments".to_string()),
            ("empty".to_string(), String::new()),
        ]);
        check_labels("x", &good).unwrap();
    }
}
