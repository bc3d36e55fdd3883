//! `sundial breaches [--deployment D]`: SLA breaches, newest first.

use super::table::{local_time, Table};
use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::percent_encode;
use crate::api::types::BreachJson;

#[derive(Debug, clap::Args)]
pub struct BreachesArgs {
    /// Only this deployment's breaches.
    #[arg(long, value_name = "D")]
    pub deployment: Option<String>,
    /// How many to show (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &BreachesArgs) -> Result<(), ClientError> {
    let mut path = format!("/api/breaches?limit={}", args.limit);
    if let Some(d) = &args.deployment {
        path.push_str(&format!("&deployment={}", percent_encode(d)));
    }
    let found: Vec<BreachJson> = Client::new(&args.client).get(&path)?;
    if args.client.format == Format::Json {
        return print_json(&found);
    }
    if found.is_empty() {
        println!("No SLA breaches.");
        return Ok(());
    }
    let mut table = Table::new(&["WHEN", "DEPLOYMENT", "SLA", "SEVERITY", "WHAT"]);
    for b in &found {
        table.row(vec![
            local_time(Some(&b.at)),
            b.deployment.clone(),
            format!("{} ({})", b.sla, b.kind),
            b.severity.clone(),
            b.detail.clone(),
        ]);
    }
    table.print();
    Ok(())
}
