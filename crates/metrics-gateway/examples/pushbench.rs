//! Load generator for `bench/metrics-gateway/run.sh` (not a test): pushes a body to
//! rotating groups from concurrent keep-alive clients, then measures `/metrics` latency and
//! the target's RSS.
//!
//! `pushbench ADDR PID BODY_FILE GROUPS CLIENTS SECONDS SCRAPE_GROUPS`
//! prints one line of `key=value` figures.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

fn put(conn: &mut BufReader<TcpStream>, addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = conn.get_mut();
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut status = 0;
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).expect("read");
        if status == 0 {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
        } else if line == "\r\n" || line.is_empty() {
            break;
        } else if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut sink = vec![0; len];
    conn.read_exact(&mut sink).expect("read body");
    status
}

fn get_all(addr: SocketAddr, path: &str) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    buf.len()
}

fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 8 {
        eprintln!("usage: pushbench ADDR PID BODY_FILE GROUPS CLIENTS SECONDS SCRAPE_GROUPS");
        std::process::exit(2);
    }
    let addr: SocketAddr = a[1].parse().expect("ADDR");
    let pid = a[2].clone();
    let body = Arc::new(std::fs::read(&a[3]).expect("BODY_FILE"));
    let groups: u64 = a[4].parse().expect("GROUPS");
    let clients: u64 = a[5].parse().expect("CLIENTS");
    let seconds: u64 = a[6].parse().expect("SECONDS");
    let scrape_groups: u64 = a[7].parse().expect("SCRAPE_GROUPS");

    // Phase 1: push throughput to `groups` rotating groups.
    let done = Arc::new(AtomicBool::new(false));
    let pushes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (done, pushes, failures, body) =
                (done.clone(), pushes.clone(), failures.clone(), body.clone());
            std::thread::spawn(move || {
                let mut conn = BufReader::new(TcpStream::connect(addr).expect("connect"));
                let mut i = c;
                while !done.load(Ordering::Relaxed) {
                    let path =
                        format!("/metrics/job/flink/k8s_namespace/demo/tm/tm-{}", i % groups);
                    if put(&mut conn, addr, &path, &body) == 200 {
                        pushes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    i += clients;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    done.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = pushes.load(Ordering::Relaxed) as f64 / elapsed;

    let scrape = |n: usize| {
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                get_all(addr, "/metrics");
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        (times[n / 2], get_all(addr, "/metrics"))
    };
    let (scrape_small, bytes_small) = scrape(7);
    let rss_small = rss_kb(&pid);

    // Phase 2: grow to `scrape_groups` groups (about 100k series) and scrape again.
    let mut conn = BufReader::new(TcpStream::connect(addr).expect("connect"));
    for g in 0..scrape_groups {
        let path = format!("/metrics/job/flink/k8s_namespace/demo/tm/tm-{g}");
        put(&mut conn, addr, &path, &body);
    }
    let (scrape_large, bytes_large) = scrape(5);
    let rss_large = rss_kb(&pid);
    println!(
        "pushes_per_s={rate:.1} push_failures={} scrape_{groups}g_s={scrape_small:.4} bytes_{groups}g={bytes_small} rss_{groups}g_mb={:.1} scrape_{scrape_groups}g_s={scrape_large:.4} bytes_{scrape_groups}g={bytes_large} rss_{scrape_groups}g_mb={:.1}",
        failures.load(Ordering::Relaxed),
        rss_small as f64 / 1024.0,
        rss_large as f64 / 1024.0,
    );
}
