//! Remote write on the real process: against a strict in-test receiver (headers, body,
//! auth, 400 dropped not retried, 500/429 retried, the queue bound, relabelling, config
//! errors), against Debian's Prometheus with its remote-write receiver and against
//! Debian's InfluxDB 1.x through its Prometheus write endpoint (each skipped when absent),
//! comparing what they store with what was pushed, sample for sample.

mod remote_write_gw;
mod remote_write_rx;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::testkit::{wait_for, Proc};
use remote_write_gw::{gateway, metric, put};
use remote_write_rx::Rx;
use serde_json::Value;
use support::*;

fn queue(extra: &str) -> String {
    format!("    queue_config: {{batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 200ms{extra}}}\n")
}

#[test]
fn sends_protobuf_snappy_with_auth_and_headers_and_retries_500_and_429() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::scripted(&[500, 429]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cr3t-from-file\n").unwrap();
    let gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - url: {}\n    name: strict\n    headers: {{X-Scope-OrgID: tenant-1}}\n    basic_auth: {{username: flink, password_file: {}}}\n{}",
            rx.url("receive"),
            pw.display(),
            queue("")
        ),
        &[],
    );
    put(&gw, "/metrics/job/j/instance/i", "a 1.5\nb{x=\"y\"} -2\n");
    wait_for(
        || {
            metric(
                &gw,
                "metrics_gateway_remote_write_samples_sent_total{remote=\"strict\"}",
            ) > 0.0
        },
        "sent",
    );
    let got = rx.got();
    assert_eq!(got.len(), 3, "500 and 429 retried once each, then 200");
    assert_eq!(got[0].raw, got[1].raw, "a retry resends the same batch");
    assert_eq!(got[1].raw, got[2].raw);
    let h = &got[2].head;
    for want in [
        "content-encoding: snappy",
        "content-type: application/x-protobuf",
        "x-prometheus-remote-write-version: 0.1.0",
        "x-scope-orgid: tenant-1",
        // base64("flink:s3cr3t-from-file")
        "authorization: basic zmxpbms6cznjcjn0lwzyb20tzmlszq==",
    ] {
        assert!(h.contains(want), "missing {want}: {h}");
    }
    let mut by_name: BTreeMap<String, (BTreeMap<String, String>, f64)> = BTreeMap::new();
    for (l, _, v) in &got[2].samples {
        by_name.insert(l["__name__"].clone(), (l.clone(), *v));
    }
    assert_eq!(by_name["a"].1, 1.5);
    assert_eq!(by_name["b"].1, -2.0);
    assert_eq!(by_name["b"].0["x"], "y");
    assert_eq!(by_name["b"].0["job"], "j");
    assert_eq!(by_name["b"].0["instance"], "i");
    assert!(by_name.contains_key("push_time_seconds"));
    let n = got[2].samples.len() as f64;
    let sent = metric(
        &gw,
        "metrics_gateway_remote_write_samples_sent_total{remote=\"strict\"}",
    );
    assert_eq!(sent, n);
    let retried = metric(
        &gw,
        "metrics_gateway_remote_write_samples_retried_total{remote=\"strict\"}",
    );
    assert_eq!(retried, 2.0 * n);
    // The secret appears nowhere in what the gateway shows.
    let (_, cfg) = gw.get("/-/config");
    assert!(
        cfg.contains("password_file") && !cfg.contains("s3cr3t"),
        "{cfg}"
    );
    assert!(
        !cfg.contains("tenant-1"),
        "header values are redacted: {cfg}"
    );
}

#[test]
fn a_400_is_dropped_and_counted_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::scripted(&[400]);
    let gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - url: {}\n    name: r\n    authorization: {{credentials: tok-123}}\n{}",
            rx.url("receive"),
            queue("")
        ),
        &[],
    );
    put(&gw, "/metrics/job/j", "a 1\n");
    wait_for(
        || {
            metric(
                &gw,
                "metrics_gateway_remote_write_samples_failed_total{remote=\"r\"}",
            ) > 0.0
        },
        "failed",
    );
    let n = rx.samples().len() as f64;
    std::thread::sleep(Duration::from_millis(600)); // several max_backoffs: no retry comes
    let got = rx.got();
    assert_eq!(got.len(), 1, "a 400 is never retried");
    assert!(
        got[0].head.contains("authorization: bearer tok-123"),
        "{}",
        got[0].head
    );
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_failed_total{remote=\"r\"}"
        ),
        n
    );
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_dropped_total{reason=\"rejected\",remote=\"r\"}"
        ),
        n
    );
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_retried_total{remote=\"r\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_sent_total{remote=\"r\"}"
        ),
        0.0
    );
    // The next batch goes out normally.
    put(&gw, "/metrics/job/j", "a 2\n");
    wait_for(
        || {
            metric(
                &gw,
                "metrics_gateway_remote_write_samples_sent_total{remote=\"r\"}",
            ) > 0.0
        },
        "sent later",
    );
}

#[test]
fn the_queue_bound_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::ZERO);
    let gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - url: {}\n    name: small\n    queue_config: {{capacity: 3, batch_send_deadline: 300ms}}\n",
            rx.url("receive"),
        ),
        &[],
    );
    // 7 series plus push_time_seconds and push_failure_time_seconds: 9 samples at once.
    let body: String = (0..7).map(|i| format!("m{i} {i}\n")).collect();
    put(&gw, "/metrics/job/j", &body);
    wait_for(
        || {
            metric(
                &gw,
                "metrics_gateway_remote_write_samples_sent_total{remote=\"small\"}",
            ) > 0.0
        },
        "sent",
    );
    assert_eq!(rx.samples().len(), 3, "only the capacity was queued");
    assert_eq!(
        metric(&gw, "metrics_gateway_remote_write_samples_dropped_total{reason=\"queue_full\",remote=\"small\"}"),
        6.0
    );
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_pending{remote=\"small\"}"
        ),
        0.0
    );
}

#[test]
fn write_relabel_configs_keep_drop_replace_labeldrop_labelkeep() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::ZERO);
    let gw = gateway(
        dir.path(),
        &format!(
            r#"remote_write:
  - url: {}
    name: rl
    queue_config: {{batch_send_deadline: 100ms}}
    write_relabel_configs:
      - {{source_labels: [__name__], regex: 'flink_.*', action: keep}}
      - {{source_labels: [__name__, tm], regex: 'flink_busy;tm-2', action: drop}}
      - {{source_labels: [tm], regex: 'tm-(\d+)', target_label: taskmanager, replacement: 'TM$1'}}
      - {{regex: 'tmp_.*', action: labeldrop}}
      - {{regex: '__name__|job|tm|taskmanager|tmp_kept', action: labelkeep}}
"#,
            rx.url("receive"),
        ),
        &[],
    );
    put(
        &gw,
        "/metrics/job/f",
        "flink_busy{tm=\"tm-1\",tmp_x=\"1\",other=\"o\"} 1\nflink_busy{tm=\"tm-2\"} 2\nx_flink_busy{tm=\"tm-1\"} 3\nflink_up 1\n",
    );
    wait_for(
        || {
            metric(
                &gw,
                "metrics_gateway_remote_write_samples_sent_total{remote=\"rl\"}",
            ) > 0.0
        },
        "sent",
    );
    let mut got: Vec<String> = rx
        .samples()
        .iter()
        .map(|(l, _, v)| format!("{l:?} {v}"))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            r#"{"__name__": "flink_busy", "job": "f", "taskmanager": "TM1", "tm": "tm-1"} 1"#,
            r#"{"__name__": "flink_up", "job": "f"} 1"#,
        ]
    );
    // push_time_seconds, push_failure_time_seconds, x_flink_busy (keep is anchored) and
    // the tm-2 series were dropped by relabelling.
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_dropped_total{reason=\"relabel\",remote=\"rl\"}"
        ),
        4.0
    );
}

#[test]
fn a_wrong_config_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, want) in [
        (
            "remote_write:\n  - url: http://127.0.0.1:1/w\n    queue_config: {capasity: 5}\n",
            "capasity",
        ),
        (
            "remote_write:\n  - url: http://127.0.0.1:1/w\n    basic_auth: {username: u, password: hunter2, password_file: /x}\n",
            "remote_write[0].basic_auth",
        ),
        (
            "remote_write:\n  - url: ftp://127.0.0.1:1/w\n",
            "remote_write[0].url",
        ),
        (
            "remote_write:\n  - url: http://127.0.0.1:1/w\n    write_relabel_configs: [{regex: '(', action: keep}]\n",
            "remote_write[0].write_relabel_configs[0]",
        ),
    ] {
        let cfg = dir.path().join("bad.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["--web.listen-address", "127.0.0.1:0", "--config.file"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{yaml} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{yaml}: error does not name {want}: {err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
    }
}

/// GET `path` on `addr`; `None` while it does not answer.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let r = request(addr, "GET", path, &[], b"");
    Some((r.status, r.body))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn on_path(bin: &str) -> bool {
    std::process::Command::new("which")
        .arg(bin)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A child process killed on drop, with its temporary directory.
struct Child(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Prometheus with its remote-write receiver on a free port, once it is ready;
/// killed when the returned child drops.
fn prometheus() -> (Child, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global: {}\n").unwrap();
    let port = common::testkit::free_port();
    let prom_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prom = Child(child, dir);
    wait_for(
        || get(prom_addr, "/-/ready").is_some_and(|(s, _)| s == 200),
        "prometheus ready",
    );
    (prom, prom_addr)
}

/// The raw samples of a range-vector query's matrix: labels → [(ms, value)].
type Raw = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn matrix(body: &str) -> Raw {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    let mut out = Raw::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let labels = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let samples = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(labels, samples);
    }
    out
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Pushes three rounds of `flink_x{tm}` (distinct values) into `gw`.
fn push_rounds(gw: &Proc) {
    for round in 0..3 {
        put(
            gw,
            "/metrics/job/rw/instance/jm",
            &format!(
                "flink_x{{tm=\"a\"}} {}\nflink_x{{tm=\"b\"}} {}\n",
                round as f64 + 0.25,
                -(round as f64) * 1e6
            ),
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn prometheus_stores_what_was_pushed_and_the_rule_results_sample_for_sample() {
    if !on_path("prometheus") {
        eprintln!(
            "SKIP remote write to Prometheus: `prometheus` is not on PATH (apt install prometheus)"
        );
        return;
    }
    let (_prom, prom_addr) = prometheus();

    let gdir = tempfile::tempdir().unwrap();
    std::fs::write(
        gdir.path().join("rules.yml"),
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - record: job:flink_x:sum\n        expr: sum by (job) (flink_x)\n",
    )
    .unwrap();
    let gw = gateway(
        gdir.path(),
        &format!(
            "rule_files: [rules.yml]\nremote_write:\n  - url: http://{prom_addr}/api/v1/write\n    name: prom\n    queue_config: {{batch_send_deadline: 100ms}}\n"
        ),
        &["--rule.evaluation-interval", "1s"],
    );
    let started = Instant::now();
    push_rounds(&gw);
    // Rule evaluations after the pushes; `at` lies far enough back that every evaluation
    // up to it has been copied into the history (once a second) before we read it.
    std::thread::sleep(Duration::from_millis(3000));
    let at = now_secs() - 1.5;
    let ours = |q: &str| {
        let (s, b) = get(
            gw.addr,
            &format!("/api/v1/query?query={}&time={at}", enc(q)),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
        matrix(&b)
    };
    let theirs = |q: &str| {
        let (s, b) = get(
            prom_addr,
            &format!("/api/v1/query?query={}&time={at}", enc(q)),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
        matrix(&b)
    };
    let pushed = ours("flink_x[10m]");
    let a: Vec<f64> = pushed
        .iter()
        .find(|(l, _)| l["tm"] == "a")
        .unwrap()
        .1
        .iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(a, [0.25, 1.25, 2.25], "the gateway's own history");
    let rules = ours("job:flink_x:sum[10m]");
    assert!(!rules.is_empty(), "no rule results");
    for (q, want) in [
        ("flink_x[10m]", &pushed),
        ("job:flink_x:sum[10m]", &rules),
        ("push_time_seconds[10m]", &ours("push_time_seconds[10m]")),
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = theirs(q);
            if &got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{q}: Prometheus has\n{got:?}\nthe gateway\n{want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let sent = metric(
        &gw,
        "metrics_gateway_remote_write_samples_sent_total{remote=\"prom\"}",
    );
    eprintln!(
        "remote write to Prometheus: {sent} samples, equal after {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_failed_total{remote=\"prom\"}"
        ),
        0.0
    );
}

#[test]
fn influxdb_stores_what_was_pushed_sample_for_sample() {
    if !on_path("influxd") {
        eprintln!("SKIP remote write to InfluxDB: `influxd` is not on PATH (apt install influxdb)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::testkit::free_port();
    let rpc = common::testkit::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("influxdb.conf"),
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n[subscriber]\n  enabled = false\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new("influxd")
        .arg("-config")
        .arg(dir.path().join("influxdb.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start influxd");
    let _influx = Child(child, dir);
    wait_for(
        || get(addr, "/ping").is_some_and(|(s, _)| s == 204),
        "influxd up",
    );
    let r = request(addr, "POST", "/query?q=CREATE+DATABASE+rw", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);

    let gdir = tempfile::tempdir().unwrap();
    let gw = gateway(
        gdir.path(),
        &format!(
            "remote_write:\n  - url: http://{addr}/api/v1/prom/write?db=rw\n    name: influx\n    queue_config: {{batch_send_deadline: 100ms}}\n"
        ),
        &[],
    );
    push_rounds(&gw);
    // `tm="b"` goes: its staleness marker (a NaN InfluxDB cannot store) shares a batch
    // with `a`'s new sample, which must arrive all the same.
    put(&gw, "/metrics/job/rw/instance/jm", "flink_x{tm=\"a\"} 7\n");
    let at = now_secs() + 1.0;
    let (_, b) = get(
        gw.addr,
        &format!("/api/v1/query?query={}&time={at}", enc("flink_x[10m]")),
    )
    .unwrap();
    let want = matrix(&b);
    assert_eq!(want.values().map(Vec::len).sum::<usize>(), 7);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, body) = get(
            addr,
            &format!("/query?db=rw&epoch=ms&q={}", enc("SELECT * FROM flink_x")),
        )
        .unwrap();
        assert_eq!(s, 200, "{body}");
        let got = influx_rows(&body);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "InfluxDB has\n{got:?}\nthe gateway\n{want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_failed_total{remote=\"influx\"}"
        ),
        0.0
    );
}

/// InfluxDB's rows of one measurement as labels (`__name__` = the measurement, every tag)
/// → samples.
fn influx_rows(body: &str) -> Raw {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut out = Raw::new();
    let Some(series) = v["results"][0]["series"].as_array() else {
        return out;
    };
    for s in series {
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for row in s["values"].as_array().unwrap() {
            let mut labels = BTreeMap::new();
            labels.insert(
                "__name__".to_string(),
                s["name"].as_str().unwrap().to_string(),
            );
            let (mut t, mut val) = (0, f64::NAN);
            for (c, x) in cols.iter().zip(row.as_array().unwrap()) {
                match *c {
                    "time" => t = x.as_i64().unwrap(),
                    "value" => val = x.as_f64().unwrap(),
                    tag => {
                        if let Some(x) = x.as_str().filter(|x| !x.is_empty()) {
                            labels.insert(tag.to_string(), x.to_string());
                        }
                    }
                }
            }
            out.entry(labels).or_default().push((t, val));
        }
    }
    out
}

#[test]
fn shutdown_sends_what_is_queued_and_gives_up_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::ZERO);
    // A batch would wait an hour to fill: only the drain at shutdown sends it.
    let mut gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - url: {}\n    name: d\n    queue_config: {{batch_send_deadline: 1h}}\n",
            rx.url("receive")
        ),
        &[],
    );
    put(&gw, "/metrics/job/j", "last_words 42\n");
    gw.signal("TERM");
    assert!(
        gw.wait_exit(Duration::from_secs(10)).is_some(),
        "did not exit"
    );
    let got = rx.samples();
    assert!(
        got.iter()
            .any(|(l, _, v)| l["__name__"] == "last_words" && *v == 42.0),
        "{got:?}"
    );

    // A receiver that always fails: the drain stops at the grace period.
    let rx = Rx::scripted(&[500; 1000]);
    let mut gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - url: {}\n    name: d\n    queue_config: {{batch_send_deadline: 1h, min_backoff: 50ms, max_backoff: 100ms}}\n",
            rx.url("receive")
        ),
        &["--shutdown.grace-period", "1s"],
    );
    put(&gw, "/metrics/job/j", "last_words 42\n");
    let t = Instant::now();
    gw.signal("TERM");
    assert!(
        gw.wait_exit(Duration::from_secs(10)).is_some(),
        "did not exit"
    );
    let took = t.elapsed();
    assert!(took < Duration::from_millis(2500), "drain took {took:?}");
    assert!(rx.got().len() >= 2, "retried while draining");
}

#[test]
fn connection_errors_are_retried_and_logs_keep_url_credentials_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::testkit::free_port();
    let cfg = dir.path().join("gw.yml");
    std::fs::write(
        &cfg,
        format!(
            "remote_write:\n  - url: http://127.0.0.1:{port}/receive?u=flink&p=url-s3cret\n    queue_config: {{batch_send_deadline: 50ms, min_backoff: 50ms, max_backoff: 100ms}}\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let gw_port = common::testkit::free_port();
    let child = std::process::Command::new(BIN)
        .args(["--web.listen-address", &format!("127.0.0.1:{gw_port}")])
        .arg("--config.file")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut gw = Proc {
        child,
        addr: ([127, 0, 0, 1], gw_port).into(),
    };
    gw.wait_healthy(Duration::from_secs(30));
    put(&gw, "/metrics/job/j", "a 1\n");
    let remote = format!("remote=\"127.0.0.1:{port}/receive\"");
    let retried = format!("metrics_gateway_remote_write_samples_retried_total{{{remote}}}");
    wait_for(
        || metric(&gw, &retried) >= 2.0,
        "retries while nobody listens",
    );
    // The receiver comes up: the same batch goes through.
    let rx = Rx::start_on(port, Duration::ZERO);
    let sent = format!("metrics_gateway_remote_write_samples_sent_total{{{remote}}}");
    wait_for(|| metric(&gw, &sent) > 0.0, "sent once the receiver is up");
    assert!(rx
        .samples()
        .iter()
        .any(|(l, _, v)| l["__name__"] == "a" && *v == 1.0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("retrying"), "{text}");
    assert!(
        !text.contains("url-s3cret"),
        "a URL credential was logged: {text}"
    );
}

/// Throughput figure (not a check): `cargo test -p metrics-gateway --test remote_write
/// -- --ignored --nocapture throughput`; N series pushed at once, then re-recorded.
#[test]
#[ignore]
fn throughput() {
    if !on_path("prometheus") {
        eprintln!("SKIP throughput: `prometheus` is not on PATH");
        return;
    }
    let (_prom, prom_addr) = prometheus();
    let gdir = tempfile::tempdir().unwrap();
    let n: usize = std::env::var("RW_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let gw = gateway(
        gdir.path(),
        &format!(
            "remote_write:\n  - url: http://{prom_addr}/api/v1/write\n    name: prom\n    queue_config: {{capacity: 1000000, batch_send_deadline: 100ms}}\n"
        ),
        &["--push.max-series-per-group", "0"],
    );
    let body: String = (0..n)
        .map(|i| format!("bench_series{{tm=\"tm-{}\",sub=\"{i}\"}} {i}\n", i % 100))
        .collect();
    let sent = "metrics_gateway_remote_write_samples_sent_total{remote=\"prom\"}";
    let t = Instant::now();
    put(&gw, "/metrics/job/bench", &body);
    let pushed = t.elapsed();
    let want = (n + 2) as f64;
    wait_for(|| metric(&gw, sent) >= want, "all sent");
    let took = t.elapsed();
    eprintln!(
        "remote write: {n} series pushed in {pushed:?}, all sent to Prometheus after {took:?}: {:.0} samples/s after the push (dropped: {})",
        want / (took - pushed).as_secs_f64(),
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_dropped_total{reason=\"queue_full\",remote=\"prom\"}"
        )
    );
}
