//! File descriptors (issue 12.5): the real daemon under the 1024-descriptor limit systemd
//! gives services, flooded with more half-sent HTTP requests than that, keeps starting and
//! completing its scheduled runs; the half-sent requests are closed after the header
//! timeout; the soft limit is raised to the hard one at start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sundial::store::RunState;

use crate::support::daemon::{wait_until, Daemon, GitRepo, Setup};

/// An every-second interval whose job ends at once.
const TICK: &str = "deployments:\n  - name: tick\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - interval: 1\n";

/// The header-read timeout the daemon promises (`api::serve::Limits::HEADER_TIMEOUT`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Descriptors the daemon has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// This test process opens more sockets than the daemon may: raise its own soft limit.
#[track_caller]
fn allow_this_process(open_files: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= open_files,
        "this test needs {open_files} open files; the hard limit here is {hard}"
    );
    if soft < open_files {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

#[test]
fn half_sent_requests_past_the_open_file_limit_no_longer_crash_scheduled_runs() {
    const FLOOD: usize = 1100;
    allow_this_process(FLOOD as u64 + 200);
    let repo = GitRepo::new();
    repo.commit(&[("deployments/tick.yaml", Some(TICK))], "tick");
    let daemon = Daemon::launch(
        repo.path(),
        Setup {
            open_files: Some((1024, 1024)),
            ..Setup::default()
        },
    );
    let pid = daemon.pid();

    // Any local user can do this: no token is needed to open a connection.
    let flood_started = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut stream = TcpStream::connect(daemon.listen()).expect("connect");
        // A connection over the cap may already be closed; the write may then fail.
        let _ = stream.write_all(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        flood.push(stream);
    }
    // Only runs started once every connection is open count.
    let first_new_run = daemon
        .stored_runs("tick")
        .last()
        .map_or(1, |run| run.id + 1);
    let mut peak = 0;
    wait_until(
        Duration::from_secs(30),
        "three scheduled runs started during the flood to complete",
        || {
            peak = peak.max(open_fds(pid));
            let runs: Vec<_> = daemon
                .stored_runs("tick")
                .into_iter()
                .filter(|run| run.id >= first_new_run)
                .collect();
            let crashed = runs.iter().find(|run| run.state == RunState::Crashed);
            assert!(
                crashed.is_none(),
                "a scheduled run crashed during the flood: {crashed:?}\n{}",
                daemon.log()
            );
            let completed = runs
                .iter()
                .filter(|run| run.state == RunState::Completed)
                .count();
            (completed >= 3).then_some(())
        },
    );
    assert!(
        flood_started.elapsed() < HEADER_TIMEOUT,
        "the runs completed only after the flood had timed out ({:?})",
        flood_started.elapsed()
    );
    eprintln!("the daemon held at most {peak} descriptors during the flood (limit 1024)");
    assert!(peak < 1024 - 256, "{peak} descriptors open: too few left");

    // Every half-sent request is closed by the daemon after the header timeout (those
    // over the connection cap at once).
    let deadline = flood_started + HEADER_TIMEOUT + Duration::from_secs(15);
    for (i, stream) in flood.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut sink = [0u8; 512];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "half-sent request {i} still open {:?} after it was sent",
                        flood_started.elapsed()
                    )
                }
                Err(_) => break,
            }
        }
    }
    let all_closed = flood_started.elapsed();
    eprintln!("all {FLOOD} half-sent requests were closed {all_closed:?} after the flood began");
    assert!(all_closed >= HEADER_TIMEOUT - Duration::from_secs(1));
    drop(flood);

    assert_eq!(daemon.get("/readyz").0, 200);
    let status = daemon.json("/api/status");
    assert_eq!(status["errors"], serde_json::json!([]), "{status:#}");
    assert_eq!(
        status["source"]["error"],
        serde_json::Value::Null,
        "{status:#}"
    );
    assert!(
        !daemon.log().contains("Too many open files"),
        "{}",
        daemon.log()
    );
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/tick.yaml", Some(TICK))], "tick");
    let daemon = Daemon::launch(
        repo.path(),
        Setup {
            open_files: Some((1024, 4096)),
            ..Setup::default()
        },
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
    assert!(
        daemon.log().contains(
            "open files: at most 4096 (raised from 1024 to the hard limit); \
             the API serves at most 1024 connections at once"
        ),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_half_sent_request_no_longer_holds_up_the_stop() {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/tick.yaml", Some(TICK))], "tick");
    let mut daemon = Daemon::start(repo.path());
    let mut stream = TcpStream::connect(daemon.listen()).expect("connect");
    stream
        .write_all(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // The connection is being served (its head is awaited) before the stop begins.
    wait_until(Duration::from_secs(10), "the connection accepted", || {
        (open_fds(daemon.pid()) > 0).then_some(())
    });
    let asked = Instant::now();
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    let took = asked.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with a half-sent request open");
    assert!(took < HEADER_TIMEOUT, "the stop waited {took:?}");
}
