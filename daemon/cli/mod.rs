//! The command line: one file per subcommand; exit codes are decided here and nowhere else.
//! A subcommand returns its exit code or an error; an error is printed once, here, and
//! means exit 2 (usage, input or I/O problem), as DESIGN.md's command table says; the
//! client commands also exit 1 when the daemon's API refuses or cannot be reached.

mod client;
mod daemon;
mod next;
mod schema;
mod state_lock;
mod validate;

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
    /// Check manifests against the schema and sundial's rules; reports every problem.
    Validate(validate::ValidateArgs),
    /// Preview the next fire times of a cron, interval or rrule schedule, or of a manifest's.
    Next(next::NextArgs),
    /// Print the manifest JSON Schema.
    Schema,
    /// Run the scheduler daemon in the foreground.
    Daemon(daemon::DaemonArgs),
    /// Show what a running daemon applied and what is wrong (exit 1 when something is).
    Status(client::status::StatusArgs),
    /// List the deployments a running daemon has in force.
    Deployments(client::deployments::DeploymentsArgs),
    /// List a running daemon's runs, newest first.
    Runs(client::runs::RunsArgs),
    /// Print a run's log.
    Logs(client::logs::LogsArgs),
    /// Run a deployment now.
    Trigger(client::trigger::TriggerArgs),
    /// Cancel a run.
    Cancel(client::cancel::CancelArgs),
    /// Resume a deployment paused after failures.
    Resume(client::resume::ResumeArgs),
    /// Say what happened at a deployment's slots, and why ("why didn't it run?").
    Explain(client::explain::ExplainArgs),
    /// List SLA breaches, newest first.
    Breaches(client::breaches::BreachesArgs),
}

/// `--manifests GLOB`, shared by the commands that discover manifests.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ManifestGlobs {
    /// Which files are manifests, replacing the default (`prefect.yaml` anywhere and
    /// `deployments/**`); repeatable, or comma-separated in the variable; `*` stays in a
    /// directory, `**` crosses them.
    #[arg(
        long = "manifests",
        value_name = "GLOB",
        env = "SUNDIAL_MANIFESTS",
        value_delimiter = ','
    )]
    pub globs: Vec<String>,
}

impl ManifestGlobs {
    pub fn discovery(&self) -> anyhow::Result<crate::manifest::discover::Discovery> {
        crate::manifest::discover::Discovery::new(&self.globs).map_err(|e| {
            anyhow::anyhow!("--manifests: {e}; write a glob such as `deployments/**/*.yaml`")
        })
    }
}

/// `--max-file-size BYTES`, shared by the commands that read manifests.
#[derive(Debug, Clone, clap::Args)]
pub struct MaxFileSize {
    /// Manifests larger than this are reported as errors without being read: bytes, or a
    /// whole number with K, M or G (binary units).
    #[arg(
        long = "max-file-size",
        value_name = "BYTES",
        env = "SUNDIAL_MAX_FILE_SIZE",
        default_value = "4MiB",
        value_parser = crate::manifest::limits::parse_size
    )]
    pub bytes: u64,
}

/// Bad input: a flag's value or a file could not be used (clap's usage errors are also 2).
const EXIT_BAD_INPUT: u8 = 2;

/// Runs a parsed command line and returns the process exit code.
pub fn run(args: Args) -> ExitCode {
    let outcome = match args.command {
        Command::Validate(a) => validate::run(&a),
        Command::Next(a) => next::run(a, &mut std::io::stdout().lock()).map(|()| ExitCode::SUCCESS),
        Command::Schema => schema::run(),
        Command::Daemon(a) => daemon::run(&a),
        Command::Status(a) => match client::status::run(&a) {
            Ok(true) => Ok(ExitCode::SUCCESS),
            Ok(false) => Ok(ExitCode::FAILURE),
            Err(e) => client::finish(Err(e)),
        },
        Command::Deployments(a) => client::finish(client::deployments::run(&a)),
        Command::Runs(a) => client::finish(client::runs::run(&a)),
        Command::Logs(a) => client::finish(client::logs::run(&a)),
        Command::Trigger(a) => client::finish(client::trigger::run(&a)),
        Command::Cancel(a) => client::finish(client::cancel::run(&a)),
        Command::Resume(a) => client::finish(client::resume::run(&a)),
        Command::Explain(a) => client::finish(client::explain::run(&a)),
        Command::Breaches(a) => client::finish(client::breaches::run(&a)),
    };
    match outcome {
        Ok(code) => code,
        // Not bad input: the command was right, the directory is taken (exit 1).
        Err(e) if e.downcast_ref::<state_lock::InUse>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
