//! The `sundial` binary: parse the arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = sundial::cli::Args::parse();
    sundial::cli::run(args)
}
