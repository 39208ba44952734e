//! State files are written durably: the remembered pods (`kubernetes-pods.json`) go to a
//! temporary file that is fsynced, renamed into place, and the directory fsynced, so a
//! power loss leaves the old list or the new one. Observed with `strace` on a child run of
//! this test binary; skipped (with a message) where `strace` is missing or not permitted.

use std::{path::Path, process::Command, sync::Arc};

use common::labels::{Component, FlinkPodLabels};
use log_shipper::{
    kubernetes::{Pod, PodLabels},
    record::StaticLabels,
};

const DIR_VAR: &str = "LOG_SHIPPER_DURABILITY_DIR";

fn pod(ip: &str) -> Pod {
    Pod {
        k8s_namespace: "flink".into(),
        name: "wordcount-jm-0".into(),
        uid: "uid-jm".into(),
        ip: Some(ip.into()),
        labels: FlinkPodLabels {
            namespace: "team-a".into(),
            deployment_id: "d1".into(),
            deployment_name: "wordcount".into(),
            job_id: None,
            component: Component::JobManager,
        },
    }
}

/// Run by the test below, under strace: saves the pod list twice.
#[test]
#[ignore = "helper: run under strace by pod_list_is_fsynced_renamed_and_its_directory_fsynced"]
fn save_pods_helper() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let dir = Path::new(&dir);
    let labels = PodLabels::new(dir.join("pods"), Arc::new(StaticLabels::default()))
        .with_state_file(dir.join("state/kubernetes-pods.json"));
    labels.set_pods(vec![pod("10.0.0.1")]);
    labels.set_pods(vec![pod("10.0.0.2")]);
}

/// The per-thread traces `strace -ff -o prefix` wrote, concatenated (calls on the state
/// directory all come from one thread).
fn traced(prefix: &Path) -> Option<String> {
    let dir = prefix.parent()?;
    let stem = format!("{}.", prefix.file_name()?.to_string_lossy());
    let mut text = String::new();
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_name().to_string_lossy().starts_with(&stem) {
            text.push_str(&std::fs::read_to_string(e.path()).ok()?);
        }
    }
    (!text.is_empty()).then_some(text)
}

#[test]
fn pod_list_is_fsynced_renamed_and_its_directory_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let exe = std::env::current_exe().unwrap();
    let run = Command::new("strace")
        // One file per thread (`-ff`): no interleaved `<unfinished ...>` lines to stitch.
        .args([
            "-ff",
            "-qq",
            "-e",
            "trace=openat,fsync,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .arg(&exe)
        .args([
            "--exact",
            "save_pods_helper",
            "--ignored",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .output();
    match run {
        Ok(out) if out.status.success() && traced(&trace).is_some() => {}
        Ok(out) => {
            eprintln!(
                "skipping: strace cannot trace here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        Err(e) => {
            eprintln!("skipping: strace is not available: {e}");
            return;
        }
    }
    let state = dir.path().join("state/kubernetes-pods.json");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("10.0.0.2"), "{saved}");

    // Follow the calls on the state directory in order.
    let text = traced(&trace).unwrap();
    let state_dir = state.parent().unwrap().to_str().unwrap().to_string();
    let mut fds: std::collections::HashMap<String, String> = Default::default();
    let mut steps = Vec::new();
    for line in text.lines() {
        // "[<pid> ]openat(AT_FDCWD, \"path\", flags...) = 3" (strace leaves the pid out
        // while only one thread is traced).
        let call = match line.split_once(' ') {
            Some((pid, rest)) if pid.chars().all(|c| c.is_ascii_digit()) => rest.trim_start(),
            _ => line,
        };
        if call.starts_with("openat(") {
            let path = call.split('"').nth(1).unwrap_or("");
            let fd = call.rsplit("= ").next().unwrap_or("").trim().to_string();
            if path.starts_with(&state_dir) && !fd.starts_with('-') {
                fds.insert(fd, path.to_string());
            }
        } else if let Some(rest) = call.strip_prefix("fsync(") {
            let fd = rest.split(')').next().unwrap_or("");
            if let Some(path) = fds.get(fd) {
                steps.push(format!("fsync {path}"));
            }
        } else if call.starts_with("rename") && call.contains(&state_dir) {
            let paths: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
            steps.push(format!("rename {}", paths.join(" -> ")));
        }
    }
    let tmp_fsync = steps
        .iter()
        .position(|s| s.starts_with("fsync") && s.ends_with(".tmp"));
    let rename = steps
        .iter()
        .position(|s| s.starts_with("rename") && s.ends_with("kubernetes-pods.json"));
    let dir_fsync = steps
        .iter()
        .rposition(|s| *s == format!("fsync {state_dir}"));
    match (tmp_fsync, rename, dir_fsync) {
        (Some(a), Some(b), Some(c)) => assert!(a < b && b < c, "{steps:#?}"),
        _ => panic!("temp fsync, rename and directory fsync expected in order: {steps:#?}"),
    }
}
