//! `prestart_seconds`: a Python entrypoint's interpreter starts and imports its module
//! ahead of the slot, and the function is called on the dot; released only by the daemon.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sundial::store::RunState;

use crate::support::daemon::{wait_for_wall_time, wait_until, Daemon, GitRepo};
use crate::support::Project;

/// A module whose import takes half a second and stamps its time and pid, and whose
/// `run` stamps the time it is entered beside the slot it was started for.
fn slow_module(out: &std::path::Path) -> String {
    format!(
        "import os, time\nOUT = {out:?}\nopen(os.path.join(OUT, 'imported'), 'w').write('%f %d' % (time.time(), os.getpid()))\ntime.sleep(0.5)\n\ndef run():\n    open(os.path.join(OUT, 'called'), 'w').write('%f %s' % (time.time(), os.environ['SUNDIAL_SCHEDULED_FOR']))\n",
        out = out.display().to_string()
    )
}

/// One deployment of `flows/slow.py:run`, due once at `slot`, started `prestart` s ahead.
fn manifest(slot: DateTime<Utc>, prestart: u32) -> String {
    format!(
        "deployments:\n- name: early\n  entrypoint: flows/slow.py:run\n  work_pool:\n    job_variables:\n      prestart_seconds: {prestart}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn stamp(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn epoch(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn setup(prestart: u32, lead_secs: i64) -> (GitRepo, std::path::PathBuf, DateTime<Utc>) {
    let repo = GitRepo::new();
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let slot = Utc::now() + chrono::Duration::seconds(lead_secs);
    let slot = slot - chrono::Duration::nanoseconds(slot.timestamp_subsec_nanos().into());
    repo.commit(
        &[
            ("flows/slow.py", Some(&slow_module(&out))),
            ("prefect.yaml", Some(&manifest(slot, prestart))),
        ],
        "a slow import",
    );
    (repo, out, slot)
}

#[test]
fn a_prestarted_entrypoint_imports_early_and_is_called_on_the_dot() {
    let (repo, out, slot) = setup(3, 8);
    let daemon = Daemon::start(repo.path());
    let run = daemon.ended_run("early", Duration::from_secs(60));
    assert_eq!(run.state, RunState::Completed, "{run:?}");
    let imported = stamp(&std::fs::read_to_string(out.join("imported")).unwrap());
    let called = std::fs::read_to_string(out.join("called")).unwrap();
    let slot_s = epoch(slot);
    // Imported well before its slot (3 s ahead; at least 1 s even on a slow machine).
    assert!(
        imported < slot_s - 1.0,
        "imported {:.3} s before the slot",
        slot_s - imported
    );
    // Called on the dot: never early, and without the half-second import (a start at the
    // slot's time would be at least that late).
    let late = stamp(&called) - slot_s;
    assert!(late >= 0.0, "called {:.3} s early", -late);
    assert!(late < 0.3, "called {late:.3} s after its slot");
    let started_for = called.split_whitespace().nth(1).unwrap();
    assert_eq!(
        DateTime::parse_from_rfc3339(started_for).unwrap(),
        slot,
        "SUNDIAL_SCHEDULED_FOR"
    );
    // The run began at its slot, not when its interpreter started.
    let began = run.started_at.expect("a started run");
    assert!(epoch(began) >= slot_s, "began {began}, slot {slot}");
}

#[test]
fn a_prestarted_process_whose_daemon_died_exits_without_calling() {
    let (repo, out, slot) = setup(6, 9);
    let mut daemon = Daemon::start(repo.path());
    let imported = wait_until(Duration::from_secs(30), "the early import", || {
        std::fs::read_to_string(out.join("imported")).ok()
    });
    let pid: i32 = imported.split_whitespace().nth(1).unwrap().parse().unwrap();
    daemon.kill_9();
    // Its release pipe closed with the daemon: it exits, never calling the function.
    wait_until(
        Duration::from_secs(20),
        "the pre-started process to exit",
        || {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .is_err()
                .then_some(())
        },
    );
    wait_for_wall_time(slot + chrono::Duration::seconds(1));
    assert!(
        !out.join("called").exists(),
        "the function ran without its release"
    );
    // The next daemon settles the run it found claimed: at most once, not run again.
    daemon.restart();
    let run = daemon.ended_run("early", Duration::from_secs(30));
    assert_ne!(run.state, RunState::Completed, "{run:?}");
    assert!(!out.join("called").exists());
    assert_eq!(daemon.stored_runs("early").len(), 1);
}

#[test]
fn prestart_seconds_with_a_command_is_ignored_with_a_warning() {
    let project = Project::new().file(
        "prefect.yaml",
        "deployments:\n- name: c\n  work_pool:\n    job_variables:\n      command: echo hi\n      prestart_seconds: 5\n",
    );
    project
        .run(&["validate"])
        .code(0)
        .stdout_has("`prestart_seconds` is ignored: it applies to a Python entrypoint");
    let out_of_range = Project::new().file(
        "prefect.yaml",
        "deployments:\n- name: p\n  work_pool:\n    job_variables:\n      command: echo hi\n      prestart_seconds: 600\n",
    );
    out_of_range
        .run(&["validate"])
        .code(1)
        .stdout_has("out-of-range");
}
