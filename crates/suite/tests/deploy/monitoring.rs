//! The monitoring side of the deployment: rule files (named and mounted as the seed does
//! it), Prometheus and Alertmanager configs as their pods see them (promtool, amtool), their
//! args against the Debian binaries, Grafana's provisioning and dashboards.

use std::{path::PathBuf, process::Command};

use serde_yaml::Value;

use crate::{deploy_dir, objects::*, render, renders};

#[test]
fn rule_files_are_named_as_the_seed_names_them_and_load_where_they_are_mounted() {
    for (overlay, r) in renders() {
        let objs = &r.objects;
        let rules = find(objs, "ConfigMap", "flink-suite", "flink-rules").expect("flink-rules");
        let names = keys(rules);
        assert!(
            names.iter().any(|k| wildcard("alerting_rules-*.yaml", k)),
            "{overlay}: {names:?}"
        );
        assert!(
            names.iter().any(|k| wildcard("recording_rule*.yaml", k)),
            "{overlay}: {names:?}"
        );
        for k in &names {
            assert!(
                wildcard("alerting_rules-*.yaml", k) || wildcard("recording_rule*.yaml", k),
                "{overlay}: rule file {k} is not named alerting_rules-*.yaml / recording_rule*.yaml"
            );
        }
        // The gateway's --rule.file globs, laid out as its pod mounts them, load every rule
        // file through the gateway's own loader.
        let (o, spec, c) = workload(objs, "metrics-gateway");
        let root = common::testkit::tempfile_dir();
        materialize(objs, o.namespace(), spec, &c, &root);
        let globs: Vec<String> = flag(&strings(&c["args"]), "--rule.file")
            .iter()
            .map(|g| root.join(g.trim_start_matches('/')).display().to_string())
            .collect();
        let groups = metrics_gateway::rules::load_rule_files(&globs)
            .unwrap_or_else(|e| panic!("{overlay}: gateway rule files: {e}"));
        let rule_count: usize = groups.iter().map(|g| g.rules.len()).sum();
        assert_eq!(rule_count, 6, "{overlay}: rules loaded by the gateway");
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[test]
fn prometheus_config_as_mounted_passes_promtool() {
    let r = render("ack");
    let objs = &r.objects;
    let (o, spec, c) = workload(objs, "prometheus");
    let root = common::testkit::tempfile_dir();
    materialize(objs, o.namespace(), spec, &c, &root);
    let args = strings(&c["args"]);
    let config = root.join(flag(&args, "--config.file")[0].trim_start_matches('/'));
    let text = std::fs::read_to_string(&config).unwrap();
    let cfg: Value = serde_yaml::from_str(&text).unwrap();
    let gateway_job = seq(&cfg["scrape_configs"])
        .into_iter()
        .find(|j| {
            seq(&j["static_configs"])
                .iter()
                .any(|s| strings(&s["targets"]).contains(&"metrics-gateway:9091".to_string()))
        })
        .expect("a scrape job for metrics-gateway");
    assert_eq!(
        gateway_job["honor_labels"].as_bool(),
        Some(true),
        "the gateway is scraped with honor_labels"
    );
    assert!(
        seq(&cfg["scrape_configs"])
            .iter()
            .any(|j| !j["kubernetes_sd_configs"].is_null()),
        "Kubernetes discovery"
    );
    assert!(
        strings(
            &cfg["remote_write"]
                .as_sequence()
                .map(|s| s.iter().map(|r| r["url"].clone()).collect())
                .map(Value::Sequence)
                .unwrap_or(Value::Null)
        )
        .iter()
        .any(|u| u.starts_with("http://influxdb:8086/api/v1/prom/write")),
        "remote write to InfluxDB"
    );
    // Kubernetes discovery blocks use Prometheus's documented roles and fields.
    for job in seq(&cfg["scrape_configs"]) {
        for sd in seq(&job["kubernetes_sd_configs"]) {
            let roles = [
                "node",
                "service",
                "pod",
                "endpoints",
                "endpointslice",
                "ingress",
            ];
            assert!(
                roles.contains(&sd["role"].as_str().unwrap_or("")),
                "{:?}: role",
                job["job_name"]
            );
            for k in sd.as_mapping().unwrap().keys() {
                let allowed = [
                    "role",
                    "namespaces",
                    "selectors",
                    "api_server",
                    "kubeconfig_file",
                    "attach_metadata",
                ];
                assert!(
                    allowed.contains(&k.as_str().unwrap_or("")),
                    "{:?}: field {k:?}",
                    job["job_name"]
                );
            }
            for ns in strings(&sd["namespaces"]["names"]) {
                assert!(
                    find(objs, "Namespace", "", &ns).is_some(),
                    "discovery in undefined namespace {ns}"
                );
            }
            for sel in seq(&sd["selectors"]) {
                assert!(
                    roles.contains(&sel["role"].as_str().unwrap_or("")),
                    "selector role"
                );
            }
        }
    }
    // Prometheus's ServiceAccount may discover pods.
    let sa = spec["serviceAccountName"]
        .as_str()
        .expect("prometheus serviceAccountName");
    assert!(
        objs.iter()
            .filter(|b| b.kind() == "ClusterRoleBinding")
            .any(|b| {
                seq(&b.doc["subjects"]).iter().any(|s| s["name"] == sa)
                    && find(
                        objs,
                        "ClusterRole",
                        "",
                        b.doc["roleRef"]["name"].as_str().unwrap_or(""),
                    )
                    .is_some_and(|role| {
                        seq(&role.doc["rules"]).iter().any(|r| {
                            strings(&r["resources"]).contains(&"pods".to_string())
                                && strings(&r["verbs"]).contains(&"list".to_string())
                        })
                    })
            }),
        "prometheus may list pods"
    );
    // The relative rule_files globs find the files where the pod mounts them.
    let mut rule_files = Vec::new();
    for g in strings(&cfg["rule_files"]) {
        let pattern = config.parent().unwrap().join(&g);
        let dir = pattern.parent().unwrap();
        let file_pattern = pattern.file_name().unwrap().to_str().unwrap();
        let hits: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .collect::<Vec<PathBuf>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|p| wildcard(file_pattern, p.file_name().unwrap().to_str().unwrap()))
            .collect();
        assert!(
            !hits.is_empty(),
            "rule_files {g} matches nothing where the pod mounts the rules"
        );
        rule_files.extend(hits);
    }
    ours_ok(|out, err| promql_engine::rules::file::check_rules(&rule_files, out, err));
    with_promtool(|promtool| {
        let out = Command::new(&promtool)
            .args(["check", "config"])
            .arg(&config)
            .output()
            .unwrap();
        let mut text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() && text.contains("field kubernetes_sd_configs not found") {
            // Debian builds Prometheus without Kubernetes discovery (the upstream image
            // the manifests run has it): check everything else, each Kubernetes
            // discovery replaced by a static target; the discovery blocks themselves are
            // checked above against Prometheus's documented roles and fields.
            eprintln!("NOTE: this promtool has no Kubernetes discovery (Debian build); kubernetes_sd_configs replaced by static targets for `promtool check config`");
            let mut stripped = cfg.clone();
            for job in stripped["scrape_configs"].as_sequence_mut().unwrap() {
                if let Some(m) = job.as_mapping_mut() {
                    if m.remove("kubernetes_sd_configs").is_some() {
                        m.insert(
                            "static_configs".into(),
                            serde_yaml::from_str("[{targets: ['discovered:8080']}]").unwrap(),
                        );
                    }
                }
            }
            std::fs::write(&config, serde_yaml::to_string(&stripped).unwrap()).unwrap();
            text = run_ok(
                Command::new(&promtool)
                    .args(["check", "config"])
                    .arg(&config),
            );
        } else {
            assert!(out.status.success(), "promtool check config:\n{text}");
        }
        assert!(text.contains("SUCCESS"), "{text}");
        assert!(
            text.contains("rules found"),
            "promtool saw no rule file: {text}"
        );
        run_ok(
            Command::new(&promtool)
                .args(["check", "rules"])
                .args(&rule_files),
        );
    });
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn alertmanager_config_as_mounted_passes_amtool_and_routes_to_dingtalk_alert() {
    let r = render("ack");
    let objs = &r.objects;
    let (o, spec, c) = workload(objs, "alertmanager");
    let root = common::testkit::tempfile_dir();
    materialize(objs, o.namespace(), spec, &c, &root);
    let config = root.join(flag(&strings(&c["args"]), "--config.file")[0].trim_start_matches('/'));
    let cfg: Value = serde_yaml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    // Every webhook goes to a target dingtalk-alert defines: `default` comes from its
    // --dingtalk.access-token(-file) flag.
    let (_, _, dt) = workload(objs, "dingtalk-alert");
    let dt_args = strings(&dt["args"]);
    let has_default = !flag(&dt_args, "--dingtalk.access-token-file").is_empty()
        || !flag(&dt_args, "--dingtalk.access-token").is_empty();
    let mut webhooks = 0;
    for recv in seq(&cfg["receivers"]) {
        for wh in seq(&recv["webhook_configs"]) {
            let url = wh["url"].as_str().unwrap();
            let path = url
                .strip_prefix("http://dingtalk-alert:8060")
                .unwrap_or_else(|| panic!("{url}"));
            let target = path
                .strip_prefix("/dingtalk/")
                .and_then(|p| p.strip_suffix("/send"))
                .unwrap_or_else(|| panic!("{url}: not dingtalk-alert's /dingtalk/<target>/send"));
            assert!(
                target == "default" && has_default,
                "{url}: target {target} is not defined"
            );
            webhooks += 1;
        }
    }
    assert!(webhooks > 0, "no webhook to dingtalk-alert");
    // metrics-gateway alerts through Alertmanager in this overlay.
    let (_, _, gw) = workload(objs, "metrics-gateway");
    let gw_args = strings(&gw["args"]);
    assert_eq!(
        flag(&gw_args, "--alertmanager.url"),
        vec!["http://alertmanager:9093"]
    );
    assert!(
        flag(&gw_args, "--notifier.webhook-url").is_empty(),
        "alerts would arrive twice"
    );
    match tool("amtool") {
        None => eprintln!(
            "SKIP amtool part: amtool is not installed (Debian package prometheus-alertmanager)"
        ),
        Some(amtool) => {
            let text = run_ok(Command::new(amtool).arg("check-config").arg(&config));
            assert!(text.contains("SUCCESS"), "{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn minimal_overlay_alerts_dingtalk_alert_directly() {
    let r = render("minimal");
    let (_, _, gw) = workload(&r.objects, "metrics-gateway");
    let args = strings(&gw["args"]);
    assert!(
        flag(&args, "--alertmanager.url").is_empty(),
        "no Alertmanager in minimal"
    );
    assert_eq!(
        flag(&args, "--notifier.webhook-url"),
        vec!["http://dingtalk-alert:8060/dingtalk/default/send"]
    );
}

#[test]
fn grafana_provisioning_is_complete_and_every_dashboard_query_is_valid_promql() {
    let r = render("ack");
    let objs = &r.objects;
    let (o, spec, c) = workload(objs, "grafana");
    let root = common::testkit::tempfile_dir();
    materialize(objs, o.namespace(), spec, &c, &root);
    let prov = root.join("etc/grafana/provisioning");
    let ds: Value = serde_yaml::from_str(
        &std::fs::read_to_string(prov.join("datasources/datasources.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(ds["apiVersion"].as_u64(), Some(1));
    let sources = seq(&ds["datasources"]);
    for s in &sources {
        for k in ["name", "type", "url", "access", "uid"] {
            assert!(s[k].is_string(), "datasource {:?}: {k}", s["name"]);
        }
    }
    let by_url = |url: &str| {
        sources
            .iter()
            .find(|s| s["url"] == url)
            .unwrap_or_else(|| panic!("no datasource {url}"))
    };
    assert_eq!(by_url("http://metrics-gateway:9091")["type"], "prometheus");
    assert_eq!(by_url("http://prometheus:9090")["type"], "prometheus");
    assert_eq!(by_url("http://influxdb:8086")["type"], "influxdb");
    assert_eq!(
        sources
            .iter()
            .filter(|s| s["isDefault"].as_bool() == Some(true))
            .count(),
        1
    );

    let dp: Value = serde_yaml::from_str(
        &std::fs::read_to_string(prov.join("dashboards/dashboards.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(dp["apiVersion"].as_u64(), Some(1));
    let providers = seq(&dp["providers"]);
    assert!(!providers.is_empty());
    let mut dashboards = 0;
    for p in providers {
        assert_eq!(p["type"], "file");
        let path = p["options"]["path"].as_str().expect("provider path");
        let dir = root.join(path.trim_start_matches('/'));
        for e in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("provider path {path} is not mounted: {e}"))
        {
            let f = e.unwrap().path();
            let dash: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            dashboards += 1;
            check_dashboard(&f.display().to_string(), &dash);
        }
    }
    assert!(dashboards >= 2, "dashboards provisioned: {dashboards}");
    let _ = std::fs::remove_dir_all(&root);
}

fn check_dashboard(file: &str, dash: &serde_json::Value) {
    assert!(
        dash["uid"].is_string() && dash["title"].is_string(),
        "{file}: uid and title"
    );
    let panels = dash["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: panels"));
    assert!(!panels.is_empty(), "{file}");
    let concrete = |expr: &str| {
        expr.replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("${namespace}", "default")
            .replace("$namespace", "default")
            .replace("${deploymentId}", "x")
            .replace("$deploymentId", "x")
    };
    for p in panels {
        for t in p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: {:?} targets", p["title"]))
        {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {:?}: no expr", p["title"]));
            let e = concrete(expr);
            assert!(
                !e.contains('$'),
                "{file}: {:?}: unknown variable in {expr}",
                p["title"]
            );
            promql_parser::parser::parse(&e)
                .unwrap_or_else(|err| panic!("{file} panel {:?}: {expr}: {err}", p["title"]));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(<selector>, label) is Grafana's, not PromQL: check the selector.
            if let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
            {
                let (sel, _) = inner.rsplit_once(',').unwrap_or((inner, ""));
                promql_parser::parser::parse(&concrete(sel))
                    .unwrap_or_else(|e| panic!("{file}: variable query {q}: {e}"));
            }
        }
    }
}

#[test]
fn shipped_alert_rules_pass_our_checker_and_their_unit_tests_under_both_engines() {
    let rules = deploy_dir().join("prometheus/rules");
    let files = [
        rules.join("recording_rules-flink.yaml"),
        rules.join("alerting_rules-flink.yaml"),
    ];
    let text = ours_ok(|out, err| promql_engine::rules::file::check_rules(&files, out, err));
    assert!(text.contains("SUCCESS: 1 rules found"), "{text}");
    assert!(text.contains("SUCCESS: 5 rules found"), "{text}");

    let tests = deploy_dir().join("prometheus/tests/flink.test.yml");
    ours_ok(|out, err| promql_engine::rules::unittest::test_rules(&[&tests], out, err));

    with_promtool(|promtool| {
        run_ok(Command::new(&promtool).args(["test", "rules"]).arg(&tests));
        run_ok(
            Command::new(&promtool)
                .args(["check", "rules"])
                .args(&files),
        );
    });
}

#[test]
fn monitoring_containers_args_are_flags_their_binaries_know() {
    // Debian's builds (what CI installs) of the same programs the images run: with `--help`
    // last, kingpin rejects an unknown flag and otherwise prints help without starting.
    let r = render("ack");
    for (workload_name, binaries) in [
        ("prometheus", &["prometheus"][..]),
        (
            "alertmanager",
            &["prometheus-alertmanager", "alertmanager"][..],
        ),
    ] {
        let Some(bin) = binaries.iter().find_map(|b| tool(b)) else {
            eprintln!("SKIP {workload_name}: no {binaries:?} installed (Debian packages prometheus, prometheus-alertmanager)");
            continue;
        };
        let (_, _, c) = workload(&r.objects, workload_name);
        let args = strings(&c["args"]);
        assert!(!args.is_empty(), "{workload_name}: no args");
        run_ok(Command::new(&bin).args(&args).arg("--help"));
        // The same way of checking refuses a flag the program does not have.
        let out = Command::new(&bin)
            .args(["--no-such.flag=1", "--help"])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{}: accepts unknown flags",
            bin.display()
        );
    }
}

/// Runs one of our promtool-compatible checkers (`check_rules`, `test_rules`) with output
/// buffers; asserts it passed and returns what it printed.
fn ours_ok(run: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> i32) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&mut out, &mut err);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    assert_eq!(code, 0, "{text}");
    text
}

/// Runs `check` with Debian's promtool, or says that part is skipped when it is absent.
fn with_promtool(check: impl FnOnce(PathBuf)) {
    match tool("promtool") {
        None => {
            eprintln!("SKIP promtool part: promtool is not installed (Debian package prometheus)")
        }
        Some(promtool) => check(promtool),
    }
}
