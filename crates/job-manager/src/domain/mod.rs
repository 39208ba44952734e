//! Domain rules shared by the API, the start-up, the CLI and the controller, below `api/`
//! and above the store: what makes a deployment or a deployment target valid, the built-in
//! deployment defaults, names, what creating a namespace writes and how token secrets are
//! kept. Nothing here knows HTTP: rules answer with [`Invalid`], which names the field, and
//! the API maps it to its envelope (400).
//!
//! - [`deployments`]: a Deployment document checked field by field, its templates, the
//!   defaults it is placed over.
//! - [`targets`]: a DeploymentTarget document (local, session or Kubernetes) checked.
//! - [`names`]: DNS-label names (namespaces, targets, tokens, Kubernetes namespaces).
//! - [`namespaces`]: a new namespace comes with its `local` target.
//! - [`tokens`]: API token secrets are kept as hashes.
//! - [`versions`]: a write naming a stale `resourceVersion` is refused ([`versions::Stale`]).

pub mod deployments;
pub mod names;
pub mod namespaces;
pub mod targets;
pub mod tokens;
pub mod versions;

/// Why a document was refused. Every message starts with the field it is about, as the user
/// wrote it (`spec.template.spec.parallelism must be ≥ 1 (got 0)`).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// `field` breaks the rule stated after it.
    #[error("{field} {rule}")]
    Field { field: String, rule: String },
    /// `field` refers to something that does not exist.
    #[error("{field}: {missing}")]
    Reference {
        field: &'static str,
        missing: String,
    },
    /// A template below `spec.template.spec` does not render; the error names the field
    /// (`flinkConfiguration["k"]: …`).
    #[error("spec.template.spec.{0}")]
    Template(#[source] crate::template::Error),
    /// `mainArgs` does not render or does not split into arguments.
    #[error("spec.template.spec.artifact.mainArgs: {0}")]
    MainArgs(#[source] crate::template::Error),
    /// A Flink configuration key that cannot be written to Flink's configuration.
    #[error(transparent)]
    ConfigKey(#[from] crate::target::Error),
    /// Pod options (`spec.template.spec.kubernetes…`) that a Kubernetes target cannot use.
    #[error(transparent)]
    Pods(#[from] crate::kubernetes::Error),
}

impl Invalid {
    /// [`Invalid::Field`]: `field` and the rule it breaks.
    pub fn field(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// A domain rule's result.
pub type Result<T, E = Invalid> = std::result::Result<T, E>;
