//! The shared runtime, on the real `log-shipper` process: SIGHUP reload (bad config kept
//! out), reload without a config file, SIGTERM drain.

use common::testkit;

const BIN: &str = env!("CARGO_BIN_EXE_log-shipper");

#[test]
fn reloads_on_sighup_keeps_old_config_on_error_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    testkit::check_lifecycle(
        BIN,
        "log_shipper",
        "{}\n",
        "no_such_field: 1\n",
        &["--data-dir", data],
    );
}

#[test]
fn reload_without_config_file_reapplies_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    testkit::check_reload_without_config(BIN, "log_shipper", &["--data-dir", data]);
}
