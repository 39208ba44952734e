//! A strict DingTalk robot stand-in, usable in-process (as a [`Transport`], for tests under
//! `tokio::time::pause()`) and on loopback (an axum server on 127.0.0.1:0).
//!
//! It checks what DingTalk checks, in DingTalk's order, and answers with DingTalk's bodies:
//! unknown token (300001), rate (more than 20 requests in any 60 s → 130101 and a 10-minute
//! ban), signature (`timestamp` within one hour, `sign` = base64 HMAC-SHA256 of
//! `timestamp\nsecret`, 310000), body size (over 20000 bytes → 460101), message shape, and
//! keyword (310000). Scripted answers (`script`) are served before the checks, to drive
//! failure sequences.
#![allow(dead_code)]

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::testkit::{self, http};

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    routing::post,
    Router,
};
use base64::Engine;
use dingtalk_alert::transport::{BoxFuture, Clock, Reply, SystemClock, Transport, TransportError};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::time::Instant;

pub const BAN: Duration = Duration::from_secs(600);
pub const LIMIT: usize = 20;

/// A robot as configured in the DingTalk group.
#[derive(Clone, Debug, Default)]
pub struct RobotCfg {
    pub secret: Option<String>,
    pub keyword: Option<String>,
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Script {
    /// Answer with this HTTP status and body.
    Answer(u16, String),
    /// Take this long, then accept normally (for timeouts).
    Hang(Duration),
}

/// A request DingTalk accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub token: String,
    pub at: Instant,
    pub body: Value,
    pub bytes: usize,
    /// Mobiles DingTalk would really notify: in `at.atMobiles` and written as `@mobile`.
    pub notified: Vec<String>,
}

impl Accepted {
    /// The message text, whatever the type.
    pub fn text(&self) -> String {
        let b = &self.body;
        let parts = [
            &b["markdown"]["title"],
            &b["markdown"]["text"],
            &b["text"]["content"],
            &b["actionCard"]["title"],
            &b["actionCard"]["text"],
        ];
        parts
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Default)]
struct RobotState {
    cfg: RobotCfg,
    requests: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

#[derive(Default)]
struct State_ {
    robots: HashMap<String, RobotState>,
    script: VecDeque<Script>,
    accepted: Vec<Accepted>,
    /// Every request, accepted or not: (token, time, errcode).
    log: Vec<(String, Instant, i64)>,
    /// Times a robot went over 20 per minute.
    violations: usize,
}

/// The stand-in. Its wall clock is `clock` (so signatures age with paused time too).
#[derive(Clone)]
pub struct StandIn {
    state: Arc<Mutex<State_>>,
    clock: Arc<dyn Clock>,
    /// Woken on every accepted message.
    pub arrived: Arc<tokio::sync::Notify>,
}

fn answer(code: i64, msg: &str) -> (u16, String) {
    (200, json!({"errcode": code, "errmsg": msg}).to_string())
}

const MORE: &str = ", more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]";

impl StandIn {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State_::default())),
            clock,
            arrived: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn robot(&self, token: &str, cfg: RobotCfg) -> &Self {
        self.state.lock().unwrap().robots.insert(
            token.to_string(),
            RobotState {
                cfg,
                ..RobotState::default()
            },
        );
        self
    }

    pub fn script(&self, items: impl IntoIterator<Item = Script>) {
        self.state.lock().unwrap().script.extend(items);
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// How many requests were accepted, and when the `n`-th (1-based) was, without copying.
    pub fn accepted_at(&self, n: usize) -> Option<Instant> {
        let st = self.state.lock().unwrap();
        st.accepted.get(n.checked_sub(1)?).map(|a| a.at)
    }

    pub fn log(&self) -> Vec<(String, Instant, i64)> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn violations(&self) -> usize {
        self.state.lock().unwrap().violations
    }

    /// The most requests to `token` that started within any 60 s window.
    pub fn max_per_minute(&self, token: &str) -> usize {
        let times: Vec<Instant> = self
            .log()
            .into_iter()
            .filter(|(t, _, _)| t == token)
            .map(|(_, at, _)| at)
            .collect();
        let mut best = 0;
        for (i, start) in times.iter().enumerate() {
            let n = times[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < Duration::from_secs(60))
                .count();
            best = best.max(n);
        }
        best
    }

    fn next_script(&self) -> Option<Script> {
        self.state.lock().unwrap().script.pop_front()
    }

    /// Checks one request the way DingTalk does.
    pub fn handle(&self, query: &str, body: &[u8]) -> (u16, String) {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let token = params.get("access_token").cloned().unwrap_or_default();
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        let (code, reply) = self.check(&mut st, &token, &params, body, now);
        st.log.push((token, now, code));
        drop(st);
        if code == 0 {
            self.arrived.notify_waiters();
        }
        reply
    }

    fn check(
        &self,
        st: &mut State_,
        token: &str,
        params: &HashMap<String, String>,
        body: &[u8],
        now: Instant,
    ) -> (i64, (u16, String)) {
        let Some(robot) = st.robots.get_mut(token) else {
            return (300001, answer(300001, "token is not exist"));
        };
        if robot.banned_until.is_some_and(|until| now < until) {
            return (
                130101,
                answer(130101, "send too fast, exceed 20 times per minute"),
            );
        }
        while robot
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            robot.requests.pop_front();
        }
        robot.requests.push_back(now);
        if robot.requests.len() > LIMIT {
            robot.banned_until = Some(now + BAN);
            st.violations += 1;
            return (
                130101,
                answer(130101, "send too fast, exceed 20 times per minute"),
            );
        }
        if let Some(secret) = &robot.cfg.secret {
            let (Some(ts), Some(sign)) = (params.get("timestamp"), params.get("sign")) else {
                return (310000, answer(310000, &format!("sign not match{MORE}")));
            };
            let Ok(ts_ms) = ts.parse::<i64>() else {
                return (310000, answer(310000, &format!("invalid timestamp{MORE}")));
            };
            if (self.clock.now_ms() - ts_ms).abs() > 3_600_000 {
                return (310000, answer(310000, &format!("invalid timestamp{MORE}")));
            }
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{ts}\n{secret}").as_bytes());
            let expected =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            // `params` are already URL-decoded once, as DingTalk's server does.
            if *sign != expected {
                return (310000, answer(310000, &format!("sign not match{MORE}")));
            }
        }
        if body.len() > 20_000 {
            return (
                460101,
                answer(460101, "message too long, exceed 20000 bytes"),
            );
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return (40035, answer(40035, "缺少参数 json"));
        };
        let s = |p: &Value| p.as_str().filter(|x| !x.is_empty()).is_some();
        let shape_ok = match v["msgtype"].as_str() {
            Some("markdown") => s(&v["markdown"]["title"]) && s(&v["markdown"]["text"]),
            Some("text") => s(&v["text"]["content"]),
            Some("actionCard") => {
                s(&v["actionCard"]["title"])
                    && s(&v["actionCard"]["text"])
                    && (s(&v["actionCard"]["singleURL"]) || v["actionCard"]["btns"].is_array())
            }
            _ => false,
        };
        if !shape_ok {
            return (40035, answer(40035, "缺少参数 json"));
        }
        let accepted = Accepted {
            token: token.to_string(),
            at: now,
            bytes: body.len(),
            notified: vec![],
            body: v,
        };
        let text = accepted.text();
        if let Some(kw) = &robot.cfg.keyword {
            if !text.contains(kw.as_str()) {
                return (
                    310000,
                    answer(310000, &format!("keywords not in content{MORE}")),
                );
            }
        }
        let notified = accepted.body["at"]["atMobiles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str())
                    .filter(|m| text.contains(&format!("@{m}")))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        st.accepted.push(Accepted {
            notified,
            ..accepted
        });
        (0, answer(0, "ok"))
    }

    /// Serves on 127.0.0.1:0 at `/robot/send`; returns the base URL.
    pub async fn serve(&self) -> (String, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/robot/send", post(http_handler))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), addr)
    }

    /// Runs the stand-in on its own thread and runtime (for tests that drive a real process
    /// from blocking code).
    pub fn serve_in_background(&self) -> String {
        let me = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (base, _) = me.serve().await;
                tx.send(base).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    }
}

async fn http_handler(
    State(s): State<StandIn>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 1],
    String,
) {
    let hang = match s.next_script() {
        Some(Script::Answer(status, body)) => {
            return (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
        }
        Some(Script::Hang(d)) => Some(d),
        None => None,
    };
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let (status, body) = s.handle(q.as_deref().unwrap_or(""), &body);
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
}

/// In-process transport straight into the stand-in (no sockets, so paused time is exact).
impl Transport for StandIn {
    fn post(
        &self,
        url: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(async move {
            let query = url
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .to_string();
            let reply = async {
                match self.next_script() {
                    Some(Script::Answer(status, body)) => {
                        return Reply {
                            status,
                            body: body.into_bytes(),
                        }
                    }
                    Some(Script::Hang(d)) => tokio::time::sleep(d).await,
                    None => {}
                }
                let (status, body) = self.handle(&query, &body);
                Reply {
                    status,
                    body: body.into_bytes(),
                }
            };
            tokio::time::timeout(timeout, reply)
                .await
                .map_err(|_| TransportError::Timeout(timeout))
        })
    }
}

/// A webhook payload with `n` firing alerts named `{prefix}-{i}`.
pub fn payload(prefix: &str, n: usize, status: &str) -> Value {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "status": status,
                "labels": {"alertname": format!("{prefix}-{i:03}"), "severity": "critical", "instance": format!("node{i}:9100")},
                "annotations": {"summary": format!("summary of {prefix}-{i:03}")},
                "startsAt": "2026-11-24T14:12:29Z",
                "endsAt": if status == "resolved" { "2026-11-24T14:20:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prom:9090/graph?g0.expr=up",
                "fingerprint": format!("{prefix}{i:04}"),
            })
        })
        .collect();
    json!({
        "version": "4", "groupKey": format!("{{}}:{{group=\"{prefix}\"}}"), "truncatedAlerts": 0,
        "status": status, "receiver": "dingtalk", "groupLabels": {"group": prefix},
        "commonLabels": {"severity": "critical"}, "commonAnnotations": {},
        "externalURL": "http://am.example:9093", "alerts": alerts,
    })
}

/// The real `dingtalk-alert` binary on a free loopback port, its stderr in a file.
pub struct Gw {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Gw {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Gw {
        let port = testkit::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = testkit::tempfile_dir();
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_dingtalk-alert"))
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let gw = Gw { child, addr, log };
        testkit::wait_for(
            || matches!(http(gw.addr, "GET", "/-/healthy", ""), Ok((200, _))),
            "gateway healthy",
        );
        gw
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(self.addr, "POST", path, body).unwrap()
    }

    pub fn get(&self, path: &str) -> String {
        http(self.addr, "GET", path, "").unwrap().1
    }

    pub fn metric(&self, series: &str) -> f64 {
        testkit::metric(&self.get("/metrics"), series).unwrap_or(0.0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in serving on loopback from its own thread; returns it and its base URL.
pub fn standin() -> (StandIn, String) {
    let s = StandIn::new(Arc::new(SystemClock));
    let base = s.serve_in_background();
    (s, base)
}

/// The compiled config for `yaml`, targets posting to a DingTalk base that is never dialled
/// (tests hand the gateway an in-process transport).
pub fn compiled(yaml: &str) -> Arc<dingtalk_alert::config::Compiled> {
    use dingtalk_alert::config::{self, FlagTarget};
    config::load_str(
        yaml,
        std::path::Path::new("test.yml"),
        &FlagTarget {
            base_url: "http://dingtalk.test".into(),
            ..FlagTarget::default()
        },
    )
    .unwrap()
    .compiled
    .unwrap()
}
