//! HTTP bootstrap shared by all services.
//!
//! [`serve`] merges a service's own routes with the lifecycle endpoints every service has:
//! `GET /metrics`, `GET /-/healthy`, `GET /-/ready` (503 before start and while draining),
//! `POST|PUT /-/reload`, `GET /-/config` (secrets redacted), and counts every request in
//! `<prefix>_http_requests_total` / `<prefix>_http_request_duration_seconds`. Shutdown is
//! graceful: no new connections once the lifecycle asks to stop, in-flight requests finish.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use prometheus::{HistogramVec, IntCounterVec, Registry};
use tokio::net::TcpListener;

use crate::{lifecycle::Lifecycle, reload::Reload, telemetry};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound. The OS error is part of the message and not
    /// a `source`, so that a report of the whole chain names it once.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// Accepting connections failed.
    #[error("HTTP server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether the service is ready to take traffic.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the service (not) ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether it is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the lifecycle endpoints need from the service.
#[derive(Clone)]
pub struct Endpoints {
    /// Metric name prefix, e.g. `job_manager`.
    pub prefix: &'static str,
    /// The service's registry; served on `/metrics` unless `own_metrics_route`.
    pub registry: Registry,
    /// Reloads the service's config.
    pub reload: Arc<dyn Reload>,
    /// Readiness flag; `serve` sets it once listening and clears it when draining.
    pub ready: Readiness,
    /// Set when the service serves `/metrics` itself (metrics-gateway).
    pub own_metrics_route: bool,
    /// Upper bound for one request; exceeded → 408.
    pub request_timeout: Duration,
}

impl Endpoints {
    /// Endpoints with the defaults: `/metrics` served from `registry`, 60 s request timeout.
    pub fn new(prefix: &'static str, registry: Registry, reload: Arc<dyn Reload>) -> Self {
        Self {
            prefix,
            registry,
            reload,
            ready: Readiness::default(),
            own_metrics_route: false,
            request_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    fn register(prefix: &str, registry: &Registry) -> Self {
        let requests = telemetry::int_counter_vec(
            registry,
            prefix,
            "http_requests_total",
            "HTTP requests served, by route, method and status code.",
            &["handler", "method", "code"],
        );
        let duration = telemetry::histogram_vec(
            registry,
            prefix,
            "http_request_duration_seconds",
            "HTTP request latency, by route.",
            &["handler"],
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        );
        Self { requests, duration }
    }
}

/// The `method` label of a request: the standard methods by name, anything else `other`, so
/// a client cannot grow `/metrics` by inventing methods (any token is a valid HTTP method).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    m.duration
        .with_label_values(&[&handler])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&handler, method, resp.status().as_str()])
        .inc();
    resp
}

/// The service's routes plus the lifecycle endpoints and request metrics.
pub fn router(app: Router, endpoints: &Endpoints) -> Router {
    let mut admin = Router::new()
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route(
            "/-/ready",
            get(|State(ready): State<Readiness>| async move {
                if ready.get() {
                    (StatusCode::OK, "OK\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
                }
            })
            .with_state(endpoints.ready.clone()),
        )
        .route(
            "/-/reload",
            post(reload_handler)
                .put(reload_handler)
                .with_state(endpoints.reload.clone()),
        )
        .route(
            "/-/config",
            get(|State(r): State<Arc<dyn Reload>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
                    r.dump(),
                )
            })
            .with_state(endpoints.reload.clone()),
        );
    if !endpoints.own_metrics_route {
        admin = admin.route(
            "/metrics",
            get(|State(reg): State<Registry>| async move { metrics_response(&reg) })
                .with_state(endpoints.registry.clone()),
        );
    }
    let metrics = HttpMetrics::register(endpoints.prefix, &endpoints.registry);
    app.merge(admin)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            endpoints.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// `/metrics` response for a registry in the text format.
pub fn metrics_response(registry: &Registry) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::encode(registry),
    )
        .into_response()
}

async fn reload_handler(State(r): State<Arc<dyn Reload>>) -> Response {
    match r.reload().await {
        Ok(()) => (StatusCode::OK, "Configuration reloaded.\n").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

/// Binds the listen address, with an error that names it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Bind { addr, error })
}

/// Serves `app` with the lifecycle endpoints until the lifecycle asks to stop, then lets
/// in-flight requests finish. Also turns lifecycle reload requests (SIGHUP) into reloads.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    endpoints: Endpoints,
    lifecycle: Lifecycle,
) -> Result<(), ServeError> {
    let router = router(app, &endpoints);
    let reloader = endpoints.reload.clone();
    let mut reloads = lifecycle.reloads();
    let stop = lifecycle.shutdown();
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                r = reloads.recv() => match r {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // The outcome is logged and counted by the handle.
                        let _ = reloader.reload().await;
                    }
                    Err(_) => break,
                }
            }
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, service = endpoints.prefix, "Listening.");
    endpoints.ready.set(true);
    let ready = endpoints.ready.clone();
    let shutdown = lifecycle.shutdown();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.set(false);
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{config::ServiceConfig, reload::ConfigHandle, secret::Secret};

    #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        token: Secret,
    }
    impl ServiceConfig for Cfg {}

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn lifecycle_endpoints_answer_and_count_requests() {
        let registry = telemetry::new_registry("svc");
        let handle = ConfigHandle::<Cfg>::with_loader(
            "svc",
            &registry,
            Arc::new(|| {
                Ok(Cfg {
                    token: Secret::new("s3cr3t"),
                })
            }),
        )
        .unwrap();
        let endpoints = Endpoints::new("svc", registry, Arc::new(handle));
        let app = router(Router::new(), &endpoints);

        assert_eq!(call(&app, "GET", "/-/healthy").await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "GET", "/-/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        endpoints.ready.set(true);
        assert_eq!(call(&app, "GET", "/-/ready").await.0, StatusCode::OK);
        assert_eq!(call(&app, "POST", "/-/reload").await.0, StatusCode::OK);
        let (_, config) = call(&app, "GET", "/-/config").await;
        assert!(!config.contains("s3cr3t"), "{config}");
        assert!(config.contains("<secret>"), "{config}");

        let (status, metrics) = call(&app, "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            metrics.contains("svc_config_last_reload_successful 1"),
            "{metrics}"
        );
        assert!(metrics.contains("svc_build_info{"), "{metrics}");
        assert!(
            metrics.contains(
                r#"svc_http_requests_total{code="200",handler="/-/reload",method="POST"} 1"#
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains("process_resident_memory_bytes"),
            "{metrics}"
        );
    }
}
