//! Throughput and memory of the shipper (run: `bench/log-shipper/run.sh` or
//! `cargo bench -p log-shipper --bench pipeline`).
//!
//! 1. In process, one thread: tail a Flink-like log (log4j lines, a Java stack trace every 50
//!    events) → multiline → log4j fields → SLS LogGroup protobuf → lz4 → signed PutLogs
//!    request. MB of log per second of one core.
//! 2. The real binary: RSS while watching 100 files, idle.
//! 3. The real binary: a 64 MB log through the local directory sink; MB per CPU second.
//! 4. The real binary: the same log through the SLS sink (lz4, signed PutLogs, default batch
//!    of 100 events) to a loopback stand-in that decompresses and decodes every request;
//!    MB per CPU second of the binary (utime + stime from /proc/<pid>/stat).

use std::{
    io::Write,
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use log_shipper::{
    config::SignVersion,
    multiline::{Joiner, Limits, Mode},
    record::{Labels, Record, StreamInfo},
    sinks::sls::{build_request_with, encode_group, group_batch, Codec, Signer},
    tailer::Tailer,
};

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

/// Writes about `bytes` of Flink-like log; returns (bytes, events).
fn write_log(path: &Path, bytes: usize) -> (usize, u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut n = 0usize;
    let mut i = 0u64;
    while n < bytes {
        i += 1;
        let line = if i.is_multiple_of(50) {
            let mut s = format!(
                "2024-01-01 00:00:{:02},{:03} ERROR org.apache.flink.runtime.taskmanager.Task            [] - Window(TumblingEventTimeWindows(5000)) (1/2)#0 switched from RUNNING to FAILED with failure cause:\njava.lang.RuntimeException: failure {i}\n",
                (i / 1000) % 60,
                i % 1000
            );
            for d in 0..30 {
                s.push_str(&format!("\tat org.apache.flink.streaming.runtime.tasks.StreamTask.invoke{d}(StreamTask.java:{})\n", 100 + d));
            }
            s.push_str("Caused by: java.io.IOException: disk full\n\t... 30 more\n");
            s
        } else {
            format!(
                "2024-01-01 00:00:{:02},{:03} INFO  org.apache.flink.runtime.checkpoint.CheckpointCoordinator    [] - Completed checkpoint {i} for job a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5 ({} bytes, checkpointDuration={} ms, finalizationTime=0 ms).\n",
                (i / 1000) % 60,
                i % 1000,
                i * 37 % 100_000,
                i % 900
            )
        };
        f.write_all(line.as_bytes()).unwrap();
        n += line.len();
    }
    f.flush().unwrap();
    (n, i)
}

fn in_process(path: &Path, bytes: usize) -> f64 {
    let mut tailer = Tailer::new();
    let stream = tailer.watch(path);
    let info = Arc::new(StreamInfo {
        path: stream.to_string(),
        file_name: "taskmanager.log".into(),
        relative: "taskmanager.log".into(),
        labels: Labels {
            namespace: Some("default".into()),
            deployment_id: Some("5d6b1f6e".into()),
            job_id: Some("a0b1c2d3".into()),
            pod: Some("tm-0".into()),
            source: Some("10.0.0.1".into()),
            ..Labels::default()
        },
    });
    let signer = Signer {
        access_key_id: "id".into(),
        access_key_secret: common::Secret::new("secret"),
        version: SignVersion::V1,
        region: String::new(),
    };
    let mut joiner = Joiner::new(Mode::Log4jTimestamp, Limits::default());
    let (mut lines, mut events, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    let mut body_bytes = 0usize;
    let mut read = 0usize;
    let (mut t_encode, mut t_lz4) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let now = Instant::now();
    loop {
        tailer.poll(now, &mut lines);
        if lines.is_empty() {
            joiner.flush(now, true, &mut events);
        }
        let done = lines.is_empty() && events.is_empty();
        for l in lines.drain(..) {
            read += l.data.len();
            joiner.push(l, now, &mut events);
        }
        for e in events.drain(..) {
            batch.push(Record {
                stream: info.clone(),
                event: e,
                read_at: SystemTime::now(),
            });
            if batch.len() == 100 {
                let t0 = Instant::now();
                let raws: Vec<Vec<u8>> = group_batch(&batch)
                    .iter()
                    .map(|(k, idxs)| encode_group(&batch, k, idxs, 0))
                    .collect();
                let t1 = Instant::now();
                for raw in raws {
                    let req = build_request_with(
                        "p.host",
                        "logs",
                        raw,
                        Codec::Lz4Fast,
                        &signer,
                        chrono::Utc::now(),
                    );
                    body_bytes += req.body.len();
                }
                t_encode += t1 - t0;
                t_lz4 += t1.elapsed();
                batch.clear();
            }
        }
        if done {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(read, bytes, "every byte read");
    let mb = bytes as f64 / 1e6;
    println!(
        "in-process (1 thread): {mb:.0} MB in {secs:.2} s = {:.0} MB/s per core (records+protobuf {:.2} s, lz4+md5+sign {:.2} s, tail+multiline {:.2} s); lz4 bodies {:.1} MB ({:.1}x)",
        mb / secs,
        t_encode.as_secs_f64(),
        t_lz4.as_secs_f64(),
        secs - t_encode.as_secs_f64() - t_lz4.as_secs_f64(),
        body_bytes as f64 / 1e6,
        bytes as f64 / body_bytes.max(1) as f64
    );
    mb / secs
}

fn proc_field(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn spawn(args: &[&str]) -> std::process::Child {
    let port = common::testkit::free_port().to_string();
    std::process::Command::new(BIN)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.level",
            "warn",
        ])
        .args(args)
        .spawn()
        .unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("taskmanager.log");
    let (bytes, events) = write_log(&big, 64 << 20);
    let _ = in_process(&big, bytes);
    let best = (0..2).map(|_| in_process(&big, bytes)).fold(0.0, f64::max);
    println!("in-process best: {best:.0} MB/s per core (goal >= 300)");

    // RSS with 100 watched files.
    let many = dir.path().join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..100 {
        write_log(&many.join(format!("tm-{i}.log")), 4096);
    }
    let glob = format!("{}/*.log", many.display());
    let out = dir.path().join("out-many");
    let data = dir.path().join("data-many");
    let mut child = spawn(&[
        "--input",
        &glob,
        "--output.dir",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_secs(6));
    let rss = proc_field(child.id(), "VmRSS:").unwrap_or(0);
    let hwm = proc_field(child.id(), "VmHWM:").unwrap_or(0);
    let shipped = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    println!(
        "binary, 100 watched files ({shipped} shipped), idle: RSS {:.1} MB (peak {:.1} MB) (goal <= 30 MB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();

    // End to end through the real binary, local directory sink.
    let glob = format!("{}/taskmanager.log", dir.path().display());
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let start = Instant::now();
    let mut child = spawn(&[
        "--input",
        &glob,
        "--output.dir",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let target = out.join("taskmanager.log");
    while std::fs::metadata(&target)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
        < bytes
    {
        std::thread::sleep(Duration::from_millis(20));
        assert!(start.elapsed() < Duration::from_secs(300));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id());
    let rss = proc_field(child.id(), "VmHWM:").unwrap_or(0);
    let mb = bytes as f64 / 1e6;
    println!(
        "binary, dir sink: {mb:.0} MB in {wall:.2} s wall, {cpu:.2} CPU s = {:.0} MB per CPU second; peak RSS {:.1} MB",
        mb / cpu.max(0.01),
        rss as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();

    sls_end_to_end(dir.path(), bytes, events, "");
    sls_end_to_end(
        dir.path(),
        bytes,
        events,
        "batch: {max_events: 4096, timeout: 10s}",
    );
}

#[derive(Default)]
struct Received {
    logs: u64,
    requests: u64,
    bad: Vec<String>,
}

async fn put_logs(
    axum::extract::State(s): axum::extract::State<Arc<std::sync::Mutex<Received>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use prost::Message;
    let raw_size = headers
        .get("x-log-bodyrawsize")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let decoded = lz4_flex::block::decompress(&body, raw_size)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            log_shipper::sinks::sls::proto::LogGroup::decode(raw.as_slice())
                .map_err(|e| e.to_string())
        });
    let mut s = s.lock().unwrap();
    s.requests += 1;
    match decoded {
        Ok(g) => {
            s.logs += g.logs.len() as u64;
            axum::http::StatusCode::OK
        }
        Err(e) => {
            s.bad.push(e);
            axum::http::StatusCode::BAD_REQUEST
        }
    }
}

/// `batch`: an extra line of the sink's config (empty: the defaults).
fn sls_end_to_end(dir: &Path, bytes: usize, events: u64, batch: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let got = Arc::new(std::sync::Mutex::new(Received::default()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/logstores/{logstore}/shards/lb",
            axum::routing::post(put_logs),
        )
        .with_state(got.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    let cfg = dir.join("sls.yml");
    std::fs::write(
        &cfg,
        format!(
            "labels: {{namespace: ns, deploymentId: dep, jobId: job, pod: flink-tm-0, source: 10.0.0.9}}\n\
             sinks:\n  sls:\n    endpoint: http://127.0.0.1:{port}\n    project: p\n    logstore: flink-logs\n    \
             credentials: {{access_key_id: id, access_key_secret: secret}}\n    {batch}\n"
        ),
    )
    .unwrap();
    let glob = format!("{}/taskmanager.log", dir.display());
    let data = dir.join(format!("data-sls-{}", batch.len()));
    let start = Instant::now();
    let mut child = spawn(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--input",
        &glob,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    while got.lock().unwrap().logs < events {
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("log-shipper exited early: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(300));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id());
    let rss = proc_field(child.id(), "VmHWM:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let g = got.lock().unwrap();
    assert!(
        g.bad.is_empty(),
        "stand-in rejected requests: {:?}",
        &g.bad[..1]
    );
    assert_eq!(g.logs, events, "every event shipped once");
    let mb = bytes as f64 / 1e6;
    println!(
        "binary, SLS sink ({}; lz4, {} PutLogs): {mb:.0} MB in {wall:.2} s wall, {cpu:.2} CPU s = {:.0} MB per CPU second (goal >= 300); peak RSS {:.1} MB",
        if batch.is_empty() { "default batch" } else { batch },
        g.requests,
        mb / cpu.max(0.01),
        rss as f64 / 1024.0
    );
}
