//! Run policies end to end (retries, timeouts, concurrency, pause, parameters, log cap)
//! with real processes under the real daemon.

use std::time::Duration;

use sundial::store::{RunState, Trigger};

use crate::support::daemon::{manifest, soon, wait_until, Daemon, GitRepo};

#[test]
fn a_job_failing_twice_then_succeeding_is_retried_with_its_delays() {
    let repo = GitRepo::new();
    let flaky = "import os, sys\nsys.exit(0 if os.environ['SUNDIAL_ATTEMPT'] == '3' else 1)\n";
    let text = manifest(
        "flaky",
        "python3 flaky.py",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    retries: 2\n    retry_delay_seconds: [1, 2]\n",
    );
    repo.commit(
        &[
            ("flaky.py", Some(flaky)),
            ("deployments/flaky.yaml", Some(&text)),
        ],
        "flaky",
    );
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(
        Duration::from_secs(40),
        "the third attempt to complete",
        || {
            let runs = daemon.stored_runs("flaky");
            runs.iter()
                .any(|r| r.state == RunState::Completed)
                .then_some(runs)
        },
    );
    let summary: Vec<(u32, RunState, Trigger, Option<i32>)> = runs
        .iter()
        .map(|r| (r.attempt, r.state, r.trigger, r.exit_code))
        .collect();
    assert_eq!(
        summary,
        [
            (1, RunState::Failed, Trigger::Schedule, Some(1)),
            (2, RunState::Failed, Trigger::Retry, Some(1)),
            (3, RunState::Completed, Trigger::Retry, Some(0)),
        ]
    );
    assert!(
        runs.iter()
            .all(|r| r.scheduled_for == runs[0].scheduled_for),
        "one slot, three attempts"
    );
    // The run page links the attempts of its slot, each with its commit.
    let (code, page) = daemon.get(&format!("/runs/{}", runs[2].id));
    assert_eq!(code, 200);
    assert!(page.contains("Attempts of this slot"), "{page}");
    for r in &runs[..2] {
        assert!(page.contains(&format!("href=\"/runs/{}\"", r.id)), "{page}");
    }
    assert!(
        page.contains(&format!("title=\"{}\"", runs[0].commit)),
        "{page}"
    );
    let gap = |a: usize| runs[a + 1].started_at.unwrap() - runs[a].ended_at.unwrap();
    assert!(
        gap(0) >= chrono::Duration::milliseconds(1000),
        "first delay {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= chrono::Duration::milliseconds(2000),
        "second delay {:?}",
        gap(1)
    );
}

/// A repository whose deployment `once` fails its first attempt in 2 s and succeeds on
/// its retry, `delay` seconds later.
pub fn fails_once_then_succeeds(delay: u32) -> GitRepo {
    let repo = GitRepo::new();
    let once = "import os, sys\nsys.exit(0 if os.environ['SUNDIAL_ATTEMPT'] == '2' else 1)\n";
    let text = manifest(
        "once",
        "python3 once.py",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        &format!("    retries: 1\n    retry_delay_seconds: {delay}\n"),
    );
    repo.commit(
        &[
            ("once.py", Some(once)),
            ("deployments/once.yaml", Some(&text)),
        ],
        "once",
    );
    repo
}

#[test]
fn a_pending_retry_survives_kill_9_and_restart() {
    let repo = fails_once_then_succeeds(4);
    let mut daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "a retry waiting", || {
        daemon
            .stored_runs("once")
            .iter()
            .any(|r| r.state == RunState::AwaitingRetry)
            .then_some(())
    });
    daemon.kill_9();
    daemon.restart();
    let runs = wait_until(Duration::from_secs(30), "the retry to complete", || {
        let runs = daemon.stored_runs("once");
        runs.iter()
            .any(|r| r.state == RunState::Completed)
            .then_some(runs)
    });
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[1].attempt, runs[1].trigger), (2, Trigger::Retry));
}

#[test]
fn a_timeout_ends_the_job_and_the_grandchild_it_forked() {
    let repo = GitRepo::new();
    let pid_file = repo.path().join("grandchild.pid");
    let command = format!(
        "sh -c \"sleep 600 & echo \\$! > {}; wait\"",
        pid_file.display()
    );
    let text = format!(
        "deployments:\n  - name: sleepy\n    work_pool:\n      job_variables:\n        command: '{}'\n    schedules:\n      - interval: 3600\n        anchor_date: \"{}\"\n    timeout_seconds: 1\n",
        command.replace('\'', "''"),
        soon(5)
    );
    repo.commit(&[("deployments/sleepy.yaml", Some(&text))], "sleepy");
    let daemon = Daemon::start(repo.path());
    let run = daemon.ended_run("sleepy", Duration::from_secs(30));
    assert_eq!(run.state, RunState::TimedOut);
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until(Duration::from_secs(10), "the grandchild gone", || {
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), None),
            Err(nix::errno::Errno::ESRCH)
        ) || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        gone.then_some(())
    });
}

#[test]
fn enqueue_runs_one_at_a_time_in_slot_order() {
    let repo = GitRepo::new();
    let text = manifest(
        "queued",
        "python3 -c \"import time; time.sleep(1.5)\"",
        "interval: 1",
        "    concurrency_limit: 1\n",
    );
    repo.commit(&[("deployments/queued.yaml", Some(&text))], "queued");
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(Duration::from_secs(40), "three completed runs", || {
        let runs = daemon.stored_runs("queued");
        (runs
            .iter()
            .filter(|r| r.state == RunState::Completed)
            .count()
            >= 3)
            .then_some(runs)
    });
    assert!(
        runs.iter().any(|r| r.state == RunState::Pending),
        "later slots wait Pending: {runs:?}"
    );
    let mut done: Vec<_> = runs
        .iter()
        .filter(|r| r.state == RunState::Completed)
        .collect();
    done.sort_by_key(|r| r.started_at);
    for pair in done.windows(2) {
        assert!(
            pair[0].scheduled_for < pair[1].scheduled_for,
            "started out of slot order"
        );
        assert!(
            pair[0].ended_at.unwrap() <= pair[1].started_at.unwrap(),
            "two ran at once: {pair:?}"
        );
    }
}

#[test]
fn cancel_new_records_overlapping_slots_as_cancelled() {
    let repo = GitRepo::new();
    let text = manifest(
        "exclusive",
        "python3 -c \"import time; time.sleep(2.5)\"",
        "interval: 1",
        "    concurrency_limit:\n      limit: 1\n      collision_strategy: CANCEL_NEW\n",
    );
    repo.commit(&[("deployments/exclusive.yaml", Some(&text))], "exclusive");
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(
        Duration::from_secs(30),
        "overlaps and two started runs",
        || {
            let runs = daemon.stored_runs("exclusive");
            let overlaps = runs
                .iter()
                .filter(|r| {
                    r.state == RunState::Cancelled && r.reason.as_deref() == Some("overlap")
                })
                .count();
            let started = runs
                .iter()
                .filter(|r| r.started_at.is_some() && r.state != RunState::Cancelled)
                .count();
            (overlaps >= 2 && started >= 2 && runs.iter().any(|r| r.state == RunState::Completed))
                .then_some(runs)
        },
    );
    let mut started: Vec<_> = runs
        .iter()
        .filter(|r| r.started_at.is_some() && r.state != RunState::Cancelled)
        .collect();
    started.sort_by_key(|r| r.started_at);
    assert!(started.len() >= 2, "{runs:?}");
    for pair in started.windows(2) {
        // A run still going (no end) when the next started is an overlap too.
        assert!(
            pair[0]
                .ended_at
                .is_some_and(|ended| ended <= pair[1].started_at.unwrap()),
            "two ran at once: {pair:?}"
        );
    }
}

#[test]
fn a_paused_deployment_records_its_slots_as_skipped_inactive() {
    let repo = GitRepo::new();
    let text = manifest(
        "paused",
        "python3 -c pass",
        "interval: 1",
        "    paused: true\n",
    );
    repo.commit(&[("deployments/paused.yaml", Some(&text))], "paused");
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(Duration::from_secs(20), "skipped slots", || {
        let runs = daemon.stored_runs("paused");
        (runs.len() >= 2).then_some(runs)
    });
    assert!(
        runs.iter()
            .all(|r| r.state == RunState::Skipped && r.reason.as_deref() == Some("inactive")),
        "{runs:?}"
    );
    assert!(runs.iter().all(|r| r.pid.is_none()));
}

#[test]
fn parameters_merge_defaults_then_schedule_overrides() {
    let repo = GitRepo::new();
    let out = repo.path().join("params.json");
    let script = format!(
        "import os\nopen({:?}, 'w').write(os.environ['SUNDIAL_PARAMETERS'])\n",
        out.display().to_string()
    );
    let text = format!(
        "deployments:\n  - name: params\n    parameters: {{a: 1, b: 1}}\n    work_pool:\n      job_variables:\n        command: python3 params.py\n    schedules:\n      - interval: 3600\n        anchor_date: \"{}\"\n        parameters: {{b: 2, c: 3}}\n",
        soon(5)
    );
    repo.commit(
        &[
            ("params.py", Some(&script)),
            ("deployments/params.yaml", Some(&text)),
        ],
        "params",
    );
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "the run", || {
        daemon
            .stored_runs("params")
            .iter()
            .any(|r| r.state == RunState::Completed)
            .then_some(())
    });
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(seen, serde_json::json!({"a": 1, "b": 2, "c": 3}));
}

#[test]
fn the_log_cap_holds_under_a_job_that_writes_100_mb() {
    let repo = GitRepo::new();
    let writer = "import sys\nline = 'x' * 1023 + '\\n'\nfor i in range(100 * 1024):\n    sys.stdout.write(line)\nprint('the last line')\n";
    let text = manifest(
        "chatty",
        "python3 chatty.py",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    repo.commit(
        &[
            ("chatty.py", Some(writer)),
            ("deployments/chatty.yaml", Some(&text)),
        ],
        "chatty",
    );
    let cap: u64 = 1 << 20;
    let daemon = Daemon::start_with(repo.path(), &["--log-max-bytes", &cap.to_string()]);
    let run = daemon.ended_run("chatty", Duration::from_secs(60));
    assert_eq!(run.state, RunState::Completed);
    let log = daemon
        .state_dir
        .join("logs")
        .join(format!("{}.log", run.id));
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= cap, "log is {size} bytes, cap {cap}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("# sundial: log capped at"),
        "{:?}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.trim_end().ends_with("the last line"),
        "the tail is kept"
    );
}

#[test]
fn a_run_that_outlived_a_killed_daemon_is_ended_crashed_and_retried() {
    let repo = GitRepo::new();
    let text = manifest(
        "survivor",
        "python3 -c \"import os, sys, time; time.sleep(600 if os.environ['SUNDIAL_ATTEMPT'] == '1' else 0)\"",
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "    retries: 1\n",
    );
    repo.commit(&[("deployments/survivor.yaml", Some(&text))], "survivor");
    let mut daemon = Daemon::start(repo.path());
    let pid = wait_until(Duration::from_secs(30), "the run's process", || {
        daemon.stored_runs("survivor").first().and_then(|r| r.pid)
    });
    daemon.kill_9();
    assert!(
        sundial::runner::process::process_group_alive(pid),
        "the job outlives a killed daemon"
    );
    daemon.restart();
    let runs = wait_until(Duration::from_secs(30), "the retry to complete", || {
        let runs = daemon.stored_runs("survivor");
        runs.iter()
            .any(|r| r.attempt == 2 && r.state == RunState::Completed)
            .then_some(runs)
    });
    assert_eq!(runs[0].state, RunState::Crashed);
    assert!(
        runs[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("ended at restart"),
        "{:?}",
        runs[0]
    );
    wait_until(
        Duration::from_secs(10),
        "the old process group gone",
        || (!sundial::runner::process::process_group_alive(pid)).then_some(()),
    );
}
