//! Sends alerts to Alertmanager (`POST /api/v2/alerts`) and to a webhook in Alertmanager's
//! webhook payload format (version 4). The queue is bounded (the oldest alerts are dropped
//! and counted when it is full); failed posts are retried on connection errors, 408, 429 and
//! 5xx with capped exponential backoff and jitter.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::manager::OutgoingAlert;

/// Notifier settings.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Alertmanager base URLs (`http://am:9093`).
    pub alertmanagers: Vec<String>,
    /// Webhook receiving Alertmanager's webhook payload (version 4).
    pub webhook: Option<String>,
    /// External labels added to every alert (alert labels win).
    pub external_labels: BTreeMap<String, String>,
    /// External URL (`externalURL` of the webhook payload).
    pub external_url: String,
    /// Most alerts held while receivers are slow or down.
    pub queue_capacity: usize,
    /// Alerts per request.
    pub max_batch: usize,
    /// Attempts per request (first try included).
    pub max_attempts: u32,
    /// First retry delay; doubles up to `max_backoff`, jittered in the upper half
    /// (`common::backoff`).
    pub initial_backoff: Duration,
    /// Largest retry delay.
    pub max_backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            alertmanagers: Vec::new(),
            webhook: None,
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            queue_capacity: 10_000,
            max_batch: 256,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of a notifier.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Alerts delivered (per receiver).
    pub sent: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Alerts given up on after all retries (per receiver).
    pub failed: AtomicU64,
    /// Individual failed attempts.
    pub errors: AtomicU64,
}

/// A bounded alert queue with a background sender.
pub struct Notifier {
    cfg: NotifierConfig,
    queue: Mutex<VecDeque<OutgoingAlert>>,
    wake: tokio::sync::Notify,
    /// Counters.
    pub stats: NotifierStats,
    client: reqwest::Client,
}

fn rfc3339(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Prometheus's label-set fingerprint (FNV-1a 64 over sorted pairs), as Alertmanager shows it.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 14695981039346656037;
    let mut add = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(1099511628211);
    };
    for (k, v) in labels {
        k.bytes().for_each(&mut add);
        add(255);
        v.bytes().for_each(&mut add);
        add(255);
    }
    format!("{h:016x}")
}

impl Notifier {
    /// A notifier; call [`Notifier::run`] to start delivering.
    pub fn new(cfg: NotifierConfig) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Notifier {
            cfg,
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            stats: NotifierStats::default(),
            client,
        })
    }

    /// Whether any receiver is configured.
    pub fn has_receivers(&self) -> bool {
        !self.cfg.alertmanagers.is_empty() || self.cfg.webhook.is_some()
    }

    /// Queues alerts, adding external labels; drops (and counts) the oldest when full.
    pub fn send(&self, alerts: Vec<OutgoingAlert>) {
        if alerts.is_empty() || !self.has_receivers() {
            return;
        }
        let mut q = match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for mut a in alerts {
            for (k, v) in &self.cfg.external_labels {
                a.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            q.push_back(a);
        }
        let mut dropped = 0;
        while q.len() > self.cfg.queue_capacity {
            q.pop_front();
            dropped += 1;
        }
        drop(q);
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(dropped, "Alert queue full, dropped the oldest alerts.");
        }
        self.wake.notify_one();
    }

    /// Number of queued alerts.
    pub fn queue_len(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    fn take_batch(&self) -> Vec<OutgoingAlert> {
        let mut q = match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = q.len().min(self.cfg.max_batch);
        q.drain(..n).collect()
    }

    /// Delivers queued alerts until `shutdown` completes (then flushes what is queued once).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                tokio::select! {
                    _ = &mut shutdown => {
                        let rest = self.take_batch();
                        if !rest.is_empty() {
                            self.deliver(&rest).await;
                        }
                        return;
                    }
                    _ = self.wake.notified() => continue,
                }
            }
            self.deliver(&batch).await;
        }
    }

    async fn deliver(&self, batch: &[OutgoingAlert]) {
        let now = chrono::Utc::now().timestamp_millis();
        let am_body = Json::Array(
            batch
                .iter()
                .map(|a| {
                    json!({
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "startsAt": rfc3339(a.starts_at),
                        "endsAt": rfc3339(a.ends_at),
                        "generatorURL": a.generator_url,
                    })
                })
                .collect(),
        );
        for am in &self.cfg.alertmanagers {
            let url = format!("{}/api/v2/alerts", am.trim_end_matches('/'));
            self.post(&url, &am_body, batch.len()).await;
        }
        if let Some(hook) = &self.cfg.webhook {
            let mut by_name: BTreeMap<String, Vec<&OutgoingAlert>> = BTreeMap::new();
            for a in batch {
                by_name
                    .entry(a.labels.get("alertname").cloned().unwrap_or_default())
                    .or_default()
                    .push(a);
            }
            for (name, alerts) in by_name {
                let body = webhook_payload(&name, &alerts, &self.cfg.external_url, now);
                self.post(hook, &body, alerts.len()).await;
            }
        }
    }

    async fn post(&self, url: &str, body: &Json, n: usize) {
        for attempt in 1..=self.cfg.max_attempts {
            let res = self.client.post(url).json(body).send().await;
            let retry = match res {
                Ok(r) if r.status().is_success() => {
                    self.stats.sent.fetch_add(n as u64, Ordering::Relaxed);
                    return;
                }
                Ok(r) => {
                    let s = r.status().as_u16();
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url = %redact(url), status = s, attempt, "Alert receiver refused the alerts.");
                    s == 408 || s == 429 || s >= 500
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url = %redact(url), error = %e.without_url(), attempt, "Alert receiver unreachable.");
                    true
                }
            };
            if !retry || attempt == self.cfg.max_attempts {
                break;
            }
            tokio::time::sleep(common::backoff::capped_jittered(
                self.cfg.initial_backoff,
                self.cfg.max_backoff,
                attempt - 1,
            ))
            .await;
        }
        self.stats.failed.fetch_add(n as u64, Ordering::Relaxed);
        tracing::error!(url = %redact(url), alerts = n, "Giving up delivering alerts.");
    }
}

/// Strips credentials and query strings from a URL for logs.
fn redact(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !host.contains('/') || rest.find('@') < rest.find('/') => {
                format!("{scheme}://***@{host}")
            }
            _ => no_query.to_string(),
        },
        None => no_query.to_string(),
    }
}

/// Alertmanager's webhook payload (version 4) for one group of alerts.
pub fn webhook_payload(
    alertname: &str,
    alerts: &[&OutgoingAlert],
    external_url: &str,
    now_ms: i64,
) -> Json {
    let resolved = |a: &OutgoingAlert| a.ends_at <= now_ms;
    let firing = alerts.iter().any(|a| !resolved(a));
    let common =
        |f: &dyn Fn(&OutgoingAlert) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
            let mut it = alerts.iter();
            let Some(first) = it.next() else {
                return BTreeMap::new();
            };
            let mut c = f(first).clone();
            for a in it {
                let m = f(a);
                c.retain(|k, v| m.get(k) == Some(v));
            }
            c
        };
    let group_labels = BTreeMap::from([("alertname".to_string(), alertname.to_string())]);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}}}", alertname),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "metrics-gateway",
        "groupLabels": group_labels,
        "commonLabels": common(&|a| &a.labels),
        "commonAnnotations": common(&|a| &a.annotations),
        "externalURL": external_url,
        "alerts": alerts.iter().map(|a| json!({
            "status": if resolved(a) { "resolved" } else { "firing" },
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": if resolved(a) { rfc3339(a.ends_at) } else { "0001-01-01T00:00:00Z".to_string() },
            "generatorURL": a.generator_url,
            "fingerprint": fingerprint(&a.labels),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, ends_at: i64) -> OutgoingAlert {
        OutgoingAlert {
            labels: BTreeMap::from([
                ("alertname".into(), name.into()),
                ("job".into(), "a".into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), "s".into())]),
            starts_at: 1000,
            ends_at,
            generator_url: "http://x/graph".into(),
        }
    }

    #[test]
    fn webhook_payload_has_version_4_shape() {
        let a = alert("A", 5000);
        let b = alert("A", 100);
        let p = webhook_payload("A", &[&a, &b], "http://gw", 1000);
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["groupLabels"]["alertname"], "A");
        assert_eq!(p["commonLabels"]["job"], "a");
        assert_eq!(p["alerts"][0]["status"], "firing");
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["alerts"][1]["status"], "resolved");
        assert_eq!(p["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn queue_is_bounded_and_drops_are_counted() {
        let n = Notifier::new(NotifierConfig {
            webhook: Some("http://127.0.0.1:9/".into()),
            queue_capacity: 3,
            ..NotifierConfig::default()
        });
        n.send((0..5).map(|i| alert(&format!("A{i}"), 0)).collect());
        assert_eq!(n.queue_len(), 3);
        assert_eq!(n.stats.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("http://user:pw@host:1/x?token=1"),
            "http://***@host:1/x"
        );
    }
}
