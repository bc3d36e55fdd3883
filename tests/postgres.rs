//! The daemon on the PostgreSQL store (`--store postgres://…`), end to end: the built
//! binary, a database of its own on the test server (`$SUNDIAL_TEST_POSTGRES`, which
//! `scripts/test.sh` starts), real processes, real HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::postgres::stored_runs;
use sundial::store::pg::testing::TestDatabase;

use crate::support::daemon::{
    assert_each_second_once, manifest, slots_of, wait_for_wall_time, wait_until, Daemon, GitRepo,
};
use crate::support::sundial;

/// A 1-second schedule runs on PostgreSQL, and its runs show in `/api/runs` as they are
/// in the database (nothing goes to a SQLite file). After kill -9 and a restart no slot
/// has two rows, and none vanished: the unique key holds across the restart.
#[test]
fn a_daemon_on_postgres_runs_each_slot_once_through_a_kill_9() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    repo.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", "echo tick", "interval: 1", "")),
        )],
        "tick",
    );
    let mut daemon = Daemon::start_with(repo.path(), &["--store", &db.url]);
    wait_until(Duration::from_secs(30), "three completed runs", || {
        let runs = daemon.runs("tick");
        (runs.iter().filter(|r| r["state"] == "Completed").count() >= 3).then_some(())
    });
    assert!(
        !daemon.state_dir.join("state.db").exists(),
        "the SQLite file was made beside --store"
    );
    let log = daemon.log();
    let named = db
        .url
        .replace("postgres://postgres@", "runs in postgres://postgres@");
    assert!(log.contains(&named), "{log}");
    daemon.kill_9();
    wait_for_wall_time(chrono::Utc::now() + chrono::Duration::seconds(3));
    daemon.restart();
    let restarted_at = chrono::Utc::now();
    wait_until(Duration::from_secs(30), "a run after the restart", || {
        let runs = daemon.runs("tick");
        let after = slots_of(&runs)
            .into_iter()
            .zip(&runs)
            .any(|(slot, r)| slot > restarted_at && r["state"] == "Completed");
        after.then_some(())
    });
    let runs = daemon.runs("tick");
    let slots = slots_of(&runs);
    assert_each_second_once(&slots);
    assert!(
        runs.iter()
            .any(|r| r["state"] == "Skipped" && r["reason"] == "missed"),
        "the downtime's slots are Skipped/missed rows: {runs:?}"
    );
    // The API answers from the database: every row there (read first) is listed.
    let stored: BTreeSet<i64> = stored_runs(&db.url, "tick").iter().map(|r| r.id).collect();
    let listed: BTreeSet<i64> = daemon
        .runs("tick")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(stored.len() >= slots.len(), "{stored:?}");
    assert!(stored.is_subset(&listed), "{stored:?} {listed:?}");
}

/// A `--store` sundial cannot use stops the start with exit code 2 and a message naming
/// the flag and what to do, never the password.
#[test]
fn a_store_that_cannot_be_used_stops_the_start_naming_the_flag() {
    let repo = GitRepo::new();
    let state = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (store, says) in [
        ("mysql://u:hunter2@h/db", "is not a store sundial knows"),
        (
            &format!("postgres://u:hunter2@127.0.0.1:{closed}/db") as &str,
            "cannot reach the PostgreSQL database postgres://u@127.0.0.1",
        ),
        (
            "postgres://u:hunter2@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert /nonexistent/ca.pem: cannot read it",
        ),
    ] {
        let out = sundial()
            .args(["daemon", "--listen", "127.0.0.1:0", "--repo"])
            .arg(repo.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(["--store", store])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--store") && stderr.contains(says),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// The cluster's flags on a daemon alone (SQLite), or a label no node could carry, stop
/// the start with exit code 2 and a message naming the flag and what to do.
#[test]
fn cluster_flags_without_a_cluster_or_a_bad_label_stop_the_start_naming_the_flag() {
    let repo = GitRepo::new();
    let state = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (&["--node", "a"][..], "--node: a node name is for a cluster"),
        (
            &["--capacity", "2"],
            "--capacity: the runs a node takes are for a cluster",
        ),
        (
            &["--label", "gpu=true"],
            "--label: labels choose among the nodes of a cluster",
        ),
        (&["--label", "gpu"], "--label: \"gpu\" is not KEY=VALUE"),
    ] {
        let out = sundial()
            .args(["daemon", "--listen", "127.0.0.1:0", "--repo"])
            .arg(repo.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}
