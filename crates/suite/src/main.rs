//! `flink-suite`: all four components in one process.

use std::process::ExitCode;

use clap::Parser;
use suite::{run, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    common::telemetry::init_tracing(&args.common());
    let grace = args.grace_period;
    common::lifecycle::block_on_main("flink-suite", grace, move |lifecycle| run(args, lifecycle))
}
