//! Rule evaluation inside the gateway: pushed samples feed a bounded PromQL store, rule
//! files (`--rule.file`) are evaluated every `--rule.evaluation-interval`, alerts go to
//! Alertmanager (`--alertmanager.url`) and/or a webhook (`--notifier.webhook-url`),
//! recording results and `ALERTS` appear on `/metrics`. Rule files are loaded together
//! with the config, so SIGHUP / `POST /-/reload` swaps them only when every file is valid.
//! Also the `promql-test`, `check-rules` and `test-rules` subcommands.
//!
//! The evaluator starts with the first config load (at start-up or any later reload) that
//! names rule files, so adding `rule_files` to a running gateway's config and sending
//! SIGHUP starts evaluation. Until then nothing is copied out of the store. Its statistics
//! (`metrics_gateway_rule_storage_*`, `metrics_gateway_notifications_*`) are registered
//! in the gateway's registry then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ConfigError, ConfigHandle, Lifecycle};
use prometheus::{
    core::{Collector, Desc},
    proto::{self, MetricFamily},
    Registry,
};
use promql_engine::labels::Labels;
use promql_engine::rules::file::{expand_globs, load_files, RuleGroup};
use promql_engine::rules::manager::EvalSettings;
use promql_engine::rules::notifier::{Notifier, NotifierConfig};
use promql_engine::rules::runtime::RuleEngine;
use promql_engine::MemStorage;

use crate::{
    api::{AppState, Settings},
    grouping::GroupKey,
    model::is_valid_label_name,
    render::ExpositionSource,
    store::{PushObserver, Store},
    Config, Gateway,
};

/// Rule-evaluation flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// Prometheus rule file(s) to evaluate (glob; repeatable). Reloaded with the config.
    #[arg(long = "rule.file", value_name = "GLOB")]
    pub rule_files: Vec<String>,

    /// Alertmanager to send alerts to (base URL; repeatable).
    #[arg(long = "alertmanager.url", value_name = "URL")]
    pub alertmanager_urls: Vec<String>,

    /// Webhook receiving alerts as Alertmanager's webhook payload (version 4), e.g.
    /// dingtalk-alert's `/dingtalk/send` endpoint.
    #[arg(long = "notifier.webhook-url", value_name = "URL")]
    pub webhook_url: Option<String>,

    /// How often rule groups without their own `interval` are evaluated.
    #[arg(long = "rule.evaluation-interval", value_name = "DURATION", default_value = "1m",
          value_parser = common::cli::parse_duration)]
    pub evaluation_interval: Duration,

    /// External label added to alerts and available as `$externalLabels` (NAME=VALUE;
    /// repeatable). NAME must be a valid label name; a malformed value stops start-up.
    #[arg(long = "rule.external-label", value_name = "NAME=VALUE",
          value_parser = parse_external_label)]
    pub external_labels: Vec<(String, String)>,

    /// URL under which the gateway is reachable (`$externalURL`, alert generator URLs).
    #[arg(long = "web.external-url", value_name = "URL", default_value = "")]
    pub external_url: String,
}

/// Subcommands that run and exit.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Runs Prometheus PromQL `.test` files; last line `N passed, M failed, K skipped`.
    #[command(name = "promql-test")]
    PromqlTest {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Checks rule files like `promtool check rules`.
    #[command(name = "check-rules")]
    CheckRules {
        /// Rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Runs rule unit tests like `promtool test rules`.
    #[command(name = "test-rules")]
    TestRules {
        /// Unit-test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs a subcommand; the exit code follows promtool (0 ok, 1 failure).
pub fn run_command(cmd: &Command) -> ExitCode {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let code = match cmd {
        Command::PromqlTest { files } => {
            let t = promql_engine::promqltest::run_files(files, &mut out, false);
            i32::from(t.failed > 0)
        }
        Command::CheckRules { files } => {
            promql_engine::rules::file::check_rules(files, &mut out, &mut err)
        }
        Command::TestRules { files } => {
            promql_engine::rules::unittest::test_rules(files, &mut out, &mut err)
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The rule evaluator, once a config naming rule files has been loaded (shared with the
/// components that read rules and alerts).
#[derive(Default)]
pub struct RuleSlot {
    engine: OnceLock<Arc<RuleEngine>>,
}

impl RuleSlot {
    /// The rule evaluator, once a config naming rule files has been loaded.
    pub fn engine(&self) -> Option<Arc<RuleEngine>> {
        self.engine.get().cloned()
    }
}

/// Loads the rule files named by `globs`; errors name file, group, rule and line.
pub fn load_rule_files(globs: &[String]) -> Result<Vec<RuleGroup>, ConfigError> {
    let files = expand_globs(globs).map_err(ConfigError::Other)?;
    load_files(&files).map_err(|errs| {
        ConfigError::Other(format!(
            "invalid rule files: {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

/// The config handle whose loader also checks the config together with the flags
/// (`settings`) and loads (and validates) the rule files into [`Config::rules`], so a
/// reload with any invalid rule file fails as a whole and keeps the old rules.
pub fn config_handle(
    args: &crate::Args,
    settings: Settings,
    prefix: &str,
    registry: &Registry,
) -> Result<ConfigHandle<Config>, ConfigError> {
    let path = args.common.config_file.clone();
    let globs = args.rules.rule_files.clone();
    let handle = ConfigHandle::with_loader(
        prefix,
        registry,
        Arc::new(move || {
            let mut cfg = common::config::load::<Config>(path.as_deref())?;
            settings.validate(&cfg.push)?;
            let base = path
                .as_deref()
                .and_then(|p| p.parent())
                .unwrap_or(std::path::Path::new(""));
            let mut all = globs.clone();
            all.extend(cfg.rule_files.iter().map(|g| {
                if std::path::Path::new(g).is_absolute() {
                    g.clone()
                } else {
                    base.join(g).display().to_string()
                }
            }));
            let groups = load_rule_files(&all)?;
            cfg.rules = (!all.is_empty()).then(|| Arc::new(groups));
            Ok(cfg)
        }),
    )?;
    Ok(handle)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Copies every group change into the rule store; removed series get staleness markers.
///
/// Pushed samples are recorded at their push time. A group that is not pushed again stays
/// in the gateway (until deleted or expired), and a Prometheus scraping the gateway would
/// keep seeing its series; [`Feed::refresh`] gives the rules the same view by re-recording
/// every live series' current value once per evaluation interval. Without it a group
/// pushed once would vanish from rule evaluation after the 5-minute lookback, and an alert
/// such as `time() - push_time_seconds > 300` could never fire.
struct Feed {
    storage: Arc<MemStorage>,
    groups: Mutex<HashMap<GroupKey, Vec<(Labels, f64)>>>,
}

impl Feed {
    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, Vec<(Labels, f64)>>> {
        match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records the current value of every series of every live group at `t` (ms).
    fn refresh(&self, t: i64) {
        for series in self.groups().values() {
            for (l, v) in series {
                self.storage.append(l, t, *v);
            }
        }
    }
}

impl PushObserver for Feed {
    fn group_changed(&self, at: SystemTime, group: &GroupKey, samples: &[crate::store::Sample]) {
        let t = ms(at);
        let now: Vec<(Labels, f64)> = samples
            .iter()
            .map(|(l, v)| (Labels::new(l.iter().cloned()), *v))
            .collect();
        for (l, v) in &now {
            self.storage.append(l, t, *v);
        }
        let mut g = self.groups();
        if let Some(old) = g.get(group) {
            let current: HashSet<&Labels> = now.iter().map(|(l, _)| l).collect();
            for (l, _) in old {
                if !current.contains(l) {
                    self.storage.mark_stale(l, t);
                }
            }
        }
        if now.is_empty() {
            g.remove(group);
        } else {
            g.insert(group.clone(), now);
        }
    }
}

/// `ALERTS`, recording results and rule-group durations on `/metrics`.
struct Exposition {
    engine: Arc<RuleEngine>,
    store: Arc<Store>,
}

impl ExpositionSource for Exposition {
    fn render(&self, out: &mut String) {
        let pushed: HashSet<String> = self
            .store
            .with_groups(|_, index| index.keys().cloned().collect());
        self.engine.render(&|name| pushed.contains(name), out);
    }
}

/// The evaluator's statistics as registered metrics, read from the engine at each scrape.
struct RuleStats {
    engine: Arc<RuleEngine>,
    descs: Vec<Desc>,
}

/// Name, help and type of each [`RuleStats`] metric, in the order `values` returns them.
const RULE_STATS: [(&str, &str, proto::MetricType); 7] = [
    (
        "metrics_gateway_rule_storage_series",
        "Series held for rule evaluation.",
        proto::MetricType::GAUGE,
    ),
    (
        "metrics_gateway_rule_storage_samples",
        "Samples held for rule evaluation.",
        proto::MetricType::GAUGE,
    ),
    (
        "metrics_gateway_rule_storage_bytes",
        "Estimated memory of the rule-evaluation store.",
        proto::MetricType::GAUGE,
    ),
    (
        "metrics_gateway_notifications_sent_total",
        "Alerts delivered to receivers.",
        proto::MetricType::COUNTER,
    ),
    (
        "metrics_gateway_notifications_dropped_total",
        "Alerts dropped because the notification queue was full.",
        proto::MetricType::COUNTER,
    ),
    (
        "metrics_gateway_notifications_failed_total",
        "Alerts given up on after retries.",
        proto::MetricType::COUNTER,
    ),
    (
        "metrics_gateway_notifications_queue_length",
        "Alerts waiting to be sent.",
        proto::MetricType::GAUGE,
    ),
];

impl RuleStats {
    fn new(engine: Arc<RuleEngine>) -> Self {
        let descs = RULE_STATS
            .iter()
            .filter_map(|(name, help, _)| {
                Desc::new(name.to_string(), help.to_string(), vec![], HashMap::new()).ok()
            })
            .collect();
        Self { engine, descs }
    }

    fn values(&self) -> [f64; 7] {
        let st = self.engine.storage().stats();
        let n = self.engine.notifier();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        [
            st.series as f64,
            st.samples as f64,
            st.bytes as f64,
            load(&n.stats.sent) as f64,
            load(&n.stats.dropped) as f64,
            load(&n.stats.failed) as f64,
            n.queue_len() as f64,
        ]
    }
}

impl Collector for RuleStats {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        RULE_STATS
            .iter()
            .zip(self.values())
            .map(|((name, help, kind), v)| {
                let metric = if *kind == proto::MetricType::COUNTER {
                    let mut c = proto::Counter::default();
                    c.set_value(v);
                    let mut m = proto::Metric::default();
                    m.set_counter(c);
                    m
                } else {
                    let mut g = proto::Gauge::default();
                    g.set_value(v);
                    proto::Metric::from_gauge(g)
                };
                let mut mf = MetricFamily::default();
                mf.set_name(name.to_string());
                mf.set_help(help.to_string());
                mf.set_field_type(*kind);
                mf.set_metric(vec![metric]);
                mf
            })
            .collect()
    }
}

/// Parses one `--rule.external-label` value: `NAME=VALUE` with a valid label name.
pub fn parse_external_label(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if !is_valid_label_name(name) {
        return Err(format!(
            "{name:?} is not a valid label name (letters, digits and _, not starting with a digit)"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "label names starting with __ are reserved: {name:?}"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The external labels of the flags; a name given twice is an error naming it.
pub fn external_labels(args: &RuleArgs) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in &args.external_labels {
        if out.insert(k.clone(), v.clone()).is_some() {
            return Err(ConfigError::invalid(
                "--rule.external-label",
                format!("names the label {k:?} twice"),
            ));
        }
    }
    Ok(out)
}

/// What the evaluator needs from the gateway when it starts.
#[derive(Clone)]
struct Context {
    store: Arc<Store>,
    state: Arc<AppState>,
    registry: Registry,
    slot: Arc<RuleSlot>,
    rules: RuleArgs,
    external_labels: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

impl Context {
    /// Starts the evaluator, the notifier and the feed from the store.
    fn start_engine(&self) -> Arc<RuleEngine> {
        let args = &self.rules;
        let notifier = Notifier::new(NotifierConfig {
            alertmanagers: args.alertmanager_urls.clone(),
            webhook: args.webhook_url.clone(),
            external_labels: self.external_labels.clone(),
            external_url: args.external_url.clone(),
            ..NotifierConfig::default()
        });
        let storage = Arc::new(MemStorage::new());
        let engine = RuleEngine::new(
            storage.clone(),
            EvalSettings {
                interval_ms: args.evaluation_interval.as_millis().max(1) as i64,
                external_labels: self.external_labels.clone(),
                external_url: args.external_url.clone(),
                ..EvalSettings::default()
            },
            notifier.clone(),
        );
        let feed = Arc::new(Feed {
            storage,
            groups: Mutex::new(HashMap::new()),
        });
        self.store.add_observer(feed.clone());
        {
            // Keep live groups visible to the rules, as a scraping Prometheus would see them.
            let every = args.evaluation_interval.max(Duration::from_secs(1));
            let stop = self.lifecycle.shutdown();
            tokio::spawn(async move {
                tokio::pin!(stop);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tick.tick() => feed.refresh(ms(SystemTime::now())),
                    }
                }
            });
        }
        self.state.add_exposition_source(Arc::new(Exposition {
            engine: engine.clone(),
            store: self.store.clone(),
        }));
        if let Err(error) = self
            .registry
            .register(Box::new(RuleStats::new(engine.clone())))
        {
            tracing::warn!(%error, "Cannot register the rule statistics.");
        }
        tokio::spawn(engine.clone().run(self.lifecycle.shutdown()));
        tokio::spawn(notifier.run(self.lifecycle.shutdown()));
        engine
    }

    /// Applies the rules of a loaded config: starts the evaluator the first time rule
    /// files are named, then swaps the groups.
    fn apply(&self, rules: Option<&Arc<Vec<RuleGroup>>>, started_at_boot: bool) {
        let engine = match (self.slot.engine(), rules) {
            (Some(e), _) => e,
            (None, Some(_)) => {
                let e = self.start_engine();
                let _ = self.slot.engine.set(e.clone());
                e
            }
            (None, None) => return,
        };
        engine.set_groups(rules.map(|g| g.as_ref().clone()).unwrap_or_default());
        if started_at_boot {
            tracing::info!(rules = engine.rule_count(), "Loaded rule files.");
        } else {
            tracing::info!(rules = engine.rule_count(), "Reloaded rule files.");
        }
    }
}

/// Starts rule evaluation beside the HTTP server if the config names rule files, and on
/// the first later reload that does otherwise; every successful reload swaps the groups.
/// Must be called within the Tokio runtime.
pub fn start(gw: &Gateway, args: &crate::Args, lifecycle: &Lifecycle) -> Result<(), ConfigError> {
    let ctx = Context {
        store: gw.store.clone(),
        state: gw.state.clone(),
        registry: gw.registry.clone(),
        slot: gw.rules.clone(),
        rules: args.rules.clone(),
        external_labels: external_labels(&args.rules)?,
        lifecycle: lifecycle.clone(),
    };
    // The config seen first is marked seen: a reload after it is a change.
    let mut rx = gw.config.subscribe();
    let first = rx.borrow_and_update().clone();
    ctx.apply(first.rules.as_ref(), true);
    let stop = lifecycle.shutdown();
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let cfg = rx.borrow_and_update().clone();
                    ctx.apply(cfg.rules.as_ref(), false);
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use promql_engine::{Engine, Value};

    use super::*;

    fn query(st: &MemStorage, q: &str, t: i64) -> Vec<(Labels, f64)> {
        let expr = promql_engine::parse(q).unwrap();
        match Engine::default().instant(st, q, &expr, t).unwrap().value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.f)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn live_groups_stay_visible_past_the_lookback_and_deleted_ones_go_stale() {
        let storage = Arc::new(MemStorage::new());
        let feed = Feed {
            storage: storage.clone(),
            groups: Mutex::new(HashMap::new()),
        };
        let key = crate::grouping::parse_path("job/flink-jm").unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let sample = |name: &str, v: f64| {
            (
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("instance".to_string(), String::new()),
                    ("job".to_string(), "flink-jm".to_string()),
                ],
                v,
            )
        };
        feed.group_changed(t0, &key, &[sample("push_time_seconds", 1_000_000.0)]);
        let at = |mins: u64| ms(t0 + Duration::from_secs(mins * 60));
        for m in 1..=10 {
            feed.refresh(at(m));
        }
        // Ten minutes after the only push, the series is still there with its pushed value.
        let r = query(&storage, "time() - push_time_seconds > 300", at(10));
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].1, 600.0);

        // Deleting the group makes its series stale at once; refreshes do not revive it.
        feed.group_changed(t0 + Duration::from_secs(630), &key, &[]);
        feed.refresh(at(11));
        assert!(query(&storage, "push_time_seconds", at(11)).is_empty());
    }
}
