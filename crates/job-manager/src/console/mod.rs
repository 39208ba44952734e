//! The web console: a single page served at `/`, talking to the JSON API with the caller's
//! token, and the Flink UI proxy beside it.
//!
//! - [`assets`]: the page, its style sheet, scripts and message catalogues, embedded in the
//!   binary (hand-written ES modules, no build step).
//! - [`proxy`]: `/flink/{namespace}/{deploymentId}/…` forwards to the Flink web UI of a
//!   RUNNING deployment, authenticated by a short-lived session cookie the console sets.
//! - [`metrics`]: a deployment's charts, from a fixed set of panels, read from the
//!   metrics-gateway's query API.
//! - [`logs`]: the tail of a deployment's JobManager log where the target keeps log files.
//! - `GET /console/v1/namespaces/{ns}/me`: who the caller is and their role there (and the
//!   manager's version), so the console can disable what the role may not do and say why.

pub mod assets;
pub mod logs;
pub mod metrics;
pub mod proxy;

use axum::{
    extract::Path,
    http::StatusCode,
    routing::{any, get, post},
    Router,
};
use serde_json::json;

use crate::api::{
    auth::{Caller, Principal},
    ok, ApiResult, AppState,
};

/// The console's routes (merged beside the API's).
pub fn router(state: AppState) -> Router {
    let cs = proxy::ConsoleState::new(state.clone());
    let me = Router::new()
        .route("/console/v1/namespaces/{ns}/me", get(me))
        .route(
            "/console/v1/namespaces/{ns}/deployments/{id}/metrics",
            get(metrics::panel),
        )
        .route(
            "/console/v1/namespaces/{ns}/deployments/{id}/logs",
            get(logs::jobmanager),
        )
        .with_state(state);
    let flink = Router::new()
        .route(
            proxy::SESSION_PATH,
            post(proxy::open_session).delete(proxy::close_session),
        )
        .route("/flink/{ns}/{id}", any(proxy::redirect_slash))
        .route("/flink/{ns}/{id}/", any(proxy::forward))
        .route("/flink/{ns}/{id}/{*rest}", any(proxy::forward))
        .with_state(cs);
    assets::router().merge(me).merge(flink)
}

/// `GET /console/v1/namespaces/{ns}/me`: the caller and their role in `ns` (`null`: none).
async fn me(caller: Caller, Path(ns): Path<String>) -> ApiResult {
    let who = match &caller.principal {
        Principal::Admin => json!({"kind": "bootstrap", "name": "bootstrap"}),
        Principal::Token {
            namespace, name, ..
        } => json!({"kind": "token", "name": name, "namespace": namespace}),
        Principal::User(uid) => json!({"kind": "user", "name": uid}),
    };
    let role = caller.role_in(&ns).map(|r| r.as_str());
    ok(
        StatusCode::OK,
        json!({
            "namespace": ns,
            "principal": who,
            "role": role,
            "admin": caller.principal == Principal::Admin,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}
