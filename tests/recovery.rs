//! Restarts, crashes and the processes runs leave behind (issue 18's bugs 1, 7 and 9, the
//! cancel that races a failure; issue 12's state lock and escaped processes): the real
//! daemon killed and restarted on real repositories, with real process trees.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use sundial::store::{RunState, Trigger};

use crate::support::daemon::{manifest, soon, wait_for_wall_time, wait_until, Daemon, GitRepo};
use crate::support::sundial;

fn pid_alive(pid: i32) -> bool {
    sundial::runner::contain::alive(pid as u32)
}

/// Reads a pid a job wrote to `path`.
#[track_caller]
fn pid_in(path: &Path) -> i32 {
    wait_until(Duration::from_secs(20), "the job's pid file", || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

#[test]
fn a_retry_due_while_the_daemon_was_down_runs_after_the_restart() {
    let repo = crate::policies::fails_once_then_succeeds(2);
    let mut daemon = Daemon::start(repo.path());
    let runs = daemon.runs_when("once", Duration::from_secs(30), "the retry row", |runs| {
        runs.iter().any(|r| r.state == RunState::AwaitingRetry)
    });
    daemon.kill_9();
    let retry = runs.iter().find(|r| r.attempt == 2).unwrap();
    wait_for_wall_time(retry.not_before.unwrap() + chrono::Duration::seconds(1));
    daemon.restart();
    let runs = daemon.runs_when(
        "once",
        Duration::from_secs(30),
        "attempt 2 to end",
        |runs| runs.iter().any(|r| r.attempt == 2 && r.state.is_final()),
    );
    let first = runs.iter().find(|r| r.attempt == 1).unwrap();
    let second = runs.iter().find(|r| r.attempt == 2).unwrap();
    // It says what made it (a retry of the first), and its end has no reason to give.
    assert_eq!(
        (
            second.state,
            second.trigger,
            second.retry_of,
            second.reason.as_deref()
        ),
        (RunState::Completed, Trigger::Retry, Some(first.id), None),
        "{runs:?}"
    );
}

#[test]
fn a_run_whose_pid_was_never_recorded_is_ended_at_restart_before_its_retry() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let pid_file = marks.path().join("job.pid");
    // Each attempt appends "start" and, unless ended, "end": overlapping attempts would
    // show two starts in a row.
    let job = format!(
        "echo $$ > {pid}; echo start >> {log}; sleep 300; echo end >> {log}",
        pid = pid_file.display(),
        log = marks.path().join("attempts").display()
    );
    let text = manifest(
        "lost",
        &format!("sh -c '{job}'"),
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    retries: 1\n    retry_delay_seconds: 0\n",
    );
    repo.commit(&[("deployments/l.yaml", Some(&text))], "lost");
    let mut daemon = Daemon::start(repo.path());
    let job_pid = pid_in(&pid_file);
    daemon.kill_9();
    // As if the daemon died between the spawn and recording the pid.
    let db = rusqlite::Connection::open(daemon.state_dir.join("state.db")).unwrap();
    db.execute("UPDATE runs SET pid = NULL", []).unwrap();
    drop(db);
    assert!(pid_alive(job_pid), "the job outlives a killed daemon");
    std::fs::remove_file(&pid_file).unwrap();
    daemon.restart();
    let runs = daemon.runs_when(
        "lost",
        Duration::from_secs(30),
        "the retry running",
        |runs| {
            runs.iter()
                .any(|r| r.attempt == 2 && r.state == RunState::Running)
        },
    );
    assert!(
        !pid_alive(job_pid),
        "the first attempt's process still runs"
    );
    assert_eq!(runs[0].state, RunState::Crashed);
    assert_eq!(
        runs[0].reason.as_deref(),
        Some("ended at restart: the daemon had lost track of it")
    );
    let retry_pid = pid_in(&pid_file);
    assert_ne!(retry_pid, job_pid);
    // The retry writes its pid, then its start: wait for the start too.
    let attempts = wait_until(Duration::from_secs(10), "the retry's start", || {
        std::fs::read_to_string(marks.path().join("attempts"))
            .ok()
            .filter(|text| text.lines().count() >= 2)
    });
    assert_eq!(
        attempts, "start\nstart\n",
        "the first attempt ended, unfinished, before the retry began"
    );
}

#[test]
fn a_crashed_runs_retry_survives_a_stop_before_the_first_apply() {
    let repo = GitRepo::new();
    let text = manifest(
        "durable",
        "python3 -c 'import os,sys,time; time.sleep(300 if os.environ[\"SUNDIAL_ATTEMPT\"] == \"1\" else 0)'",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    retries: 1\n    retry_delay_seconds: 0\n",
    );
    repo.commit(&[("deployments/d.yaml", Some(&text))], "durable");
    let mut daemon = Daemon::start(repo.path());
    daemon.runs_when(
        "durable",
        Duration::from_secs(30),
        "attempt 1 running",
        |runs| {
            runs.iter()
                .any(|r| r.state == RunState::Running && r.pid.is_some())
        },
    );
    daemon.kill_9();
    // The repository cannot be read at the next start, so no commit is applied before
    // that daemon is stopped again.
    let hidden = repo.path().with_extension("hidden");
    std::fs::rename(repo.path().join(".git"), &hidden).unwrap();
    daemon.restart_unready();
    daemon.runs_when(
        "durable",
        Duration::from_secs(30),
        "attempt 1 recorded Crashed",
        |runs| runs.iter().any(|r| r.state == RunState::Crashed),
    );
    assert_eq!(daemon.terminate(), Some(0));
    std::fs::rename(&hidden, repo.path().join(".git")).unwrap();
    daemon.restart();
    let runs = daemon.runs_when(
        "durable",
        Duration::from_secs(30),
        "attempt 2 to end",
        |runs| runs.iter().any(|r| r.attempt == 2 && r.state.is_final()),
    );
    let states: Vec<_> = runs.iter().map(|r| (r.attempt, r.state)).collect();
    assert_eq!(states, [(1, RunState::Crashed), (2, RunState::Completed)]);
}

#[test]
fn a_second_daemon_on_the_same_state_directory_exits_and_leaves_the_first_alone() {
    let repo = GitRepo::new();
    let text = manifest(
        "steady",
        "sleep 3",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    repo.commit(&[("deployments/s.yaml", Some(&text))], "steady");
    let daemon = Daemon::start(repo.path());
    daemon.runs_when(
        "steady",
        Duration::from_secs(30),
        "the job running",
        |runs| runs.iter().any(|r| r.state == RunState::Running),
    );
    // The same directory through a symlink, on another port.
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("state");
    std::os::unix::fs::symlink(&daemon.state_dir, &link).unwrap();
    let url_before = std::fs::read_to_string(daemon.state_dir.join("url")).unwrap();
    let err_path = link_dir.path().join("second.err");
    let mut second = sundial()
        .args(["daemon", "--repo"])
        .arg(repo.path())
        .arg("--state-dir")
        .arg(&link)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // "At once": a second daemon that starts instead is killed, and the test fails.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            break second.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let pid = daemon.pid();
    assert!(
        stderr.contains(&format!("is in use by pid {pid} since ")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(daemon.state_dir.join("url")).unwrap(),
        url_before
    );
    let run = daemon.ended_run("steady", Duration::from_secs(20));
    assert_eq!(run.state, RunState::Completed, "{run:?}");
}

/// A job that starts a `setsid` grandchild (out of its process group), records its pid,
/// and exits at once.
fn escaping_job(pid_file: &Path) -> String {
    format!(
        "sh -c 'setsid sh -c \"echo \\$\\$ > {}; exec sleep 300\" & sleep 1'",
        pid_file.display()
    )
}

#[test]
fn a_setsid_escapee_is_ended_when_its_run_ends() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let pid_file = marks.path().join("escapee.pid");
    let text = manifest(
        "escaping",
        &escaping_job(&pid_file),
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    repo.commit(&[("deployments/e.yaml", Some(&text))], "escaping");
    let daemon = Daemon::start(repo.path());
    let escapee = pid_in(&pid_file);
    let run = daemon.ended_run("escaping", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Completed);
    assert!(!pid_alive(escapee), "the escapee outlived its run");
    assert!(
        daemon.run_log(run.id).contains(&format!(
            "# sundial: the run left 1 process(es) outside its group: {escapee} (sleep)"
        )),
        "{}",
        daemon.run_log(run.id)
    );
}

#[test]
fn an_escapee_that_outlived_a_killed_daemon_is_ended_at_restart() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let pid_file = marks.path().join("escapee.pid");
    let text = manifest(
        "orphaned",
        &escaping_job(&pid_file).replace("sleep 1'", "sleep 300'"),
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    repo.commit(&[("deployments/o.yaml", Some(&text))], "orphaned");
    let mut daemon = Daemon::start(repo.path());
    let escapee = pid_in(&pid_file);
    daemon.kill_9();
    assert!(pid_alive(escapee));
    daemon.restart();
    wait_until(Duration::from_secs(20), "the escapee ended", || {
        (!pid_alive(escapee)).then_some(())
    });
    let run = daemon.ended_run("orphaned", Duration::from_secs(10));
    assert_eq!(
        (run.state, run.reason.as_deref()),
        (
            RunState::Crashed,
            Some("ended at restart: the daemon had lost track of it")
        )
    );
}

#[test]
fn a_run_cancelled_as_it_fails_on_its_own_gets_no_retry() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let ready = marks.path().join("ready");
    // The main process fails on its own, leaving a process that ignores SIGTERM outside
    // its group: the run stays in flight for the 2 s grace while that one is ended, and
    // the cancel lands in that window, after the failure.
    let job = format!(
        "sh -c 'setsid sh -c \"trap \\\"\\\" TERM; touch {}; exec sleep 30\" & sleep 0.5; exit 1'",
        ready.display()
    );
    let text = manifest(
        "racing",
        &job,
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    retries: 2\n    retry_delay_seconds: 0\n",
    );
    repo.commit(&[("deployments/r.yaml", Some(&text))], "racing");
    let daemon = Daemon::start(repo.path());
    let run = daemon.runs_when("racing", Duration::from_secs(30), "the run", |runs| {
        !runs.is_empty()
    })[0]
        .id;
    wait_until(Duration::from_secs(20), "the failure's sweep", || {
        daemon
            .run_log(run)
            .contains("the run left 1 process(es) outside its group")
            .then_some(())
    });
    assert!(ready.exists());
    let (code, body) = daemon.post(
        &format!("/api/runs/{run}/cancel"),
        "",
        Some(&daemon.token()),
    );
    assert!(code == 200 || code == 202, "{code} {body}");
    let runs = daemon.runs_when(
        "racing",
        Duration::from_secs(20),
        "the run to end",
        |runs| runs.iter().all(|r| r.state.is_final()),
    );
    // Give a retry the time it would need to appear (its delay is 0).
    wait_for_wall_time(Utc::now() + chrono::Duration::seconds(1));
    let runs_after = daemon.stored_runs("racing");
    assert_eq!(
        runs_after.len(),
        1,
        "a cancelled run was retried: {runs_after:?}"
    );
    assert_eq!(
        (runs[0].state, runs[0].exit_code),
        (RunState::Failed, Some(1))
    );
}
