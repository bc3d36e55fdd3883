//! `sundial status`: what a running daemon has applied and what is wrong, in one screen —
//! the commit in force, every error (file:line:column) and warning of it, the repository
//! (read and fetch), the state database and the clock, and the next fires. Exit 0 when nothing is wrong, 1 when
//! something is (an error of the commit, a full disk, a clock stepped back), so scripts
//! and health checks can use it.

use super::table::local_time;
use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::types::{DeploymentJson, StatusJson};
use crate::store::FileError;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Prints the status; `Ok(false)` when something is wrong.
pub fn run(args: &StatusArgs) -> Result<bool, ClientError> {
    let client = Client::new(&args.client);
    let status: StatusJson = client.get("/api/status")?;
    let healthy = status.errors.is_empty()
        && status.source.error.is_none()
        && status.store_error.is_none()
        && status.clock_warning.is_none()
        && status.ready;
    if args.client.format == Format::Json {
        print_json(&status)?;
        return Ok(healthy);
    }
    let deployments: Vec<DeploymentJson> = client.get("/api/deployments")?;
    match (&status.commit, status.ready) {
        (Some(commit), true) => println!(
            "commit {} applied {}, {} deployment{}",
            commit.get(..7).unwrap_or(commit),
            local_time(status.synced_at.as_deref()),
            deployments.len(),
            if deployments.len() == 1 { "" } else { "s" }
        ),
        _ => println!("no commit applied yet"),
    }
    if let Some(error) = &status.source.error {
        println!(
            "repository ({}): {error}",
            status.source.kind.as_deref().unwrap_or("read")
        );
    }
    if let Some(store) = &status.store_error {
        println!("state database: {store}");
    }
    if let Some(cluster) = &status.cluster {
        println!("{}", cluster_line(cluster));
    }
    if let Some(clock) = &status.clock_warning {
        println!("clock: {clock}");
    }
    print_findings("error", &status.errors);
    print_findings("warning", &status.warnings);
    let held: Vec<&str> = deployments
        .iter()
        .filter(|d| d.held_back)
        .map(|d| d.name.as_str())
        .collect();
    if !held.is_empty() {
        println!(
            "held at their last good version (their file fails now): {}",
            held.join(", ")
        );
    }
    let mut next: Vec<(&str, &str)> = deployments
        .iter()
        .filter_map(|d| d.next.as_deref().map(|n| (n, d.name.as_str())))
        .collect();
    next.sort();
    for (at, name) in next.iter().take(5) {
        println!("next: {name} at {}", local_time(Some(at)));
    }
    Ok(healthy)
}

/// `cluster: this node (a) leads, epoch 7; nodes: a 1/8 running, b 0/8 running [gpu=true] (silent)`.
fn cluster_line(c: &crate::api::types::ClusterJson) -> String {
    let who = match (&c.leader, c.epoch) {
        (Some(leader), Some(epoch)) if c.role == "leader" => {
            format!("this node ({leader}) leads, epoch {epoch}")
        }
        (Some(leader), Some(epoch)) => {
            format!(
                "this node ({}) stands by; {leader} leads, epoch {epoch}",
                c.node
            )
        }
        _ => format!("this node ({}) stands by; no node leads now", c.node),
    };
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| {
            let mut shown = n.name.clone();
            match n.capacity {
                Some(capacity) => shown.push_str(&format!(" {}/{capacity} running", n.running)),
                None => shown.push_str(&format!(" {} running", n.running)),
            }
            if !n.labels.is_empty() {
                let labels: Vec<String> =
                    n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                shown.push_str(&format!(" [{}]", labels.join(",")));
            }
            if !n.alive {
                shown.push_str(" (silent)");
            }
            shown
        })
        .collect();
    let error = c
        .error
        .as_ref()
        .map(|e| format!("; cannot keep the lease: {e}"))
        .unwrap_or_default();
    format!("cluster: {who}; nodes: {}{error}", nodes.join(", "))
}

fn print_findings(kind: &str, findings: &[FileError]) {
    for f in findings {
        if f.line == 0 {
            println!("{kind}: {}: {}", f.file, f.message);
        } else {
            println!("{kind}: {}:{}:{}: {}", f.file, f.line, f.column, f.message);
        }
    }
}
