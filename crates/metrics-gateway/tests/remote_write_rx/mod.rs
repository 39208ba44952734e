//! The strict remote-write receiver shared by the remote-write tests: checks every request
//! (a POST over HTTP/1.1, a body that decodes, labels sorted by name and unique), records
//! it (path, head, samples) in arrival order and answers after an optional delay (a slow
//! receiver) with the next status of its script, else the status set by `fail_with`,
//! else 200.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
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
    /// The request path without its leading `/`.
    pub path: String,
    /// (labels, ms, value) in body order.
    pub samples: Vec<(Series, i64, f64)>,
    pub raw: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
    /// When its body had arrived.
    pub at: std::time::Instant,
}

/// How the receiver answers: scripted statuses first, then `fail`, then 200.
#[derive(Default)]
struct Answers {
    script: Mutex<VecDeque<u16>>,
    fail: AtomicU16,
}

impl Answers {
    fn next(&self) -> u16 {
        if let Some(s) = self.script.lock().unwrap().pop_front() {
            return s;
        }
        match self.fail.load(Ordering::SeqCst) {
            0 => 200,
            s => s,
        }
    }
}

/// The receiver; it serves until the test ends.
pub struct Rx {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    answers: Arc<Answers>,
}

impl Rx {
    /// A receiver on a free port answering each request after `delay`.
    pub fn start(delay: Duration) -> Rx {
        Self::start_on(0, delay)
    }

    /// A receiver on `port` (0: a free one) answering each request after `delay`.
    pub fn start_on(port: u16, delay: Duration) -> Rx {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Answers::default());
        let (g, a) = (got.clone(), answers.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let (g, a) = (g.clone(), a.clone());
                std::thread::spawn(move || serve(conn, &g, &a, delay));
            }
        });
        Rx { addr, got, answers }
    }

    /// A receiver without delay answering its next requests with `statuses` in turn,
    /// then 200.
    pub fn scripted(statuses: &[u16]) -> Rx {
        let rx = Self::start(Duration::ZERO);
        rx.script(statuses);
        rx
    }

    /// Queues `statuses` for the next requests (before any `fail_with` status).
    pub fn script(&self, statuses: &[u16]) {
        self.answers.script.lock().unwrap().extend(statuses);
    }

    /// Answers every request after the script with `status` (0 = 200 again).
    pub fn fail_with(&self, status: u16) {
        self.answers.fail.store(status, Ordering::SeqCst);
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every request so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The samples of every request so far, whatever it was answered, in arrival order.
    pub fn samples(&self) -> Vec<(Series, i64, f64)> {
        self.got().into_iter().flat_map(|g| g.samples).collect()
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

fn serve(conn: std::net::TcpStream, got: &Mutex<Vec<Got>>, answers: &Answers, delay: Duration) {
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
        let request_line = head.lines().next().unwrap_or("");
        assert!(
            request_line.starts_with("post /") && request_line.ends_with(" http/1.1"),
            "{head}"
        );
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let req = proto::decode(&raw).unwrap_or_else(|e| panic!("bad body: {e}"));
        let mut samples = Vec::new();
        for ts in req.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(names, sorted, "labels must be sorted by name, unique");
            let labels: Series = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            for s in ts.samples {
                samples.push((labels.clone(), s.timestamp, s.value));
            }
        }
        let at = std::time::Instant::now();
        std::thread::sleep(delay);
        let status = answers.next();
        got.lock().unwrap().push(Got {
            head,
            path,
            samples,
            raw,
            status,
            at,
        });
        let reason = match status {
            200 | 204 => "OK",
            400 => "Bad Request",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let body = if status >= 300 { "nope" } else { "" };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n\r\n{body}",
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
