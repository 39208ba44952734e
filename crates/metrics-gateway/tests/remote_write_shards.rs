//! Sharded remote write on the real process against slow in-test receivers: more shards
//! send faster, the number of shards follows the backlog between `min_shards` and
//! `max_shards`, and every series' samples arrive in order through the resharding.

mod remote_write_gw;
mod remote_write_rx;
mod support;

use std::time::Duration;

use common::testkit::wait_for;
use remote_write_gw::*;
use remote_write_rx::*;
use support::*;

#[test]
fn four_shards_send_about_four_times_as_fast_as_one_to_a_slow_receiver() {
    let dir = tempfile::tempdir().unwrap();
    // 100 ms per request, 50 samples per request.
    let rx = Rx::start(Duration::from_millis(100));
    let q = |n: usize| {
        format!("{{min_shards: {n}, max_shards: {n}, max_samples_per_send: 50, batch_send_deadline: 20ms}}")
    };
    let gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - {{url: {}, name: one, queue_config: {}}}\n  - {{url: {}, name: four, queue_config: {}}}\n",
            rx.url("one"),
            q(1),
            rx.url("four"),
            q(4)
        ),
        &[],
    );
    assert_eq!(shards(&gw, "one"), 1.0);
    assert_eq!(shards(&gw, "four"), 4.0);
    // 800 series and push_time_seconds, push_failure_time_seconds.
    let body: String = (0..800).map(|i| format!("m{{i=\"{i}\"}} {i}\n")).collect();
    put(&gw, "/metrics/job/j", &body);
    wait_for(
        || sent(&gw, "one") == 802.0 && sent(&gw, "four") == 802.0,
        "all sent",
    );
    // From the first request's arrival to the last one's answer.
    let took = |path: &str| {
        let got = rx.requests(path);
        let first = got.iter().map(|g| g.at).min().unwrap();
        let last = got.iter().map(|g| g.at).max().unwrap();
        (last - first) + Duration::from_millis(100)
    };
    let (one, four) = (took("one"), took("four"));
    // One shard: 17 requests one after another (~1.7 s); four: ~5 each (~0.5 s).
    assert!(
        one.as_secs_f64() / four.as_secs_f64() >= 2.5,
        "one shard {one:?}, four shards {four:?}"
    );
    assert_eq!(rx.accepted("one").len(), 802);
    assert_eq!(rx.accepted("four").len(), 802);
    // Every request of `four` holds series of one shard only: the same series never
    // appears in two concurrent requests.
    assert_in_order_per_series(&rx.accepted("four"));
}

#[test]
fn shards_grow_with_the_backlog_shrink_when_idle_and_keep_per_series_order() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::from_millis(40));
    let gw = gateway(
        dir.path(),
        &format!(
            "remote_write:\n  - {{url: {}, name: s, queue_config: {{min_shards: 1, max_shards: 6, max_samples_per_send: 40, batch_send_deadline: 20ms, shard_update_interval: 300ms}}}}\n",
            rx.url("s"),
        ),
        &[],
    );
    assert_eq!(shards(&gw, "s"), 1.0);
    // 200 series pushed 12 times, 60 ms apart: ~3,400 samples/s in, where one shard sends
    // 40 per 40 ms (~1,000/s).
    let rounds = 12;
    let mut most = 1.0f64;
    for round in 0..rounds {
        let body: String = (0..200)
            .map(|i| format!("m{{i=\"{i}\"}} {round}\n"))
            .collect();
        put(&gw, "/metrics/job/j", &body);
        std::thread::sleep(Duration::from_millis(60));
        most = most.max(shards(&gw, "s"));
    }
    let total = (rounds * 202) as f64;
    wait_for(
        || {
            most = most.max(shards(&gw, "s"));
            sent(&gw, "s") == total
        },
        "everything sent",
    );
    assert!(most >= 3.0, "shards grew only to {most}");
    assert!(most <= 6.0, "shards above max: {most}");
    let got = rx.accepted("s");
    assert_eq!(got.len() as f64, total);
    assert_in_order_per_series(&got);
    for i in 0..200 {
        let vals: Vec<f64> = got
            .iter()
            .filter(|(l, _, _)| l.get("i").is_some_and(|v| v == &i.to_string()))
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(vals, (0..rounds).map(|r| r as f64).collect::<Vec<_>>());
    }
    // Idle: back to min_shards.
    wait_for(|| shards(&gw, "s") == 1.0, "shards back to 1 when idle");
    assert_eq!(
        metric(
            &gw,
            "metrics_gateway_remote_write_samples_dropped_total{reason=\"queue_full\",remote=\"s\"}"
        ),
        0.0
    );
}

#[test]
fn shard_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (q, want) in [
        (
            "{min_shards: 4, max_shards: 2}",
            "remote_write[0].queue_config.min_shards",
        ),
        ("{max_shards: 0}", "remote_write[0].queue_config.max_shards"),
        (
            "{shard_update_interval: 0s}",
            "remote_write[0].queue_config.shard_update_interval",
        ),
    ] {
        let cfg = dir.path().join("bad.yml");
        std::fs::write(
            &cfg,
            format!("remote_write:\n  - url: http://127.0.0.1:1/w\n    queue_config: {q}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["--web.listen-address", "127.0.0.1:0", "--config.file"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{q} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{q}: error does not name {want}: {err}");
    }
}
