//! `job-manager`: see the library's documentation for what it does.

use std::process::ExitCode;

use clap::Parser;
use job_manager::{cli::Cli, run, INFO};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return job_manager::cli::run(command);
    }
    let args = cli.serve;
    common::telemetry::init_tracing(&args.common);
    let grace = args.common.grace_period;
    common::lifecycle::block_on_main(INFO.name, grace, move |lifecycle| async move {
        run(args, lifecycle).await.map_err(Into::into)
    })
}
