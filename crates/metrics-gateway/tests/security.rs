//! Attacks from issue 10 on the real process, each refused with a 4xx in the Pushgateway's
//! plain-text error format, nothing changed, and the process still serving:
//! group TTLs that broke rendering and the persistence file (item 6), series with huge
//! numbers of labels that cost quadratic CPU (item 7).

mod support;

use std::fmt::Write as _;

use common::testkit::{metric, tempfile_dir, Proc};
use support::*;

fn put(p: &Proc, path: &str, body: &str) -> Resp {
    request(p.addr, "PUT", path, &[], body.as_bytes())
}

/// The refusal is a 400 in plain text whose message contains every one of `words`.
fn assert_refused(r: &Resp, words: &[&str]) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.head.contains("content-type: text/plain"),
        "plain-text error like the Pushgateway's: {}",
        r.head
    );
    for w in words {
        assert!(r.body.contains(w), "{w:?} missing from: {}", r.body);
    }
    assert!(r.body.len() < 1000, "the message stays short: {}", r.body);
}

/// The process answers every read endpoint (the panicking one was `/api/v1/metrics`).
fn assert_alive(p: &Proc) -> String {
    assert_eq!(p.get("/-/healthy").0, 200);
    let api = request(p.addr, "GET", "/api/v1/metrics", &[], b"");
    assert_eq!(api.status, 200, "{}", api.body);
    let v: serde_json::Value = serde_json::from_str(&api.body).expect("JSON");
    assert_eq!(v["status"], "success");
    let r = request(p.addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    r.body
}

#[test]
fn group_ttls_beyond_the_maximum_are_refused_and_rendering_stays_up() {
    let p = ours(&["--push.max-group-ttl", "1h"]);
    assert_eq!(put(&p, "/metrics/job/good?ttl=30m", "a 1\n").status, 200);
    for path in [
        "/metrics/job/x?ttl=1000000y",
        "/metrics/job/x?ttl=18446744073709551615s",
        "/metrics/job/x?ttl=2h",
    ] {
        assert_refused(
            &put(&p, path, "a 1\n"),
            &[
                "TTL",
                "longer than the maximum of 1h",
                "--push.max-group-ttl",
            ],
        );
    }
    // So large it does not even fit a duration: refused as invalid, not wrapped around.
    assert_refused(
        &put(&p, "/metrics/job/x?ttl=100000000000000y", "a 1\n"),
        &["ttl", "too long"],
    );
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/x",
        &[("X-Group-TTL", "1000000y")],
        b"a 1\n",
    );
    assert_refused(&r, &["longer than the maximum"]);

    let exposition = assert_alive(&p);
    assert!(!exposition.contains("job=\"x\""), "no group was created");
    assert!(exposition.contains("a{instance=\"\",job=\"good\"} 1"));
    let api = request(p.addr, "GET", "/api/v1/metrics", &[], b"").body;
    assert!(api.contains("expires_at"), "{api}");
}

#[test]
fn the_default_maximum_ttl_refuses_the_original_attack() {
    let p = ours(&[]);
    assert_refused(
        &put(&p, "/metrics/job/x?ttl=1000000y", "a 1\n"),
        &["longer than the maximum of 1y "],
    );
    assert_eq!(put(&p, "/metrics/job/y?ttl=30d", "a 1\n").status, 200);
    let exposition = assert_alive(&p);
    assert!(!exposition.contains("job=\"x\""));
    assert!(exposition.contains("job=\"y\""));
}

#[test]
fn a_gateway_ttl_above_the_maximum_stops_start_up_with_a_message() {
    let out = std::process::Command::new(BIN)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--push.group-ttl",
            "2d",
            "--push.max-group-ttl",
            "1d",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--push.group-ttl"), "{err}");
}

/// A group header line of the persistence file, as any version writes it (pushed now).
fn header(job: &str, ttl_seconds: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    format!(
        "{{\"version\":\"1\",\"key\":{{\"job\":\"{job}\"}},\"push_time\":\"{now}\",\"push_failure_time\":\"0\",\"last_push_successful\":true,\"ttl_seconds\":{ttl_seconds},\"pushed_at\":{{}}}}\n"
    )
}

#[test]
fn a_persistence_file_with_bad_groups_loads_the_good_ones_instead_of_crash_looping() {
    let dir = tempfile_dir();
    let file = dir.join("state");
    let mut data = String::from("# metrics-gateway persistence file, format 1\n");
    data += &header("good", "null");
    data += "# TYPE flink_up gauge\nflink_up{instance=\"\",job=\"good\"} 1\n";
    // `?ttl=18446744073709551615s` as an older version accepted and persisted it.
    data += &header("eternal", "\"18446744073709552000\"");
    data += "flink_up{instance=\"\",job=\"eternal\"} 1\n";
    // Malformed entries: a torn header, metrics that do not parse, a NaN TTL.
    data += "{\"version\":\"1\",\"key\":{\"job\":\"torn\"\n";
    data += &header("garbled", "null");
    data += "flink_up{instance=\"\" 1\n";
    data += &header("nan", "\"NaN\"");
    data += &header("good_ttl", "\"3600\"");
    data += "flink_up{instance=\"\",job=\"good_ttl\"} 2\n";
    std::fs::write(&file, &data).unwrap();

    let file_arg = file.display().to_string();
    let p = ours(&["--persistence.file", &file_arg]);
    let exposition = assert_alive(&p);
    assert_eq!(
        metric(&exposition, "flink_up{instance=\"\",job=\"good\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&exposition, "flink_up{instance=\"\",job=\"good_ttl\"}"),
        Some(2.0)
    );
    for bad in ["eternal", "torn", "garbled", "nan"] {
        assert!(
            !exposition.contains(&format!("job=\"{bad}\"")),
            "{bad} skipped"
        );
    }
    assert_eq!(
        metric(
            &exposition,
            "metrics_gateway_persistence_skipped_groups_total"
        ),
        Some(4.0)
    );
    // The file itself is left as it was until the gateway writes it next.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), data);
    let _ = std::fs::remove_dir_all(dir);
}

/// One series named `m` with `n` labels `l0="v"`, `l1="v"`, ... (`extra` appended inside
/// the braces).
fn wide_series(n: usize, extra: &str) -> String {
    let mut body = String::with_capacity(n * 12);
    body.push_str("m{");
    for i in 0..n {
        let _ = write!(body, "l{i}=\"v\",");
    }
    body.push_str(extra);
    body.push_str("} 1\n");
    body
}

#[test]
fn a_series_with_80000_labels_is_refused_and_the_gateway_keeps_serving() {
    let p = ours(&[]);
    assert_eq!(put(&p, "/metrics/job/big", "before 1\n").status, 200);
    let body = wide_series(80_000, "");
    assert!(body.len() > 800_000);
    let r = put(&p, "/metrics/job/big", &body);
    assert_refused(
        &r,
        &[
            "m{l0=\"v\"",
            "more than the limit of 64 per series",
            "--push.max-labels-per-series",
        ],
    );

    // The same as protobuf.
    let proto = protobuf_wide_series(80_000);
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/big",
        &[("Content-Type", PROTO_CT)],
        &proto,
    );
    assert_refused(&r, &["80000 labels", "--push.max-labels-per-series"]);

    // The same gzip-compressed (it inflates off the async workers).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/big",
        &[("Content-Encoding", "gzip")],
        &gz,
    );
    assert_refused(&r, &["more than the limit of 64 per series"]);

    // Name and value lengths.
    let long_name = format!("m{{{}=\"v\"}} 1\n", "n".repeat(300));
    assert_refused(
        &put(&p, "/metrics/job/big", &long_name),
        &["label name", "300 bytes", "--push.max-label-name-length"],
    );
    let long_value = format!("m{{task_name=\"{}\"}} 1\n", "v".repeat(40_000));
    assert_refused(
        &put(&p, "/metrics/job/big", &long_value),
        &[
            "label \"task_name\"",
            "40000 bytes",
            "--push.max-label-value-length",
        ],
    );

    let exposition = assert_alive(&p);
    assert_eq!(
        metric(&exposition, "before{instance=\"\",job=\"big\"}"),
        Some(1.0),
        "the group is unchanged"
    );
    assert!(
        !exposition.contains("\nm{"),
        "nothing of the refused series"
    );
    assert_eq!(
        metric(
            &exposition,
            "metrics_gateway_limit_rejections_total{limit=\"labels_per_series\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &exposition,
            "metrics_gateway_limit_rejections_total{limit=\"label_value_length\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn without_label_limits_80000_labels_are_checked_in_linear_time() {
    // With the limits off, the duplicate-name check that took 16 s of CPU must still
    // answer: a duplicate at the very end is found and named.
    let p = ours(&["--push.max-labels-per-series", "0"]);
    let r = put(&p, "/metrics/job/big", &wide_series(80_000, "l79999=\"w\""));
    assert_refused(&r, &["duplicate label names", "\"m\""]);
    // And a valid one is taken.
    let r = put(&p, "/metrics/job/big", &wide_series(80_000, ""));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_alive(&p);
}

#[test]
fn flinks_own_pushes_fit_the_default_limits() {
    let Some(shared) = common::testkit::shared_dir("flinks_own_pushes_fit_the_default_limits")
    else {
        return;
    };
    let p = ours(&[]);
    for (file, path) in [
        (
            "taskmanager-push.txt",
            "/metrics/job/flinktm/k8s_namespace/demo/flink_cluster/probe",
        ),
        (
            "jobmanager-push.txt",
            "/metrics/job/flinkjm/k8s_namespace/demo/flink_cluster/probe",
        ),
    ] {
        let body = std::fs::read(shared.join("samples/flink").join(file)).unwrap();
        let r = request(p.addr, "PUT", path, &[], &body);
        assert_eq!(r.status, 200, "{file}: {}", r.body);
    }
}

/// A delimited protobuf MetricFamily with one gauge of `n` labels.
fn protobuf_wide_series(n: usize) -> Vec<u8> {
    use metrics_gateway::parse::proto::{encode, Gauge, LabelPair, MetricFamily, ProtoMetric};
    let metric = ProtoMetric {
        label: (0..n)
            .map(|i| LabelPair {
                name: Some(format!("l{i}")),
                value: Some("v".into()),
            })
            .collect(),
        gauge: Some(Gauge { value: Some(1.0) }),
        ..ProtoMetric::default()
    };
    encode(&[MetricFamily {
        name: Some("m".into()),
        help: None,
        r#type: Some(1),
        metric: vec![metric],
    }])
}
