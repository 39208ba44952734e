//! A namespace's deployment defaults (the console's job templates): a partial deployment
//! `spec` merged under every new deployment's body at creation.
//!
//! The stored document carries a `metadata.resourceVersion` (1 on the first save, +1 on
//! every change; 0 while nothing is stored). A `PUT` or `PATCH` whose body names a
//! `metadata.resourceVersion` other than the current one is refused (409), so two editors
//! saving at once cannot silently overwrite each other; a body without one (as VVP clients
//! send) is applied as before.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use serde_json::{json, Value};

use super::{auth::Caller, decode, merge_patch, ok, ApiError, ApiResult, AppState, Doc};
use crate::{
    domain::deployments::{builtin_defaults, deep_merge},
    model::Role,
    store::Write1,
};

/// The version of a stored defaults document (`None`: nothing stored yet). Documents
/// stored before versions existed count as version 1.
pub fn stored_version(stored: Option<&Value>) -> u64 {
    match stored {
        None => 0,
        Some(v) => v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_u64)
            .unwrap_or(1),
    }
}

/// The API's document: the built-in defaults with the namespace's own over them.
fn document(ns: &str, stored: Option<&Value>) -> Value {
    let mut full = builtin_defaults();
    if let Some(s) = stored {
        deep_merge(
            &mut full,
            &json!({"spec": s.get("spec").cloned().unwrap_or_else(|| json!({}))}),
        );
    }
    json!({
        "kind": "DeploymentDefaults",
        "apiVersion": "v1",
        "metadata": {"namespace": ns, "resourceVersion": stored_version(stored)},
        "spec": full.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

pub async fn get_defaults(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    ok(StatusCode::OK, document(&ns, t.defaults.get(&ns)))
}

/// The `metadata.resourceVersion` a request body names, if any.
fn wanted_version(body: &Value) -> Result<Option<u64>, ApiError> {
    match body.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!(
                "metadata.resourceVersion must be a non-negative integer (got {v})"
            ))
        }),
    }
}

/// The `spec` of a request body (`{}` when absent), which must be an object.
fn body_spec(body: &Value) -> Result<Value, ApiError> {
    match body.get("spec") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(s) if s.is_object() => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid("spec must be an object")),
    }
}

/// Stores the spec `f` makes of the current one, if `want` (the body's resourceVersion)
/// is current.
fn store(
    st: &AppState,
    ns: &str,
    want: Option<u64>,
    f: impl FnOnce(Option<&Value>) -> Value,
) -> ApiResult {
    let doc = st.store.transact(|t| {
        let cur = t.defaults.get(ns);
        let version = stored_version(cur);
        if let Some(want) = want {
            if want != version {
                return Err(ApiError::conflict(format!(
                    "metadata.resourceVersion {want} is stale: the deployment defaults of namespace {ns} are at {version} (changed meanwhile); re-read them and retry"
                )));
            }
        }
        let spec = f(cur);
        if !spec.is_object() {
            return Err(ApiError::invalid("spec must be an object"));
        }
        // The defaults must make a well-typed spec on their own.
        let mut probe = builtin_defaults();
        deep_merge(&mut probe, &json!({"spec": spec}));
        decode::<crate::model::DeploymentSpec>(probe["spec"].clone())
            .map_err(|e| ApiError::invalid(format!("spec.{}", e.message)))?;
        if cur.is_some_and(|c| c.get("spec") == Some(&spec)) {
            // Nothing changed: no new version.
            return Ok((vec![], document(ns, cur)));
        }
        let stored = json!({"metadata": {"resourceVersion": version + 1}, "spec": spec});
        let doc = document(ns, Some(&stored));
        Ok((vec![Write1::Defaults(ns.to_string(), stored)], doc))
    })?;
    ok(StatusCode::OK, doc)
}

/// Replaces the namespace's defaults with the body's `spec`.
pub async fn put_defaults(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let want = wanted_version(&body)?;
    let spec = body_spec(&body)?;
    store(&st, &ns, want, |_| spec)
}

/// Applies the body's `spec` as a JSON merge patch (a `null` removes a key).
pub async fn patch_defaults(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let want = wanted_version(&body)?;
    let patch = body_spec(&body)?;
    store(&st, &ns, want, |cur| {
        let mut spec = cur
            .and_then(|c| c.get("spec"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        merge_patch(&mut spec, &patch);
        spec
    })
}
