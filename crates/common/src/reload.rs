//! The running configuration and its reload.
//!
//! [`ConfigHandle`] owns the current config behind a `watch` channel. A reload runs the
//! service's loader (file → parse → validate, plus anything the service loads with it, such
//! as rule files); only a fully valid result is swapped in. Either way the
//! `<prefix>_config_last_reload_successful` gauge says how it went and, on success,
//! `<prefix>_config_last_reload_success_timestamp_seconds` says when. Without a config file
//! the loader re-applies the defaults, which counts as a successful reload.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use futures::future::BoxFuture;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{watch, Mutex};

use crate::config::{self, ConfigError, ServiceConfig};

/// Produces a fresh, validated config. Runs on a blocking thread.
pub type Loader<C> = Arc<dyn Fn() -> Result<C, ConfigError> + Send + Sync>;

/// Anything that can be reloaded; lets the lifecycle and the HTTP server reload a service
/// without knowing its config type.
pub trait Reload: Send + Sync {
    /// Re-reads and swaps the config. On error the old config stays in effect.
    fn reload(&self) -> BoxFuture<'_, Result<(), ConfigError>>;
    /// The current config as YAML, secrets redacted.
    fn dump(&self) -> String;
}

struct ReloadMetrics {
    successful: IntGauge,
    success_timestamp: Gauge,
    reloads: IntCounterVec,
}

impl ReloadMetrics {
    fn register(prefix: &str, registry: &Registry) -> prometheus::Result<Self> {
        let successful = IntGauge::new(
            format!("{prefix}_config_last_reload_successful"),
            "Whether the last configuration reload attempt was successful.",
        )?;
        let success_timestamp = Gauge::new(
            format!("{prefix}_config_last_reload_success_timestamp_seconds"),
            "Timestamp of the last successful configuration reload.",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_config_reloads_total"),
                "Configuration reloads (SIGHUP, POST /-/reload) by result; the initial load is not counted.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(successful.clone()))?;
        registry.register(Box::new(success_timestamp.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Self {
            successful,
            success_timestamp,
            reloads,
        })
    }

    /// The initial load: the gauges say the config in effect loaded fine; it is not a
    /// reload, so `<prefix>_config_reloads_total` stays at zero.
    fn record_initial(&self) {
        self.successful.set(1);
        self.success_timestamp.set(unix_now());
    }

    fn record(&self, ok: bool) {
        if ok {
            self.successful.set(1);
            self.success_timestamp.set(unix_now());
            self.reloads.with_label_values(&["success"]).inc();
        } else {
            self.successful.set(0);
            self.reloads.with_label_values(&["failure"]).inc();
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Inner<C> {
    /// The service's name (`job-manager`), for the reload log lines: in the one-process
    /// suite four services reload on one SIGHUP.
    service: String,
    loader: Loader<C>,
    tx: watch::Sender<Arc<C>>,
    metrics: ReloadMetrics,
    /// Serialises reloads so two SIGHUPs cannot interleave.
    reloading: Mutex<()>,
    /// Run on every successful reload before it reports success ([`ConfigHandle::on_reload`]).
    hooks: std::sync::Mutex<Vec<ReloadHook<C>>>,
}

/// Applies a reloaded config to a running service.
type ReloadHook<C> = Arc<dyn Fn(&Arc<C>) + Send + Sync>;

/// The current configuration of a service, reloadable.
pub struct ConfigHandle<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for ConfigHandle<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: ServiceConfig> ConfigHandle<C> {
    /// Loads the config file (or defaults) for a service with the plain YAML loader.
    pub fn from_file(
        prefix: &str,
        registry: &Registry,
        path: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        Self::with_loader(
            prefix,
            registry,
            Arc::new(move || config::load::<C>(path.as_deref())),
        )
    }

    /// Loads the initial config with `loader`; fails when it is invalid (the service must not
    /// start on a bad config). Registers the reload gauges in `registry`.
    pub fn with_loader(
        prefix: &str,
        registry: &Registry,
        loader: Loader<C>,
    ) -> Result<Self, ConfigError> {
        let metrics = ReloadMetrics::register(prefix, registry)
            .map_err(|e| ConfigError::Other(format!("registering reload metrics: {e}")))?;
        let initial = loader()?;
        metrics.record_initial();
        let (tx, _) = watch::channel(Arc::new(initial));
        Ok(Self {
            inner: Arc::new(Inner {
                service: prefix.replace('_', "-"),
                loader,
                tx,
                metrics,
                reloading: Mutex::new(()),
                hooks: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// The config in effect now.
    pub fn current(&self) -> Arc<C> {
        self.inner.tx.borrow().clone()
    }

    /// Runs `apply` on every successful reload, after the swap and before the reload
    /// reports success, so that a caller of `POST /-/reload` that got 200 finds the new
    /// config in effect (a [`ConfigHandle::subscribe`]r applies it some time later). `apply`
    /// must be quick and must not fail: whatever can fail belongs in the loader.
    pub fn on_reload(&self, apply: impl Fn(&Arc<C>) + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(apply));
    }

    /// A receiver that sees every successful reload.
    pub fn subscribe(&self) -> watch::Receiver<Arc<C>> {
        self.inner.tx.subscribe()
    }

    /// Re-runs the loader; swaps the config only if it succeeds.
    pub async fn reload_config(&self) -> Result<(), ConfigError> {
        let _guard = self.inner.reloading.lock().await;
        let loader = self.inner.loader.clone();
        let result = tokio::task::spawn_blocking(move || loader())
            .await
            .unwrap_or_else(|e| Err(ConfigError::Other(format!("config loader panicked: {e}"))))
            .and_then(|config| {
                self.current().check_reload(&config)?;
                Ok(config)
            });
        match result {
            Ok(config) => {
                let config = Arc::new(config);
                self.inner.tx.send_replace(config.clone());
                let hooks = self
                    .inner
                    .hooks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for apply in hooks {
                    apply(&config);
                }
                self.inner.metrics.record(true);
                tracing::info!(service = %self.inner.service, "Configuration reloaded.");
                Ok(())
            }
            Err(error) => {
                self.inner.metrics.record(false);
                tracing::error!(service = %self.inner.service, %error, "Configuration reload failed; keeping the running configuration.");
                Err(error)
            }
        }
    }
}

impl<C: ServiceConfig> Reload for ConfigHandle<C> {
    fn reload(&self) -> BoxFuture<'_, Result<(), ConfigError>> {
        Box::pin(self.reload_config())
    }

    fn dump(&self) -> String {
        serde_yaml::to_string(&*self.current())
            .unwrap_or_else(|e| format!("# config cannot be shown: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        interval_seconds: u64,
        listen_port: u16,
    }

    impl Default for Cfg {
        fn default() -> Self {
            Self {
                interval_seconds: 60,
                listen_port: 1,
            }
        }
    }

    impl ServiceConfig for Cfg {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.interval_seconds == 0 {
                return Err(ConfigError::invalid("interval_seconds", "must be > 0"));
            }
            Ok(())
        }

        fn check_reload(&self, reloaded: &Self) -> Result<(), ConfigError> {
            config::unchanged("listen_port", &self.listen_port, &reloaded.listen_port)
        }
    }

    fn gauge(registry: &Registry, name: &str) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.get_metric()[0].get_gauge().get_value())
            .unwrap_or(f64::NAN)
    }

    fn reloads(registry: &Registry, result: &str) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "svc_config_reloads_total")
            .and_then(|f| {
                f.get_metric()
                    .iter()
                    .find(|m| m.get_label().iter().any(|l| l.value() == result))
                    .map(|m| m.get_counter().get_value())
            })
            .unwrap_or(0.0)
    }

    fn write(file: &mut tempfile::NamedTempFile, text: &str) {
        let f = file.as_file_mut();
        f.set_len(0).unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
    }

    #[tokio::test]
    async fn valid_reload_swaps_and_invalid_keeps_the_old_config() {
        let registry = Registry::new();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write(&mut file, "interval_seconds: 5\n");
        let handle =
            ConfigHandle::<Cfg>::from_file("svc", &registry, Some(file.path().into())).unwrap();
        let mut rx = handle.subscribe();
        assert_eq!(handle.current().interval_seconds, 5);
        assert_eq!(gauge(&registry, "svc_config_last_reload_successful"), 1.0);
        assert_eq!(
            reloads(&registry, "success"),
            0.0,
            "the initial load is not a reload"
        );
        let t0 = gauge(
            &registry,
            "svc_config_last_reload_success_timestamp_seconds",
        );
        assert!(t0 > 1.6e9);

        let applied = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = applied.clone();
        handle.on_reload(move |c| {
            seen.store(c.interval_seconds, std::sync::atomic::Ordering::SeqCst)
        });
        write(&mut file, "interval_seconds: 7\n");
        handle.reload_config().await.unwrap();
        assert_eq!(
            applied.load(std::sync::atomic::Ordering::SeqCst),
            7,
            "applied before the reload returned"
        );
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().interval_seconds, 7);

        write(&mut file, "interval_seconds: 0\n");
        let err = handle.reload_config().await.unwrap_err();
        assert!(err.to_string().contains("interval_seconds"), "{err}");
        assert_eq!(handle.current().interval_seconds, 7);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(gauge(&registry, "svc_config_last_reload_successful"), 0.0);
        assert_eq!(
            applied.load(std::sync::atomic::Ordering::SeqCst),
            7,
            "a failed reload applies nothing"
        );

        write(&mut file, "interval_seconds: 9\nbogus: 1\n");
        assert!(handle.reload_config().await.is_err());
        assert_eq!(handle.current().interval_seconds, 7);

        write(&mut file, "interval_seconds: 9\n");
        handle.reload_config().await.unwrap();
        assert_eq!(handle.current().interval_seconds, 9);
        assert_eq!(gauge(&registry, "svc_config_last_reload_successful"), 1.0);
        assert_eq!(reloads(&registry, "success"), 2.0);
        assert_eq!(reloads(&registry, "failure"), 2.0);
    }

    #[tokio::test]
    async fn a_restart_only_field_is_refused_by_name_and_nothing_changes() {
        let registry = Registry::new();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write(&mut file, "interval_seconds: 5\nlisten_port: 1\n");
        let handle =
            ConfigHandle::<Cfg>::from_file("svc", &registry, Some(file.path().into())).unwrap();
        write(&mut file, "interval_seconds: 6\nlisten_port: 2\n");
        let err = handle.reload_config().await.unwrap_err().to_string();
        assert!(
            err.contains("`listen_port`") && err.contains("restart"),
            "{err}"
        );
        assert_eq!(handle.current().interval_seconds, 5, "nothing applied");
        assert_eq!(gauge(&registry, "svc_config_last_reload_successful"), 0.0);
        write(&mut file, "interval_seconds: 6\nlisten_port: 1\n");
        handle.reload_config().await.unwrap();
        assert_eq!(handle.current().interval_seconds, 6);
    }

    #[tokio::test]
    async fn reload_without_a_file_reapplies_defaults_and_updates_the_timestamp() {
        let registry = Registry::new();
        let handle = ConfigHandle::<Cfg>::from_file("svc", &registry, None).unwrap();
        let t0 = gauge(
            &registry,
            "svc_config_last_reload_success_timestamp_seconds",
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        handle.reload_config().await.unwrap();
        let t1 = gauge(
            &registry,
            "svc_config_last_reload_success_timestamp_seconds",
        );
        assert!(t1 > t0, "{t1} > {t0}");
        assert_eq!(*handle.current(), Cfg::default());
        assert!(handle.dump().contains("interval_seconds: 60"));
    }

    #[test]
    fn invalid_initial_config_refuses_to_start() {
        let registry = Registry::new();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write(&mut file, "interval_seconds: 0\n");
        assert!(
            ConfigHandle::<Cfg>::from_file("svc", &registry, Some(file.path().into())).is_err()
        );
    }
}
