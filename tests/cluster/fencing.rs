//! A leader stopped past its lease starts and writes nothing when it wakes: neither new
//! slots under its old epoch nor a run it had armed before the stop.

use crate::support::postgres::stored_runs;

use super::{
    assert_no_slot_started_twice, cluster, completed_after, node, node_with, stamping, stamps,
    wait_leads,
};
use crate::support::daemon::{assert_each_second_once, slots_of, wait_until, GitRepo};
use chrono::Utc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use sundial::store::pg::testing::TestDatabase;

/// A leader stopped (SIGSTOP) for 30 s, longer than its lease, then continued: a standby leads
/// meanwhile, and nothing runs or is written under the old leader's epoch once it wakes;
/// it stands by (and runs what the new leader dispatches). No slot runs twice.
#[test]
fn a_leader_paused_past_its_lease_starts_nothing_when_it_wakes() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    stamping(&repo, &stamps_path);
    let a = node(&repo, &db.url, "a");
    let epoch_a = wait_leads(&a, Duration::from_secs(20));
    let b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    let since = Utc::now();
    wait_until(Duration::from_secs(20), "two runs by a", || {
        (completed_after(&a, since) >= 2).then_some(())
    });

    let pid = Pid::from_raw(a.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    let epoch_b = wait_leads(&b, Duration::from_secs(20));
    println!("takeover from a stopped leader: {:?}", stopped.elapsed());
    assert!(epoch_b > epoch_a);
    // The 30 s: past the lease (5 s here) and the node-lost time (10 s), so
    // a's runs are settled by b, and 30 slots of b's run while a sleeps.
    wait_until(Duration::from_secs(40), "a to be stopped for 30 s", || {
        (stopped.elapsed() > Duration::from_secs(30)).then_some(())
    });
    kill(pid, Signal::SIGCONT).unwrap();
    let woke = Utc::now();
    wait_until(Duration::from_secs(20), "a to stand by", || {
        let c = cluster(&a);
        (c["role"] == "standby" && c["leader"] == "b").then_some(())
    });
    // Two more runs by b after the wake, then look at everything.
    wait_until(
        Duration::from_secs(20),
        "two runs by b after the wake",
        || (completed_after(&b, woke) >= 2).then_some(()),
    );
    // Once awake, a may run what b dispatches (it is a node like any other), never
    // anything of its own old epoch.
    for (node, epoch, slot, started) in stamps(&stamps_path) {
        if epoch == epoch_a {
            assert!(
                started < woke,
                "slot {slot} of a's epoch started at {started} on {node}, after a woke at {woke}"
            );
        }
    }
    assert_no_slot_started_twice(&stamps_path);
    let runs = b.runs("tick");
    assert_each_second_once(&slots_of(&runs));
    // Nothing was written under a's old epoch once it woke, in any state.
    let stored = stored_runs(&db.url, "tick");
    assert!(
        stored.iter().any(|r| r.epoch == Some(epoch_a)),
        "no run of a: {stored:?}"
    );
    for r in &stored {
        if r.epoch == Some(epoch_a) {
            assert!(r.created_at < woke, "a wrote a run after it woke: {r:?}");
        }
    }
    let log = a.log();
    assert!(log.contains("stands by now"), "{log}");
}

/// A run armed before its leader paused (its row committed, its Python interpreter
/// started ahead with `prestart_seconds`) is never released after the leader wakes past
/// its lease: the launch thread checks at the instant of the start that the node still
/// leads. The row keeps the settlement of the new leader (`node_lost`).
#[test]
fn a_run_armed_before_the_leader_paused_is_not_started_after_it_wakes() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let module = format!(
        "import os\nOUT = {out:?}\nopen(os.path.join(OUT, 'imported'), 'w').write('1')\n\ndef run():\n    open(os.path.join(OUT, 'called'), 'w').write('1')\n",
        out = out.display().to_string()
    );
    let slot = Utc::now() + chrono::Duration::seconds(10);
    let slot = slot - chrono::Duration::nanoseconds(slot.timestamp_subsec_nanos().into());
    let text = format!(
        "deployments:\n- name: early\n  entrypoint: flows/early.py:run\n  work_pool:\n    job_variables:\n      prestart_seconds: 6\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    repo.commit(
        &[
            ("flows/early.py", Some(&module)),
            ("prefect.yaml", Some(&text)),
        ],
        "one slot, prestarted",
    );
    let a = node(&repo, &db.url, "a");
    wait_leads(&a, Duration::from_secs(20));
    // b runs nothing itself: the slot is a's.
    let b = node_with(&repo, &db.url, "b", &["--capacity", "0"]);
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    wait_until(
        Duration::from_secs(20),
        "the interpreter to start ahead",
        || out.join("imported").exists().then_some(()),
    );
    let pid = Pid::from_raw(a.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    wait_leads(&b, Duration::from_secs(20));
    // Past the slot, and past the node-lost time: b settles the run as lost.
    wait_until(
        Duration::from_secs(40),
        "b to settle the run as lost",
        || {
            let runs = b.runs("early");
            (Utc::now() > slot + chrono::Duration::seconds(1)
                && runs.len() == 1
                && runs[0]["reason"] == "node_lost")
                .then_some(())
        },
    );
    println!("settled as lost {:?} after the stop", stopped.elapsed());
    kill(pid, Signal::SIGCONT).unwrap();
    wait_until(
        Duration::from_secs(20),
        "a to refuse the late start",
        || {
            a.log()
                .contains("this node lost the database before the run's time")
                .then_some(())
        },
    );
    assert!(
        !out.join("called").exists(),
        "the function ran after its leader woke"
    );
    let runs = b.runs("early");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "Crashed", "{runs:?}");
    assert_eq!(runs[0]["reason"], "node_lost", "{runs:?}\n{}", b.log());
}
