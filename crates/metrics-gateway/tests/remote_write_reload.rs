//! `remote_write` changes applied at a reload (`POST /-/reload`, SIGHUP) on the real
//! process, against in-test receivers: an unchanged remote keeps its queue and the batch it
//! is retrying; a remote whose settings change under the same URL and name hands its
//! queue to the new senders (nothing lost, the new settings used); an added remote gets
//! what is recorded from then on; a removed remote (or one whose URL changed) sends what
//! it holds, bounded by the grace period, and stops.

mod remote_write_gw;
mod remote_write_rx;
mod support;

use std::time::{Duration, Instant};

use common::testkit::wait_for;
use remote_write_gw::*;
use remote_write_rx::*;
use support::*;

const QUEUE: &str =
    "{batch_send_deadline: 50ms, min_backoff: 50ms, max_backoff: 200ms, max_samples_per_send: 10000}";

/// `s0..s{n}` with value `v`.
fn body(n: usize, v: f64) -> String {
    (0..n).map(|i| format!("s{i} {v}\n")).collect()
}

/// The value of `name`'s samples, in arrival order.
fn values(samples: &[(Series, i64, f64)], name: &str) -> Vec<f64> {
    samples
        .iter()
        .filter(|(l, _, _)| l["__name__"] == name)
        .map(|(_, _, v)| *v)
        .collect()
}

#[test]
fn unchanged_keeps_its_queue_changed_hands_it_over_added_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::ZERO);
    rx.fail_with(503);
    let first = format!(
        "remote_write:\n  - {{url: {}, name: a, queue_config: {QUEUE}}}\n  - {{url: {}, name: b, headers: {{X-Tenant: one}}, queue_config: {QUEUE}}}\n",
        rx.url("a"),
        rx.url("b"),
    );
    let gw = gateway(dir.path(), &first, &[]);
    put(&gw, "/metrics/job/j", &body(20, 1.0));
    wait_for(
        || rx.requests("a").len() >= 2 && rx.requests("b").len() >= 2,
        "both remotes retrying the first push",
    );
    let a_batch = rx.requests("a")[0].raw.clone();

    // b's header changes (same URL and name); c is new; a is unchanged.
    let second = format!(
        "remote_write:\n  - {{url: {}, name: a, queue_config: {QUEUE}}}\n  - {{url: {}, name: b, headers: {{X-Tenant: two}}, queue_config: {QUEUE}}}\n  - {{url: {}, name: c, queue_config: {QUEUE}}}\n",
        rx.url("a"),
        rx.url("b"),
        rx.url("c"),
    );
    reload(&gw, dir.path(), &second);
    // b's new senders take over the queued batch and send it with the new header.
    wait_for(
        || {
            rx.requests("b")
                .iter()
                .any(|g| g.head.contains("x-tenant: two"))
        },
        "b retrying with its new header",
    );
    put(&gw, "/metrics/job/j", &body(20, 2.0));
    std::thread::sleep(Duration::from_millis(200));
    rx.fail_with(0);
    wait_for(
        || {
            values(&rx.accepted("a"), "s0") == [1.0, 2.0]
                && values(&rx.accepted("b"), "s0") == [1.0, 2.0]
                && values(&rx.accepted("c"), "s0") == [2.0]
        },
        "everything delivered",
    );

    // a: untouched by the reload; the batch it was retrying went through unchanged.
    let a = rx.requests("a");
    let first_ok = a.iter().find(|g| g.status == 200).unwrap();
    assert_eq!(
        first_ok.raw, a_batch,
        "a's retried batch is the one it held before the reload"
    );
    // b: nothing lost, per-series order kept, every accepted request with the new header.
    let b = rx.accepted("b");
    for i in 0..20 {
        assert_eq!(values(&b, &format!("s{i}")), [1.0, 2.0], "s{i} at b");
    }
    assert_in_order_per_series(&b);
    assert!(rx
        .requests("b")
        .iter()
        .filter(|g| g.status == 200)
        .all(|g| g.head.contains("x-tenant: two")));
    // c: only what was recorded after the reload.
    for i in 0..20 {
        assert_eq!(values(&rx.accepted("c"), &format!("s{i}")), [2.0]);
    }
    for r in ["a", "b", "c"] {
        for reason in [
            "queue_full",
            "out_of_order",
            "rejected",
            "removed",
            "shutdown",
        ] {
            assert_eq!(dropped(&gw, r, reason), 0.0, "{r} dropped {reason}");
        }
    }
    assert_eq!(
        metric(&gw, "metrics_gateway_config_last_reload_successful"),
        1.0
    );
}

#[test]
fn removed_and_moved_remotes_flush_what_they_hold_within_the_grace_period_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::ZERO);
    let down = Rx::start(Duration::ZERO);
    down.fail_with(503);
    // d waits 60 s to fill its batch, so the push below is still queued at the reload.
    let first = format!(
        "remote_write:\n  - {{url: {}, name: d, queue_config: {{batch_send_deadline: 60s, max_samples_per_send: 10000}}}}\n  - {{url: {}, name: e, queue_config: {QUEUE}}}\n",
        rx.url("d"),
        down.url("e"),
    );
    let gw = gateway(dir.path(), &first, &["--shutdown.grace-period", "1s"]);
    put(&gw, "/metrics/job/j", &body(30, 1.0));
    wait_for(|| !down.requests("e").is_empty(), "e retrying");
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.requests("d").is_empty(), "d still holds its batch");

    // d moves to another URL under the same name; e goes away.
    let second = format!(
        "remote_write:\n  - {{url: {}, name: d, queue_config: {QUEUE}}}\n",
        rx.url("d2"),
    );
    let at = Instant::now();
    reload(&gw, dir.path(), &second);
    wait_for(
        || values(&rx.accepted("d"), "s0") == [1.0],
        "the old d flushed",
    );
    assert!(
        at.elapsed() < Duration::from_secs(5),
        "flushed at the reload, not after the 60 s deadline"
    );
    let d = rx.accepted("d");
    for i in 0..30 {
        assert_eq!(values(&d, &format!("s{i}")), [1.0], "s{i}");
    }
    // e could not send: after the 1 s grace period its samples are counted and it stops.
    let n = down.requests("e")[0].samples.len() as f64;
    wait_for(|| dropped(&gw, "e", "removed") == n, "e's samples counted");
    let tries = down.requests("e").len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(down.requests("e").len(), tries, "e stopped retrying");
    let scrape = scrape(&gw);
    assert!(
        !scrape.contains("metrics_gateway_remote_write_samples_pending{remote=\"e\"}"),
        "the removed remote's gauges are gone"
    );

    // What is pushed now goes to the new d only.
    put(&gw, "/metrics/job/j", &body(30, 2.0));
    wait_for(
        || values(&rx.accepted("d2"), "s0") == [2.0],
        "the new d got the new push",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(values(&rx.accepted("d"), "s0"), [1.0]);
    assert_eq!(down.requests("e").len(), tries);
    assert_eq!(sent(&gw, "d"), (d.len() + rx.accepted("d2").len()) as f64);
}

#[test]
fn sighup_applies_remote_write_too() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(Duration::ZERO);
    let gw = gateway(dir.path(), "{}\n", &[]);
    std::fs::write(
        dir.path().join("gw.yml"),
        format!(
            "remote_write:\n  - {{url: {}, name: late, queue_config: {QUEUE}}}\n",
            rx.url("late")
        ),
    )
    .unwrap();
    gw.signal("HUP");
    wait_for(
        || gw.get("/-/config").1.contains("name: late"),
        "config reloaded",
    );
    put(&gw, "/metrics/job/j", "x 7\n");
    wait_for(|| values(&rx.accepted("late"), "x") == [7.0], "sent");
}
