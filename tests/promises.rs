//! The README's promises that had no test, each proven against the real daemon: inactive
//! schedules, un-pausing without a flood, manual runs under the concurrency limit, retries
//! of a timed-out attempt, retention, the stop, catch-up policies, `--branch`/`--remote`,
//! errors in the daemon's log and the next fire time in the API.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sundial::store::{RunState, Trigger};

use crate::support::daemon::{manifest, soon, wait_for_wall_time, wait_until, Daemon, GitRepo};
use crate::support::git_ok;

#[test]
fn an_inactive_schedule_records_skipped_and_the_api_shows_each_next_fire() {
    let repo = GitRepo::new();
    let anchor = soon(1800);
    let text = format!(
        "deployments:\n  - name: two\n    work_pool:\n      job_variables:\n        command: echo two\n    schedules:\n      - interval: 1\n        active: false\n      - interval: 3600\n        anchor_date: \"{anchor}\"\n"
    );
    repo.commit(&[("deployments/t.yaml", Some(&text))], "two");
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(Duration::from_secs(20), "skipped slots", || {
        let runs = daemon.stored_runs("two");
        (runs.len() >= 2).then_some(runs)
    });
    assert!(
        runs.iter()
            .all(|r| r.state == RunState::Skipped && r.reason.as_deref() == Some("inactive")),
        "{runs:?}"
    );
    let deployments = daemon.json("/api/deployments");
    let schedules = deployments[0]["schedules"].as_array().unwrap();
    let hourly = schedules.iter().find(|s| s["active"] == true).unwrap();
    let next: DateTime<Utc> = hourly["next"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, anchor.parse::<DateTime<Utc>>().unwrap());
}

#[test]
fn un_pausing_starts_from_now_without_a_flood() {
    let repo = GitRepo::new();
    let text = |extra: &str| {
        manifest(
            "flood",
            "echo hi",
            "interval: 1",
            &format!("    catchup: all\n{extra}"),
        )
    };
    repo.commit(
        &[("deployments/f.yaml", Some(&text("    paused: true\n")))],
        "paused",
    );
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(20), "paused slots", || {
        (daemon.stored_runs("flood").len() >= 3).then_some(())
    });
    let resumed = repo.commit(&[("deployments/f.yaml", Some(&text("")))], "resume");
    daemon.wait_applied(&resumed);
    let resumed_at = Utc::now();
    wait_until(Duration::from_secs(20), "runs after resuming", || {
        let runs = daemon.stored_runs("flood");
        (runs
            .iter()
            .filter(|r| r.state == RunState::Completed)
            .count()
            >= 2)
            .then_some(())
    });
    let runs = daemon.stored_runs("flood");
    assert!(
        runs.iter().all(|r| r.trigger != Trigger::Catchup),
        "{runs:?}"
    );
    let ran_paused: Vec<_> = runs
        .iter()
        .filter(|r| {
            r.state != RunState::Skipped
                && r.scheduled_for.unwrap() < resumed_at - chrono::Duration::seconds(1)
        })
        .collect();
    assert!(
        ran_paused.is_empty(),
        "slots of the pause ran: {ran_paused:?}"
    );
}

#[test]
fn a_manual_run_waits_for_the_place_a_scheduled_run_holds() {
    let repo = GitRepo::new();
    let text = manifest(
        "limited",
        "sleep 2",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    concurrency_limit: 1\n",
    );
    repo.commit(&[("deployments/l.yaml", Some(&text))], "limited");
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "the slot running", || {
        daemon
            .stored_runs("limited")
            .iter()
            .any(|r| r.state == RunState::Running)
            .then_some(())
    });
    let (code, body) = daemon.post("/api/deployments/limited/runs", "{}", Some(&daemon.token()));
    assert_eq!(code, 201, "{body}");
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["state"], "Pending", "{run}");
    let runs = wait_until(Duration::from_secs(30), "both ended", || {
        let runs = daemon.stored_runs("limited");
        (runs.len() == 2 && runs.iter().all(|r| r.state == RunState::Completed)).then_some(runs)
    });
    assert!(
        runs[0].ended_at.unwrap() <= runs[1].started_at.unwrap(),
        "{runs:?}"
    );
}

#[test]
fn a_timed_out_attempt_is_retried() {
    let repo = GitRepo::new();
    let text = manifest(
        "slow",
        "sleep 30",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    timeout_seconds: 1\n    retries: 1\n    retry_delay_seconds: 0\n",
    );
    repo.commit(&[("deployments/s.yaml", Some(&text))], "slow");
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(Duration::from_secs(40), "two timed-out attempts", || {
        let runs = daemon.stored_runs("slow");
        (runs.len() == 2 && runs.iter().all(|r| r.state.is_final())).then_some(runs)
    });
    let summary: Vec<_> = runs
        .iter()
        .map(|r| (r.attempt, r.state, r.trigger))
        .collect();
    assert_eq!(
        summary,
        [
            (1, RunState::TimedOut, Trigger::Schedule),
            (2, RunState::TimedOut, Trigger::Retry)
        ]
    );
}

#[test]
fn retention_keeps_the_newest_runs_and_deletes_the_others_logs() {
    let repo = GitRepo::new();
    let text = manifest("chatty", "echo hello", "interval: 1", "");
    repo.commit(&[("deployments/c.yaml", Some(&text))], "chatty");
    let mut daemon = Daemon::start(repo.path());
    let runs = wait_until(Duration::from_secs(30), "five completed runs", || {
        let runs = daemon.stored_runs("chatty");
        (runs
            .iter()
            .filter(|r| r.state == RunState::Completed)
            .count()
            >= 5)
            .then_some(runs)
    });
    assert_eq!(daemon.terminate(), Some(0));
    let oldest = runs[0].id;
    assert!(daemon.run_log(oldest).contains("hello"));
    // Retention runs at start (then hourly).
    daemon.restart_with(&["--keep-runs", "2"]);
    let kept = wait_until(Duration::from_secs(10), "the oldest run pruned", || {
        let kept = daemon.stored_runs("chatty");
        kept.iter().all(|r| r.id != oldest).then_some(kept)
    });
    let finished = kept.iter().filter(|r| r.state.is_final()).count();
    assert!(
        finished <= 3,
        "at most 2 kept, plus one that ended since: {kept:?}"
    );
    assert_eq!(
        daemon.run_log(oldest),
        "",
        "the pruned run's log is deleted"
    );
    assert_eq!(daemon.terminate(), Some(0));
    // By age: everything finished before now is older than 0.0001 days (8.6 s) soon.
    wait_for_wall_time(Utc::now() + chrono::Duration::seconds(9));
    let cut = Utc::now() - chrono::Duration::seconds(9);
    daemon.restart_with(&["--keep-days", "0.0001"]);
    wait_until(
        Duration::from_secs(10),
        "runs older than 8.6 s pruned",
        || {
            let runs = daemon.stored_runs("chatty");
            (!runs.iter().any(|r| r.ended_at.is_some_and(|t| t < cut))).then_some(())
        },
    );
}

#[test]
fn sigint_stops_like_sigterm_and_nothing_new_starts_during_the_stop() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let ready = marks.path().join("ignoring-term");
    let command = format!(
        "sh -c 'trap \"\" TERM; touch {}; sleep 60'",
        ready.display()
    );
    let stubborn = manifest(
        "stubborn",
        &command,
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    let ticker = manifest("ticker", "echo tick", "interval: 1", "");
    repo.commit(
        &[
            ("deployments/s.yaml", Some(&stubborn)),
            ("deployments/t.yaml", Some(&ticker)),
        ],
        "two",
    );
    let mut daemon = Daemon::start(repo.path());
    // The job says when it ignores SIGTERM, so the stop cannot come before the trap.
    wait_until(
        Duration::from_secs(30),
        "the stubborn job to ignore SIGTERM",
        || ready.exists().then_some(()),
    );
    let asked = Utc::now();
    assert_eq!(daemon.interrupt(), Some(0), "{}", daemon.log());
    let stopped = Utc::now();
    assert!(
        stopped - asked >= chrono::Duration::milliseconds(1900),
        "the stop did not wait the 2 s grace for the stubborn job"
    );
    let stubborn = daemon.stored_runs("stubborn");
    assert_eq!(
        (stubborn[0].state, stubborn[0].reason.as_deref()),
        (RunState::Cancelled, Some("shutdown"))
    );
    // It ignored SIGTERM for the 2 s grace; no tick started meanwhile.
    let late: Vec<_> = daemon
        .stored_runs("ticker")
        .into_iter()
        .filter(|r| {
            r.started_at
                .is_some_and(|t| t > asked + chrono::Duration::milliseconds(100))
        })
        .collect();
    assert!(late.is_empty(), "runs started during the stop: {late:?}");
}

/// Runs `tick` every second with `catchup`, kills the daemon for 4 s, restarts it, and
/// returns the runs whose slots fell in the downtime.
fn downtime_runs(catchup: &str) -> Vec<sundial::store::Run> {
    let repo = GitRepo::new();
    let text = manifest(
        "tick",
        "echo tick",
        "interval: 1",
        &format!("    catchup: {catchup}\n    late_grace_seconds: 0.5\n"),
    );
    repo.commit(&[("deployments/t.yaml", Some(&text))], "tick");
    let mut daemon = Daemon::start(repo.path());
    daemon.completed("tick");
    daemon.kill_9();
    let down = Utc::now();
    wait_for_wall_time(down + chrono::Duration::seconds(4));
    daemon.restart();
    let up = Utc::now();
    wait_until(Duration::from_secs(30), "the downtime settled", || {
        let runs = daemon.stored_runs("tick");
        let gap: Vec<_> = runs
            .iter()
            .filter(|r| {
                r.scheduled_for.is_some_and(|t| {
                    t > down + chrono::Duration::seconds(1) && t < up - chrono::Duration::seconds(1)
                })
            })
            .cloned()
            .collect();
        (gap.len() >= 2 && gap.iter().all(|r| r.state.is_final())).then_some(gap)
    })
}

#[test]
fn catchup_latest_runs_the_newest_missed_slot_and_records_the_rest() {
    let gap = downtime_runs("latest");
    let ran: Vec<_> = gap
        .iter()
        .filter(|r| r.state != RunState::Skipped)
        .collect();
    assert!(
        ran.len() <= 1,
        "more than the newest missed slot ran: {gap:?}"
    );
    let skipped = gap
        .iter()
        .filter(|r| r.state == RunState::Skipped && r.reason.as_deref() == Some("missed"))
        .count();
    assert!(skipped >= 2 && skipped + ran.len() == gap.len(), "{gap:?}");
}

#[test]
fn catchup_all_runs_every_missed_slot() {
    let gap = downtime_runs("all");
    assert!(
        gap.iter().all(|r| r.state == RunState::Completed),
        "{gap:?}"
    );
    let caught_up = gap.iter().filter(|r| r.trigger == Trigger::Catchup).count();
    assert!(caught_up >= 2, "{gap:?}");
}

#[test]
fn a_bad_commit_is_in_the_daemon_log_with_file_line_and_column() {
    let repo = GitRepo::new();
    let good = manifest("fine", "echo fine", "interval: 3600", "");
    repo.commit(&[("deployments/f.yaml", Some(&good))], "good");
    let daemon = Daemon::start(repo.path());
    let bad = good.replace("interval: 3600", "cron: \"61 * * * *\"");
    let sha = repo.commit(&[("deployments/f.yaml", Some(&bad))], "bad");
    daemon.wait_applied(&sha);
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("deployments/f.yaml:7:15: ")),
        "{log}"
    );
}

#[test]
fn branch_and_remote_deploy_what_they_name() {
    // --branch: only the named branch's manifests run.
    let repo = GitRepo::new();
    repo.commit(&[("README.md", Some("main\n"))], "main");
    git_ok(repo.path(), &["checkout", "-q", "-b", "deploy"]);
    let text = manifest("branched", "echo b", "interval: 1", "");
    let on_branch = repo.commit(&[("deployments/b.yaml", Some(&text))], "on deploy");
    git_ok(repo.path(), &["checkout", "-q", "main"]);
    let daemon = Daemon::start_with(repo.path(), &["--branch", "deploy"]);
    daemon.wait_applied(&on_branch);
    drop(daemon);

    // --remote: the daemon fetches `origin` and deploys its branch, not the local one.
    let origin = GitRepo::new();
    origin.commit(&[("README.md", Some("origin\n"))], "first");
    let clone_dir = tempfile::tempdir().unwrap();
    let clone = clone_dir.path().join("clone");
    git_ok(
        clone_dir.path(),
        &[
            "clone",
            "-q",
            origin.path().to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let daemon = Daemon::start_with(&clone, &["--remote", "origin", "--branch", "main"]);
    let pushed = origin.commit(
        &[(
            "deployments/r.yaml",
            Some(&manifest("remote", "echo r", "interval: 1", "")),
        )],
        "remote",
    );
    daemon.wait_applied(&pushed);
    wait_until(
        Duration::from_secs(20),
        "the fetched deployment to run",
        || {
            daemon
                .stored_runs("remote")
                .iter()
                .any(|r| r.state == RunState::Completed)
                .then_some(())
        },
    );
}

#[test]
fn reordering_schedules_and_re_syncs_fire_no_slot_twice() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let out = marks.path().join("fired.txt");
    let schedule = |region: &str, every: u32| {
        format!("      - interval: {every}\n        parameters: {{region: {region}}}\n")
    };
    let text = |first: &str, second: &str| {
        format!(
            "deployments:\n  - name: ordered\n    work_pool:\n      job_variables:\n        command: sh -c 'echo \"$SUNDIAL_SCHEDULED_FOR $SUNDIAL_PARAMETERS\" >> {}'\n    schedules:\n{first}{second}",
            out.display()
        )
    };
    let (eu, us) = (schedule("eu", 1), schedule("us", 2));
    repo.commit(&[("deployments/o.yaml", Some(&text(&eu, &us)))], "eu, us");
    let daemon = Daemon::start(repo.path());
    for round in 0..4 {
        let (a, b) = if round % 2 == 0 {
            (&us, &eu)
        } else {
            (&eu, &us)
        };
        let sha = repo.commit(&[("deployments/o.yaml", Some(&text(a, b)))], "reorder");
        daemon.wait_applied(&sha);
        // A re-sync of the same commit (SIGHUP) must not fire anything again either.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        wait_for_wall_time(Utc::now() + chrono::Duration::milliseconds(1200));
    }
    let fired = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = fired.lines().collect();
    let unique: std::collections::BTreeSet<&str> = lines.iter().copied().collect();
    assert!(lines.len() >= 6, "{fired}");
    assert_eq!(unique.len(), lines.len(), "a slot fired twice:\n{fired}");
}

#[test]
fn a_retry_waits_for_the_place_a_manual_run_holds() {
    let repo = GitRepo::new();
    // Attempt 1 of the slot fails at once; manual runs (attempt 1 too) sleep 3 s.
    let command =
        "sh -c 'test \"$SUNDIAL_RUN_ID\" != 1 && sleep 3 || { test \"$SUNDIAL_ATTEMPT\" = 2; }'";
    let text = manifest(
        "shared",
        command,
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    concurrency_limit: 1\n    retries: 1\n    retry_delay_seconds: 4\n",
    );
    repo.commit(&[("deployments/s.yaml", Some(&text))], "shared");
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "attempt 1 to fail", || {
        daemon
            .stored_runs("shared")
            .iter()
            .any(|r| r.state == RunState::Failed)
            .then_some(())
    });
    let (code, body) = daemon.post("/api/deployments/shared/runs", "{}", Some(&daemon.token()));
    assert_eq!(code, 201, "{body}");
    let runs = wait_until(Duration::from_secs(30), "every run to end", || {
        let runs = daemon.stored_runs("shared");
        (runs.len() == 3 && runs.iter().all(|r| r.state.is_final())).then_some(runs)
    });
    let manual = runs.iter().find(|r| r.trigger == Trigger::Manual).unwrap();
    let retry = runs.iter().find(|r| r.trigger == Trigger::Retry).unwrap();
    // The limit holds whichever comes first (on a loaded machine the trigger may come
    // after the retry's time): the two never run side by side.
    let apart = retry.started_at.unwrap() >= manual.ended_at.unwrap()
        || manual.started_at.unwrap() >= retry.ended_at.unwrap();
    assert!(apart, "the retry ran beside the manual run: {runs:?}");
}
