//! `metrics-gateway`: see the library's documentation for what it does.

use std::process::ExitCode;

use clap::Parser;
use metrics_gateway::{run, Args, INFO};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(cmd) = &args.command {
        return metrics_gateway::rules::run_command(cmd);
    }
    common::telemetry::init_tracing(&args.common);
    let grace = args.common.grace_period;
    common::lifecycle::block_on_main(INFO.name, grace, move |lifecycle| async move {
        run(args, lifecycle).await.map_err(Into::into)
    })
}
