//! The delivery engine: one in-memory queue and worker per target, per-robot rate limiters,
//! merging of queued alerts into as few messages as fit, retries with backoff.
//!
//! A request is answered 2xx once its alerts are in the target's queue. The worker waits for
//! a rate-limit slot, then takes every queued alert (so a burst is merged), renders as many
//! as fit in one body under the size cap, sends them, and puts the rest back at the front
//! for the next slot. Retryable failures put the batch back and back off; failures that
//! retrying cannot fix, or exhausted retries, are logged and counted per alert: nothing
//! accepted disappears without a trace.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use tokio::{
    sync::{watch, Notify},
    time::Instant,
};

use crate::{
    alert::{Alert, Notification},
    config::{Compiled, DeliveryConfig, Target},
    limiter::Limiter,
    message::{self, Body, Dress},
    metrics::Metrics,
    outcome::{classify, Outcome},
    sign,
    template::{MessageCtx, Origin, Rendered},
    transport::{Clock, Transport},
};

/// Most alerts a worker takes from its queue for one message attempt.
const MAX_BATCH: usize = 500;
/// The smallest body cap learned from "too long" answers.
const MIN_LEARNED_CAP: usize = 2_000;

/// Why alerts were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// No such target.
    #[error("unknown target `{name}`; configured targets: [{}]", known.join(", "))]
    UnknownTarget { name: String, known: Vec<String> },
    /// The target's queue is full; Alertmanager should retry.
    #[error("the queue of target `{0}` is full (`delivery.max_queued_alerts`); retry later")]
    QueueFull(String),
    /// The target's queue holds as many bytes of alerts as it may; Alertmanager should retry.
    #[error("the queue of target `{target}` is full: it holds {queued} bytes of alerts and this request adds {incoming}, over `delivery.max_queued_bytes` ({max}); retry later")]
    QueueBytesFull {
        target: String,
        queued: usize,
        incoming: usize,
        max: usize,
    },
    /// One request carries more alerts than a request may.
    #[error("the payload carries {count} alerts; at most {max} are accepted per request (`delivery.max_alerts_per_request`)")]
    TooManyAlerts { count: usize, max: usize },
    /// An alert matches no route and there is no fallback target.
    #[error("alert {0} matches no route and `fallback_targets` is empty")]
    Unroutable(String),
    /// The service is shutting down.
    #[error("shutting down")]
    Closing,
}

struct Queued {
    alert: Alert,
    /// Identity and status: a newer copy with the same key replaces it while queued.
    key: (String, bool),
    /// Position in the queue's order; `items` is sorted by it.
    seq: u64,
    origin: Arc<Origin>,
    /// What it counts against `delivery.max_queued_bytes`.
    size: usize,
    accepted: Instant,
    attempts: u32,
    too_fast: u32,
}

#[derive(Default)]
struct QueueState {
    /// Waiting alerts, oldest first, sorted by `seq` (alerts given back keep their `seq`).
    items: VecDeque<Queued>,
    /// The `seq` of the queued alert with each key, so a duplicate is found in O(log n)
    /// (a linear search per alert made a request of duplicates quadratic).
    keys: HashMap<(String, bool), u64>,
    next_seq: u64,
    in_flight: usize,
    /// Bytes of `items` plus those in flight.
    bytes: usize,
}

struct TargetQueue {
    name: String,
    state: Mutex<QueueState>,
    notify: Notify,
    /// A body cap learned from DingTalk answering "too long" (0: none), kept for the target.
    learned_cap: AtomicUsize,
}

impl QueueState {
    /// Alerts queued or in flight.
    fn depth(&self) -> usize {
        self.items.len() + self.in_flight
    }
}

impl TargetQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One message ready to go: the alerts it carries and its body.
#[derive(Debug, Clone)]
pub struct Composed {
    /// How many of the offered alerts (a prefix) the body carries.
    pub alerts: usize,
    /// The body.
    pub body: Body,
    /// Whether a custom template failed and the default was used.
    pub template_error: Option<String>,
}

fn render(target: &Target, ctx: &MessageCtx) -> (Rendered, Option<String>) {
    match target.templates.render(ctx) {
        Ok(r) => (r, None),
        Err(e) => {
            let fallback = target
                .templates
                .render_default(ctx)
                .unwrap_or_else(|e2| Rendered {
                    title: "Alert".into(),
                    text: format!("(template error: {e2})"),
                });
            (fallback, Some(format!("{e:#}")))
        }
    }
}

fn compose_k(target: &Target, alerts: &[(&Alert, &Origin)], max_bytes: usize) -> Composed {
    let ctx = MessageCtx::new(&target.name, alerts.iter().copied(), target.templates.tz());
    let (rendered, template_error) = render(target, &ctx);
    let body = message::build(
        target.style(),
        &rendered,
        Dress {
            firing: ctx.is_firing(),
            link: &ctx.external_url,
        },
        max_bytes,
    );
    Composed {
        alerts: alerts.len(),
        body,
        template_error,
    }
}

/// Whether the first `k` alerts fit in one body without truncation; adds `k` to `work`
/// (alerts rendered), which is what composing costs.
fn fits_k(
    target: &Target,
    alerts: &[(&Alert, &Origin)],
    max_bytes: usize,
    work: &mut usize,
) -> bool {
    *work += alerts.len();
    let ctx = MessageCtx::new(&target.name, alerts.iter().copied(), target.templates.tz());
    let (rendered, _) = render(target, &ctx);
    let dress = Dress {
        firing: ctx.is_firing(),
        link: &ctx.external_url,
    };
    message::untruncated_len(target.style(), &rendered, dress) <= max_bytes
}

/// How many of `alerts` (a prefix, at least one) go in the next message: the longest prefix
/// that fits without truncation, found by doubling and then bisecting, so that a message of
/// `k` alerts costs O(k log k) alerts rendered whatever the length of the queue (rendering
/// the whole queue for every message made previews quadratic).
fn fitting_prefix(
    target: &Target,
    alerts: &[(&Alert, &Origin)],
    max_bytes: usize,
    work: &mut usize,
) -> usize {
    let n = alerts.len();
    if n <= 1 || !fits_k(target, &alerts[..1], max_bytes, work) {
        return n.min(1);
    }
    let mut good = 1;
    let mut bad = None;
    while good < n {
        let k = (good * 2).min(n);
        if fits_k(target, &alerts[..k], max_bytes, work) {
            good = k;
        } else {
            bad = Some(k);
            break;
        }
    }
    if let Some(mut bad) = bad {
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if fits_k(target, &alerts[..mid], max_bytes, work) {
                good = mid;
            } else {
                bad = mid;
            }
        }
    }
    good
}

/// Renders the longest prefix of `alerts` that fits in one body without truncation (at
/// least one alert, truncated if it alone is too long).
pub fn compose(target: &Target, alerts: &[(&Alert, &Origin)], max_bytes: usize) -> Composed {
    let k = fitting_prefix(target, alerts, max_bytes, &mut 0);
    compose_k(target, &alerts[..k], max_bytes)
}

fn compose_all_counted(
    target: &Target,
    alerts: &[(&Alert, &Origin)],
    max_bytes: usize,
    work: &mut usize,
) -> Vec<Composed> {
    let mut out = Vec::new();
    let mut rest = alerts;
    while !rest.is_empty() {
        let k = fitting_prefix(target, rest, max_bytes, work).max(1);
        *work += k;
        out.push(compose_k(target, &rest[..k], max_bytes));
        rest = &rest[k..];
    }
    out
}

/// Splits a whole notification into the messages it would become (render preview).
pub fn compose_all(
    target: &Target,
    alerts: &[(&Alert, &Origin)],
    max_bytes: usize,
) -> Vec<Composed> {
    compose_all_counted(target, alerts, max_bytes, &mut 0)
}

/// The delivery engine shared by the HTTP handlers and the workers.
pub struct Gateway {
    current: RwLock<Arc<Compiled>>,
    queues: Mutex<BTreeMap<String, Arc<TargetQueue>>>,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    closing: watch::Sender<bool>,
}

impl Gateway {
    /// Starts the engine with `compiled`; spawns one worker per target on the current
    /// Tokio runtime.
    pub fn start(
        compiled: Arc<Compiled>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let (closing, _) = watch::channel(false);
        let g = Arc::new(Self {
            current: RwLock::new(compiled.clone()),
            queues: Mutex::new(BTreeMap::new()),
            limiters: Mutex::new(HashMap::new()),
            transport,
            clock,
            metrics,
            closing,
        });
        g.apply(compiled);
        g
    }

    /// The config in effect.
    pub fn compiled(&self) -> Arc<Compiled> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Switches to a reloaded config: new targets get a worker, changed ones take effect
    /// with their next message, removed ones finish what they hold.
    pub fn apply(self: &Arc<Self>, compiled: Arc<Compiled>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = compiled.clone();
        {
            let limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
            for l in limiters.values() {
                l.set_per_minute(compiled.delivery.messages_per_minute);
            }
        }
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for (name, target) in &compiled.targets {
            if queues.contains_key(name) {
                continue;
            }
            let q = Arc::new(TargetQueue {
                name: name.clone(),
                state: Mutex::new(QueueState::default()),
                notify: Notify::new(),
                learned_cap: AtomicUsize::new(0),
            });
            self.metrics.queue_alerts.with_label_values(&[name]).set(0);
            self.metrics.queue_bytes.with_label_values(&[name]).set(0);
            queues.insert(name.clone(), q.clone());
            tokio::spawn(self.clone().worker(q, target.clone()));
        }
    }

    fn queue(&self, name: &str) -> Option<Arc<TargetQueue>> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn limiter(&self, robot_key: String, per_minute: u32) -> Arc<Limiter> {
        self.limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(robot_key)
            .or_insert_with(|| Arc::new(Limiter::new(per_minute)))
            .clone()
    }

    fn unknown(&self, name: &str) -> EnqueueError {
        EnqueueError::UnknownTarget {
            name: name.to_string(),
            known: self.compiled().targets.keys().cloned().collect(),
        }
    }

    /// Queues every alert of `n` for `target`. All or nothing.
    pub fn enqueue(&self, target: &str, n: Notification) -> Result<usize, EnqueueError> {
        let compiled = self.compiled();
        if !compiled.targets.contains_key(target) {
            return Err(self.unknown(target));
        }
        check_count(&n, &compiled.delivery)?;
        let (origin, alerts) = split(n);
        self.push(target, alerts, origin, &compiled.delivery)
    }

    /// Queues each alert of `n` for the targets its labels route it to.
    pub fn enqueue_routed(&self, n: Notification) -> Result<BTreeMap<String, usize>, EnqueueError> {
        let compiled = self.compiled();
        check_count(&n, &compiled.delivery)?;
        let (origin, alerts) = split(n);
        let mut per_target: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
        for a in alerts {
            let targets = compiled.routes.targets_for(&a.labels);
            if targets.is_empty() {
                return Err(EnqueueError::Unroutable(describe(&a)));
            }
            for t in targets {
                per_target.entry(t.to_string()).or_default().push(a.clone());
            }
        }
        // Check room everywhere first so a partly accepted request is unlikely.
        for (t, alerts) in &per_target {
            let q = self.queue(t).ok_or_else(|| self.unknown(t))?;
            let incoming = alerts_size(alerts, &origin);
            let s = q.lock();
            if let Err(e) = room(t, &s, alerts.len(), incoming, &compiled.delivery) {
                drop(s);
                self.refuse(t, alerts.len(), &e);
                return Err(e);
            }
        }
        let mut out = BTreeMap::new();
        for (t, alerts) in per_target {
            let n = self.push(&t, alerts, origin.clone(), &compiled.delivery)?;
            out.insert(t, n);
        }
        Ok(out)
    }

    fn refuse(&self, target: &str, n: usize, e: &EnqueueError) {
        let reason = match e {
            EnqueueError::QueueBytesFull { .. } => "queue_bytes_full",
            _ => "queue_full",
        };
        self.reject(target, n, reason);
    }

    fn reject(&self, target: &str, n: usize, reason: &str) {
        self.metrics
            .alerts_rejected
            .with_label_values(&[target, reason])
            .inc_by(n as u64);
        tracing::warn!(
            dingtalk_target = target,
            alerts = n,
            reason,
            "Alerts refused; Alertmanager will retry."
        );
    }

    fn push(
        &self,
        target: &str,
        alerts: Vec<Alert>,
        origin: Arc<Origin>,
        delivery: &DeliveryConfig,
    ) -> Result<usize, EnqueueError> {
        if *self.closing.borrow() {
            self.reject(target, alerts.len(), "shutting_down");
            return Err(EnqueueError::Closing);
        }
        let q = self.queue(target).ok_or_else(|| self.unknown(target))?;
        let count = alerts.len();
        let now = Instant::now();
        let mut dedup = 0u64;
        let origin_size = origin_size(&origin);
        let incoming = alerts_size(&alerts, &origin);
        let (depth, bytes) = {
            let mut s = q.lock();
            if let Err(e) = room(target, &s, count, incoming, delivery) {
                drop(s);
                self.refuse(target, count, &e);
                return Err(e);
            }
            for alert in alerts {
                let size = alert.size_bytes() + origin_size;
                let key = (alert.identity(), alert.is_resolved());
                let existing = s
                    .keys
                    .get(&key)
                    .and_then(|seq| s.items.binary_search_by_key(seq, |x| x.seq).ok());
                if let Some(i) = existing {
                    let old = std::mem::replace(&mut s.items[i].size, size);
                    s.items[i].alert = alert;
                    s.items[i].origin = origin.clone();
                    s.bytes = (s.bytes + size).saturating_sub(old);
                    dedup += 1;
                    continue;
                }
                let seq = s.next_seq;
                s.next_seq += 1;
                s.keys.insert(key.clone(), seq);
                s.bytes += size;
                s.items.push_back(Queued {
                    alert,
                    key,
                    seq,
                    origin: origin.clone(),
                    size,
                    accepted: now,
                    attempts: 0,
                    too_fast: 0,
                });
            }
            (s.items.len() + s.in_flight, s.bytes)
        };
        self.metrics
            .alerts_received
            .with_label_values(&[target])
            .inc_by(count as u64);
        if dedup > 0 {
            self.metrics
                .alerts_deduplicated
                .with_label_values(&[target])
                .inc_by(dedup);
        }
        self.metrics
            .queue_alerts
            .with_label_values(&[target])
            .set(depth as i64);
        self.metrics
            .queue_bytes
            .with_label_values(&[target])
            .set(bytes as i64);
        q.notify.notify_one();
        Ok(count)
    }

    /// The messages `n` would become on `target`, without sending anything.
    pub fn preview(&self, target: &str, n: Notification) -> Result<Vec<Composed>, EnqueueError> {
        let compiled = self.compiled();
        let t = compiled
            .targets
            .get(target)
            .ok_or_else(|| self.unknown(target))?;
        check_count(&n, &compiled.delivery)?;
        let (origin, alerts) = split(n);
        let pairs: Vec<(&Alert, &Origin)> = alerts.iter().map(|a| (a, &*origin)).collect();
        Ok(compose_all(t, &pairs, compiled.delivery.max_body_bytes))
    }

    /// Every target's queue (a snapshot, so no queue lock is taken under the map's).
    fn all_queues(&self) -> Vec<Arc<TargetQueue>> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Alerts queued or in flight over all targets.
    pub fn pending(&self) -> usize {
        self.all_queues().iter().map(|q| q.lock().depth()).sum()
    }

    /// Stops accepting alerts and waits until every queue is empty. Callers bound it with a
    /// timeout; what is still queued then is logged by [`Gateway::abandon`].
    pub async fn drain(&self) {
        self.closing.send_replace(true);
        while self.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs and counts what is still queued when the process must stop.
    pub fn abandon(&self) {
        for q in self.all_queues() {
            let n = q.lock().depth();
            if n > 0 {
                self.metrics
                    .alerts_failed
                    .with_label_values(&[&q.name, "shutdown"])
                    .inc_by(n as u64);
                tracing::error!(dingtalk_target = %q.name, alerts = n, "Shutting down with undelivered alerts.");
            }
        }
    }

    async fn worker(self: Arc<Self>, q: Arc<TargetQueue>, mut target: Arc<Target>) {
        let mut closing = self.closing.subscribe();
        loop {
            // Wait for work.
            loop {
                let notified = q.notify.notified();
                if !q.lock().items.is_empty() {
                    break;
                }
                if *closing.borrow() {
                    return;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = closing.changed() => {}
                }
            }
            let compiled = self.compiled();
            if let Some(t) = compiled.targets.get(&q.name) {
                target = t.clone();
            }
            let delivery = compiled.delivery.clone();
            let limiter = self.limiter(target.robot.limiter_key(), delivery.messages_per_minute);
            let waited = limiter.acquire().await;
            if !waited.is_zero() {
                self.metrics
                    .rate_limit_waits
                    .with_label_values(&[&q.name])
                    .inc();
                self.metrics
                    .rate_limit_wait_seconds
                    .with_label_values(&[&q.name])
                    .inc_by(waited.as_secs_f64());
            }
            let pause = self.attempt(&q, &target, &delivery).await;
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Sends one message from the queue; returns how long to pause before the next one.
    async fn attempt(
        &self,
        q: &TargetQueue,
        target: &Target,
        delivery: &DeliveryConfig,
    ) -> Option<Duration> {
        let mut taken: Vec<Queued> = {
            let mut s = q.lock();
            let n = s.items.len().min(MAX_BATCH);
            let taken: Vec<Queued> = s.items.drain(..n).collect();
            for t in &taken {
                s.keys.remove(&t.key);
            }
            s.in_flight += taken.len();
            taken
        };
        if taken.is_empty() {
            return None;
        }
        let max_bytes = match q.learned_cap.load(Ordering::Relaxed) {
            0 => delivery.max_body_bytes,
            learned => learned.min(delivery.max_body_bytes),
        };
        let composed = {
            let pairs: Vec<(&Alert, &Origin)> =
                taken.iter().map(|x| (&x.alert, &*x.origin)).collect();
            compose(target, &pairs, max_bytes)
        };
        let rest = taken.split_off(composed.alerts.min(taken.len()).max(1));
        self.give_back(q, rest);
        let batch = taken;
        let name = q.name.as_str();
        if let Some(e) = &composed.template_error {
            self.metrics
                .template_errors
                .with_label_values(&[name])
                .inc();
            tracing::error!(dingtalk_target = name, error = %e, "Custom template failed; sent with the default template.");
        }

        let robot = &target.robot;
        let url = match &robot.secret {
            Some(secret) => format!(
                "{}{}",
                robot.send_url.expose(),
                sign::query_suffix(secret.expose(), self.clock.now_ms())
            ),
            None => robot.send_url.expose().to_string(),
        };
        let started = Instant::now();
        let result = self
            .transport
            .post(url, composed.body.bytes.clone(), delivery.timeout)
            .await;
        self.metrics
            .send_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        let redact = |s: &str| {
            let s = robot.token.redact_in(s);
            match &robot.secret {
                Some(secret) => secret.redact_in(&s),
                None => s,
            }
        };
        match classify(&result) {
            Outcome::Delivered => {
                let n = batch.len();
                self.metrics.messages_sent.with_label_values(&[name]).inc();
                self.metrics
                    .alerts_delivered
                    .with_label_values(&[name])
                    .inc_by(n as u64);
                if composed.body.truncated {
                    self.metrics
                        .messages_truncated
                        .with_label_values(&[name])
                        .inc();
                }
                let mut origins: Vec<&Arc<Origin>> = Vec::new();
                for b in &batch {
                    self.metrics
                        .delivery_delay
                        .observe(b.accepted.elapsed().as_secs_f64());
                    if !origins.iter().any(|o| Arc::ptr_eq(o, &b.origin)) {
                        origins.push(&b.origin);
                    }
                }
                if origins.len() > 1 {
                    self.metrics
                        .messages_merged
                        .with_label_values(&[name])
                        .inc();
                }
                tracing::debug!(
                    dingtalk_target = name,
                    alerts = n,
                    bytes = composed.body.bytes.len(),
                    "Message delivered."
                );
                self.finish(q, n, batch.iter().map(|b| b.size).sum());
                None
            }
            Outcome::Retry {
                reason,
                detail,
                too_fast,
            } => {
                self.metrics
                    .messages_failed
                    .with_label_values(&[name, reason])
                    .inc();
                let mut batch = batch;
                let (exhausted, pause) = if too_fast {
                    let n = batch.iter().map(|b| b.too_fast).max().unwrap_or(0) + 1;
                    batch.iter_mut().for_each(|b| b.too_fast = n);
                    (n >= delivery.too_fast_attempts, delivery.too_fast_pause)
                } else {
                    let n = batch.iter().map(|b| b.attempts).max().unwrap_or(0) + 1;
                    batch.iter_mut().for_each(|b| b.attempts = n);
                    (n >= delivery.max_attempts, backoff(delivery, n))
                };
                if exhausted {
                    self.fail(q, batch, reason, &redact(&detail), true);
                    return None;
                }
                self.metrics
                    .retries
                    .with_label_values(&[name, reason])
                    .inc();
                tracing::warn!(dingtalk_target = name, alerts = batch.len(), reason, detail = %redact(&detail), retry_in = ?pause, "Delivery failed; will retry.");
                self.give_back(q, batch);
                self.finish(q, 0, 0);
                Some(pause)
            }
            Outcome::TooLong { detail } => {
                let reason = "too_long";
                self.metrics
                    .messages_failed
                    .with_label_values(&[name, reason])
                    .inc();
                let sent = composed.body.bytes.len();
                let mut batch = batch;
                let n = batch.iter().map(|b| b.attempts).max().unwrap_or(0) + 1;
                batch.iter_mut().for_each(|b| b.attempts = n);
                if sent <= MIN_LEARNED_CAP || n >= delivery.max_attempts {
                    self.fail(q, batch, reason, &redact(&detail), true);
                    return None;
                }
                // DingTalk counts differently from us: remember a smaller cap and resend.
                let cap = (sent * 3 / 4).max(MIN_LEARNED_CAP);
                q.learned_cap.store(cap, Ordering::Relaxed);
                self.metrics
                    .retries
                    .with_label_values(&[name, reason])
                    .inc();
                tracing::warn!(dingtalk_target = name, bytes = sent, new_cap = cap, detail = %redact(&detail), "DingTalk says the message is too long; resending smaller.");
                self.give_back(q, batch);
                self.finish(q, 0, 0);
                None
            }
            Outcome::Fatal { reason, detail } => {
                self.metrics
                    .messages_failed
                    .with_label_values(&[name, reason])
                    .inc();
                self.fail(q, batch, reason, &redact(&detail), false);
                None
            }
        }
    }

    fn fail(&self, q: &TargetQueue, batch: Vec<Queued>, reason: &str, detail: &str, retried: bool) {
        let n = batch.len();
        let names: Vec<String> = batch.iter().take(5).map(|b| describe(&b.alert)).collect();
        self.metrics
            .alerts_failed
            .with_label_values(&[&q.name, reason])
            .inc_by(n as u64);
        tracing::error!(
            dingtalk_target = %q.name, alerts = n, reason, detail, retries_exhausted = retried,
            first_alerts = %names.join(", "),
            "Alerts could not be delivered to DingTalk; giving up on them."
        );
        self.finish(q, n, batch.iter().map(|b| b.size).sum());
    }

    /// Puts unsent alerts back at the front, in order.
    fn give_back(&self, q: &TargetQueue, items: Vec<Queued>) {
        if items.is_empty() {
            return;
        }
        let mut s = q.lock();
        s.in_flight -= items.len().min(s.in_flight);
        for item in items.into_iter().rev() {
            s.keys.insert(item.key.clone(), item.seq);
            s.items.push_front(item);
        }
    }

    /// Marks `n` in-flight alerts of `bytes` done and updates the depth gauges.
    fn finish(&self, q: &TargetQueue, n: usize, bytes: usize) {
        let (depth, queued_bytes) = {
            let mut s = q.lock();
            s.in_flight -= n.min(s.in_flight);
            s.bytes -= bytes.min(s.bytes);
            (s.items.len() + s.in_flight, s.bytes)
        };
        self.metrics
            .queue_alerts
            .with_label_values(&[&q.name])
            .set(depth as i64);
        self.metrics
            .queue_bytes
            .with_label_values(&[&q.name])
            .set(queued_bytes as i64);
    }
}

/// The delay before retrying after failed attempt `attempt` (1-based): the suite's capped
/// exponential backoff with jitter from `backoff_base` up to `backoff_max`.
pub fn backoff(d: &DeliveryConfig, attempt: u32) -> Duration {
    common::backoff::capped_jittered(d.backoff_base, d.backoff_max, attempt.saturating_sub(1))
}

fn split(n: Notification) -> (Arc<Origin>, Vec<Alert>) {
    (
        Arc::new(Origin {
            receiver: n.receiver,
            group_labels: n.group_labels,
            external_url: n.external_url,
            group_key: n.group_key,
            truncated_alerts: n.truncated_alerts,
        }),
        n.alerts,
    )
}

/// Refuses a request that carries more alerts than one request may.
fn check_count(n: &Notification, delivery: &DeliveryConfig) -> Result<(), EnqueueError> {
    if n.alerts.len() > delivery.max_alerts_per_request {
        return Err(EnqueueError::TooManyAlerts {
            count: n.alerts.len(),
            max: delivery.max_alerts_per_request,
        });
    }
    Ok(())
}

/// Whether `target`'s queue has room for `count` more alerts of `incoming` bytes.
fn room(
    target: &str,
    s: &QueueState,
    count: usize,
    incoming: usize,
    delivery: &DeliveryConfig,
) -> Result<(), EnqueueError> {
    if s.items.len() + count > delivery.max_queued_alerts {
        return Err(EnqueueError::QueueFull(target.to_string()));
    }
    if s.bytes.saturating_add(incoming) > delivery.max_queued_bytes {
        return Err(EnqueueError::QueueBytesFull {
            target: target.to_string(),
            queued: s.bytes,
            incoming,
            max: delivery.max_queued_bytes,
        });
    }
    Ok(())
}

/// The part of a notification every one of its alerts keeps a reference to, charged to each
/// (an over-estimate, which is what a bound wants).
fn origin_size(o: &Origin) -> usize {
    o.receiver.len()
        + o.external_url.len()
        + o.group_key.len()
        + o.group_labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn alerts_size(alerts: &[Alert], origin: &Origin) -> usize {
    let o = origin_size(origin);
    alerts.iter().map(|a| a.size_bytes() + o).sum()
}

fn describe(a: &Alert) -> String {
    let name = a.labels.get("alertname").map(String::as_str).unwrap_or("?");
    format!("{name}[{}]", a.identity())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        let c = crate::config::load_str(
            "targets: {t: {access_token: x}}",
            std::path::Path::new("t.yml"),
            &crate::config::FlagTarget {
                base_url: "http://x".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let t = &c.compiled.unwrap().targets["t"];
        Target {
            name: t.name.clone(),
            robot: t.robot.clone(),
            keyword: None,
            message_type: t.message_type,
            mentions: t.mentions.clone(),
            templates: crate::template::Templates::new(t.message_type, None, None, chrono_tz::UTC)
                .unwrap(),
        }
    }

    fn alerts(n: usize) -> Vec<Alert> {
        (0..n)
            .map(|i| Alert {
                status: "firing".into(),
                labels: [("alertname".to_string(), format!("A{i:05}"))].into(),
                annotations: [("summary".to_string(), "s".repeat(i % 300))].into(),
                fingerprint: format!("{i:08}"),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn composing_a_preview_renders_each_alert_a_bounded_number_of_times() {
        let t = target();
        let origin = Origin::default();
        for n in [500, 2_000] {
            let list = alerts(n);
            let pairs: Vec<(&Alert, &Origin)> = list.iter().map(|a| (a, &origin)).collect();
            let mut work = 0;
            let out = compose_all_counted(&t, &pairs, 20_000, &mut work);
            assert_eq!(out.iter().map(|c| c.alerts).sum::<usize>(), n);
            // Doubling then bisecting: about k·log k per message of k alerts. Rendering the
            // whole rest for every message (as before) is about n²/k: ~60 000 per alert here.
            assert!(work < 30 * n, "{n} alerts: {work} alerts rendered");
            // Every message but the last is full: one more alert would not fit untruncated.
            let mut start = 0;
            for c in &out[..out.len() - 1] {
                assert!(!c.body.truncated);
                let next = compose_k(&t, &pairs[start..start + c.alerts + 1], 20_000);
                assert!(next.body.truncated, "a message could carry one more alert");
                start += c.alerts;
            }
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let d = DeliveryConfig {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            ..DeliveryConfig::default()
        };
        for _ in 0..50 {
            let b1 = backoff(&d, 1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1));
            let b3 = backoff(&d, 3);
            assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4));
            let b30 = backoff(&d, 30);
            assert!(b30 >= Duration::from_secs(4) && b30 <= Duration::from_secs(8));
        }
    }
}
