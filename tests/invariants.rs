//! The engine's invariants under edits: schedule identity, queues and the definition a
//! waiting run uses, each test named after what once broke (issue 18's list): the real
//! daemon, real git repositories, real processes. Every wait polls with a deadline.
//! Restarts, crashes and escaped processes are in `recovery`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sundial::store::{Run, RunState, Trigger};

use crate::support::daemon::{manifest, soon, wait_for_wall_time, Daemon, GitRepo};
#[test]
fn a_slugged_schedule_whose_timing_changes_is_armed_anew() {
    let repo = GitRepo::new();
    let hourly = manifest(
        "slugged",
        "echo ok",
        &format!(
            "interval: 3600\n        slug: main\n        anchor_date: \"{}\"",
            soon(1800)
        ),
        "",
    );
    let first = repo.commit(&[("deployments/s.yaml", Some(&hourly))], "hourly");
    let daemon = Daemon::start(repo.path());
    daemon.wait_applied(&first);
    let every_second = manifest("slugged", "echo ok", "interval: 1\n        slug: main", "");
    repo.commit(
        &[("deployments/s.yaml", Some(&every_second))],
        "every second",
    );
    // Before the fix the old fire time, half an hour away, stayed armed.
    daemon.runs_when(
        "slugged",
        Duration::from_secs(20),
        "a run of the new timing",
        |runs| runs.iter().any(|r| r.state == RunState::Completed),
    );
}

#[test]
fn a_changed_timing_does_not_catch_up_slots_from_before_the_change() {
    let repo = GitRepo::new();
    let anchor: DateTime<Utc> = soon(5).parse().unwrap();
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = |every: u32, anchor: DateTime<Utc>| {
        manifest(
            "moved",
            "echo ok",
            &format!(
                "interval: {every}\n        slug: daily\n        anchor_date: \"{}\"",
                at(anchor)
            ),
            "    catchup: all\n",
        )
    };
    repo.commit(&[("deployments/m.yaml", Some(&text(6, anchor)))], "first");
    let daemon = Daemon::start(repo.path());
    daemon.runs_when("moved", Duration::from_secs(30), "the first slot", |runs| {
        !runs.is_empty()
    });
    // The new timing has a slot 2 s after the first one, already past when it is applied
    // at +3 s: like `0 10 * * *` changed to `0 9 * * *` at 09:30, it must never be due,
    // neither now nor when the old timing would have fired next (+6 s).
    let moved = anchor + chrono::Duration::seconds(2);
    wait_for_wall_time(anchor + chrono::Duration::seconds(3));
    let sha = repo.commit(&[("deployments/m.yaml", Some(&text(3600, moved)))], "moved");
    daemon.wait_applied(&sha);
    wait_for_wall_time(anchor + chrono::Duration::seconds(7));
    let runs = daemon.stored_runs("moved");
    let slots: Vec<_> = runs.iter().map(|r| r.scheduled_for).collect();
    assert_eq!(slots, vec![Some(anchor)], "{runs:?}");
}

#[test]
fn a_deployment_removed_and_added_back_does_not_catch_up_its_absence() {
    let repo = GitRepo::new();
    let text = manifest("returning", "echo ok", "interval: 1", "    catchup: all\n");
    repo.commit(&[("deployments/r.yaml", Some(&text))], "add");
    let daemon = Daemon::start(repo.path());
    daemon.runs_when("returning", Duration::from_secs(30), "a run", |runs| {
        runs.iter().any(|r| r.state == RunState::Completed)
    });
    let removed = repo.commit(&[("deployments/r.yaml", None)], "remove");
    daemon.wait_applied(&removed);
    let gone_from = Utc::now() + chrono::Duration::seconds(1);
    wait_for_wall_time(gone_from + chrono::Duration::seconds(4));
    let back_at = Utc::now();
    let back = repo.commit(&[("deployments/r.yaml", Some(&text))], "add back");
    daemon.wait_applied(&back);
    let during: Vec<Run> = daemon
        .stored_runs("returning")
        .into_iter()
        .filter(|r| {
            r.scheduled_for
                .is_some_and(|t| t > gone_from && t < back_at)
        })
        .collect();
    assert!(
        during.is_empty(),
        "slots of the absence got rows: {during:?}"
    );
}

#[test]
fn two_schedules_that_differ_only_in_parameters_both_fire() {
    let repo = GitRepo::new();
    let text = "deployments:\n  - name: regions\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - interval: 1\n        parameters: {region: eu}\n      - interval: 1\n        parameters: {region: us}\n";
    repo.commit(&[("deployments/r.yaml", Some(text))], "regions");
    let daemon = Daemon::start(repo.path());
    let runs = daemon.runs_when("regions", Duration::from_secs(30), "both regions", |runs| {
        ["eu", "us"]
            .iter()
            .all(|region| runs.iter().any(|r| r.parameters["region"] == *region))
    });
    let ids: std::collections::BTreeSet<_> = runs.iter().map(|r| r.schedule_id.clone()).collect();
    assert_eq!(ids.len(), 2, "two identities: {ids:?}");
}

#[test]
fn queued_runs_keep_slot_order_across_a_restart() {
    let repo = GitRepo::new();
    let text = manifest(
        "queued",
        "sleep 2",
        "interval: 1",
        "    concurrency_limit: 1\n    catchup: latest\n",
    );
    repo.commit(&[("deployments/q.yaml", Some(&text))], "queued");
    let mut daemon = Daemon::start(repo.path());
    daemon.runs_when(
        "queued",
        Duration::from_secs(30),
        "three queued runs",
        |runs| runs.iter().filter(|r| r.state == RunState::Pending).count() >= 3,
    );
    daemon.kill_9();
    // Slots come due while it is down: the newest must not overtake the queued ones.
    wait_for_wall_time(Utc::now() + chrono::Duration::milliseconds(2500));
    let restarted = Utc::now();
    daemon.restart();
    let runs = daemon.runs_when(
        "queued",
        Duration::from_secs(40),
        "four starts after the restart",
        |runs| {
            runs.iter()
                .filter(|r| r.started_at.is_some_and(|t| t > restarted))
                .count()
                >= 4
        },
    );
    let mut started: Vec<&Run> = runs
        .iter()
        .filter(|r| r.started_at.is_some_and(|t| t > restarted))
        .collect();
    started.sort_by_key(|r| r.started_at);
    let order: Vec<_> = started.iter().map(|r| r.scheduled_for).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "a later slot overtook a queued one: {started:?}"
    );
}

#[test]
fn a_queued_run_started_after_a_new_commit_runs_that_commits_definition_and_checkout() {
    let repo = GitRepo::new();
    let anchor = soon(5);
    let text = |script: &str| {
        manifest(
            "moving",
            &format!("sh {script}"),
            &format!("interval: 3600\n        anchor_date: \"{anchor}\""),
            "    concurrency_limit: 1\n",
        )
    };
    repo.commit(
        &[
            ("one.sh", Some("sleep 3\n")),
            ("deployments/m.yaml", Some(&text("one.sh"))),
        ],
        "one",
    );
    let daemon = Daemon::start(repo.path());
    let running = daemon.runs_when(
        "moving",
        Duration::from_secs(30),
        "the slot running",
        |runs| runs.iter().any(|r| r.state == RunState::Running),
    );
    let token = daemon.token();
    let (code, body) = daemon.post("/api/deployments/moving/runs", "{}", Some(&token));
    assert_eq!(code, 201, "{body}");
    // The queued run waits while `one.sh` is renamed `two.sh` and the command follows it.
    let second = repo.commit(
        &[
            ("one.sh", None),
            ("two.sh", Some("echo two\n")),
            ("deployments/m.yaml", Some(&text("two.sh"))),
        ],
        "two",
    );
    daemon.wait_applied(&second);
    let runs = daemon.runs_when(
        "moving",
        Duration::from_secs(30),
        "the queued run to end",
        |runs| runs.len() == 2 && runs.iter().all(|r| r.state.is_final()),
    );
    let queued = runs.iter().find(|r| r.id != running[0].id).unwrap();
    assert_eq!(queued.trigger, Trigger::Manual);
    assert_eq!(
        (queued.state, queued.commit.as_str()),
        (RunState::Completed, second.as_str()),
        "log: {}",
        daemon.run_log(queued.id)
    );
    assert!(daemon.run_log(queued.id).contains("two"));
}

#[test]
fn the_time_limit_bounds_pull_steps_and_the_command_together() {
    let repo = GitRepo::new();
    let text = format!(
        "pull:\n- prefect.deployments.steps.run_shell_script:\n    script: sleep 3\ndeployments:\n- name: bounded\n  timeout_seconds: 4\n  work_pool:\n    job_variables:\n      command: sleep 3\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        soon(5)
    );
    repo.commit(&[("deployments/b.yaml", Some(&text))], "bounded");
    let daemon = Daemon::start(repo.path());
    let run = daemon.ended_run("bounded", Duration::from_secs(40));
    assert_eq!(
        run.state,
        RunState::TimedOut,
        "log: {}",
        daemon.run_log(run.id)
    );
    let began = run.started_at.unwrap() - run.scheduled_for.unwrap();
    assert!(
        began < chrono::Duration::milliseconds(500),
        "started_at is the attempt's start, not the command's: {began:?} late"
    );
    let lasted = run.ended_at.unwrap() - run.started_at.unwrap();
    assert!(
        lasted < chrono::Duration::milliseconds(5900),
        "6 s of work ran under a 4 s limit: {lasted:?}"
    );
}

#[test]
fn a_paused_deployments_queued_runs_are_cancelled_not_started() {
    let repo = GitRepo::new();
    let text = |extra: &str| {
        manifest(
            "pausing",
            "sleep 2",
            "interval: 1",
            &format!("    concurrency_limit: 1\n{extra}"),
        )
    };
    repo.commit(&[("deployments/p.yaml", Some(&text("")))], "go");
    let daemon = Daemon::start(repo.path());
    daemon.runs_when("pausing", Duration::from_secs(30), "queued runs", |runs| {
        runs.iter().filter(|r| r.state == RunState::Pending).count() >= 2
    });
    let paused = repo.commit(
        &[("deployments/p.yaml", Some(&text("    paused: true\n")))],
        "pause",
    );
    daemon.wait_applied(&paused);
    let paused_at = Utc::now();
    let runs = daemon.runs_when(
        "pausing",
        Duration::from_secs(20),
        "nothing running",
        |runs| runs.iter().all(|r| r.state.is_final()),
    );
    let after: Vec<&Run> = runs
        .iter()
        .filter(|r| r.started_at.is_some_and(|t| t > paused_at))
        .collect();
    assert!(after.is_empty(), "runs started after the pause: {after:?}");
    assert!(
        runs.iter()
            .any(|r| r.state == RunState::Cancelled
                && r.reason.as_deref() == Some("deployment paused")),
        "{runs:?}"
    );
}

#[test]
fn a_downtime_longer_than_ten_thousand_slots_is_recorded_in_full() {
    let repo = GitRepo::new();
    let text = manifest("frequent", "echo hi", "interval: 1", "");
    repo.commit(&[("deployments/f.yaml", Some(&text))], "frequent");
    // Retention keeps every row: the test reads them all (by default it keeps the newest
    // 1,000 of a deployment, and would prune the summary row under a slow test run).
    let mut daemon = Daemon::start_with(repo.path(), &["--keep-runs", "100000"]);
    daemon.runs_when("frequent", Duration::from_secs(30), "a run", |runs| {
        runs.iter().any(|r| r.state == RunState::Completed)
    });
    daemon.kill_9();
    // As if the daemon had been down for three hours: 10,800 one-second slots.
    let db = rusqlite::Connection::open(daemon.state_dir.join("state.db")).unwrap();
    let cursor: String = db
        .query_row("SELECT last_slot FROM cursors", [], |r| r.get(0))
        .unwrap();
    let back = cursor.parse::<DateTime<Utc>>().unwrap() - chrono::Duration::hours(3);
    db.execute(
        "UPDATE cursors SET last_slot = ?1",
        [back.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)],
    )
    .unwrap();
    drop(db);
    daemon.restart();
    // The catch-up is recorded by the first tick after the restart, not before readiness.
    let missed = |r: &sundial::store::Run| {
        r.reason
            .as_deref()
            .is_some_and(|t| t.starts_with("missed: "))
    };
    let runs = daemon.runs_when(
        "frequent",
        Duration::from_secs(30),
        "the missed slots' summary",
        |runs| runs.iter().any(missed),
    );
    let summary = runs
        .iter()
        .find(|r| {
            r.reason
                .as_deref()
                .is_some_and(|t| t.starts_with("missed: "))
        })
        .unwrap_or_else(|| panic!("no summary row among {} rows", runs.len()));
    let reason = summary.reason.as_deref().unwrap();
    let count: i64 = reason["missed: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let first_after = back + chrono::Duration::seconds(1);
    assert_eq!(summary.scheduled_for, Some(first_after), "{reason}");
    // Every second from the rewound cursor to the newest slot: a row, or in the summary.
    let newest = runs.iter().filter_map(|r| r.scheduled_for).max().unwrap();
    let rows = runs.iter().filter(|r| r.id != summary.id).count() as i64;
    assert!(count > 0, "{reason}");
    assert_eq!(rows + count, (newest - back).num_seconds(), "{reason}");
}

#[test]
fn identity_changes_in_the_arm_window_claim_no_slot_twice() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let out = marks.path().join("fired.txt");
    // Each commit changes the schedule's identity (its parameters); with a commit every
    // ~100 ms, some land in the 25 ms before a slot, after the old identity claimed it.
    let text = |v: u32| {
        manifest(
            "flipping",
            &format!("sh -c 'echo $SUNDIAL_SCHEDULED_FOR >> {}'", out.display()),
            &format!("interval: 1\n        parameters: {{v: {v}}}"),
            "",
        )
    };
    repo.commit(&[("deployments/f.yaml", Some(&text(0)))], "v0");
    let daemon = Daemon::start(repo.path());
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut v = 0;
    while std::time::Instant::now() < end {
        v += 1;
        let sha = repo.commit(&[("deployments/f.yaml", Some(&text(v)))], "flip");
        daemon.wait_applied(&sha);
        // Pacing, not synchronisation: about ten identity changes a second.
        std::thread::sleep(Duration::from_millis(60));
    }
    wait_for_wall_time(Utc::now() + chrono::Duration::milliseconds(1500));
    let fired = std::fs::read_to_string(&out).unwrap_or_default();
    let lines: Vec<&str> = fired.lines().collect();
    let unique: std::collections::BTreeSet<&str> = lines.iter().copied().collect();
    assert!(lines.len() >= 5, "{v} commits, fired:\n{fired}");
    assert_eq!(unique.len(), lines.len(), "a slot fired twice:\n{fired}");
}
