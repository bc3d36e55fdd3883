//! `sundial runs`: run history, newest first.

use super::table::{duration, local_time, Table};
use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::percent_encode;
use crate::api::types::{DeploymentJson, RunJson};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only this deployment's runs.
    #[arg(long, value_name = "D")]
    pub deployment: Option<String>,
    /// Only runs in this state (Completed, Failed, Running, Skipped, ...).
    #[arg(long, value_name = "S")]
    pub state: Option<String>,
    /// How many runs to show (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &RunsArgs) -> Result<(), ClientError> {
    let mut path = format!("/api/runs?limit={}", args.limit);
    if let Some(d) = &args.deployment {
        path.push_str(&format!("&deployment={}", percent_encode(d)));
    }
    if let Some(s) = &args.state {
        path.push_str(&format!("&state={}", percent_encode(s)));
    }
    let found: Vec<RunJson> = Client::new(&args.client).get(&path)?;
    if args.client.format == Format::Json {
        return print_json(&found);
    }
    if found.is_empty() {
        if let Some(name) = &args.deployment {
            // No runs can mean a typo: say so when no deployment has that name.
            let deployments: Vec<DeploymentJson> =
                Client::new(&args.client).get("/api/deployments")?;
            if !deployments.iter().any(|d| &d.name == name) {
                let closest = deployments
                    .iter()
                    .map(|d| (strsim::jaro_winkler(name, &d.name), &d.name))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                let hint = match closest {
                    Some((_, near)) => format!("; did you mean `{near}`?"),
                    None => "; `sundial deployments` lists them".into(),
                };
                return Err(ClientError::Api(format!(
                    "no runs, and no deployment is named `{name}`{hint}"
                )));
            }
            println!("No runs of {name} yet.");
            return Ok(());
        }
        println!("No runs.");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "DEPLOYMENT", "STATE", "CAUSE", "STARTED", "TOOK"]);
    for r in &found {
        let mut state = r.state.clone();
        if let Some(reason) = r.reason.as_deref().filter(|_| r.started_at.is_none()) {
            state.push_str(&format!(" ({reason})"));
        }
        table.row(vec![
            r.id.to_string(),
            r.deployment.clone(),
            state,
            match r.retry_of {
                Some(of) => format!("retry of {of}"),
                None => r.trigger.clone(),
            },
            local_time(r.started_at.as_deref().or(r.scheduled_for.as_deref())),
            duration(r.started_at.as_deref(), r.ended_at.as_deref()),
        ]);
    }
    table.print();
    Ok(())
}
