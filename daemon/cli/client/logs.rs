//! `sundial logs RUN [--follow]`: a run's log; with `--follow`, new output as it is
//! written, until the run has ended. `--format json` prints one object, `{"run": ...,
//! "log": "..."}`, or with `--follow` one line per chunk, `{"offset": N, "text": "..."}`.

use std::io::Write;
use std::time::Duration;

use super::{Client, ClientArgs, ClientError, Format};
use crate::api::types::RunJson;
use crate::store::RunState;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run's id (see `sundial runs`).
    #[arg(value_name = "RUN")]
    pub run: i64,
    /// Keep printing new output until the run ends.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How often `--follow` asks for more (the API has no push channel for logs).
const FOLLOW_EVERY: Duration = Duration::from_millis(300);

pub fn run(args: &LogsArgs) -> Result<(), ClientError> {
    let client = Client::new(&args.client);
    let mut offset = 0usize;
    let mut out = std::io::stdout().lock();
    loop {
        // The state is read before the log, so the last read after the end sees all of it.
        let run: RunJson = client.get(&format!("/api/runs/{}", args.run))?;
        let ended = RunState::parse(&run.state).is_none_or(RunState::is_final);
        let text = client.get_text(&format!("/api/runs/{}/logs?offset={offset}", args.run))?;
        let written = match (args.client.format, args.follow) {
            (Format::Table, _) => out.write_all(text.as_bytes()),
            (Format::Json, false) => {
                let answer = serde_json::json!({"run": run, "log": text});
                writeln!(out, "{answer}")
            }
            (Format::Json, true) if text.is_empty() => Ok(()),
            (Format::Json, true) => {
                let chunk = serde_json::json!({"offset": offset, "text": text});
                writeln!(out, "{chunk}")
            }
        };
        offset += text.len();
        written
            .and_then(|()| out.flush())
            .map_err(anyhow::Error::from)?;
        if !args.follow || ended {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}
