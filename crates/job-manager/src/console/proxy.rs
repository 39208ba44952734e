//! The Flink UI proxy: `/flink/{namespace}/{deploymentId}/…` forwards to the web UI (and
//! REST API) of the Flink cluster running a RUNNING deployment's job, so users never need the
//! cluster's address.
//!
//! **Authentication.** A browser does not send `Authorization` when it follows a link, so
//! the console, right after sign-in, calls `POST /flink/-/session` with its bearer token and
//! gets a cookie `jm_flink_session` (random, `HttpOnly`, `SameSite=Strict`, `Path=/flink/`,
//! one hour). The cookie names a session held only in this process's memory; the token it
//! stands for is checked again on every request (a revoked token stops working at once).
//! Behind the trusted auth proxy the user header authenticates directly and no cookie is
//! needed. Neither the cookie nor the token is logged or forwarded to Flink.
//!
//! **Authorization**, as in Ververica Platform: `GET`/`HEAD` need the viewer role in the
//! namespace; anything else (job cancellation `PATCH /jobs/{id}`, JAR uploads, savepoint
//! triggers through the UI) needs editor.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{FromRequestParts, Path, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use common::Secret;
use rand::RngCore;

use crate::{
    api::{auth::Caller, ok, ApiError, ApiResult, AppState},
    model::{DeploymentState, Role},
};

/// Where the console opens and closes its proxy session.
pub const SESSION_PATH: &str = "/flink/-/session";
/// The session cookie's name.
pub const COOKIE: &str = "jm_flink_session";
/// How long a proxy session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Most sessions held at once; the oldest goes first beyond.
const MAX_SESSIONS: usize = 10_000;
/// Request headers passed on to Flink (nothing that authenticates the caller here).
const FORWARDED_REQUEST_HEADERS: &[header::HeaderName] = &[
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_TYPE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];
/// Response headers passed back from Flink.
const FORWARDED_RESPONSE_HEADERS: &[header::HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
];

struct Session {
    bearer: Secret,
    expires: Instant,
}

/// The proxy's state: the API's, the sessions and the client that calls Flink.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    http: reqwest::Client,
}

impl ConsoleState {
    pub fn new(app: AppState) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            app,
            sessions: Arc::default(),
            http,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|s| s.trim().to_string())
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `POST /flink/-/session`: exchanges the caller's bearer token for the proxy cookie.
pub async fn open_session(State(cs): State<ConsoleState>, req: Request) -> ApiResult {
    let (mut parts, _) = req.into_parts();
    // Only an accepted token gets a session (401 otherwise).
    Caller::from_request_parts(&mut parts, &cs.app).await?;
    let Some(token) = bearer(&parts.headers) else {
        // The trusted proxy's user header authenticates every request itself.
        return ok(StatusCode::OK, serde_json::json!({"cookie": false}));
    };
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let id = hex::encode(raw);
    {
        let now = Instant::now();
        let mut s = cs.sessions();
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
        }
        s.insert(
            id.clone(),
            Session {
                bearer: Secret::new(token),
                expires: now + SESSION_TTL,
            },
        );
    }
    let cookie = format!(
        "{COOKIE}={id}; Path=/flink/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure(&parts.headers) {
            "; Secure"
        } else {
            ""
        }
    );
    let mut r = ok(StatusCode::OK, serde_json::json!({"cookie": true}))?;
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// `DELETE /flink/-/session`: forgets the session (sign-out) and clears the cookie.
pub async fn close_session(State(cs): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        cs.sessions().remove(&id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "jm_flink_session=; Path=/flink/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// `/flink/{ns}/{id}` → `/flink/{ns}/{id}/` (the UI loads its files relative to it).
pub async fn redirect_slash(Path((ns, id)): Path<(String, String)>) -> Response {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Redirect::temporary(&format!("/flink/{}/{}/", enc(&ns), enc(&id))).into_response()
}

/// An error as the browser shows it: a short HTML page for navigations, the API envelope
/// otherwise.
fn refuse(e: ApiError, html: bool) -> Response {
    if !html {
        return e.into_response();
    }
    let msg = e
        .message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Flink UI</title>\
         <body style=\"font-family:sans-serif;margin:2rem\"><h1>Flink UI unavailable</h1>\
         <p>{msg}</p><p><a href=\"/\">Open the console</a></p></body></html>"
    );
    (
        e.status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Any method on `/flink/{ns}/{id}/…`.
pub async fn forward(State(cs): State<ConsoleState>, req: Request) -> Response {
    let html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    match forward_inner(cs, req).await {
        Ok(r) => r,
        Err(e) => refuse(e, html),
    }
}

async fn forward_inner(cs: ConsoleState, req: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    // The raw path, still percent-encoded: "", "flink", ns, id, rest.
    let raw = parts.uri.path().to_string();
    let mut pieces = raw.splitn(5, '/');
    let (_, _) = (pieces.next(), pieces.next());
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let ns = decode(pieces.next().unwrap_or(""));
    let key = decode(pieces.next().unwrap_or(""));
    let rest = pieces.next().unwrap_or("").to_string();
    if rest
        .split('/')
        .any(|s| s == ".." || s == "." || s.contains('\\'))
    {
        return Err(ApiError::invalid(format!(
            "path /{rest} is not a Flink UI path"
        )));
    }

    // Authenticate: the session cookie stands for a bearer token, unless the request
    // carries its own credentials.
    if !parts.headers.contains_key(header::AUTHORIZATION) {
        if let Some(id) = session_cookie(&parts.headers) {
            let bearer = {
                let now = Instant::now();
                let s = cs.sessions();
                s.get(&id)
                    .filter(|v| v.expires > now)
                    .map(|v| v.bearer.expose().to_string())
            };
            if let Some(b) = bearer {
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {b}")) {
                    parts.headers.insert(header::AUTHORIZATION, v);
                }
            }
        }
    }
    let caller = Caller::from_request_parts(&mut parts, &cs.app)
        .await
        .map_err(|mut e| {
            if e.status == StatusCode::UNAUTHORIZED {
                e.message = "sign in to the console first (the Flink UI link works for an hour after sign-in)".into();
            }
            e
        })?;
    let read_only = parts.method == Method::GET || parts.method == Method::HEAD;
    let need = if read_only {
        Role::Viewer
    } else {
        Role::Editor
    };
    caller.require(&ns, need).map_err(|mut e| {
        if e.status == StatusCode::FORBIDDEN && !read_only {
            e.message = format!(
                "{}: changing a job through the Flink UI (e.g. cancelling it) needs the editor role",
                e.message
            );
        }
        e
    })?;

    let rest_url = {
        let t = cs.app.store.read();
        let by_id = uuid::Uuid::parse_str(&key)
            .ok()
            .and_then(|id| t.deployments.get(&id));
        let rec = by_id
            .or_else(|| {
                t.deployments.values().find(|r| {
                    r.deployment.metadata.namespace == ns && r.deployment.metadata.name == key
                })
            })
            .filter(|r| r.deployment.metadata.namespace == ns)
            .ok_or_else(|| {
                ApiError::not_found(format!("deployment {key} not found in namespace {ns}"))
            })?;
        let d = &rec.deployment;
        if d.status.state != DeploymentState::Running {
            return Err(ApiError::conflict(
                format!(
                    "deployment {} is {:?}, not RUNNING: its Flink UI is available while it runs",
                    d.metadata.name, d.status.state
                )
                .replace("Running", "RUNNING"),
            ));
        }
        d.status
            .running
            .as_ref()
            .and_then(|r| r.job_id)
            .and_then(|j| t.jobs.get(&j))
            .and_then(|j| j.status.cluster.as_ref())
            .map(|c| c.rest_url.clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "deployment {} has no Flink cluster address yet",
                    d.metadata.name
                ))
            })?
    };

    let mut url = format!("{}/{rest}", rest_url.trim_end_matches('/'));
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|_| ApiError::invalid("unsupported method"))?;
    let mut out = cs.http.request(method, &url);
    for h in FORWARDED_REQUEST_HEADERS {
        if let Some(v) = parts.headers.get(h) {
            out = out.header(h.as_str(), v.as_bytes());
        }
    }
    if !read_only {
        let limit = usize::try_from(cs.app.max_upload_bytes()).unwrap_or(usize::MAX);
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("request body is larger than the limit of {limit} bytes"),
            )
        })?;
        out = out.body(bytes);
    }
    let resp = out.send().await.map_err(|e| {
        tracing::warn!(namespace = %ns, deployment = %key, error = %e.without_url(), "Flink UI proxy: the cluster did not answer.");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "BadGateway",
            "the deployment's Flink cluster did not answer",
        )
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for h in FORWARDED_RESPONSE_HEADERS {
        if let Some(v) = resp.headers().get(h.as_str()) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                headers.insert(h.clone(), v);
            }
        }
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let stream = futures::stream::unfold(Some(resp), |r| async move {
        let mut r = r?;
        match r.chunk().await {
            Ok(Some(c)) => Some((Ok::<_, std::io::Error>(c), Some(r))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e.without_url())), None)),
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}
