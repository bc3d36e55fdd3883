//! The command line: one file per subcommand; exit codes are decided here and nowhere else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sundial: run git-committed prefect.yaml deployments as local processes, on time.
#[derive(Debug, Parser)]
#[command(name = "sundial", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs a parsed command line and returns the process exit code.
pub fn run(args: Args) -> ExitCode {
    match args.command {}
}
