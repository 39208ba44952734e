//! Real clients and scrapers against our gateway: the Python `prometheus_client`
//! (`push_to_gateway`, `pushadd_to_gateway`, `delete_from_gateway`, grouping keys that need
//! base64), Flink's PrometheusPushGatewayReporter bodies captured from Flink 2.3, and
//! Debian's Prometheus scraping us with `honor_labels`. Each skips with a message when its
//! peer is absent.

mod support;

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::testkit::{self, free_port, metric};
use support::*;

const PY_CLIENT: &str = r#"
import sys
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Summary,
                               push_to_gateway, pushadd_to_gateway, delete_from_gateway)
gw, phase = sys.argv[1], sys.argv[2]
key = {'instance': 'host/1:8080', 'empty': '', 'pod': 'tm-1'}
if phase == 'push':
    r = CollectorRegistry()
    Gauge('py_gauge', 'A gauge.', ['kind'], registry=r).labels('a').set(3.5)
    Counter('py_events', 'Events.', registry=r).inc(7)
    h = Histogram('py_latency_seconds', 'Latency.', buckets=(0.1, 1.0), registry=r)
    h.observe(0.05); h.observe(0.5)
    s = Summary('py_size_bytes', 'Sizes.', registry=r)
    s.observe(10); s.observe(30)
    push_to_gateway(gw, job='py/job', registry=r, grouping_key=key)
elif phase == 'pushadd':
    r = CollectorRegistry()
    Gauge('py_extra', 'Added later.', registry=r).set(1)
    pushadd_to_gateway(gw, job='py/job', registry=r, grouping_key=key)
elif phase == 'replace':
    r = CollectorRegistry()
    Gauge('py_only', 'Only this one.', registry=r).set(2)
    push_to_gateway(gw, job='py/job', registry=r, grouping_key=key)
elif phase == 'delete':
    delete_from_gateway(gw, job='py/job', grouping_key=key)
elif phase == 'clash':
    r = CollectorRegistry()
    Summary('py_only', 'Now a summary.', registry=r).observe(1)
    try:
        push_to_gateway(gw, job='other', registry=r)
    except Exception as e:
        print('refused:', e)
        sys.exit(3)
"#;

fn python_client_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIP {test}: python3 with prometheus_client is absent (pip install prometheus_client)"
        );
    }
    ok
}

fn py(gw: &str, phase: &str) -> (i32, String) {
    let out = Command::new("python3")
        .args(["-c", PY_CLIENT, gw, phase])
        .output()
        .expect("run python3");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn python_prometheus_client_pushes_adds_and_deletes() {
    if !python_client_available("python prometheus_client") {
        return;
    }
    let p = ours(&[]);
    let gw = p.addr.to_string();
    let group = r#"empty="",instance="host/1:8080",job="py/job",pod="tm-1""#;

    let (code, out) = py(&gw, "push");
    assert_eq!(code, 0, "{out}");
    let m = scrape(&p);
    for (series, want) in [
        (format!(r#"py_events_total{{{group}}}"#), 7.0),
        (
            format!(r#"py_latency_seconds_bucket{{{group},le="0.1"}}"#),
            1.0,
        ),
        (
            format!(r#"py_latency_seconds_bucket{{{group},le="+Inf"}}"#),
            2.0,
        ),
        (format!(r#"py_latency_seconds_count{{{group}}}"#), 2.0),
        (format!(r#"py_size_bytes_sum{{{group}}}"#), 40.0),
    ] {
        assert_eq!(metric(&m, &series), Some(want), "{series}\n{m}");
    }
    assert_eq!(
        metric(
            &m,
            r#"py_gauge{empty="",instance="host/1:8080",job="py/job",kind="a",pod="tm-1"}"#
        ),
        Some(3.5),
        "{m}"
    );
    assert!(m.contains("# TYPE py_latency_seconds histogram"), "{m}");
    assert!(m.contains("# TYPE py_size_bytes summary"), "{m}");
    assert!(m.contains("# HELP py_gauge A gauge."), "{m}");

    let (code, out) = py(&gw, "pushadd");
    assert_eq!(code, 0, "{out}");
    let m = scrape(&p);
    assert_eq!(metric(&m, &format!("py_extra{{{group}}}")), Some(1.0));
    assert_eq!(
        metric(&m, &format!("py_events_total{{{group}}}")),
        Some(7.0),
        "POST keeps the rest"
    );

    let (code, out) = py(&gw, "replace");
    assert_eq!(code, 0, "{out}");
    let m = scrape(&p);
    assert_eq!(metric(&m, &format!("py_only{{{group}}}")), Some(2.0));
    assert!(
        !m.contains("py_events_total"),
        "PUT replaced the group: {m}"
    );

    let (code, out) = py(&gw, "clash");
    assert_eq!(code, 3, "type clash refused with an HTTPError: {out}");
    assert!(out.contains("400"), "{out}");

    let (code, out) = py(&gw, "delete");
    assert_eq!(code, 0, "{out}");
    let m = scrape(&p);
    assert!(!m.contains("py/job"), "{m}");
}

/// Family name → (type, number of sample lines) of an exposition.
fn families(text: &str) -> BTreeMap<String, (String, usize)> {
    let mut out: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.into()).or_default().0 = kind.into();
        }
    }
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        if let Some(e) = out.get_mut(name) {
            e.1 += 1;
        }
    }
    out
}

#[test]
fn flink_reporter_bodies_are_accepted_and_every_family_is_exposed() {
    let Some(shared) = testkit::shared_dir("flink reporter bodies") else {
        return;
    };
    let dir = shared.join("samples/flink");
    if !dir.join("taskmanager-push.txt").exists() {
        eprintln!(
            "SKIP flink reporter bodies: {} has no captured bodies",
            dir.display()
        );
        return;
    }
    let headers = std::fs::read_to_string(dir.join("push-headers.txt")).unwrap();
    let first = headers.lines().next().unwrap();
    let path = first
        .split_whitespace()
        .find(|w| w.starts_with("/metrics/"))
        .unwrap();
    let content_type = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap()
        .trim();
    let p = ours(&[]);
    let mut expected = BTreeMap::new();
    for (file, group) in [
        ("taskmanager-push.txt", path.to_owned()),
        ("jobmanager-push.txt", format!("{path}/role/jobmanager")),
    ] {
        let body = std::fs::read(dir.join(file)).unwrap();
        let r = request(
            p.addr,
            "PUT",
            &group,
            &[("Content-Type", content_type)],
            &body,
        );
        assert_eq!(r.status, 200, "{file}: {}", r.body);
        for (name, (kind, n)) in families(&String::from_utf8_lossy(&body)) {
            let e: &mut (String, usize) = expected.entry(name).or_insert((kind, 0));
            e.1 += n;
        }
    }
    let exposed = families(&scrape(&p));
    assert!(expected.len() > 50, "the bodies hold many families");
    for (name, (kind, n)) in &expected {
        let got = exposed.get(name);
        assert_eq!(got, Some(&(kind.clone(), *n)), "family {name}");
    }
}

#[test]
fn prometheus_scrapes_us_with_honor_labels_and_sees_pushed_series() {
    const PROMETHEUS: &str = "/usr/bin/prometheus";
    if !Path::new(PROMETHEUS).exists() {
        eprintln!("SKIP prometheus scrape: {PROMETHEUS} is absent (apt install prometheus)");
        return;
    }
    let gw = ours(&[]);
    let r = request(
        gw.addr,
        "PUT",
        "/metrics/job/flink/instance/tm-1",
        &[],
        b"# TYPE flink_taskmanager_Status_JVM_CPU_Load gauge\nflink_taskmanager_Status_JVM_CPU_Load{tm_id=\"tm-1\"} 0.25\n",
    );
    assert_eq!(r.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
            gw.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prom = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let addr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "/api/v1/query?query=flink_taskmanager_Status_JVM_CPU_Load";
    let result = loop {
        let body = testkit::http(addr, "GET", query, "")
            .map(|r| r.1)
            .unwrap_or_default();
        if body.contains("tm-1") {
            break body;
        }
        if Instant::now() > deadline {
            let _ = prom.kill();
            panic!("Prometheus never saw the pushed series: {body}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    let v: serde_json::Value = serde_json::from_str(&result).unwrap();
    let series = &v["data"]["result"][0];
    assert_eq!(
        series["metric"]["job"], "flink",
        "honor_labels keeps the pushed job"
    );
    assert_eq!(series["metric"]["instance"], "tm-1");
    assert_eq!(series["value"][1], "0.25");
}
