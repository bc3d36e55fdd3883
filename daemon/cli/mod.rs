//! The command line: one file per subcommand; exit codes are decided here and nowhere else.

pub mod next;

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
pub enum Command {
    /// Preview the next fire times of a cron, interval or rrule schedule.
    Next(next::NextArgs),
}

/// Bad input: a flag's value could not be used (clap's own usage errors are also 2).
const EXIT_BAD_INPUT: u8 = 2;

/// Runs a parsed command line and returns the process exit code. Errors are printed here,
/// once.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Next(next_args) => {
            let stdout = std::io::stdout();
            match next::run(next_args, &mut stdout.lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(EXIT_BAD_INPUT)
                }
            }
        }
    }
}
