//! `sundial resume DEPLOYMENT`: end a pause after failures (`pause_after_failures`), so
//! the deployment's next slots run again.

use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::types::DeploymentJson;

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The deployment's name (see `sundial deployments`).
    #[arg(value_name = "DEPLOYMENT")]
    pub deployment: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &ResumeArgs) -> Result<(), ClientError> {
    let path = format!(
        "/api/deployments/{}/resume",
        crate::api::percent_encode(&args.deployment)
    );
    let deployment: DeploymentJson =
        Client::new(&args.client).post(&path, &serde_json::json!({}))?;
    if args.client.format == Format::Json {
        return print_json(&deployment);
    }
    let next = deployment.next.as_deref().unwrap_or("nothing scheduled");
    println!(
        "Resumed {}: its schedules run again (next: {next}).",
        deployment.name
    );
    Ok(())
}
