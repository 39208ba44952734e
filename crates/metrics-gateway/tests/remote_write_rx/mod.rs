//! A remote-write receiver for the tests of reloads and shards: decodes every body, records
//! each request (path, head, samples) in arrival order, answers after an optional delay
//! (a slow receiver) with 200 or, while `fail_with` is set, that status.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_gateway::remote_write::proto;

/// Labels of one series.
pub type Series = BTreeMap<String, String>;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Got {
    /// Request line and headers, lower-cased.
    pub head: String,
    pub path: String,
    /// (labels, ms, value) in body order.
    pub samples: Vec<(Series, i64, f64)>,
    pub raw: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
    /// When its body had arrived.
    pub at: std::time::Instant,
}

/// The receiver; it serves until the test ends.
pub struct Rx {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    fail: Arc<AtomicU16>,
}

impl Rx {
    /// A receiver answering each request after `delay`.
    pub fn start(delay: Duration) -> Rx {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicU16::new(0));
        let (g, f) = (got.clone(), fail.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let (g, f) = (g.clone(), f.clone());
                std::thread::spawn(move || serve(conn, &g, &f, delay));
            }
        });
        Rx { addr, got, fail }
    }

    /// Answers every request with `status` (0 = 200 again).
    pub fn fail_with(&self, status: u16) {
        self.fail.store(status, Ordering::SeqCst);
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every request so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The samples of the requests to `path` that were accepted, in arrival order.
    pub fn accepted(&self, path: &str) -> Vec<(Series, i64, f64)> {
        self.got()
            .into_iter()
            .filter(|g| g.path == path && g.status == 200)
            .flat_map(|g| g.samples)
            .collect()
    }

    /// Requests to `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.path == path).collect()
    }
}

fn serve(conn: std::net::TcpStream, got: &Mutex<Vec<Got>>, fail: &AtomicU16, delay: Duration) {
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("the sender always sets Content-Length");
        let mut raw = vec![0; len];
        if r.read_exact(&mut raw).is_err() {
            return;
        }
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let req = proto::decode(&raw).unwrap_or_else(|e| panic!("bad body: {e}"));
        let mut samples = Vec::new();
        for ts in req.timeseries {
            let labels: Series = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            for s in ts.samples {
                samples.push((labels.clone(), s.timestamp, s.value));
            }
        }
        let at = std::time::Instant::now();
        std::thread::sleep(delay);
        let status = match fail.load(Ordering::SeqCst) {
            0 => 200,
            s => s,
        };
        got.lock().unwrap().push(Got {
            head,
            path,
            samples,
            raw,
            status,
            at,
        });
        let body = if status >= 300 { "nope" } else { "" };
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if w.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Asserts that each series' samples arrived with strictly increasing timestamps.
pub fn assert_in_order_per_series(samples: &[(Series, i64, f64)]) {
    let mut last: BTreeMap<&Series, i64> = BTreeMap::new();
    for (l, t, _) in samples {
        if let Some(prev) = last.insert(l, *t) {
            assert!(*t > prev, "{l:?}: {t} arrived after {prev}");
        }
    }
}
