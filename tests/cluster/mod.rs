//! Several daemons on one PostgreSQL store (`--store postgres://… --node NAME`): one
//! leads, the others stand by and take over. Each node has its own state directory and
//! port and the same repository; real processes, real HTTP, a database of its own on the
//! test server. Timings are halved (`SUNDIAL_CLUSTER_TIMINGS=scale=0.5`: a 5 s lease,
//! given up 3 s after the last renew sent, nodes lost after 10 s).
//!
//! `failover`: a standby takes over (kill -9, graceful stop, a database outage, one name
//! per daemon). `fencing`: a leader that lost its lease starts and writes nothing.
//! `nodes`: runs spread over the nodes, lost nodes, a node cut off, limits across nodes.
//! `placement`: which node runs what (labels, the commit a node has) and a cancel
//! reaching the node that runs the run.

mod failover;
mod fencing;
mod nodes;
mod placement;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::support::daemon::{manifest, slots_of, wait_until, Daemon, GitRepo, Setup};

/// The scale of the timings under test, and the lease it makes.
const SCALE: &str = "scale=0.5";
const LEASE: Duration = Duration::from_secs(5);

/// Starts node `name` of the cluster on the database at `store`, ready (it serves its
/// API, leading or not).
fn node(repo: &GitRepo, store: &str, name: &str) -> Daemon {
    node_with(repo, store, name, &[])
}

/// [`node`] with extra flags (e.g. `--capacity`).
fn node_with(repo: &GitRepo, store: &str, name: &str, extra: &[&str]) -> Daemon {
    node_at(repo.path(), store, name, extra)
}

/// [`node_with`] on the repository at `repo` (a node's own clone).
fn node_at(repo: &std::path::Path, store: &str, name: &str, extra: &[&str]) -> Daemon {
    Daemon::launch(
        repo,
        Setup {
            extra: ["--store", store, "--node", name]
                .iter()
                .chain(extra)
                .map(|a| a.to_string())
                .collect(),
            env: vec![("SUNDIAL_CLUSTER_TIMINGS".into(), SCALE.into())],
            ..Setup::default()
        },
    )
}

/// The node's view of the cluster (`/api/status`'s `cluster`).
fn cluster(daemon: &Daemon) -> Value {
    let (code, body) = daemon.get("/api/status");
    if code != 200 {
        let log = daemon.log();
        let from = (log.len().saturating_sub(4000)..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(0);
        let tail = &log[from..];
        panic!("/api/status answered {code}: {body}\nthe node's log ends:\n{tail}");
    }
    serde_json::from_str::<Value>(&body).unwrap()["cluster"].clone()
}

/// Waits until `daemon` leads; returns its epoch.
#[track_caller]
fn wait_leads(daemon: &Daemon, within: Duration) -> i64 {
    wait_until(within, "the node to lead", || {
        let c = cluster(daemon);
        (c["role"] == "leader").then(|| c["epoch"].as_i64().unwrap())
    })
}

/// A 1-second schedule whose every process appends
/// `node epoch slot start-time` to `stamps`.
fn stamping(repo: &GitRepo, stamps: &std::path::Path) {
    let command = format!(
        "sh -c 'echo \"$SUNDIAL_NODE $SUNDIAL_LEADER_EPOCH $SUNDIAL_SCHEDULED_FOR $(date +%s.%N)\" >> {}'",
        stamps.display()
    );
    repo.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", &command, "interval: 1", "")),
        )],
        "tick",
    );
}

/// Every stamp: (node, epoch, slot, start time).
fn stamps(path: &std::path::Path) -> Vec<(String, i64, DateTime<Utc>, DateTime<Utc>)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 4, "a stamp line: {line:?}");
            let secs: f64 = f[3].parse().unwrap();
            let started = DateTime::from_timestamp_micros((secs * 1e6) as i64).unwrap();
            let slot = DateTime::parse_from_rfc3339(f[2]).unwrap().to_utc();
            (f[0].to_string(), f[1].parse().unwrap(), slot, started)
        })
        .collect()
}

/// No slot was started twice, by whichever node.
#[track_caller]
fn assert_no_slot_started_twice(path: &std::path::Path) {
    let mut seen: BTreeMap<DateTime<Utc>, String> = BTreeMap::new();
    for (node, epoch, slot, _) in stamps(path) {
        if let Some(first) = seen.insert(slot, format!("{node}@{epoch}")) {
            panic!("slot {slot} started twice: by {first} and by {node}@{epoch}");
        }
    }
}

/// The slots of the runs completed after `after` (each node sees the same database);
/// none while the API cannot read the database.
fn completed_after(daemon: &Daemon, after: DateTime<Utc>) -> usize {
    let (code, body) = daemon.get("/api/runs?deployment=tick&limit=1000");
    if code != 200 {
        return 0;
    }
    let runs: Vec<Value> = serde_json::from_str(&body).unwrap();
    slots_of(&runs)
        .into_iter()
        .zip(&runs)
        .filter(|(slot, r)| *slot > after && r["state"] == "Completed")
        .count()
}
