//! Starting and driving the real gateway in the remote-write tests: a process with a
//! config file, reloads, pushes and the remote-write metrics it exposes. Each test binary
//! that uses it declares `mod support;` too.
#![allow(dead_code)]

use std::path::Path;

use common::testkit::Proc;

use crate::support::{ours, request};

/// A gateway with `config` (YAML) as its config file `dir/gw.yml`; re-records only once an
/// hour, so the samples sent are those of the pushes.
pub fn gateway(dir: &Path, config: &str, extra: &[&str]) -> Proc {
    let cfg = dir.join("gw.yml");
    std::fs::write(&cfg, config).unwrap();
    let mut args = vec![
        "--config.file",
        cfg.to_str().unwrap(),
        "--storage.record-interval",
        "1h",
    ];
    args.extend_from_slice(extra);
    ours(&args)
}

/// Writes `config` to the gateway's config file and reloads it with `POST /-/reload`.
pub fn reload(gw: &Proc, dir: &Path, config: &str) {
    std::fs::write(dir.join("gw.yml"), config).unwrap();
    let r = request(gw.addr, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 200, "reload: {}", r.body);
}

/// `PUT path` with `body`, which must succeed.
pub fn put(p: &Proc, path: &str, body: &str) {
    let r = request(p.addr, "PUT", path, &[], body.as_bytes());
    assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
}

/// The value of `series` on `/metrics`, 0 while absent.
pub fn metric(p: &Proc, series: &str) -> f64 {
    p.metric(series).unwrap_or(0.0)
}

/// Samples `remote` has sent.
pub fn sent(p: &Proc, remote: &str) -> f64 {
    metric(
        p,
        &format!("metrics_gateway_remote_write_samples_sent_total{{remote=\"{remote}\"}}"),
    )
}

/// Samples `remote` has dropped for `reason`.
pub fn dropped(p: &Proc, remote: &str, reason: &str) -> f64 {
    metric(
        p,
        &format!(
            "metrics_gateway_remote_write_samples_dropped_total{{reason=\"{reason}\",remote=\"{remote}\"}}"
        ),
    )
}

/// `remote`'s current number of shards.
pub fn shards(p: &Proc, remote: &str) -> f64 {
    metric(
        p,
        &format!("metrics_gateway_remote_write_shards{{remote=\"{remote}\"}}"),
    )
}
