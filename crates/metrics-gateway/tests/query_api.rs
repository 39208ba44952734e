//! The Prometheus HTTP query API on the gateway's port, on the real process: instant and
//! range queries over pushed data with exact values, Prometheus's error types and
//! messages, series/labels/label values with `match[]`, metadata, rules and alerts,
//! buildinfo and Grafana's health check; then a differential test against Debian's
//! Prometheus scraping the gateway (skipped when `prometheus` is absent).

mod support;

use std::time::{Duration, Instant};

use common::testkit::{wait_for, Proc};
use serde_json::Value;
use support::*;

fn put(p: &Proc, path: &str, body: &str) {
    let r = request(p.addr, "PUT", path, &[], body.as_bytes());
    assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
}

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GET `path`; returns the status and the parsed body.
fn get_json(p: &Proc, path: &str) -> (u16, Value) {
    let r = request(p.addr, "GET", path, &[], b"");
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
    (r.status, v)
}

fn query(p: &Proc, q: &str, time_ms: i64) -> Value {
    let (status, v) = get_json(
        p,
        &format!("/api/v1/query?query={}&time={}", enc(q), secs(time_ms)),
    );
    assert_eq!(status, 200, "{q}: {v}");
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"].clone()
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The sample timestamp (ms) of the last push of `job`, from its `push_time_seconds`.
fn push_ms(p: &Proc, job: &str) -> i64 {
    let d = query(p, &format!("push_time_seconds{{job=\"{job}\"}}"), now_ms());
    let v: f64 = d["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (v * 1000.0).floor() as i64
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn instant_and_range_queries_answer_pushed_values_exactly() {
    // No periodic re-recording during the test: only the pushes are in the history.
    let p = ours(&["--storage.record-interval", "1h"]);
    put(&p, "/metrics/job/a", "# TYPE m gauge\nm{k=\"x\"} 1\n");
    let t1 = push_ms(&p, "a");
    std::thread::sleep(Duration::from_millis(20));
    put(&p, "/metrics/job/a", "# TYPE m gauge\nm{k=\"x\"} 2\n");
    let t2 = push_ms(&p, "a");
    std::thread::sleep(Duration::from_millis(20));
    put(&p, "/metrics/job/a", "# TYPE m gauge\nm{k=\"x\"} 4\n");
    let t3 = push_ms(&p, "a");
    assert!(t1 < t2 && t2 < t3);

    // Instant queries: the value in force at the time asked.
    let d = query(&p, "m", t2);
    assert_eq!(d["resultType"], "vector");
    assert_eq!(
        d["result"],
        serde_json::json!([{"metric": {"__name__": "m", "job": "a", "k": "x"},
                            "value": [t2 as f64 / 1000.0, "2"]}])
    );
    assert_eq!(query(&p, "m", t2 - 1)["result"][0]["value"][1], "1");
    assert!(query(&p, "m", t1 - 1)["result"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        query(&p, "count_over_time(m[1h])", t3)["result"][0]["value"][1],
        "3"
    );
    assert_eq!(
        query(&p, "sum_over_time(m[1h]) / 7", t3)["result"][0]["value"][1],
        "1"
    );
    assert_eq!(
        query(&p, "timestamp(m)", t3)["result"][0]["value"][1],
        serde_json::json!(format!("{}", t3 as f64 / 1000.0))
    );

    // A range query with a 1 ms step: every point is the push in force at that instant.
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=0.001",
        enc("m * 10"),
        secs(t1),
        secs(t3)
    );
    let (status, v) = get_json(&p, &path);
    assert_eq!(status, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["resultType"], "matrix");
    let series = d["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{d}");
    assert_eq!(
        series[0]["metric"],
        serde_json::json!({"job": "a", "k": "x"})
    );
    let points = series[0]["values"].as_array().unwrap();
    assert_eq!(points.len() as i64, t3 - t1 + 1);
    for (i, pt) in points.iter().enumerate() {
        let t = t1 + i as i64;
        let want = if t < t2 {
            "10"
        } else if t < t3 {
            "20"
        } else {
            "40"
        };
        assert_eq!(pt[0].as_f64().unwrap(), t as f64 / 1000.0);
        assert_eq!(pt[1], want, "at {t}");
    }

    // Form POST, as Grafana and promtool send it.
    let body = format!("query={}&time={}", enc("sum(m) + 0.5"), secs(t3));
    let r = request(
        p.addr,
        "POST",
        "/api/v1/query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.head.contains("content-type: application/json"),
        "{}",
        r.head
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "4.5");
}

#[test]
fn grafana_health_check_and_buildinfo() {
    let p = ours(&[]);
    // Grafana's datasource test: `1+1` at a time given in seconds with a fraction.
    let (status, v) = get_json(&p, "/api/v1/query?query=1%2B1&time=1700000000.5");
    assert_eq!(status, 200);
    assert_eq!(
        v,
        serde_json::json!({"status": "success",
                           "data": {"resultType": "scalar", "result": [1700000000.5, "2"]}})
    );
    let (_, v) = get_json(&p, "/api/v1/query?query=%22hello%22&time=10");
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType": "string", "result": [10, "hello"]})
    );
    let (status, v) = get_json(&p, "/api/v1/status/buildinfo");
    assert_eq!(status, 200);
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].as_str().unwrap().starts_with("3."));
    for k in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(v["data"][k].is_string(), "{k}: {v}");
    }
    // The Pushgateway's own endpoints next to them are unchanged.
    let (status, v) = get_json(&p, "/api/v1/status");
    assert_eq!(status, 200);
    assert!(v["data"]["flags"].is_object(), "{v}");
    let (status, v) = get_json(&p, "/api/v1/metrics");
    assert_eq!((status, &v["data"]), (200, &serde_json::json!([])));
}

fn error_of(p: &Proc, path: &str) -> (u16, String, String) {
    let (status, v) = get_json(p, path);
    assert_eq!(v["status"], "error", "{path}: {v}");
    (
        status,
        v["errorType"].as_str().unwrap_or_default().to_owned(),
        v["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn errors_have_prometheus_types_codes_and_messages() {
    let p = ours(&["--query.max-samples", "50"]);
    let (s, t, e) = error_of(&p, "/api/v1/query?query=sum(");
    assert_eq!((s, t.as_str()), (400, "bad_data"));
    assert!(
        e.starts_with("invalid parameter \"query\": ") && e.contains("parse error"),
        "{e}"
    );
    let (s, t, e) = error_of(&p, "/api/v1/query?query=");
    assert_eq!((s, t.as_str()), (400, "bad_data"));
    assert_eq!(
        e,
        "invalid parameter \"query\": 1:1: parse error: no expression found in input"
    );
    let (s, _, e) = error_of(&p, "/api/v1/query?query=up&time=yesterday");
    assert_eq!(s, 400);
    assert_eq!(
        e,
        "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"yesterday\" to a valid timestamp"
    );
    let (s, _, e) = error_of(&p, "/api/v1/query_range?query=up&start=10&end=20");
    assert_eq!(s, 400);
    assert_eq!(
        e,
        "invalid parameter \"step\": cannot parse \"\" to a valid duration"
    );
    let (_, _, e) = error_of(&p, "/api/v1/query_range?query=up&start=20&end=10&step=1");
    assert_eq!(
        e,
        "invalid parameter \"end\": end timestamp must not be before start time"
    );
    let (_, _, e) = error_of(&p, "/api/v1/query_range?query=up&start=10&end=20&step=0");
    assert!(
        e.starts_with("invalid parameter \"step\": zero or negative"),
        "{e}"
    );
    let (s, t, e) = error_of(&p, "/api/v1/query_range?query=up&start=0&end=100000&step=1");
    assert_eq!((s, t.as_str()), (400, "bad_data"));
    assert!(
        e.starts_with("exceeded maximum resolution of 11,000 points"),
        "{e}"
    );
    let (s, t, e) = error_of(
        &p,
        "/api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1",
    );
    assert_eq!((s, t.as_str()), (400, "bad_data"));
    assert!(
        e.contains("invalid expression type \"range vector\""),
        "{e}"
    );

    // Over --query.max-samples: 422 execution, Prometheus's message.
    let body: String = (0..60).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
    put(&p, "/metrics/job/many", &body);
    let (s, t, e) = error_of(&p, "/api/v1/query?query=m");
    assert_eq!((s, t.as_str()), (422, "execution"));
    assert_eq!(
        e,
        "query processing would load too many samples into memory in query execution"
    );
    let d = query(&p, "count(m{i=~\"1.\"})", now_ms());
    assert_eq!(
        d["result"][0]["value"][1], "10",
        "a smaller query still runs"
    );

    assert!(
        scrape(&p)
            .contains("metrics_gateway_queries_total{endpoint=\"query\",result=\"execution\"} 1"),
        "errors are counted by type"
    );
}

/// Light on memory, heavy on time: 1000 outer steps of 86,400 inner evaluations.
const SLOW: &str = "max_over_time(count_over_time(vector(1)[1d:1s])[1000d:1d])";

#[test]
fn slow_queries_time_out_and_do_not_stall_pushes() {
    let p = ours(&["--query.timeout", "3s"]);
    // A request's own timeout shortens the gateway's.
    let started = Instant::now();
    let (s, t, e) = error_of(
        &p,
        &format!("/api/v1/query?query={}&timeout=0.2", enc(SLOW)),
    );
    assert_eq!((s, t.as_str()), (503, "timeout"));
    assert_eq!(e, "query timed out in expression evaluation");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // While a query runs until the gateway's 3s timeout, pushes go through at once.
    let addr = p.addr;
    let slow = std::thread::spawn(move || {
        let path = format!("/api/v1/query?query={}", enc(SLOW));
        request(addr, "GET", &path, &[], b"").status
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    for i in 0..20 {
        put(&p, "/metrics/job/busy", &format!("x {i}\n"));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "20 pushes took {took:?}");
    assert_eq!(slow.join().unwrap(), 503, "the slow query times out");
    assert!(scrape(&p)
        .contains("metrics_gateway_queries_total{endpoint=\"query\",result=\"timeout\"} 2"));
}

#[test]
fn series_labels_and_label_values_with_match() {
    let p = ours(&[]);
    put(
        &p,
        "/metrics/job/a/instance/i1",
        "# TYPE m counter\n# HELP m Things done.\nm{k=\"x\"} 1\nm{k=\"y\"} 2\n",
    );
    put(&p, "/metrics/job/b", "# TYPE n gauge\nn{z=\"1\"} 3\n");
    let (s, v) = get_json(&p, &format!("/api/v1/series?match[]={}", enc("m")));
    assert_eq!(s, 200);
    assert_eq!(
        v["data"],
        serde_json::json!([
            {"__name__": "m", "instance": "i1", "job": "a", "k": "x"},
            {"__name__": "m", "instance": "i1", "job": "a", "k": "y"},
        ])
    );
    // Several match[] are a union (the group's push-time gauges carry its labels too).
    let (_, v) = get_json(
        &p,
        &format!(
            "/api/v1/series?match[]={}&match[]={}",
            enc("m{k=\"y\"}"),
            enc("{job=\"b\"}")
        ),
    );
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["__name__"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["m", "n", "push_failure_time_seconds", "push_time_seconds"],
        "{v}"
    );
    assert!(v.get("warnings").is_none(), "{v}");
    // limit truncates, with Prometheus's warning.
    let (_, v) = get_json(&p, &format!("/api/v1/series?match[]={}&limit=1", enc("m")));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["warnings"],
        serde_json::json!(["results truncated due to limit"])
    );
    let (s, t, e) = error_of(&p, "/api/v1/series");
    assert_eq!(
        (s, t.as_str(), e.as_str()),
        (400, "bad_data", "no match[] parameter provided")
    );
    let (s, _, e) = error_of(
        &p,
        &format!("/api/v1/series?match[]={}", enc("{k=~\".*\"}")),
    );
    assert_eq!(s, 400);
    assert!(e.contains("at least one non-empty matcher"), "{e}");

    let (_, v) = get_json(&p, "/api/v1/labels");
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in ["__name__", "instance", "job", "k", "z"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let (_, v) = get_json(&p, &format!("/api/v1/labels?match[]={}", enc("n")));
    // `instance=""`, added to every pushed series, is no label at all (as in Prometheus).
    assert_eq!(v["data"], serde_json::json!(["__name__", "job", "z"]));
    let (_, v) = get_json(&p, "/api/v1/label/job/values");
    assert_eq!(v["data"], serde_json::json!(["a", "b"]));
    let (_, v) = get_json(
        &p,
        &format!("/api/v1/label/k/values?match[]={}", enc("m{k!=\"x\"}")),
    );
    assert_eq!(v["data"], serde_json::json!(["y"]));
    let (_, v) = get_json(&p, "/api/v1/label/__name__/values?limit=1");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"][0], "results truncated due to limit");
    // A window before anything was pushed has nothing.
    let (_, v) = get_json(&p, "/api/v1/label/job/values?start=0&end=1");
    assert_eq!(v["data"], serde_json::json!([]));
    let (s, _, e) = error_of(&p, "/api/v1/label/U__a_zz_/values");
    assert_eq!((s, e.as_str()), (400, "invalid label name: \"U__a_zz_\""));

    let (_, v) = get_json(&p, "/api/v1/metadata?metric=m");
    assert_eq!(
        v["data"],
        serde_json::json!({"m": [{"type": "counter", "help": "Things done.", "unit": ""}]})
    );
    let (_, v) = get_json(&p, "/api/v1/metadata");
    assert_eq!(v["data"]["n"][0]["type"], "gauge");
    assert_eq!(v["data"]["push_time_seconds"][0]["type"], "gauge");
}

#[test]
fn rules_alerts_and_recording_results_from_seed_named_rule_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("nested")).unwrap();
    std::fs::write(
        rules.join("alerting_rules-flink.yaml"),
        "groups:\n- name: alerts\n  rules:\n  - alert: High\n    expr: m > 1\n    labels:\n      severity: page\n    annotations:\n      summary: 'm is {{ $value }}'\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("recording_rules-flink.yaml"),
        "groups:\n- name: rec\n  rules:\n  - record: job:m:sum\n    expr: sum by (job) (m)\n",
    )
    .unwrap();
    // `*` does not cross `/` (as Go's filepath.Glob): this broken file is never read.
    std::fs::write(
        rules.join("nested").join("alerting_rules-x.yaml"),
        "groups: [",
    )
    .unwrap();
    let g1 = format!("{}/alerting_rules-*.yaml", rules.display());
    let g2 = format!("{}/recording_rule*.yaml", rules.display());
    let p = ours(&[
        "--rule.file",
        &g1,
        "--rule.file",
        &g2,
        "--rule.evaluation-interval",
        "1s",
        "--storage.record-interval",
        "1s",
    ]);
    put(&p, "/metrics/job/a", "m{k=\"x\"} 2\nm{k=\"y\"} 3\n");
    wait_for(
        || {
            let (_, v) = get_json(&p, "/api/v1/alerts");
            v["data"]["alerts"].as_array().is_some_and(|a| a.len() == 2)
        },
        "two firing alerts",
    );
    let (_, v) = get_json(&p, "/api/v1/alerts");
    let a = &v["data"]["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "High");
    assert_eq!(a["labels"]["k"], "x");
    assert_eq!(a["state"], "firing");
    assert_eq!(a["value"], "2e+00");
    assert_eq!(a["annotations"]["summary"], "m is 2");
    assert!(a["activeAt"].as_str().unwrap().ends_with('Z'));

    let (_, v) = get_json(&p, "/api/v1/rules");
    let groups = v["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v}");
    let alerts = groups.iter().find(|g| g["name"] == "alerts").unwrap();
    assert!(alerts["file"]
        .as_str()
        .unwrap()
        .ends_with("alerting_rules-flink.yaml"));
    assert_eq!(alerts["interval"], 1.0);
    let r = &alerts["rules"][0];
    assert_eq!(
        (&r["type"], &r["name"], &r["state"], &r["health"]),
        (
            &Value::from("alerting"),
            &Value::from("High"),
            &Value::from("firing"),
            &Value::from("ok")
        )
    );
    assert_eq!(r["query"], "m > 1");
    assert_eq!(r["labels"]["severity"], "page");
    assert_eq!(r["alerts"].as_array().unwrap().len(), 2);
    let (_, v) = get_json(&p, "/api/v1/rules?type=record");
    let groups = v["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["rules"][0]["name"], "job:m:sum");
    assert_eq!(groups[0]["rules"][0]["type"], "recording");
    let (_, v) = get_json(&p, "/api/v1/rules?type=alert&exclude_alerts=true");
    assert!(v["data"]["groups"][0]["rules"][0].get("alerts").is_none());
    let (s, t, _) = error_of(&p, "/api/v1/rules?type=nope");
    assert_eq!((s, t.as_str()), (400, "bad_data"));

    // Recording-rule results and ALERTS are queryable like pushed series.
    wait_for(
        || {
            let d = query(&p, "job:m:sum", now_ms());
            d["result"][0]["value"][1] == "5"
        },
        "the recording rule's result in the history",
    );
    wait_for(
        || {
            let d = query(&p, "count(ALERTS{alertstate=\"firing\"})", now_ms());
            d["result"][0]["value"][1] == "2"
        },
        "ALERTS in the history",
    );
}

const PROMETHEUS: &str = "prometheus";

/// Debian's Prometheus scraping `target` every second with `honor_labels`, on a free port.
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
        .arg(PROMETHEUS)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIP differential query test: `prometheus` is not on PATH (apt install prometheus)"
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
    let child = std::process::Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
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

/// GET against any address; `None` while it does not answer.
fn get_at(addr: std::net::SocketAddr, path: &str) -> Option<(u16, Value)> {
    let (status, body) = common::testkit::http(addr, "GET", path, "").ok()?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// A query result as (labels as JSON text) → values (one for a vector, several for a matrix).
fn by_series(data: &Value) -> std::collections::BTreeMap<String, Vec<(f64, f64)>> {
    let point = |p: &Value| {
        (
            p[0].as_f64().unwrap(),
            p[1].as_str().unwrap().parse::<f64>().unwrap(),
        )
    };
    match data["resultType"].as_str() {
        Some("scalar") => [("scalar".to_owned(), vec![point(&data["result"])])].into(),
        _ => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let pts = match s.get("values") {
                    Some(v) => v.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                (s["metric"].to_string(), pts)
            })
            .collect(),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

const FLINK_JM: &str = "# TYPE flink_jobmanager_job_uptime gauge
flink_jobmanager_job_uptime{job_name=\"wordcount\",jobId=\"j1\"} 120000
# TYPE flink_jobmanager_job_numRestarts counter
flink_jobmanager_job_numRestarts{job_name=\"wordcount\",jobId=\"j1\"} 3
# TYPE flink_jobmanager_job_numberOfCompletedCheckpoints counter
flink_jobmanager_job_numberOfCompletedCheckpoints{job_name=\"wordcount\",jobId=\"j1\"} 40
# TYPE flink_jobmanager_job_numberOfFailedCheckpoints counter
flink_jobmanager_job_numberOfFailedCheckpoints{job_name=\"wordcount\",jobId=\"j1\"} 2
# TYPE flink_jobmanager_job_lastCheckpointDuration gauge
flink_jobmanager_job_lastCheckpointDuration{job_name=\"wordcount\",jobId=\"j1\"} 1534
# TYPE req_seconds histogram
req_seconds_bucket{le=\"0.1\"} 5
req_seconds_bucket{le=\"0.5\"} 9
req_seconds_bucket{le=\"1\"} 12
req_seconds_bucket{le=\"+Inf\"} 13
req_seconds_sum 7.5
req_seconds_count 13
";

fn flink_tm(tm: &str, heap_used: f64, records: u64) -> String {
    format!(
        "# TYPE flink_taskmanager_job_task_numRecordsIn counter
flink_taskmanager_job_task_numRecordsIn{{job_name=\"wordcount\",task_name=\"source\",tm_id=\"{tm}\"}} {records}
# TYPE flink_taskmanager_job_task_numRecordsOut counter
flink_taskmanager_job_task_numRecordsOut{{job_name=\"wordcount\",task_name=\"source\",tm_id=\"{tm}\"}} {}
# TYPE flink_taskmanager_job_task_backPressuredTimeMsPerSecond gauge
flink_taskmanager_job_task_backPressuredTimeMsPerSecond{{job_name=\"wordcount\",task_name=\"source\",tm_id=\"{tm}\"}} {}
# TYPE flink_taskmanager_Status_JVM_Memory_Heap_Used gauge
flink_taskmanager_Status_JVM_Memory_Heap_Used{{tm_id=\"{tm}\"}} {heap_used}
# TYPE flink_taskmanager_Status_JVM_Memory_Heap_Max gauge
flink_taskmanager_Status_JVM_Memory_Heap_Max{{tm_id=\"{tm}\"}} 1073741824
",
        records * 2,
        records % 1000
    )
}

/// Every dashboard query and rule expression of deploy/ that reads pushed series (the
/// dashboard variables `$namespace`/`$deploymentId` as `.*`), plus a few more shapes.
const DIFF_QUERIES: &[&str] = &[
    "flink_jobmanager_job_uptime{namespace=~\".*\", deploymentId=~\".*\"} / 1000",
    "increase(flink_jobmanager_job_numRestarts{namespace=~\".*\", deploymentId=~\".*\"}[10m])",
    "increase(flink_jobmanager_job_numberOfCompletedCheckpoints{namespace=~\".*\", deploymentId=~\".*\"}[15m])",
    "increase(flink_jobmanager_job_numberOfFailedCheckpoints{namespace=~\".*\", deploymentId=~\".*\"}[15m])",
    "flink_jobmanager_job_lastCheckpointDuration{namespace=~\".*\", deploymentId=~\".*\"} / 1000",
    "sum by (job_name) (rate(flink_taskmanager_job_task_numRecordsIn{namespace=~\".*\", deploymentId=~\".*\"}[1m]))",
    "sum by (job_name) (rate(flink_taskmanager_job_task_numRecordsOut{namespace=~\".*\", deploymentId=~\".*\"}[1m]))",
    "max by (job_name, task_name) (flink_taskmanager_job_task_backPressuredTimeMsPerSecond{namespace=~\".*\", deploymentId=~\".*\"})",
    "flink_taskmanager_Status_JVM_Memory_Heap_Used{namespace=~\".*\", deploymentId=~\".*\"} / flink_taskmanager_Status_JVM_Memory_Heap_Max{namespace=~\".*\", deploymentId=~\".*\"}",
    "count(count by (job, instance) (push_time_seconds))",
    "sum by (namespace, deploymentId, jobId, job_name) (increase(flink_jobmanager_job_numRestarts[10m]))",
    "increase(flink_jobmanager_job_numberOfFailedCheckpoints[15m]) >= 0",
    "time() - max by (job) (push_time_seconds{job=~\"flink.*\"})",
    "flink_taskmanager_Status_JVM_Memory_Heap_Used / flink_taskmanager_Status_JVM_Memory_Heap_Max > 0.4",
    "histogram_quantile(0.9, sum by (le) (req_seconds_bucket))",
    "req_seconds_sum / req_seconds_count",
    "topk(1, flink_taskmanager_Status_JVM_Memory_Heap_Used)",
    "max_over_time(flink_taskmanager_Status_JVM_Memory_Heap_Used[2s])",
    "count by (__name__) ({__name__=~\"flink_.*\"})",
    "scalar(sum(flink_taskmanager_Status_JVM_Memory_Heap_Max)) * 2",
];

#[test]
fn differential_against_a_real_prometheus_scraping_the_gateway() {
    let gw = ours(&["--storage.record-interval", "1s"]);
    let jm = "/metrics/job/flink-jm/namespace/prod/deploymentId/d-1";
    let tm =
        |n: &str| format!("/metrics/job/flink-tm/instance/{n}/namespace/prod/deploymentId/d-1");
    put(&gw, jm, FLINK_JM);
    put(&gw, &tm("tm-1"), &flink_tm("tm-1", 4e8, 1000));
    put(&gw, &tm("tm-2"), &flink_tm("tm-2", 6e8, 2500));
    let Some(prom) = real_prometheus(gw.addr) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = |expr: &str, want: &str| {
        get_at(prom.addr, &format!("/api/v1/query?query={}", enc(expr)))
            .is_some_and(|(_, v)| v["data"]["result"][0]["value"][1] == want)
    };
    while !seen("count(flink_taskmanager_Status_JVM_Memory_Heap_Used)", "2") {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the gateway"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = now_ms() + 1000;
    std::thread::sleep(Duration::from_millis(2500));
    // A change half-way: the gateway records it at the push, Prometheus at its next scrape.
    let tc = now_ms();
    put(&gw, &tm("tm-1"), &flink_tm("tm-1", 9e8, 1000));
    let tm1_heap = "flink_taskmanager_Status_JVM_Memory_Heap_Used{tm_id=\"tm-1\"}";
    while !seen(tm1_heap, "900000000") {
        assert!(Instant::now() < deadline, "Prometheus never saw the change");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tc2 = now_ms();
    std::thread::sleep(Duration::from_millis(2500));
    let t_end = now_ms() - 200;

    let ask = |addr: std::net::SocketAddr, path: &str| {
        let (status, v) = get_at(addr, path).unwrap_or_else(|| panic!("{addr} {path}"));
        assert_eq!(status, 200, "{addr} {path}: {v}");
        by_series(&v["data"])
    };
    let mut compared = 0;
    for q in DIFF_QUERIES {
        let path = format!("/api/v1/query?query={}&time={}", enc(q), secs(t_end));
        let (ours_r, theirs) = (ask(gw.addr, &path), ask(prom.addr, &path));
        assert_eq!(
            ours_r.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "series of {q}"
        );
        for (k, a) in &ours_r {
            let b = &theirs[k];
            assert!(
                same(a[0].1, b[0].1) && a[0].0 == b[0].0,
                "{q} {k}: ours {a:?}, Prometheus {b:?}"
            );
        }
        compared += ours_r.len();
    }
    assert!(compared >= 20, "only {compared} series compared");

    // Range queries over the scraped window, step 1s: equal at every step outside the
    // moments between the change's push and Prometheus's scrape of it.
    for q in [
        "flink_taskmanager_Status_JVM_Memory_Heap_Used / flink_taskmanager_Status_JVM_Memory_Heap_Max",
        "sum by (job) (flink_taskmanager_Status_JVM_Memory_Heap_Used)",
        "count(count by (job, instance) (push_time_seconds))",
    ] {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=1",
            enc(q),
            secs(t0),
            secs(t_end)
        );
        let (ours_r, theirs) = (ask(gw.addr, &path), ask(prom.addr, &path));
        assert_eq!(
            ours_r.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "series of {q}"
        );
        for (k, a) in &ours_r {
            let b: std::collections::BTreeMap<i64, f64> = theirs[k]
                .iter()
                .map(|&(t, v)| ((t * 1000.0).round() as i64, v))
                .collect();
            let mut steps = 0;
            for &(t, v) in a {
                let t = (t * 1000.0).round() as i64;
                if t >= tc && t <= tc2 + 1000 {
                    continue;
                }
                let w = b.get(&t).unwrap_or_else(|| panic!("{q} {k}: Prometheus has no point at {t}"));
                assert!(same(v, *w), "{q} {k} at {t}: ours {v}, Prometheus {w}");
                steps += 1;
            }
            assert!(steps >= 3, "{q} {k}: only {steps} steps compared");
        }
    }

    // Errors: same status and errorType; the messages Prometheus words itself agree.
    for (path, same_text) in [
        ("/api/v1/query?query=sum(".to_owned(), false),
        ("/api/v1/query?query=up&time=yesterday".to_owned(), true),
        (
            "/api/v1/query_range?query=up&start=20&end=10&step=1".to_owned(),
            true,
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=20&step=0".to_owned(),
            true,
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1".to_owned(),
            true,
        ),
        (
            "/api/v1/query_range?query=up%5B1m%5D&start=0&end=10&step=1".to_owned(),
            false,
        ),
        ("/api/v1/series".to_owned(), true),
        ("/api/v1/labels?start=soon".to_owned(), true),
        (
            "/api/v1/query_range?query=up&start=soon&end=1&step=1".to_owned(),
            true,
        ),
    ] {
        let (s1, a) = get_at(gw.addr, &path).unwrap();
        let (s2, b) = get_at(prom.addr, &path).unwrap();
        assert_eq!(
            (s1, &a["errorType"]),
            (s2, &b["errorType"]),
            "{path}: {a} vs {b}"
        );
        if same_text {
            assert_eq!(a["error"], b["error"], "{path}");
        } else {
            assert!(
                a["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("invalid parameter \"query\""),
                "{a}"
            );
        }
    }
}

#[test]
fn promtool_query_works_unchanged() {
    let found = std::process::Command::new("which")
        .arg("promtool")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP promtool query: `promtool` is not on PATH (apt install prometheus)");
        return;
    }
    let p = ours(&[]);
    put(&p, "/metrics/job/a", "m{k=\"x\"} 1.5\nm{k=\"y\"} 2\n");
    let url = format!("http://{}", p.addr);
    let run = |args: &[&str]| {
        let o = std::process::Command::new("promtool")
            .arg("query")
            .args(args)
            .output()
            .expect("run promtool");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["instant", &url, "sum(m)"]);
    assert!(ok && out.starts_with("{} => 3.5 @["), "{out}{err}");
    let (ok, out, err) = run(&["series", "--match=m", &url]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "{__name__=\"m\", job=\"a\", k=\"x\"}",
            "{__name__=\"m\", job=\"a\", k=\"y\"}"
        ]
    );
    let (ok, out, _) = run(&["labels", &url, "k"]);
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["x", "y"]);
    let end = (now_ms() / 1000 + 1).to_string();
    let start = (now_ms() / 1000 - 1).to_string();
    let (ok, out, err) = run(&[
        "range",
        &format!("--start={start}"),
        &format!("--end={end}"),
        "--step=1s",
        &url,
        "m * 2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("{job=\"a\", k=\"x\"} =>") && out.contains("3 @["),
        "{out}"
    );
    let (ok, _, err) = run(&["instant", &url, "sum("]);
    assert!(!ok);
    assert!(
        err.contains("bad_data: invalid parameter \"query\""),
        "{err}"
    );
}
