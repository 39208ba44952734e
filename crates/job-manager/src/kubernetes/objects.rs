//! The objects of one job: the ConfigMap (Flink's and log4j's configuration), the JobManager
//! (a batch/v1 Job running `standalone-job`) and its Service, the TaskManager Deployment.
//! The job's Secret (the artifact download token, or a jarUri with credentials; see
//! [`super::fetch`]) comes with them when the download needs one. The ConfigMap, Secret,
//! Service and Deployment are owned by the JobManager Job once it exists
//! ([`JobObjects::set_owner`]), so deleting the Job removes the set.

use std::collections::BTreeMap;

use common::labels::Component;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        batch::v1::{Job, JobSpec},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            EnvVar, KeyToPath, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
            Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
    Resource,
};

use super::{
    config_map_name,
    fetch::{self, fetcher, jar_source, JarSource},
    flink_conf::{self, ConfInput, FlinkVersion, Reporter},
    jobmanager_name,
    pods::{self, Identity, MAIN_CONTAINER},
    taskmanager_name, Error, JobRequest, Result, Settings,
};
use crate::template;

/// Where the ConfigMap is mounted (Flink's conf directory in the official images).
pub const CONF_DIR: &str = "/opt/flink/conf";
/// Where the JAR is put (Flink's user classpath in application mode).
pub const USRLIB_DIR: &str = "/opt/flink/usrlib";
/// Flink's log directory (the rolling file; stdout goes to the kubelet's files).
pub const LOG_DIR: &str = "/opt/flink/log";
/// The log4j file Flink's console scripts in the images read.
pub const LOG4J_FILE: &str = "log4j-console.properties";
/// Annotation on the JobManager Job with the Flink job id it runs.
pub const FLINK_JOB_ID_ANNOTATION: &str = "flink-suite.io/flink-job-id";

const DEFAULT_CPU: f64 = 1.0;

/// The Kubernetes objects of one job. `Debug` shows the Secret's name and keys, never its
/// values.
#[derive(Clone, PartialEq)]
pub struct JobObjects {
    pub config_map: ConfigMap,
    /// The download token or the jarUri with credentials, when the download needs one.
    pub secret: Option<Secret>,
    pub service: Service,
    pub jobmanager: Job,
    pub taskmanager: Deployment,
    /// Settings of the deployment that have no effect here, for the user to read.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for JobObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self.secret.as_ref().map(|s| {
            let keys: Vec<&String> = s.data.iter().flat_map(|d| d.keys()).collect();
            format!(
                "{:?} keys {keys:?}",
                s.metadata.name.as_deref().unwrap_or_default()
            )
        });
        f.debug_struct("JobObjects")
            .field("config_map", &self.config_map)
            .field("secret", &secret)
            .field("service", &self.service)
            .field("jobmanager", &self.jobmanager)
            .field("taskmanager", &self.taskmanager)
            .field("notes", &self.notes)
            .finish()
    }
}

impl JobObjects {
    /// Makes the ConfigMap, Secret, Service and TaskManager Deployment owned by the JobManager Job
    /// (`uid` is the Job's, known once the API server created it). Deletion is not blocked
    /// on them (`blockOwnerDeletion` would need `update` on `jobs/finalizers`).
    pub fn set_owner(&mut self, uid: &str) {
        let meta = &self.jobmanager.metadata;
        let owner = OwnerReference {
            api_version: Job::API_VERSION.into(),
            kind: Job::KIND.into(),
            name: meta.name.clone().unwrap_or_default(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        for m in [
            Some(&mut self.config_map.metadata),
            self.secret.as_mut().map(|s| &mut s.metadata),
            Some(&mut self.service.metadata),
            Some(&mut self.taskmanager.metadata),
        ]
        .into_iter()
        .flatten()
        {
            m.owner_references = Some(vec![owner.clone()]);
        }
    }

    /// The objects as JSON, in the order to apply them (ConfigMap, Secret if any, Service,
    /// JobManager Job, TaskManager Deployment).
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        let mut v = vec![serde_json::to_value(&self.config_map)?];
        if let Some(s) = &self.secret {
            v.push(serde_json::to_value(s)?);
        }
        v.extend([
            serde_json::to_value(&self.service)?,
            serde_json::to_value(&self.jobmanager)?,
            serde_json::to_value(&self.taskmanager)?,
        ]);
        Ok(v)
    }

    /// A multi-document YAML stream of the objects (as `kubectl apply -f -` reads it).
    pub fn to_yaml_stream(&self) -> Result<String, serde_yaml::Error> {
        let mut docs = vec![serde_yaml::to_string(&self.config_map)?];
        if let Some(s) = &self.secret {
            docs.push(serde_yaml::to_string(s)?);
        }
        docs.extend([
            serde_yaml::to_string(&self.service)?,
            serde_yaml::to_string(&self.jobmanager)?,
            serde_yaml::to_string(&self.taskmanager)?,
        ]);
        Ok(docs
            .iter()
            .map(|d| format!("---\n{d}"))
            .collect::<Vec<_>>()
            .concat())
    }
}

/// Builds the objects of one job. Pure: the same request gives the same objects.
pub fn build(req: &JobRequest<'_>, settings: &Settings) -> Result<JobObjects> {
    let d = req.deployment;
    let ts = &d.spec.template.spec;
    let mut notes = Vec::new();
    let parallelism = u32::try_from(ts.parallelism)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| {
            invalid(
                "spec.template.spec.parallelism",
                format!("must be ≥ 1 (got {})", ts.parallelism),
            )
        })?;
    let number_of_task_managers = ts
        .number_of_task_managers
        .map(|n| {
            u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(
                    "spec.template.spec.numberOfTaskManagers",
                    format!("must be ≥ 1 (got {n})"),
                )
            })
        })
        .transpose()?;
    if ts.artifact.kind != "JAR" {
        return Err(invalid(
            "spec.template.spec.artifact.kind",
            format!(
                "{:?} is not supported on Kubernetes targets: use JAR",
                ts.artifact.kind
            ),
        ));
    }
    if req.flink_job_id.len() != 32 || !req.flink_job_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(
            "jobId",
            format!(
                "the Flink job id must be 32 hexadecimal digits (got {:?})",
                req.flink_job_id
            ),
        ));
    }
    let namespace = if d.metadata.namespace.is_empty() {
        crate::DEFAULT_NAMESPACE.to_string()
    } else {
        d.metadata.namespace.clone()
    };
    let who = Identity {
        namespace: namespace.clone(),
        deployment_id: d.id().to_string(),
        deployment_name: d.metadata.name.clone(),
        job_id: req.job_id.to_string(),
    };
    let ctx = template::Context {
        namespace: namespace.clone(),
        deployment_id: who.deployment_id.clone(),
        deployment_name: who.deployment_name.clone(),
        job_id: who.job_id.clone(),
    };
    let user_config = template::render_config(&ts.flink_configuration, &ctx)
        .map_err(|e| invalid("spec.template.spec", e.to_string()))?;
    let version_text = ts
        .artifact
        .flink_version
        .clone()
        .unwrap_or_else(|| settings.default_flink_version.clone());
    let version = FlinkVersion::parse(&version_text).ok_or_else(|| {
        invalid(
            "spec.template.spec.artifact.flinkVersion",
            format!("{version_text:?} is not a Flink version (e.g. 1.17, 1.20 or 2.1)"),
        )
    })?;
    let image = settings.image(&ts.artifact, version, &version_text);
    let custom = pods::customisation(ts.kubernetes.as_ref())?;
    notes.extend(pods::overridden_labels(&custom, &who));
    let res = ts.resources.as_ref();
    let jm_res = res.and_then(|r| r.jobmanager.as_ref());
    let tm_res = res.and_then(|r| r.taskmanager.as_ref());
    let jm_cpu = cpu(
        "spec.template.spec.resources.jobmanager.cpu",
        jm_res.and_then(|r| r.cpu),
    )?;
    let tm_cpu = cpu(
        "spec.template.spec.resources.taskmanager.cpu",
        tm_res.and_then(|r| r.cpu),
    )?;

    let jm_name = jobmanager_name(req.job_id);
    let tm_name = taskmanager_name(req.job_id);
    let cm_name = config_map_name(req.job_id);
    let cluster_id = super::cluster_id(req.job_id);
    let conf = flink_conf::assemble(&ConfInput {
        user: &user_config,
        parallelism,
        number_of_task_managers,
        jobmanager_memory: jm_res.and_then(|r| r.memory.as_deref()),
        taskmanager_memory: tm_res.and_then(|r| r.memory.as_deref()),
        service_name: &jm_name,
        cluster_id: &cluster_id,
        target_namespace: req.target_namespace,
        savepoint_dir: req.savepoint_dir.as_deref(),
        checkpoint_dir: req.checkpoint_dir.as_deref(),
        metrics_gateway: req.metrics_gateway_url.as_deref().map(|url| Reporter {
            url,
            namespace: &namespace,
            deployment_id: &who.deployment_id,
            job_id: &who.job_id,
        }),
    })?;
    notes.extend(conf.notes.iter().cloned());
    let flink_conf_text = flink_conf::render(&conf.config, version)?;
    let log4j = template::render_log4j(ts.logging.as_ref(), &ctx)
        .map_err(|e| invalid("spec.template.spec", e.to_string()))?;
    let log4j = with_console_appender(&log4j, &mut notes);

    let jar = jar_source(req, &namespace)?;
    let secret = fetch::secret(
        &jar,
        req.artifact_store.as_ref(),
        req.target_namespace,
        who.labels(None),
    );

    // The ConfigMap.
    let config_map = ConfigMap {
        metadata: meta(&cm_name, req.target_namespace, who.labels(None), None),
        data: Some(BTreeMap::from([
            (version.config_file_name().to_string(), flink_conf_text),
            (LOG4J_FILE.to_string(), log4j),
        ])),
        ..Default::default()
    };

    // The JobManager.
    let mut args = vec![
        "standalone-job".to_string(),
        "--job-id".to_string(),
        req.flink_job_id.clone(),
    ];
    if let Some(class) = ts
        .artifact
        .entry_class
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        args.extend(["--job-classname".to_string(), class.trim().to_string()]);
    }
    if let Some(r) = &req.restore {
        args.extend(["--fromSavepoint".to_string(), r.path.clone()]);
        if r.allow_non_restored_state {
            args.push("--allowNonRestoredState".into());
        }
    }
    if let Some(main_args) = &ts.artifact.main_args {
        let rendered = template::render(main_args, &ctx)
            .map_err(|e| invalid("spec.template.spec.artifact.mainArgs", e.to_string()))?;
        let split = template::split_args(&rendered)
            .map_err(|e| invalid("spec.template.spec.artifact.mainArgs", e.to_string()))?;
        args.extend(split);
    }
    let object_labels = |c: Option<Component>| {
        let mut l = custom.object_labels.clone();
        l.extend(who.labels(c));
        l
    };
    let mut jm_pod = pod(
        &image,
        &jm_name,
        args,
        &[
            ("rpc", flink_conf::RPC_PORT),
            ("blob", flink_conf::BLOB_PORT),
            ("rest", flink_conf::REST_PORT),
        ],
        flink_conf::RPC_PORT,
        jm_cpu,
        conf.jobmanager_memory_bytes,
        &cm_name,
        version,
        &jar,
        settings,
    );
    let tm_args = vec!["taskmanager".to_string()];
    let mut tm_pod = pod(
        &image,
        &jm_name,
        tm_args,
        &[("rpc", flink_conf::TASKMANAGER_RPC_PORT)],
        flink_conf::TASKMANAGER_RPC_PORT,
        tm_cpu,
        conf.taskmanager_memory_bytes,
        &cm_name,
        version,
        &jar,
        settings,
    );
    // Without Flink's HA a restarted JobManager would start the job again from the
    // savepoint it was given, going back in time: a lost JobManager fails the Job and the
    // manager decides. With Kubernetes HA, the JobManager resumes from its own records.
    let (restart_policy, backoff_limit) = if conf.high_availability {
        ("OnFailure", 6)
    } else {
        ("Never", 0)
    };
    if let Some(spec) = jm_pod.spec.as_mut() {
        spec.restart_policy = Some(restart_policy.into());
    }
    if let Some(spec) = tm_pod.spec.as_mut() {
        spec.restart_policy = Some("Always".into());
    }
    for (p, template, component) in [
        (
            &mut jm_pod,
            &custom.jobmanager_template,
            Component::JobManager,
        ),
        (
            &mut tm_pod,
            &custom.taskmanager_template,
            Component::TaskManager,
        ),
    ] {
        pods::apply_options(p, &custom.options);
        if let Some(t) = template {
            pods::merge_template(p, t);
        }
        pods::enforce_labels(p, &who.labels(Some(component)));
    }

    let jobmanager = Job {
        metadata: meta(
            &jm_name,
            req.target_namespace,
            object_labels(Some(Component::JobManager)),
            Some(BTreeMap::from([(
                FLINK_JOB_ID_ANNOTATION.to_string(),
                req.flink_job_id.clone(),
            )])),
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(backoff_limit),
            template: jm_pod,
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = Service {
        metadata: meta(
            &jm_name,
            req.target_namespace,
            object_labels(Some(Component::JobManager)),
            None,
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(who.selector(Component::JobManager)),
            ports: Some(
                [
                    ("rpc", flink_conf::RPC_PORT),
                    ("blob", flink_conf::BLOB_PORT),
                    ("rest", flink_conf::REST_PORT),
                ]
                .into_iter()
                .map(|(name, port)| ServicePort {
                    name: Some(name.into()),
                    port,
                    target_port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let replicas = i32::try_from(conf.taskmanagers).map_err(|_| {
        invalid(
            "spec.template.spec.numberOfTaskManagers",
            format!("{} TaskManagers are too many", conf.taskmanagers),
        )
    })?;
    let taskmanager = Deployment {
        metadata: meta(
            &tm_name,
            req.target_namespace,
            object_labels(Some(Component::TaskManager)),
            None,
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(who.selector(Component::TaskManager)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: tm_pod,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(JobObjects {
        config_map,
        secret,
        service,
        jobmanager,
        taskmanager,
        notes,
    })
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn meta(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    annotations: Option<BTreeMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels),
        annotations,
        ..Default::default()
    }
}

/// A CPU count as a Kubernetes quantity (`1`, `500m`).
fn cpu(field: &str, cpu: Option<f64>) -> Result<Quantity> {
    let c = cpu.unwrap_or(DEFAULT_CPU);
    if !(c.is_finite() && c > 0.0 && c <= 1024.0) {
        return Err(invalid(
            field,
            format!("must be a number of CPUs > 0 (got {c})"),
        ));
    }
    let milli = (c * 1000.0).round() as u64;
    let milli = milli.max(1);
    Ok(Quantity(if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }))
}

/// Bytes as a Kubernetes quantity, rounded up to whole MiB.
fn memory_quantity(bytes: u64) -> Quantity {
    Quantity(format!("{}Mi", bytes.div_ceil(1 << 20)))
}

#[allow(clippy::too_many_arguments)]
fn pod(
    image: &str,
    service: &str,
    args: Vec<String>,
    ports: &[(&str, i32)],
    liveness_port: i32,
    cpu: Quantity,
    memory_bytes: u64,
    config_map: &str,
    version: FlinkVersion,
    jar: &JarSource,
    settings: &Settings,
) -> PodTemplateSpec {
    let resources = BTreeMap::from([
        ("cpu".to_string(), cpu),
        ("memory".to_string(), memory_quantity(memory_bytes)),
    ]);
    let main = Container {
        name: MAIN_CONTAINER.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        // The images' entrypoint writes this into Flink's configuration when it can (it
        // defaults to the pod's host name, which TaskManagers cannot reach).
        env: Some(vec![EnvVar {
            name: "JOB_MANAGER_RPC_ADDRESS".into(),
            value: Some(service.into()),
            value_from: None,
        }]),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| ContainerPort {
                    name: Some((*name).into()),
                    container_port: *port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(liveness_port),
                ..Default::default()
            }),
            initial_delay_seconds: Some(30),
            period_seconds: Some(60),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "flink-config".into(),
                mount_path: CONF_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "flink-usrlib".into(),
                mount_path: USRLIB_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "flink-logs".into(),
                mount_path: LOG_DIR.into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let file = version.config_file_name();
    PodTemplateSpec {
        metadata: Some(ObjectMeta::default()),
        spec: Some(PodSpec {
            init_containers: Some(vec![fetcher(jar, settings)]),
            containers: vec![main],
            volumes: Some(vec![
                Volume {
                    name: "flink-config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: config_map.into(),
                        items: Some(vec![
                            KeyToPath {
                                key: file.into(),
                                path: file.into(),
                                ..Default::default()
                            },
                            KeyToPath {
                                key: LOG4J_FILE.into(),
                                path: LOG4J_FILE.into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "flink-usrlib".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "flink-logs".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
    }
}

/// Adds a stdout appender to a log4j2 properties configuration (the kubelet keeps stdout
/// for log-shipper and `kubectl logs`); the rolling file stays. XML or JSON configurations
/// are left as they are, with a note.
fn with_console_appender(log4j: &str, notes: &mut Vec<String>) -> String {
    let head = log4j.trim_start();
    if head.starts_with('<') || head.starts_with('{') {
        notes.push(
            "logging: the custom log4j2 configuration is not in properties format; job-manager did not add its stdout appender"
                .into(),
        );
        return log4j.to_string();
    }
    if log4j.contains("appender.console.") {
        return log4j.to_string();
    }
    let mut out = log4j.trim_end().to_string();
    out.push_str(
        "\n\n# Added by job-manager on Kubernetes: also log to stdout.\n\
         rootLogger.appenderRef.console.ref = ConsoleAppender\n\
         appender.console.name = ConsoleAppender\n\
         appender.console.type = CONSOLE\n\
         appender.console.layout.type = PatternLayout\n\
         appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5level %-60c %x - %m%n\n",
    );
    out
}
