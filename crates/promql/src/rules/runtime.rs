//! The running rule engine: holds the loaded groups and their state, evaluates each group
//! on its interval, sends due alerts to the [`Notifier`], swaps groups on reload (keeping
//! alert state), and renders recording results and `ALERTS` for `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use promql_parser::parser::Expr;

use super::file::RuleGroup;
use super::manager::{render_exposition, EvalSettings, GroupState};
use super::notifier::Notifier;
use super::schedule;
use crate::eval::{dur_ms, Engine};
use crate::storage::{MemLimits, MemStorage};

/// Longest time range (ms) an expression reads back from its evaluation time.
pub fn max_range_ms(e: &Expr) -> i64 {
    fn off(o: &Option<promql_parser::parser::Offset>) -> i64 {
        match o {
            Some(promql_parser::parser::Offset::Pos(d)) => dur_ms(d),
            _ => 0,
        }
    }
    match e {
        Expr::MatrixSelector(m) => dur_ms(&m.range) + off(&m.vs.offset),
        Expr::VectorSelector(v) => off(&v.offset),
        Expr::Subquery(s) => dur_ms(&s.range) + off(&s.offset) + max_range_ms(&s.expr),
        Expr::Aggregate(a) => {
            max_range_ms(&a.expr).max(a.param.as_ref().map(|p| max_range_ms(p)).unwrap_or(0))
        }
        Expr::Binary(b) => max_range_ms(&b.lhs).max(max_range_ms(&b.rhs)),
        Expr::Paren(p) => max_range_ms(&p.expr),
        Expr::Unary(u) => max_range_ms(&u.expr),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| max_range_ms(a))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// The rule engine of a gateway.
pub struct RuleEngine {
    storage: Arc<MemStorage>,
    engine: Engine,
    settings: EvalSettings,
    groups: Mutex<Vec<GroupState>>,
    notifier: Arc<Notifier>,
}

impl RuleEngine {
    /// A rule engine reading `storage` and sending through `notifier`.
    pub fn new(
        storage: Arc<MemStorage>,
        settings: EvalSettings,
        notifier: Arc<Notifier>,
    ) -> Arc<Self> {
        Arc::new(RuleEngine {
            storage,
            engine: Engine::default(),
            settings,
            groups: Mutex::new(Vec::new()),
            notifier,
        })
    }

    /// The store rules read and write.
    pub fn storage(&self) -> &Arc<MemStorage> {
        &self.storage
    }

    /// The notifier.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<GroupState>> {
        match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Replaces the loaded groups; alert state is carried over for groups with the same
    /// file and name and rules with the same name, expression and labels. Also sizes the
    /// store's per-series buffer for the longest range any rule needs plus lookback.
    pub fn set_groups(&self, groups: Vec<RuleGroup>) {
        let mut cur = self.lock();
        let mut next: Vec<GroupState> = groups.into_iter().map(GroupState::new).collect();
        for g in next.iter_mut() {
            if let Some(old) = cur
                .iter()
                .find(|o| o.group.file == g.group.file && o.group.name == g.group.name)
            {
                g.carry_over_from(old);
            }
        }
        let longest = next
            .iter()
            .flat_map(|g| {
                g.group.rules.iter().map(move |r| {
                    max_range_ms(&r.expr) + g.group.query_offset_ms + g.interval_ms(&self.settings)
                })
            })
            .max()
            .unwrap_or(0);
        // Series written by rules that are gone now become stale, as in Prometheus.
        let kept: std::collections::HashSet<&crate::labels::Labels> = next
            .iter()
            .flat_map(|g| {
                g.rules
                    .iter()
                    .flat_map(|r| r.last_output.iter().map(|(l, _)| l))
            })
            .collect();
        let now = chrono::Utc::now().timestamp_millis();
        for g in cur.iter() {
            for r in &g.rules {
                for (l, _) in &r.last_output {
                    if !kept.contains(l) {
                        self.storage.mark_stale(l, now);
                    }
                }
            }
        }
        self.storage.set_limits(MemLimits {
            retention_ms: longest + self.engine.lookback_ms + self.settings.interval_ms,
            max_samples_per_series: 100_000,
        });
        *cur = next;
    }

    /// A copy of the loaded groups with their evaluation state (for APIs that list rules
    /// and alerts; the lock is held only while copying).
    pub fn groups_snapshot(&self) -> Vec<GroupState> {
        self.lock().clone()
    }

    /// Each group's last evaluation time (ms): a cheap check of whether anything ran
    /// before taking a [`RuleEngine::groups_snapshot`].
    pub fn last_evaluations(&self) -> Vec<Option<i64>> {
        self.lock().iter().map(|g| g.last_eval_ms).collect()
    }

    /// The default evaluation interval (ms) of groups without their own.
    pub fn default_interval_ms(&self) -> i64 {
        self.settings.interval_ms
    }

    /// Number of loaded rules.
    pub fn rule_count(&self) -> usize {
        self.lock().iter().map(|g| g.rules.len()).sum()
    }

    /// Evaluates every group whose scheduled evaluation time has come (`now_ms`), sends the
    /// due alerts. Returns the number of groups evaluated.
    ///
    /// Each group has its own slot within its interval, as in Prometheus
    /// ([`super::schedule`]): the group's offset plus whole intervals. Groups due in the
    /// same call run in the order of their slots, so a group reads another group's
    /// recording from that group's latest slot at or before its own, as it would in
    /// Prometheus, whatever the order of the rule files.
    pub fn tick(&self, now_ms: i64) -> usize {
        let mut groups = self.lock();
        let mut due: Vec<(i64, usize)> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let iv = g.interval_ms(&self.settings).max(1);
            let off = schedule::group_offset_ms(&g.group.file, &g.group.name, iv);
            let ts = schedule::eval_timestamp_ms(now_ms, iv, off);
            if g.last_eval_ms.is_some_and(|l| l >= ts) {
                continue;
            }
            due.push((ts, i));
        }
        due.sort();
        let n = due.len();
        let mut out = Vec::new();
        for (ts, i) in due {
            out.extend(groups[i].eval(&self.engine, &self.storage, &self.settings, ts));
        }
        drop(groups);
        self.notifier.send(out);
        if n > 0 {
            self.storage.gc(now_ms);
        }
        n
    }

    /// Evaluates every group at `ts` regardless of alignment (tests, manual runs).
    pub fn eval_at(&self, ts: i64) {
        let mut groups = self.lock();
        let mut out = Vec::new();
        for g in groups.iter_mut() {
            out.extend(g.eval(&self.engine, &self.storage, &self.settings, ts));
        }
        drop(groups);
        self.notifier.send(out);
    }

    /// Runs evaluation until `shutdown` completes.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    let now = chrono::Utc::now().timestamp_millis();
                    self.tick(now);
                }
            }
        }
    }

    /// Appends recording results and `ALERTS`/`ALERTS_FOR_STATE` (text format), skipping
    /// names for which `skip` is true, then `prometheus_rule_group_last_duration_seconds`.
    pub fn render(&self, skip: &dyn Fn(&str) -> bool, out: &mut String) {
        let groups = self.lock();
        render_exposition(&groups, skip, out);
        if !groups.is_empty() {
            out.push_str("# HELP prometheus_rule_group_last_duration_seconds The duration of the last rule group evaluation.\n# TYPE prometheus_rule_group_last_duration_seconds gauge\n");
            for g in groups.iter() {
                out.push_str(&format!(
                    "prometheus_rule_group_last_duration_seconds{{rule_group=\"{}\"}} {}\n",
                    format!("{};{}", g.group.file, g.group.name)
                        .replace('\\', "\\\\")
                        .replace('"', "\\\""),
                    g.last_duration_seconds
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::rules::file::parse_rules;
    use crate::rules::notifier::NotifierConfig;

    const RULES: &str = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: 10m\n  - record: r\n    expr: m[10m:1m]\n";

    #[test]
    fn reload_keeps_alert_state_for_unchanged_rules_and_sizes_the_buffer() {
        let eng = RuleEngine::new(
            Arc::new(MemStorage::new()),
            EvalSettings::default(),
            Notifier::new(NotifierConfig::default()),
        );
        let rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: 10m\n";
        eng.set_groups(parse_rules("f.yml", rules).unwrap());
        let m = Labels::new([("__name__", "m")]);
        eng.storage().append(&m, 0, 1.0);
        eng.eval_at(0);
        eng.storage().append(&m, 60_000, 1.0);
        // Same rule again plus another one: the pending alert keeps its activation time.
        let more = format!("{rules}  - alert: B\n    expr: m > 5\n");
        eng.set_groups(parse_rules("f.yml", &more).unwrap());
        eng.eval_at(60_000);
        let g = eng.lock();
        let a = g[0].rules[0].alerts.values().next().unwrap();
        assert_eq!(a.active_at, 0);
        drop(g);
        // A changed expression starts over.
        eng.set_groups(
            parse_rules(
                "f.yml",
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0.5\n    for: 10m\n",
            )
            .unwrap(),
        );
        eng.eval_at(120_000);
        assert_eq!(
            eng.lock()[0].rules[0]
                .alerts
                .values()
                .next()
                .unwrap()
                .active_at,
            120_000
        );
    }

    #[test]
    fn longest_range_sizes_retention() {
        let g = parse_rules("f.yml", RULES).unwrap();
        assert_eq!(max_range_ms(&g[0].rules[1].expr), 600_000);
        let st = Arc::new(MemStorage::new());
        let eng = RuleEngine::new(
            st.clone(),
            EvalSettings::default(),
            Notifier::new(NotifierConfig::default()),
        );
        eng.set_groups(g);
        let m = Labels::new([("__name__", "m")]);
        for i in 0..100 {
            st.append(&m, i * 60_000, 1.0);
        }
        // 10m range + 5m lookback + 1m interval (+ group interval) are kept, older samples go.
        let kept = st.stats().samples;
        assert!((16..=18).contains(&kept), "kept {kept}");
    }
}
