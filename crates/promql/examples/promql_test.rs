//! Runs Prometheus `.test` files: `cargo run -p promql-engine --example promql_test -- FILE...`.

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let verbose = std::env::var_os("VERBOSE").is_some();
    let tot = promql_engine::promqltest::run_files(&files, &mut std::io::stdout(), verbose);
    std::process::exit(if tot.failed > 0 { 1 } else { 0 });
}
