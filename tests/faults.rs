//! The disk and the database (issue 12, point 8): a full disk under the state directory
//! (a real tmpfs this test mounts, so it needs root, as CI has) and a database deleted
//! under the running daemon; a row the database refuses (a value over its limit).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sundial::store::RunState;

use crate::support::daemon::{manifest, soon, wait_until, Daemon, GitRepo, Setup};

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    #[track_caller]
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with one file; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut file, &block).is_ok() {}
        let _ = std::io::Write::write_all(&mut file, &[0u8; 512]);
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_keeps_the_daemon_up_says_so_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount("16m");
    let repo = GitRepo::new();
    let text = manifest("tick", "echo tick", "interval: 1", "");
    repo.commit(&[("deployments/t.yaml", Some(&text))], "tick");
    let daemon = Daemon::launch_in(repo.path(), &disk.path().join("state"), Setup::default());
    daemon.completed("tick");
    let filler = disk.fill();
    let status = wait_until(
        Duration::from_secs(20),
        "the full disk in the status",
        || {
            let status = daemon.json("/api/status");
            status["store_error"].is_string().then_some(status)
        },
    );
    assert!(
        status["store_error"].as_str().unwrap().contains("is full"),
        "{status}"
    );
    assert_eq!(daemon.get("/healthz").0, 200, "the daemon stays up");
    let metrics = daemon.get("/metrics").1;
    assert!(metrics.contains("sundial_store_disk_full 1"), "{metrics}");
    std::fs::remove_file(filler).unwrap();
    let full_until = chrono::Utc::now();
    wait_until(Duration::from_secs(20), "the status to clear", || {
        daemon.json("/api/status")["store_error"]
            .is_null()
            .then_some(())
    });
    wait_until(
        Duration::from_secs(20),
        "a run after the disk freed",
        || {
            daemon
                .stored_runs("tick")
                .iter()
                .any(|r| r.state == RunState::Completed && r.started_at.unwrap() > full_until)
                .then_some(())
        },
    );
    // No end was lost: every run of the full-disk time ends, recorded once space returned.
    wait_until(Duration::from_secs(20), "every earlier run to end", || {
        daemon
            .stored_runs("tick")
            .iter()
            .filter(|r| r.scheduled_for.is_some_and(|at| at < full_until))
            .all(|r| r.state.is_final())
            .then_some(())
    });
    // Nothing vanished: every second from the first slot to the last has a row.
    let runs = daemon.stored_runs("tick");
    let slots: std::collections::BTreeSet<_> =
        runs.iter().filter_map(|r| r.scheduled_for).collect();
    let (first, last) = (*slots.first().unwrap(), *slots.last().unwrap());
    assert_eq!(
        slots.len() as i64,
        (last - first).num_seconds() + 1,
        "a slot of the full-disk time vanished: {runs:?}"
    );
    assert!(
        daemon
            .log()
            .contains("the state database is writable again"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_deleted_state_database_stops_the_daemon_loudly_after_ending_its_jobs() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let pid_file = marks.path().join("job.pid");
    let text = manifest(
        "long",
        &format!("sh -c 'echo $$ > {}; exec sleep 300'", pid_file.display()),
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    repo.commit(&[("deployments/l.yaml", Some(&text))], "long");
    let mut daemon = Daemon::start(repo.path());
    let pid: u32 = wait_until(Duration::from_secs(30), "the job's pid", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let old_log = wait_until(Duration::from_secs(10), "the job's log", || {
        let log = daemon.run_log(1);
        (!log.is_empty()).then_some(log)
    });
    std::fs::remove_file(daemon.state_dir.join("state.db")).unwrap();
    let code = daemon.wait_exit(Duration::from_secs(30));
    assert_ne!(code, Some(0), "{}", daemon.log());
    assert!(
        daemon
            .log()
            .contains("was deleted or replaced while the daemon ran"),
        "{}",
        daemon.log()
    );
    assert!(
        !sundial::runner::contain::alive(pid),
        "the job outlived the daemon"
    );
    // The next start makes a new database, and run 1 of it does not share a log file
    // with the old run 1.
    daemon.restart();
    assert!(
        std::fs::read_dir(&daemon.state_dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("logs.before-")),
        "the old logs were not set aside"
    );
    assert_ne!(daemon.run_log(1), old_log);
}

/// libfaketime (Debian's package, installed by the test script): the daemon's wall clock
/// follows the offset written in a file, while its monotonic clock stays real.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[test]
fn a_wall_clock_stepped_back_inside_the_arm_window_stalls_nothing_and_shows_in_status() {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: run ./scripts/test.sh, which installs libfaketime"
    );
    let repo = GitRepo::new();
    let text = manifest("tick", "echo tick", "interval: 1", "");
    repo.commit(&[("deployments/t.yaml", Some(&text))], "tick");
    let clock = tempfile::tempdir().unwrap();
    let offset = clock.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let daemon = Daemon::launch(
        repo.path(),
        Setup {
            env: vec![
                ("LD_PRELOAD".into(), FAKETIME.into()),
                (
                    "FAKETIME_TIMESTAMP_FILE".into(),
                    offset.display().to_string(),
                ),
                ("FAKETIME_NO_CACHE".into(), "1".into()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ],
            ..Setup::default()
        },
    );
    daemon.completed("tick");
    // Step the clock back an hour 10 ms before a second boundary: the next slot is armed
    // and its attempt waits to spawn on the dot.
    let now = chrono::Utc::now();
    let boundary =
        now + chrono::Duration::milliseconds(2000 - i64::from(now.timestamp_subsec_millis()));
    // Precisely: a poll would land anywhere in its 25 ms period, so the last moments are
    // spun (at most 2 s of this test's own time).
    let step_at = boundary - chrono::Duration::milliseconds(10);
    while chrono::Utc::now() < step_at {
        std::hint::spin_loop();
    }
    std::fs::write(&offset, "-3600\n").unwrap();
    // The daemon keeps answering (one thread: a stalled spin would block the API too).
    for _ in 0..10 {
        let asked = std::time::Instant::now();
        assert_eq!(daemon.get("/healthz").0, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the daemon stalled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Noticed at the next wake-up (at most MAX_SLEEP, 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = daemon.json("/api/status");
        if status["clock_warning"].is_string() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clock warning: {status}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status["clock_warning"]
            .as_str()
            .unwrap()
            .contains("the wall clock was stepped back by"),
        "{status}"
    );
    // The clock comes back: the warning clears and slots fire again.
    std::fs::write(&offset, "+0\n").unwrap();
    let back = chrono::Utc::now();
    wait_until(Duration::from_secs(15), "the warning to clear", || {
        daemon.json("/api/status")["clock_warning"]
            .is_null()
            .then_some(())
    });
    wait_until(
        Duration::from_secs(10),
        "a run after the clock came back",
        || {
            daemon
                .stored_runs("tick")
                .iter()
                .any(|r| r.state == RunState::Completed && r.started_at.unwrap() > back)
                .then_some(())
        },
    );
}

/// Makes files immutable (`chattr +i`, ext4 and most Linux file systems; root) and undoes
/// it on drop, so the temporary directory can be removed.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    #[track_caller]
    fn set(paths: Vec<PathBuf>) -> Immutable {
        for path in &paths {
            let out = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .output()
                .expect("run chattr");
            assert!(
                out.status.success(),
                "chattr +i {} (needs root and a file system with attributes, as CI has): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(path)
                .status();
        }
    }
}

#[test]
fn an_unwritable_state_database_stops_the_daemon_loudly_after_ending_its_jobs() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let pid_file = marks.path().join("job.pid");
    let long = manifest(
        "long",
        &format!("sh -c 'echo $$ > {}; exec sleep 300'", pid_file.display()),
        &format!("interval: 3600\n        anchor_date: \"{}\"", soon(5)),
        "",
    );
    let tick = manifest("tick", "echo tick", "interval: 1", "");
    repo.commit(
        &[
            ("deployments/l.yaml", Some(&long)),
            ("deployments/t.yaml", Some(&tick)),
        ],
        "two",
    );
    let mut daemon = Daemon::start(repo.path());
    let pid: u32 = wait_until(Duration::from_secs(30), "the job's pid", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    // Writes through the daemon's open descriptors now fail (EPERM), as on a disk that
    // turned read-only under it.
    let db = daemon.state_dir.join("state.db");
    let _unwritable = Immutable::set(vec![db.clone(), db.with_extension("db-wal")]);
    let code = daemon.wait_exit(Duration::from_secs(30));
    assert_ne!(code, Some(0), "{}", daemon.log());
    assert!(
        daemon.log().contains("the state database failed")
            && daemon
                .log()
                .contains("ending the running jobs, then stopping"),
        "{}",
        daemon.log()
    );
    assert!(
        !sundial::runner::contain::alive(pid),
        "the job outlived the daemon"
    );
}

/// A row the state database refuses (a value over its limit, lowered here with
/// `SUNDIAL_STORE_MAX_VALUE`) fails that run, that trigger or that record with the reason;
/// the store is fine, so the daemon and every other deployment go on.
#[test]
fn a_row_the_store_refuses_fails_that_run_and_the_daemon_goes_on() {
    let repo = GitRepo::new();
    let blob = "x".repeat(6000);
    let big = manifest(
        "big",
        "echo big",
        "interval: 1",
        &format!("    parameters:\n      blob: {blob}\n"),
    );
    let tick = manifest("tick", "echo tick", "interval: 1", "");
    repo.commit(
        &[
            ("deployments/b.yaml", Some(&big)),
            ("deployments/t.yaml", Some(&tick)),
        ],
        "big and tick",
    );
    let setup = Setup {
        env: vec![("SUNDIAL_STORE_MAX_VALUE".into(), "4096".into())],
        ..Setup::default()
    };
    let daemon = Daemon::launch(repo.path(), setup);
    // Each slot of `big` is claimed once, as a run that failed without starting.
    let runs = daemon.runs_when("big", Duration::from_secs(30), "two failed slots", |runs| {
        runs.iter().filter(|r| r.state == RunState::Failed).count() >= 2
    });
    for run in &runs {
        assert!(run.started_at.is_none() && run.pid.is_none(), "{run:?}");
        assert_eq!(run.parameters, serde_json::json!({}), "{run:?}");
        // A slot a stalled machine let pass is recorded Skipped (missed), also without
        // its parameters; every other one failed with the reason.
        if run.state == RunState::Skipped && run.reason.as_deref() == Some("missed") {
            continue;
        }
        assert_eq!(run.state, RunState::Failed, "{run:?}");
        let reason = run.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("refused its row") && reason.contains("SUNDIAL_STORE_MAX_VALUE"),
            "{reason}"
        );
    }
    let mut slots: Vec<_> = runs.iter().map(|r| r.scheduled_for).collect();
    slots.dedup();
    assert_eq!(slots.len(), runs.len(), "a slot recorded twice: {runs:#?}");
    // Nothing of `big` ran, and the other deployment did.
    assert!(
        !daemon.log().contains("big: run 1 Completed"),
        "{}",
        daemon.log()
    );
    daemon.completed("tick");

    // A manual run whose row is refused is answered 413, and nothing is recorded.
    let body = format!("{{\"parameters\": {{\"blob\": \"{blob}\"}}}}");
    let (code, answer) = daemon.post("/api/deployments/tick/runs", &body, Some(&daemon.token()));
    assert_eq!(code, 413, "{answer}");
    assert!(answer.contains("refused this run's row"), "{answer}");

    // A commit whose findings are too large to record is recorded one line per file.
    let mut bad = String::from("deployments:\n");
    for i in 0..80 {
        bad.push_str(&format!(
            "  - name: bad-{i}\n    colour: red\n    work_pool:\n      job_variables:\n        command: echo\n"
        ));
    }
    let head = repo.commit(&[("deployments/x.yaml", Some(&bad))], "many errors");
    daemon.wait_applied(&head);
    assert!(
        daemon.log().contains("too large to record"),
        "{}",
        daemon.log()
    );
    let done = daemon.completed("tick").len();
    daemon.runs_when("tick", Duration::from_secs(30), "tick going on", |runs| {
        runs.len() > done
    });
    assert!(
        sundial::runner::contain::alive(daemon.pid()),
        "{}",
        daemon.log()
    );
}
