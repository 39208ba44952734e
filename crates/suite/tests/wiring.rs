//! `flink-suite` wires its components with nothing but its embedded defaults (and a short
//! rule interval from `suite.yml`), no Flink needed: a Flink-shaped push raises the bundled
//! restart alert, which reaches DingTalk (the strict stand-in, signed, via `DINGTALK_*`) or,
//! without a robot token, the visible dry-run sink; the start-up summary names what is
//! missing; artifacts get absolute URIs under the relative default data dir; one SIGHUP
//! logs one named reload per component; a port in use is reported once.

mod support;

use std::{process::Command, time::Duration};

use support::{eventually, upload, DingTalk, Suite};

const SUITE_YML: &str =
    "flink-suite:\n  rule_evaluation_interval: 1s\n  self_metrics_interval: 1s\n\
job-manager:\n  controller: {poll_interval: 1s}\n";

/// What Flink's PushGateway reporter pushes for a job that has restarted twice, under the
/// grouping key job-manager configures.
fn push_restarting_job(s: &Suite, deployment: &str) {
    let body = "# TYPE flink_jobmanager_job_numRestarts gauge\n\
                flink_jobmanager_job_numRestarts{job_id=\"j-1\",host=\"127_0_0_1\",job_name=\"probe\"} 2\n";
    let (status, text) = common::testkit::http(
        s.ports.metrics_gateway,
        "PUT",
        &format!(
            "/metrics/job/flink-{deployment}/namespace/default/deploymentId/{deployment}/jobId/j-1"
        ),
        body,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
}

#[test]
fn with_defaults_alerts_reach_the_dry_run_and_the_summary_names_what_is_missing() {
    let cwd = common::testkit::tempfile_dir();
    std::fs::write(cwd.join("suite.yml"), SUITE_YML).unwrap();
    let mut s = Suite::start(&cwd, &["--config.file", "suite.yml"], &[]);
    let logs = s.logs();
    for expected in [
        "MISSING: FLINK_HOME is not set",
        "MISSING: no DingTalk robot token",
        "dry-run/messages.jsonl",
        "WIRED: Flink's PushGateway reporter → metrics-gateway",
        "WIRED: alerts → dingtalk-alert",
        "FlinkJobRestarting",
    ] {
        assert!(
            logs.contains(expected),
            "summary says {expected:?}:\n{logs}"
        );
    }
    let data = cwd.join("data");
    assert!(
        logs.contains(
            &data
                .join("job-manager/bootstrap-token")
                .display()
                .to_string()
        ),
        "the summary says where the token is (absolute):\n{logs}"
    );

    // The suite section reached job-manager, with the gateway wired in.
    let (_, config) = common::testkit::http(s.ports.job_manager, "GET", "/-/config", "").unwrap();
    assert!(config.contains("poll_interval: 1s"), "{config}");
    assert!(
        config.contains(&format!("url: http://{}", s.ports.metrics_gateway)),
        "{config}"
    );

    // Artifacts get absolute URIs although the data dir is the relative default.
    let token = s.token();
    let (status, up) = upload(
        s.ports.job_manager,
        &token,
        "probe.jar",
        b"PK\x03\x04 not a real jar",
    );
    assert_eq!(status, 201, "{up}");
    let uri = up["data"]["uri"].as_str().unwrap().to_string();
    let path = uri.strip_prefix("file://").expect("file URI");
    assert!(path.starts_with('/') && !uri.contains("/./"), "{uri}");
    assert!(
        std::path::Path::new(path).is_file(),
        "{uri} names the stored file"
    );

    // A restarting Flink job → the bundled rule → dingtalk-alert's dry run: logged, written
    // under its data dir, counted.
    push_restarting_job(&s, "d-dry");
    let file = data.join("dingtalk-alert/dry-run/messages.jsonl");
    let line = eventually("a dry-run message", Duration::from_secs(20), || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("FlinkJobRestarting") && t.contains("d-dry"))
    });
    let msg: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(msg["target"], "default");
    assert!(
        s.logs().contains("Dry run: no DingTalk robot token"),
        "logged"
    );
    let counted = common::testkit::http(s.ports.dingtalk_alert, "GET", "/metrics", "")
        .unwrap()
        .1;
    assert!(
        common::testkit::metric(
            &counted,
            "dingtalk_alert_dry_run_messages_total{target=\"default\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{counted}"
    );

    // job-manager's own metrics reach the gateway, for JobManagerDeploymentFailed.
    eventually(
        "job-manager's metrics at the gateway",
        Duration::from_secs(10),
        || {
            support::series_with(
                &s.gateway("/metrics"),
                &[
                    "job_manager_deployments_failed_total",
                    "job=\"job-manager\"",
                ],
            )
        },
    );

    // One SIGHUP: one named "Configuration reloaded." per component.
    s.signal("HUP");
    let reloaded = eventually("four reloads", Duration::from_secs(10), || {
        let logs = s.logs();
        let lines: Vec<String> = logs
            .lines()
            .filter(|l| l.contains("Configuration reloaded."))
            .map(str::to_string)
            .collect();
        (lines.len() >= 4).then_some(lines)
    });
    std::thread::sleep(Duration::from_millis(300));
    let reloaded_again: Vec<String> = s
        .logs()
        .lines()
        .filter(|l| l.contains("Configuration reloaded."))
        .map(str::to_string)
        .collect();
    assert_eq!(reloaded_again.len(), 4, "{reloaded_again:#?}");
    for name in [
        "job-manager",
        "metrics-gateway",
        "dingtalk-alert",
        "log-shipper",
    ] {
        assert_eq!(
            reloaded
                .iter()
                .filter(|l| l.contains(&format!("service={name}")))
                .count(),
            1,
            "{name}: {reloaded:#?}"
        );
    }

    // A suite.yml broken since: the reload is refused by name, nothing is reloaded.
    std::fs::write(cwd.join("suite.yml"), "job-manager:\n  controler: {}\n").unwrap();
    s.signal("HUP");
    let refused = eventually("the refused reload", Duration::from_secs(10), || {
        s.logs()
            .lines()
            .find(|l| l.contains("Configuration reload failed") && l.contains("flink-suite"))
            .map(str::to_string)
    });
    assert!(refused.contains("controler"), "{refused}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.logs().matches("Configuration reloaded.").count(),
        4,
        "no component reloaded"
    );

    // A second suite on the first one's job-manager port: the OS error once, exit 1.
    let other = support::Ports::free();
    let out = Command::new(env!("CARGO_BIN_EXE_flink-suite"))
        .current_dir(&cwd)
        .args(["--data-dir", "data2"])
        .args([
            "--job-manager.listen-address",
            &s.ports.job_manager.to_string(),
        ])
        .args([
            "--metrics-gateway.listen-address",
            &other.metrics_gateway.to_string(),
        ])
        .args([
            "--dingtalk-alert.listen-address",
            &other.dingtalk_alert.to_string(),
        ])
        .args([
            "--log-shipper.listen-address",
            &other.log_shipper.to_string(),
        ])
        .env_remove("FLINK_HOME")
        .env_remove("JOB_MANAGER_BOOTSTRAP_TOKEN")
        .output()
        .expect("second suite");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(err.contains(&s.ports.job_manager.to_string()), "{err}");

    let status = s
        .stop(Duration::from_secs(15))
        .expect("exits within the grace period");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(cwd);
}

#[test]
fn with_dingtalk_env_alerts_arrive_signed_at_that_url() {
    let robot = DingTalk::start("robot-token-1", "SECtest-secret-1");
    let cwd = common::testkit::tempfile_dir();
    std::fs::write(cwd.join("suite.yml"), SUITE_YML).unwrap();
    let mut s = Suite::start(
        &cwd,
        &["--config.file", "suite.yml"],
        &[
            ("DINGTALK_URL", robot.base_url()),
            ("DINGTALK_ACCESS_TOKEN", "robot-token-1".into()),
            ("DINGTALK_SECRET", "SECtest-secret-1".into()),
        ],
    );
    assert!(
        s.logs().contains("WIRED: dingtalk-alert → DingTalk robot"),
        "{}",
        s.logs()
    );
    push_restarting_job(&s, "d-signed");
    let got = eventually(
        "the alert at the DingTalk stand-in",
        Duration::from_secs(20),
        || {
            robot
                .received()
                .into_iter()
                .find(|r| r.body.to_string().contains("d-signed"))
        },
    );
    assert!(got.accepted, "signed as DingTalk checks it: {}", got.reason);
    assert!(
        got.body.to_string().contains("FlinkJobRestarting"),
        "{}",
        got.body
    );
    assert!(
        robot.received().iter().all(|r| r.accepted),
        "{:?}",
        robot.received()
    );
    let logs = s.logs();
    assert!(!logs.contains("robot-token-1") && !logs.contains("SECtest-secret-1"));
    let status = s.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(cwd);
}
