//! Shutdown and reload as values, and the one place that turns signals into them.
//!
//! Library code receives a [`Lifecycle`]: it awaits [`Lifecycle::shutdown`] to start
//! draining and subscribes to [`Lifecycle::reloads`]. Only [`run_main`], called from each
//! thin `main.rs`, installs signal handlers: SIGTERM/SIGINT start a drain bounded by the
//! grace period, a second SIGTERM/SIGINT quits at once, SIGHUP requests a reload.

use std::{future::Future, process::ExitCode, time::Duration};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Shutdown and reload requests shared by every task of a service (or of the whole suite).
#[derive(Clone)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    reload: broadcast::Sender<()>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A lifecycle with nothing requested yet.
    pub fn new() -> Self {
        let (reload, _) = broadcast::channel(16);
        Self {
            shutdown: CancellationToken::new(),
            reload,
        }
    }

    /// Asks every task to drain and stop.
    pub fn request_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Completes once shutdown has been requested.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shutdown.clone().cancelled_owned()
    }

    /// Whether shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The token itself, for `select!` loops and child tokens.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks every service to reload its configuration.
    pub fn request_reload(&self) {
        let _ = self.reload.send(());
    }

    /// A receiver that yields once per reload request.
    pub fn reloads(&self) -> broadcast::Receiver<()> {
        self.reload.subscribe()
    }
}

/// How a service's run ended, as seen by [`run_main`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `run` returned `Ok` (after a drain or on its own).
    Clean,
    /// `run` returned an error.
    Failed,
    /// The drain exceeded the grace period.
    GraceExceeded,
    /// A second signal arrived during the drain.
    Forced,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Failed | Outcome::GraceExceeded | Outcome::Forced => ExitCode::FAILURE,
        }
    }
}

/// Drives `run` with real signals: the entry point every `main.rs` calls.
///
/// Returns when `run` completes, when the drain exceeds `grace`, or on a second signal.
/// The caller returns the exit code; tasks still running are dropped with the runtime.
pub async fn run_main<F>(name: &str, grace: Duration, lifecycle: Lifecycle, run: F) -> Outcome
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    use tokio::signal::unix::{signal, SignalKind};

    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("Cannot install signal handlers.");
            return Outcome::Failed;
        }
    };

    let mut run = tokio::spawn(run);
    let finished = |r: Result<anyhow::Result<()>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => Outcome::Clean,
        Ok(Err(error)) => {
            tracing::error!(error = format!("{error:#}"), "Service failed.");
            Outcome::Failed
        }
        Err(error) => {
            tracing::error!(%error, "Service task panicked.");
            Outcome::Failed
        }
    };

    // Running: wait for the service to end, a reload or the first stop signal.
    loop {
        tokio::select! {
            r = &mut run => return finished(r),
            _ = hup.recv() => {
                tracing::info!(service = name, "SIGHUP received; reloading configuration.");
                lifecycle.request_reload();
            }
            _ = term.recv() => { tracing::info!(service = name, signal = "SIGTERM", grace = ?grace, "Draining; a second signal quits at once."); break; }
            _ = int.recv() => { tracing::info!(service = name, signal = "SIGINT", grace = ?grace, "Draining; a second signal quits at once."); break; }
        }
    }
    lifecycle.request_shutdown();

    // Draining: bounded by the grace period; a second stop signal quits.
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = &mut run => {
                let outcome = finished(r);
                if outcome == Outcome::Clean {
                    tracing::info!(service = name, "Shutdown complete.");
                }
                return outcome;
            }
            _ = &mut deadline => {
                tracing::warn!(service = name, grace = ?grace, "Grace period exceeded; quitting.");
                run.abort();
                return Outcome::GraceExceeded;
            }
            _ = term.recv() => { tracing::warn!(service = name, "Second signal; quitting now."); run.abort(); return Outcome::Forced; }
            _ = int.recv() => { tracing::warn!(service = name, "Second signal; quitting now."); run.abort(); return Outcome::Forced; }
            _ = hup.recv() => {}
        }
    }
}

/// The whole of a thin `main`: builds the Tokio runtime, creates the [`Lifecycle`], runs
/// the service under [`run_main`] and maps the outcome to an exit code.
pub fn block_on_main<F, Fut>(name: &str, grace: Duration, service: F) -> ExitCode
where
    F: FnOnce(Lifecycle) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "Cannot start the Tokio runtime.");
            return ExitCode::FAILURE;
        }
    };
    let lifecycle = Lifecycle::new();
    let fut = service(lifecycle.clone());
    let outcome = runtime.block_on(run_main(name, grace, lifecycle, fut));
    // Do not wait for stray blocking tasks: the grace period has been honoured already.
    runtime.shutdown_timeout(Duration::from_millis(100));
    outcome.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_and_reload_reach_every_clone() {
        let lc = Lifecycle::new();
        let other = lc.clone();
        let mut reloads = other.reloads();
        lc.request_reload();
        reloads.recv().await.unwrap();
        assert!(!other.is_shutting_down());
        let waiting = other.shutdown();
        lc.request_shutdown();
        waiting.await;
        assert!(other.is_shutting_down());
    }
}
