//! A stopped `local` cluster's metric groups are deleted from the gateway once its
//! processes are gone (its reporters push until they stop), at the URL in effect then.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use job_manager::{model::ClusterRef, target::LocalClusters};

#[tokio::test]
async fn groups_are_deleted_after_the_stop_scripts_finished() {
    let dir = tempfile::tempdir().unwrap();
    // A Flink home whose stop scripts take a moment, and say when they are done.
    let home = dir.path().join("flink");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let done = dir.path().join("stopped");
    for s in ["jobmanager.sh", "taskmanager.sh"] {
        std::fs::write(
            home.join("bin").join(s),
            format!("sleep 0.3; echo {s} >> {}\n", done.display()),
        )
        .unwrap();
    }
    // A gateway stand-in recording request lines, and whether the scripts had finished.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    {
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut line = String::new();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                r.read_line(&mut line).unwrap();
                let finished = std::fs::read_to_string(&done)
                    .map(|t| t.lines().count())
                    .unwrap_or(0);
                seen.lock().unwrap().push((line, finished));
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
    }
    let data = dir.path().join("data");
    let gateway = url.clone();
    let local =
        LocalClusters::new(Some(home), &data).with_metrics_gateway(move || Some(gateway.clone()));
    let log_dir = data.join("logs/default/dep-1/job-1");
    let cluster_dir = data.join("local/job-1");
    std::fs::create_dir_all(&log_dir).unwrap();
    std::fs::create_dir_all(&cluster_dir).unwrap();
    local.stop(&ClusterRef {
        rest_url: "http://127.0.0.1:1".into(),
        local_dir: Some(cluster_dir.display().to_string()),
        log_dir: Some(log_dir.display().to_string()),
        kubernetes: None,
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no DELETE reached the gateway");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (line, finished) = seen.lock().unwrap()[0].clone();
    assert!(line.starts_with("DELETE /api/v1/groups?match"), "{line}");
    assert!(line.contains("dep-1"), "{line}");
    assert_eq!(finished, 2, "both stop scripts had finished: {line}");
}
