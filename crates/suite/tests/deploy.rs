//! The shipped deployment (deploy/) stays true to the binaries and to itself.
//!
//! Every overlay under deploy/kubernetes/overlays is rendered by the small kustomize model in
//! `deploy/kustomize.rs` (and, when kubectl is installed, compared with `kubectl kustomize`).
//! Then: every object is valid and labelled; no reference dangles (ConfigMaps, Secrets and
//! their keys, PVCs, ServiceAccounts, RBAC roles, Ingress backends, Service selectors and
//! ports, `host:port` of in-cluster Services in args and config files); every container's
//! args of our images parse with the binary's own parser (`<crate>::Args`, the type each
//! `main.rs` calls `Args::parse()` on, so the same clap definition) and every path they name
//! exists in the mounted ConfigMap/Secret; the config files parse and validate with the
//! components' own loaders; ports and probes match; the Prometheus and Alertmanager
//! configs, laid out as their pods mount them, pass `promtool check config` and `amtool
//! check-config`; the rule files pass `promtool check rules`, our checker and their unit
//! tests under both engines; Grafana's provisioning is complete and every dashboard query
//! parses as PromQL; Prometheus's and Alertmanager's args name flags their (Debian) binaries
//! know; the Dockerfile builds every image the manifests run.

#[path = "deploy/kustomize.rs"]
mod kustomize;
#[path = "deploy/monitoring.rs"]
mod monitoring;
#[path = "deploy/objects.rs"]
mod objects;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use clap::Parser;
use kustomize::{pod_spec, Object, Render};
use objects::*;
use serde_yaml::Value;

const OVERLAYS: &[&str] = &["ack", "ha", "minimal"];

const COMPONENTS: &[&str] = &[
    "job-manager",
    "metrics-gateway",
    "dingtalk-alert",
    "log-shipper",
];

const MONITORING: &[&str] = &["prometheus", "alertmanager", "grafana", "influxdb"];

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
];

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    repo_dir().join("deploy")
}

fn render(overlay: &str) -> Render {
    let dir = deploy_dir().join("kubernetes/overlays").join(overlay);
    kustomize::build(&dir).unwrap_or_else(|e| panic!("overlay {overlay}: {e}"))
}

fn renders() -> Vec<(&'static str, Render)> {
    OVERLAYS.iter().map(|o| (*o, render(o))).collect()
}

/// Our component a container runs, from its image `…/flink-suite/<component>:<tag>`.
fn our_component(c: &Value) -> Option<&'static str> {
    let image = c["image"].as_str()?;
    let (name, _) = kustomize::split_image(image);
    let (path, last) = name.rsplit_once('/')?;
    if !path.ends_with("flink-suite") {
        return None;
    }
    COMPONENTS
        .iter()
        .chain(["flink-suite"].iter())
        .find(|c| **c == last)
        .copied()
}

fn parse_args(component: &str, args: &[String]) -> Result<(), String> {
    let mut argv = vec![component.to_string()];
    argv.extend(args.iter().cloned());
    let r = match component {
        "metrics-gateway" => metrics_gateway::Args::try_parse_from(&argv).map(|_| ()),
        "dingtalk-alert" => dingtalk_alert::Args::try_parse_from(&argv).map(|_| ()),
        "log-shipper" => log_shipper::Args::try_parse_from(&argv).map(|_| ()),
        "job-manager" => job_manager::Args::try_parse_from(&argv).map(|_| ()),
        "flink-suite" => suite::Args::try_parse_from(&argv).map(|_| ()),
        other => panic!("unknown component {other}"),
    };
    r.map_err(|e| e.to_string())
}

/// Validates a config file's text with the component's own loader.
fn validate_config(component: &str, text: &str, origin: &Path) -> Result<(), String> {
    use common::config::from_yaml_str;
    let r = match component {
        "metrics-gateway" => from_yaml_str::<metrics_gateway::Config>(text, origin).map(|_| ()),
        "dingtalk-alert" => from_yaml_str::<dingtalk_alert::Config>(text, origin).map(|_| ()),
        "log-shipper" => from_yaml_str::<log_shipper::Config>(text, origin).map(|_| ()),
        "job-manager" => from_yaml_str::<job_manager::Config>(text, origin).map(|_| ()),
        other => panic!("no config loader for {other}"),
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
fn every_overlay_renders_with_the_workloads_the_suite_needs() {
    for (overlay, r) in renders() {
        assert!(
            r.files.len() >= 10,
            "{overlay}: files reached {}",
            r.files.len()
        );
        let names: Vec<&str> = workloads(&r.objects)
            .iter()
            .map(|(o, _)| o.name())
            .collect();
        for c in COMPONENTS {
            assert!(
                names.iter().any(|n| n.contains(c)),
                "{overlay}: no {c} in {names:?}"
            );
        }
        for m in MONITORING {
            let present = names.iter().any(|n| n.contains(m));
            assert_eq!(
                present,
                overlay == "ack",
                "{overlay}: {m} workload present = {present} ({names:?})"
            );
        }
        // Every manifest and config file it reached is valid YAML (the JSON dashboards are
        // YAML too); the placeholder secret files are checked as well, but a user's real
        // token need not be YAML, so only while they hold placeholders.
        for f in &r.files {
            let text = std::fs::read_to_string(f).unwrap();
            let placeholder = text.is_empty() || text.contains("replace");
            let yaml_name = f
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if !yaml_name && !placeholder {
                continue;
            }
            for doc in serde_yaml::Deserializer::from_str(&text) {
                <Value as serde::Deserialize>::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{overlay}: {}: {e}", f.display()));
            }
        }
    }
}

#[test]
fn every_object_is_labelled_and_namespaced() {
    for (overlay, r) in renders() {
        let namespaces: BTreeSet<&str> = r
            .objects
            .iter()
            .filter(|o| o.kind() == "Namespace")
            .map(|o| o.name())
            .collect();
        for o in &r.objects {
            let w = format!("{overlay}: {}", o.describe());
            assert!(o.doc["apiVersion"].is_string(), "{w}: apiVersion");
            assert_eq!(
                o.doc["metadata"]["labels"][common::labels::PART_OF].as_str(),
                Some(common::labels::PART_OF_VALUE),
                "{w}: part-of label"
            );
            if CLUSTER_SCOPED.contains(&o.kind()) {
                assert!(
                    o.namespace().is_empty(),
                    "{w}: cluster-scoped with a namespace"
                );
            } else {
                assert!(
                    namespaces.contains(o.namespace()),
                    "{w}: namespace {:?} is not one the overlay creates ({namespaces:?})",
                    o.namespace()
                );
            }
            if let Some(spec) = pod_spec(&o.doc) {
                let tpl = &o.doc["spec"]["template"]["metadata"]["labels"];
                for (k, v) in o.doc["spec"]["selector"]["matchLabels"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(
                        &tpl[k], v,
                        "{w}: selector {k:?} does not match the pod labels"
                    );
                }
                assert!(!containers(spec).is_empty(), "{w}: no containers");
            }
        }
    }
}

#[test]
fn no_reference_dangles() {
    for (overlay, r) in renders() {
        let objs = &r.objects;
        let namespaces: BTreeSet<&str> = objs
            .iter()
            .filter(|o| o.kind() == "Namespace")
            .map(|o| o.name())
            .collect();
        let need = |w: &str, kind: &str, ns: &str, name: &str| -> &Object {
            find(objs, kind, ns, name)
                .unwrap_or_else(|| panic!("{overlay}: {w}: {kind} {ns}/{name} is not defined"))
        };
        let need_key = |w: &str, kind: &str, ns: &str, name: &str, key: &str| {
            let o = need(w, kind, ns, name);
            assert!(
                keys(o).contains(key),
                "{overlay}: {w}: {kind} {ns}/{name} has no key {key:?} (has {:?})",
                keys(o)
            );
        };
        let mut refs_checked = 0;
        for (o, spec) in workloads(objs) {
            let ns = o.namespace();
            let w = o.describe();
            if let Some(sa) = spec["serviceAccountName"].as_str() {
                need(&w, "ServiceAccount", ns, sa);
            }
            let volumes = seq(&spec["volumes"]);
            for v in &volumes {
                if let Some(n) = v["configMap"]["name"].as_str() {
                    need(&w, "ConfigMap", ns, n);
                }
                if let Some(n) = v["secret"]["secretName"].as_str() {
                    need(&w, "Secret", ns, n);
                }
                if let Some(n) = v["persistentVolumeClaim"]["claimName"].as_str() {
                    need(&w, "PersistentVolumeClaim", ns, n);
                }
                for s in seq(&v["projected"]["sources"]) {
                    if let Some(n) = s["configMap"]["name"].as_str() {
                        need(&w, "ConfigMap", ns, n);
                    }
                    if let Some(n) = s["secret"]["name"].as_str() {
                        need(&w, "Secret", ns, n);
                    }
                }
            }
            for c in containers(spec) {
                let wc = format!("{w} container {}", c["name"].as_str().unwrap_or("?"));
                for m in seq(&c["volumeMounts"]) {
                    assert!(
                        volumes.iter().any(|v| v["name"] == m["name"]),
                        "{overlay}: {wc}: volumeMount {:?} names no volume",
                        m["name"]
                    );
                }
                for e in seq(&c["envFrom"]) {
                    if let Some(n) = e["configMapRef"]["name"].as_str() {
                        need(&wc, "ConfigMap", ns, n);
                    }
                    if let Some(n) = e["secretRef"]["name"].as_str() {
                        need(&wc, "Secret", ns, n);
                    }
                }
                let mut texts = strings(&c["args"]);
                texts.extend(strings(&c["command"]));
                for e in seq(&c["env"]) {
                    let vf = &e["valueFrom"];
                    if let (Some(n), Some(k)) = (
                        vf["configMapKeyRef"]["name"].as_str(),
                        vf["configMapKeyRef"]["key"].as_str(),
                    ) {
                        need_key(&wc, "ConfigMap", ns, n, k);
                    }
                    if let (Some(n), Some(k)) = (
                        vf["secretKeyRef"]["name"].as_str(),
                        vf["secretKeyRef"]["key"].as_str(),
                    ) {
                        need_key(&wc, "Secret", ns, n, k);
                    }
                    if let Some(v) = e["value"].as_str() {
                        texts.push(v.to_string());
                    }
                }
                for t in &texts {
                    for (svc, sns, port) in service_refs(t, ns, &namespaces) {
                        check_service_ref(objs, &format!("{overlay}: {wc}: {t}"), &svc, &sns, port);
                        refs_checked += 1;
                    }
                }
            }
        }
        // Service names in configuration files (Prometheus targets, webhook URLs, datasources).
        for o in objs.iter().filter(|o| o.kind() == "ConfigMap") {
            for k in keys(o) {
                for (svc, sns, port) in service_refs(data(o, &k), o.namespace(), &namespaces) {
                    check_service_ref(
                        objs,
                        &format!("{overlay}: {} key {k}", o.describe()),
                        &svc,
                        &sns,
                        port,
                    );
                    refs_checked += 1;
                }
            }
        }
        for o in objs {
            let w = o.describe();
            match o.kind() {
                "Ingress" => {
                    let mut backends = Vec::new();
                    for rule in seq(&o.doc["spec"]["rules"]) {
                        for p in seq(&rule["http"]["paths"]) {
                            backends.push(p["backend"]["service"].clone());
                        }
                    }
                    backends.push(o.doc["spec"]["defaultBackend"]["service"].clone());
                    for b in backends.iter().filter(|b| !b.is_null()) {
                        let name = b["name"].as_str().unwrap_or("");
                        let svc = need(&w, "Service", o.namespace(), name);
                        let ports = seq(&svc.doc["spec"]["ports"]);
                        let port = &b["port"];
                        assert!(
                            ports
                                .iter()
                                .any(|p| (port["name"].is_string() && p["name"] == port["name"])
                                    || (port["number"].is_u64() && p["port"] == port["number"])),
                            "{overlay}: {w}: backend port {port:?} is not a port of Service {name}"
                        );
                    }
                }
                "RoleBinding" | "ClusterRoleBinding" => {
                    let rr = &o.doc["roleRef"];
                    let kind = rr["kind"].as_str().unwrap_or("");
                    let ns = if kind == "Role" { o.namespace() } else { "" };
                    need(&w, kind, ns, rr["name"].as_str().unwrap_or(""));
                    for s in seq(&o.doc["subjects"]) {
                        if s["kind"] == "ServiceAccount" {
                            need(
                                &w,
                                "ServiceAccount",
                                s["namespace"].as_str().unwrap_or(o.namespace()),
                                s["name"].as_str().unwrap_or(""),
                            );
                        }
                    }
                }
                "Service" => {
                    let selector = o.doc["spec"]["selector"]
                        .as_mapping()
                        .cloned()
                        .unwrap_or_default();
                    assert!(!selector.is_empty(), "{overlay}: {w}: no selector");
                    let pods: Vec<&Value> = workloads(objs)
                        .into_iter()
                        .filter(|(wl, _)| wl.namespace() == o.namespace())
                        .filter(|(wl, _)| {
                            let labels = &wl.doc["spec"]["template"]["metadata"]["labels"];
                            selector.iter().all(|(k, v)| &labels[k] == v)
                        })
                        .map(|(_, s)| s)
                        .collect();
                    assert!(!pods.is_empty(), "{overlay}: {w}: selects no pods");
                    for p in seq(&o.doc["spec"]["ports"]) {
                        let tp = if p["targetPort"].is_null() {
                            &p["port"]
                        } else {
                            &p["targetPort"]
                        };
                        for spec in &pods {
                            assert!(
                                containers(spec).iter().any(|c| seq(&c["ports"]).iter().any(|cp| {
                                    (tp.is_string() && cp["name"] == *tp)
                                        || (tp.is_u64() && cp["containerPort"] == *tp)
                                })),
                                "{overlay}: {w}: targetPort {tp:?} is not a port of the selected pods"
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        // ack: the gateway's Alertmanager, job-manager's gateway URL, Prometheus's targets,
        // Alertmanager's webhooks, Grafana's datasources...; minimal: the first two.
        let expected = if overlay == "ack" { 10 } else { 2 };
        assert!(
            refs_checked >= expected,
            "{overlay}: only {refs_checked} host:port references found"
        );
    }
}

#[test]
fn service_refs_reads_the_forms_the_manifests_use() {
    let ns: BTreeSet<&str> = ["flink-suite", "flink-jobs"].into();
    let refs = service_refs(
        r#"--alertmanager.url=http://alertmanager:9093 url: http://metrics-gateway.flink-suite.svc:9091/x
           targets: ["grafana:3000", "localhost:9090"] --web.listen-address=0.0.0.0:9091
           endpoint: oss-cn-hangzhou-internal.aliyuncs.com url: https://oapi.dingtalk.com:443/robot"#,
        "flink-suite",
        &ns,
    );
    assert_eq!(
        refs,
        vec![
            ("alertmanager".to_string(), "flink-suite".to_string(), 9093),
            (
                "metrics-gateway".to_string(),
                "flink-suite".to_string(),
                9091
            ),
            ("grafana".to_string(), "flink-suite".to_string(), 3000),
        ]
    );
}

#[test]
fn our_containers_args_parse_with_the_binaries_parsers_and_their_files_exist() {
    let mut seen = BTreeSet::new();
    for (overlay, r) in renders() {
        let objs = &r.objects;
        for (o, spec) in workloads(objs) {
            for c in containers(spec) {
                let Some(component) = our_component(&c) else {
                    continue;
                };
                let w = format!(
                    "{overlay}: {} container {}",
                    o.describe(),
                    c["name"].as_str().unwrap_or("?")
                );
                let args = strings(&c["args"]);
                parse_args(component, &args).unwrap_or_else(|e| panic!("{w}: args rejected: {e}"));
                seen.insert(component);
                // Listens on its default port, which the container exposes.
                let port = default_port(component);
                assert_eq!(
                    flag(&args, "--web.listen-address"),
                    vec![format!("0.0.0.0:{port}").as_str()],
                    "{w}"
                );
                assert!(
                    seq(&c["ports"])
                        .iter()
                        .any(|p| p["containerPort"].as_u64() == Some(port.into())),
                    "{w}: port {port} not exposed"
                );
                assert_eq!(
                    c["livenessProbe"]["httpGet"]["path"].as_str(),
                    Some("/-/healthy"),
                    "{w}"
                );
                assert_eq!(
                    c["readinessProbe"]["httpGet"]["path"].as_str(),
                    Some("/-/ready"),
                    "{w}"
                );
                // The config file is mounted and valid for the component's own loader.
                let config = flag(&args, "--config.file");
                assert_eq!(config.len(), 1, "{w}: one --config.file");
                match resolve(objs, o.namespace(), spec, &c, config[0]) {
                    Mounted::Key(cm, key) => {
                        assert!(
                            keys(cm).contains(&key),
                            "{w}: {} has no key {key}",
                            cm.describe()
                        );
                        validate_config(component, data(cm, &key), Path::new(config[0]))
                            .unwrap_or_else(|e| panic!("{w}: {}: {e}", config[0]));
                    }
                    other => panic!("{w}: --config.file {} is {other:?}", config[0]),
                }
                // Every absolute path in the args exists where the container will look.
                for a in &args {
                    let Some((name, value)) = a.split_once('=') else {
                        continue;
                    };
                    if !value.starts_with('/') {
                        continue;
                    }
                    match resolve(objs, o.namespace(), spec, &c, value) {
                        Mounted::Key(src, key) => {
                            let hits: Vec<String> = keys(src)
                                .into_iter()
                                .filter(|k| wildcard(&key, k))
                                .collect();
                            assert!(
                                !hits.is_empty(),
                                "{w}: {name}={value}: {} holds no file {key:?} ({:?})",
                                src.describe(),
                                keys(src)
                            );
                            if src.kind() == "Secret" || name.contains("token") {
                                for k in &hits {
                                    assert!(
                                        name == "--bootstrap-token-file"
                                            || !data(src, k).trim().is_empty(),
                                        "{w}: {name}: {} key {k} is empty",
                                        src.describe()
                                    );
                                }
                            }
                        }
                        Mounted::Writable => {}
                        Mounted::Image => panic!("{w}: {name}={value} is not on any volume"),
                    }
                }
                // Our containers are unprivileged and read-only (log-shipper reads
                // kubelet's root-owned logs as root, with no capability but reading).
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false), "{w}");
                assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{w}");
                assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"], "{w}");
                if component != "log-shipper" {
                    assert_eq!(
                        spec["securityContext"]["runAsNonRoot"].as_bool(),
                        Some(true),
                        "{w}"
                    );
                }
            }
        }
    }
    assert_eq!(seen.len(), COMPONENTS.len(), "components checked: {seen:?}");
}

#[test]
fn every_container_has_resources_ports_and_probes_that_match() {
    for (overlay, r) in renders() {
        for (o, spec) in workloads(&r.objects) {
            for c in containers(spec) {
                let w = format!(
                    "{overlay}: {} container {}",
                    o.describe(),
                    c["name"].as_str().unwrap_or("?")
                );
                let res = &c["resources"];
                assert!(!res["requests"]["cpu"].is_null(), "{w}: cpu request");
                assert!(!res["requests"]["memory"].is_null(), "{w}: memory request");
                assert!(!res["limits"]["memory"].is_null(), "{w}: memory limit");
                let ports = seq(&c["ports"]);
                for probe in ["livenessProbe", "readinessProbe"] {
                    let p = &c[probe]["httpGet"]["port"];
                    assert!(!p.is_null(), "{w}: {probe} missing");
                    assert!(
                        ports.iter().any(|cp| (p.is_string() && cp["name"] == *p)
                            || (p.is_u64() && cp["containerPort"] == *p)),
                        "{w}: {probe} port {p:?} is not a container port"
                    );
                }
                assert!(
                    c["image"]
                        .as_str()
                        .is_some_and(|i| kustomize::split_image(i).1.is_some()),
                    "{w}: image without a tag"
                );
            }
        }
    }
}

#[test]
fn job_manager_and_log_shipper_may_do_what_the_kubernetes_target_needs() {
    for (overlay, r) in renders() {
        let objs = &r.objects;
        // (namespace, apiGroup, resource) → verbs granted to a ServiceAccount.
        let granted = |sa_ns: &str, sa: &str| {
            let mut g: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
            for b in objs.iter().filter(|o| o.kind().ends_with("RoleBinding")) {
                if !seq(&b.doc["subjects"]).iter().any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == sa_ns
                }) {
                    continue;
                }
                let scope = if b.kind() == "RoleBinding" {
                    b.namespace()
                } else {
                    "*"
                };
                let rr = &b.doc["roleRef"];
                let role_ns = if rr["kind"] == "Role" {
                    b.namespace()
                } else {
                    ""
                };
                let role = find(
                    objs,
                    rr["kind"].as_str().unwrap_or(""),
                    role_ns,
                    rr["name"].as_str().unwrap_or(""),
                )
                .unwrap_or_else(|| panic!("{overlay}: {} binds an undefined role", b.describe()));
                for rule in seq(&role.doc["rules"]) {
                    for group in strings(&rule["apiGroups"]) {
                        for res in strings(&rule["resources"]) {
                            g.entry((scope.to_string(), group.clone(), res))
                                .or_default()
                                .extend(strings(&rule["verbs"]));
                        }
                    }
                }
            }
            g
        };
        let may = |g: &BTreeMap<(String, String, String), BTreeSet<String>>,
                   ns: &str,
                   group: &str,
                   res: &str,
                   verbs: &[&str]| {
            verbs.iter().all(|v| {
                [ns, "*"].iter().any(|scope| {
                    g.get(&(scope.to_string(), group.to_string(), res.to_string()))
                        .is_some_and(|s| s.contains(*v) || s.contains("*"))
                })
            })
        };
        let jm = granted("flink-suite", "job-manager");
        let crud = [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ];
        for (group, res, verbs) in [
            ("", "configmaps", &crud[..]),
            ("", "services", &crud[..]),
            ("", "pods", &crud[..]),
            ("", "secrets", &["get", "create", "patch", "delete"][..]),
            ("", "pods/log", &["get"][..]),
            ("", "events", &["get", "list", "watch", "create"][..]),
            ("", "services/proxy", &["get", "create"][..]),
            ("batch", "jobs", &crud[..]),
            ("apps", "deployments", &crud[..]),
        ] {
            assert!(
                may(&jm, "flink-jobs", group, res, verbs),
                "{overlay}: job-manager may not {verbs:?} {res}.{group} in flink-jobs"
            );
            assert!(
                !may(&jm, "kube-system", group, res, &["get"]),
                "{overlay}: job-manager's {res} rights must not be cluster-wide"
            );
        }
        // Everything job-manager's Kubernetes client uses (the list `job-manager rbac` prints).
        for p in job_manager::kubernetes::rbac::PERMISSIONS {
            assert!(
                may(&jm, "flink-jobs", p.group, p.resource, p.verbs),
                "{overlay}: job-manager may not {:?} {}.{} in flink-jobs ({})",
                p.verbs,
                p.resource,
                p.group,
                p.why
            );
        }
        assert!(
            may(&jm, "*", "", "namespaces", &["get"]),
            "{overlay}: job-manager cannot read namespaces"
        );

        // log-shipper lists the pods of every namespace it is told to watch.
        let ls = granted("flink-suite", "log-shipper");
        let ds =
            find(objs, "DaemonSet", "flink-suite", "log-shipper").expect("log-shipper DaemonSet");
        let args = strings(&ds.doc["spec"]["template"]["spec"]["containers"][0]["args"]);
        let watched = flag(&args, "--kubernetes.namespace");
        assert!(
            !watched.is_empty(),
            "{overlay}: log-shipper watches no namespace"
        );
        for ns in watched {
            assert!(
                may(&ls, ns, "", "pods", &["get", "list", "watch"]),
                "{overlay}: log-shipper cannot list pods in {ns}"
            );
        }
    }
}

#[test]
fn the_ingress_lets_a_50_mb_jar_through_to_job_manager() {
    for (overlay, r) in renders() {
        let objs = &r.objects;
        let cm =
            find(objs, "ConfigMap", "flink-suite", "job-manager").expect("job-manager ConfigMap");
        let config: job_manager::Config =
            common::config::from_yaml_str(data(cm, "config.yml"), Path::new("config.yml")).unwrap();
        let limit = config.artifacts.max_upload_bytes;
        assert!(
            limit >= 50 << 20,
            "{overlay}: job-manager accepts only {limit} bytes"
        );
        let ingresses: Vec<&Object> = objs
            .iter()
            .filter(|o| o.kind() == "Ingress")
            .filter(|o| {
                seq(&o.doc["spec"]["rules"]).iter().any(|r| {
                    seq(&r["http"]["paths"])
                        .iter()
                        .any(|p| p["backend"]["service"]["name"] == "job-manager")
                })
            })
            .collect();
        assert!(
            !ingresses.is_empty(),
            "{overlay}: no Ingress routes to job-manager"
        );
        for i in ingresses {
            let v = i.doc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
                .as_str()
                .unwrap_or_else(|| panic!("{overlay}: {}: no proxy-body-size", i.describe()));
            let bytes = nginx_size(v).unwrap_or_else(|| panic!("{overlay}: proxy-body-size {v:?}"));
            assert!(
                bytes >= limit && bytes >= 50 << 20,
                "{overlay}: proxy-body-size {v} < {limit} bytes"
            );
        }
    }
    assert_eq!(nginx_size("100m"), Some(100 << 20));
    assert_eq!(nginx_size("50M"), Some(50 << 20));
    assert_eq!(nginx_size("1g"), Some(1 << 30));
}

#[test]
fn dingtalk_token_in_args_the_seeds_way_parses() {
    let r = render("ack");
    let mut dt = find(&r.objects, "Deployment", "flink-suite", "dingtalk-alert")
        .expect("dingtalk-alert")
        .doc
        .clone();
    let patch_file = deploy_dir().join("kubernetes/examples/dingtalk-token-in-args.yaml");
    let patch: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&patch_file).unwrap()).unwrap();
    kustomize::strategic_merge(&mut dt, &patch, "").unwrap();
    let c = &dt["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&c["args"]);
    assert_eq!(flag(&args, "--dingtalk.access-token").len(), 1, "{args:?}");
    parse_args("dingtalk-alert", &args).unwrap_or_else(|e| panic!("{}: {e}", patch_file.display()));
    // The rest of the container is the base's.
    assert_eq!(
        c["image"],
        find(&r.objects, "Deployment", "flink-suite", "dingtalk-alert")
            .unwrap()
            .doc["spec"]["template"]["spec"]["containers"][0]["image"]
    );
    assert_eq!(flag(&args, "--web.listen-address"), vec!["0.0.0.0:8060"]);
}

#[test]
fn the_dockerfile_builds_every_image_the_manifests_run() {
    let text =
        std::fs::read_to_string(repo_dir().join("Dockerfile")).expect("Dockerfile at the root");
    let stages: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("FROM ")?;
            rest.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("AS"))
                .map(|w| w[1])
        })
        .collect();
    let mut images = BTreeSet::new();
    for (_, r) in renders() {
        for (_, spec) in workloads(&r.objects) {
            for c in containers(spec) {
                if let Some(comp) = our_component(&c) {
                    images.insert(comp);
                    assert!(
                        c["command"].is_null(),
                        "{comp}: the image's ENTRYPOINT runs the binary"
                    );
                }
            }
        }
    }
    assert_eq!(images.len(), COMPONENTS.len(), "{images:?}");
    let manifest = |krate: &str| {
        std::fs::read_to_string(repo_dir().join("crates").join(krate).join("Cargo.toml")).unwrap()
    };
    for comp in COMPONENTS.iter().chain(["flink-suite"].iter()) {
        assert!(
            stages.contains(comp),
            "Dockerfile has no stage `{comp}` ({stages:?})"
        );
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{comp}\"]")),
            "stage {comp}: ENTRYPOINT runs /usr/local/bin/{comp}"
        );
        let package = if *comp == "flink-suite" {
            "suite"
        } else {
            comp
        };
        assert!(
            text.contains(&format!("-p {package}")),
            "the build stage builds {package}"
        );
        assert!(
            manifest(package).contains(&format!("name = \"{package}\"")),
            "crate {package}"
        );
    }
    assert!(
        manifest("suite").contains("name = \"flink-suite\""),
        "the flink-suite binary"
    );
    assert!(
        text.contains("--locked") && text.contains("--release"),
        "release build from Cargo.lock"
    );
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "non-root runtime user {user}"
    );
    // deploy/README.md's reload walk-through runs `kill -1 1` in the container.
    assert!(
        text.contains("procps"),
        "the runtime image has no `kill` (procps)"
    );
    let ignore = std::fs::read_to_string(repo_dir().join(".dockerignore")).expect(".dockerignore");
    for must in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore leaves out {must}"
        );
    }
}

#[test]
fn our_renderer_agrees_with_kubectl_kustomize() {
    let kubectl = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .find(|p| p.exists())
        })
        .unwrap_or(None);
    let Some(kubectl) = kubectl else {
        eprintln!(
            "SKIP: kubectl is not installed (its `kubectl kustomize` is the reference renderer)"
        );
        return;
    };
    for (overlay, r) in renders() {
        let dir = deploy_dir().join("kubernetes/overlays").join(overlay);
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("unknown command") {
                eprintln!("SKIP: this kubectl has no kustomize");
                return;
            }
            panic!("kubectl kustomize {overlay}: {err}");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut theirs = BTreeMap::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc).unwrap();
            let key = (
                v["kind"].as_str().unwrap_or("").to_string(),
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["metadata"]["name"].as_str().unwrap_or("").to_string(),
            );
            theirs.insert(key, v);
        }
        let ours: BTreeMap<_, _> = r
            .objects
            .iter()
            .map(|o| {
                (
                    (
                        o.kind().to_string(),
                        o.namespace().to_string(),
                        o.name().to_string(),
                    ),
                    o,
                )
            })
            .collect();
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{overlay}: objects differ"
        );
        for (key, o) in &ours {
            let t = &theirs[key];
            if o.kind() == "Secret" {
                assert_eq!(
                    keys(o),
                    t["data"]
                        .as_mapping()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, _)| k.as_str().map(str::to_string))
                        .collect(),
                    "{overlay}: {key:?} keys"
                );
                continue;
            }
            assert_eq!(
                &o.doc, t,
                "{overlay}: {key:?} differs from kubectl kustomize's"
            );
        }
    }
}

#[test]
fn the_ha_overlay_keeps_one_of_two_job_managers_serving_through_a_drain() {
    let r = render("ha");
    let objs = &r.objects;
    let d = find(objs, "Deployment", "flink-suite", "job-manager").expect("job-manager");
    let spec = &d.doc["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(2));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0)
    );
    let pdb = find(objs, "PodDisruptionBudget", "flink-suite", "job-manager").expect("PDB");
    assert_eq!(pdb.doc["spec"]["minAvailable"].as_u64(), Some(1));
    let pod_labels = &spec["template"]["metadata"]["labels"];
    let selector = pdb.doc["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    assert!(!selector.is_empty(), "PDB without selector");
    assert!(
        selector.iter().all(|(k, v)| &pod_labels[k] == v),
        "the PDB does not select job-manager's pods"
    );
    let role = find(objs, "Role", "flink-suite", "job-manager-leader-election").expect("Role");
    let lease_verbs: BTreeSet<String> = seq(&role.doc["rules"])
        .iter()
        .filter(|r| strings(&r["resources"]).iter().any(|x| x == "leases"))
        .flat_map(|r| strings(&r["verbs"]))
        .collect();
    for v in ["get", "create", "update"] {
        assert!(lease_verbs.contains(v), "leases: no {v} ({lease_verbs:?})");
    }
    let c = &containers(pod_spec(&d.doc).expect("pod spec"))[0];
    let args = strings(&c["args"]);
    assert!(
        args.iter()
            .any(|a| a == "--leader-election.lease=job-manager-leader"),
        "{args:?}"
    );
    let url = args
        .iter()
        .find_map(|a| a.strip_prefix("--store.url="))
        .expect("--store.url");
    assert!(url.starts_with("postgres://"), "{url}");
    let user = url["postgres://".len()..].split_once('@').map(|(u, _)| u);
    assert!(
        user.is_some_and(|u| !u.contains(':')),
        "the URL names a user and no password: {url}"
    );
    let namespaces: BTreeSet<&str> = ["flink-suite", "flink-jobs"].into();
    assert!(
        service_refs(url, "flink-suite", &namespaces).is_empty(),
        "the database is external, not an in-cluster Service: {url}"
    );
    let secret = find(objs, "Secret", "flink-suite", "job-manager-db").expect("Secret");
    assert!(keys(secret).contains("password"));
}
