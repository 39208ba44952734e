//! `job-manager render` and `job-manager rbac`, run as the built binary: the objects parse
//! back as Kubernetes objects, match the golden files (`UPDATE_GOLDEN=1` rewrites them),
//! and carry the suite's labels on every pod.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{ConfigMap, Container, PodTemplateSpec, Secret, Service},
    rbac::v1::{Role, RoleBinding},
};
use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_job-manager");
const JOB_ID: &str = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const DEPLOYMENT_ID: &str = "5d6b1f6e-0000-4000-8000-000000000001";

/// A deployment document with `spec.template.spec` replaced by `template_spec` (YAML,
/// indented by 6).
fn document(template_spec: &str) -> String {
    format!(
        "kind: Deployment
apiVersion: v1
metadata:
  name: orders
  namespace: default
  id: {DEPLOYMENT_ID}
  labels: {{team: payments}}
spec:
  state: RUNNING
  deploymentTargetName: ack
  template:
    spec:
{template_spec}"
    )
}

const ARTIFACT_1_20: &str = "      artifact:
        kind: JAR
        jarUri: https://repo.example.com/orders-1.0.jar
        entryClass: com.example.Orders
        mainArgs: --env prod --name '{{ deploymentName }}'
        flinkVersion: '1.20'
";

struct Case {
    name: &'static str,
    template_spec: String,
    extra_args: &'static [&'static str],
    /// Labels the user asked for on every pod.
    user_pod_labels: &'static [(&'static str, &'static str)],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "default",
            template_spec: format!("{ARTIFACT_1_20}      parallelism: 2\n"),
            extra_args: &[],
            user_pod_labels: &[],
        },
        Case {
            name: "pod-options",
            template_spec: format!(
                "{ARTIFACT_1_20}      parallelism: 4
      numberOfTaskManagers: 2
      resources:
        jobmanager: {{cpu: 0.5, memory: 1536m}}
        taskmanager: {{cpu: 2, memory: 4g}}
      flinkConfiguration:
        execution.checkpointing.interval: 30s
        state.checkpoints.dir: oss://bucket/flink-checkpoints/{{{{ deploymentId }}}}
      kubernetes:
        labels: {{cost-center: cc-42, app.kubernetes.io/part-of: not-the-suite}}
        pods:
          labels: {{team: payments, tier: streaming}}
          annotations: {{prometheus.io/scrape: 'false'}}
          nodeSelector: {{node-pool: flink}}
          affinity:
            podAntiAffinity:
              preferredDuringSchedulingIgnoredDuringExecution:
              - weight: 100
                podAffinityTerm:
                  topologyKey: kubernetes.io/hostname
                  labelSelector: {{matchLabels: {{app.kubernetes.io/part-of: flink-suite}}}}
          tolerations:
          - {{key: dedicated, operator: Equal, value: flink, effect: NoSchedule}}
          volumes:
          - name: oss-credentials
            secret: {{secretName: oss-credentials}}
          volumeMounts:
          - {{name: oss-credentials, mountPath: /etc/oss, readOnly: true}}
          envVars:
          - {{name: TZ, value: Asia/Shanghai}}
          imagePullSecrets:
          - {{name: acr-pull}}
          securityContext: {{runAsUser: 9999, fsGroup: 9999}}
"
            ),
            extra_args: &[
                "--metrics-gateway-url",
                "http://metrics-gateway.flink-suite:9091",
            ],
            user_pod_labels: &[("team", "payments"), ("tier", "streaming")],
        },
        Case {
            name: "pod-templates",
            template_spec: format!(
                "{ARTIFACT_1_20}      parallelism: 1
      kubernetes:
        jobManagerPodTemplate:
          metadata:
            labels: {{team: payments, app.kubernetes.io/component: sidecar}}
          spec:
            serviceAccountName: flink
            containers:
            - name: flink-main-container
              env:
              - name: JAVA_TOOL_OPTIONS
                value: -XX:+UseG1GC
            - name: log-forwarder
              image: busybox:1.36
              args: [sh, -c, 'tail -F /opt/flink/log/*.log']
              volumeMounts:
              - {{name: flink-logs, mountPath: /opt/flink/log}}
        taskManagerPodTemplate:
          metadata:
            labels: {{team: payments}}
          spec:
            nodeSelector: {{node-pool: flink-tm}}
            volumes:
            - name: local-state
              emptyDir: {{medium: Memory}}
            containers:
            - name: flink-main-container
              volumeMounts:
              - {{name: local-state, mountPath: /tmp/state}}
"
            ),
            extra_args: &[],
            user_pod_labels: &[("team", "payments")],
        },
        Case {
            name: "restore-from-savepoint",
            template_spec: "      artifact:
        kind: JAR
        jarUri: file:///var/lib/job-manager/artifacts/default/orders-1.0.jar
        entryClass: com.example.Orders
        flinkVersion: '1.20'
      parallelism: 3
      flinkConfiguration:
        taskmanager.numberOfTaskSlots: '2'
"
            .to_string(),
            extra_args: &[
                "--from-savepoint",
                "oss://bucket/flink-savepoints/orders/savepoint-1a2b3c",
                "--allow-non-restored-state",
                "--manager-url",
                "http://job-manager.flink-suite:8080",
            ],
            user_pod_labels: &[],
        },
        Case {
            name: "credentials-in-uri",
            template_spec: "      artifact:
        kind: JAR
        jarUri: https://ci:s3cr3t-pw@repo.example.com/orders-1.0.jar?download_token=t0k3n
        flinkVersion: '1.20'
      parallelism: 1
"
            .to_string(),
            extra_args: &[],
            user_pod_labels: &[],
        },
        Case {
            name: "flink-1.17",
            template_spec: "      artifact:
        kind: JAR
        jarUri: https://repo.example.com/orders-1.0.jar
        flinkVersion: '1.17'
      parallelism: 1
      flinkConfiguration:
        pipeline.name: 'orders: {{ jobId }}'
"
            .to_string(),
            extra_args: &[],
            user_pod_labels: &[],
        },
        Case {
            name: "flink-2.1",
            template_spec: "      artifact:
        kind: JAR
        jarUri: https://repo.example.com/orders-1.0.jar
        flinkVersion: '2.1'
      parallelism: 1
      flinkConfiguration:
        pipeline.name: 'orders: {{ jobId }}'
        env.java.opts.all: '-Dfile.encoding=UTF-8 # utf8'
"
            .to_string(),
            extra_args: &[],
            user_pod_labels: &[],
        },
    ]
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the job-manager binary runs")
}

fn render(dir: &Path, doc: &str, extra: &[&str]) -> Output {
    let file = dir.join("deployment.yaml");
    std::fs::write(&file, doc).unwrap();
    let mut args = vec![
        "render",
        "-f",
        file.to_str().unwrap(),
        "--target-namespace",
        "flink-jobs",
        "--job-id",
        JOB_ID,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The objects of a render, parsed into Kubernetes types.
struct Objects {
    config_map: ConfigMap,
    /// The job's Secret (download token or a jarUri with credentials), when it needs one.
    secret: Option<Secret>,
    service: Service,
    job: Job,
    deployment: Deployment,
}

fn parse(stream: &str) -> Objects {
    let mut config_map = None;
    let mut secret = None;
    let mut service = None;
    let mut job = None;
    let mut deployment = None;
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(stream) {
        let v = serde_yaml::Value::deserialize(doc).expect("a YAML document");
        let kind = v["kind"]
            .as_str()
            .expect("every object has a kind")
            .to_string();
        kinds.push(kind.clone());
        match kind.as_str() {
            "ConfigMap" => config_map = Some(serde_yaml::from_value::<ConfigMap>(v).unwrap()),
            "Secret" => secret = Some(serde_yaml::from_value::<Secret>(v).unwrap()),
            "Service" => service = Some(serde_yaml::from_value::<Service>(v).unwrap()),
            "Job" => job = Some(serde_yaml::from_value::<Job>(v).unwrap()),
            "Deployment" => deployment = Some(serde_yaml::from_value::<Deployment>(v).unwrap()),
            other => panic!("unexpected kind {other}"),
        }
    }
    kinds.retain(|k| k != "Secret");
    assert_eq!(kinds, ["ConfigMap", "Service", "Job", "Deployment"]);
    Objects {
        config_map: config_map.unwrap(),
        secret,
        service: service.unwrap(),
        job: job.unwrap(),
        deployment: deployment.unwrap(),
    }
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.yaml"))
}

fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()) + 1);
        panic!(
            "render of {name} differs from {} from line {line} (UPDATE_GOLDEN=1 rewrites it after review):\n{actual}",
            path.display()
        );
    }
}

fn pods(o: &Objects) -> [(&'static str, &PodTemplateSpec); 2] {
    [
        ("jobmanager", &o.job.spec.as_ref().unwrap().template),
        ("taskmanager", &o.deployment.spec.as_ref().unwrap().template),
    ]
}

fn labels(p: &PodTemplateSpec) -> BTreeMap<String, String> {
    p.metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn main_args(o: &Objects) -> Vec<String> {
    let pod = o.job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers
        .iter()
        .find(|c| c.name == "flink-main-container")
        .unwrap()
        .args
        .clone()
        .unwrap()
}

#[test]
fn every_case_renders_parses_and_matches_its_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let out = render(dir.path(), &document(&case.template_spec), case.extra_args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", case.name);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let o = parse(&stdout);
        for (component, pod) in pods(&o) {
            let l = labels(pod);
            let ctx = format!("{} {component} pod labels {l:?}", case.name);
            assert_eq!(l["app.kubernetes.io/part-of"], "flink-suite", "{ctx}");
            assert_eq!(l["app.kubernetes.io/component"], component, "{ctx}");
            assert_eq!(l["flink-suite.io/deployment-id"], DEPLOYMENT_ID, "{ctx}");
            assert_eq!(l["flink-suite.io/job-id"], JOB_ID, "{ctx}");
            assert_eq!(l["flink-suite.io/namespace"], "default", "{ctx}");
            assert_eq!(l["flink-suite.io/deployment-name"], "orders", "{ctx}");
            for (k, v) in case.user_pod_labels {
                assert_eq!(l.get(*k).map(String::as_str), Some(*v), "{ctx}");
            }
        }
        for m in [
            &o.config_map.metadata,
            &o.service.metadata,
            &o.job.metadata,
            &o.deployment.metadata,
        ] {
            assert_eq!(m.namespace.as_deref(), Some("flink-jobs"), "{}", case.name);
        }
        assert_eq!(
            o.job.metadata.name.as_deref(),
            Some(format!("job-{JOB_ID}-jobmanager").as_str())
        );
        assert_eq!(
            o.deployment.metadata.name.as_deref(),
            Some(format!("job-{JOB_ID}-taskmanager").as_str())
        );
        let args = main_args(&o);
        assert_eq!(
            args[..3],
            ["standalone-job", "--job-id", &JOB_ID.replace('-', "")]
        );
        check_golden(case.name, &stdout);
    }
}

fn render_case(name: &str) -> Objects {
    let dir = tempfile::tempdir().unwrap();
    let case = cases().into_iter().find(|c| c.name == name).unwrap();
    let out = render(dir.path(), &document(&case.template_spec), case.extra_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn flink_configuration_is_written_in_the_format_of_the_version() {
    let old = render_case("flink-1.17");
    let data = old.config_map.data.unwrap();
    let conf = &data["flink-conf.yaml"];
    assert!(!data.contains_key("config.yaml"));
    assert!(
        conf.contains(&format!("\npipeline.name: orders: {JOB_ID}\n")),
        "flink-conf.yaml is flat key: value, unquoted:\n{conf}"
    );
    let new = render_case("flink-2.1");
    let data = new.config_map.data.unwrap();
    assert!(!data.contains_key("flink-conf.yaml"));
    let conf: BTreeMap<String, String> = serde_yaml::from_str(&data["config.yaml"]).unwrap();
    assert_eq!(conf["pipeline.name"], format!("orders: {JOB_ID}"));
    assert_eq!(conf["env.java.opts.all"], "-Dfile.encoding=UTF-8 # utf8");
    assert_eq!(
        conf["jobmanager.rpc.address"],
        format!("job-{JOB_ID}-jobmanager")
    );
    // The pods mount the file their Flink reads.
    let pod = new.job.spec.unwrap().template.spec.unwrap();
    let cm = pod.volumes.unwrap()[0].config_map.clone().unwrap();
    assert_eq!(cm.items.unwrap()[0].path, "config.yaml");
    // The log4j configuration logs to the rolling file and to stdout.
    let log4j = &data["log4j-console.properties"];
    assert!(
        log4j.contains("appender.main.type = RollingFile"),
        "{log4j}"
    );
    assert!(log4j.contains("appender.console.type = CONSOLE"), "{log4j}");
    // By default the newest 5 MB are kept: roll at 5 MB, one rolled file.
    assert!(
        log4j.contains("appender.main.policies.size.size = 5MB\n"),
        "{log4j}"
    );
    assert!(
        log4j.contains("appender.main.strategy.max = 1\n"),
        "{log4j}"
    );
    // A value flink-conf.yaml would cut at '#' is refused for 1.17, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let doc = document(
        "      artifact: {jarUri: 'https://x/y.jar', flinkVersion: '1.17'}
      flinkConfiguration:
        env.java.opts.all: '-Dfile.encoding=UTF-8 # utf8'
",
    );
    let out = render(dir.path(), &doc, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flinkConfiguration[\"env.java.opts.all\"]"),
        "{err}"
    );
    // A key the manager owns is ignored and said so on stderr.
    let doc = document(
        "      artifact: {jarUri: 'https://x/y.jar'}
      flinkConfiguration: {rest.port: '9999'}
",
    );
    let out = render(dir.path(), &doc, &[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: flinkConfiguration[\"rest.port\"]"),
        "{err}"
    );
    let o = parse(&String::from_utf8(out.stdout).unwrap());
    let conf: BTreeMap<String, String> =
        serde_yaml::from_str(&o.config_map.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(conf["rest.port"], "8081");
}

#[test]
fn pod_options_reach_both_pods_and_system_labels_win() {
    let o = render_case("pod-options");
    for (component, pod) in pods(&o) {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_selector.as_ref().unwrap()["node-pool"],
            "flink",
            "{component}"
        );
        assert_eq!(
            spec.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert!(spec.affinity.as_ref().unwrap().pod_anti_affinity.is_some());
        assert_eq!(
            spec.image_pull_secrets.as_ref().unwrap()[0].name,
            "acr-pull"
        );
        assert_eq!(
            spec.security_context.as_ref().unwrap().run_as_user,
            Some(9999)
        );
        assert!(spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == "oss-credentials"));
        let main = spec
            .containers
            .iter()
            .find(|c| c.name == "flink-main-container")
            .unwrap();
        assert!(main
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/etc/oss"));
        let env = main.env.as_ref().unwrap();
        assert!(env
            .iter()
            .any(|e| e.name == "TZ" && e.value.as_deref() == Some("Asia/Shanghai")));
        let annotations = pod.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "false");
    }
    // kubernetes.labels on the Job, Deployment and Service; the suite's part-of wins.
    for m in [&o.job.metadata, &o.deployment.metadata, &o.service.metadata] {
        let l = m.labels.as_ref().unwrap();
        assert_eq!(l["cost-center"], "cc-42");
        assert_eq!(l["app.kubernetes.io/part-of"], "flink-suite");
    }
    // Resources: requests and limits, and Flink's process sizes.
    let jm = &o
        .job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let r = jm.resources.as_ref().unwrap();
    assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "1536Mi");
    let tm_spec = o.deployment.spec.as_ref().unwrap();
    assert_eq!(tm_spec.replicas, Some(2), "numberOfTaskManagers");
    let tm = &tm_spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        tm.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "4096Mi"
    );
    let data = o.config_map.data.unwrap();
    let conf: BTreeMap<String, String> = serde_yaml::from_str(&data["config.yaml"]).unwrap();
    assert_eq!(conf["jobmanager.memory.process.size"], "1536m");
    assert_eq!(conf["taskmanager.memory.process.size"], "4g");
    assert_eq!(conf["taskmanager.numberOfTaskSlots"], "2");
    assert_eq!(
        conf["state.checkpoints.dir"],
        format!("oss://bucket/flink-checkpoints/{DEPLOYMENT_ID}")
    );
    // The PushGateway reporter carries the suite's grouping key.
    assert_eq!(
        conf["metrics.reporter.flink_suite.hostUrl"],
        "http://metrics-gateway.flink-suite:9091"
    );
    assert_eq!(
        conf["metrics.reporter.flink_suite.groupingKey"],
        format!("namespace=default;deploymentId={DEPLOYMENT_ID};jobId={JOB_ID}")
    );
}

#[test]
fn pod_templates_merge_over_the_generated_pods() {
    let o = render_case("pod-templates");
    let jm = o.job.spec.unwrap().template;
    // The template cannot relabel the pod's component.
    assert_eq!(labels(&jm)["app.kubernetes.io/component"], "jobmanager");
    let spec = jm.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("flink"));
    let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["flink-main-container", "log-forwarder"]);
    let main = &spec.containers[0];
    assert!(
        main.image.as_deref().unwrap().starts_with("flink:1.20"),
        "generated fields stay"
    );
    let env: Vec<_> = main
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["JOB_MANAGER_RPC_ADDRESS", "JAVA_TOOL_OPTIONS"]);
    assert_eq!(main.args.as_ref().unwrap()[0], "standalone-job");
    let tm = o.deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(tm.node_selector.unwrap()["node-pool"], "flink-tm");
    let vols: Vec<_> = tm.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert!(
        vols.contains(&"local-state".to_string()) && vols.contains(&"flink-config".to_string())
    );
    let mounts: Vec<_> = tm.containers[0]
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| m.mount_path)
        .collect();
    assert!(
        mounts.contains(&"/tmp/state".to_string())
            && mounts.contains(&"/opt/flink/conf".to_string())
    );
}

#[test]
fn restore_arguments_and_the_manager_download() {
    let o = render_case("restore-from-savepoint");
    let args = main_args(&o);
    let at = args.iter().position(|a| a == "--fromSavepoint").unwrap();
    assert_eq!(
        args[at + 1],
        "oss://bucket/flink-savepoints/orders/savepoint-1a2b3c"
    );
    assert!(args.contains(&"--allowNonRestoredState".to_string()));
    assert_eq!(
        o.deployment.spec.as_ref().unwrap().replicas,
        Some(2),
        "ceil(3 / 2 slots)"
    );
    let secret_name = format!("job-{JOB_ID}-artifact-token");
    for (component, pod) in pods(&o) {
        let init = fetcher(pod);
        let env = env_of(&init);
        assert_eq!(
            env["JOB_MANAGER_JAR_URL"],
            (Some("http://job-manager.flink-suite:8080/artifacts/v1/namespaces/default/artifacts:download?filename=orders-1.0.jar".to_string()), None),
            "{component}"
        );
        assert_eq!(
            env["JOB_MANAGER_ARTIFACT_TOKEN"],
            (None, Some((secret_name.clone(), "token".to_string()))),
            "{component}"
        );
    }
    // The Secret is rendered without a token: the manager mints one when it starts the job.
    let secret = o.secret.expect("the token's Secret");
    assert_eq!(secret.metadata.name.as_deref(), Some(secret_name.as_str()));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("flink-jobs"));
    assert!(secret.data.is_none(), "{:?}", secret.data);
}

/// The init container of a pod.
fn fetcher(pod: &PodTemplateSpec) -> Container {
    let spec = pod.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, "fetch-jar");
    init[0].clone()
}

/// A container's environment: name → (value, (Secret, key)).
#[allow(clippy::type_complexity)]
fn env_of(c: &Container) -> BTreeMap<String, (Option<String>, Option<(String, String)>)> {
    c.env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let from = e
                .value_from
                .and_then(|v| v.secret_key_ref)
                .map(|r| (r.name, r.key));
            (e.name, (e.value, from))
        })
        .collect()
}

#[test]
fn credentials_in_the_jar_uri_are_only_in_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c.name == "credentials-in-uri")
        .unwrap();
    let out = render(dir.path(), &document(&case.template_spec), case.extra_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let o = parse(&stdout);
    let uri = "https://ci:s3cr3t-pw@repo.example.com/orders-1.0.jar?download_token=t0k3n";
    let secret_name = format!("job-{JOB_ID}-artifact-token");
    for (component, pod) in pods(&o) {
        let init = fetcher(pod);
        let env = env_of(&init);
        assert_eq!(
            env["JOB_MANAGER_JAR_URL"],
            (None, Some((secret_name.clone(), "jar-url".to_string()))),
            "{component}"
        );
        assert!(!env.contains_key("JOB_MANAGER_ARTIFACT_TOKEN"));
        // Neither the pod spec nor the script holds the credentials.
        let spec = serde_json::to_string(pod).unwrap();
        for part in ["s3cr3t-pw", "t0k3n", "ci:"] {
            assert!(!spec.contains(part), "{component}: {part} in {spec}");
        }
        assert_eq!(init.command.unwrap(), ["sh", "-c"]);
    }
    let secret = o.secret.expect("the URL's Secret");
    assert_eq!(secret.metadata.name.as_deref(), Some(secret_name.as_str()));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data.unwrap()["jar-url"].0, uri.as_bytes());
    // Only in the Secret (base64), in the whole stream.
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("t0k3n"),
        "{stderr}"
    );
}

#[test]
fn pods_and_templates_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let doc = document(&format!(
        "{ARTIFACT_1_20}      kubernetes:
        pods:
          labels: {{team: payments}}
        taskManagerPodTemplate:
          spec: {{containers: []}}
"
    ));
    let out = render(dir.path(), &doc, &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing half-rendered on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.template.spec.kubernetes.pods"), "{err}");
    assert!(err.contains("taskManagerPodTemplate"), "{err}");
    assert!(err.contains("exclusive"), "{err}");
}

#[test]
fn bad_documents_and_targets_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // Unknown field: path and line.
    let doc = document(&format!("{ARTIFACT_1_20}      paralelism: 2\n"));
    let out = render(dir.path(), &doc, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.template.spec"), "{err}");
    assert!(err.contains("paralelism"), "{err}");
    // A typo inside a Kubernetes object is not silently dropped.
    let doc = document(&format!(
        "{ARTIFACT_1_20}      kubernetes:\n        pods:\n          tolerations:\n          - {{key: a, operater: Exists}}\n"
    ));
    let out = render(dir.path(), &doc, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.template.spec.kubernetes.pods.tolerations[0].operater"),
        "{err}"
    );
    // No store and no --target-namespace: say what to pass.
    let file = dir.path().join("deployment.yaml");
    std::fs::write(&file, document(ARTIFACT_1_20)).unwrap();
    let empty = dir.path().join("empty");
    let out = run(&[
        "render",
        "-f",
        file.to_str().unwrap(),
        "--data-dir",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--target-namespace"), "{err}");
}

#[test]
fn the_target_is_looked_up_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = job_manager::open_store(&data, None).unwrap();
        let target: job_manager::model::DeploymentTarget =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "ack", "namespace": "default"},
                "spec": {"type": "session", "restUrl": "http://unused:8081",
                         "savepointDir": "oss://bucket/flink-savepoints",
                         "kubernetes": {"namespace": "flink-prod"}}
            }))
            .unwrap();
        store
            .write(vec![job_manager::store::Write1::Target(target)])
            .unwrap();
    }
    let file = dir.path().join("deployment.yaml");
    std::fs::write(
        &file,
        document(&format!("{ARTIFACT_1_20}      parallelism: 1\n")),
    )
    .unwrap();
    let base = [
        "render",
        "-f",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    // The document names the target (`ack`).
    let out = run(&base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = parse(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(o.job.metadata.namespace.as_deref(), Some("flink-prod"));
    let data_map = o.config_map.data.unwrap();
    let conf: BTreeMap<String, String> = serde_yaml::from_str(&data_map["config.yaml"]).unwrap();
    assert_eq!(
        conf["execution.checkpointing.savepoint-dir"],
        "oss://bucket/flink-savepoints"
    );
    // --target names one that is not a Kubernetes target.
    let mut args = base.to_vec();
    args.extend(["--target", "local"]);
    let out = run(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"local\"") && err.contains("not a Kubernetes target"),
        "{err}"
    );
    let mut args = base.to_vec();
    args.extend(["--target", "nope"]);
    let err = String::from_utf8_lossy(&run(&args).stderr).to_string();
    assert!(err.contains("no deployment target \"nope\""), "{err}");
}

#[test]
fn rbac_prints_a_role_and_binding_for_the_namespace() {
    let out = run(&[
        "rbac",
        "--namespace",
        "flink-jobs",
        "--manager-namespace",
        "ops",
        "--service-account",
        "jm",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    let role: Role = serde_yaml::from_value(docs[0].clone()).unwrap();
    let binding: RoleBinding = serde_yaml::from_value(docs[1].clone()).unwrap();
    assert_eq!(role.metadata.namespace.as_deref(), Some("flink-jobs"));
    assert_eq!(binding.metadata.namespace.as_deref(), Some("flink-jobs"));
    assert_eq!(binding.role_ref.name, role.metadata.name.clone().unwrap());
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "jm")
    );
    assert_eq!(subject.namespace.as_deref(), Some("ops"));
    // Every permission of the one list is granted, and the objects render needs are covered.
    let rules = role.rules.unwrap();
    let granted = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r.api_groups
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|g| g == group)
                && r.resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for p in job_manager::kubernetes::rbac::PERMISSIONS {
        for v in p.verbs {
            assert!(
                granted(p.group, p.resource, v),
                "{} {} {v}",
                p.group,
                p.resource
            );
        }
    }
    for (group, resource) in [
        ("", "configmaps"),
        ("", "services"),
        ("batch", "jobs"),
        ("apps", "deployments"),
    ] {
        for verb in ["get", "create", "patch", "delete", "watch"] {
            assert!(granted(group, resource, verb), "{group} {resource} {verb}");
        }
    }
    // A bad namespace is refused.
    let out = run(&["rbac", "--namespace", "Flink_Jobs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Flink_Jobs"));
}

#[test]
fn the_server_flags_still_parse_and_subcommands_do_not_take_them() {
    let out = run(&["--web.listen-address", "127.0.0.1:0", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("render") && help.contains("rbac") && help.contains("--data-dir"),
        "{help}"
    );
    let out = run(&[
        "rbac",
        "--namespace",
        "x",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
}

#[test]
fn the_managers_config_file_sets_images_and_the_metrics_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("job-manager.yml");
    std::fs::write(
        &config,
        "metrics_gateway: {url: 'http://mg.flink-suite:9091'}
kubernetes:
  images: {'1.20': registry.example.com/flink:1.20.1-ops}
  fetcher_image: registry.example.com/curl:8
",
    )
    .unwrap();
    let out = render(
        dir.path(),
        &document(ARTIFACT_1_20),
        &["--config.file", config.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = parse(&String::from_utf8(out.stdout).unwrap());
    let pod = o.job.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example.com/flink:1.20.1-ops")
    );
    assert_eq!(
        pod.init_containers.unwrap()[0].image.as_deref(),
        Some("registry.example.com/curl:8")
    );
    let data = o.config_map.data.unwrap();
    let conf: BTreeMap<String, String> = serde_yaml::from_str(&data["config.yaml"]).unwrap();
    assert_eq!(
        conf["metrics.reporter.flink_suite.hostUrl"],
        "http://mg.flink-suite:9091"
    );
    // An invalid kubernetes section is refused, naming the field.
    std::fs::write(&config, "kubernetes:\n  images: {latest: flink:latest}\n").unwrap();
    let out = render(
        dir.path(),
        &document(ARTIFACT_1_20),
        &["--config.file", config.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubernetes.images[\"latest\"]"), "{err}");
}

#[test]
fn replaced_user_labels_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (name, expected) in [
        (
            "pod-options",
            "note: kubernetes.labels[\"app.kubernetes.io/part-of\"] is set by job-manager; \"not-the-suite\" was replaced",
        ),
        (
            "pod-templates",
            "note: kubernetes.jobManagerPodTemplate.metadata.labels[\"app.kubernetes.io/component\"] is set by job-manager; \"sidecar\" was replaced",
        ),
    ] {
        let case = cases().into_iter().find(|c| c.name == name).unwrap();
        let out = render(dir.path(), &document(&case.template_spec), case.extra_args);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{name}: {err}");
    }
    let out = render(
        dir.path(),
        &document(&format!("{ARTIFACT_1_20}      parallelism: 2\n")),
        &[],
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("note:"),
        "no notes without a reason"
    );
}
