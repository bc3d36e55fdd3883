//! `sundial deployments`: the deployments in force, their schedules, next fire time and
//! newest run.

use super::table::{local_time, Table};
use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::types::DeploymentJson;

#[derive(Debug, clap::Args)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &DeploymentsArgs) -> Result<(), ClientError> {
    let found: Vec<DeploymentJson> = Client::new(&args.client).get("/api/deployments")?;
    if args.client.format == Format::Json {
        return print_json(&found);
    }
    if found.is_empty() {
        println!("No deployments in force (see `sundial validate` and the daemon's /api/status).");
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "SCHEDULES", "NEXT", "LAST RUN"]);
    for d in &found {
        let mut name = d.name.clone();
        if d.paused {
            name.push_str(" (paused)");
        }
        if d.paused_after_failures.is_some() {
            name.push_str(" (paused after failures: `sundial resume`)");
        }
        if d.held_back {
            name.push_str(" (held back)");
        }
        let schedules: Vec<&str> = d.schedules.iter().map(|s| s.description.as_str()).collect();
        let last = d
            .last_run
            .as_ref()
            .map(|r| format!("{} {}", r.id, r.state))
            .unwrap_or_else(|| "-".into());
        table.row(vec![
            name,
            if schedules.is_empty() {
                "-".into()
            } else {
                schedules.join("; ")
            },
            local_time(d.next.as_deref()),
            last,
        ]);
    }
    table.print();
    Ok(())
}
