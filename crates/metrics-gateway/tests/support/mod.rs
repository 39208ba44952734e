//! Shared helpers of the integration tests: raw HTTP with headers and binary bodies, the
//! real Pushgateway (skipped when absent), exposition normalisation.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

use common::testkit::{dechunk, Proc};

pub const BIN: &str = env!("CARGO_BIN_EXE_metrics-gateway");
pub const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";
pub const PROTO_CT: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// A response: status, lower-cased head, body.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One HTTP/1.1 request with extra headers and a binary body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    // A server may reset the connection after answering (a refused body it did not read):
    // what arrived before the reset is the answer.
    if let Err(e) = s.read_to_end(&mut raw) {
        assert!(!raw.is_empty(), "{method} {path}: {e}");
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let head = h.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(b)
    } else {
        b.to_owned()
    };
    Resp { status, head, body }
}

/// Starts ours with `args`.
pub fn ours(args: &[&str]) -> Proc {
    Proc::start(BIN, args)
}

/// Starts Debian's Pushgateway with `args` (and an empty persistence file setting), or
/// prints why the test is skipped.
pub fn pushgateway(test: &str, args: &[&str]) -> Option<Proc> {
    if !Path::new(PUSHGATEWAY).exists() {
        eprintln!("SKIP {test}: {PUSHGATEWAY} is absent (apt install prometheus-pushgateway)");
        return None;
    }
    let mut all = vec!["--persistence.file="];
    all.extend_from_slice(args);
    Some(Proc::start(PUSHGATEWAY, &all))
}

/// Whether a line of the exposition belongs to a process's own metrics (ignored when
/// comparing the two gateways).
fn own_line(line: &str) -> bool {
    let name = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    ["go_", "process_", "pushgateway_", "metrics_gateway_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The exposition without either gateway's own metrics, with non-zero push times replaced
/// by `<time>` (zero stays zero: "never failed" must agree).
pub fn normalize(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| !own_line(l))
        .map(|l| {
            if l.starts_with("push_time_seconds") || l.starts_with("push_failure_time_seconds") {
                match l.rsplit_once(' ') {
                    Some((series, v)) if v != "0" => format!("{series} <time>"),
                    _ => l.to_owned(),
                }
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Value of a series on `/metrics` of a process.
pub fn scrape(p: &Proc) -> String {
    request(p.addr, "GET", "/metrics", &[], b"").body
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::{write::GzEncoder, Compression};
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
