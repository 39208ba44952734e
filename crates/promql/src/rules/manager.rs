//! Rule evaluation: recording rules write their results back to the store, alerting rules
//! run Prometheus's alert state machine (pending → firing after `for`, `keep_firing_for`,
//! resolved alerts kept and re-sent for 15 minutes) and produce `ALERTS` /
//! `ALERTS_FOR_STATE` series.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::file::{Rule, RuleGroup, RuleKind};
use super::template::{AlertData, QueryRows};
use crate::eval::Engine;
use crate::labels::{Labels, METRIC_NAME};
use crate::storage::MemStorage;
use crate::value::Value;

/// How long a resolved alert is kept (and re-sent) after it resolved.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// State of one alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Active but `for` has not elapsed.
    Pending,
    /// Firing.
    Firing,
    /// Resolved (kept for re-sending).
    Inactive,
}

impl AlertState {
    /// The `alertstate` label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Inactive => "inactive",
        }
    }
}

/// One alert instance of an alerting rule.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Labels including `alertname`.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// State.
    pub state: AlertState,
    /// Value of the last evaluation that produced it.
    pub value: f64,
    /// When it became active (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// When it resolved (ms).
    pub resolved_at: Option<i64>,
    /// When it was last sent (ms).
    pub last_sent_at: Option<i64>,
    /// `endsAt` of the last send.
    pub valid_until: i64,
    /// Since when it is kept firing by `keep_firing_for` (ms).
    pub keep_firing_since: Option<i64>,
}

/// An alert to send to Alertmanager / a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingAlert {
    /// Labels (external labels not yet added).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// startsAt (ms).
    pub starts_at: i64,
    /// endsAt (ms).
    pub ends_at: i64,
    /// Link back to the expression.
    pub generator_url: String,
}

/// Evaluation state of one rule.
#[derive(Debug, Clone)]
pub struct RuleState {
    /// The rule.
    pub rule: Rule,
    /// Alert instances by label set (alerting rules).
    pub alerts: HashMap<Labels, Alert>,
    /// Series written at the last evaluation (for staleness and exposition).
    pub last_output: Vec<(Labels, f64)>,
    /// Last evaluation error.
    pub last_error: Option<String>,
}

/// Settings shared by every group.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Default evaluation interval (ms).
    pub interval_ms: i64,
    /// Minimum delay between re-sends of the same alert (ms).
    pub resend_delay_ms: i64,
    /// External labels (`$externalLabels`; added to sent alerts).
    pub external_labels: BTreeMap<String, String>,
    /// External URL (`$externalURL`, generator URLs).
    pub external_url: String,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            interval_ms: 60_000,
            resend_delay_ms: 60_000,
            external_labels: BTreeMap::new(),
            external_url: String::new(),
        }
    }
}

/// A rule group with its evaluation state.
#[derive(Debug, Clone)]
pub struct GroupState {
    /// The group definition.
    pub group: RuleGroup,
    /// Per-rule state, aligned with `group.rules`.
    pub rules: Vec<RuleState>,
    /// Duration of the last evaluation in seconds.
    pub last_duration_seconds: f64,
    /// Time of the last evaluation (ms), if any.
    pub last_eval_ms: Option<i64>,
}

fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl GroupState {
    /// Wraps a group with empty state.
    pub fn new(group: RuleGroup) -> Self {
        let rules = group
            .rules
            .iter()
            .map(|r| RuleState {
                rule: r.clone(),
                alerts: HashMap::new(),
                last_output: Vec::new(),
                last_error: None,
            })
            .collect();
        GroupState {
            group,
            rules,
            last_duration_seconds: 0.0,
            last_eval_ms: None,
        }
    }

    /// The group's interval (ms).
    pub fn interval_ms(&self, s: &EvalSettings) -> i64 {
        self.group
            .interval_ms
            .filter(|i| *i > 0)
            .unwrap_or(s.interval_ms)
    }

    /// Takes over alert state from `old` for rules with the same name, expression and
    /// labels (what a reload keeps).
    pub fn carry_over_from(&mut self, old: &GroupState) {
        for r in self.rules.iter_mut() {
            if let Some(o) = old.rules.iter().find(|o| {
                o.rule.name() == r.rule.name()
                    && o.rule.expr_text == r.rule.expr_text
                    && o.rule.labels.iter().map(|(k, v, _)| (k, v)).eq(r
                        .rule
                        .labels
                        .iter()
                        .map(|(k, v, _)| (k, v)))
            }) {
                r.alerts = o.alerts.clone();
                r.last_output = o.last_output.clone();
            }
        }
        self.last_eval_ms = old.last_eval_ms;
    }

    /// Evaluates every rule at `ts` (ms), writing recording results, `ALERTS` and
    /// `ALERTS_FOR_STATE` to `st`; returns the alerts due to be sent.
    pub fn eval(
        &mut self,
        engine: &Engine,
        st: &MemStorage,
        s: &EvalSettings,
        ts: i64,
    ) -> Vec<OutgoingAlert> {
        let started = std::time::Instant::now();
        let interval = self.interval_ms(s);
        let qts = ts - self.group.query_offset_ms;
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let group_labels = self.group.labels.clone();
            let limit = self.group.limit;
            let rs = &mut self.rules[i];
            let result = match &rs.rule.kind {
                RuleKind::Recording { record } => {
                    eval_recording(engine, st, rs, record, &group_labels, limit, qts)
                }
                RuleKind::Alerting { .. } => {
                    eval_alerting(engine, st, rs, &group_labels, limit, s, qts, ts)
                }
            };
            let new_output = match result {
                Ok(o) => {
                    rs.last_error = None;
                    o
                }
                Err(e) => {
                    tracing::warn!(group = %self.group.name, rule = %rs.rule.name(), error = %e, "Rule evaluation failed.");
                    rs.last_error = Some(e);
                    Vec::new()
                }
            };
            // Write results and staleness markers for series that disappeared.
            let new_set: HashSet<&Labels> = new_output.iter().map(|(l, _)| l).collect();
            for (l, _) in &rs.last_output {
                if !new_set.contains(l) {
                    st.mark_stale(l, ts);
                }
            }
            for (l, v) in &new_output {
                st.append(l, ts, *v);
            }
            rs.last_output = new_output;
            if let RuleKind::Alerting { .. } = rs.rule.kind {
                let delta = s.resend_delay_ms.max(interval);
                let gen_url = format!(
                    "{}/graph?g0.expr={}&g0.tab=1",
                    s.external_url.trim_end_matches('/'),
                    url_escape(&rs.rule.expr_text)
                );
                let mut keys: Vec<&Labels> = rs.alerts.keys().collect();
                keys.sort();
                let keys: Vec<Labels> = keys.into_iter().cloned().collect();
                for k in keys {
                    let Some(a) = rs.alerts.get_mut(&k) else {
                        continue;
                    };
                    if !needs_sending(a, ts, s.resend_delay_ms) {
                        continue;
                    }
                    a.last_sent_at = Some(ts);
                    a.valid_until = ts + 4 * delta;
                    out.push(OutgoingAlert {
                        labels: labels_map(&a.labels),
                        annotations: a.annotations.clone(),
                        starts_at: a.fired_at.unwrap_or(a.active_at),
                        ends_at: a.resolved_at.unwrap_or(a.valid_until),
                        generator_url: gen_url.clone(),
                    });
                }
            }
        }
        self.last_duration_seconds = started.elapsed().as_secs_f64();
        self.last_eval_ms = Some(ts);
        out
    }

    /// Firing alerts of the rule named `alert` (for rule unit tests).
    pub fn firing(&self, alert: &str) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self
            .rules
            .iter()
            .filter(|r| matches!(&r.rule.kind, RuleKind::Alerting { alert: a, .. } if a == alert))
            .flat_map(|r| r.alerts.values())
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }
}

fn needs_sending(a: &Alert, ts: i64, resend_delay: i64) -> bool {
    if a.state == AlertState::Pending {
        return false;
    }
    if let Some(r) = a.resolved_at {
        if a.last_sent_at.is_none_or(|s| s < r) {
            return true;
        }
    }
    match a.last_sent_at {
        None => true,
        Some(s) => s + resend_delay < ts,
    }
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_vector(
    engine: &Engine,
    st: &MemStorage,
    q: &str,
    expr: &promql_parser::parser::Expr,
    ts: i64,
) -> Result<Vec<(Labels, f64)>, crate::eval::Error> {
    let r = engine.instant(st, q, expr, ts)?;
    match r.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.f)).collect()),
        Value::Scalar(f) => Ok(vec![(Labels::default(), f)]),
        other => Err(crate::eval::Error::Eval(format!(
            "rule result is a {}, not an instant vector or scalar",
            other.type_name()
        ))),
    }
}

fn eval_recording(
    engine: &Engine,
    st: &MemStorage,
    rs: &RuleState,
    record: &str,
    group_labels: &BTreeMap<String, String>,
    limit: usize,
    qts: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    let v = query_vector(engine, st, &rs.rule.expr_text, &rs.rule.expr, qts)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(v.len());
    let mut seen = HashSet::new();
    for (mut l, f) in v {
        l.set(METRIC_NAME, record);
        for (k, val) in group_labels {
            l.set(k, val);
        }
        for (k, val, _) in &rs.rule.labels {
            l.set(k, val);
        }
        if !seen.insert(l.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((l, f));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn eval_alerting(
    engine: &Engine,
    st: &MemStorage,
    rs: &mut RuleState,
    group_labels: &BTreeMap<String, String>,
    limit: usize,
    s: &EvalSettings,
    qts: i64,
    ts: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    let RuleKind::Alerting {
        alert: name,
        for_ms,
        keep_firing_for_ms,
        annotations,
    } = &rs.rule.kind
    else {
        return Ok(Vec::new());
    };
    let v = query_vector(engine, st, &rs.rule.expr_text, &rs.rule.expr, qts)
        .map_err(|e| e.to_string())?;
    let query = |q: &str| -> Result<QueryRows, crate::eval::Error> {
        let e = crate::eval::parse(q)?;
        Ok(query_vector(engine, st, q, &e, qts)?
            .into_iter()
            .map(|(l, f)| (labels_map(&l), f))
            .collect())
    };
    let mut current: HashMap<Labels, (BTreeMap<String, String>, f64)> = HashMap::new();
    for (sample_labels, value) in v {
        // `$labels` is the sample's label set, `__name__` included when the expression
        // kept it, as Prometheus gives it to templates.
        let data = AlertData {
            labels: labels_map(&sample_labels),
            external_labels: s.external_labels.clone(),
            external_url: s.external_url.clone(),
            value,
            query: Some(&query),
        };
        let mut l = sample_labels.without_name();
        for (k, val) in group_labels {
            l.set(k, val);
        }
        for (k, src, t) in &rs.rule.labels {
            let v = match t {
                Some(t) => t
                    .expand_alert(&data)
                    .unwrap_or_else(|e| format!("<error expanding template: {e}>")),
                None => src.clone(),
            };
            l.set(k, &v);
        }
        l.set("alertname", name);
        let mut ann = BTreeMap::new();
        for (k, t, _) in annotations {
            ann.insert(
                k.clone(),
                t.expand_alert(&data)
                    .unwrap_or_else(|e| format!("<error expanding template: {e}>")),
            );
        }
        if current.insert(l, (ann, value)).is_some() {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
    }
    for (l, (ann, value)) in &current {
        match rs.alerts.get_mut(l) {
            Some(a) if a.state != AlertState::Inactive => {
                a.value = *value;
                a.annotations = ann.clone();
            }
            _ => {
                rs.alerts.insert(
                    l.clone(),
                    Alert {
                        labels: l.clone(),
                        annotations: ann.clone(),
                        state: AlertState::Pending,
                        value: *value,
                        active_at: ts,
                        fired_at: None,
                        resolved_at: None,
                        last_sent_at: None,
                        valid_until: 0,
                        keep_firing_since: None,
                    },
                );
            }
        }
    }
    let mut remove = Vec::new();
    for (l, a) in rs.alerts.iter_mut() {
        if current.contains_key(l) {
            a.keep_firing_since = None;
            if a.state == AlertState::Pending && ts - a.active_at >= *for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            continue;
        }
        if *keep_firing_for_ms > 0 && a.state == AlertState::Firing {
            let since = *a.keep_firing_since.get_or_insert(ts);
            if ts - since < *keep_firing_for_ms {
                continue;
            }
        }
        if a.state == AlertState::Pending
            || a.resolved_at
                .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
        {
            remove.push(l.clone());
            continue;
        }
        if a.state != AlertState::Inactive {
            a.state = AlertState::Inactive;
            a.resolved_at = Some(ts);
        }
    }
    for l in remove {
        rs.alerts.remove(&l);
    }
    let active = rs
        .alerts
        .values()
        .filter(|a| a.state != AlertState::Inactive)
        .count();
    if limit > 0 && active > limit {
        rs.alerts.clear();
        return Err(format!("exceeded limit of {limit} with {active} alerts"));
    }
    let mut series = Vec::new();
    for a in rs.alerts.values() {
        if a.state == AlertState::Inactive {
            continue;
        }
        let mut l = a.labels.clone();
        l.set(METRIC_NAME, "ALERTS");
        l.set("alertstate", a.state.as_str());
        series.push((l, 1.0));
        let mut l = a.labels.clone();
        l.set(METRIC_NAME, "ALERTS_FOR_STATE");
        series.push((l, a.active_at as f64 / 1000.0));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(series)
}

/// Renders the series of the last evaluation of `groups` in the text exposition format
/// (one `# TYPE ... gauge` per name), skipping names in `skip`.
pub fn render_exposition(groups: &[GroupState], skip: &dyn Fn(&str) -> bool, out: &mut String) {
    let mut by_name: BTreeMap<String, BTreeMap<Labels, f64>> = BTreeMap::new();
    for g in groups {
        for r in &g.rules {
            for (l, v) in &r.last_output {
                let name = l.name().unwrap_or("").to_string();
                if name.is_empty() || skip(&name) {
                    continue;
                }
                by_name
                    .entry(name)
                    .or_default()
                    .insert(l.without_name(), *v);
            }
        }
    }
    for (name, series) in by_name {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for (l, v) in series {
            out.push_str(&name);
            if !l.is_empty() {
                out.push('{');
                for (i, (k, val)) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let esc = val
                        .replace('\\', "\\\\")
                        .replace('\n', "\\n")
                        .replace('"', "\\\"");
                    out.push_str(&format!("{k}=\"{esc}\""));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&crate::value::format_go_float(v));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse_rules;

    fn setup(yaml: &str) -> (GroupState, MemStorage) {
        let g = parse_rules("t.yml", yaml).unwrap().remove(0);
        (GroupState::new(g), MemStorage::new())
    }

    #[test]
    fn alert_goes_pending_then_firing_then_resolves_and_is_resent() {
        let (mut g, st) = setup(
            "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 2m\n    labels: {severity: page}\n    annotations: {summary: '{{ $labels.job }} is down ({{ $value }})'}\n",
        );
        let up = Labels::new([("__name__", "up"), ("job", "api")]);
        let e = Engine::default();
        let s = EvalSettings::default();
        let min = 60_000;
        for t in 0..=10 {
            st.append(&up, t * min, if t < 6 { 0.0 } else { 1.0 });
        }
        assert!(
            g.eval(&e, &st, &s, 0).is_empty(),
            "pending alerts are not sent"
        );
        assert_eq!(
            g.rules[0].alerts.values().next().unwrap().state,
            AlertState::Pending
        );
        assert!(g.eval(&e, &st, &s, min).is_empty());
        let sent = g.eval(&e, &st, &s, 2 * min);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].labels["alertname"], "Down");
        assert_eq!(sent[0].labels["severity"], "page");
        assert_eq!(sent[0].annotations["summary"], "api is down (0)");
        assert_eq!(sent[0].starts_at, 2 * min);
        assert_eq!(sent[0].ends_at, 2 * min + 4 * min);
        let alerts = g.rules[0]
            .last_output
            .iter()
            .find(|(l, _)| l.name() == Some("ALERTS"))
            .unwrap();
        assert_eq!(alerts.0.get("alertstate"), Some("firing"));
        // Within the resend delay nothing is re-sent.
        assert!(g.eval(&e, &st, &s, 2 * min + 30_000).is_empty());
        assert_eq!(g.eval(&e, &st, &s, 4 * min).len(), 1);
        // Resolves at 6m: sent with endsAt = resolution time, ALERTS disappears.
        let sent = g.eval(&e, &st, &s, 6 * min);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].ends_at, 6 * min);
        assert!(g.rules[0].last_output.is_empty());
        // Re-sent while retained, dropped after 15 minutes.
        assert_eq!(g.eval(&e, &st, &s, 8 * min).len(), 1);
        assert_eq!(g.eval(&e, &st, &s, 21 * min).len(), 1);
        assert!(g.eval(&e, &st, &s, 21 * min + 1).is_empty());
        g.eval(&e, &st, &s, 30 * min);
        assert!(g.rules[0].alerts.is_empty());
    }

    #[test]
    fn keep_firing_for_holds_the_alert() {
        let (mut g, st) = setup("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    keep_firing_for: 3m\n");
        let m = Labels::new([("__name__", "m")]);
        st.append(&m, 0, 1.0);
        st.append(&m, 60_000, 0.0);
        let e = Engine::default();
        let s = EvalSettings::default();
        g.eval(&e, &st, &s, 0);
        assert_eq!(g.firing("A").len(), 1);
        g.eval(&e, &st, &s, 60_000);
        g.eval(&e, &st, &s, 180_000);
        assert_eq!(g.firing("A").len(), 1, "kept firing within keep_firing_for");
        g.eval(&e, &st, &s, 240_000);
        assert!(g.firing("A").is_empty());
    }

    #[test]
    fn recording_rule_writes_series_and_marks_vanished_ones_stale() {
        let (mut g, st) = setup("groups:\n- name: g\n  rules:\n  - record: job:m:sum\n    expr: sum by (job) (m)\n    labels: {team: x}\n");
        let a = Labels::new([("__name__", "m"), ("job", "a")]);
        st.append(&a, 0, 2.0);
        let e = Engine::default();
        let s = EvalSettings::default();
        g.eval(&e, &st, &s, 0);
        let mut text = String::new();
        render_exposition(std::slice::from_ref(&g), &|_| false, &mut text);
        assert_eq!(
            text,
            "# TYPE job:m:sum gauge\njob:m:sum{job=\"a\",team=\"x\"} 2\n"
        );
        st.mark_stale(&a, 1000);
        g.eval(&e, &st, &s, 60_000);
        let q = crate::eval::parse("job:m:sum").unwrap();
        let r = e.instant(&st, "job:m:sum", &q, 60_000).unwrap();
        assert_eq!(r.value, Value::Vector(Vec::new()));
    }
}
