//! The shared runtime, on the real `job-manager` process: SIGHUP reload (bad config kept
//! out), reload without a config file, SIGTERM drain.

use common::testkit;

const BIN: &str = env!("CARGO_BIN_EXE_job-manager");

#[test]
fn reloads_on_sighup_keeps_old_config_on_error_and_drains_on_sigterm() {
    let dir = testkit::tempfile_dir();
    let data = dir.join("data");
    testkit::check_lifecycle(
        BIN,
        "job_manager",
        "controller:\n  poll_interval: 1s\n",
        "no_such_field: 1\n",
        &["--data-dir", data.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reload_without_config_file_reapplies_defaults() {
    let dir = testkit::tempfile_dir();
    let data = dir.join("data");
    testkit::check_reload_without_config(
        BIN,
        "job_manager",
        &["--data-dir", data.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(dir);
}
