//! Rule evaluation inside the gateway: pushed samples feed a bounded PromQL store, rule
//! files (`--rule.file`) are evaluated every `--rule.evaluation-interval`, alerts go to
//! Alertmanager (`--alertmanager.url`) and/or a webhook (`--notifier.webhook-url`),
//! recording results and `ALERTS` appear on `/metrics`. Rule files are loaded together
//! with the config, so SIGHUP / `POST /-/reload` swaps them only when every file is valid.
//! Also the `promql-test`, `check-rules` and `test-rules` subcommands.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ConfigError, ConfigHandle, Lifecycle};
use prometheus::Registry;
use promql_engine::labels::Labels;
use promql_engine::rules::file::{expand_globs, load_files, RuleGroup};
use promql_engine::rules::manager::EvalSettings;
use promql_engine::rules::notifier::{Notifier, NotifierConfig};
use promql_engine::rules::runtime::RuleEngine;
use promql_engine::MemStorage;

use crate::{grouping::GroupKey, render::ExpositionSource, store::PushObserver, Config, Gateway};

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
    /// repeatable).
    #[arg(long = "rule.external-label", value_name = "NAME=VALUE")]
    pub external_labels: Vec<String>,

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

/// Rule groups loaded by the last successful config load, waiting to be applied.
#[derive(Default)]
pub struct RuleSlot {
    pending: Mutex<Option<Vec<RuleGroup>>>,
}

impl RuleSlot {
    fn put(&self, g: Vec<RuleGroup>) {
        match self.pending.lock() {
            Ok(mut p) => *p = Some(g),
            Err(p) => *p.into_inner() = Some(g),
        }
    }

    fn take(&self) -> Option<Vec<RuleGroup>> {
        match self.pending.lock() {
            Ok(mut p) => p.take(),
            Err(p) => p.into_inner().take(),
        }
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

/// The config handle whose loader also loads (and validates) the rule files, so a reload
/// with any invalid rule file fails as a whole and keeps the old rules.
pub fn config_handle(
    args: &crate::Args,
    prefix: &str,
    registry: &Registry,
) -> Result<(ConfigHandle<Config>, Arc<RuleSlot>), ConfigError> {
    let slot = Arc::new(RuleSlot::default());
    let path = args.common.config_file.clone();
    let globs = args.rules.rule_files.clone();
    let s = slot.clone();
    let handle = ConfigHandle::with_loader(
        prefix,
        registry,
        Arc::new(move || {
            let cfg = common::config::load::<Config>(path.as_deref())?;
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
            s.put(groups);
            Ok(cfg)
        }),
    )?;
    Ok((handle, slot))
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
    store: Arc<crate::store::Store>,
}

impl ExpositionSource for Exposition {
    fn render(&self, out: &mut String) {
        let pushed: HashSet<String> = self
            .store
            .with_groups(|_, index| index.keys().cloned().collect());
        self.engine.render(&|name| pushed.contains(name), out);
        let st = self.engine.storage().stats();
        let n = self.engine.notifier();
        let load = std::sync::atomic::Ordering::Relaxed;
        out.push_str(&format!(
            "# HELP metrics_gateway_rule_storage_series Series held for rule evaluation.\n# TYPE metrics_gateway_rule_storage_series gauge\nmetrics_gateway_rule_storage_series {}\n\
             # HELP metrics_gateway_rule_storage_samples Samples held for rule evaluation.\n# TYPE metrics_gateway_rule_storage_samples gauge\nmetrics_gateway_rule_storage_samples {}\n\
             # HELP metrics_gateway_rule_storage_bytes Estimated memory of the rule-evaluation store.\n# TYPE metrics_gateway_rule_storage_bytes gauge\nmetrics_gateway_rule_storage_bytes {}\n\
             # HELP metrics_gateway_notifications_sent_total Alerts delivered to receivers.\n# TYPE metrics_gateway_notifications_sent_total counter\nmetrics_gateway_notifications_sent_total {}\n\
             # HELP metrics_gateway_notifications_dropped_total Alerts dropped because the notification queue was full.\n# TYPE metrics_gateway_notifications_dropped_total counter\nmetrics_gateway_notifications_dropped_total {}\n\
             # HELP metrics_gateway_notifications_failed_total Alerts given up on after retries.\n# TYPE metrics_gateway_notifications_failed_total counter\nmetrics_gateway_notifications_failed_total {}\n\
             # HELP metrics_gateway_notifications_queue_length Alerts waiting to be sent.\n# TYPE metrics_gateway_notifications_queue_length gauge\nmetrics_gateway_notifications_queue_length {}\n",
            st.series,
            st.samples,
            st.bytes,
            n.stats.sent.load(load),
            n.stats.dropped.load(load),
            n.stats.failed.load(load),
            n.queue_len(),
        ));
    }
}

fn parse_external_labels(v: &[String]) -> BTreeMap<String, String> {
    v.iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Starts rule evaluation and notification beside the HTTP server. Without `--rule.file`
/// nothing runs.
pub fn start(gw: &Gateway, args: &crate::Args, lifecycle: &Lifecycle) {
    if args.rules.rule_files.is_empty() && gw.config.current().rule_files.is_empty() {
        return;
    }
    let external_labels = parse_external_labels(&args.rules.external_labels);
    let notifier = Notifier::new(NotifierConfig {
        alertmanagers: args.rules.alertmanager_urls.clone(),
        webhook: args.rules.webhook_url.clone(),
        external_labels: external_labels.clone(),
        external_url: args.rules.external_url.clone(),
        ..NotifierConfig::default()
    });
    let storage = Arc::new(MemStorage::new());
    let engine = RuleEngine::new(
        storage.clone(),
        EvalSettings {
            interval_ms: args.rules.evaluation_interval.as_millis().max(1) as i64,
            external_labels,
            external_url: args.rules.external_url.clone(),
            ..EvalSettings::default()
        },
        notifier.clone(),
    );
    if let Some(g) = gw.rules.take() {
        engine.set_groups(g);
    }
    tracing::info!(rules = engine.rule_count(), "Loaded rule files.");
    let feed = Arc::new(Feed {
        storage,
        groups: Mutex::new(HashMap::new()),
    });
    gw.store.add_observer(feed.clone());
    {
        // Keep live groups visible to the rules, as a scraping Prometheus would see them.
        let every = args.rules.evaluation_interval.max(Duration::from_secs(1));
        let stop = lifecycle.shutdown();
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
    gw.state.add_exposition_source(Arc::new(Exposition {
        engine: engine.clone(),
        store: gw.store.clone(),
    }));
    // Apply the rule files of every successful reload.
    {
        let engine = engine.clone();
        let slot = gw.rules.clone();
        let mut rx = gw.config.subscribe();
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
                        if let Some(g) = slot.take() {
                            engine.set_groups(g);
                            tracing::info!(rules = engine.rule_count(), "Reloaded rule files.");
                        }
                    }
                }
            }
        });
    }
    tokio::spawn(engine.run(lifecycle.shutdown()));
    tokio::spawn(notifier.run(lifecycle.shutdown()));
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
