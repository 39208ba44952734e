//! Drive a real binary from integration tests: spawn it on a free loopback port, talk plain
//! HTTP to it, send it real signals, read its metrics. Also [`check_lifecycle`], the one
//! test of the shared runtime every binary runs.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (bound and released; tests run the binary on it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A running service process; killed on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Proc {
    /// Starts `bin` with `--web.listen-address 127.0.0.1:<free>` plus `args`, and waits for
    /// `/-/healthy`.
    pub fn start(bin: &str, args: &[&str]) -> Proc {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listen = addr.to_string();
        let child = Command::new(bin)
            .arg("--web.listen-address")
            .arg(&listen)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let mut p = Proc { child, addr };
        p.wait_healthy(Duration::from_secs(30));
        p
    }

    /// Waits until `/-/healthy` answers 200, panicking after `timeout` or if the process exits.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("process exited before becoming healthy: {status}");
            }
            if let Ok((200, _)) = http(self.addr, "GET", "/-/healthy", "") {
                return;
            }
            assert!(Instant::now() < deadline, "not healthy after {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET a path; panics on connection errors.
    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, "").unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Sends a signal (`HUP`, `TERM`, `INT`, `KILL`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg("-s")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -s {sig} failed");
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Value of an unlabelled sample (or one written with its labels) on `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.get("/metrics").1, series)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request over a fresh connection; returns status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Decodes an HTTP/1.1 chunked body (as read to the end of the connection).
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Value of the sample whose series (name plus `{labels}` exactly as exposed) is `series`.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The shared-runtime test every binary runs against its real process:
/// starts with `valid_config`, SIGHUP with `invalid_config` keeps it running and sets the
/// reload gauge to 0, SIGHUP with the valid config again sets it to 1 and advances the
/// timestamp, `POST /-/reload` works too, and SIGTERM drains within the grace period.
pub fn check_lifecycle(
    bin: &str,
    prefix: &str,
    valid_config: &str,
    invalid_config: &str,
    extra_args: &[&str],
) {
    let dir = tempfile_dir();
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, valid_config).expect("write config");
    let mut args = vec![
        "--config.file",
        cfg.to_str().expect("utf-8 path"),
        "--shutdown.grace-period",
        "5s",
    ];
    args.extend_from_slice(extra_args);
    let mut p = Proc::start(bin, &args);
    let ok = format!("{prefix}_config_last_reload_successful");
    let ts = format!("{prefix}_config_last_reload_success_timestamp_seconds");
    assert_eq!(p.metric(&ok), Some(1.0), "{ok} after start");
    let t0 = p.metric(&ts).expect("timestamp gauge");
    assert_eq!(p.get("/-/ready").0, 200);

    std::fs::write(&cfg, invalid_config).expect("write config");
    p.signal("HUP");
    wait_for(
        || p.metric(&ok) == Some(0.0),
        "reload gauge 0 after invalid config",
    );
    assert_eq!(
        p.get("/-/healthy").0,
        200,
        "still running after a bad reload"
    );
    assert_eq!(p.metric(&ts), Some(t0), "timestamp kept on failure");
    let (code, body) = http(p.addr, "POST", "/-/reload", "").expect("POST /-/reload");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("config"),
        "reload error names the problem: {body}"
    );

    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&cfg, valid_config).expect("write config");
    p.signal("HUP");
    wait_for(
        || p.metric(&ok) == Some(1.0),
        "reload gauge 1 after fixing the config",
    );
    let t1 = p.metric(&ts).expect("timestamp gauge");
    assert!(t1 > t0, "timestamp advanced: {t1} > {t0}");
    assert_eq!(
        http(p.addr, "POST", "/-/reload", "").expect("reload").0,
        200
    );

    p.signal("TERM");
    let status = p
        .wait_exit(Duration::from_secs(6))
        .expect("exited within the grace period");
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts `bin` with no config file and checks that a reload re-applies the defaults and
/// advances the success timestamp.
pub fn check_reload_without_config(bin: &str, prefix: &str, extra_args: &[&str]) {
    let p = Proc::start(bin, extra_args);
    let ts = format!("{prefix}_config_last_reload_success_timestamp_seconds");
    let t0 = p.metric(&ts).expect("timestamp gauge");
    std::thread::sleep(Duration::from_millis(20));
    p.signal("HUP");
    wait_for(
        || p.metric(&ts).is_some_and(|t| t > t0),
        "timestamp advances on reload without a file",
    );
    assert_eq!(
        p.metric(&format!("{prefix}_config_last_reload_successful")),
        Some(1.0)
    );
}

/// Polls `cond` every 25 ms for up to 10 s.
pub fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A fresh temporary directory (removed by the caller).
pub fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flink-suite-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Whether `../shared` (reference files for developers and CI) is present; prints why a test
/// is skipped when it is not.
pub fn shared_dir(test: &str) -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!(
            "SKIP {test}: ../shared is absent (it holds reference files; a user's clone has none)"
        );
        None
    }
}
