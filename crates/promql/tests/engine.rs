//! Engine behaviour checked without ../shared: small scripts in Prometheus's `.test`
//! format plus direct API use.

use promql_engine::labels::Labels;
use promql_engine::promqltest::run_text;
use promql_engine::{parse, Engine, MemStorage, Value};

fn assert_script(script: &str) {
    let r = run_text("inline", script);
    assert!(r.failed == 0 && r.passed > 0, "failures: {:#?}", r.failures);
}

#[test]
fn lookback_is_five_minutes_and_left_open() {
    assert_script(
        r#"
load 1m
  m{a="1"} 1 _x9

eval instant at 4m59s m
  m{a="1"} 1

eval instant at 5m m

eval instant at 29s m[30s]
  expect range vector from 0 to 0 step 1m
  m{a="1"} 1

eval instant at 30s m[30s]
  expect range vector from 0 to 0 step 1m

eval instant at 1m m[1m]
  expect range vector from 1m to 1m step 1m
"#,
    );
}

#[test]
fn staleness_marker_hides_series_immediately() {
    assert_script(
        r#"
load 1m
  m 1 2 stale 4

eval instant at 2m m

eval instant at 2m count_over_time(m[5m])
  {} 2

eval instant at 3m m
  m 4
"#,
    );
}

#[test]
fn rate_extrapolates_like_prometheus() {
    assert_script(
        r#"
load 5m
  c_total{j="x"} 0+10x10
  c_total{j="y"} 0 10 20 5 15

# The sample at 0 is outside the left-open range (0, 20m]; 15 increase over 15m
# plus a reset, extrapolated to the range start.
eval instant at 20m rate(c_total[20m])
  {j="x"} 0.03333333333333333
  {j="y"} 0.027777777777777776

eval instant at 20m increase(c_total{j="x"}[10m])
  {j="x"} 20

eval instant at 20m delta(c_total{j="y"}[20m])
  {j="y"} 6.666666666666667

eval instant at 20m resets(c_total[20m])
  {j="x"} 0
  {j="y"} 1
"#,
    );
}

#[test]
fn vector_matching_and_set_operators() {
    assert_script(
        r#"
load 1m
  a{i="1",j="x"} 10
  a{i="2",j="x"} 20
  b{j="x"} 2
  c{i="1"} 1

eval instant at 0 a / on(j) group_left b
  {i="1",j="x"} 5
  {i="2",j="x"} 10

eval instant at 0 a > bool 15
  {i="1",j="x"} 0
  {i="2",j="x"} 1

eval instant at 0 a and on(i) c
  a{i="1",j="x"} 10

eval instant at 0 a unless on(i) c
  a{i="2",j="x"} 20

eval instant at 0 a / on(j) b
  expect fail msg: multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)
"#,
    );
}

#[test]
fn aggregations() {
    assert_script(
        r#"
load 1m
  m{g="a",i="1"} 1
  m{g="a",i="2"} 3
  m{g="b",i="3"} 5

eval instant at 0 sum by (g) (m)
  {g="a"} 4
  {g="b"} 5

eval instant at 0 topk(1, m)
  m{g="b",i="3"} 5

eval instant at 0 count_values("v", m)
  {v="1"} 1
  {v="3"} 1
  {v="5"} 1

eval instant at 0 quantile(0.5, m)
  {} 3

eval instant at 0 stddev without (i) (m)
  {g="a"} 1
  {g="b"} 0
"#,
    );
}

#[test]
fn subquery_and_at_modifier() {
    assert_script(
        r#"
load 1m
  m 0+1x10

eval instant at 10m max_over_time(m[5m:1m])
  {} 10

eval instant at 10m m @ 120
  m 2

eval instant at 10m m offset 3m
  m 7
"#,
    );
}

#[test]
fn histogram_quantile_over_classic_buckets() {
    assert_script(
        r#"
load 1m
  h_bucket{le="0.1"} 0+1x5
  h_bucket{le="1"} 0+3x5
  h_bucket{le="+Inf"} 0+4x5

eval instant at 5m histogram_quantile(0.5, h_bucket)
  {} 0.55
"#,
    );
}

fn eval_vec(st: &MemStorage, q: &str, t: i64) -> Vec<(Labels, f64)> {
    let e = parse(q).unwrap();
    match Engine::default().instant(st, q, &e, t).unwrap().value {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.f)).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn limitk_and_limit_ratio_select_subsets() {
    let st = MemStorage::new();
    for i in 0..20 {
        st.append(
            &Labels::new([("__name__", "m"), ("i", &i.to_string())]),
            0,
            i as f64,
        );
    }
    assert_eq!(eval_vec(&st, "limitk(3, m)", 0).len(), 3);
    assert_eq!(eval_vec(&st, "limit_ratio(1, m)", 0).len(), 20);
    assert_eq!(eval_vec(&st, "limit_ratio(0, m)", 0).len(), 0);
    let a = eval_vec(&st, "limit_ratio(0.3, m)", 0);
    let b = eval_vec(&st, "limit_ratio(-0.7, m)", 0);
    assert_eq!(
        a.len() + b.len(),
        20,
        "a ratio and its complement partition the input"
    );
    assert!(a.iter().all(|x| !b.contains(x)));
}

#[test]
fn series_delete_in_storage_makes_series_stale() {
    let st = MemStorage::new();
    let l = Labels::new([("__name__", "up"), ("job", "x")]);
    st.append(&l, 0, 1.0);
    assert_eq!(eval_vec(&st, "up", 60_000).len(), 1);
    st.mark_stale(&l, 90_000);
    assert!(eval_vec(&st, "up", 120_000).is_empty());
    assert_eq!(
        eval_vec(&st, "up", 60_000).len(),
        1,
        "history before the marker stays"
    );
}

#[test]
fn query_limits_stop_a_query_that_loads_too_much_or_runs_too_long() {
    use promql_engine::{Error, QueryLimits};
    let st = MemStorage::new();
    for i in 0..10 {
        let l = Labels::new([("__name__", "m"), ("i", &i.to_string())]);
        for t in 0..60 {
            st.append(&l, t * 1000, t as f64);
        }
    }
    let q = "sum(count_over_time(m[1m]))";
    let e = parse(q).unwrap();
    let eng = Engine::default();
    let at = 59_000;
    // 10 series x 60 samples = 600 samples loaded at once.
    let roomy = QueryLimits {
        deadline: None,
        max_samples: 600,
    };
    let r = eng.instant_limited(&st, q, &e, at, &roomy).unwrap();
    assert_eq!(r.value, eng.instant(&st, q, &e, at).unwrap().value);
    let tight = QueryLimits {
        deadline: None,
        max_samples: 599,
    };
    assert_eq!(
        eng.instant_limited(&st, q, &e, at, &tight).unwrap_err(),
        Error::TooManySamples
    );
    // A range query's result counts too: 10 series x 31 steps = 310 points.
    let q = "m";
    let e = parse(q).unwrap();
    let lim = |n| QueryLimits {
        deadline: None,
        max_samples: n,
    };
    assert!(eng
        .range_limited(&st, q, &e, 0, 30_000, 1000, &lim(320))
        .is_ok());
    assert_eq!(
        eng.range_limited(&st, q, &e, 0, 30_000, 1000, &lim(300))
            .unwrap_err(),
        Error::TooManySamples
    );
    // A subquery's points count while it is built.
    let q = "count_over_time(vector(1)[100s:1s])";
    let e = parse(q).unwrap();
    assert!(eng.instant_limited(&st, q, &e, at, &lim(100)).is_ok());
    assert_eq!(
        eng.instant_limited(&st, q, &e, at, &lim(99)).unwrap_err(),
        Error::TooManySamples
    );
    let q = "m";
    let e = parse(q).unwrap();
    // A deadline already passed stops evaluation with Prometheus's timeout error.
    let past = QueryLimits {
        deadline: Some(std::time::Instant::now()),
        max_samples: 0,
    };
    let err = eng
        .range_limited(&st, q, &e, 0, 30_000, 1000, &past)
        .unwrap_err();
    assert_eq!(err, Error::Timeout);
    assert_eq!(err.to_string(), "query timed out in expression evaluation");
}

#[test]
fn series_selectors_parse_to_matchers() {
    let m = promql_engine::parse_series_selector(r#"up{job=~"a.*",x!="1"}"#).unwrap();
    let l = Labels::new([("__name__", "up"), ("job", "abc")]);
    assert!(m.iter().all(|m| m.matches_labels(&l)));
    assert!(promql_engine::parse_series_selector("sum(up)").is_err());
    assert!(promql_engine::parse_series_selector("up{").is_err());
}
