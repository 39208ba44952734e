//! An in-process manager over [`FakeFlink`] for tests and the benchmark: the real store, API
//! router and controller, with Flink replaced by the fake and a `fake` session target.

use std::{path::Path, sync::Arc};

use axum::{body::Body, http::Request, Router};
use common::{ConfigHandle, Secret};
use serde_json::Value;
use tower::ServiceExt;

use crate::{
    api::AppState,
    clock::SharedClock,
    controller::Controller,
    flink::{fake::FakeFlink, Flink},
    metrics::Metrics,
    Config,
};

/// The bootstrap token of a [`Harness`].
pub const TOKEN: &str = "harness-bootstrap-token";

/// A manager in this process (over [`FakeFlink`] unless another [`Flink`] is given, e.g.
/// the real REST client against a fake cluster).
pub struct Harness<F: Flink = FakeFlink> {
    pub state: AppState,
    pub controller: Arc<Controller<F>>,
    pub flink: Arc<F>,
    pub router: Router,
    /// A jar file of the `default` namespace's artifact store, usable as `jarUri` there
    /// (`file://…`).
    pub jar_uri: String,
}

impl<F: Flink> Harness<F> {
    /// Opens (or re-opens, to simulate a restart) a manager on `data_dir` over `flink`.
    pub fn open(data_dir: &Path, flink: Arc<F>, config: Config) -> Self {
        Self::open_with_clock(
            data_dir,
            flink,
            config,
            Arc::new(crate::clock::TokioClock::new()),
        )
    }

    /// [`Harness::open`] with the controller's time from `clock`.
    pub fn open_with_clock(
        data_dir: &Path,
        flink: Arc<F>,
        config: Config,
        clock: SharedClock,
    ) -> Self {
        let store = crate::store::Store::open(data_dir).expect("open store");
        Self::with_store_and_clock(data_dir, store, flink, config, clock)
    }

    /// A manager over an opened `store` (e.g. PostgreSQL shared with other managers);
    /// `data_dir` holds artifacts and savepoints.
    pub fn with_store(
        data_dir: &Path,
        store: crate::store::Store,
        flink: Arc<F>,
        config: Config,
    ) -> Self {
        Self::with_store_and_clock(
            data_dir,
            store,
            flink,
            config,
            Arc::new(crate::clock::TokioClock::new()),
        )
    }

    fn with_store_and_clock(
        data_dir: &Path,
        store: crate::store::Store,
        flink: Arc<F>,
        config: Config,
        clock: SharedClock,
    ) -> Self {
        let store = crate::prepare_store(store, Some(&Secret::new(TOKEN))).expect("open store");
        let registry = prometheus::Registry::new();
        let handle = ConfigHandle::with_loader(
            "job_manager",
            &registry,
            Arc::new(move || Ok(config.clone())),
        )
        .expect("config");
        let metrics = Metrics::register("job_manager", &registry);
        let (state, controller) =
            crate::assemble(store, flink.clone(), data_dir, None, handle, metrics, clock);
        // In the `default` namespace's artifact store, where jarUris must point.
        let store = crate::artifacts::dir(data_dir, crate::DEFAULT_NAMESPACE);
        std::fs::create_dir_all(&store).expect("artifact store");
        let store = std::fs::canonicalize(&store).expect("artifact store");
        let jar = store.join("test-job.jar");
        if !jar.exists() {
            std::fs::write(&jar, b"PK\x03\x04 not really a jar").expect("write jar");
        }
        let router = crate::app(state.clone());
        Harness {
            state,
            controller,
            flink,
            router,
            jar_uri: format!("file://{}", jar.display()),
        }
    }

    /// One API request with `token` (None: anonymous); JSON body. Status and envelope.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        match token {
            Some(t) => {
                let auth = format!("Bearer {t}");
                self.request(method, path, &[("Authorization", &auth)], body)
                    .await
            }
            None => self.request(method, path, &[], body).await,
        }
    }

    /// One API request with arbitrary headers; JSON body. Status and envelope.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(b) => {
                req = req.header("Content-Type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    /// A request with the bootstrap token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(TOKEN), method, path, body).await
    }

    /// Creates the `fake` session target in `default` (idempotent).
    pub async fn fake_target(&self) {
        let _ = self
            .call(
                "POST",
                "/api/v1/namespaces/default/deployment-targets",
                Some(serde_json::json!({
                    "metadata": {"name": "fake"},
                    "spec": {"type": "session", "restUrl": "http://fake-flink:8081", "savepointDir": "file:///fake/savepoints"}
                })),
            )
            .await;
    }

    /// Runs reconcile passes until nothing changes for two passes (at most `max`).
    pub async fn settle(&self, max: usize) {
        let mut last = String::new();
        let mut same = 0;
        for _ in 0..max {
            self.controller.reconcile_all().await;
            let snap = {
                let t = self.state.store.read();
                format!(
                    "{:?}{:?}{:?}",
                    t.deployments
                        .values()
                        .map(|r| (&r.deployment.status, &r.control))
                        .collect::<Vec<_>>(),
                    t.jobs.values().map(|j| &j.status).collect::<Vec<_>>(),
                    t.savepoints.values().map(|s| &s.status).collect::<Vec<_>>()
                )
            };
            if snap == last {
                same += 1;
                if same >= 2 {
                    return;
                }
            } else {
                same = 0;
                last = snap;
            }
        }
    }
}
