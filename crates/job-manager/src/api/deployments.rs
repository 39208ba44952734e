//! Deployments and what hangs off them: clone, jobs, savepoints, events, targets (the
//! namespace's defaults are in [`super::defaults`]).

use std::collections::BTreeMap;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    auth::Caller, check_name, compat, decode, list, merge_patch, ok, ApiError, ApiResult, AppState,
    Doc,
};
use crate::{
    domain::{deployments, targets, versions},
    model::{
        new_savepoint, Control, Deployment, DeploymentState, DeploymentStatus, DeploymentTarget,
        DesiredState, JobState, Role, SavepointOrigin,
    },
    store::{DeploymentRecord, Tables, Write1},
};

/// `?labelSelector=` on lists.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
    deployment_id: Option<Uuid>,
    job_id: Option<Uuid>,
}

/// A Kubernetes-style equality selector: `a=b,c!=d,e` (e: label present, !e: absent).
fn selector_matches(sel: &str, labels: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    for term in sel.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let ok = if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else if term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            labels.contains_key(term)
        } else {
            return Err(ApiError::invalid(format!(
                "labelSelector term {term:?} is invalid: use key=value, key!=value, key or !key"
            )));
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Finds a deployment of `ns` by id or by name.
fn find(t: &Tables, ns: &str, key: &str) -> Result<DeploymentRecord, ApiError> {
    let by_id = Uuid::parse_str(key)
        .ok()
        .and_then(|id| t.deployments.get(&id))
        .filter(|r| r.deployment.metadata.namespace == ns);
    by_id
        .or_else(|| {
            t.deployments.values().find(|r| {
                r.deployment.metadata.namespace == ns && r.deployment.metadata.name == key
            })
        })
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("deployment {key} not found in namespace {ns}")))
}

/// Builds a deployment from a request under the store's read lock, checks its templates
/// with no lock held, then builds it again inside the write transaction and commits it if
/// its templates are still the ones checked (the defaults or the deployment may have
/// changed meanwhile; then it starts over, a few times).
fn transact_checked<R>(
    st: &AppState,
    build: impl Fn(&Tables) -> Result<Deployment, ApiError>,
    commit: impl Fn(&Tables, Deployment) -> Result<(Vec<Write1>, R), ApiError>,
) -> Result<R, ApiError> {
    for _ in 0..3 {
        let candidate = build(&st.store.read())?;
        deployments::check_templates(&candidate)?;
        let done = st.store.transact::<_, ApiError>(|t| {
            let d = build(t)?;
            if deployments::template_inputs(&d) != deployments::template_inputs(&candidate) {
                return Ok((vec![], None));
            }
            let (writes, out) = commit(t, d)?;
            Ok((writes, Some(out)))
        })?;
        if let Some(out) = done {
            return Ok(out);
        }
    }
    Err(ApiError::conflict(
        "the deployment or the namespace's deployment defaults kept changing while this request was checked; retry",
    ))
}

fn user_part(d: &Deployment) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(d).map_err(ApiError::internal)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    Ok(v)
}

fn is_stopped(r: &DeploymentRecord) -> bool {
    matches!(r.control.phase, crate::model::Phase::Idle)
        && matches!(
            r.deployment.status.state,
            DeploymentState::Cancelled
                | DeploymentState::Suspended
                | DeploymentState::Failed
                | DeploymentState::Finished
        )
}

pub async fn list_deployments(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let mut items = vec![];
    for r in t.deployments.values() {
        if r.deployment.metadata.namespace != ns {
            continue;
        }
        if let Some(sel) = &q.label_selector {
            if !selector_matches(sel, &r.deployment.metadata.labels)? {
                continue;
            }
        }
        items.push(r.deployment.clone());
    }
    items.sort_by_key(|d| d.metadata.created_at);
    list(items)
}

pub async fn get_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let r = find(&st.store.read(), &ns, &id)?;
    ok(StatusCode::OK, r.deployment)
}

pub async fn create_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    let build = |t: &Tables| {
        let mut d = with_defaults(t, &ns, &body)?;
        compat::normalize(&mut d);
        compat::resolve_target(&mut d, t, compat::explicit_target_name(&body))?;
        Ok(d)
    };
    let commit = |t: &Tables, d: Deployment| commit_new(&st, t, &ns, d);
    let d = transact_checked(&st, build, commit)?;
    answer(&st, StatusCode::CREATED, d)
}

/// A whole Deployment document as the user sent it, over the built-in defaults and the
/// namespace's own (create and `PUT`), placed in the URL's namespace.
fn with_defaults(t: &Tables, ns: &str, body: &Value) -> Result<Deployment, ApiError> {
    let mut d: Deployment = decode(deployments::over_defaults(t.defaults.get(ns), body))?;
    deployments::place_in(&mut d, ns)?;
    Ok(d)
}

/// The answer to a write of `d`: the deployment, with the settings that have no effect on
/// its target as warnings (and as an event, see [`compat`]).
fn answer(st: &AppState, status: StatusCode, d: Deployment) -> ApiResult {
    let warnings = compat::no_effect_in(&d, &st.store.read());
    compat::record_no_effect(st, &d, &warnings);
    compat::ok_with_warnings(status, d, &warnings)
}

/// The writes that store `d` as a new deployment of `ns` (checked and stamped).
fn commit_new(
    st: &AppState,
    t: &Tables,
    ns: &str,
    mut d: Deployment,
) -> Result<(Vec<Write1>, Deployment), ApiError> {
    {
        let id = match d.metadata.id {
            Some(id) if t.deployments.contains_key(&id) => {
                return Err(ApiError::conflict(format!(
                    "a deployment with metadata.id {id} already exists"
                )))
            }
            Some(id) => id,
            None => Uuid::new_v4(),
        };
        d.metadata.id = Some(id);
        deployments::validate(&d, t)?;
        super::artifacts::check_deployment_jar(st, &d, None)?;
        if t.deployments.values().any(|r| {
            r.deployment.metadata.namespace == ns && r.deployment.metadata.name == d.metadata.name
        }) {
            return Err(ApiError::conflict(format!(
                "metadata.name {:?} is already used by another deployment in namespace {ns}",
                d.metadata.name
            )));
        }
        let now = Utc::now();
        d.metadata.resource_version = 1;
        d.metadata.created_at = Some(now);
        d.metadata.modified_at = Some(now);
        d.status = DeploymentStatus::default();
        let rec = DeploymentRecord {
            deployment: d.clone(),
            control: Control::default(),
        };
        Ok((vec![Write1::Deployment(rec)], d))
    }
}

pub async fn patch_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
    Doc(patch): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let build = |t: &Tables| {
        let rec = find(t, &ns, &key)?;
        let cur = &rec.deployment;
        versions::check(
            "deployment",
            versions::wanted(&patch)?,
            cur.metadata.resource_version,
        )?;
        let mut v = user_part(cur)?;
        let mut patch = patch.clone();
        if let Some(o) = patch.as_object_mut() {
            o.remove("status");
        }
        merge_patch(&mut v, &patch);
        let mut d: Deployment = decode(v)?;
        if d.metadata.id != cur.metadata.id {
            return Err(ApiError::invalid("metadata.id cannot be changed"));
        }
        if d.metadata.namespace != cur.metadata.namespace {
            return Err(ApiError::invalid("metadata.namespace cannot be changed"));
        }
        compat::normalize(&mut d);
        compat::resolve_target(&mut d, t, compat::explicit_target_name(&patch))?;
        Ok(d)
    };
    // VVP: asking a FAILED deployment for RUNNING again retries it, also when its desired
    // state already was RUNNING (a new resourceVersion is the user action).
    let retry = patch.pointer("/spec/state").and_then(Value::as_str) == Some("RUNNING");
    let commit = |t: &Tables, d: Deployment| commit_replace(&st, t, &ns, &key, d, retry);
    let d = transact_checked(&st, build, commit)?;
    answer(&st, StatusCode::OK, d)
}

/// The writes that replace the deployment `key` of `ns` with `d` (checked; stamped with a
/// new resourceVersion when anything changed). `retry`: the request asked for RUNNING.
fn commit_replace(
    st: &AppState,
    t: &Tables,
    ns: &str,
    key: &str,
    mut d: Deployment,
    retry: bool,
) -> Result<(Vec<Write1>, Deployment), ApiError> {
    {
        let rec = find(t, ns, key)?;
        let cur = &rec.deployment;
        deployments::validate(&d, t)?;
        super::artifacts::check_deployment_jar(st, &d, Some(cur))?;
        if d.metadata.name != cur.metadata.name
            && t.deployments.values().any(|r| {
                r.deployment.metadata.namespace == ns
                    && r.deployment.metadata.name == d.metadata.name
            })
        {
            return Err(ApiError::conflict(format!(
                "metadata.name {:?} is already used in namespace {ns}",
                d.metadata.name
            )));
        }
        d.status = cur.status.clone();
        d.metadata.created_at = cur.metadata.created_at;
        d.metadata.resource_version = cur.metadata.resource_version;
        d.metadata.modified_at = cur.metadata.modified_at;
        // VVP: asking a FAILED deployment for RUNNING again retries it, also when its
        // desired state already was RUNNING (a new resourceVersion is the user action).
        let retry = cur.status.state == DeploymentState::Failed && retry;
        if d.metadata != cur.metadata || d.spec != cur.spec || retry {
            d.metadata.resource_version = cur.metadata.resource_version + 1;
            d.metadata.modified_at = Some(Utc::now());
        } else {
            return Ok((vec![], d));
        }
        let rec = DeploymentRecord {
            deployment: d.clone(),
            control: rec.control.clone(),
        };
        Ok((vec![Write1::Deployment(rec)], d))
    }
}

/// `PUT` (VVP's upsert): creates the deployment `key` (an id or a name) if it does not
/// exist, else replaces it with the body. The body is built like a new deployment's (the
/// namespace's defaults under it); a `metadata.resourceVersion` in it must be current.
pub async fn put_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    let key_id = Uuid::parse_str(&key).ok();
    let build = |t: &Tables| {
        let mut d = with_defaults(t, &ns, &body)?;
        match find(t, &ns, &key) {
            Ok(cur) => {
                let cur = cur.deployment;
                if d.metadata.id.is_some_and(|id| Some(id) != cur.metadata.id) {
                    return Err(ApiError::invalid(format!(
                        "metadata.id {} does not match deployment {key} of the URL ({})",
                        d.metadata.id.unwrap_or_default(),
                        cur.id()
                    )));
                }
                versions::check(
                    "deployment",
                    versions::wanted(&body)?,
                    cur.metadata.resource_version,
                )?;
                d.metadata.id = cur.metadata.id;
            }
            Err(_) => match key_id {
                Some(id) => {
                    if d.metadata.id.is_some_and(|given| given != id) {
                        return Err(ApiError::invalid(format!(
                            "metadata.id {} does not match the id {id} of the URL",
                            d.metadata.id.unwrap_or_default()
                        )));
                    }
                    d.metadata.id = Some(id);
                }
                None => {
                    if d.metadata.name.is_empty() {
                        d.metadata.name = key.clone();
                    } else if d.metadata.name != key {
                        return Err(ApiError::invalid(format!(
                            "metadata.name {:?} does not match the name {key:?} of the URL",
                            d.metadata.name
                        )));
                    }
                }
            },
        }
        compat::normalize(&mut d);
        compat::resolve_target(&mut d, t, compat::explicit_target_name(&body))?;
        Ok(d)
    };
    let retry = body.pointer("/spec/state").and_then(Value::as_str) == Some("RUNNING");
    let commit = |t: &Tables, d: Deployment| {
        let existing = d
            .metadata
            .id
            .and_then(|id| t.deployments.get(&id))
            .filter(|r| r.deployment.metadata.namespace == ns)
            .map(|r| r.deployment.id().to_string());
        match existing {
            Some(id) => commit_replace(&st, t, &ns, &id, d, retry).map(|(w, d)| (w, (d, false))),
            None => commit_new(&st, t, &ns, d).map(|(w, d)| (w, (d, true))),
        }
    };
    let (d, created) = transact_checked(&st, build, commit)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    answer(&st, status, d)
}

pub async fn delete_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let d = st.store.transact(|t| {
        let rec = find(t, &ns, &key)?;
        if rec.deployment.spec.state == DesiredState::Running || !is_stopped(&rec) {
            return Err(ApiError::conflict(format!(
                "deployment {} is {} (desired {}): set spec.state to CANCELLED and wait until it is CANCELLED before deleting",
                rec.deployment.metadata.name, rec.deployment.status.state, rec.deployment.spec.state
            )));
        }
        let id = rec.deployment.id();
        let mut w = vec![Write1::RemoveDeployment(id)];
        w.extend(t.jobs.values().filter(|j| j.metadata.deployment_id == id).map(|j| Write1::RemoveJob(j.metadata.id)));
        w.extend(t.savepoints.values().filter(|s| s.metadata.deployment_id == id).map(|s| Write1::RemoveSavepoint(s.metadata.id)));
        Ok((w, rec.deployment))
    })?;
    st.store.remove_events(d.id());
    ok(StatusCode::OK, d)
}

pub async fn clone_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let d = st.store.transact::<_, ApiError>(|t| {
        let src = find(t, &ns, &key)?.deployment;
        let base = format!("Fork of {}", src.metadata.name);
        let taken = |n: &str| {
            t.deployments
                .values()
                .any(|r| r.deployment.metadata.namespace == ns && r.deployment.metadata.name == n)
        };
        let mut name = base.clone();
        let mut i = 2;
        while taken(&name) {
            name = format!("{base} ({i})");
            i += 1;
        }
        let now = Utc::now();
        let mut d = src.clone();
        d.metadata.id = Some(Uuid::new_v4());
        d.metadata.name = name;
        d.metadata.resource_version = 1;
        d.metadata.created_at = Some(now);
        d.metadata.modified_at = Some(now);
        d.spec.state = DesiredState::Cancelled;
        d.status = DeploymentStatus::default();
        // The copy must be a valid deployment itself; above all its longer name.
        deployments::validate(&d, t).map_err(|e| {
            ApiError::invalid(format!(
                "cannot clone deployment {:?}: the copy {e}",
                src.metadata.name
            ))
        })?;
        Ok((
            vec![Write1::Deployment(DeploymentRecord {
                deployment: d.clone(),
                control: Control::default(),
            })],
            d,
        ))
    })?;
    ok(StatusCode::CREATED, d)
}

pub async fn list_jobs(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let mut items: Vec<_> = t
        .jobs
        .values()
        .filter(|j| j.metadata.namespace == ns)
        .filter(|j| {
            q.deployment_id
                .is_none_or(|d| d == j.metadata.deployment_id)
        })
        .cloned()
        .collect();
    items.sort_by_key(|j| j.metadata.created_at);
    list(items)
}

pub async fn get_job(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, id)): Path<(String, Uuid)>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let j = t
        .jobs
        .get(&id)
        .filter(|j| j.metadata.namespace == ns)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found in namespace {ns}")))?;
    ok(StatusCode::OK, j)
}

pub async fn list_savepoints(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let mut items: Vec<_> = t
        .savepoints
        .values()
        .filter(|s| s.metadata.namespace == ns)
        .filter(|s| {
            q.deployment_id
                .is_none_or(|d| d == s.metadata.deployment_id)
        })
        .filter(|s| q.job_id.is_none_or(|j| Some(j) == s.metadata.job_id))
        .cloned()
        .collect();
    items.sort_by_key(|s| s.metadata.created_at);
    list(items)
}

pub async fn create_savepoint(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let id = body
        .pointer("/metadata/deploymentId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("metadata.deploymentId is required"))?
        .to_string();
    let sp = st.store.transact(|t| {
        let rec = find(t, &ns, &id).map_err(|_| {
            ApiError::invalid(format!(
                "metadata.deploymentId: deployment {id} not found in namespace {ns}"
            ))
        })?;
        let d = &rec.deployment;
        let job = d
            .status
            .running
            .as_ref()
            .and_then(|r| r.job_id)
            .and_then(|j| t.jobs.get(&j));
        let running = d.status.state == DeploymentState::Running
            && job.is_some_and(|j| j.status.state == JobState::Started);
        if !running {
            return Err(ApiError::conflict(format!(
                "deployment {} has no running job to take a savepoint of (state {})",
                d.metadata.name, d.status.state
            )));
        }
        let sp = new_savepoint(d, job.map(|j| j.metadata.id), SavepointOrigin::UserRequest);
        Ok((vec![Write1::Savepoint(sp.clone())], sp))
    })?;
    ok(StatusCode::CREATED, sp)
}

pub async fn get_savepoint(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, id)): Path<(String, Uuid)>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let s = t
        .savepoints
        .get(&id)
        .filter(|s| s.metadata.namespace == ns)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!("savepoint {id} not found in namespace {ns}"))
        })?;
    ok(StatusCode::OK, s)
}

pub async fn delete_savepoint(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, id)): Path<(String, Uuid)>,
) -> ApiResult {
    caller.require(&ns, Role::Editor)?;
    let s = st.store.transact::<_, ApiError>(|t| {
        let s = t
            .savepoints
            .get(&id)
            .filter(|s| s.metadata.namespace == ns)
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!("savepoint {id} not found in namespace {ns}"))
            })?;
        Ok((vec![Write1::RemoveSavepoint(id)], s))
    })?;
    ok(StatusCode::OK, s)
}

pub async fn list_events(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let mut items: Vec<_> = t
        .events
        .iter()
        .filter(|(d, _)| q.deployment_id.is_none_or(|x| x == **d))
        .flat_map(|(_, l)| l.iter())
        .filter(|e| e.metadata.namespace == ns)
        .filter(|e| q.job_id.is_none_or(|j| Some(j) == e.metadata.job_id))
        .cloned()
        .collect();
    items.sort_by_key(|e| e.metadata.created_at);
    list(items)
}

pub async fn list_targets(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let items: Vec<_> = t
        .targets
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, v)| v.clone())
        .collect();
    list(items)
}

pub async fn get_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    caller.require(&ns, Role::Viewer)?;
    let t = st.store.read();
    let v = t
        .targets
        .get(&(ns.clone(), name.clone()))
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "deployment target {name} not found in namespace {ns}"
            ))
        })?;
    ok(StatusCode::OK, v)
}

pub async fn create_target(
    State(st): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    Doc(body): Doc,
) -> ApiResult {
    // Owner only, as in Ververica Platform: a target decides where jobs run (a session
    // target's restUrl), so editors may list and read targets but not change them.
    caller.require(&ns, Role::Owner)?;
    let mut target = decode_target(body)?;
    check_name("metadata.name", &target.metadata.name)?;
    let target = st.store.transact(|t| {
        if t.targets
            .contains_key(&(ns.clone(), target.metadata.name.clone()))
        {
            return Err(ApiError::conflict(format!(
                "deployment target {} already exists in namespace {ns}",
                target.metadata.name
            )));
        }
        target.metadata.namespace = ns.clone();
        target.metadata.id = Some(Uuid::new_v4());
        target.metadata.created_at = Some(Utc::now());
        target.metadata.resource_version = 1;
        Ok((vec![Write1::Target(target.clone())], target))
    })?;
    ok(StatusCode::CREATED, target)
}

/// A deployment target from a request body, checked ([`targets`]).
fn decode_target(mut body: Value) -> Result<DeploymentTarget, ApiError> {
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    targets::check_kind_given(&body)?;
    let target: DeploymentTarget = decode(body)?;
    targets::validate(&target)?;
    Ok(target)
}

/// `PUT` (VVP's upsert, owner only): creates the target `name` or replaces it. A
/// `metadata.resourceVersion` in the body must be current; the spec of a target that a
/// deployment is running on cannot change (stop the deployment first).
pub async fn put_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Doc(body): Doc,
) -> ApiResult {
    caller.require(&ns, Role::Owner)?;
    let rv = versions::wanted(&body)?;
    let mut target = decode_target(body)?;
    if target.metadata.name.is_empty() {
        target.metadata.name = name.clone();
    } else if target.metadata.name != name {
        return Err(ApiError::invalid(format!(
            "metadata.name {:?} does not match the name {name:?} of the URL",
            target.metadata.name
        )));
    }
    check_name("metadata.name", &name)?;
    let (target, created) = st.store.transact(|t| {
        target.metadata.namespace = ns.clone();
        let now = Utc::now();
        match t.targets.get(&(ns.clone(), name.clone())) {
            Some(cur) => {
                versions::check("deployment target", rv, cur.metadata.resource_version)?;
                if target.spec != cur.spec {
                    if let Some(r) = t.deployments.values().find(|r| {
                        r.deployment.metadata.namespace == ns
                            && r.deployment.spec.deployment_target_name == name
                            && (r.deployment.spec.state == DesiredState::Running || !is_stopped(r))
                    }) {
                        return Err(ApiError::conflict(format!(
                            "the spec of deployment target {name} cannot change while deployment {} runs on it: suspend or cancel it first",
                            r.deployment.metadata.name
                        )));
                    }
                }
                target.metadata.id = cur.metadata.id;
                target.metadata.created_at = cur.metadata.created_at;
                if target.spec == cur.spec
                    && target.metadata.labels == cur.metadata.labels
                    && target.metadata.annotations == cur.metadata.annotations
                {
                    return Ok((vec![], (cur.clone(), false)));
                }
                target.metadata.resource_version = cur.metadata.resource_version + 1;
                target.metadata.modified_at = Some(now);
            }
            None => {
                target.metadata.id = Some(Uuid::new_v4());
                target.metadata.created_at = Some(now);
                target.metadata.modified_at = None;
                target.metadata.resource_version = 1;
            }
        }
        let created = target.metadata.resource_version == 1;
        Ok((
            vec![Write1::Target(target.clone())],
            (target.clone(), created),
        ))
    })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, target)
}

pub async fn delete_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    // Owner only, as in Ververica Platform: a target decides where jobs run (a session
    // target's restUrl), so editors may list and read targets but not change them.
    caller.require(&ns, Role::Owner)?;
    let v = st.store.transact(|t| {
        let v = t
            .targets
            .get(&(ns.clone(), name.clone()))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "deployment target {name} not found in namespace {ns}"
                ))
            })?;
        if let Some(r) = t.deployments.values().find(|r| {
            r.deployment.metadata.namespace == ns
                && r.deployment.spec.deployment_target_name == name
        }) {
            return Err(ApiError::conflict(format!(
                "deployment target {name} is used by deployment {}",
                r.deployment.metadata.name
            )));
        }
        Ok((vec![Write1::RemoveTarget(ns.clone(), name.clone())], v))
    })?;
    ok(StatusCode::OK, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let l = BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            ("tier".to_string(), "gold".to_string()),
        ]);
        assert!(selector_matches("team=a", &l).unwrap());
        assert!(selector_matches("team==a,tier!=silver", &l).unwrap());
        assert!(!selector_matches("team=b", &l).unwrap());
        assert!(selector_matches("tier,!missing", &l).unwrap());
        assert!(!selector_matches("missing", &l).unwrap());
        assert!(selector_matches("te am", &l).is_err());
    }
}
