//! Gateway overhead and ingest throughput, on loopback, against the real binary.
//!
//! `cargo bench -p dingtalk-alert --bench overhead` (or bench/dingtalk-alert/run.sh).
//!
//! 1. Overhead per message: the time from a client POSTing an Alertmanager payload with one
//!    alert to the gateway until the DingTalk stand-in has the rendered, signed message,
//!    compared with the client POSTing a ready DingTalk body to the stand-in directly. Each
//!    sample uses its own robot so the 20/minute limit never delays it.
//! 2. Alerts accepted per second: concurrent clients POST payloads of 100 alerts to one
//!    target; every accepted alert must be counted in the gateway's queue (none lost). The
//!    same alerts are POSTed to a real Alertmanager's `/api/v2/alerts` in the same run, when
//!    it is installed, for a ratio against the peer.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use dingtalk_alert::transport::SystemClock;
use support::{payload, RobotCfg, StandIn};

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-alert");
const SAMPLES: usize = 2_000;
const WARMUP: usize = 100;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn wait_healthy(client: &reqwest::Client, addr: SocketAddr) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("http://{addr}/-/healthy")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} not healthy");
}

async fn wait_accepted(s: &StandIn, n: usize) -> tokio::time::Instant {
    loop {
        let arrived = s.arrived.notified();
        if let Some(at) = s.accepted_at(n) {
            return at;
        }
        arrived.await;
    }
}

fn spawn_gateway(config: &str, dir: &std::path::Path) -> (Killed, SocketAddr) {
    let cfg = dir.join("bench.yml");
    std::fs::write(&cfg, config).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(BIN)
        .args(["--web.listen-address", &addr.to_string()])
        .args(["--config.file", cfg.to_str().unwrap()])
        .args(["--log.level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (Killed(child), addr)
}

async fn overhead(dir: &std::path::Path) {
    let s = StandIn::new(Arc::new(SystemClock));
    let (base, _) = s.serve().await;
    let total = SAMPLES + WARMUP;
    let mut config = String::from("targets:\n");
    for i in 0..total {
        let tok = format!("tok{i}");
        s.robot(
            &tok,
            RobotCfg {
                secret: Some(format!("SEC{i}")),
                keyword: None,
            },
        );
        config.push_str(&format!(
            "  t{i}: {{access_token: {tok}, secret: SEC{i}, url: '{base}'}}\n"
        ));
    }
    for i in 0..total {
        // One robot per sample here too: DingTalk's limit is per robot.
        s.robot(&format!("direct{i}"), RobotCfg::default());
    }
    let (_gw, addr) = spawn_gateway(&config, dir);
    let client = reqwest::Client::new();
    wait_healthy(&client, addr).await;

    // The same gateway code in this process too (same scheduling as the baseline).
    let cfg = dingtalk_alert::config::load_str(
        &config,
        std::path::Path::new("bench.yml"),
        &dingtalk_alert::config::FlagTarget::default(),
    )
    .unwrap();
    let registry = prometheus::Registry::new();
    let g = dingtalk_alert::gateway::Gateway::start(
        cfg.compiled.clone().unwrap(),
        Arc::new(dingtalk_alert::transport::HttpTransport::new().unwrap()),
        Arc::new(SystemClock),
        dingtalk_alert::metrics::Metrics::register("dingtalk_alert", &registry),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let in_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, dingtalk_alert::api::router(g)).await;
    });

    // Interleaved, so that load from elsewhere hits all three alike:
    // direct (a ready DingTalk body straight to the stand-in), via the gateway process, via
    // the in-process gateway (Alertmanager payload in, signed rendered message out).
    let body = serde_json::json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "x".repeat(600)}}).to_string();
    let (mut direct, mut via, mut accept, mut via_in, mut accept_in) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut n = 0;
    for i in 0..total {
        let t0 = tokio::time::Instant::now();
        let r = client
            .post(format!("{base}/robot/send?access_token=direct{i}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let _ = r.bytes().await;
        n += 1;
        let at = wait_accepted(&s, n).await;
        n += 1;
        let (e2e, ans) = one_via(&client, addr, &s, i, n, "p").await;
        n += 1;
        let (e2e_in, ans_in) = one_via(&client, in_addr, &s, i, n, "i").await;
        if i >= WARMUP {
            direct.push(at - t0);
            via.push(e2e);
            accept.push(ans);
            via_in.push(e2e_in);
            accept_in.push(ans_in);
        }
    }
    assert_eq!(s.violations(), 0);
    for v in [
        &mut direct,
        &mut via,
        &mut accept,
        &mut via_in,
        &mut accept_in,
    ] {
        v.sort();
    }
    println!("== overhead per message (loopback, {SAMPLES} samples, signed markdown) ==");
    println!(
        "direct to DingTalk stand-in  p50 {}  p99 {}",
        us(pct(&direct, 0.5)),
        us(pct(&direct, 0.99))
    );
    println!(
        "via gateway (end to end)     p50 {}  p99 {}",
        us(pct(&via, 0.5)),
        us(pct(&via, 0.99))
    );
    println!(
        "gateway answers Alertmanager p50 {}  p99 {}",
        us(pct(&accept, 0.5)),
        us(pct(&accept, 0.99))
    );
    println!(
        "added by the gateway         p50 {}  p99 {}",
        us(pct(&via, 0.5).saturating_sub(pct(&direct, 0.5))),
        us(pct(&via, 0.99).saturating_sub(pct(&direct, 0.99)))
    );
    println!(
        "in-process gateway, e2e      p50 {}  p99 {}",
        us(pct(&via_in, 0.5)),
        us(pct(&via_in, 0.99))
    );
    println!(
        "in-process gateway, answer   p50 {}  p99 {}",
        us(pct(&accept_in, 0.5)),
        us(pct(&accept_in, 0.99))
    );
    println!(
        "added (in-process gateway)   p50 {}  p99 {}",
        us(pct(&via_in, 0.5).saturating_sub(pct(&direct, 0.5))),
        us(pct(&via_in, 0.99).saturating_sub(pct(&direct, 0.99)))
    );
}

/// Concurrent clients POST `batch`-alert payloads for `secs`; returns alerts accepted.
async fn flood(
    url: String,
    body_for: impl Fn(u64) -> String + Send + Sync + 'static,
    clients: usize,
    secs: u64,
) -> (u64, Duration) {
    let client = reqwest::Client::new();
    let accepted = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let body_for = Arc::new(body_for);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, accepted, seq, body_for) = (
            client.clone(),
            url.clone(),
            accepted.clone(),
            seq.clone(),
            body_for.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body_for(n))
                    .send()
                    .await
                    .unwrap();
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                if ok {
                    accepted.fetch_add(100, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (accepted.load(Ordering::Relaxed), start.elapsed())
}

/// POSTs a single-alert payload to target `t{i}` at `addr` and waits until the stand-in has
/// accepted message number `n`. Returns (end to end, answer) times.
async fn one_via(
    client: &reqwest::Client,
    addr: SocketAddr,
    s: &StandIn,
    i: usize,
    n: usize,
    tag: &str,
) -> (Duration, Duration) {
    let p = payload(&format!("bench{tag}{i}"), 1, "firing").to_string();
    let t0 = tokio::time::Instant::now();
    let r = client
        .post(format!("http://{addr}/dingtalk/t{i}/send"))
        .header("content-type", "application/json")
        .body(p)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let _ = r.bytes().await;
    let answered = tokio::time::Instant::now();
    let at = wait_accepted(s, n).await;
    (at - t0, answered - t0)
}

async fn throughput(dir: &std::path::Path) {
    let s = StandIn::new(Arc::new(SystemClock));
    let (base, _) = s.serve().await;
    s.robot("tok-flood", RobotCfg::default());
    let config = format!(
        "targets:\n  flood: {{access_token: tok-flood, url: '{base}'}}\ndelivery: {{max_queued_alerts: 100000000}}\n"
    );
    let (_gw, addr) = spawn_gateway(&config, dir);
    let client = reqwest::Client::new();
    wait_healthy(&client, addr).await;
    let (accepted, took) = flood(
        format!("http://{addr}/dingtalk/flood/send"),
        |n| {
            let mut p = payload(&format!("f{n}"), 100, "firing");
            for a in p["alerts"].as_array_mut().unwrap() {
                let fp = a["fingerprint"].as_str().unwrap().to_string();
                a["fingerprint"] = format!("{n}-{fp}").into();
            }
            p.to_string()
        },
        4,
        5,
    )
    .await;
    let rate = accepted as f64 / took.as_secs_f64();
    // Nothing lost: every accepted alert is counted, and is either delivered or queued.
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    let received = m(r#"dingtalk_alert_alerts_received_total{target="flood"}"#);
    let queued = m(r#"dingtalk_alert_queue_alerts{target="flood"}"#);
    let delivered = m(r#"dingtalk_alert_alerts_delivered_total{target="flood"}"#);
    println!("== alerts accepted per second (4 clients, 100 alerts per request, 5 s) ==");
    println!("gateway      {rate:>10.0} alerts/s   ({accepted} accepted; counted {received}, queued {queued}, delivered {delivered})");
    assert_eq!(received as u64, accepted, "accepted alerts not all counted");
    assert_eq!((queued + delivered) as u64, accepted, "alerts lost");

    let am = "/usr/bin/prometheus-alertmanager";
    if !std::path::Path::new(am).exists() {
        println!("alertmanager (absent: no peer ratio)");
        return;
    }
    let am_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cfg = dir.join("am.yml");
    std::fs::write(&cfg, "route: {receiver: none}\nreceivers: [{name: none}]\n").unwrap();
    let _am = Killed(
        Command::new(am)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&client, am_addr).await;
    let (am_accepted, am_took) = flood(
        format!("http://{am_addr}/api/v2/alerts"),
        |n| {
            let list: Vec<_> = (0..100)
                .map(|i| {
                    serde_json::json!({
                        "labels": {"alertname": format!("f{n}"), "instance": format!("node{i}:9100"), "severity": "critical"},
                        "annotations": {"summary": format!("summary of f{n}-{i}")},
                        "generatorURL": "http://prom:9090/graph?g0.expr=up",
                    })
                })
                .collect();
            serde_json::Value::Array(list).to_string()
        },
        4,
        5,
    )
    .await;
    let am_rate = am_accepted as f64 / am_took.as_secs_f64();
    println!(
        "alertmanager {am_rate:>10.0} alerts/s   (POST /api/v2/alerts, same alerts, same clients)"
    );
    println!("ratio gateway / alertmanager: {:.2}", rate / am_rate);
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less args; only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("dingtalk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    rt.block_on(async {
        overhead(&dir).await;
        throughput(&dir).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
