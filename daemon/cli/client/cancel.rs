//! `sundial cancel RUN`: stop a running run (SIGTERM to its process group, then SIGKILL
//! after the grace period) or settle a waiting one.

use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::types::RunJson;

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run's id (see `sundial runs`).
    #[arg(value_name = "RUN")]
    pub run: i64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &CancelArgs) -> Result<(), ClientError> {
    let path = format!("/api/runs/{}/cancel", args.run);
    let run: RunJson = Client::new(&args.client).post(&path, &serde_json::json!({}))?;
    if args.client.format == Format::Json {
        return print_json(&run);
    }
    if run.state == "Cancelled" {
        // It was waiting (queued or retrying): it is cancelled already.
        println!(
            "Cancelled run {} of {} (it had not started).",
            run.id, run.deployment
        );
    } else {
        println!(
            "Cancelling run {} of {} (it was {}): SIGTERM to its process group, SIGKILL after the daemon's grace.",
            run.id, run.deployment, run.state
        );
    }
    Ok(())
}
