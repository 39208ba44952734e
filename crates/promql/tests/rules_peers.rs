//! Rule files and rule unit tests checked against Debian's real `promtool` (skipped with a
//! message when it is not installed).

use std::path::{Path, PathBuf};
use std::process::Command;

use promql_engine::rules::file::check_rules;
use promql_engine::rules::unittest::test_rules;

const PROMTOOL: &str = "/usr/bin/promtool";

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules-corpus");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    v
}

fn ours(p: &Path) -> (i32, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = check_rules(&[p], &mut out, &mut err);
    (
        code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        ),
    )
}

#[test]
fn corpus_is_large_enough_and_named_by_outcome() {
    let files = corpus();
    assert!(files.len() >= 30, "only {} corpus files", files.len());
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (code, text) = ours(&f);
        let want = if name.starts_with("valid-") { 0 } else { 1 };
        assert_eq!(code, want, "{name}: {text}");
        if want == 1 {
            assert!(
                text.contains(&*f.display().to_string()),
                "error must name the file: {text}"
            );
        }
    }
}

#[test]
fn check_rules_agrees_with_promtool() {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("SKIP check_rules_agrees_with_promtool: {PROMTOOL} is not installed");
        return;
    }
    for f in corpus() {
        let st = Command::new(PROMTOOL)
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .unwrap();
        let theirs = st.status.code().unwrap();
        let (code, text) = ours(&f);
        assert_eq!(
            code,
            theirs,
            "{}: promtool said {}{}\nwe said {text}",
            f.display(),
            String::from_utf8_lossy(&st.stdout),
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn broken_rule_error_names_group_rule_and_line() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules-corpus/broken-expr-syntax.yml");
    let (_, text) = ours(&f);
    assert!(text.contains(": 4:"), "line of the rule: {text}");
    assert!(
        text.contains("group \"bad\", rule 1, \"X\": could not parse expression"),
        "{text}"
    );
}

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules-unittest")
}

#[test]
fn rule_unit_tests_pass_here_and_under_promtool() {
    let f = unit_dir().join("flink_test.yml");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = test_rules(&[&f], &mut out, &mut err);
    assert_eq!(
        code,
        0,
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    assert!(String::from_utf8_lossy(&out).contains("SUCCESS"));
    if !Path::new(PROMTOOL).exists() {
        eprintln!("SKIP promtool half of rule_unit_tests_pass_here_and_under_promtool: {PROMTOOL} is not installed");
        return;
    }
    let st = Command::new(PROMTOOL)
        .args(["test", "rules"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn failing_unit_test_fails_here_and_under_promtool() {
    let dir = tempfile_dir();
    std::fs::copy(unit_dir().join("rules.yml"), dir.join("rules.yml")).unwrap();
    std::fs::copy(
        unit_dir().join("failing_test.yml.txt"),
        dir.join("failing_test.yml"),
    )
    .unwrap();
    let f = dir.join("failing_test.yml");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = test_rules(&[&f], &mut out, &mut err);
    assert_eq!(code, 1);
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("alertname: TaskManagerDown, time: 5m"),
        "{err}"
    );
    if Path::new(PROMTOOL).exists() {
        let st = Command::new(PROMTOOL)
            .args(["test", "rules"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(1));
    }
}

fn tempfile_dir() -> PathBuf {
    common::testkit::tempfile_dir()
}
