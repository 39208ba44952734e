//! Runs Prometheus's own PromQL test files (../shared/promql/testdata) through our runner.

use promql_engine::promqltest::run_files;

#[test]
fn prometheus_testdata_passes_everything_not_skipped() {
    let Some(shared) =
        common::testkit::shared_dir("prometheus_testdata_passes_everything_not_skipped")
    else {
        return;
    };
    let dir = shared.join("promql/testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut out = Vec::new();
    let tot = run_files(&files, &mut out, true);
    let text = String::from_utf8_lossy(&out);
    println!("{text}");
    assert_eq!(tot.failed, 0, "{text}");
    assert!(tot.passed > 500, "suspiciously few cases ran: {text}");
    // Native histograms are evaluated: no case may be skipped for reading one.
    let hist_skips: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("SKIP") && l.contains("histogram"))
        .collect();
    assert!(hist_skips.is_empty(), "{hist_skips:#?}");
    let last = text.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "{} passed, {} failed, {} skipped",
            tot.passed, tot.failed, tot.skipped
        )
    );
}
