//! The shared runtime, on the real `metrics-gateway` process: SIGHUP reload (bad config kept
//! out), reload without a config file, SIGTERM drain.

use common::testkit;

const BIN: &str = env!("CARGO_BIN_EXE_metrics-gateway");

#[test]
fn reloads_on_sighup_keeps_old_config_on_error_and_drains_on_sigterm() {
    testkit::check_lifecycle(BIN, "metrics_gateway", "{}\n", "no_such_field: 1\n", &[]);
}

#[test]
fn reload_without_config_file_reapplies_defaults() {
    testkit::check_reload_without_config(BIN, "metrics_gateway", &[]);
}
