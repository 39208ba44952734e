//! The subcommands beside the server: `job-manager render` (the Kubernetes objects of a
//! deployment, without a cluster) and `job-manager rbac` (what a target namespace must
//! grant the manager), `job-manager migrate` (embedded store → PostgreSQL). Without a subcommand, `job-manager` runs the server ([`Args`]).

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    kubernetes::{self, rbac, ArtifactStore, JobRequest, Restore},
    model::Deployment,
    store::Store,
    Args,
};

/// The command line: the server's flags, or a subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "job-manager",
    version,
    about = "Flink deployment lifecycle manager with a Ververica Platform-compatible API.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Args,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Kubernetes objects a deployment would create (YAML stream), without a
    /// cluster.
    Render(RenderArgs),
    /// Print the Role and RoleBinding a Kubernetes target namespace needs.
    Rbac(RbacArgs),
    /// Copy an embedded store into an empty PostgreSQL database, verified by counts and
    /// checksums per kind of record.
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The embedded store's data directory (the manager's --data-dir).
    #[arg(long = "from", value_name = "DIR")]
    pub from: PathBuf,
    /// The database, `postgres://USER@HOST:PORT/DB` (empty or freshly migrated).
    #[arg(long = "to", value_name = "URL")]
    pub to: String,
    /// File holding the database password.
    #[arg(long = "password-file", value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Deployment document (VVP shape, YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Deployment target to look up in the store (default: the document's
    /// spec.deploymentTargetName).
    #[arg(
        long = "target",
        value_name = "NAME",
        conflicts_with = "target_namespace"
    )]
    pub target: Option<String>,
    /// Kubernetes namespace to render for, without a store.
    #[arg(long = "target-namespace", value_name = "NS")]
    pub target_namespace: Option<String>,
    /// Job id (UUID; default: derived from the deployment, so renders are repeatable).
    #[arg(long = "job-id", value_name = "ID")]
    pub job_id: Option<String>,
    /// Restore from this savepoint or retained checkpoint.
    #[arg(long = "from-savepoint", value_name = "PATH")]
    pub from_savepoint: Option<String>,
    /// With --from-savepoint: allow state that maps to no operator.
    #[arg(long = "allow-non-restored-state", requires = "from_savepoint")]
    pub allow_non_restored_state: bool,
    /// metrics-gateway URL for Flink's PushGateway reporter.
    #[arg(long = "metrics-gateway-url", value_name = "URL")]
    pub metrics_gateway_url: Option<String>,
    /// job-manager's URL as the pods reach it (for JARs in its artifact store).
    #[arg(long = "manager-url", value_name = "URL")]
    pub manager_url: Option<String>,
    /// The manager's configuration file: its `kubernetes` settings (images) and
    /// `metrics_gateway.url` apply.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// The manager's data directory (its store holds the deployment targets).
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "data/job-manager"
    )]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RbacArgs {
    /// The target namespace the Role is for.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespace: String,
    /// Namespace of the manager's service account.
    #[arg(long = "manager-namespace", value_name = "NS", default_value = rbac::DEFAULT_MANAGER_NAMESPACE)]
    pub manager_namespace: String,
    /// The manager's service account.
    #[arg(long = "service-account", value_name = "NAME", default_value = rbac::DEFAULT_SERVICE_ACCOUNT)]
    pub service_account: String,
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Document { path: PathBuf, message: String },
    #[error("{0}")]
    Target(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Build(#[from] kubernetes::Error),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error(transparent)]
    Config(#[from] common::ConfigError),
    #[error("--job-id {0:?} is not a UUID")]
    JobId(String),
    #[error("--namespace {0:?} is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)")]
    Namespace(String),
}

/// What `render` prints: the YAML stream, and notes for standard error.
#[derive(Debug)]
pub struct Rendered {
    pub yaml: String,
    pub notes: Vec<String>,
}

/// Renders the objects of the deployment in `args.file`.
pub fn render(args: &RenderArgs) -> Result<Rendered, Error> {
    let config: crate::Config = common::config::load(args.config_file.as_deref())?;
    let text = read(&args.file)?;
    let doc_err = |message: String| Error::Document {
        path: args.file.clone(),
        message,
    };
    let de = serde_yaml::Deserializer::from_str(&text);
    let deployment: Deployment = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            doc_err(inner.to_string())
        } else {
            doc_err(format!("{path}: {inner}"))
        }
    })?;
    if deployment.kind != "Deployment" {
        return Err(doc_err(format!(
            "kind is {:?}: render takes a Deployment",
            deployment.kind
        )));
    }
    let mut deployment = deployment;
    if deployment.metadata.namespace.is_empty() {
        deployment.metadata.namespace = crate::DEFAULT_NAMESPACE.into();
    }
    let mut notes = Vec::new();
    if deployment.metadata.id.is_none() {
        deployment.metadata.id = Some(derived_id(&[
            "deployment",
            &deployment.metadata.namespace,
            &deployment.metadata.name,
        ]));
        notes.push(format!(
            "metadata.id is not set: using {} (derived from the namespace and name)",
            deployment.id()
        ));
    }
    let (target_namespace, savepoint_dir) = resolve_target(args, &deployment)?;
    let job_id = match &args.job_id {
        Some(s) => Uuid::parse_str(s.trim()).map_err(|_| Error::JobId(s.clone()))?,
        None => derived_id(&["job", &deployment.id().to_string()]),
    };
    // No token to show: the manager mints one when it starts the job.
    let artifact_store = args
        .manager_url
        .clone()
        .or_else(|| config.kubernetes.manager_url.clone())
        .map(|base_url| ArtifactStore {
            base_url,
            token: None,
        });
    let request = JobRequest {
        deployment: &deployment,
        target_namespace: &target_namespace,
        job_id,
        flink_job_id: job_id.simple().to_string(),
        restore: args.from_savepoint.as_ref().map(|p| Restore {
            path: p.clone(),
            allow_non_restored_state: args.allow_non_restored_state,
        }),
        savepoint_dir,
        checkpoint_dir: None,
        metrics_gateway_url: args
            .metrics_gateway_url
            .clone()
            .or_else(|| config.metrics_gateway.url.clone()),
        artifact_store,
    };
    let objects = kubernetes::build(&request, &config.kubernetes)?;
    notes.extend(objects.notes.iter().cloned());
    if let Some(secret) = objects.secret.as_ref().filter(|s| s.data.is_none()) {
        notes.push(format!(
            "Secret {} is rendered without its download token: job-manager mints one when it starts the job (kubernetes.manager_url), so pods of objects applied by hand cannot download the JAR",
            secret.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    Ok(Rendered {
        yaml: objects.to_yaml_stream()?,
        notes,
    })
}

/// The Role and RoleBinding for `args.namespace`.
pub fn rbac(args: &RbacArgs) -> Result<String, Error> {
    for ns in [&args.namespace, &args.manager_namespace] {
        if !crate::domain::names::is_dns_label(ns) {
            return Err(Error::Namespace(ns.clone()));
        }
    }
    Ok(rbac::to_yaml_stream(
        &args.namespace,
        &rbac::Grantee {
            manager_namespace: &args.manager_namespace,
            service_account: &args.service_account,
        },
    )?)
}

/// Runs a subcommand: output on stdout, notes and errors on stderr.
pub fn run(command: &Command) -> std::process::ExitCode {
    let result = match command {
        Command::Render(a) => render(a).map(|r| {
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            r.yaml
        }),
        Command::Rbac(a) => rbac(a),
        Command::Migrate(a) => migrate(a),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `job-manager migrate`: the copy and its verification, one line per kind.
pub fn migrate(args: &MigrateArgs) -> Result<String, Error> {
    if !args.from.join("store").is_dir() {
        return Err(Error::Target(format!(
            "no job-manager store under {} (pass the manager's --data-dir)",
            args.from.display()
        )));
    }
    let from = Store::open(&args.from)?;
    let to = Store::open_at(&args.from, Some(&args.to), args.password_file.as_deref())?;
    let (want, got) = crate::store::copy_into(&from, &to)?;
    // Read back through a fresh connection: what the next start will load.
    drop(to);
    let reopened = Store::open_at(&args.from, Some(&args.to), args.password_file.as_deref())?;
    let again = crate::store::summary(&reopened.read())?;
    let mut out = String::new();
    let mut bad = vec![];
    for ((w, g), a) in want.iter().zip(&got).zip(&again) {
        let ok = w == g && w == a;
        out.push_str(&format!(
            "{:<20} {:>6} sha256:{} {}\n",
            w.0,
            w.1,
            w.2,
            if ok { "ok" } else { "MISMATCH" }
        ));
        if !ok {
            bad.push(format!(
                "{} ({} copied as {}, read back {})",
                w.0, w.1, g.1, a.1
            ));
        }
    }
    if !bad.is_empty() {
        return Err(Error::Target(format!(
            "the copy differs from the source in: {}\n{out}",
            bad.join(", ")
        )));
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, Error> {
    let err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(err)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(err)
}

/// The target's Kubernetes namespace and savepoint directory.
fn resolve_target(args: &RenderArgs, d: &Deployment) -> Result<(String, Option<String>), Error> {
    if let Some(ns) = &args.target_namespace {
        if !crate::domain::names::is_dns_label(ns) {
            return Err(Error::Namespace(ns.clone()));
        }
        return Ok((ns.clone(), None));
    }
    let name = args
        .target
        .clone()
        .unwrap_or_else(|| d.spec.deployment_target_name.clone());
    let ns = &d.metadata.namespace;
    if !args.data_dir.join("store").is_dir() {
        return Err(Error::Target(format!(
            "no job-manager store under {} to look up deployment target {name:?}: pass the manager's --data-dir, or --target-namespace NS to render without a store",
            args.data_dir.display()
        )));
    }
    let store = Store::open(&args.data_dir)?;
    let tables = store.read();
    let Some(target) = tables.targets.get(&(ns.clone(), name.clone())) else {
        return Err(Error::Target(format!(
            "no deployment target {name:?} in namespace {ns} of the store under {}",
            args.data_dir.display()
        )));
    };
    let Some(k) = &target.spec.kubernetes else {
        return Err(Error::Target(format!(
            "deployment target {name:?} in namespace {ns} is not a Kubernetes target (it has no spec.kubernetes.namespace)"
        )));
    };
    Ok((k.namespace.clone(), target.spec.savepoint_dir.clone()))
}

/// A stable UUID from some names (so a render without ids is repeatable).
fn derived_id(parts: &[&str]) -> Uuid {
    let digest = Sha256::digest(parts.join("\u{0}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
