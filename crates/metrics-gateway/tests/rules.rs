//! Rule evaluation in the running gateway: recording results and ALERTS on `/metrics`, a
//! real SIGHUP swapping rule files (a broken file keeps the old rules), and the
//! `promql-test` / `check-rules` / `test-rules` subcommands.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::testkit::{http, metric, tempfile_dir, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_metrics-gateway");

const RULES_V1: &str = r#"groups:
  - name: g
    rules:
      - record: job:m:double
        expr: m * 2
      - alert: MHigh
        expr: m > 1
        labels:
          severity: page
"#;

const RULES_V2: &str = r#"groups:
  - name: g
    rules:
      - record: job:m:triple
        expr: m * 3
"#;

fn wait_metric(p: &Proc, series: &str, want: Option<f64>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = p.get("/metrics").1;
        if metric(&body, series) == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became {want:?}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rules_evaluate_and_sighup_swaps_them_but_not_for_a_broken_file() {
    let dir = tempfile_dir();
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES_V1).unwrap();
    let glob = dir.join("*.yml").display().to_string();
    let p = Proc::start(
        BIN,
        &["--rule.file", &glob, "--rule.evaluation-interval", "1s"],
    );
    let (code, _) = http(p.addr, "PUT", "/metrics/job/a", "m 5\n").unwrap();
    assert_eq!(code, 200);
    wait_metric(&p, "job:m:double{job=\"a\"}", Some(10.0));
    wait_metric(
        &p,
        "ALERTS{alertname=\"MHigh\",alertstate=\"firing\",job=\"a\",severity=\"page\"}",
        Some(1.0),
    );

    std::fs::write(&rules, RULES_V2).unwrap();
    p.signal("HUP");
    wait_metric(&p, "job:m:triple{job=\"a\"}", Some(15.0));
    let body = wait_metric(&p, "job:m:double{job=\"a\"}", None);
    assert!(!body.contains("ALERTS{"), "the alert rule is gone:\n{body}");

    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: rate(m[5m]\n",
    )
    .unwrap();
    p.signal("HUP");
    wait_metric(
        &p,
        "metrics_gateway_config_last_reload_successful",
        Some(0.0),
    );
    // The old rules keep running on new data.
    let (code, _) = http(p.addr, "PUT", "/metrics/job/a", "m 7\n").unwrap();
    assert_eq!(code, 200);
    wait_metric(&p, "job:m:triple{job=\"a\"}", Some(21.0));

    // Deleting the group makes its series stale: the recording result disappears.
    let (code, _) = http(p.addr, "DELETE", "/metrics/job/a", "").unwrap();
    assert_eq!(code, 202);
    wait_metric(&p, "job:m:triple{job=\"a\"}", None);
}

#[test]
fn rule_files_from_the_config_file_are_evaluated_and_reloaded_with_it() {
    let dir = tempfile_dir();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/a.yml"), RULES_V1).unwrap();
    let cfg = dir.join("config.yml");
    // Relative to the config file's directory, like Prometheus's rule_files.
    std::fs::write(&cfg, "rule_files:\n  - rules/*.yml\n").unwrap();
    let cfg_arg = cfg.display().to_string();
    let p = Proc::start(
        BIN,
        &[
            "--config.file",
            &cfg_arg,
            "--rule.evaluation-interval",
            "1s",
        ],
    );
    let (code, _) = http(p.addr, "PUT", "/metrics/job/a", "m 5\n").unwrap();
    assert_eq!(code, 200);
    wait_metric(&p, "job:m:double{job=\"a\"}", Some(10.0));

    // A config naming a broken rule file is refused as a whole; the old rules keep running.
    std::fs::write(
        dir.join("broken.yml"),
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: rate(m[5m]\n",
    )
    .unwrap();
    std::fs::write(&cfg, "rule_files:\n  - rules/*.yml\n  - broken.yml\n").unwrap();
    p.signal("HUP");
    wait_metric(
        &p,
        "metrics_gateway_config_last_reload_successful",
        Some(0.0),
    );
    let (code, _) = http(p.addr, "PUT", "/metrics/job/a", "m 6\n").unwrap();
    assert_eq!(code, 200);
    wait_metric(&p, "job:m:double{job=\"a\"}", Some(12.0));

    // Pointing the config at other rules swaps them on reload.
    std::fs::write(dir.join("rules/a.yml"), RULES_V2).unwrap();
    std::fs::write(&cfg, "rule_files: [rules/*.yml]\n").unwrap();
    p.signal("HUP");
    wait_metric(&p, "job:m:triple{job=\"a\"}", Some(18.0));
}

#[test]
fn rules_added_by_a_reload_start_evaluating_when_none_were_configured_at_start() {
    let dir = tempfile_dir();
    std::fs::write(dir.join("alerts.yml"), RULES_V1).unwrap();
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, "push:\n  max_series_per_group: 0\n").unwrap();
    let cfg_arg = cfg.display().to_string();
    let p = Proc::start(
        BIN,
        &[
            "--config.file",
            &cfg_arg,
            "--rule.evaluation-interval",
            "1s",
        ],
    );
    let (code, _) = http(p.addr, "PUT", "/metrics/job/a", "m 5\n").unwrap();
    assert_eq!(code, 200);
    let body = p.get("/metrics").1;
    assert!(!body.contains("ALERTS"), "no rules yet:\n{body}");
    assert!(
        !body.contains("metrics_gateway_rule_storage_series"),
        "no evaluator yet:\n{body}"
    );

    std::fs::write(&cfg, "rule_files: [alerts.yml]\n").unwrap();
    p.signal("HUP");
    wait_metric(
        &p,
        "ALERTS{alertname=\"MHigh\",alertstate=\"firing\",job=\"a\",severity=\"page\"}",
        Some(1.0),
    );
    let body = wait_metric(&p, "job:m:double{job=\"a\"}", Some(10.0));
    assert_eq!(
        metric(&body, "metrics_gateway_config_last_reload_successful"),
        Some(1.0)
    );
    // The evaluator's statistics are registered metrics now, once each.
    assert_eq!(
        body.matches("# TYPE metrics_gateway_rule_storage_series gauge")
            .count(),
        1,
        "{body}"
    );
    assert!(
        body.contains("# TYPE metrics_gateway_notifications_sent_total counter"),
        "{body}"
    );
    // A second reload swaps the rules of the running evaluator.
    std::fs::write(dir.join("alerts.yml"), RULES_V2).unwrap();
    p.signal("HUP");
    wait_metric(&p, "job:m:triple{job=\"a\"}", Some(15.0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn malformed_external_labels_stop_start_up_naming_them() {
    for (args, names) in [
        (&["--rule.external-label=not a label"][..], "not a label"),
        (&["--rule.external-label=cluster"][..], "cluster"),
        (&["--rule.external-label=__meta=x"][..], "__meta"),
        (&["--rule.external-label=1st=x"][..], "1st"),
        (
            &["--rule.external-label=dc=a", "--rule.external-label=dc=b"][..],
            "dc",
        ),
    ] {
        let addr = format!("127.0.0.1:{}", common::testkit::free_port());
        let mut all = vec!["--web.listen-address", &addr];
        all.extend_from_slice(args);
        let (code, out) = run(&all);
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(out.contains(names), "{args:?}: {out}");
        assert!(out.contains("--rule.external-label"), "{args:?}: {out}");
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn promql_test_subcommand_reports_and_sets_exit_code() {
    let dir = tempfile_dir();
    let good = dir.join("good.test");
    std::fs::write(&good, "load 1m\n  m 1+1x5\n\neval instant at 2m m\n  m 3\n\neval instant at 2m limitk(1, m)\n  m 3\n").unwrap();
    let bad = dir.join("bad.test");
    std::fs::write(&bad, "load 1m\n  m 1+1x5\n\neval instant at 2m m\n  m 4\n").unwrap();
    let (code, out) = run(&["promql-test", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().last(),
        Some("1 passed, 0 failed, 1 skipped"),
        "{out}"
    );
    let (code, out) = run(&["promql-test", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.trim_end().lines().last(),
        Some("1 passed, 1 failed, 1 skipped"),
        "{out}"
    );
}

#[test]
fn check_rules_and_test_rules_subcommands_use_promtool_exit_codes() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../promql/tests/rules-corpus");
    let (code, out) = run(&[
        "check-rules",
        corpus.join("valid-basic.yml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: 2 rules found"), "{out}");
    let (code, out) = run(&[
        "check-rules",
        corpus.join("broken-expr-syntax.yml").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../promql/tests/rules-unittest/flink_test.yml");
    let (code, out) = run(&["test-rules", unit.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn invalid_rule_file_at_start_up_is_refused_with_file_and_line() {
    let dir = tempfile_dir();
    let f = dir.join("bad.yml");
    std::fs::write(
        &f,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: rate(m[5m]\n",
    )
    .unwrap();
    let port = common::testkit::free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let (code, out) = run(&[
        "--web.listen-address",
        &addr,
        "--rule.file",
        f.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(
            "bad.yml: 4:9: group \\\"g\\\", rule 1, \\\"x\\\": could not parse expression"
        ) || out.contains("bad.yml: 4:9: group \"g\", rule 1, \"x\": could not parse expression"),
        "{out}"
    );
}
