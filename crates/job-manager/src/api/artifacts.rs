//! Artifacts (JARs) stored under `<data-dir>/artifacts/<namespace>/`; the upload answers with
//! a `file://` URI usable as `jarUri`.

use axum::{
    body::Bytes,
    extract::{FromRequestParts, Path, Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{auth::Caller, ok, ApiError, ApiResult, AppState};
use crate::{
    artifacts::{self, tokens},
    model::{Deployment, Role},
    store,
};

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    filename: Option<String>,
}

/// `?overwrite=true` lets an upload replace an artifact of the same name.
#[derive(Debug, Deserialize, Default)]
pub struct UploadQuery {
    #[serde(default)]
    overwrite: bool,
}

/// The namespace's store directory, absolute (symlinks resolved when it exists), so that the
/// `file://` URIs handed out are usable as they are.
fn dir(st: &AppState, ns: &str) -> std::path::PathBuf {
    let d = artifacts::dir(&st.data_dir, ns);
    std::fs::canonicalize(&d)
        .or_else(|_| std::path::absolute(&d))
        .unwrap_or(d)
}

fn check_filename(name: &str) -> Result<(), ApiError> {
    artifacts::check_filename(name).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Checks the jarUri of a deployment that is created (`before` is `None`) or changed. An
/// unchanged jarUri is not checked again, so that a deployment whose JAR was deleted can
/// still be suspended or cancelled; the controller checks it before every start anyway.
/// 400 naming `spec.template.spec.artifact.jarUri` and why.
pub fn check_deployment_jar(
    st: &AppState,
    d: &Deployment,
    before: Option<&Deployment>,
) -> Result<(), ApiError> {
    let uri = &d.spec.template.spec.artifact.jar_uri;
    if before.is_some_and(|b| &b.spec.template.spec.artifact.jar_uri == uri) {
        return Ok(());
    }
    let cfg = st.config.current();
    artifacts::check(&st.data_dir, &d.metadata.namespace, uri, &cfg.artifacts)
        .map(|_| ())
        .map_err(|e| {
            st.metrics.jar_uris_refused.inc();
            ApiError::invalid(format!("spec.template.spec.artifact.jarUri {e}"))
        })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        format!(
            "artifact exceeds the upload limit of {} MB ({limit} bytes)",
            limit / (1024 * 1024)
        ),
    )
}

/// The one file part of a multipart/form-data body with field name `file`.
fn file_part<'a>(body: &'a [u8], content_type: &str) -> Result<(String, &'a [u8]), ApiError> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .ok_or_else(|| {
            ApiError::invalid(
                "Content-Type must be multipart/form-data with a boundary (field `file`)",
            )
        })?;
    let delim = format!("--{boundary}");
    let mut rest = body;
    while let Some(start) = find(rest, delim.as_bytes()) {
        rest = &rest[start + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest2 = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let Some(head_end) = find(rest2, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest2[..head_end]).to_string();
        let content = &rest2[head_end + 4..];
        let end = find(content, format!("\r\n{delim}").as_bytes()).ok_or_else(|| {
            ApiError::invalid("multipart body is truncated (no closing boundary)")
        })?;
        let disp = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or("");
        let param = |k: &str| {
            disp.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix(&format!("{k}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        if param("name").as_deref() == Some("file") {
            let filename = param("filename").unwrap_or_default();
            let filename = filename
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or("")
                .to_string();
            return Ok((filename, &content[..end]));
        }
        rest = &content[end..];
    }
    Err(ApiError::invalid("multipart body has no part named `file`"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn meta(path: &std::path::Path, ns: &str, name: &str) -> Option<serde_json::Value> {
    let m = std::fs::metadata(path).ok()?;
    let modified: Option<DateTime<Utc>> = m.modified().ok().map(Into::into);
    Some(json!({
        "filename": name,
        "namespace": ns,
        "uri": format!("file://{}", path.display()),
        "size": m.len(),
        "createdAt": modified,
    }))
}

pub async fn upload(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let Query(q) = query.map_err(|e| {
        ApiError::invalid(format!(
            "query parameter overwrite must be true or false: {}",
            e.body_text()
        ))
    })?;
    let limit = st.max_upload_bytes();
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit + 64 * 1024 {
            return Err(too_large(limit));
        }
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(limit)
        } else {
            ApiError::new(e.status(), "BadRequest", e.body_text())
        }
    })?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("multipart/form-data") {
        return Err(ApiError::invalid(
            "Content-Type must be multipart/form-data with the JAR in field `file`",
        ));
    }
    let (filename, content) = file_part(&body, ct)?;
    check_filename(&filename)?;
    if content.len() as u64 > limit {
        return Err(too_large(limit));
    }
    if content.is_empty() {
        return Err(ApiError::invalid("field `file` is empty"));
    }
    let content = body.slice_ref(content);
    let d = dir(&st, &ns);
    let (dir2, name2, overwrite) = (d.clone(), filename.clone(), q.overwrite);
    let bytes = content.clone();
    // Each upload writes its own temporary file; without `overwrite` the rename into place
    // refuses an existing name atomically, so of two concurrent uploads one wins.
    let written = tokio::task::spawn_blocking(move || {
        if overwrite {
            store::write_atomic(&dir2, &name2, &bytes)
        } else {
            store::write_new(&dir2, &name2, &bytes)
        }
    })
    .await
    .map_err(ApiError::internal)?;
    match written {
        Ok(()) => {}
        Err(store::Error::Exists { .. }) => {
            return Err(ApiError::conflict(format!(
                "artifact {filename} already exists in namespace {ns}: upload it under a new name, or add ?overwrite=true to replace it"
            )))
        }
        Err(e) => return Err(ApiError::internal(e)),
    }
    let path = d.join(&filename);
    let mut m =
        meta(&path, &ns, &filename).ok_or_else(|| ApiError::internal("artifact vanished"))?;
    // What this request stored (a concurrent overwrite may already have replaced it).
    m["size"] = json!(content.len());
    m["sha256"] = json!(hex::encode(Sha256::digest(&content)));
    ok(StatusCode::CREATED, m)
}

pub async fn list(State(st): State<AppState>, caller: Caller, Path(ns): Path<String>) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let d = dir(&st, &ns);
    let mut items = vec![];
    if let Ok(rd) = std::fs::read_dir(&d) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some(m) = meta(&e.path(), &ns, &name) {
                items.push(m);
            }
        }
    }
    items.sort_by(|a, b| a["filename"].as_str().cmp(&b["filename"].as_str()));
    super::list(items)
}

fn named(st: &AppState, ns: &str, q: &FileQuery) -> Result<(String, std::path::PathBuf), ApiError> {
    let name = q
        .filename
        .clone()
        .ok_or_else(|| ApiError::invalid("query parameter filename is required"))?;
    check_filename(&name)?;
    let path = dir(st, ns).join(&name);
    // Only regular files: nothing in the store may lead elsewhere.
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
        return Err(ApiError::not_found(format!(
            "artifact {name} not found in namespace {ns}"
        )));
    }
    Ok((name, path))
}

pub async fn metadata(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let (name, path) = named(&st, &ns, &q)?;
    let m = meta(&path, &ns, &name)
        .ok_or_else(|| ApiError::not_found(format!("artifact {name} not found")))?;
    ok(StatusCode::OK, m)
}

/// `GET …/artifacts:download?filename=NAME`: for a caller with the viewer role, or for the
/// pods of a job on a Kubernetes target with that job's download token (only its one
/// artifact, before expiry, while the job's cluster exists; see
/// [`crate::artifacts::tokens`]). A refused token gets 401 or 403 naming why, never the
/// token.
pub async fn download(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Query<FileQuery>,
    req: Request,
) -> ApiResult {
    let (mut parts, _) = req.into_parts();
    let download_token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| t.starts_with(tokens::TOKEN_PREFIX))
        .map(str::to_string);
    if let Some(token) = download_token {
        let name = q.filename.clone().unwrap_or_default();
        let verdict = tokens::verify(&token, &ns, &name, &st.store.read().jobs, Utc::now());
        match verdict {
            Ok(grant) => {
                tracing::info!(namespace = %ns, artifact = %name, job = %grant.job_id, "Artifact downloaded with its job's download token.");
            }
            Err(refusal) => {
                st.metrics.auth_denied.inc();
                tracing::info!(namespace = %ns, artifact = %name, "Download token refused: {refusal}");
                let status =
                    StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
                let reason = if status == StatusCode::FORBIDDEN {
                    "Forbidden"
                } else {
                    "Unauthorized"
                };
                return Err(ApiError::new(status, reason, refusal.to_string()));
            }
        }
    } else {
        let caller = Caller::from_request_parts(&mut parts, &st).await?;
        caller.require(&ns, Role::Viewer)?;
    }
    let (name, path) = named(&st, &ns, &q)?;
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/java-archive".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let (name, path) = named(&st, &ns, &q)?;
    let m = meta(&path, &ns, &name);
    std::fs::remove_file(&path).map_err(ApiError::internal)?;
    ok(StatusCode::OK, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_file_part_is_found_among_others() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dir/job.jar\"\r\nContent-Type: application/java-archive\r\n\r\nPK\x03\x04data\r\n--XX--\r\n";
        let (name, content) = file_part(body, "multipart/form-data; boundary=XX").unwrap();
        assert_eq!(name, "job.jar");
        assert_eq!(content, b"PK\x03\x04data");
        assert!(file_part(b"--XX--", "multipart/form-data; boundary=XX").is_err());
        assert!(check_filename("../x.jar").is_err());
        assert!(check_filename(".hidden.jar").is_err());
    }
}
