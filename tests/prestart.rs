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

/// A commit (`change`, given the slot) that pauses or removes the deployment while its
/// pre-started interpreter waits for the slot: the run is withdrawn (Cancelled with
/// `reason`) before the slot, and the function is never called.
fn withdrawn_by(change: impl Fn(DateTime<Utc>) -> String, reason: &str) {
    let (repo, out, slot) = setup(6, 9);
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "the early import", || {
        std::fs::read_to_string(out.join("imported")).ok()
    });
    repo.commit(&[("prefect.yaml", Some(&change(slot)))], reason);
    let run = daemon.ended_run("early", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Cancelled, "{run:?}");
    assert_eq!(run.reason.as_deref(), Some(reason), "{run:?}");
    let ended = run.ended_at.expect("an ended run");
    assert!(ended < slot, "withdrawn at {ended}, after its slot {slot}");
    wait_for_wall_time(slot + chrono::Duration::seconds(1));
    assert!(
        !out.join("called").exists(),
        "the function ran although its deployment was {reason}"
    );
    assert_eq!(daemon.stored_runs("early").len(), 1);
}

#[test]
fn a_prestarted_run_whose_deployment_is_paused_before_its_slot_is_withdrawn() {
    withdrawn_by(
        |slot| manifest(slot, 6).replace("- name: early\n", "- name: early\n  paused: true\n"),
        "deployment paused",
    );
}

#[test]
fn a_prestarted_run_whose_deployment_is_removed_before_its_slot_is_withdrawn() {
    withdrawn_by(
        |_| "deployments:\n- name: other\n  entrypoint: flows/slow.py:run\n".to_string(),
        "deployment removed",
    );
}

/// A pause decided at run time (`pause_after_failures`) while the next slot's interpreter
/// is already started: that run is withdrawn too. Slots 15 s apart, each pre-started 10 s
/// ahead, and a function that fails 8 s after its slot: the second slot is armed 3 s
/// before the first one fails and released 7 s after.
#[test]
fn a_prestarted_run_whose_schedule_changes_before_its_slot_is_withdrawn() {
    withdrawn_by(
        |slot| manifest(slot + chrono::Duration::minutes(30), 6),
        "schedule changed",
    );
}

#[test]
fn a_prestarted_run_whose_schedule_is_made_inactive_before_its_slot_is_withdrawn() {
    withdrawn_by(
        |slot| {
            manifest(slot, 6).replace(
                "  - interval: 3600\n",
                "  - interval: 3600\n    active: false\n",
            )
        },
        "schedule inactive",
    );
}

/// A commit while the interpreter waits that leaves its slot a slot: the run is not
/// withdrawn, and its function is called on the dot, once.
fn goes_on_after(change: impl Fn(DateTime<Utc>) -> String) {
    let (repo, out, slot) = setup(6, 9);
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "the early import", || {
        std::fs::read_to_string(out.join("imported")).ok()
    });
    let changed = change(slot);
    assert_ne!(changed, manifest(slot, 6));
    repo.commit(&[("prefect.yaml", Some(&changed))], "changed");
    let run = daemon.ended_run("early", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Completed, "{run:?}");
    assert_eq!(run.scheduled_for, Some(slot));
    assert!(out.join("called").exists(), "the function was not called");
    wait_for_wall_time(slot + chrono::Duration::seconds(1));
    assert_eq!(daemon.stored_runs("early").len(), 1, "the slot ran twice");
}

#[test]
fn a_prestarted_run_goes_on_when_a_commit_changes_something_else() {
    goes_on_after(|slot| {
        manifest(slot, 6).replace("- name: early\n", "- name: early\n  description: changed\n")
    });
}

#[test]
fn a_prestarted_run_goes_on_when_the_new_timing_still_has_its_slot() {
    // Every 30 minutes from the same anchor: the slot is still one (and the new timing is
    // planned from after it, so withdrawing it would lose the run).
    goes_on_after(|slot| manifest(slot, 6).replace("interval: 3600", "interval: 1800"));
}

#[test]
fn a_pause_after_failures_withdraws_the_next_prestarted_run() {
    let repo = GitRepo::new();
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let first = Utc::now() + chrono::Duration::seconds(12);
    let first = first - chrono::Duration::nanoseconds(first.timestamp_subsec_nanos().into());
    let second = first + chrono::Duration::seconds(15);
    let module = format!(
        "import os, time\nOUT = {out:?}\n\ndef run():\n    slot = os.environ['SUNDIAL_SCHEDULED_FOR'][:19].replace(':', '-')\n    open(os.path.join(OUT, 'called-' + slot), 'w').write('%f' % time.time())\n    time.sleep(8)\n    raise RuntimeError('fails')\n",
        out = out.display().to_string()
    );
    let manifest = format!(
        "deployments:\n- name: early\n  entrypoint: flows/failing.py:run\n  pause_after_failures: 1\n  work_pool:\n    job_variables:\n      prestart_seconds: 10\n  schedules:\n  - interval: 15\n    anchor_date: \"{}\"\n",
        first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    repo.commit(
        &[
            ("flows/failing.py", Some(&module)),
            ("prefect.yaml", Some(&manifest)),
        ],
        "fails slowly",
    );
    let daemon = Daemon::start(repo.path());
    let runs = daemon.runs_when(
        "early",
        Duration::from_secs(60),
        "the first run to fail and the second to end",
        |runs| runs.len() >= 2 && runs.iter().all(|r| r.ended_at.is_some()),
    );
    let of = |slot| {
        runs.iter()
            .find(|r| r.scheduled_for == Some(slot))
            .unwrap_or_else(|| panic!("no run for {slot}: {runs:#?}"))
    };
    assert_eq!(of(first).state, RunState::Failed, "{runs:#?}");
    let withdrawn = of(second);
    assert_eq!(withdrawn.state, RunState::Cancelled, "{runs:#?}");
    assert_eq!(withdrawn.reason.as_deref(), Some("deployment paused"));
    assert!(withdrawn.ended_at.unwrap() < second, "{withdrawn:?}");
    wait_for_wall_time(second + chrono::Duration::seconds(1));
    let called: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        called.len(),
        1,
        "only the first slot's function ran: {called:?}"
    );
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
