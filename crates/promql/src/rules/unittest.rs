//! promtool's rule unit-test format (`promtool test rules`): input series in expanding
//! notation, `alert_rule_test` and `promql_expr_test`, with promtool's exit codes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::file::{expand_globs, load_files, parse_prom_duration};
use super::manager::{EvalSettings, GroupState};
use crate::eval::Engine;
use crate::labels::Labels;
use crate::storage::{stale_nan, MemStorage};
use crate::value::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

fn dur(s: &str, what: &str) -> Result<i64, String> {
    parse_prom_duration(s)
        .ok_or_else(|| format!("invalid {what} {s:?}: not a valid duration string"))
}

fn parse_labels(s: &str) -> Result<Labels, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Labels::default());
    }
    let e = crate::eval::parse(s).map_err(|e| format!("invalid series {s:?}: {e}"))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = e else {
        return Err(format!("invalid series {s:?}: not a series selector"));
    };
    let mut l = Labels::default();
    if let Some(n) = &vs.name {
        l.set("__name__", n);
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!(
                "invalid series {s:?}: only `=` matchers are allowed"
            ));
        }
        l.set(&m.name, &m.value);
    }
    Ok(l)
}

fn fmt_alerts(v: &[(Labels, Labels)]) -> String {
    let items: Vec<String> = v
        .iter()
        .enumerate()
        .map(|(i, (l, a))| format!("{i}:\n            Labels:{l}\n            Annotations:{a}"))
        .collect();
    format!("[\n          {}\n        ]", items.join("\n          "))
}

/// Runs one promtool unit-test file; returns the failure messages (empty: passed).
pub fn run_test_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tf: TestFile =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let patterns: Vec<String> = tf
        .rule_files
        .iter()
        .map(|f| {
            if Path::new(f).is_absolute() {
                f.clone()
            } else {
                base.join(f).display().to_string()
            }
        })
        .collect();
    // In the order of `rule_files` (each pattern's matches sorted), as promtool loads them:
    // groups that share a place in `group_eval_order` run in this order.
    let mut files: Vec<PathBuf> = Vec::new();
    for p in &patterns {
        for f in expand_globs(std::slice::from_ref(p))? {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let groups = load_files(&files).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let eval_interval = match &tf.evaluation_interval {
        Some(s) => dur(s, "evaluation_interval")?,
        None => 60_000,
    };
    for (i, name) in tf.group_eval_order.iter().enumerate() {
        if tf.group_eval_order[..i].contains(name) {
            return Err(format!(
                "{}: group name repeated in evaluation order: {name}",
                path.display()
            ));
        }
    }
    let mut failures = Vec::new();
    for tg in &tf.tests {
        failures.extend(run_group(tg, &groups, &tf.group_eval_order, eval_interval)?);
    }
    Ok(failures)
}

/// The order in which promtool evaluates the groups at each step: by the position of the
/// group's name in `group_eval_order`, where a group that is not listed counts as position
/// 0, i.e. it runs together with the first listed group, before the second (promtool looks
/// the name up in a map whose missing keys read as 0). Groups of the same position run in
/// an order promtool leaves undefined (Go map iteration, which varies from run to run);
/// here they keep the order of `rule_files` (and of the groups in each file), which is
/// what promtool does most often.
fn eval_order<'a>(
    groups: &'a [super::file::RuleGroup],
    order: &[String],
) -> Vec<&'a super::file::RuleGroup> {
    let rank = |g: &super::file::RuleGroup| order.iter().position(|n| *n == g.name).unwrap_or(0);
    let mut v: Vec<&super::file::RuleGroup> = groups.iter().collect();
    v.sort_by_key(|g| rank(g));
    v
}

fn run_group(
    tg: &TestGroup,
    groups: &[super::file::RuleGroup],
    order: &[String],
    eval_interval: i64,
) -> Result<Vec<String>, String> {
    let interval = match &tg.interval {
        Some(s) => dur(s, "interval")?,
        None => eval_interval,
    };
    let st = MemStorage::new();
    for s in &tg.input_series {
        let l = parse_labels(&s.series)?;
        let vals = crate::notation::parse_series_values(&s.values)
            .map_err(|e| format!("series {:?}: {e}", s.series))?;
        for (i, v) in vals.into_iter().enumerate() {
            let t = i as i64 * interval;
            match v {
                Some(Some(f)) => st.append(&l, t, f),
                Some(None) => st.append(&l, t, stale_nan()),
                None => {}
            }
        }
    }
    let mut ordered: Vec<GroupState> = eval_order(groups, order)
        .into_iter()
        .map(|g| GroupState::new(g.clone()))
        .collect();
    let settings = EvalSettings {
        interval_ms: eval_interval,
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
        ..EvalSettings::default()
    };
    let engine = Engine::default();
    let mut alert_tests: Vec<(i64, &AlertTest)> = Vec::new();
    for at in &tg.alert_rule_test {
        alert_tests.push((dur(&at.eval_time, "eval_time")?, at));
    }
    alert_tests.sort_by_key(|(t, _)| *t);
    let mut expr_tests: Vec<(i64, &ExprTest)> = Vec::new();
    for et in &tg.promql_expr_test {
        expr_tests.push((dur(&et.eval_time, "eval_time")?, et));
    }
    let maxt = alert_tests
        .iter()
        .map(|(t, _)| *t)
        .chain(expr_tests.iter().map(|(t, _)| *t))
        .max()
        .unwrap_or(0);
    let mut failures = Vec::new();
    let prefix = if tg.name.is_empty() {
        String::new()
    } else {
        format!("name: {},\n", tg.name)
    };
    let mut curr = 0;
    let mut ts = 0;
    while ts <= maxt {
        for g in ordered.iter_mut() {
            g.eval(&engine, &st, &settings, ts);
        }
        while curr < alert_tests.len()
            && ts <= alert_tests[curr].0
            && alert_tests[curr].0 < ts + eval_interval
        {
            let (t, at) = alert_tests[curr];
            let mut got: Vec<(Labels, Labels)> = ordered
                .iter()
                .flat_map(|g| g.firing(&at.alertname))
                .map(|a| (a.labels.clone(), Labels::new(a.annotations.clone())))
                .collect();
            let mut exp: Vec<(Labels, Labels)> = at
                .exp_alerts
                .iter()
                .map(|e| {
                    let mut l = Labels::new(e.exp_labels.clone());
                    l.set("alertname", &at.alertname);
                    (l, Labels::new(e.exp_annotations.clone()))
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                failures.push(format!(
                    "{prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    at.alertname,
                    fmt_dur(t),
                    fmt_alerts(&exp),
                    fmt_alerts(&got)
                ));
            }
            curr += 1;
        }
        ts += eval_interval;
    }
    for (t, et) in expr_tests {
        let got =
            match crate::eval::parse(&et.expr).and_then(|e| engine.instant(&st, &et.expr, &e, t)) {
                Ok(r) => match r.value {
                    Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.f)).collect::<Vec<_>>(),
                    Value::Scalar(f) => vec![(Labels::default(), f)],
                    other => {
                        failures.push(format!(
                            "{prefix}    expr: {:?}, time: {}, err: unexpected {} result",
                            et.expr,
                            fmt_dur(t),
                            other.type_name()
                        ));
                        continue;
                    }
                },
                Err(e) => {
                    failures.push(format!(
                        "{prefix}    expr: {:?}, time: {}, err: {e}",
                        et.expr,
                        fmt_dur(t)
                    ));
                    continue;
                }
            };
        let mut exp = Vec::new();
        for s in &et.exp_samples {
            exp.push((parse_labels(&s.labels)?, s.value));
        }
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && (g.1 == e.1 || (g.1.is_nan() && e.1.is_nan())));
        if !same {
            let f = |v: &[(Labels, f64)]| {
                v.iter()
                    .map(|(l, x)| format!("{l} {}", crate::value::format_go_float(*x)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            failures.push(format!(
                "{prefix}    expr: {:?}, time: {},\n        exp: {:?}\n        got: {:?}",
                et.expr,
                fmt_dur(t),
                f(&exp),
                f(&got)
            ));
        }
    }
    Ok(failures)
}

fn fmt_dur(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (u, m) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= m {
            out.push_str(&format!("{}{u}", rest / m));
            rest %= m;
        }
    }
    out
}

/// `promtool test rules FILE...`: prints per file and returns the exit code (0 all
/// passed, 1 otherwise).
pub fn test_rules<P: AsRef<Path>>(paths: &[P], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut failed = false;
    for p in paths {
        let p = p.as_ref();
        let _ = writeln!(out, "Unit Testing:  {}", p.display());
        match run_test_file(p) {
            Ok(f) if f.is_empty() => {
                let _ = writeln!(out, "  SUCCESS");
            }
            Ok(f) => {
                failed = true;
                let _ = writeln!(err, "  FAILED:");
                for m in f {
                    let _ = writeln!(err, "{m}");
                }
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(err, "  FAILED:");
                let _ = writeln!(err, "    {e}");
            }
        }
        let _ = writeln!(out);
    }
    i32::from(failed)
}
