//! HTTP API: the Alertmanager webhook endpoints and the render preview.
//!
//! - `POST /dingtalk/{target}/send`: queue every alert for `target`.
//! - `POST /dingtalk/send`: queue each alert for the targets its labels route it to.
//! - `POST /dingtalk/{target}/preview`: the DingTalk bodies the payload would become.
//! - `GET /api/v1/targets`: targets, their message type and queue depth (no secrets).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::json;

use crate::{
    alert,
    gateway::{EnqueueError, Gateway},
};

/// What a client did wrong (4xx) or why it should come back later (503).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not an Alertmanager webhook payload.
    #[error(transparent)]
    Payload(#[from] alert::PayloadError),
    /// Could not queue.
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Payload(_) => StatusCode::BAD_REQUEST,
            ApiError::Enqueue(EnqueueError::UnknownTarget { .. }) => StatusCode::NOT_FOUND,
            ApiError::Enqueue(EnqueueError::Unroutable(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            // Alertmanager retries 5xx: exactly what a full queue or a restart needs.
            ApiError::Enqueue(EnqueueError::TooManyAlerts { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Enqueue(
                EnqueueError::QueueFull(_)
                | EnqueueError::QueueBytesFull { .. }
                | EnqueueError::Closing,
            ) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut resp = (
            status,
            Json(json!({"status": "error", "error": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        }
        resp
    }
}

async fn send(
    State(g): State<Arc<Gateway>>,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = alert::parse(&body)?;
    let queued = g.enqueue(&target, n)?;
    Ok(Json(
        json!({"status": "queued", "alerts": {target: queued}}),
    ))
}

async fn send_routed(
    State(g): State<Arc<Gateway>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = alert::parse(&body)?;
    let queued = g.enqueue_routed(n)?;
    Ok(Json(json!({"status": "queued", "alerts": queued})))
}

async fn preview(
    State(g): State<Arc<Gateway>>,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = alert::parse(&body)?;
    let messages: Vec<_> = g
        .preview(&target, n)?
        .into_iter()
        .map(|c| {
            json!({
                "alerts": c.alerts,
                "bytes": c.body.bytes.len(),
                "truncated": c.body.truncated,
                "template_error": c.template_error,
                "body": c.body.json(),
            })
        })
        .collect();
    Ok(Json(json!({"target": target, "messages": messages})))
}

async fn targets(State(g): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let compiled = g.compiled();
    let list: Vec<_> = compiled
        .targets
        .values()
        .map(|t| {
            json!({
                "name": t.name,
                "message_type": t.message_type,
                "signed": t.robot.secret.is_some(),
                "keyword": t.keyword,
                "custom_templates": t.templates.is_custom(),
            })
        })
        .collect();
    Json(json!({"targets": list, "pending_alerts": g.pending()}))
}

/// The service's routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/dingtalk/send", post(send_routed))
        .route("/dingtalk/{target}/send", post(send))
        .route("/dingtalk/{target}/preview", post(preview))
        .route("/api/v1/targets", get(targets))
        .with_state(gateway)
}
