//! What the suite's end-to-end tests share: a strict DingTalk stand-in and the real
//! `flink-suite` binary on free loopback ports.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use hmac::{Hmac, Mac};

/// `urlencode(base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")))` as DingTalk documents
/// the signature of a robot with "加签" security.
pub fn dingtalk_sign(secret: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    percent_encoding::utf8_percent_encode(&b64, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The JSON body.
    pub body: serde_json::Value,
    /// Whether token, timestamp and signature were right (it answered errcode 0).
    pub accepted: bool,
    /// Why not, if not.
    pub reason: String,
}

/// A DingTalk robot API on 127.0.0.1 that checks what DingTalk checks: `POST
/// /robot/send?access_token=T&timestamp=MS&sign=S` with the right token, a timestamp
/// within an hour, the signature of `timestamp\nsecret`, and a JSON body with a `msgtype`.
/// Wrong requests get DingTalk's `errcode` 310000 / 300001 and are recorded as refused.
pub struct DingTalk {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl DingTalk {
    pub fn start(token: &str, secret: &str) -> DingTalk {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stand-in");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (token, secret, rec) = (token.to_string(), secret.to_string(), received.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (token, secret, rec) = (token.clone(), secret.clone(), rec.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &token, &secret, &rec);
                });
            }
        });
        DingTalk { addr, received }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn check(path: &str, token: &str, secret: &str) -> Result<(), String> {
    let (route, query) = path.split_once('?').ok_or("no query string")?;
    if route != "/robot/send" {
        return Err(format!("path {route} is not /robot/send"));
    }
    // Raw values; DingTalk decodes them (a literal `+` would become a space).
    let raw = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let param = |k: &str| {
        raw(k).map(|v| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    };
    if param("access_token").as_deref() != Some(token) {
        return Err("300001 token is not exist".into());
    }
    let ts = param("timestamp").ok_or("310000 no timestamp")?;
    let ms: i64 = ts.parse().map_err(|_| "310000 timestamp not a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    if (now - ms).abs() > 3_600_000 {
        return Err("310000 timestamp more than an hour off".into());
    }
    let sign = param("sign").ok_or("310000 no sign")?;
    let expected = dingtalk_sign(secret, &ts);
    let expected = percent_encoding::percent_decode_str(&expected).decode_utf8_lossy();
    if sign != expected {
        return Err(format!("310000 sign not match: {:?}", raw("sign")));
    }
    Ok(())
}

fn serve(
    conn: std::net::TcpStream,
    token: &str,
    secret: &str,
    rec: &Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let method = line.split(' ').next().unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let verdict = if method != "POST" {
            Err(format!("method {method}"))
        } else {
            check(&path, token, secret).and_then(|()| match &parsed {
                Some(v) if v.get("msgtype").is_some() => Ok(()),
                _ => Err("40035 body is not a message".into()),
            })
        };
        let answer = match &verdict {
            Ok(()) => r#"{"errcode":0,"errmsg":"ok"}"#.to_string(),
            Err(e) => {
                let code = e.split(' ').next().unwrap_or("310000");
                format!(r#"{{"errcode":{code},"errmsg":"refused"}}"#)
            }
        };
        rec.lock().unwrap().push(Received {
            body: parsed.unwrap_or(serde_json::Value::Null),
            accepted: verdict.is_ok(),
            reason: verdict.err().unwrap_or_default(),
        });
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        )?;
        conn.flush()?;
    }
}

/// The four listen addresses on free loopback ports.
pub struct Ports {
    pub job_manager: SocketAddr,
    pub metrics_gateway: SocketAddr,
    pub dingtalk_alert: SocketAddr,
    pub log_shipper: SocketAddr,
}

impl Ports {
    pub fn free() -> Ports {
        let p = || SocketAddr::from(([127, 0, 0, 1], common::testkit::free_port()));
        Ports {
            job_manager: p(),
            metrics_gateway: p(),
            dingtalk_alert: p(),
            log_shipper: p(),
        }
    }

    pub fn flags(&self) -> Vec<String> {
        vec![
            "--job-manager.listen-address".into(),
            self.job_manager.to_string(),
            "--metrics-gateway.listen-address".into(),
            self.metrics_gateway.to_string(),
            "--dingtalk-alert.listen-address".into(),
            self.dingtalk_alert.to_string(),
            "--log-shipper.listen-address".into(),
            self.log_shipper.to_string(),
        ]
    }
}

/// `flink-suite` started in `cwd` (state under the default, relative `./data`), stderr
/// in `cwd/stderr.log`; SIGKILLed when dropped.
pub struct Suite {
    pub child: Child,
    pub ports: Ports,
    pub cwd: PathBuf,
}

impl Suite {
    pub fn start(cwd: &Path, args: &[&str], envs: &[(&str, String)]) -> Suite {
        let ports = Ports::free();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flink-suite"));
        cmd.current_dir(cwd)
            .args(ports.flags())
            .args(args)
            .args(["--shutdown.grace-period", "10s"])
            .env_remove("JOB_MANAGER_BOOTSTRAP_TOKEN")
            .env_remove("FLINK_HOME")
            .env_remove("DINGTALK_ACCESS_TOKEN")
            .env_remove("DINGTALK_SECRET")
            .env_remove("DINGTALK_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cwd.join("stderr.log")).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn flink-suite");
        let s = Suite {
            child,
            ports,
            cwd: cwd.to_path_buf(),
        };
        for a in [
            s.ports.job_manager,
            s.ports.metrics_gateway,
            s.ports.dingtalk_alert,
            s.ports.log_shipper,
        ] {
            common::testkit::wait_for(
                || {
                    matches!(
                        common::testkit::http(a, "GET", "/-/ready", ""),
                        Ok((200, _))
                    )
                },
                &format!("{a} ready"),
            );
        }
        s
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.cwd.join("stderr.log")).unwrap_or_default()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.cwd.join("data/job-manager/bootstrap-token"))
            .expect("bootstrap token")
    }

    pub fn gateway(&self, path: &str) -> String {
        common::testkit::http(self.ports.metrics_gateway, "GET", path, "")
            .map(|r| r.1)
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// SIGTERM, then the exit status within `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 200 ms until it returns `Some`, for up to `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A request with a bearer token and optional JSON body; status and parsed JSON.
pub fn api(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect job-manager");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_json(s)
}

fn read_json(mut s: std::net::TcpStream) -> (u16, serde_json::Value) {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        common::testkit::dechunk(body)
    } else {
        body.to_string()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

/// Uploads `bytes` as artifact `name` to namespace `default`; the JSON answer.
pub fn upload(addr: SocketAddr, token: &str, name: &str, bytes: &[u8]) -> (u16, serde_json::Value) {
    let boundary = "flinksuiteboundary7";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/java-archive\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut s = std::net::TcpStream::connect(addr).expect("connect job-manager");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /artifacts/v1/namespaces/default/artifacts:upload HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    read_json(s)
}

/// The value of a `/metrics` series line that contains every one of `parts`.
pub fn series_with(exposition: &str, parts: &[&str]) -> Option<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
}

#[test]
fn the_stand_in_signs_like_the_reference_vectors() {
    // /work/shared/vectors/dingtalk_sign_vector.py (Python's hmac, base64, quote_plus).
    assert_eq!(
        dingtalk_sign("SEC000test", "1700000000000"),
        "1hLl2KkRX3rps9FaitIUwaac%2BCtAFEaP345jvdrTL7c%3D"
    );
    assert_eq!(
        dingtalk_sign("SEC000test", "1700000000002"),
        "grHvSRt%2BCGrJNBpmhtGOSg%2FN%2BvZcCXdTeJeeNxX0dFA%3D"
    );
}
