//! Kubernetes mode end to end: the real binary against a strict stand-in for the Kubernetes
//! API (`support/fake_kube.rs`: bearer token, exact label and field selectors, lists and
//! watches) and a directory laid out like kubelet's /var/log/pods with CRI-format files; it
//! ships the suite pods' container logs with their labels, picks up new pods through the
//! watch, ignores foreign ones, keeps shipping through an API outage and lets a deleted
//! pod's file go once it is read.

mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
};

use common::testkit;
use log_shipper::{
    kubernetes::{KubernetesConfig, PodLabels},
    record::{LabelSource, StaticLabels},
};
use serde_json::{json, Value};
use support::fake_kube::{pod, suite_labels, FakeKube, DEP, JOB, NODE, TOKEN};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

fn append(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// CRI lines: `(stream, tag, message)`.
fn cri(lines: &[(&str, &str, &str)]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, (s, t, m))| format!("2024-01-01T00:00:0{}.123456789Z {s} {t} {m}\n", i % 10))
        .collect()
}

fn read_json(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn config(dir: &Path, url: &str, pods: &Path, token: &Path) -> PathBuf {
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "kubernetes:\n  node_name: {NODE}\n  pod_log_dir: {}\n  api_url: {url}\n  token_file: {}\nmultiline: {{timeout: 300ms}}\npoll_interval: 50ms\n",
            pods.display(),
            token.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn ships_suite_pods_container_logs_with_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let out = dir.path().join("out");
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    let api = Arc::new(FakeKube::default());
    api.add_flink_pod("wordcount-jm-0", "uid-jm", "jobmanager", "10.1.0.5");
    // Another workload on this node, and a suite pod on another node.
    api.add(
        NODE,
        pod("nginx-1", "uid-nginx", json!({"app": "nginx"}), "10.1.0.9"),
    );
    api.add(
        "node-2",
        pod(
            "wordcount-tm-9",
            "uid-tm9",
            suite_labels("taskmanager", Some(JOB)),
            "10.2.0.5",
        ),
    );
    let url = api.serve();

    let jm_log = pods.join("flink_wordcount-jm-0_uid-jm/flink-main-container/0.log");
    append(
        &jm_log,
        &cri(&[
            ("stdout", "F", "2024-01-01 00:00:00,000 INFO  org.apache.flink.runtime.entrypoint.ClusterEntrypoint [] - Starting."),
            ("stdout", "P", "2024-01-01 00:00:01,000 INFO  org.example.Big [] - a very "),
            ("stdout", "P", "long line split "),
            ("stdout", "F", "by the runtime"),
            ("stderr", "F", "2024-01-01 00:00:02,000 ERROR org.apache.flink.runtime.taskmanager.Task [] - Source switched to FAILED."),
            ("stderr", "F", "java.lang.RuntimeException: boom"),
            ("stderr", "F", "\tat org.example.Job.map(Job.java:42)"),
            ("stderr", "F", "Caused by: java.io.IOException: disk"),
            ("stderr", "F", "\t... 3 more"),
            ("stdout", "F", "2024-01-01 00:00:03,000 INFO  org.example.After [] - after the trace"),
        ]),
    );
    let foreign = pods.join("default_nginx-1_uid-nginx/nginx/0.log");
    append(&foreign, &cri(&[("stdout", "F", "GET / 200")]));
    let other_node = pods.join("flink_wordcount-tm-9_uid-tm9/flink-main-container/0.log");
    append(&other_node, &cri(&[("stdout", "F", "not on this node")]));

    let cfg = config(dir.path(), &url, &pods, &token);
    let state = dir.path().join("state");
    let args = [
        "--config.file",
        cfg.to_str().unwrap(),
        "--data-dir",
        state.to_str().unwrap(),
        "--output.dir",
        out.to_str().unwrap(),
        "--output.format",
        "json",
        "--kubernetes",
        "--kubernetes.namespace",
        "flink",
    ];
    let mut p = testkit::Proc::start(BIN, &args);

    // OSS path / local layout: logs/{namespace}/{deploymentId}/{jobId}/{pod}/{file}.
    let pod_dir = out.join(format!("logs/team-a/{DEP}/{JOB}/wordcount-jm-0"));
    let jm_out = pod_dir.join("flink_wordcount-jm-0_uid-jm/flink-main-container/0.log");
    testkit::wait_for(
        || read_json(&jm_out).len() >= 4,
        "the JobManager's 4 events",
    );
    let recs = read_json(&jm_out);
    assert_eq!(recs.len(), 4, "{recs:#?}");
    for r in &recs {
        assert_eq!(r["namespace"], "team-a");
        assert_eq!(r["deploymentId"], DEP);
        assert_eq!(r["deploymentName"], "wordcount");
        assert_eq!(r["jobId"], JOB);
        assert_eq!(r["component"], "jobmanager");
        assert_eq!(r["pod"], "wordcount-jm-0");
        assert_eq!(r["container"], "flink-main-container");
    }
    assert_eq!(recs[0]["message"], "Starting.");
    assert_eq!(recs[0]["level"], "INFO");
    // Partial lines joined with their final part, CRI prefixes gone.
    assert_eq!(recs[1]["message"], "a very long line split by the runtime");
    // The stack trace is one event with its log line.
    assert_eq!(recs[2]["level"], "ERROR");
    assert_eq!(
        recs[2]["message"],
        "Source switched to FAILED.\njava.lang.RuntimeException: boom\n\tat org.example.Job.map(Job.java:42)\nCaused by: java.io.IOException: disk\n\t... 3 more"
    );
    assert_eq!(recs[3]["message"], "after the trace");

    // A pod started later is picked up (a TaskManager of the same job).
    api.add_flink_pod("wordcount-tm-1", "uid-tm1", "taskmanager", "10.1.0.6");
    let tm_log = pods.join("flink_wordcount-tm-1_uid-tm1/flink-main-container/0.log");
    append(
        &tm_log,
        &cri(&[("stdout", "F", "2024-01-01 00:00:05,000 INFO  org.apache.flink.runtime.taskexecutor.TaskExecutor [] - TM up")]),
    );
    let tm_out = out.join(format!(
        "logs/team-a/{DEP}/{JOB}/wordcount-tm-1/flink_wordcount-tm-1_uid-tm1/flink-main-container/0.log"
    ));
    testkit::wait_for(
        || !read_json(&tm_out).is_empty(),
        "the new TaskManager's log",
    );
    let tm = read_json(&tm_out);
    assert_eq!(tm[0]["component"], "taskmanager");
    assert_eq!(tm[0]["message"], "TM up");

    // API outage (the watch breaks and cannot start again): known pods keep shipping,
    // failures are counted.
    api.down.store(true, Ordering::SeqCst);
    api.drop_watches();
    testkit::wait_for(
        || {
            p.metric("log_shipper_kubernetes_list_errors_total{code=\"http_500\"}")
                .unwrap_or(0.0)
                >= 1.0
        },
        "list errors counted during the outage",
    );
    append(
        &jm_log,
        &cri(&[(
            "stdout",
            "F",
            "2024-01-01 00:00:09,000 WARN  org.example.X [] - during the outage",
        )]),
    );
    testkit::wait_for(
        || {
            read_json(&jm_out)
                .iter()
                .any(|r| r["message"] == "during the outage")
        },
        "a line written during the API outage",
    );
    api.down.store(false, Ordering::SeqCst);

    // The TaskManager's pod is deleted right after its last words: they are still shipped,
    // then its file is let go (the JobManager's stays open).
    append(
        &tm_log,
        &cri(&[
            (
                "stdout",
                "P",
                "2024-01-01 00:00:10,000 INFO  org.example.Y [] - last ",
            ),
            ("stdout", "F", "words"),
        ]),
    );
    api.delete("wordcount-tm-1");
    testkit::wait_for(
        || {
            read_json(&tm_out)
                .iter()
                .any(|r| r["message"] == "last words")
        },
        "the deleted pod's last line",
    );
    testkit::wait_for(
        || p.metric("log_shipper_open_files{sink=\"dir\"}") == Some(1.0),
        "the deleted pod's file let go",
    );
    append(
        &jm_log,
        &cri(&[(
            "stdout",
            "F",
            "2024-01-01 00:00:11,000 INFO  org.example.X [] - still here",
        )]),
    );
    testkit::wait_for(
        || {
            read_json(&jm_out)
                .iter()
                .any(|r| r["message"] == "still here")
        },
        "the live pod still shipped",
    );

    // Restarted while the API is down: the checkpointed file resumes with its labels
    // (remembered pods), nothing is shipped twice.
    api.down.store(true, Ordering::SeqCst);
    api.drop_watches();
    p.signal("TERM");
    assert!(p.wait_exit(std::time::Duration::from_secs(30)).is_some());
    append(
        &jm_log,
        &cri(&[(
            "stdout",
            "F",
            "2024-01-01 00:00:12,000 INFO  org.example.X [] - after the restart",
        )]),
    );
    let _p = testkit::Proc::start(BIN, &args);
    testkit::wait_for(
        || {
            read_json(&jm_out)
                .iter()
                .any(|r| r["message"] == "after the restart")
        },
        "a line written while the shipper was down, after a restart with the API down",
    );
    let msgs: Vec<String> = read_json(&jm_out)
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        msgs.iter().filter(|m| m.as_str() == "Starting.").count(),
        1,
        "{msgs:?}"
    );
    assert_eq!(msgs.last().unwrap(), "after the restart");
    api.down.store(false, Ordering::SeqCst);

    // Nothing of the foreign pod or the other node's pod was shipped.
    let all: Vec<String> = walk(&out);
    assert!(
        all.iter()
            .all(|f| !f.contains("nginx") && !f.contains("tm-9")),
        "{all:?}"
    );
    assert!(api.rejected.lock().unwrap().is_empty());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p.to_string_lossy().into_owned());
            }
        }
    }
    v
}

#[test]
fn remembered_pods_survive_a_restart_and_the_state_file_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let pods_dir = dir.path().join("pods");
    let cfg = KubernetesConfig {
        enabled: true,
        node_name: Some(NODE.into()),
        pod_log_dir: pods_dir.clone(),
        ..KubernetesConfig::default()
    };
    let labels = |state: Option<PathBuf>| {
        let l = PodLabels::new(cfg.pod_log_dir.clone(), Arc::new(StaticLabels::default()));
        match state {
            Some(s) => l.with_state_file(s),
            None => l,
        }
    };
    let jm = log_shipper::kubernetes::Pod {
        k8s_namespace: "flink".into(),
        name: "wordcount-jm-0".into(),
        uid: "uid-jm".into(),
        ip: Some("10.1.0.5".into()),
        labels: common::labels::FlinkPodLabels::from_labels(
            &serde_json::from_value(suite_labels("jobmanager", Some(JOB))).unwrap(),
        )
        .unwrap(),
    };
    let path = pods_dir.join("flink_wordcount-jm-0_uid-jm/flink-main-container/0.log");
    let plain = labels(None);
    assert!(!plain.accepts(&path), "unknown before the first list");
    plain.set_pods(vec![jm.clone()]);
    assert!(plain.accepts(&path));
    assert!(plain.cri(&path));
    let l = plain.labels_for(&path);
    assert_eq!(l.topic(), format!("team-a:{DEP}:{JOB}"));
    assert_eq!(l.source.as_deref(), Some("10.1.0.5"));
    assert_eq!(
        l.path_segments(),
        vec!["team-a", DEP, JOB, "wordcount-jm-0"]
    );
    // Gone from the list: no new files are watched, but the labels stay known for files
    // still being read.
    plain.set_pods(Vec::new());
    assert!(!plain.accepts(&path));
    assert!(plain.gone(&path));
    assert_eq!(
        plain.labels_for(&path).topic(),
        format!("team-a:{DEP}:{JOB}")
    );

    // Remembered across restarts: before any list, a checkpointed file keeps its labels.
    let state = dir.path().join("state/kubernetes-pods.json");
    let saving = labels(Some(state.clone()));
    saving.set_pods(vec![jm.clone()]);
    // The pod list is replaced, never rewritten in place (temp file, fsync, rename): a link
    // to the old file keeps the old list, and no temporary file is left behind.
    let before = std::fs::read(&state).unwrap();
    let old = dir.path().join("kubernetes-pods.old");
    std::fs::hard_link(&state, &old).unwrap();
    let mut moved = jm;
    moved.ip = Some("10.1.0.99".into());
    saving.apply(moved);
    assert_eq!(
        std::fs::read(&old).unwrap(),
        before,
        "state file written in place"
    );
    let now = String::from_utf8(std::fs::read(&state).unwrap()).unwrap();
    assert!(now.contains("10.1.0.99"), "{now}");
    let leftovers: Vec<_> = std::fs::read_dir(state.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["kubernetes-pods.json"]);
    let restarted = labels(Some(state));
    let l = restarted.labels_for(&path);
    assert_eq!(l.topic(), format!("team-a:{DEP}:{JOB}"));
    assert_eq!(l.component.as_deref(), Some("jobmanager"));
    assert!(!restarted.gone(&path), "not gone before the first list");
    assert!(
        !restarted.accepts(&path),
        "new files wait for the first list"
    );
}
