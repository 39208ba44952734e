//! Differential test against the real Pushgateway (Debian's `prometheus-pushgateway`): the
//! same sequence of pushes and deletes, good and bad, goes to both; status codes and the
//! normalised `/metrics` must agree after every step, and `/api/v1/metrics` must have the
//! same shape. Where we deliberately differ, a separate test says so and why.

mod support;

use metrics_gateway::parse::proto::{
    encode, Bucket, Counter, Histogram, LabelPair, MetricFamily, ProtoMetric, Quantile, Summary,
};
use support::*;

struct Step {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    what: &'static str,
}

fn step(method: &'static str, path: &'static str, body: &str, what: &'static str) -> Step {
    Step {
        method,
        path,
        headers: vec![],
        body: body.as_bytes().to_vec(),
        what,
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: Some(name.into()),
        value: Some(value.into()),
    }
}

fn protobuf_body() -> Vec<u8> {
    encode(&[
        MetricFamily {
            name: Some("pb_requests_total".into()),
            help: Some("Requests (protobuf).".into()),
            r#type: Some(0),
            metric: vec![
                ProtoMetric {
                    label: vec![label("code", "200"), label("job", "overridden")],
                    counter: Some(Counter { value: Some(42.0) }),
                    ..Default::default()
                },
                ProtoMetric {
                    label: vec![label("code", "500")],
                    counter: Some(Counter { value: Some(1.5) }),
                    ..Default::default()
                },
            ],
        },
        MetricFamily {
            name: Some("pb_latency_seconds".into()),
            help: None,
            r#type: Some(4),
            metric: vec![ProtoMetric {
                histogram: Some(Histogram {
                    sample_count: Some(7),
                    sample_sum: Some(0.75),
                    bucket: vec![
                        Bucket {
                            cumulative_count: Some(3),
                            upper_bound: Some(0.05),
                            ..Default::default()
                        },
                        Bucket {
                            cumulative_count: Some(6),
                            upper_bound: Some(0.25),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        },
        MetricFamily {
            name: Some("pb_rpc_seconds".into()),
            help: Some("RPC latency.".into()),
            r#type: Some(2),
            metric: vec![ProtoMetric {
                label: vec![label("method", "get")],
                summary: Some(Summary {
                    sample_count: Some(10),
                    sample_sum: Some(2.5),
                    quantile: vec![
                        Quantile {
                            quantile: Some(0.5),
                            value: Some(0.2),
                        },
                        Quantile {
                            quantile: Some(0.99),
                            value: Some(0.9),
                        },
                    ],
                }),
                ..Default::default()
            }],
        },
    ])
}

fn protobuf_with_timestamp() -> Vec<u8> {
    encode(&[MetricFamily {
        name: Some("pb_ts".into()),
        help: None,
        r#type: Some(1),
        metric: vec![ProtoMetric {
            gauge: Some(metrics_gateway::parse::proto::Gauge { value: Some(1.0) }),
            timestamp_ms: Some(1000),
            ..Default::default()
        }],
    }])
}

const ALL_TYPES: &str = "# HELP rq_total Requests with \\\\ backslash and \\n newline.\n\
# TYPE rq_total counter\n\
rq_total{code=\"200\",path=\"/a \\\"quoted\\\"\"} 1027\n\
rq_total{code=\"500\",path=\"/a\"} 3\n\
# TYPE temp gauge\n\
temp{room=\"x\"} -12.5\n\
temp{room=\"y\"} 1e6\n\
temp{room=\"z\"} 0.00001\n\
plain_untyped 1.5e+300\n\
# HELP lat Latency.\n\
# TYPE lat histogram\n\
lat_bucket{le=\"0.1\"} 1\n\
lat_bucket{le=\"1.0\"} 5\n\
lat_bucket{le=\"+Inf\"} 6\n\
lat_sum 3.25\n\
lat_count 6\n\
# TYPE nolast histogram\n\
nolast_bucket{le=\"10\"} 2\n\
nolast_sum 4\n\
nolast_count 3\n\
# TYPE rpc summary\n\
rpc{quantile=\"0.5\",m=\"a\"} 0.25\n\
rpc{quantile=\"0.9\",m=\"a\"} NaN\n\
rpc_sum{m=\"a\"} 17\n\
rpc_count{m=\"a\"} 30\n\
neg_inf -Inf\n";

fn steps() -> Vec<Step> {
    let mut v = vec![
        step(
            "PUT",
            "/metrics/job/j1/inst@base64/Zm9vL2Jhcg",
            ALL_TYPES,
            "all metric types, base64 label value",
        ),
        step(
            "POST",
            "/metrics/job/j1/inst@base64/Zm9vL2Jhcg",
            "# TYPE temp gauge\ntemp{room=\"w\"} 20\nadded 1\n",
            "POST replaces only the pushed families",
        ),
        step(
            "PUT",
            "/metrics/job/j2/a/b",
            "over{job=\"other\",a=\"c\",instance=\"i1\",x=\"y\"} 1\n",
            "grouping labels override body labels, body instance kept",
        ),
        step(
            "PUT",
            "/metrics/job/j3/e@base64/=",
            "emptyval 1\n",
            "empty grouping label value via '='",
        ),
        step(
            "PUT",
            "/metrics/job/j4/b@base64/Zm9vL2Jhcg==",
            "padded 1\n",
            "base64 with padding",
        ),
        step(
            "PUT",
            "/metrics/job@base64/ai9zbGFzaA",
            "jobslash 1\n",
            "base64 job name",
        ),
        step(
            "PUT",
            "/metrics/job/bad",
            "x 1 1000\n",
            "timestamp rejected",
        ),
        step("PUT", "/metrics/job/bad", "x 1\r\n", "CRLF rejected"),
        step("PUT", "/metrics/job/bad", "x 1", "missing final newline"),
        step(
            "PUT",
            "/metrics/job/bad",
            "x{a=\"1\",a=\"2\"} 1\n",
            "duplicate label names",
        ),
        step(
            "PUT",
            "/metrics/job/bad",
            "x{a=\"\\x\"} 1\n",
            "invalid escape",
        ),
        step(
            "PUT",
            "/metrics/job/bad",
            "x 1\n# TYPE x gauge\n",
            "TYPE after samples",
        ),
        step(
            "PUT",
            "/metrics/job/bad",
            "# TYPE x nonsense\nx 1\n",
            "unknown type",
        ),
        step(
            "PUT",
            "/metrics/job/bad",
            "x{__x=\"1\"} 1\n",
            "reserved label name",
        ),
        step(
            "PUT",
            "/metrics/job/bad2",
            "dup 1\ndup 2\n",
            "duplicate series in one push",
        ),
        step(
            "PUT",
            "/metrics/job/clash",
            "# TYPE rq_total gauge\nrq_total 1\n",
            "type clash with another group",
        ),
        step(
            "PUT",
            "/metrics/job/clash",
            "rq_total 1\n",
            "untyped vs counter clash",
        ),
        step(
            "PUT",
            "/metrics/job/clash",
            "# TYPE lat_count gauge\nlat_count 1\n",
            "suffix collision with a histogram",
        ),
        step(
            "PUT",
            "/metrics/job/clash",
            "# TYPE plain_untyped_sum gauge\nplain_untyped_sum 1\n# TYPE plain_untyped summary\n",
            "untyped family plus a _sum family is fine",
        ),
        step(
            "PUT",
            "/metrics/job/j1/inst@base64/Zm9vL2Jhcg",
            "x 1 1000\n",
            "failed push keeps the group, sets failure time",
        ),
        step(
            "PUT",
            "/metrics/job/j5",
            "y{le=\"1\"} 1\nc_neg -1\n",
            "le on an untyped metric is an ordinary label",
        ),
        step(
            "PUT",
            "/metrics/job/j6/k/v1/k/v2",
            "lastwins 1\n",
            "repeated grouping label: last wins",
        ),
        step(
            "PUT",
            "/metrics/job/j7/x/1/job/other",
            "jobwins 1\n",
            "path job wins over a job label",
        ),
        step("PUT", "/metrics/job@base64/=", "x 1\n", "empty job"),
        step(
            "PUT",
            "/metrics/job/a/b",
            "x 1\n",
            "odd number of components",
        ),
        step(
            "PUT",
            "/metrics/job/a/__b/x",
            "x 1\n",
            "reserved grouping label",
        ),
        step(
            "PUT",
            "/metrics/job/a/1b/x",
            "x 1\n",
            "invalid grouping label name",
        ),
        step(
            "PUT",
            "/metrics/job/a/b@base64/Zm9v+",
            "x 1\n",
            "invalid base64",
        ),
        step(
            "PUT",
            "/metrics/job/ts/",
            "t 1\n",
            "trailing slash after the job",
        ),
        step(
            "PUT",
            "/metrics/job/ts2/b/",
            "t 1\n",
            "trailing slash: empty label value",
        ),
        step(
            "PUT",
            "/metrics/job/ts3/b/x/",
            "t 1\n",
            "trailing slash after a value",
        ),
        step(
            "PUT",
            "/metrics/job/pct/b/x%2Fy",
            "t 1\n",
            "encoded slash splits like the Pushgateway",
        ),
        step(
            "PUT",
            "/metrics/job/plus/b/x+y%20z",
            "t 1\n",
            "plus stays a plus, %20 is a space",
        ),
        step("PUT", "/metrics/job/e1", "a 1\n", "group for empty PUT"),
        step(
            "PUT",
            "/metrics/job/e1",
            "",
            "empty PUT keeps only the time gauges",
        ),
        step("PUT", "/metrics/job/e2", "a 1\n", "group for empty POST"),
        step(
            "POST",
            "/metrics/job/e2",
            "",
            "empty POST changes only the push time",
        ),
        step("DELETE", "/metrics/job/j5", "", "delete a group"),
        step(
            "DELETE",
            "/metrics/job/nonexistent",
            "",
            "delete a group that does not exist",
        ),
        step("GET", "/metrics/job/j1", "", "GET on a push URL"),
        step(
            "PUT",
            "/metrics/job/spaces",
            "# HELP sp  Leading space in help.\nsp{v=\"a b\"}\t2\n  indented 3\n\n# a comment\n",
            "blanks, tabs, comments",
        ),
    ];
    v.push(Step {
        method: "PUT",
        path: "/metrics/job/pb/instance/i9",
        headers: vec![("Content-Type", PROTO_CT)],
        body: protobuf_body(),
        what: "delimited protobuf with counter, histogram, summary",
    });
    v.push(Step {
        method: "PUT",
        path: "/metrics/job/pbts",
        headers: vec![("Content-Type", PROTO_CT)],
        body: protobuf_with_timestamp(),
        what: "protobuf with a timestamp",
    });
    v.push(Step {
        method: "PUT",
        path: "/metrics/job/pbbad",
        headers: vec![("Content-Type", PROTO_CT)],
        body: vec![0x20, 0x0a, 0x03, b'a'],
        what: "truncated protobuf",
    });
    v.push(Step {
        method: "PUT",
        path: "/metrics/job/gz",
        headers: vec![("Content-Encoding", "gzip")],
        body: gzip(b"gzipped 1\n"),
        what: "gzip text",
    });
    v.push(Step {
        method: "PUT",
        path: "/metrics/job/gz2",
        headers: vec![("Content-Encoding", "gzip")],
        body: b"not gzip 1\n".to_vec(),
        what: "gzip header on a plain body",
    });
    v.push(Step {
        method: "PUT",
        path: "/metrics/job/pbgz",
        headers: vec![("Content-Type", PROTO_CT), ("Content-Encoding", "gzip")],
        body: gzip(&protobuf_body()).to_vec(),
        what: "gzip protobuf clashing with the same series in another group? no: different job",
    });
    v
}

/// `/api/v1/metrics` with times blanked and groups sorted, for comparison.
fn api_shape(body: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    let data = v["data"].as_array_mut().unwrap();
    for g in data.iter_mut() {
        for (_, fam) in g.as_object_mut().unwrap().iter_mut() {
            if let Some(obj) = fam.as_object_mut() {
                obj.remove("time_stamp");
            }
        }
        for t in ["push_time_seconds", "push_failure_time_seconds"] {
            let val = &mut g[t]["metrics"][0]["value"];
            if val != "0" {
                *val = "<time>".into();
            }
        }
    }
    data.sort_by_key(|g| g["labels"].to_string());
    v
}

#[test]
fn same_pushes_same_results_as_the_real_pushgateway() {
    let Some(theirs) = pushgateway("differential test", &["--web.enable-admin-api"]) else {
        return;
    };
    let ours = ours(&["--web.enable-admin-api"]);
    for s in steps() {
        let a = request(theirs.addr, s.method, s.path, &s.headers, &s.body);
        let b = request(ours.addr, s.method, s.path, &s.headers, &s.body);
        assert_eq!(
            a.status, b.status,
            "{} {} ({}): Pushgateway said {} {:?}, we said {} {:?}",
            s.method, s.path, s.what, a.status, a.body, b.status, b.body
        );
        let (ma, mb) = (normalize(&scrape(&theirs)), normalize(&scrape(&ours)));
        assert_eq!(
            ma, mb,
            "/metrics differs after {} {} ({})",
            s.method, s.path, s.what
        );
        if b.status == 400 {
            assert!(!b.body.trim().is_empty(), "400 explains itself: {}", s.what);
        }
    }
    let a = request(theirs.addr, "GET", "/api/v1/metrics", &[], b"");
    let b = request(ours.addr, "GET", "/api/v1/metrics", &[], b"");
    let (a, b) = (api_shape(&a.body), api_shape(&b.body));
    let (ga, gb) = (a["data"].as_array().unwrap(), b["data"].as_array().unwrap());
    assert_eq!(ga.len(), gb.len(), "number of groups in /api/v1/metrics");
    for (x, y) in ga.iter().zip(gb) {
        assert_eq!(x, y, "/api/v1/metrics group differs");
    }

    // Admin wipe empties both.
    let a = request(theirs.addr, "PUT", "/api/v1/admin/wipe", &[], b"");
    let b = request(ours.addr, "PUT", "/api/v1/admin/wipe", &[], b"");
    assert_eq!((a.status, b.status), (202, 202));
    assert_eq!(normalize(&scrape(&theirs)), normalize(&scrape(&ours)));
    assert_eq!(normalize(&scrape(&ours)), "");
}

#[test]
fn admin_and_lifecycle_endpoints_are_off_by_default_like_the_pushgateway() {
    let Some(theirs) = pushgateway("admin/lifecycle defaults", &[]) else {
        return;
    };
    let ours = ours(&[]);
    for (method, path) in [
        ("PUT", "/api/v1/admin/wipe"),
        ("PUT", "/-/quit"),
        ("POST", "/-/quit"),
        ("GET", "/-/quit"),
    ] {
        let a = request(theirs.addr, method, path, &[], b"");
        let b = request(ours.addr, method, path, &[], b"");
        assert_eq!(a.status, b.status, "{method} {path}");
        if path == "/-/quit" {
            assert_eq!(a.body.trim(), b.body.trim(), "{method} {path}");
        }
    }
    let status = request(ours.addr, "GET", "/api/v1/status", &[], b"");
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["flags"]["web.enable-admin-api"], "false");
    assert!(v["data"]["start_time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn quit_stops_the_process_when_lifecycle_is_enabled() {
    let mut ours = ours(&["--web.enable-lifecycle"]);
    let r = request(ours.addr, "PUT", "/-/quit", &[], b"");
    assert_eq!(r.status, 200);
    let status = ours
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("exits after /-/quit");
    assert!(status.success());
}

/// Deliberate differences, both about series that two groups would expose twice:
/// - `{job="a",instance=""}` next to `{job="a"}`: both refuse the push, but the Pushgateway
///   still creates the group to hold its `push_failure_time_seconds`, which duplicates the
///   other group's series, and from then on its `/metrics` fails with 500 for everyone. We
///   do not create that group.
/// - `{job="a",b=""}` next to `{job="a"}`: the Pushgateway accepts it and exposes
///   `push_time_seconds{b="",instance="",job="a"}` beside
///   `push_time_seconds{instance="",job="a"}`, which Prometheus (an empty label is an absent
///   one) reads as one series twice. We refuse it with 400.
#[test]
fn we_refuse_groups_that_would_break_the_exposition() {
    let ours = ours(&[]);
    assert_eq!(
        request(ours.addr, "PUT", "/metrics/job/a", &[], b"x 1\n").status,
        200
    );
    for path in ["/metrics/job/a/instance/", "/metrics/job/a/b@base64/="] {
        let r = request(ours.addr, "PUT", path, &[], b"y 1\n");
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("push_time_seconds"), "{}", r.body);
    }
    let m = request(ours.addr, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains("x{instance=\"\",job=\"a\"} 1"),
        "{}",
        m.body
    );
    assert!(!m.body.contains("y{"), "{}", m.body);
    let times = m
        .body
        .lines()
        .filter(|l| l.starts_with("push_time_seconds{"))
        .count();
    assert_eq!(
        times, 1,
        "one group, one push_time_seconds series: {}",
        m.body
    );

    if let Some(theirs) = pushgateway("pushgateway half of the deliberate differences", &[]) {
        request(theirs.addr, "PUT", "/metrics/job/a", &[], b"x 1\n");
        let r = request(
            theirs.addr,
            "PUT",
            "/metrics/job/a/b@base64/=",
            &[],
            b"y 1\n",
        );
        assert_eq!(
            r.status, 200,
            "the Pushgateway accepts the empty-label twin"
        );
        let r = request(
            theirs.addr,
            "PUT",
            "/metrics/job/a/instance/",
            &[],
            b"y 1\n",
        );
        assert_eq!(r.status, 400, "the Pushgateway refuses this one too");
        assert_eq!(
            request(theirs.addr, "GET", "/metrics", &[], b"").status,
            500,
            "but keeps the refused group, and its exposition breaks"
        );
    }
}
