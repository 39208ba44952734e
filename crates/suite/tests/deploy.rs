//! The shipped deployment files stay true to the binaries: every container's args parse
//! with the component's own flag parser, ports and probes match the shared runtime, labels
//! use the shared vocabulary, and the Prometheus / Alertmanager files pass the real
//! `promtool` and `amtool`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use clap::Parser;
use serde_yaml::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn manifests() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(deploy_dir().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !v.is_null() {
                out.push((path.clone(), v));
            }
        }
    }
    out
}

use serde::Deserialize;

fn parse_args(component: &str, args: &[String]) -> Result<(), String> {
    let mut argv = vec![component.to_string()];
    argv.extend(args.iter().cloned());
    let r = match component {
        "metrics-gateway" => metrics_gateway::Args::try_parse_from(&argv).map(|_| ()),
        "dingtalk-alert" => dingtalk_alert::Args::try_parse_from(&argv).map(|_| ()),
        "log-shipper" => log_shipper::Args::try_parse_from(&argv).map(|_| ()),
        "job-manager" => job_manager::Args::try_parse_from(&argv).map(|_| ()),
        other => panic!("unknown component {other}"),
    };
    r.map_err(|e| e.to_string())
}

fn default_port(component: &str) -> u16 {
    let info = match component {
        "metrics-gateway" => metrics_gateway::INFO,
        "dingtalk-alert" => dingtalk_alert::INFO,
        "log-shipper" => log_shipper::INFO,
        "job-manager" => job_manager::INFO,
        other => panic!("unknown component {other}"),
    };
    info.default_listen_addr().port()
}

#[test]
fn kubernetes_manifests_match_the_binaries_and_the_label_vocabulary() {
    let docs = manifests();
    assert!(docs.len() >= 10, "manifests found: {}", docs.len());
    let mut workloads = 0;
    for (path, doc) in &docs {
        let where_ = format!(
            "{} {}/{}",
            path.display(),
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert!(doc["apiVersion"].is_string(), "{where_}: apiVersion");
        assert_eq!(
            doc["metadata"]["labels"][common::labels::PART_OF].as_str(),
            Some(common::labels::PART_OF_VALUE),
            "{where_}: part-of label"
        );
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "Namespace" {
            assert_eq!(
                doc["metadata"]["namespace"].as_str(),
                Some("flink-suite"),
                "{where_}"
            );
        }
        if kind == "Deployment" || kind == "DaemonSet" {
            workloads += 1;
            let c = &doc["spec"]["template"]["spec"]["containers"][0];
            let name = c["name"].as_str().unwrap();
            let args: Vec<String> = c["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            parse_args(name, &args).unwrap_or_else(|e| panic!("{where_}: args rejected: {e}"));
            let port = default_port(name);
            assert!(
                args.contains(&format!("--web.listen-address=0.0.0.0:{port}")),
                "{where_}: listens on the default port {port}"
            );
            assert_eq!(
                c["ports"][0]["containerPort"].as_u64(),
                Some(port.into()),
                "{where_}"
            );
            assert_eq!(
                c["livenessProbe"]["httpGet"]["path"].as_str(),
                Some("/-/healthy")
            );
            assert_eq!(
                c["readinessProbe"]["httpGet"]["path"].as_str(),
                Some("/-/ready")
            );
        }
    }
    assert_eq!(workloads, 4, "one workload per component");
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

#[test]
fn prometheus_and_alertmanager_files_pass_the_real_checkers() {
    let Some(promtool) = tool("promtool") else {
        eprintln!("SKIP: promtool is not installed (Debian package prometheus)");
        return;
    };
    let d = deploy_dir();
    let out = Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg(d.join("prometheus/prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match tool("amtool") {
        None => eprintln!("SKIP amtool part: amtool is not installed (prometheus-alertmanager)"),
        Some(amtool) => {
            let out = Command::new(amtool)
                .arg("check-config")
                .arg(d.join("alertmanager/alertmanager.yml"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    for file in ["flink-jobs.json", "flink-suite.json"] {
        let path = deploy_dir().join("grafana").join(file);
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let panels = dash["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{file}");
        for p in panels {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let concrete = expr
                    .replace("$namespace", "default")
                    .replace("$deploymentId", "x");
                promql_parser::parser::parse(&concrete)
                    .unwrap_or_else(|e| panic!("{file} panel {:?}: {expr}: {e}", p["title"]));
            }
        }
    }
}

#[test]
fn shipped_alert_rules_pass_our_checker_and_their_unit_tests_under_both_engines() {
    let rules = deploy_dir().join("prometheus/rules");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code =
        promql_engine::rules::file::check_rules(&[rules.join("flink.yml")], &mut out, &mut err);
    assert_eq!(
        code,
        0,
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    assert!(String::from_utf8_lossy(&out).contains("SUCCESS: 6 rules found"));

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = promql_engine::rules::unittest::test_rules(
        &[deploy_dir().join("prometheus/tests/flink.test.yml")],
        &mut out,
        &mut err,
    );
    assert_eq!(
        code,
        0,
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );

    match tool("promtool") {
        None => {
            eprintln!("SKIP promtool part: promtool is not installed (Debian package prometheus)")
        }
        Some(promtool) => {
            let out = Command::new(promtool)
                .args(["test", "rules"])
                .arg(deploy_dir().join("prometheus/tests/flink.test.yml"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
