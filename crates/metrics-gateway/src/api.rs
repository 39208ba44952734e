//! HTTP endpoints: the Pushgateway's push API (`PUT`/`POST`/`DELETE /metrics/job/...`),
//! `GET /metrics`, the JSON API (`/api/v1/metrics`, `/api/v1/status`,
//! `PUT /api/v1/admin/wipe`), `/-/quit`, and our additions (`DELETE /api/v1/groups?match[]=`,
//! per-push TTL).

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, delete, get, put},
    Json, Router,
};
use common::{ConfigError, ConfigHandle, Lifecycle};
use prometheus::Registry;
use promql_parser::label::Matcher;

use crate::{
    config::{Config, PushConfig},
    grouping::{self, GroupKey},
    limits::{LabelLimits, LimitError},
    metrics::GatewayMetrics,
    parse::{self, ParseError},
    render::{self, ExpositionSource},
    store::{Limits, Push, PushError, Stats, Store},
};

/// Query parameter and header that set a group's TTL at push time.
pub const TTL_PARAM: &str = "ttl";
/// Header alternative to [`TTL_PARAM`].
pub const TTL_HEADER: &str = "x-group-ttl";
/// Push bodies larger than this are parsed and checked on the blocking thread pool, so a
/// large or hostile body never stalls the async workers that serve everyone else.
pub const BLOCKING_BODY_BYTES: usize = 64 * 1024;

/// Settings fixed by flags at start-up.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub enable_admin_api: bool,
    pub enable_lifecycle: bool,
    /// Flag values; `None` falls back to the config file.
    pub group_ttl: Option<Duration>,
    pub max_group_ttl: Option<Duration>,
    pub max_body_bytes: Option<u64>,
    pub max_series_per_group: Option<usize>,
    pub max_total_series: Option<usize>,
    pub max_labels_per_series: Option<usize>,
    pub max_label_name_length: Option<usize>,
    pub max_label_value_length: Option<usize>,
    /// Flags shown by `/api/v1/status`.
    pub flags: BTreeMap<String, String>,
}

/// Everything the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub registry: Registry,
    pub metrics: GatewayMetrics,
    pub settings: Settings,
    pub config: Option<ConfigHandle<Config>>,
    pub lifecycle: Lifecycle,
    pub start_time: SystemTime,
    sources: RwLock<Vec<Arc<dyn ExpositionSource>>>,
    /// Size of the last `/metrics` render, to allocate the next one in one piece (one large
    /// allocation goes back to the OS when freed; a doubling string leaves heap behind).
    last_render: std::sync::atomic::AtomicUsize,
}

/// Limits and TTL in effect: flags first, then the config file, then the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Effective {
    pub group_ttl: Option<Duration>,
    pub max_group_ttl: Duration,
    pub max_body_bytes: u64,
    pub limits: Limits,
}

impl Settings {
    /// The limits and TTL in effect with the config file's `push:` section.
    pub fn effective(&self, push: &PushConfig) -> Effective {
        let ttl = self.group_ttl.or(push.group_ttl).filter(|d| !d.is_zero());
        Effective {
            group_ttl: ttl,
            max_group_ttl: self.max_group_ttl.unwrap_or(push.max_group_ttl),
            max_body_bytes: self.max_body_bytes.unwrap_or(push.max_body_bytes),
            limits: Limits {
                max_series_per_group: self
                    .max_series_per_group
                    .unwrap_or(push.max_series_per_group),
                max_total_series: self.max_total_series.unwrap_or(push.max_total_series),
                labels: LabelLimits {
                    max_labels_per_series: self
                        .max_labels_per_series
                        .unwrap_or(push.max_labels_per_series),
                    max_label_name_length: self
                        .max_label_name_length
                        .unwrap_or(push.max_label_name_length),
                    max_label_value_length: self
                        .max_label_value_length
                        .unwrap_or(push.max_label_value_length),
                },
            },
        }
    }

    /// Checks what flags and the config file give together (each alone is checked where it
    /// is read): the maximum TTL is positive and not shorter than the default TTL.
    pub fn validate(&self, push: &PushConfig) -> Result<(), ConfigError> {
        let eff = self.effective(push);
        crate::config::check_ttls(
            eff.group_ttl,
            eff.max_group_ttl,
            [
                "--push.group-ttl (or push.group_ttl)",
                "--push.max-group-ttl (or push.max_group_ttl)",
            ],
        )
    }
}

impl AppState {
    /// State with the given parts and no exposition sources.
    pub fn new(
        store: Arc<Store>,
        registry: Registry,
        metrics: GatewayMetrics,
        settings: Settings,
        config: Option<ConfigHandle<Config>>,
        lifecycle: Lifecycle,
    ) -> Self {
        Self {
            store,
            registry,
            metrics,
            settings,
            config,
            lifecycle,
            start_time: SystemTime::now(),
            sources: RwLock::new(Vec::new()),
            last_render: std::sync::atomic::AtomicUsize::new(64 * 1024),
        }
    }

    /// Adds text to every `GET /metrics` (see [`ExpositionSource`]).
    pub fn add_exposition_source(&self, source: Arc<dyn ExpositionSource>) {
        match self.sources.write() {
            Ok(mut s) => s.push(source),
            Err(p) => p.into_inner().push(source),
        }
    }

    /// The limits and TTL in effect now.
    pub fn effective(&self) -> Effective {
        let cfg = self.config.as_ref().map(|c| c.current());
        let push = cfg.as_ref().map(|c| c.push.clone()).unwrap_or_default();
        self.settings.effective(&push)
    }

    /// The whole `/metrics` text: groups, our own metrics, extra sources.
    pub fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering;
        let hint = self.last_render.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8);
        render::render_groups(&self.store, &mut out);
        self.metrics.sizes(self.store.stats());
        self.metrics.scrapes.inc();
        out.push_str(&common::telemetry::encode(&self.registry));
        let sources = match self.sources.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for s in sources {
            s.render(&mut out);
        }
        self.last_render.store(out.len(), Ordering::Relaxed);
        out
    }
}

/// A client error with its status; the message is the response body.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.1;
        body.push('\n');
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// The service's routes (the common server adds `/-/healthy` and friends).
pub fn app(state: Arc<AppState>) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/metrics/{*rest}", any(push_handler))
        .route("/api/v1/metrics", get(api_metrics))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/groups", delete(delete_groups))
        .route("/-/quit", any(quit));
    if state.settings.enable_admin_api {
        r = r.route("/api/v1/admin/wipe", put(wipe));
    }
    r.layer(DefaultBodyLimit::disable()).with_state(state)
}

async fn metrics_handler(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let body = s.render_metrics();
    // A scraper that accepts delimited protobuf gets it (the only format that carries
    // native histograms), as from the Pushgateway.
    let accept = header_str(&headers, header::ACCEPT).unwrap_or("");
    if accept
        .split(',')
        .any(|a| crate::parse::proto::is_delimited_protobuf(a.split(";q=").next().unwrap_or("")))
    {
        if let Some(bytes) = render::render_protobuf(&s.store, &body) {
            return (
                [(
                    header::CONTENT_TYPE,
                    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                )],
                bytes,
            )
                .into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn parse_ttl(req: &Request) -> Result<Option<Duration>, ApiError> {
    let from_query = req.uri().query().and_then(|q| {
        url_pairs(q)
            .into_iter()
            .find(|(k, _)| k == TTL_PARAM)
            .map(|(_, v)| v)
    });
    let from_header = req
        .headers()
        .get(TTL_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    match from_query.or(from_header) {
        None => Ok(None),
        Some(v) => common::cli::parse_duration(&v).map(Some).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid group TTL ({TTL_PARAM} parameter or {TTL_HEADER} header): {e}"),
            )
        }),
    }
}

/// Decodes `a=b&c=d` (with `+` as space and percent escapes).
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn push_handler(State(s): State<Arc<AppState>>, req: Request) -> Response {
    match push_inner(&s, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn push_inner(s: &AppState, req: Request) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/metrics/").unwrap_or("").to_owned();
    if !rest.starts_with("job") {
        return Err(ApiError(StatusCode::NOT_FOUND, "404 page not found".into()));
    }
    let replace = match method {
        Method::PUT => true,
        Method::POST => false,
        Method::DELETE => {
            let key = grouping::parse_path(&rest)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
            if s.store.delete(&key, SystemTime::now()) {
                s.metrics
                    .groups_removed
                    .with_label_values(&["delete"])
                    .inc();
                tracing::debug!(group = %grouping::to_path(&key), "Group deleted.");
            }
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        _ => {
            return Err(ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed".into(),
            ))
        }
    };
    let m = method.as_str();
    let count = |result: &str| s.metrics.pushes.with_label_values(&[m, result]).inc();
    let ttl = parse_ttl(&req);
    let eff = s.effective();
    let too_large = |limit: u64| {
        s.metrics
            .limit_rejections
            .with_label_values(&["body_size"])
            .inc();
        count("too_large");
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            ParseError::TooLarge { limit }.to_string(),
        )
    };
    let limit = eff.max_body_bytes;
    let declared =
        header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if limit > 0 && declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    let content_encoding = header_str(req.headers(), header::CONTENT_ENCODING).map(str::to_owned);
    let cap = if limit == 0 {
        usize::MAX
    } else {
        limit as usize
    };
    // The body is read before the URL is judged, so a refused request still consumes it and
    // the client reads our answer instead of a connection reset.
    let body = axum::body::to_bytes(req.into_body(), cap)
        .await
        .map_err(|_| too_large(limit))?;
    let body_len = body.len();
    let key = grouping::parse_path(&rest).map_err(|e| {
        count("bad_request");
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    let ttl = ttl.inspect_err(|_| count("bad_request"))?;
    if let Some(d) = ttl.filter(|d| *d > eff.max_group_ttl) {
        count("bad_request");
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "group TTL ({TTL_PARAM} parameter or {TTL_HEADER} header) of {} is longer than the maximum of {} (--push.max-group-ttl)",
                promql_parser::util::display_duration(&d),
                promql_parser::util::display_duration(&eff.max_group_ttl)
            ),
        ));
    }
    let ttl = match ttl {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => eff.group_ttl,
    };
    // A gzip body's size says nothing about what it inflates to: always off the workers.
    let gzip = content_encoding
        .as_deref()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
    let limits = eff.limits;
    let store = s.store.clone();
    let group = key.clone();
    // Parsing and checking are linear in the body, but a large body still takes a while:
    // off the async workers with it.
    let work = move || -> Result<Result<Stats, PushError>, ParseError> {
        let families = parse::parse_body(
            content_type.as_deref(),
            content_encoding.as_deref(),
            &body,
            limit,
            limits.labels,
        )?;
        let push = Push {
            key: group,
            families,
            replace,
            ttl,
            limits,
        };
        Ok(store.push(push, SystemTime::now()))
    };
    let outcome = if gzip || body_len > BLOCKING_BODY_BYTES {
        tokio::task::spawn_blocking(work).await.map_err(|error| {
            tracing::error!(%error, "Push task failed.");
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        })?
    } else {
        work()
    };
    let limit_refused = |e: &LimitError| {
        s.metrics
            .limit_rejections
            .with_label_values(&[e.kind()])
            .inc();
        count("limit");
    };
    let result = match outcome {
        Ok(r) => r,
        Err(ParseError::TooLarge { limit }) => return Err(too_large(limit)),
        Err(e) => {
            match &e {
                ParseError::Limit { error, .. } => limit_refused(error),
                _ => count("parse_error"),
            }
            tracing::debug!(group = %grouping::to_path(&key), error = %e, "Push rejected.");
            return Err(ApiError(StatusCode::BAD_REQUEST, e.to_string()));
        }
    };
    match result {
        Ok(stats) => {
            count("ok");
            s.metrics.sizes(stats);
            Ok(StatusCode::OK.into_response())
        }
        Err(e) => {
            match &e {
                PushError::Limit(l) => limit_refused(l),
                PushError::Inconsistent(_) => count("inconsistent"),
            }
            tracing::info!(group = %grouping::to_path(&key), error = %e, "Push rejected.");
            Err(ApiError(StatusCode::BAD_REQUEST, e.to_string()))
        }
    }
}

async fn api_metrics(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(render::api_metrics(&s.store))
}

async fn api_status(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "success",
        "data": {
            "build_information": {
                "version": env!("CARGO_PKG_VERSION"),
                "rustVersion": env!("CARGO_PKG_RUST_VERSION"),
                "branch": "",
                "revision": "",
            },
            "flags": s.settings.flags,
            "start_time": render::rfc3339(s.start_time),
        }
    }))
}

async fn wipe(State(s): State<Arc<AppState>>) -> StatusCode {
    let n = s.store.wipe(SystemTime::now());
    s.metrics
        .groups_removed
        .with_label_values(&["wipe"])
        .inc_by(n as u64);
    s.metrics.sizes(s.store.stats());
    tracing::info!(groups = n, "Wiped all groups.");
    StatusCode::ACCEPTED
}

async fn quit(State(s): State<Arc<AppState>>, method: Method) -> Response {
    if method != Method::PUT && method != Method::POST {
        return ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only POST or PUT requests allowed.".into(),
        )
        .into_response();
    }
    if !s.settings.enable_lifecycle {
        return ApiError(
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled.".into(),
        )
        .into_response();
    }
    tracing::info!("Quit requested over HTTP.");
    s.lifecycle.request_shutdown();
    (StatusCode::OK, "Requesting termination... Goodbye!\n").into_response()
}

/// Parses `match[]` selectors into matcher sets (a group matches if any set matches).
pub fn parse_selectors(selectors: &[String]) -> Result<Vec<Vec<Matcher>>, String> {
    if selectors.is_empty() {
        return Err(
            "at least one match[] selector is required, e.g. match[]={deploymentId=\"...\"}".into(),
        );
    }
    let mut sets = Vec::new();
    for sel in selectors {
        let expr = promql_parser::parser::parse(sel)
            .map_err(|e| format!("invalid selector {sel:?}: {e}"))?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(format!(
                "invalid selector {sel:?}: expected a series selector like {{job=\"x\"}}"
            ));
        };
        if vs.name.is_some()
            || vs
                .matchers
                .matchers
                .iter()
                .chain(vs.matchers.or_matchers.iter().flatten())
                .any(|m| m.name == "__name__")
        {
            return Err(format!(
                "invalid selector {sel:?}: groups are matched by their grouping key labels; a metric name does not apply"
            ));
        }
        if vs.offset.is_some() || vs.at.is_some() {
            return Err(format!(
                "invalid selector {sel:?}: offset and @ do not apply"
            ));
        }
        if vs.matchers.or_matchers.is_empty() {
            sets.push(vs.matchers.matchers);
        } else {
            for mut set in vs.matchers.or_matchers {
                set.extend(vs.matchers.matchers.iter().cloned());
                sets.push(set);
            }
        }
    }
    Ok(sets)
}

/// Whether a grouping key satisfies one of the matcher sets (absent labels match as "").
pub fn key_matches(key: &GroupKey, sets: &[Vec<Matcher>]) -> bool {
    sets.iter().any(|set| {
        set.iter()
            .all(|m| m.is_match(key.get(&m.name).map(String::as_str).unwrap_or("")))
    })
}

async fn delete_groups(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let selectors: Vec<String> = req
        .uri()
        .query()
        .map(url_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v)
        .collect();
    let sets = match parse_selectors(&selectors) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"status": "error", "errorType": "bad_data", "error": e})),
            )
                .into_response()
        }
    };
    let n = s
        .store
        .delete_where(SystemTime::now(), |g| key_matches(&g.key, &sets));
    s.metrics
        .groups_removed
        .with_label_values(&["matcher"])
        .inc_by(n as u64);
    s.metrics.sizes(s.store.stats());
    tracing::info!(groups = n, selectors = ?selectors, "Deleted groups by matcher.");
    // The count at the top level too, for clients that do not expect the `data` envelope.
    Json(serde_json::json!({"status": "success", "deleted": n, "data": {"deleted": n}}))
        .into_response()
}
