//! `sundial explain DEPLOYMENT [--at T | --from T --to T]`: what happened at each slot
//! of a deployment, and why (ran, skipped and for what reason, refused, still to come,
//! before it was deployed, not in force), from the daemon's run ledger.

use super::table::{local_time, Table};
use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::percent_encode;
use crate::api::types::ExplanationJson;

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The deployment's name (see `sundial deployments`).
    #[arg(value_name = "DEPLOYMENT")]
    pub deployment: String,
    /// One instant: RFC 3339, or a wall time in the zone of its first schedule
    /// (`2026-03-29T02:30`).
    #[arg(long, value_name = "T", conflicts_with_all = ["from", "to"])]
    pub at: Option<String>,
    /// The start of a range (default: a day before --to).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// The end of a range (default: now).
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &ExplainArgs) -> Result<(), ClientError> {
    let mut path = format!(
        "/api/deployments/{}/explain?",
        percent_encode(&args.deployment)
    );
    for (key, value) in [("at", &args.at), ("from", &args.from), ("to", &args.to)] {
        if let Some(v) = value {
            path.push_str(&format!("{key}={}&", percent_encode(v)));
        }
    }
    let found: ExplanationJson =
        Client::new(&args.client).get(path.trim_end_matches(['?', '&']))?;
    if args.client.format == Format::Json {
        return print_json(&found);
    }
    for note in &found.notes {
        println!("note: {note}");
    }
    if let Some(none) = &found.no_slot {
        println!("No slot there: {}.", none.why);
        println!("  nearest before: {}", local_time(none.before.as_deref()));
        println!("  nearest after:  {}", local_time(none.after.as_deref()));
        return Ok(());
    }
    if found.slots.is_empty() {
        println!("No slots in that range.");
        return Ok(());
    }
    let mut table = Table::new(&["SLOT", "WHAT", "RUN", "WHY"]);
    let several = found
        .slots
        .iter()
        .any(|s| s.schedule != found.slots[0].schedule);
    for s in &found.slots {
        let why = if several {
            format!("{} [{}]", s.why, s.schedule)
        } else {
            s.why.clone()
        };
        table.row(vec![
            local_time(Some(&s.at)),
            s.what.replace('_', " "),
            s.run_id.map_or("-".into(), |id| id.to_string()),
            why,
        ]);
    }
    if !several {
        println!("{}: {}", found.deployment, found.slots[0].schedule);
    }
    table.print();
    if found.truncated {
        println!("(only the first 1000 slots are listed: narrow the range)");
    }
    Ok(())
}
