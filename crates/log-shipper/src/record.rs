//! What a sink receives: an event plus where it came from and whose it is.
//!
//! [`Labels`] carry the suite's identity of the Flink pod that wrote the file (namespace,
//! deployment id, job id, pod, component; see `common::labels`). They become fields of
//! every record, the OSS object path `logs/{namespace}/{deploymentId}/{jobId}/{pod}/{file}`
//! and the SLS topic `namespace:deploymentId:jobId`. A [`LabelSource`] maps a file to its
//! labels: static ones from the config today, Kubernetes pod discovery behind the same seam.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::SystemTime};

use common::labels::{fields, FlinkPodLabels};
use serde::{Deserialize, Serialize};

use crate::multiline::{self, Event};

/// Who wrote a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Labels {
    /// Suite namespace.
    pub namespace: Option<String>,
    /// Deployment id.
    pub deployment_id: Option<String>,
    /// Deployment name.
    pub deployment_name: Option<String>,
    /// Flink job id.
    pub job_id: Option<String>,
    /// `jobmanager` or `taskmanager`.
    pub component: Option<String>,
    /// Pod name (or host name outside Kubernetes).
    pub pod: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Pod IP or host: the SLS `source`.
    pub source: Option<String>,
}

impl Labels {
    /// Labels from a suite-managed pod's Kubernetes labels plus its name, container and IP.
    pub fn from_pod(
        pod_labels: &FlinkPodLabels,
        pod: &str,
        container: Option<&str>,
        ip: Option<&str>,
    ) -> Self {
        Self {
            namespace: Some(pod_labels.namespace.clone()),
            deployment_id: Some(pod_labels.deployment_id.clone()),
            deployment_name: Some(pod_labels.deployment_name.clone()).filter(|s| !s.is_empty()),
            job_id: pod_labels.job_id.clone(),
            component: Some(pod_labels.component.as_str().to_string()),
            pod: Some(pod.to_string()),
            container: container.map(str::to_string),
            source: ip.map(str::to_string),
        }
    }

    /// Fills unset labels from the Downward-API style environment (`POD_NAME`,
    /// `POD_NAMESPACE` is *not* used: the suite namespace comes from the label), and the host
    /// name as the source.
    pub fn with_env_defaults(mut self) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if self.pod.is_none() {
            self.pod = env("POD_NAME");
        }
        if self.source.is_none() {
            self.source = env("POD_IP").or_else(|| env("HOSTNAME"));
        }
        self
    }

    /// The SLS topic `namespace:deploymentId:jobId` (empty parts kept empty), or `""` when
    /// nothing is known.
    pub fn topic(&self) -> String {
        if self.namespace.is_none() && self.deployment_id.is_none() && self.job_id.is_none() {
            return String::new();
        }
        format!(
            "{}:{}:{}",
            self.namespace.as_deref().unwrap_or(""),
            self.deployment_id.as_deref().unwrap_or(""),
            self.job_id.as_deref().unwrap_or("")
        )
    }

    /// Path segments `{namespace}/{deploymentId}/{jobId}/{pod}`, unknown ones left out.
    pub fn path_segments(&self) -> Vec<&str> {
        [
            &self.namespace,
            &self.deployment_id,
            &self.job_id,
            &self.pod,
        ]
        .into_iter()
        .filter_map(|s| s.as_deref())
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// The labels as record fields (names from `common::labels::fields`).
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut v = Vec::new();
        self.push_fields(&mut v);
        v
    }

    /// The same, appended to `out` (no allocation of its own).
    pub fn push_fields<'a>(&'a self, out: &mut Vec<(&'static str, &'a str)>) {
        for (k, s) in [
            (fields::NAMESPACE, &self.namespace),
            (fields::DEPLOYMENT_ID, &self.deployment_id),
            (fields::DEPLOYMENT_NAME, &self.deployment_name),
            (fields::JOB_ID, &self.job_id),
            (fields::COMPONENT, &self.component),
            ("pod", &self.pod),
            ("container", &self.container),
        ] {
            if let Some(s) = s {
                out.push((k, s.as_str()));
            }
        }
    }
}

/// Maps a watched file to the labels of the process that writes it.
pub trait LabelSource: Send + Sync {
    /// Labels for the file at `path`.
    fn labels_for(&self, path: &Path) -> Labels;

    /// Whether a file newly matched by an input glob is to be watched (Kubernetes mode:
    /// only container logs of the suite's live pods).
    fn accepts(&self, _path: &Path) -> bool {
        true
    }

    /// Whether the file is a CRI-format container log (prefix stripped, partial lines
    /// joined).
    fn cri(&self, _path: &Path) -> bool {
        false
    }

    /// Whether the writer of the file is known to be gone for good (Kubernetes mode: the pod
    /// is no longer listed); such a file is unwatched once it is read and acknowledged.
    fn gone(&self, _path: &Path) -> bool {
        false
    }

    /// The file's output name below `logs/{namespace}/{deploymentId}/{jobId}/{pod}/`, when
    /// the source knows better than "the path below the input glob's fixed directory"
    /// (job-manager's local clusters: the identity is in the directories, so just the file).
    fn output_name(&self, _path: &Path) -> Option<String> {
        None
    }
}

/// Labels of the files of job-manager's `local` clusters, taken from where they lie:
/// `{root}/{namespace}/{deploymentId}/{jobId}/{file}`. The pod is `jobmanager-N` or
/// `taskmanager-N` after Flink's file name (`flink-{ident}-standalonesession-N-{host}.log`,
/// `...-taskexecutor-N-...`). Files elsewhere get the `fallback`'s labels.
pub struct LocalClusterLabels {
    /// job-manager's `{data-dir}/logs`.
    pub root: std::path::PathBuf,
    /// Labels of every other file.
    pub fallback: Arc<dyn LabelSource>,
}

impl LocalClusterLabels {
    /// `(namespace, deploymentId, jobId, file)` of a file under `root`, if it is one.
    fn parts<'a>(&self, path: &'a Path) -> Option<[&'a str; 4]> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        match parts[..] {
            [ns, dep, job, file] if !ns.is_empty() && !dep.is_empty() && !job.is_empty() => {
                Some([ns, dep, job, file])
            }
            _ => None,
        }
    }
}

/// `jobmanager-N` / `taskmanager-N` from a Flink daemon's log file name, else `local`.
fn local_pod(file: &str) -> String {
    let name = file.to_lowercase();
    let (component, marker) = if name.contains("-standalonesession-") {
        ("jobmanager", "-standalonesession-")
    } else if name.contains("-taskexecutor-") {
        ("taskmanager", "-taskexecutor-")
    } else {
        return "local".into();
    };
    let n = name
        .split_once(marker)
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "0".into());
    format!("{component}-{n}")
}

impl LabelSource for LocalClusterLabels {
    fn labels_for(&self, path: &Path) -> Labels {
        let mut l = self.fallback.labels_for(path);
        if let Some([ns, dep, job, file]) = self.parts(path) {
            l.namespace = Some(ns.to_string());
            l.deployment_id = Some(dep.to_string());
            l.job_id = Some(job.to_string());
            l.pod = Some(local_pod(file));
            l.component = StaticLabels::default().labels_for(path).component;
        }
        l
    }

    fn accepts(&self, path: &Path) -> bool {
        self.parts(path).is_some() || self.fallback.accepts(path)
    }

    fn cri(&self, path: &Path) -> bool {
        self.parts(path).is_none() && self.fallback.cri(path)
    }

    fn gone(&self, path: &Path) -> bool {
        self.parts(path).is_none() && self.fallback.gone(path)
    }

    fn output_name(&self, path: &Path) -> Option<String> {
        match self.parts(path) {
            Some([.., file]) => Some(file.to_string()),
            None => self.fallback.output_name(path),
        }
    }
}

/// The same labels for every file (from the config and the environment). The component is
/// guessed from the Flink file name when not configured (`*-standalonesession-*`,
/// `*-jobmanager*` → jobmanager; `*-taskexecutor-*`, `*taskmanager*` → taskmanager).
#[derive(Debug, Clone, Default)]
pub struct StaticLabels(pub Labels);

impl LabelSource for StaticLabels {
    fn labels_for(&self, path: &Path) -> Labels {
        let mut l = self.0.clone();
        if l.component.is_none() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if name.contains("taskexecutor") || name.contains("taskmanager") {
                l.component = Some("taskmanager".into());
            } else if name.contains("standalonesession")
                || name.contains("jobmanager")
                || name.contains("clusterentrypoint")
            {
                l.component = Some("jobmanager".into());
            }
        }
        l
    }
}

/// Labels from a Kubernetes Downward API `labels` file (`key="value"` per line), which a
/// sidecar mounts from its pod's metadata: the suite's pod labels (namespace, deployment id,
/// job id, component) on top of the configured ones. The file is re-read for every new file,
/// so a job id added to the pod later reaches files opened after it.
#[derive(Debug, Clone)]
pub struct DownwardApiLabels {
    /// The mounted file (`/etc/podinfo/labels`).
    pub path: std::path::PathBuf,
    /// Configured labels (pod name, source, container) underneath.
    pub base: Labels,
}

/// Parses a Downward API labels file: `key="value"` lines, values with Go-style escapes.
pub fn parse_downward_labels(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((
                k.trim().to_string(),
                v.replace("\\\"", "\"").replace("\\\\", "\\"),
            ))
        })
        .collect()
}

impl LabelSource for DownwardApiLabels {
    fn labels_for(&self, path: &Path) -> Labels {
        let mut l = StaticLabels(self.base.clone()).labels_for(path);
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return l;
        };
        match FlinkPodLabels::from_labels(&parse_downward_labels(&text)) {
            Ok(pod) => {
                let from_pod = Labels::from_pod(
                    &pod,
                    l.pod.as_deref().unwrap_or(""),
                    l.container.as_deref(),
                    l.source.as_deref(),
                );
                l.namespace = from_pod.namespace;
                l.deployment_id = from_pod.deployment_id;
                l.deployment_name = from_pod.deployment_name.or(l.deployment_name);
                l.job_id = from_pod.job_id.or(l.job_id);
                l.component = from_pod.component;
            }
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "Pod labels file does not describe a suite-managed Flink pod; using the configured labels.");
            }
        }
        l
    }
}

/// What the shipper knows about one stream (input path).
#[derive(Debug)]
pub struct StreamInfo {
    /// The input path.
    pub path: String,
    /// File name (`jobmanager.log`).
    pub file_name: String,
    /// Output name relative to the sink's root: the path below the input glob's fixed
    /// directory (`jobmanager.log`, or `pod-a/jobmanager.log` for `logs/*/jobmanager.log`).
    pub relative: String,
    /// Who wrote it.
    pub labels: Labels,
}

impl StreamInfo {
    /// Object key / relative output path: `[prefix/]logs/{ns}/{dep}/{job}/{pod}/{relative}`
    /// when labels are known; with `bare_when_unlabelled`, just `{relative}` otherwise.
    pub fn object_path(&self, bare_when_unlabelled: bool) -> String {
        let segs = self.labels.path_segments();
        if segs.is_empty() && bare_when_unlabelled {
            return self.relative.clone();
        }
        let mut p = String::from("logs/");
        for s in segs {
            p.push_str(&sanitize_segment(s));
            p.push('/');
        }
        p.push_str(&self.relative);
        p
    }
}

fn sanitize_segment(s: &str) -> String {
    s.replace(['/', '\\'], "_").replace("..", "_")
}

/// One event on its way to a sink.
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it came from.
    pub stream: Arc<StreamInfo>,
    /// The event.
    pub event: Event,
    /// When it was read.
    pub read_at: SystemTime,
}

impl Record {
    /// The event text (lossy UTF-8).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.event.data)
    }

    /// Unix time of the event: its log4j timestamp (taken as UTC plus the offset) or,
    /// failing that, when it was read.
    pub fn time(&self, utc_offset_seconds: i32) -> (i64, u32) {
        let text = self.event.data.get(..23).unwrap_or(&[]);
        if let Some(t) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| multiline::parse_time(t, utc_offset_seconds))
        {
            return t;
        }
        let d = self
            .read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs() as i64, d.subsec_nanos())
    }

    /// Key/value contents, borrowed from the record and its `text`: the parsed log4j fields
    /// when the event matches the layout (`time`, `level`, `logger`, `message`), otherwise
    /// `message` = the raw text; then `file`, `path` and the labels.
    pub fn field_refs<'a>(&'a self, text: &'a str, out: &mut Vec<(&'static str, &'a str)>) {
        match multiline::parse_log4j(text) {
            Some(f) => {
                out.push(("time", f.time));
                out.push(("level", f.level));
                out.push(("logger", f.logger));
                out.push(("message", f.message));
            }
            None => out.push(("message", text.strip_suffix('\n').unwrap_or(text))),
        }
        out.push(("file", &self.stream.file_name));
        out.push(("path", &self.stream.path));
        self.stream.labels.push_fields(out);
    }

    /// The same contents, owned.
    pub fn contents(&self) -> Vec<(&'static str, String)> {
        let text = self.text();
        let mut v = Vec::with_capacity(12);
        self.field_refs(&text, &mut v);
        v.into_iter().map(|(k, v)| (k, v.to_string())).collect()
    }

    /// The structured JSON form (one object, no newline).
    pub fn to_json(&self) -> String {
        let mut m = BTreeMap::new();
        for (k, v) in self.contents() {
            m.insert(k, serde_json::Value::String(v));
        }
        m.insert("offset", serde_json::Value::from(self.event.end));
        serde_json::to_string(&m).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels {
            namespace: Some("ns".into()),
            deployment_id: Some("dep".into()),
            job_id: Some("job".into()),
            pod: Some("jm-0".into()),
            ..Labels::default()
        }
    }

    #[test]
    fn labels_name_topic_and_object_path() {
        let info = StreamInfo {
            path: "/opt/flink/log/jobmanager.log".into(),
            file_name: "jobmanager.log".into(),
            relative: "jobmanager.log".into(),
            labels: labels(),
        };
        assert_eq!(info.labels.topic(), "ns:dep:job");
        assert_eq!(
            info.object_path(true),
            "logs/ns/dep/job/jm-0/jobmanager.log"
        );
        let bare = StreamInfo {
            labels: Labels::default(),
            ..info
        };
        assert_eq!(bare.object_path(true), "jobmanager.log");
        assert_eq!(bare.object_path(false), "logs/jobmanager.log");
        assert_eq!(bare.labels.topic(), "");
    }

    #[test]
    fn pod_labels_map_to_record_fields() {
        let pod = FlinkPodLabels {
            namespace: "default".into(),
            deployment_id: "d1".into(),
            deployment_name: "wordcount".into(),
            job_id: Some("j1".into()),
            component: common::labels::Component::JobManager,
        };
        let l = Labels::from_pod(
            &pod,
            "wc-jm-0",
            Some("flink-main-container"),
            Some("10.0.0.7"),
        );
        assert_eq!(l.topic(), "default:d1:j1");
        let f: BTreeMap<_, _> = l.fields().into_iter().collect();
        assert_eq!(f["deploymentId"], "d1");
        assert_eq!(f["component"], "jobmanager");
        assert_eq!(f["pod"], "wc-jm-0");
        assert_eq!(l.source.as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn downward_api_labels_file_supplies_the_suite_identity() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("labels");
        std::fs::write(
            &f,
            "app.kubernetes.io/component=\"jobmanager\"\napp.kubernetes.io/managed-by=\"job-manager\"\n\
             app.kubernetes.io/part-of=\"flink-suite\"\nflink-suite.io/deployment-id=\"d-1\"\n\
             flink-suite.io/job-id=\"a0b1\"\nflink-suite.io/namespace=\"team-a\"\npod-template-hash=\"x\"\n",
        )
        .unwrap();
        let src = DownwardApiLabels {
            path: f.clone(),
            base: Labels {
                pod: Some("wc-jm-0".into()),
                ..Labels::default()
            },
        };
        let l = src.labels_for(Path::new("/opt/flink/log/flink--taskexecutor-0.log"));
        assert_eq!(l.topic(), "team-a:d-1:a0b1");
        assert_eq!(
            l.component.as_deref(),
            Some("jobmanager"),
            "the pod label wins"
        );
        assert_eq!(l.pod.as_deref(), Some("wc-jm-0"));
        std::fs::write(&f, "app=\"other\"\n").unwrap();
        let l = src.labels_for(Path::new("x.log"));
        assert_eq!(l.topic(), "", "a foreign pod's labels are not used");
    }

    #[test]
    fn local_cluster_files_are_labelled_from_their_location() {
        let src = LocalClusterLabels {
            root: "/data/job-manager/logs".into(),
            fallback: Arc::new(StaticLabels::default()),
        };
        let p =
            Path::new("/data/job-manager/logs/default/d-1/j-1/flink-j-1-taskexecutor-0-host.log");
        let l = src.labels_for(p);
        assert_eq!(l.topic(), "default:d-1:j-1");
        assert_eq!(l.pod.as_deref(), Some("taskmanager-0"));
        assert_eq!(l.component.as_deref(), Some("taskmanager"));
        let info = StreamInfo {
            path: p.display().to_string(),
            file_name: "flink-j-1-taskexecutor-0-host.log".into(),
            relative: src.output_name(p).unwrap(),
            labels: l,
        };
        assert_eq!(
            info.object_path(true),
            "logs/default/d-1/j-1/taskmanager-0/flink-j-1-taskexecutor-0-host.log"
        );
        let jm = src.labels_for(Path::new(
            "/data/job-manager/logs/ns/d/j/flink-j-standalonesession-1-h.out",
        ));
        assert_eq!(jm.pod.as_deref(), Some("jobmanager-1"));
        let other = Path::new("/data/job-manager/logs/ns/d/x.log");
        assert_eq!(src.labels_for(other).topic(), "");
        assert_eq!(src.output_name(other), None);
    }

    #[test]
    fn component_is_guessed_from_flink_file_names() {
        let s = StaticLabels::default();
        let jm = s.labels_for(Path::new("log/flink-u-standalonesession-0-host.log"));
        let tm = s.labels_for(Path::new("log/flink-u-taskexecutor-0-host.out"));
        assert_eq!(jm.component.as_deref(), Some("jobmanager"));
        assert_eq!(tm.component.as_deref(), Some("taskmanager"));
    }
}
