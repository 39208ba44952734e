//! p99 added latency at a fixed arrival rate, across the process boundary, open loop.
//!
//! `cargo bench -p dingtalk-alert --bench open_loop` (or bench/dingtalk-alert/run.sh).
//!
//! A generator in this process sends one Alertmanager webhook (one alert) every millisecond
//! (1,000 alerts/s) to the release binary on loopback. Each send is scheduled at
//! `start + i ms` and spawned on its own task, so a slow answer never delays the next send
//! (no coordinated omission: a send that starts late counts its lateness). The DingTalk
//! stand-in in this process timestamps each message's arrival; latency = arrival at the
//! stand-in − scheduled send time. Delivery is asynchronous (the gateway answers once the
//! alert is queued), so the end-to-end figure is the one a user sees; the webhook answer time
//! is printed too. Every webhook uses its own robot so DingTalk's 20 messages per robot per
//! minute never delays one. The baseline (the "peer") is the same generator sending a ready
//! DingTalk body straight to the stand-in at the same schedule: the loopback + client +
//! stand-in floor that any gateway adds to.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use dingtalk_alert::transport::SystemClock;
use support::{payload, RobotCfg, StandIn};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_dingtalk-alert");
const RATE_PER_S: u64 = 1_000;
const WARMUP: usize = 500;
const SAMPLES: usize = 5_000;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

struct Run {
    e2e: Vec<Duration>,
    answer: Vec<Duration>,
}

/// Sends `n` requests open loop, request `i` at `start + i / RATE`; `req(i)` gives the URL
/// and body. Returns per request the scheduled time and the answer latency.
async fn open_loop(
    client: &reqwest::Client,
    n: usize,
    req: impl Fn(usize) -> (String, String),
) -> Vec<(Instant, Duration)> {
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_nanos(1_000_000_000 / RATE_PER_S);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (url, body) = req(i);
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at).await;
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let _ = r.bytes().await;
            (at, at.elapsed())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn collect(s: &StandIn, prefix: &str, sent: &[(Instant, Duration)]) -> Run {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut arrived: HashMap<String, Instant> = HashMap::new();
    loop {
        arrived.clear();
        for a in s.accepted() {
            if let Some(i) = a.token.strip_prefix(prefix) {
                arrived.insert(i.to_string(), a.at);
            }
        }
        if arrived.len() == sent.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{prefix}: only {} of {} messages arrived",
            arrived.len(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut run = Run {
        e2e: vec![],
        answer: vec![],
    };
    for (i, (at, ans)) in sent.iter().enumerate().skip(WARMUP) {
        run.e2e.push(arrived[&i.to_string()] - *at);
        run.answer.push(*ans);
    }
    run.e2e.sort();
    run.answer.sort();
    run
}

fn spawn_gateway(config: &str, dir: &std::path::Path) -> (Killed, SocketAddr) {
    let cfg = dir.join("bench.yml");
    std::fs::write(&cfg, config).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], common::testkit::free_port()).into();
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

fn line(name: &str, v: &[Duration]) {
    println!(
        "{name:<44} p50 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>7}",
        us(pct(v, 0.5)),
        us(pct(v, 0.99)),
        us(pct(v, 0.999)),
        us(*v.last().unwrap())
    );
}

async fn bench() {
    let dir = tempfile_dir();
    let s = StandIn::new(Arc::new(SystemClock));
    let (base, _) = s.serve().await;
    let total = SAMPLES + WARMUP;
    let mut config = String::from("targets:\n");
    for i in 0..total {
        s.robot(
            &format!("gw{i}"),
            RobotCfg {
                secret: Some(format!("SEC{i}")),
                keyword: None,
            },
        );
        s.robot(&format!("direct{i}"), RobotCfg::default());
        config.push_str(&format!(
            "  t{i}: {{access_token: gw{i}, secret: SEC{i}, url: '{base}'}}\n"
        ));
    }
    let (_gw, addr) = spawn_gateway(&config, &dir);
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    wait_healthy(&client, addr).await;

    let body = serde_json::json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "x".repeat(600)}}).to_string();
    let sent = open_loop(&client, total, |i| {
        (
            format!("{base}/robot/send?access_token=direct{i}"),
            body.clone(),
        )
    })
    .await;
    let direct = collect(&s, "direct", &sent).await;

    let sent = open_loop(&client, total, |i| {
        (
            format!("http://{addr}/dingtalk/t{i}/send"),
            payload(&format!("ol{i}"), 1, "firing").to_string(),
        )
    })
    .await;
    let via = collect(&s, "gw", &sent).await;
    assert_eq!(s.violations(), 0);

    println!(
        "== open loop, {RATE_PER_S} alerts/s, {SAMPLES} samples after {WARMUP} warm-up, loopback =="
    );
    line("direct to the stand-in (baseline), arrival", &direct.e2e);
    line("gateway process, arrival at the stand-in", &via.e2e);
    line("gateway process, its webhook answer", &via.answer);
    let added99 = pct(&via.e2e, 0.99).saturating_sub(pct(&direct.e2e, 0.99));
    println!(
        "p99 added over the baseline: {}; p99 end to end {} (goal <= 1000 µs; ratio {:.2})",
        us(added99),
        us(pct(&via.e2e, 0.99)),
        pct(&via.e2e, 0.99).as_secs_f64() / 1e-3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dingtalk-open-loop-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}
