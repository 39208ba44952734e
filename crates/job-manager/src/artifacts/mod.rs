//! The artifact store and what a `jarUri` may point at.
//!
//! Each namespace has its own store, `<data-dir>/artifacts/<namespace>/`, a flat directory of
//! uploaded files. A `jarUri` is either
//! - a `file:` URI (or a bare absolute path) naming a file of **that namespace's** store:
//!   the path is canonicalised, must not contain `..`, its directory must be the store itself
//!   (no symlinked directory escapes it) and the file must be a regular file (not a symlink);
//! - an `http(s)://` URI that the operator allowed in `artifacts.remote` (see [`remote`]).
//!
//! The API checks a jarUri when a deployment is created or its jarUri changes; the controller
//! checks it again right before it hands the JAR to Flink. Pods of a job on a Kubernetes
//! target download a stored JAR with a token of that one artifact ([`tokens`]).

pub mod remote;
pub mod tokens;

use std::path::{Component, Path, PathBuf};

use crate::config::ArtifactsConfig;

/// Longest artifact file name.
pub const MAX_NAME_LEN: usize = 255;

/// Why a jarUri is refused. Messages say why and what is allowed; the caller prefixes the
/// field (`spec.template.spec.artifact.jarUri`).
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    #[error("must not be empty")]
    Empty,
    #[error("{uri:?} is not supported: use a file: URI of the namespace's artifact store (upload JARs to /artifacts/v1/namespaces/{namespace}/artifacts:upload) or an http(s):// URI an operator allowed")]
    UnsupportedScheme { uri: String, namespace: String },
    #[error("{uri:?} must be an absolute path (file:///path/to/job.jar)")]
    NotAbsolute { uri: String },
    #[error("{uri:?} must not contain `..` or `.` path segments")]
    Traversal { uri: String },
    #[error("{uri:?} is outside the artifact store of namespace {namespace}: only JARs uploaded to /artifacts/v1/namespaces/{namespace}/artifacts:upload can run (use the uri the upload returns)")]
    OutsideStore { uri: String, namespace: String },
    #[error("artifact {name:?} does not exist in namespace {namespace} (upload it to /artifacts/v1/namespaces/{namespace}/artifacts:upload first)")]
    Missing { name: String, namespace: String },
    #[error("artifact {name:?} of namespace {namespace} is not a regular file")]
    NotRegular { name: String, namespace: String },
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

/// Why an artifact file name is refused.
#[derive(Debug, thiserror::Error)]
#[error("filename {0:?} is invalid: use 1-255 letters, digits and ._-+, not starting with '.' (no path separators)")]
pub struct NameError(pub String);

/// What a checked jarUri resolved to.
#[derive(Debug, Clone, PartialEq)]
pub enum JarRef {
    /// A file of the namespace's store (canonical path).
    Stored(PathBuf),
    /// A remote URI the policy allows (its addresses are checked again when it is fetched).
    Remote(reqwest::Url),
}

/// The store directory of a namespace.
pub fn dir(data_dir: &Path, namespace: &str) -> PathBuf {
    data_dir.join("artifacts").join(namespace)
}

/// Checks an artifact file name: flat, no hidden files, no separators.
pub fn check_filename(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NameError(name.to_string()))
    }
}

/// Checks `uri` for a deployment of `namespace`: a `file:` URI must name an existing regular
/// file of the namespace's store; a remote URI must be allowed by `cfg.remote` (scheme,
/// host, and an IP-literal host's address class). Does no network I/O.
pub fn check(
    data_dir: &Path,
    namespace: &str,
    uri: &str,
    cfg: &ArtifactsConfig,
) -> Result<JarRef, UriError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(UriError::Empty);
    }
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(JarRef::Remote(remote::check_uri(uri, &cfg.remote)?));
    }
    let path = if lower.starts_with("file:") {
        file_uri_path(uri)?
    } else if uri.starts_with('/') {
        uri.to_string()
    } else {
        return Err(UriError::UnsupportedScheme {
            uri: uri.to_string(),
            namespace: namespace.to_string(),
        });
    };
    stored(data_dir, namespace, uri, Path::new(&path)).map(JarRef::Stored)
}

/// The path of a `file:` URI: `file:///p`, `file://localhost/p` or `file:/p`.
fn file_uri_path(uri: &str) -> Result<String, UriError> {
    let rest = &uri["file:".len()..];
    let path = if let Some(after) = rest.strip_prefix("//") {
        if after.starts_with('/') {
            after
        } else if let Some(p) = after.strip_prefix("localhost") {
            p
        } else {
            // `file://host/...` or a relative `file://data/...`.
            return Err(UriError::NotAbsolute {
                uri: uri.to_string(),
            });
        }
    } else {
        rest
    };
    if !path.starts_with('/') {
        return Err(UriError::NotAbsolute {
            uri: uri.to_string(),
        });
    }
    Ok(path.to_string())
}

/// Resolves `path` inside the namespace's store (see the module documentation).
fn stored(data_dir: &Path, namespace: &str, uri: &str, path: &Path) -> Result<PathBuf, UriError> {
    let outside = || UriError::OutsideStore {
        uri: uri.to_string(),
        namespace: namespace.to_string(),
    };
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || uri.contains("/./")
        || uri.ends_with("/.")
    {
        return Err(UriError::Traversal {
            uri: uri.to_string(),
        });
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(outside());
    };
    let store = dir(data_dir, namespace);
    let store_abs = std::path::absolute(&store).unwrap_or_else(|_| store.clone());
    let store_canon = std::fs::canonicalize(&store).ok();
    // The file's directory must be the store itself, compared after resolving symlinks, so
    // neither `..` nor a symlinked directory can lead out of it.
    let parent_canon = std::fs::canonicalize(parent).ok();
    let same_dir = match (&parent_canon, &store_canon) {
        (Some(p), Some(s)) => p == s,
        // The store does not exist yet: nothing was uploaded.
        _ => parent == store_abs || Some(parent.to_path_buf()) == store_canon,
    };
    if !same_dir {
        return Err(outside());
    }
    if check_filename(name).is_err() {
        return Err(outside());
    }
    let missing = || UriError::Missing {
        name: name.to_string(),
        namespace: namespace.to_string(),
    };
    let Some(store_canon) = store_canon else {
        return Err(missing());
    };
    let file = store_canon.join(name);
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.file_type().is_file() => Ok(file),
        Ok(_) => Err(UriError::NotRegular {
            name: name.to_string(),
            namespace: namespace.to_string(),
        }),
        Err(_) => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ArtifactsConfig {
        ArtifactsConfig::default()
    }

    #[test]
    fn only_files_of_the_namespace_store_resolve() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        let store = dir(data, "team-a");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("job.jar"), b"PK").unwrap();
        let canon = std::fs::canonicalize(store.join("job.jar")).unwrap();
        let uri = format!("file://{}", store.join("job.jar").display());
        assert_eq!(
            check(data, "team-a", &uri, &cfg()).unwrap(),
            JarRef::Stored(canon.clone())
        );
        let bare = store.join("job.jar").display().to_string();
        assert_eq!(
            check(data, "team-a", &bare, &cfg()).unwrap(),
            JarRef::Stored(canon)
        );
        // Another namespace's store, the data dir, /proc.
        for bad in [
            format!("file://{}", dir(data, "team-b").join("job.jar").display()),
            format!("file://{}/job.jar", data.display()),
            "file:///proc/self/environ".to_string(),
            "/etc/passwd".to_string(),
        ] {
            let e = check(data, "team-a", &bad, &cfg()).unwrap_err();
            assert!(matches!(e, UriError::OutsideStore { .. }), "{bad}: {e}");
        }
        let dotdot = format!("file://{}/../team-a/job.jar", store.display());
        assert!(matches!(
            check(data, "team-a", &dotdot, &cfg()),
            Err(UriError::Traversal { .. })
        ));
        let missing = format!("file://{}/nope.jar", store.display());
        let e = check(data, "team-a", &missing, &cfg()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "artifact \"nope.jar\" does not exist in namespace team-a (upload it to /artifacts/v1/namespaces/team-a/artifacts:upload first)"
        );
        for rel in ["file://data/x.jar", "file:x.jar", "file://host/x.jar"] {
            assert!(matches!(
                check(data, "team-a", rel, &cfg()),
                Err(UriError::NotAbsolute { .. })
            ));
        }
        assert!(matches!(
            check(data, "team-a", "ftp://x/y.jar", &cfg()),
            Err(UriError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn symlinks_do_not_lead_out_of_the_store() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        let store = dir(data, "ns");
        std::fs::create_dir_all(&store).unwrap();
        let secret = data.join("secret.txt");
        std::fs::write(&secret, b"s3cr3t").unwrap();
        std::os::unix::fs::symlink(&secret, store.join("link.jar")).unwrap();
        std::os::unix::fs::symlink(data, store.join("up")).unwrap();
        let e = check(
            data,
            "ns",
            &format!("file://{}/link.jar", store.display()),
            &cfg(),
        )
        .unwrap_err();
        assert!(matches!(e, UriError::NotRegular { .. }), "{e}");
        let e = check(
            data,
            "ns",
            &format!("file://{}/up/secret.txt", store.display()),
            &cfg(),
        )
        .unwrap_err();
        assert!(matches!(e, UriError::OutsideStore { .. }), "{e}");
    }
}
