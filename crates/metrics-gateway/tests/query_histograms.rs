//! Native histograms on the Prometheus HTTP query API, on the real process: a histogram
//! pushed by protobuf comes back from `/api/v1/query` as `"histogram"` and from
//! `/api/v1/query_range` as `"histograms"`, in the JSON shape Prometheus documents
//! (bucket boundaries worked out by hand for schema 0); then the same query against
//! Debian's Prometheus scraping the gateway's protobuf `/metrics` with native histograms
//! enabled (skipped when `prometheus` is absent).

mod support;

use std::time::{Duration, Instant};

use common::testkit::Proc;
use metrics_gateway::parse::proto::{
    encode, BucketSpan, Histogram, LabelPair, MetricFamily, ProtoMetric,
};
use serde_json::{json, Value};
use support::*;

/// A schema-0 histogram: zero bucket [-0.001, 0.001] with 1, negative bucket 0
/// ([-1, -0.5)) with 1, positive buckets 1..=3 ((1,2], (2,4], (4,8]) with 2, 0, 3.
fn push_histogram(p: &Proc) {
    let h = Histogram {
        sample_count: Some(7),
        sample_sum: Some(10.5),
        schema: Some(0),
        zero_threshold: Some(0.001),
        zero_count: Some(1),
        negative_span: vec![BucketSpan {
            offset: Some(0),
            length: Some(1),
        }],
        negative_delta: vec![1],
        positive_span: vec![BucketSpan {
            offset: Some(1),
            length: Some(3),
        }],
        positive_delta: vec![2, -2, 3],
        ..Default::default()
    };
    let mf = MetricFamily {
        name: Some("lat_seconds".into()),
        help: Some("Latency.".into()),
        r#type: Some(4),
        metric: vec![ProtoMetric {
            label: vec![LabelPair {
                name: Some("path".into()),
                value: Some("/a".into()),
            }],
            histogram: Some(h),
            ..Default::default()
        }],
    };
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/h",
        &[("Content-Type", PROTO_CT)],
        &encode(&[mf]),
    );
    assert_eq!(r.status, 200, "protobuf push: {}", r.body);
}

/// What that histogram is in the query API, written by hand from the documentation.
const HIST_JSON: &str = concat!(
    r#"{"count":"7","sum":"10.5","buckets":["#,
    r#"[1,"-1","-0.5","1"],"#,
    r#"[3,"-0.001","0.001","1"],"#,
    r#"[0,"1","2","2"],"#,
    r#"[0,"4","8","3"]]}"#
);

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// GET `path` at `addr`: status, raw body.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = request(addr, "GET", path, &[], b"");
    (r.status, r.body)
}

#[test]
fn raw_native_histograms_come_back_in_prometheus_json() {
    let p = ours(&["--storage.record-interval", "1h"]);
    // A float series beside it, to see both keys in one answer.
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/f",
        &[],
        b"# TYPE lat_floats gauge\nlat_floats 2\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    push_histogram(&p);
    let t = now_s() + 1;

    // Instant query: `histogram` instead of `value`.
    let (status, body) = get(
        p.addr,
        &format!("/api/v1/query?query={}&time={t}", enc("lat_seconds")),
    );
    assert_eq!(status, 200, "{body}");
    let want_sample = format!(r#""histogram":[{t},{HIST_JSON}]"#);
    assert!(body.contains(&want_sample), "{body}\nwanted {want_sample}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let hist: Value = serde_json::from_str(HIST_JSON).unwrap();
    let result = &v["data"]["result"];
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(result.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(result[0]["metric"]["__name__"], "lat_seconds");
    assert_eq!(result[0]["metric"]["path"], "/a");
    assert_eq!(result[0]["histogram"], json!([t, hist]));
    assert!(result[0].get("value").is_none(), "{body}");

    // Range query over 3 steps: `histograms` and no `values` for the histogram series,
    // `values` and no `histograms` for the float series.
    let q = enc("{__name__=~\"lat_seconds|lat_floats\"}");
    let (status, body) = get(
        p.addr,
        &format!(
            "/api/v1/query_range?query={q}&start={t}&end={}&step=1",
            t + 2
        ),
    );
    assert_eq!(status, 200, "{body}");
    let want_series = format!(
        r#""histograms":[[{t},{HIST_JSON}],[{},{HIST_JSON}],[{},{HIST_JSON}]]"#,
        t + 1,
        t + 2
    );
    assert!(body.contains(&want_series), "{body}\nwanted {want_series}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{body}");
    let by_name = |n: &str| {
        series
            .iter()
            .find(|s| s["metric"]["__name__"] == n)
            .unwrap_or_else(|| panic!("no {n} in {body}"))
    };
    let h = by_name("lat_seconds");
    assert_eq!(
        h["histograms"],
        json!([[t, hist], [t + 1, hist], [t + 2, hist]])
    );
    assert!(h.get("values").is_none(), "{body}");
    let f = by_name("lat_floats");
    assert_eq!(f["values"], json!([[t, "2"], [t + 1, "2"], [t + 2, "2"]]));
    assert!(f.get("histograms").is_none(), "{body}");

    // Functions of histograms still answer floats.
    let (status, body) = get(
        p.addr,
        &format!(
            "/api/v1/query?query={}&time={t}",
            enc("histogram_count(lat_seconds)")
        ),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"], json!([t, "7"]), "{body}");
}

/// Debian's Prometheus with native histograms enabled, scraping `target` every second.
struct RealPrometheus {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for RealPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn real_prometheus(target: std::net::SocketAddr) -> Option<RealPrometheus> {
    let found = std::process::Command::new("which")
        .arg("prometheus")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIP native histogram differential test: `prometheus` is not on PATH (apt install prometheus)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = common::testkit::free_port();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=native-histograms")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    Some(RealPrometheus {
        child,
        addr: ([127, 0, 0, 1], port).into(),
        _dir: dir,
    })
}

#[test]
fn the_histogram_json_is_the_same_as_prometheus_scraping_the_gateway() {
    let gw = ours(&["--storage.record-interval", "1h"]);
    push_histogram(&gw);
    let Some(prom) = real_prometheus(gw.addr) else {
        return;
    };
    let query = |addr, t: i64| {
        let (status, body) = common::testkit::http(
            addr,
            "GET",
            &format!("/api/v1/query?query={}&time={t}", enc("lat_seconds")),
            "",
        )
        .ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200).then_some(())?;
        v["data"]["result"].get(0).cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let theirs = loop {
        if let Some(s) = query(prom.addr, now_s()) {
            if s.get("histogram").is_some() {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the native histogram from the gateway"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = theirs["histogram"][0].as_i64().unwrap();
    let ours_s = query(gw.addr, t).expect("our answer");
    assert_eq!(ours_s["histogram"], theirs["histogram"]);
    assert_eq!(ours_s["metric"]["__name__"], theirs["metric"]["__name__"]);
    assert_eq!(ours_s["metric"]["path"], theirs["metric"]["path"]);
    let hist: Value = serde_json::from_str(HIST_JSON).unwrap();
    assert_eq!(theirs["histogram"][1], hist, "Prometheus answered {theirs}");
}
