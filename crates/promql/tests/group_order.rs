//! A rule that reads a series recorded by another group: which evaluation of the recording
//! it sees. The unit-test runner follows promtool (groups by `group_eval_order`, an unlisted
//! group counting as the first position); the live evaluator follows Prometheus (each group
//! on its own slot within the interval). The promtool half of each unit-test case runs when
//! Debian's promtool is installed and is skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use promql_engine::labels::Labels;
use promql_engine::rules::file::parse_rules;
use promql_engine::rules::manager::EvalSettings;
use promql_engine::rules::notifier::{Notifier, NotifierConfig};
use promql_engine::rules::runtime::RuleEngine;
use promql_engine::rules::schedule;
use promql_engine::rules::unittest::test_rules;
use promql_engine::storage::MemStorage;

const PROMTOOL: &str = "/usr/bin/promtool";

/// `alerts` comes first in the file and reads `job:x:sum`, recorded by `records`; `other`
/// records something unrelated.
const RULES: &str = r#"groups:
- name: alerts
  rules:
  - alert: XHigh
    expr: job:x:sum > 5
    annotations:
      value: "{{ $value }}"
- name: records
  rules:
  - record: job:x:sum
    expr: sum(x)
- name: other
  rules:
  - record: job:x:count
    expr: count(x)
"#;

/// A unit-test file over [`RULES`]: at 10m `sum(x)` is 10 (9 one step earlier); the alert
/// is expected with `value`.
fn test_file(order: &str, value: &str) -> String {
    format!(
        r#"rule_files: [rules.yml]
evaluation_interval: 1m
group_eval_order: {order}
tests:
- interval: 1m
  input_series:
  - series: 'x{{i="a"}}'
    values: '0+1x20'
  - series: 'x{{i="b"}}'
    values: '0+0x20'
  alert_rule_test:
  - eval_time: 10m
    alertname: XHigh
    exp_alerts:
    - exp_annotations: {{value: "{value}"}}
"#
    )
}

fn write_case(name: &str, order: &str, value: &str) -> PathBuf {
    let dir = common::testkit::tempfile_dir();
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let f = dir.join(name);
    std::fs::write(&f, test_file(order, value)).unwrap();
    f
}

fn ours(f: &Path) -> (i32, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = test_rules(&[f], &mut out, &mut err);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    (code, text)
}

fn promtool(f: &Path, test: &str) -> Option<(i32, String)> {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("SKIP promtool half of {test}: {PROMTOOL} is not installed");
        return None;
    }
    let o = Command::new(PROMTOOL)
        .args(["test", "rules"])
        .arg(f)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Some((o.status.code().unwrap_or(-1), text))
}

/// Asserts that the case passes with `good` and fails with `bad`, here and under promtool.
fn assert_sees(order: &str, good: &str, bad: &str, test: &str) {
    for (value, want) in [(good, 0), (bad, 1)] {
        let f = write_case("order_test.yml", order, value);
        let (code, text) = ours(&f);
        assert_eq!(code, want, "order {order}, value {value}: {text}");
        if want == 1 {
            assert!(
                text.contains(&format!("value=\"{good}\"")),
                "the failure shows the value seen: {text}"
            );
        }
        // promtool evaluates these orders the same way on every run (no two groups share
        // a position), so one run of it decides.
        if let Some((code, text)) = promtool(&f, test) {
            assert_eq!(code, want, "promtool, order {order}, value {value}: {text}");
        }
    }
}

#[test]
fn unlisted_group_runs_with_the_first_listed_group_as_in_promtool() {
    // `records` is not listed: promtool gives it position 0, the same as `other`, so it runs
    // before `alerts` (position 1) and the alert sees this step's sum, 10. (Appending the
    // unlisted group after the listed ones gave 9, the previous step's.)
    assert_sees(
        "[other, alerts]",
        "10",
        "9",
        "unlisted_group_runs_with_the_first_listed_group_as_in_promtool",
    );
}

#[test]
fn listed_order_decides_between_this_step_and_the_previous_one() {
    assert_sees(
        "[records, alerts, other]",
        "10",
        "9",
        "listed_order_decides_between_this_step_and_the_previous_one",
    );
    assert_sees(
        "[alerts, records, other]",
        "9",
        "10",
        "listed_order_decides_between_this_step_and_the_previous_one",
    );
}

#[test]
fn a_group_named_twice_in_the_order_is_an_error() {
    let f = write_case("twice_test.yml", "[records, alerts, records]", "10");
    let (code, text) = ours(&f);
    assert_eq!(code, 1);
    assert!(
        text.contains("group name repeated in evaluation order: records"),
        "{text}"
    );
    if let Some((code, text)) = promtool(&f, "a_group_named_twice_in_the_order_is_an_error") {
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains("group name repeated in evaluation order: records"),
            "{text}"
        );
    }
}

/// Runs the live evaluator over `rules` for 10 minutes, polled every 500 ms like
/// `RuleEngine::run`, with `x` = the time in whole seconds; returns the value of the last
/// evaluation of the alert `XHigh`.
fn live_alert_value(rules: &str) -> f64 {
    let st = Arc::new(MemStorage::new());
    let eng = RuleEngine::new(
        st.clone(),
        EvalSettings::default(),
        Notifier::new(NotifierConfig::default()),
    );
    eng.set_groups(parse_rules("rules.yml", rules).unwrap());
    let x = Labels::new([("__name__", "x")]);
    for now in (0..=600_000i64).step_by(500) {
        if now % 1000 == 0 {
            st.append(&x, now, (now / 1000) as f64);
        }
        eng.tick(now);
    }
    let groups = eng.groups_snapshot();
    let alert = groups
        .iter()
        .flat_map(|g| g.firing("XHigh"))
        .next()
        .expect("XHigh fires");
    alert.value
}

fn live_rules(reader: &str, reader_first: bool) -> String {
    let reader = format!("- name: {reader}\n  rules:\n  - alert: XHigh\n    expr: job:x:sum > 5\n");
    let records = "- name: records\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n";
    if reader_first {
        format!("groups:\n{reader}{records}")
    } else {
        format!("groups:\n{records}{reader}")
    }
}

#[test]
fn live_groups_run_on_their_own_slots_whatever_the_file_order() {
    // Prometheus's offsets within the 1m interval for these groups of rules.yml.
    assert_eq!(
        schedule::group_offset_ms("rules.yml", "records", 60_000),
        43_028
    );
    assert_eq!(
        schedule::group_offset_ms("rules.yml", "late", 60_000),
        45_237
    );
    assert_eq!(
        schedule::group_offset_ms("rules.yml", "alerts", 60_000),
        41_188
    );
    // `late` runs 2.2 s after `records` in every minute: it sees the sum recorded in the same
    // minute (at 9:43.028, x = 583), even though it comes first in the file.
    for first in [true, false] {
        assert_eq!(live_alert_value(&live_rules("late", first)), 583.0);
    }
    // `alerts` runs 1.8 s before `records`: it sees the previous minute's sum (8:43.028,
    // x = 523), even when it comes last in the file.
    for first in [true, false] {
        assert_eq!(live_alert_value(&live_rules("alerts", first)), 523.0);
    }
}

#[test]
fn listed_name_shared_by_groups_of_two_files_runs_both() {
    // promtool keys groups by file and name: a listed name orders every group of that
    // name. (The second group of the name used to be dropped.)
    let dir = common::testkit::tempfile_dir();
    std::fs::write(
        dir.join("a.yml"),
        "groups:\n- name: g\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yml"),
        "groups:\n- name: g\n  rules:\n  - alert: XHigh\n    expr: job:x:sum > 5\n",
    )
    .unwrap();
    let f = dir.join("same_name_test.yml");
    std::fs::write(
        &f,
        r#"rule_files: [a.yml, b.yml]
group_eval_order: [g]
tests:
- interval: 1m
  input_series:
  - series: 'x'
    values: '0+1x20'
  alert_rule_test:
  - eval_time: 10m
    alertname: XHigh
    exp_alerts:
    - exp_labels: {}
"#,
    )
    .unwrap();
    let (code, text) = ours(&f);
    assert_eq!(code, 0, "{text}");
    if let Some((code, text)) = promtool(&f, "listed_name_shared_by_groups_of_two_files_runs_both")
    {
        assert_eq!(code, 0, "{text}");
    }
}

#[test]
fn without_group_eval_order_groups_run_in_the_order_of_rule_files() {
    // The deploy layout: the recording rule in recording_rules.yml, listed first, the alert
    // reading it in alerting_rules.yml, which sorts first by name. The files keep the order
    // of `rule_files`, so the alert sees this step's sum (10). (All files were sorted by
    // path, which put the alert first and gave 9.)
    let dir = common::testkit::tempfile_dir();
    std::fs::write(
        dir.join("recording_rules.yml"),
        "groups:\n- name: records\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("alerting_rules.yml"),
        "groups:\n- name: alerts\n  rules:\n  - alert: XHigh\n    expr: job:x:sum > 5\n    annotations:\n      value: \"{{ $value }}\"\n",
    )
    .unwrap();
    let f = dir.join("files_test.yml");
    let case = test_file("[]", "10").replace(
        "rule_files: [rules.yml]",
        "rule_files: [recording_rules.yml, alerting_rules.yml]",
    );
    std::fs::write(&f, case).unwrap();
    let (code, text) = ours(&f);
    assert_eq!(code, 0, "{text}");
    // promtool's order of these two groups varies from run to run (Go map iteration): it
    // must give our answer on some of 20 runs (it did on about five in six).
    let test = "without_group_eval_order_groups_run_in_the_order_of_rule_files";
    let mut agreed = 0;
    for _ in 0..20 {
        match promtool(&f, test) {
            None => return,
            Some((0, _)) => agreed += 1,
            Some(_) => {}
        }
    }
    eprintln!("promtool agreed on {agreed} of 20 runs");
    assert!(agreed > 0, "promtool never saw 10");
}
