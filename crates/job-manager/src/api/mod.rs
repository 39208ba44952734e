//! The HTTP API in Ververica Platform shapes: every response is the envelope
//! `{"success", "httpCode", "message", "reason", "data"}`, lists are `data.items`, bodies may
//! be JSON or YAML (`Content-Type: application/yaml`).
//!
//! - [`deployments`]: deployments, clone, jobs, savepoints, events, targets.
//! - [`defaults`]: the namespace's deployment defaults, with their `resourceVersion`.
//! - [`artifacts`]: JAR upload, list, metadata, download, delete.
//! - [`access`]: API tokens and namespaces (members and their roles).
//! - [`auth`]: who is calling and what their role allows.
//! - [`compat`]: VVP's target references and the settings without effect on a target
//!   (reported as `warnings`, `Warning` headers and an event).

pub mod access;
pub mod artifacts;
pub mod auth;
pub mod compat;
pub mod defaults;
pub mod deployments;
mod yaml_bound;

use std::{path::PathBuf, sync::Arc};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Router,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use crate::{metrics::Metrics, store::Store, target::LocalClusters};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub data_dir: PathBuf,
    pub local: LocalClusters,
    /// The live configuration: every field is read from it when used, so a reload takes
    /// effect for the next request (see [`crate::config`] for the fields only a restart
    /// changes).
    pub config: common::ConfigHandle<crate::Config>,
    pub metrics: Metrics,
}

impl AppState {
    /// `auth.proxy_user_header` now: the header carrying the user id from a trusted auth
    /// proxy (`None`: not trusted).
    pub fn proxy_user_header(&self) -> Option<String> {
        self.config.current().auth.proxy_user_header.clone()
    }

    /// `artifacts.max_upload_bytes` now: the largest accepted artifact.
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.current().artifacts.max_upload_bytes
    }
}

/// What a multipart upload may carry beside the artifact (boundaries, part headers).
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Caps an upload's body at `artifacts.max_upload_bytes` (plus the multipart framing) as
/// configured now, so a reload of the limit applies to the next upload; reading beyond it
/// fails, and the handler answers 413 naming the limit.
async fn upload_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = state.max_upload_bytes().saturating_add(MULTIPART_OVERHEAD);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

/// An API error: status, a short reason and a message naming what is wrong.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }

    /// 400 naming the field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationFailed", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 500; the detail goes to the log, not to the client.
    ///
    /// (Also what a store failure inside a handler becomes, see the `From` below.)
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "Internal error while serving a request.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error; see the job-manager log",
        )
    }
}

/// A document the domain rules refuse: 400 with the message naming the field.
impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> Self {
        ApiError::invalid(e.to_string())
    }
}

/// A write based on a stale `resourceVersion`: 409.
impl From<crate::domain::versions::Stale> for ApiError {
    fn from(e: crate::domain::versions::Stale) -> Self {
        ApiError::conflict(e.to_string())
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
        match e {
            crate::store::Error::Conflict { .. } => ApiError::conflict(e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "httpCode": self.status.as_u16(),
            "message": self.message,
            "reason": self.reason,
            "data": null,
        });
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// A successful response in the envelope.
pub fn ok(status: StatusCode, data: impl Serialize) -> ApiResult {
    let data = serde_json::to_value(data).map_err(ApiError::internal)?;
    Ok((
        status,
        axum::Json(json!({
            "success": true,
            "httpCode": status.as_u16(),
            "message": status.canonical_reason().unwrap_or("OK"),
            "reason": null,
            "data": data,
        })),
    )
        .into_response())
}

/// A list response: `data.items`.
pub fn list<T: Serialize>(items: Vec<T>) -> ApiResult {
    ok(StatusCode::OK, json!({ "items": items }))
}

/// A JSON or YAML request body, as a JSON value.
///
/// Extracting it is guarded, in this order, so that a body cannot hurt the manager before
/// the caller is known to be allowed to send one:
/// 1. the caller is authenticated (401) and has at least the editor role in the URL's
///    namespace, or is the bootstrap token on routes without one (403): every route that
///    takes a body needs that much, and handlers check their exact role afterwards;
/// 2. the body is at most `api.max_body_bytes` (413 naming the limit);
/// 3. it is parsed with a bound on what it may expand to (YAML anchors and aliases), see
///    [`parse_doc`].
pub struct Doc(pub Value);

impl FromRequest<AppState> for Doc {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let caller = auth::Caller::from_request_parts(&mut parts, state).await?;
        let ns = axum::extract::RawPathParams::from_request_parts(&mut parts, state)
            .await
            .ok()
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| *k == "ns")
                    .map(|(_, v)| v.to_string())
            });
        match ns {
            Some(ns) => caller.require(&ns, crate::model::Role::Editor)?,
            None => caller.require_admin()?,
        }
        let limit = state.config.current().api.max_body_bytes;
        let bytes = read_limited(body, limit).await?;
        parse_doc(&bytes, is_yaml(&parts.headers)).map(Doc)
    }
}

/// Reads a body of at most `limit` bytes (413 beyond, before reading the rest).
async fn read_limited(body: axum::body::Body, limit: u64) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body is larger than the limit of {limit} bytes (api.max_body_bytes)"),
        )
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("cannot read the request body: {e}"),
        )),
    }
}

fn is_yaml(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("yaml"))
}

/// Parses a body; errors name the line for YAML and JSON alike.
///
/// A YAML body may not expand beyond its own size: nodes plus string bytes are counted
/// while the value is built, and at twice the body's length (plus a little) parsing stops
/// with a 400. A body without anchors and aliases never gets there (every node and every
/// character of a string costs at least one byte of source); a "billion laughs" body of
/// aliases to aliases is refused after building at most that much.
pub fn parse_doc(bytes: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::invalid("request body is empty"));
    }
    if yaml {
        let budget = std::cell::Cell::new(bytes.len().saturating_mul(2).saturating_add(64));
        let de = serde_yaml::Deserializer::from_slice(bytes);
        match serde::de::DeserializeSeed::deserialize(yaml_bound::Bounded(&budget), de) {
            Ok(v) => Ok(v),
            Err(_) if budget.get() == 0 => Err(ApiError::invalid(format!(
                "YAML body expands to more than twice its size ({} bytes): anchors and aliases (&name, *name) are not accepted in request bodies",
                bytes.len()
            ))),
            Err(e) => Err(ApiError::invalid(format!("invalid YAML body: {e}"))),
        }
    } else {
        serde_json::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Deserializes `v` into `T`; errors name the field path (`spec.template.spec.parallelism`).
pub fn decode<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("invalid body: {inner}"))
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Validates a DNS-label name (namespaces, targets, tokens): [`crate::domain::names`].
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    Ok(crate::domain::names::check(field, name)?)
}

/// Every API route. Authorization happens in each handler through [`auth::Caller`].
pub fn router(state: AppState) -> Router {
    use deployments as d;
    let ns = "/api/v1/namespaces/{ns}";
    Router::new()
        .route(
            &format!("{ns}/deployments"),
            get(d::list_deployments).post(d::create_deployment),
        )
        .route(
            &format!("{ns}/deployments/{{id}}"),
            get(d::get_deployment)
                .put(d::put_deployment)
                .patch(d::patch_deployment)
                .delete(d::delete_deployment),
        )
        .route(
            &format!("{ns}/deployments/{{id}}/clone"),
            post(d::clone_deployment),
        )
        .route(&format!("{ns}/jobs"), get(d::list_jobs))
        .route(&format!("{ns}/jobs/{{id}}"), get(d::get_job))
        .route(
            &format!("{ns}/savepoints"),
            get(d::list_savepoints).post(d::create_savepoint),
        )
        .route(
            &format!("{ns}/savepoints/{{id}}"),
            get(d::get_savepoint).delete(d::delete_savepoint),
        )
        .route(&format!("{ns}/events"), get(d::list_events))
        .route(
            &format!("{ns}/deployment-targets"),
            get(d::list_targets).post(d::create_target),
        )
        .route(
            &format!("{ns}/deployment-targets/{{name}}"),
            get(d::get_target)
                .put(d::put_target)
                .delete(d::delete_target),
        )
        .route(
            &format!("{ns}/deployment-defaults"),
            get(defaults::get_defaults)
                .put(defaults::put_defaults)
                .patch(defaults::patch_defaults),
        )
        .route(
            "/artifacts/v1/namespaces/{ns}/artifacts:upload",
            post(artifacts::upload)
                .layer::<_, std::convert::Infallible>(axum::middleware::from_fn_with_state(
                    state.clone(),
                    upload_limit,
                ))
                .layer::<_, std::convert::Infallible>(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/artifacts/v1/namespaces/{ns}/artifacts:list",
            get(artifacts::list),
        )
        .route(
            "/artifacts/v1/namespaces/{ns}/artifacts:getMetadata",
            get(artifacts::metadata),
        )
        .route(
            "/artifacts/v1/namespaces/{ns}/artifacts:download",
            get(artifacts::download),
        )
        .route(
            "/artifacts/v1/namespaces/{ns}/artifacts:delete",
            delete(artifacts::delete),
        )
        .route(
            "/apitokens/v1/namespaces/{ns}/apitokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route(
            // `{*name}`: the short name, or VVP's `namespaces/{ns}/apitokens/NAME`.
            "/apitokens/v1/namespaces/{ns}/apitokens/{*name}",
            get(access::get_token).delete(access::delete_token),
        )
        .route(
            "/namespaces/v1/namespaces",
            get(access::list_namespaces).post(access::create_namespace),
        )
        .route(
            "/namespaces/v1/namespaces/{ns}",
            get(access::get_namespace)
                .patch(access::patch_namespace)
                .delete(access::delete_namespace),
        )
        .layer(axum::middleware::from_fn(yaml_responses))
        .with_state(state)
}

/// Answers in YAML when the client asks for it (`Accept: application/yaml`), as VVP does.
async fn yaml_responses(req: Request, next: axum::middleware::Next) -> Response {
    let wants_yaml = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("yaml"));
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !wants_yaml || !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("cannot read response body").into_response();
    };
    let yaml = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| serde_yaml::to_string(&v).ok());
    match yaml {
        Some(y) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/yaml"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(y))
        }
        None => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"b": {"c": null, "e": 4}, "f": [1]}));
        assert_eq!(t, json!({"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}));
    }

    #[test]
    fn decode_names_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            spec: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            parallelism: i64,
        }
        let e = decode::<S>(json!({"spec": {"parallelism": "x"}})).unwrap_err();
        assert!(e.message.starts_with("spec.parallelism:"), "{}", e.message);
    }
}
