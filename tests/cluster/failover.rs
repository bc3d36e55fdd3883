//! A standby takes over: after kill -9 and a graceful stop of the leader, through a
//! database outage; and one daemon per node name.

use super::{
    assert_no_slot_started_twice, cluster, completed_after, node, stamping, stamps, wait_leads,
    LEASE,
};
use crate::support::daemon::{assert_each_second_once, manifest, slots_of, wait_until, GitRepo};
use crate::support::postgres::PrivateServer;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use sundial::store::pg::testing::TestDatabase;

/// kill -9 of the leader under a 1-second schedule: the standby takes over within the
/// lease plus a renew, no slot has two rows or was started twice, the gap is recorded
/// (each second has its row), and the runs after the takeover carry the new node and a
/// higher epoch. Then a graceful stop of the new leader hands over within about a renew.
#[test]
fn a_leader_killed_is_replaced_within_its_lease_and_no_slot_runs_twice() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    stamping(&repo, &stamps_path);
    let mut a = node(&repo, &db.url, "a");
    let epoch_a = wait_leads(&a, Duration::from_secs(20));
    let mut b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        let c = cluster(&b);
        (c["role"] == "standby" && c["leader"] == "a").then_some(())
    });
    // Its dashboard says who leads.
    let (code, page) = b.get("/");
    assert_eq!(code, 200);
    assert!(
        page.contains("standby; <code>a</code> leads (epoch"),
        "{page}"
    );
    // A standby takes no resume: it names the leader.
    let (code, body) = b.post("/api/deployments/tick/resume", "", Some(&b.token()));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("node a leads"), "{body}");
    let since = Utc::now();
    wait_until(Duration::from_secs(20), "three runs by a", || {
        (completed_after(&a, since) >= 3).then_some(())
    });

    a.kill_9();
    let killed = Instant::now();
    let epoch_b = wait_leads(&b, Duration::from_secs(20));
    let takeover = killed.elapsed();
    println!("takeover after kill -9: {takeover:?} (lease {LEASE:?})");
    assert!(epoch_b > epoch_a, "{epoch_b} after {epoch_a}");
    // The lease, the standby's next try (≤ 0.6 s), and room for a loaded machine.
    assert!(takeover < LEASE + Duration::from_secs(4), "{takeover:?}");
    let led_at = Utc::now();
    wait_until(Duration::from_secs(20), "two runs by b", || {
        (completed_after(&b, led_at) >= 2).then_some(())
    });
    let runs = b.runs("tick");
    assert_each_second_once(&slots_of(&runs));
    for r in runs.iter().filter(|r| r["state"] == "Completed") {
        let slot: DateTime<Utc> = r["scheduled_for"].as_str().unwrap().parse().unwrap();
        if slot > led_at {
            assert_eq!(r["node"], "b", "{r}");
            assert_eq!(r["epoch"], epoch_b, "{r}");
        }
    }
    // Every process ran on a node of the cluster, under the epoch of the leader that
    // dispatched it: a's before the kill, b's after.
    for (node, epoch, slot, _) in stamps(&stamps_path) {
        assert!(node == "a" || node == "b", "a stamp of node {node:?}");
        assert!(
            epoch == epoch_a || epoch == epoch_b,
            "{slot}: epoch {epoch}"
        );
        if slot > led_at {
            assert_eq!((node.as_str(), epoch), ("b", epoch_b), "{slot}");
        }
    }

    // A graceful stop hands the lease over at once.
    a.restart();
    wait_until(Duration::from_secs(20), "a back as a standby", || {
        (cluster(&a)["role"] == "standby").then_some(())
    });
    let stopping = Instant::now();
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
    let epoch_a2 = wait_leads(&a, Duration::from_secs(20));
    let handover = stopping.elapsed();
    println!("takeover after SIGTERM: {handover:?}");
    assert!(epoch_a2 > epoch_b);
    // About a renew (0.5 s here); the bound leaves room for a loaded machine, and
    // benches/cluster.py measures the figure.
    assert!(handover < Duration::from_secs(6), "{handover:?}");
    let led_at = Utc::now();
    wait_until(Duration::from_secs(20), "two runs by a again", || {
        (completed_after(&a, led_at) >= 2).then_some(())
    });
    assert_each_second_once(&slots_of(&a.runs("tick")));
    assert_no_slot_started_twice(&stamps_path);
}

/// The database goes away for longer than the lease, then comes back: the daemon does not
/// exit, the status says what is wrong meanwhile, it stops leading, then leads again at a
/// new epoch and plans its schedules anew, and every second of the schedule has one row
/// (the outage's slots follow the catch-up rule). One node, so that it is the one that
/// comes back to lead.
#[test]
fn a_database_outage_stops_no_daemon_and_no_slot_is_lost_or_doubled() {
    let server = PrivateServer::start();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    stamping(&repo, &stamps_path);
    let mut a = node(&repo, &server.url, "a");
    let epoch = wait_leads(&a, Duration::from_secs(20));
    let since = Utc::now();
    wait_until(Duration::from_secs(20), "two runs", || {
        (completed_after(&a, since) >= 2).then_some(())
    });

    server.down();
    let down = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "a to say the store is unreachable",
        || {
            let (code, body) = a.get("/api/status");
            (code == 200 && body.contains("cannot reach the PostgreSQL database")).then_some(())
        },
    );
    wait_until(Duration::from_secs(20), "a to stop leading", || {
        (cluster(&a)["role"] == "standby").then_some(())
    });
    wait_until(
        Duration::from_secs(20),
        "an outage longer than the lease",
        || (down.elapsed() > LEASE + Duration::from_secs(1)).then_some(()),
    );
    server.up();
    let back = Utc::now();
    let leader = wait_leads(&a, Duration::from_secs(30));
    assert!(leader > epoch, "{leader} after {epoch}");
    // The API's connection from before the outage is replaced when it is next used: the
    // first read after the outage answers.
    let (code, body) = a.get("/api/runs?deployment=tick&limit=1");
    assert_eq!(code, 200, "{body}");
    wait_until(Duration::from_secs(30), "two runs after the outage", || {
        (completed_after(&a, back) >= 2).then_some(())
    });
    wait_until(Duration::from_secs(20), "the status to clear", || {
        (a.get("/api/status").1.contains("\"store_error\":null")).then_some(())
    });
    assert_eq!(a.exited(), None, "a exited: {}", a.log());
    assert_each_second_once(&slots_of(&a.runs("tick")));
    assert_no_slot_started_twice(&stamps_path);
}

/// Two daemons may not share a node name: the second (another state directory) stops at
/// start, naming the flag; the first leads on.
#[test]
fn a_second_daemon_under_a_node_name_in_use_is_refused_naming_the_flag() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    repo.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", "true", "interval: 60", "")),
        )],
        "tick",
    );
    let a = node(&repo, &db.url, "a");
    wait_leads(&a, Duration::from_secs(20));
    let state = tempfile::tempdir().unwrap();
    let out = crate::support::sundial()
        .args(["daemon", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--store", &db.url, "--node", "a"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the node name a is in use") && stderr.contains("--node"),
        "{stderr}"
    );
    assert_eq!(cluster(&a)["role"], "leader");
}
