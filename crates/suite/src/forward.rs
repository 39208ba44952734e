//! job-manager's own metrics into the gateway, so the rules can read them (the bundled
//! `JobManagerDeploymentFailed` reads `job_manager_deployments_failed_total`). In
//! Kubernetes, Prometheus scrapes job-manager; in the one-process suite the gateway is the
//! only rule evaluator, so the suite pushes the `job_manager_*` families to it as the group
//! `{job="job-manager"}` every interval. Process metrics are left out: the gateway exposes
//! its own under the same names.

use std::{net::SocketAddr, time::Duration};

use common::Lifecycle;

/// The grouping key's `job` of the forwarded metrics.
pub const JOB: &str = "job-manager";

/// Keeps the families whose name starts with `prefix` (their HELP, TYPE and samples).
pub fn only_prefixed(exposition: &str, prefix: &str) -> String {
    let mut out = String::new();
    for line in exposition.lines() {
        let name = if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            rest.split(' ').next().unwrap_or("")
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            line.split(['{', ' ']).next().unwrap_or("")
        };
        if name.starts_with(prefix) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Every `interval`, GETs `job_manager`'s `/metrics` and PUTs its `job_manager_*` families
/// to the gateway at `gateway`, until `lifecycle` stops. Failures are logged once per
/// streak, not per attempt.
pub async fn run(
    job_manager: SocketAddr,
    gateway: SocketAddr,
    interval: Duration,
    lifecycle: Lifecycle,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(%error, "Cannot forward job-manager's metrics to the gateway.");
            return;
        }
    };
    let source = format!("http://{job_manager}/metrics");
    let target = format!("http://{gateway}/metrics/job/{JOB}");
    let stop = lifecycle.shutdown();
    tokio::pin!(stop);
    // The first push after one interval: job-manager is still binding its port now.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let result = async {
            let text = client
                .get(&source)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            client
                .put(&target)
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(only_prefixed(&text, "job_manager_"))
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, reqwest::Error>(())
        }
        .await;
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("Forwarding job-manager's metrics to the gateway works again.");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %error.without_url(), from = %source, to = %target,
                    "Cannot forward job-manager's metrics to the gateway; retrying every interval.");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_prefixed_families_are_kept() {
        let text = "# HELP job_manager_deployments_failed_total Deployments.\n\
                    # TYPE job_manager_deployments_failed_total counter\n\
                    job_manager_deployments_failed_total 2\n\
                    # HELP process_cpu_seconds_total CPU.\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 1.5\n\
                    job_manager_http_requests_total{code=\"200\"} 3\n";
        let kept = only_prefixed(text, "job_manager_");
        assert!(kept.contains("job_manager_deployments_failed_total 2\n"));
        assert!(kept.contains("job_manager_http_requests_total{code=\"200\"} 3\n"));
        assert!(!kept.contains("process_"), "{kept}");
    }
}
