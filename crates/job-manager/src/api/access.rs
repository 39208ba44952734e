//! API tokens (owner only; the secret is shown once and stored hashed) and namespaces with
//! their role bindings (members `user:UID`).

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::Utc;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    auth::{check_member, hash_secret, Caller},
    check_name, decode, list, merge_patch, ok, ApiError, ApiResult, AppState, Doc,
};
use crate::{
    model::{ApiToken, Namespace, Role},
    store::{StoredToken, Write1},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
}

pub async fn list_tokens(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult {
    caller.require(&ns, Role::Owner)?;
    let t = st.store.read();
    let items: Vec<ApiToken> = t
        .tokens
        .values()
        .filter(|k| k.token.namespace == ns)
        .map(|k| k.token.clone())
        .collect();
    // `items` as every list of this API; `apiTokens` as VVP lists them.
    let vvp: Vec<Value> = items.iter().map(|k| vvp_token(k, None)).collect();
    ok(StatusCode::OK, json!({"items": items, "apiTokens": vvp}))
}

/// A token name as a client gives it: `ci`, or VVP's fully qualified
/// `namespaces/{ns}/apitokens/ci`, whose namespace must be the URL's. `field` names where
/// it came from in errors.
fn token_name(ns: &str, field: &str, given: &str) -> Result<String, ApiError> {
    let short = match given.strip_prefix("namespaces/") {
        Some(rest) => {
            let Some((in_name, name)) = rest.split_once("/apitokens/") else {
                return Err(ApiError::invalid(format!(
                    "{field} {given:?} is invalid: use a short name (ci) or namespaces/{ns}/apitokens/NAME"
                )));
            };
            if in_name != ns {
                return Err(ApiError::invalid(format!(
                    "{field} {given:?} names namespace {in_name:?}, but the URL's namespace is {ns:?}"
                )));
            }
            name
        }
        None => given,
    };
    check_name(field, short)?;
    Ok(short.to_string())
}

/// A token in VVP's shape: fully qualified `name`, `role`, `createTime`, and the `secret`
/// only when it was just created.
fn vvp_token(t: &ApiToken, secret: Option<&str>) -> Value {
    let mut v = json!({
        "name": format!("namespaces/{}/apitokens/{}", t.namespace, t.name),
        "role": t.role,
        "createTime": t.created_at,
    });
    if let Some(s) = secret {
        v["secret"] = json!(s);
    }
    v
}

/// One token in the envelope's `data`: this API's fields plus `apiToken`, the VVP answer.
fn token_data(t: &ApiToken, secret: Option<&str>) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(t).map_err(ApiError::internal)?;
    if let Some(s) = secret {
        v["secret"] = json!(s);
    }
    v["apiToken"] = vvp_token(t, secret);
    Ok(v)
}

pub async fn get_token(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Owner)?;
    let name = token_name(&ns, "API token", &name)?;
    let t = st.store.read();
    let k = t
        .tokens
        .get(&(ns.clone(), name.clone()))
        .map(|k| k.token.clone())
        .ok_or_else(|| {
            ApiError::not_found(format!("API token {name} not found in namespace {ns}"))
        })?;
    ok(StatusCode::OK, token_data(&k, None)?)
}

pub async fn create_token(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Owner)?;
    let mut req: NewToken = decode(body)?;
    req.name = token_name(&ns, "name", &req.name)?;
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    let secret = format!("jm_{}", hex::encode(raw));
    let token = ApiToken {
        name: req.name.clone(),
        namespace: ns.clone(),
        role: req.role,
        created_at: Utc::now(),
    };
    st.store.transact(|t| {
        if t.tokens.contains_key(&(ns.clone(), req.name.clone())) {
            return Err(ApiError::conflict(format!(
                "API token {} already exists in namespace {ns}",
                req.name
            )));
        }
        Ok((
            vec![Write1::Token(StoredToken {
                token: token.clone(),
                secret_hash: hash_secret(&secret),
            })],
            (),
        ))
    })?;
    // Shown this once; only its hash is stored.
    ok(StatusCode::CREATED, token_data(&token, Some(&secret))?)
}

pub async fn delete_token(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Owner)?;
    let name = token_name(&ns, "API token", &name)?;
    let k = st.store.transact::<_, ApiError>(|t| {
        let k = t
            .tokens
            .get(&(ns.clone(), name.clone()))
            .map(|k| k.token.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("API token {name} not found in namespace {ns}"))
            })?;
        Ok((vec![Write1::RemoveToken(ns.clone(), name.clone())], k))
    })?;
    ok(StatusCode::OK, token_data(&k, None)?)
}

fn validate_namespace(n: &Namespace) -> Result<(), ApiError> {
    check_name("metadata.name", &n.metadata.name)?;
    for (i, b) in n.spec.role_bindings.iter().enumerate() {
        for (j, m) in b.members.iter().enumerate() {
            check_member(&format!("spec.roleBindings[{i}].members[{j}]"), m)?;
        }
    }
    Ok(())
}

pub use crate::domain::namespaces::{local_target, new_namespace_writes};

pub async fn list_namespaces(State(st): State<AppState>, caller: Caller) -> ApiResult {
    let t = st.store.read();
    let items: Vec<Namespace> = t
        .namespaces
        .values()
        .filter(|n| caller.role_in(&n.metadata.name).is_some())
        .cloned()
        .collect();
    list(items)
}

pub async fn get_namespace(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let n = t
        .namespaces
        .get(&ns)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("namespace {ns} does not exist")))?;
    ok(StatusCode::OK, n)
}

pub async fn create_namespace(
    State(st): State<AppState>,
    caller: Caller,
    Doc(body): Doc,
) -> ApiResult {
    caller.require_admin()?;
    let mut n: Namespace = decode(body)?;
    validate_namespace(&n)?;
    n.metadata.namespace = String::new();
    n.metadata.created_at = Some(Utc::now());
    n.metadata.resource_version = 1;
    n.metadata.id = Some(uuid::Uuid::new_v4());
    if !st.store.read().namespaces.contains_key(&n.metadata.name) {
        remove_namespace_files(&st, &n.metadata.name);
    }
    let n = st.store.transact(|t| {
        if t.namespaces.contains_key(&n.metadata.name) {
            return Err(ApiError::conflict(format!(
                "namespace {} already exists",
                n.metadata.name
            )));
        }
        // Anything an earlier namespace of this name left behind (before deletion cleaned
        // up) goes, so the new namespace starts empty.
        let mut w = namespace_leftovers(t, &n.metadata.name);
        w.extend(new_namespace_writes(n.clone()));
        Ok((w, n))
    })?;
    ok(StatusCode::CREATED, n)
}

pub async fn patch_namespace(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(patch): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Owner)?;
    let n = st.store.transact(|t| {
        let cur = t
            .namespaces
            .get(&ns)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("namespace {ns} does not exist")))?;
        if let Some(rv) = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_u64)
        {
            if rv != cur.metadata.resource_version {
                return Err(ApiError::conflict(format!(
                    "metadata.resourceVersion {rv} is stale: the namespace is at {}",
                    cur.metadata.resource_version
                )));
            }
        }
        let mut v = serde_json::to_value(&cur).map_err(ApiError::internal)?;
        merge_patch(&mut v, &patch);
        let mut n: Namespace = decode(v)?;
        if n.metadata.name != cur.metadata.name {
            return Err(ApiError::invalid("metadata.name cannot be changed"));
        }
        validate_namespace(&n)?;
        n.metadata.resource_version = cur.metadata.resource_version + 1;
        n.metadata.created_at = cur.metadata.created_at;
        n.metadata.id = cur.metadata.id;
        Ok((vec![Write1::Namespace(n.clone())], n))
    })?;
    ok(StatusCode::OK, n)
}

/// What a namespace leaves in the store besides its own record: targets, tokens, defaults,
/// and the jobs and savepoint records of its (already deleted) deployments.
fn namespace_leftovers(t: &crate::store::Tables, ns: &str) -> Vec<Write1> {
    let mut w: Vec<Write1> = t
        .targets
        .keys()
        .filter(|(n, _)| n == ns)
        .map(|(n, name)| Write1::RemoveTarget(n.clone(), name.clone()))
        .collect();
    w.extend(
        t.tokens
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(n, name)| Write1::RemoveToken(n.clone(), name.clone())),
    );
    if t.defaults.contains_key(ns) {
        w.push(Write1::RemoveDefaults(ns.to_string()));
    }
    w.extend(
        t.jobs
            .values()
            .filter(|j| j.metadata.namespace == ns)
            .map(|j| Write1::RemoveJob(j.metadata.id)),
    );
    w.extend(
        t.savepoints
            .values()
            .filter(|s| s.metadata.namespace == ns)
            .map(|s| Write1::RemoveSavepoint(s.metadata.id)),
    );
    w
}

/// Removes a namespace's files outside the store: its events and its artifact store.
fn remove_namespace_files(st: &AppState, ns: &str) {
    st.store.remove_namespace_events(ns);
    let dir = crate::artifacts::dir(&st.data_dir, ns);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::error!(namespace = %ns, dir = %dir.display(), %error, "Cannot remove the artifacts of a deleted namespace.")
        }
    }
}

pub async fn delete_namespace(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult {
    caller.require_admin()?;
    let n = st.store.transact(|t| {
        let n = t
            .namespaces
            .get(&ns)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("namespace {ns} does not exist")))?;
        if ns == crate::DEFAULT_NAMESPACE {
            return Err(ApiError::conflict("namespace default cannot be deleted"));
        }
        if t.deployments
            .values()
            .any(|r| r.deployment.metadata.namespace == ns)
        {
            return Err(ApiError::conflict(format!(
                "namespace {ns} still has deployments; delete them first"
            )));
        }
        Ok((namespace_leftovers(t, &ns), n))
    })?;
    // The namespace file itself.
    st.store
        .transact::<_, ApiError>(|_| Ok((vec![Write1::RemoveNamespace(ns.clone())], ())))?;
    // Defaults, artifacts and events go with it: a namespace created again with this name
    // starts empty.
    remove_namespace_files(&st, &ns);
    ok(StatusCode::OK, n)
}
