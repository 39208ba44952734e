//! What job-manager may do in a target namespace, listed once: the Kubernetes client uses
//! [`PERMISSIONS`] (and [`allows`]) to name a missing permission, and `job-manager rbac`
//! turns the same list into the Role and RoleBinding a new target namespace needs.

use k8s_openapi::{
    api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    Resource,
};

/// The manager's namespace in `deploy/kubernetes`.
pub const DEFAULT_MANAGER_NAMESPACE: &str = "flink-suite";
/// The manager's service account in `deploy/kubernetes`.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "job-manager";
/// Name of the Role and RoleBinding in a target namespace.
pub const ROLE_NAME: &str = "flink-suite-job-manager";

/// One API group and resource with the verbs the manager uses on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource, or `resource/subresource`.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Why the manager needs it (printed in the Role as a comment-like annotation).
    pub why: &'static str,
}

const MANAGE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// Every permission the manager uses in a target namespace. Server-side apply is `patch`;
/// watchers are `list` + `watch`.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "",
        resource: "configmaps",
        verbs: MANAGE,
        why: "Flink and log4j configuration of each job",
    },
    Permission {
        group: "",
        resource: "services",
        verbs: MANAGE,
        why: "the JobManager Service of each job (rpc, blob, rest)",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get", "create", "patch", "delete"],
        why: "the per-job token the pods download the JAR with",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        verbs: MANAGE,
        why: "the JobManager of each job",
    },
    Permission {
        group: "apps",
        resource: "deployments",
        verbs: MANAGE,
        why: "the TaskManagers of each job",
    },
    Permission {
        group: "",
        resource: "pods",
        verbs: &["get", "list", "watch"],
        why: "observe the Flink pods (Pending, image pull, crash loops, OOMKilled)",
    },
    Permission {
        group: "",
        resource: "pods/log",
        verbs: &["get"],
        why: "the last lines of a failed JobManager for the failure message",
    },
    Permission {
        group: "",
        resource: "events",
        verbs: &["get", "list", "watch"],
        why: "the scheduler's and kubelet's messages about the pods",
    },
    Permission {
        group: "",
        resource: "services/proxy",
        verbs: &["get", "create", "patch"],
        why: "Flink REST through the API server (kubernetes.flinkRest: proxy): GET, POST, PATCH",
    },
];

/// Whether [`PERMISSIONS`] grants `verb` on `resource` (`resource/subresource`) of `group`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS
        .iter()
        .any(|p| p.group == group && p.resource == resource && p.verbs.contains(&verb))
}

/// Who gets the Role.
#[derive(Debug, Clone)]
pub struct Grantee<'a> {
    pub manager_namespace: &'a str,
    pub service_account: &'a str,
}

impl Default for Grantee<'_> {
    fn default() -> Self {
        Self {
            manager_namespace: DEFAULT_MANAGER_NAMESPACE,
            service_account: DEFAULT_SERVICE_ACCOUNT,
        }
    }
}

fn meta(namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(ROLE_NAME.into()),
        namespace: Some(namespace.into()),
        labels: Some(
            [
                (common::labels::PART_OF, common::labels::PART_OF_VALUE),
                (common::labels::MANAGED_BY, common::labels::MANAGED_BY_VALUE),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
        ..Default::default()
    }
}

/// The Role with [`PERMISSIONS`] in `namespace`.
pub fn role(namespace: &str) -> Role {
    Role {
        metadata: meta(namespace),
        rules: Some(
            PERMISSIONS
                .iter()
                .map(|p| PolicyRule {
                    api_groups: Some(vec![p.group.to_string()]),
                    resources: Some(vec![p.resource.to_string()]),
                    verbs: p.verbs.iter().map(|v| v.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// The RoleBinding of [`role`] to the manager's service account.
pub fn role_binding(namespace: &str, who: &Grantee<'_>) -> RoleBinding {
    RoleBinding {
        metadata: meta(namespace),
        role_ref: RoleRef {
            api_group: Role::GROUP.into(),
            kind: Role::KIND.into(),
            name: ROLE_NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: who.service_account.into(),
            namespace: Some(who.manager_namespace.into()),
            ..Default::default()
        }]),
    }
}

/// The Role and RoleBinding as a YAML stream, with a comment per permission.
pub fn to_yaml_stream(namespace: &str, who: &Grantee<'_>) -> Result<String, serde_yaml::Error> {
    let mut out = format!(
        "# Permissions job-manager ({}/{}) needs in the target namespace {namespace}:\n",
        who.manager_namespace, who.service_account
    );
    for p in PERMISSIONS {
        let group = if p.group.is_empty() { "core" } else { p.group };
        out.push_str(&format!(
            "#   {group} {}: {} ({})\n",
            p.resource,
            p.verbs.join(", "),
            p.why
        ));
    }
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(&role(namespace))?);
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(&role_binding(namespace, who))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_grants_exactly_the_listed_permissions() {
        let r = role("flink-jobs");
        let rules = r.rules.unwrap();
        assert_eq!(rules.len(), PERMISSIONS.len());
        for p in PERMISSIONS {
            let rule = rules
                .iter()
                .find(|r| r.resources.as_deref() == Some(&[p.resource.to_string()][..]))
                .unwrap();
            assert_eq!(rule.api_groups.as_deref(), Some(&[p.group.to_string()][..]));
            assert_eq!(rule.verbs, p.verbs);
        }
        assert!(allows("batch", "jobs", "patch"));
        assert!(allows("", "services/proxy", "create"));
        assert!(!allows("", "pods", "delete"));
        assert!(!allows("", "namespaces", "get"));
    }
}
