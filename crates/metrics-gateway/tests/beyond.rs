//! What we add to the Pushgateway, on the real process: group TTL (gateway-wide and per
//! push), delete by matcher, limits (and their metrics), our own metrics on `/metrics`,
//! persistence across `kill -9` and across a graceful stop.

mod support;

use std::time::Duration;

use common::testkit::{metric, wait_for, Proc};
use support::*;

fn put(p: &Proc, path: &str, body: &str) -> Resp {
    request(p.addr, "PUT", path, &[], body.as_bytes())
}

fn has_group(p: &Proc, job: &str) -> bool {
    scrape(p).contains(&format!("push_time_seconds{{instance=\"\",job=\"{job}\"}}"))
}

#[test]
fn groups_expire_after_the_gateway_ttl_and_per_push_ttl() {
    let p = ours(&["--push.group-ttl", "1s"]);
    assert_eq!(put(&p, "/metrics/job/short", "a 1\n").status, 200);
    // A per-push TTL overrides the gateway's; 0 means never.
    assert_eq!(put(&p, "/metrics/job/keep?ttl=0", "b 1\n").status, 200);
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/hdr",
        &[("X-Group-TTL", "1h")],
        b"c 1\n",
    );
    assert_eq!(r.status, 200);
    assert!(has_group(&p, "short"));
    wait_for(|| !has_group(&p, "short"), "group `short` expires after 1s");
    assert!(has_group(&p, "keep"), "ttl=0 never expires");
    assert!(has_group(&p, "hdr"), "X-Group-TTL: 1h still alive");
    assert_eq!(
        metric(
            &scrape(&p),
            "metrics_gateway_groups_removed_total{reason=\"ttl\"}"
        ),
        Some(1.0)
    );
    let api = request(p.addr, "GET", "/api/v1/metrics", &[], b"").body;
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    let hdr = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["job"] == "hdr")
        .unwrap();
    assert!(hdr["expires_at"].as_str().unwrap().ends_with('Z'));

    let r = put(&p, "/metrics/job/bad?ttl=soon", "a 1\n");
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("ttl") && r.body.contains("soon"),
        "{}",
        r.body
    );
}

#[test]
fn delete_by_matcher_removes_every_matching_group() {
    let p = ours(&[]);
    for path in [
        "/metrics/job/flink/deploymentId/d1/tm/1",
        "/metrics/job/flink/deploymentId/d1/tm/2",
        "/metrics/job/flink/deploymentId/d2/tm/1",
        "/metrics/job/other",
    ] {
        assert_eq!(put(&p, path, "up 1\n").status, 200, "{path}");
    }
    let r = request(
        p.addr,
        "DELETE",
        "/api/v1/groups?match[]=%7BdeploymentId%3D%22d1%22%7D",
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"]["deleted"], 2);
    assert_eq!(v["deleted"], 2);
    let m = scrape(&p);
    assert!(!m.contains("deploymentId=\"d1\""), "{m}");
    assert!(m.contains("deploymentId=\"d2\""), "{m}");

    // Several selectors are a union; regex matchers work; an absent label matches "".
    let r = request(
        p.addr,
        "DELETE",
        &format!(
            "/api/v1/groups?match[]={}&match[]={}",
            enc("{deploymentId=~\"d.*\"}"),
            enc("{job=\"nothing\"}")
        ),
        &[],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"]["deleted"], 1);
    assert!(has_group(&p, "other"));

    for bad in [
        "/api/v1/groups".to_owned(),
        format!("/api/v1/groups?match[]={}", enc("{}")),
        format!("/api/v1/groups?match[]={}", enc("up{job=\"other\"}")),
        format!("/api/v1/groups?match[]={}", enc("{job=")),
    ] {
        let r = request(p.addr, "DELETE", &bad, &[], b"");
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "error", "{bad}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    assert!(has_group(&p, "other"), "bad selectors delete nothing");
    assert_eq!(
        metric(
            &scrape(&p),
            "metrics_gateway_groups_removed_total{reason=\"matcher\"}"
        ),
        Some(3.0)
    );
}

#[test]
fn limits_reject_with_clear_messages_and_are_counted() {
    let p = ours(&[
        "--push.max-body-size",
        "200",
        "--push.max-series-per-group",
        "3",
        "--push.max-total-series",
        "5",
    ]);
    let big = "x_metric_with_a_long_name 1\n".repeat(10);
    let r = put(&p, "/metrics/job/big", &big);
    assert_eq!(r.status, 413);
    assert!(r.body.contains("200 bytes"), "{}", r.body);
    // A small gzip body that inflates beyond the limit is refused too.
    let r = request(
        p.addr,
        "PUT",
        "/metrics/job/bomb",
        &[("Content-Encoding", "gzip")],
        &gzip(big.as_bytes()),
    );
    assert_eq!(r.status, 413, "{}", r.body);

    let four = "a{i=\"1\"} 1\na{i=\"2\"} 1\na{i=\"3\"} 1\na{i=\"4\"} 1\n";
    let r = put(&p, "/metrics/job/g1", four);
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("4 series") && r.body.contains("per group"),
        "{}",
        r.body
    );
    let three = "a{i=\"1\"} 1\na{i=\"2\"} 1\na{i=\"3\"} 1\n";
    assert_eq!(put(&p, "/metrics/job/g1", three).status, 200);
    let r = put(&p, "/metrics/job/g2", three);
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("6 series") && r.body.contains("in total"),
        "{}",
        r.body
    );
    assert!(
        !has_group(&p, "g2")
            || scrape(&p).contains("push_time_seconds{instance=\"\",job=\"g2\"} 0")
    );

    let m = scrape(&p);
    for (series, want) in [
        (
            "metrics_gateway_limit_rejections_total{limit=\"body_size\"}",
            2.0,
        ),
        (
            "metrics_gateway_limit_rejections_total{limit=\"series_per_group\"}",
            1.0,
        ),
        (
            "metrics_gateway_limit_rejections_total{limit=\"total_series\"}",
            1.0,
        ),
        ("metrics_gateway_series", 3.0),
    ] {
        assert_eq!(metric(&m, series), Some(want), "{series}\n{m}");
    }
}

#[test]
fn metrics_shows_groups_and_our_own_metrics_and_refuses_clashes_with_them() {
    let p = ours(&[]);
    assert_eq!(put(&p, "/metrics/job/a", "a 1\n").status, 200);
    let m = scrape(&p);
    assert_eq!(metric(&m, "a{instance=\"\",job=\"a\"}"), Some(1.0));
    assert_eq!(
        metric(&m, "metrics_gateway_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(m.contains("metrics_gateway_build_info{"), "{m}");
    assert!(m.contains("metrics_gateway_http_requests_total{"), "{m}");
    let r = put(
        &p,
        "/metrics/job/a",
        "# TYPE metrics_gateway_build_info counter\nmetrics_gateway_build_info 1\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("metrics_gateway_build_info"), "{}", r.body);
    assert_eq!(
        metric(
            &scrape(&p),
            "metrics_gateway_pushes_total{method=\"PUT\",result=\"inconsistent\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn persistence_survives_kill_9_and_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.data");
    let f = file.to_str().unwrap();
    let p = ours(&["--persistence.file", f, "--persistence.interval", "100ms"]);
    assert_eq!(
        put(
            &p,
            "/metrics/job/persist/x@base64/YS9i",
            "# HELP h Hist.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1.5\nh_count 3\ng NaN\n"
        )
        .status,
        200
    );
    assert_eq!(put(&p, "/metrics/job/gone", "z 1\n").status, 200);
    assert_eq!(
        request(p.addr, "DELETE", "/metrics/job/gone", &[], b"").status,
        202
    );
    let before = normalize_keep_times(&scrape(&p));
    wait_for(
        || {
            std::fs::read_to_string(&file)
                .is_ok_and(|s| s.contains("persist") && !s.contains("gone"))
        },
        "persistence file written",
    );
    p.signal("KILL");
    drop(p);
    let p = ours(&["--persistence.file", f, "--persistence.interval", "1h"]);
    assert_eq!(
        normalize_keep_times(&scrape(&p)),
        before,
        "state after kill -9"
    );

    // A graceful stop writes the latest change even before the interval.
    assert_eq!(put(&p, "/metrics/job/late", "late 1\n").status, 200);
    let mut p = p;
    p.signal("TERM");
    assert!(p
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let p = ours(&["--persistence.file", f]);
    assert!(
        has_group(&p, "late"),
        "change made just before SIGTERM persisted"
    );
    assert!(scrape(&p).contains("job=\"persist\",x=\"a/b\""));

    // A corrupt file stops start-up with a message naming it (nothing is overwritten).
    drop(p);
    std::fs::write(&file, "not a state file\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--persistence.file",
            f,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gw.data"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "not a state file\n"
    );
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Our own metrics lines dropped, push times kept (they must survive restarts exactly).
fn normalize_keep_times(m: &str) -> String {
    m.lines()
        .filter(|l| !l.contains("metrics_gateway_") && !l.contains("process_"))
        .collect::<Vec<_>>()
        .join("\n")
}
