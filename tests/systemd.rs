//! Running under systemd, without systemd: the real daemon notifies a unix datagram
//! socket the test binds (a path, and an abstract name), logs for journald when its
//! stderr is `$JOURNAL_STREAM`, and `systemd/sundial.service` passes `systemd-analyze
//! verify`. Every wait polls a condition with a deadline.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::support::daemon::{wait_until, GitRepo};
use crate::support::{require_tool, sundial};

const WAIT: Duration = Duration::from_secs(30);

const ETL: &str = "deployments:\n  - name: etl\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - cron: \"0 9 * * *\"\n        timezone: America/Chicago\n";

const REPORT: &str = "deployments:\n  - name: report\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - cron: \"30 7 * * *\"\n        timezone: Europe/Madrid\n";

/// A datagram socket standing in for systemd's notify socket; a thread records every
/// message with the instant it arrived.
struct NotifySocket {
    /// The value for `$NOTIFY_SOCKET`.
    name: String,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    _dir: Option<tempfile::TempDir>,
}

impl NotifySocket {
    fn at_path() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket::listen(socket, path.display().to_string(), Some(dir))
    }

    fn abstract_name() -> NotifySocket {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("sundial-test-{}-{nanos}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        NotifySocket::listen(socket, format!("@{name}"), None)
    }

    fn listen(socket: UnixDatagram, name: String, dir: Option<tempfile::TempDir>) -> NotifySocket {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, done) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    log.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            name,
            received,
            stop,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// The first message at index `from` or later holding the line `line` (or starting
    /// with it, for `KEY=`); returns its index and text.
    #[track_caller]
    fn wait_for(&self, from: usize, line: &str) -> (usize, String) {
        wait_until(WAIT, &format!("a notification with {line:?}"), || {
            self.messages()
                .into_iter()
                .enumerate()
                .skip(from)
                .find(|(_, (_, m))| m.lines().any(|l| l.starts_with(line)))
                .map(|(i, (_, m))| (i, m))
        })
    }

    /// Every `STATUS=` value sent, in order.
    fn statuses(&self) -> Vec<String> {
        self.messages()
            .iter()
            .flat_map(|(_, m)| m.lines().filter_map(|l| l.strip_prefix("STATUS=")))
            .map(str::to_string)
            .collect()
    }

    fn watchdog_pings(&self) -> Vec<Instant> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(at, _)| at)
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A daemon started the way systemd starts it, in its own process group (killed on drop).
struct Service {
    child: Option<Child>,
    url: String,
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl Service {
    /// Starts `sundial daemon` on `repo` with `env` added to a clean systemd-free one.
    fn start(repo: &Path, env: &[(&str, &str)]) -> Service {
        Service::start_with(repo, env, |_| Vec::new())
    }

    /// As [`Service::start`]; `more_env` may name the log file (for `JOURNAL_STREAM`).
    fn start_with(
        repo: &Path,
        env: &[(&str, &str)],
        more_env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Service {
        let state = tempfile::tempdir().unwrap();
        let log = state.path().join("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = sundial();
        command
            .args(["daemon", "--repo"])
            .arg(repo)
            .arg("--state-dir")
            .arg(state.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--poll-interval",
                "1",
                "--grace",
                "2",
            ])
            .env("SUNDIAL_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("SUNDIAL_LOG_FORMAT")
            .envs(env.iter().copied())
            .envs(more_env(&log))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        // The daemon binds port 0 itself and writes its address to `url`: no port is
        // handed over from a closed socket that another process could take meanwhile.
        let url_file = state.path().join("url");
        let mut service = Service {
            child: Some(command.spawn().expect("start the daemon")),
            url: String::new(),
            log,
            _state: state,
        };
        service.url = wait_until(WAIT, "the daemon's url file", || {
            let text = std::fs::read_to_string(&url_file).ok()?;
            let url = text.trim();
            (url.starts_with("http://") && !url.ends_with(":0")).then(|| url.to_string())
        });
        service
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// The status of `GET /readyz` (0 when nothing answers).
    fn readyz(&self) -> u16 {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        match agent.get(&format!("{}/readyz", self.url)).call() {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits for the process to exit; returns its exit code.
    #[track_caller]
    fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = wait_until(WAIT, "the daemon to exit", || child.try_wait().unwrap());
        status.code()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn monotonic_usec() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

/// Lets time pass (the condition *is* time passing).
fn wait_past(instant: Instant) {
    wait_until(WAIT, "time to pass", || {
        (Instant::now() >= instant).then_some(())
    });
}

#[test]
fn notifications_follow_start_status_watchdog_reload_and_stop() {
    let repo = GitRepo::new();
    let first = repo.commit(&[("deployments/etl.yaml", Some(ETL))], "etl");
    let notify = NotifySocket::at_path();
    let mut service = Service::start(
        repo.path(),
        &[("NOTIFY_SOCKET", &notify.name), ("WATCHDOG_USEC", "400000")],
    );

    // READY=1 only once the first commit is applied, with the status line.
    let (ready_at, ready) = notify.wait_for(0, "READY=1");
    assert_eq!(service.readyz(), 200, "READY=1 came before /readyz is 200");
    let expected = format!(
        "STATUS=commit {}, 1 deployment, next: etl at 09:00 America/Chicago, 0 errors",
        &first[..7]
    );
    assert!(
        ready.lines().any(|l| l == expected),
        "{ready:?} lacks {expected:?}"
    );

    // A new commit changes the status line.
    let second = repo.commit(&[("deployments/report.yaml", Some(REPORT))], "report");
    let (_, changed) = notify.wait_for(ready_at + 1, &format!("STATUS=commit {}", &second[..7]));
    assert!(
        changed.contains(", 2 deployments, next: ") && changed.ends_with(", 0 errors"),
        "{changed:?}"
    );

    // WATCHDOG=1 every ~200 ms (half of WATCHDOG_USEC), counted over a measured window.
    let window_start = Instant::now();
    let window = Duration::from_millis(1500);
    wait_past(window_start + window);
    let pings = notify
        .watchdog_pings()
        .into_iter()
        .filter(|at| *at >= window_start && *at < window_start + window)
        .count();
    assert!(
        (3..=10).contains(&pings),
        "{pings} WATCHDOG=1 in {window:?}; expected one about every 200 ms"
    );

    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 after the re-sync.
    let seen = notify.messages().len();
    let hup_at = monotonic_usec();
    service.signal(Signal::SIGHUP);
    let (reload_at, reloading) = notify.wait_for(seen, "RELOADING=1");
    let received_at = monotonic_usec();
    let stamp: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("{reloading:?} lacks MONOTONIC_USEC="))
        .parse()
        .unwrap();
    assert!(
        (hup_at..=received_at).contains(&stamp),
        "MONOTONIC_USEC={stamp} is not between {hup_at} and {received_at}"
    );
    let (_, ready_again) = notify.wait_for(reload_at + 1, "READY=1");
    assert!(
        ready_again.contains(&format!("STATUS=commit {}", &second[..7])),
        "{ready_again:?}"
    );

    // The status is sent when it changes, never twice the same in a row.
    let statuses = notify.statuses();
    for pair in statuses.windows(2) {
        assert_ne!(pair[0], pair[1], "a repeated STATUS in {statuses:#?}");
    }

    // SIGTERM: STOPPING=1, then a clean exit.
    let seen = notify.messages().len();
    service.signal(Signal::SIGTERM);
    notify.wait_for(seen, "STOPPING=1");
    assert_eq!(service.wait_exit(), Some(0), "{}", service.log());
    // READY=1 twice in all: at the first apply and after the reload, not at every sync.
    let readies = notify
        .messages()
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .count();
    assert_eq!(readies, 2, "{:#?}", notify.messages());
}

#[test]
fn an_unreadable_repository_still_reports_ready_on_an_abstract_socket() {
    let missing = tempfile::tempdir().unwrap();
    let repo = missing.path().join("not-cloned-yet");
    let notify = NotifySocket::abstract_name();
    // WATCHDOG_PID names another process: the watchdog is not ours to feed.
    let mut service = Service::start(
        &repo,
        &[
            ("NOTIFY_SOCKET", &notify.name),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let (_, ready) = notify.wait_for(0, "READY=1");
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("{ready:?} lacks STATUS="));
    assert!(
        status.starts_with("no commit applied yet: no git repository at "),
        "{status:?}"
    );
    assert_eq!(service.readyz(), 503, "ready without a commit");

    wait_past(Instant::now() + Duration::from_millis(1000));
    assert_eq!(notify.watchdog_pings(), Vec::<Instant>::new());

    let seen = notify.messages().len();
    service.signal(Signal::SIGTERM);
    notify.wait_for(seen, "STOPPING=1");
    assert_eq!(service.wait_exit(), Some(0), "{}", service.log());
}

/// Starts a daemon with `env`, waits until it is ready, stops it, returns its log.
fn log_of_a_run(env: &[(&str, &str)], journal: bool) -> String {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/etl.yaml", Some(ETL))], "etl");
    let mut service = Service::start_with(repo.path(), env, |log| {
        let meta = std::fs::metadata(log).unwrap();
        let stream = format!("{}:{}", meta.dev(), meta.ino());
        if journal {
            vec![("JOURNAL_STREAM".into(), stream)]
        } else {
            Vec::new()
        }
    });
    wait_until(WAIT, "the daemon to be ready", || {
        (service.readyz() == 200).then_some(())
    });
    service.signal(Signal::SIGTERM);
    assert_eq!(service.wait_exit(), Some(0), "{}", service.log());
    service.log()
}

#[test]
fn logs_to_the_journal_carry_syslog_priorities_and_no_timestamp() {
    let log = log_of_a_run(&[], true);
    assert!(log.contains("<6>sundial "), "{log}");
    for line in log.lines() {
        let rest = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or_else(|| panic!("{line:?} has no syslog priority prefix"));
        assert!(
            !rest.starts_with(|c: char| c.is_ascii_digit()),
            "{line:?} carries a timestamp"
        );
    }
}

#[test]
fn logs_are_human_when_journal_stream_is_another_file_and_json_on_request() {
    let human = log_of_a_run(&[("JOURNAL_STREAM", "1:1")], false);
    assert!(!human.contains("<6>"), "{human}");
    assert!(human.contains(" INFO sundial "), "{human}");

    let json = log_of_a_run(&[("SUNDIAL_LOG_FORMAT", "json")], true);
    let mut messages = Vec::new();
    for line in json.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(value["level"].is_string(), "{line}");
        let message = value["fields"]["message"].as_str();
        messages.push(
            message
                .unwrap_or_else(|| panic!("no message in {line}"))
                .to_string(),
        );
    }
    // An empty log would pass the loop: the start and the loaded commit must be there.
    assert!(
        messages.iter().any(|m| m.starts_with("sundial "))
            && messages.iter().any(|m| m.starts_with("loaded commit ")),
        "{json}"
    );
}

/// `systemd/sundial.service` with `ExecStart=` pointing at the binary under test, which
/// `systemd-analyze verify` insists exists; in a temporary directory.
fn unit_for_verify() -> (tempfile::TempDir, PathBuf) {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/sundial.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/sundial daemon"));
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/sundial ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_sundial")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sundial.service");
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

#[test]
fn the_unit_passes_systemd_analyze_verify_without_warnings() {
    let analyze = require_tool("systemd-analyze");
    let (_dir, unit) = unit_for_verify();
    // --man=no: the unit's Documentation= is a URL, and minimal images lack man pages.
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // verify exits 0 on unknown keys and bad values, so any output is a finding.
    assert_eq!(stderr, "", "systemd-analyze verify warned");
}

#[test]
fn the_unit_sandbox_scores_as_well_exposed_as_it_did() {
    let analyze = require_tool("systemd-analyze");
    let (_dir, unit) = unit_for_verify();
    let out = std::process::Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("sundial.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    assert!(score <= 1.2, "exposure {score} (1.2 is promised):\n{text}");
    // The score moves little per directive, so each promised one is checked by name.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let lines: Vec<&str> = unit_text.lines().map(str::trim).collect();
    for directive in [
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateUsers=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
        "UMask=0077",
    ] {
        assert!(lines.contains(&directive), "the unit lost `{directive}`");
    }
}

#[test]
fn the_watchdog_is_fed_through_a_graceful_stop() {
    let repo = GitRepo::new();
    let marks = tempfile::tempdir().unwrap();
    let ready = marks.path().join("ignoring-term");
    // The job says when it ignores SIGTERM, so the stop cannot come before the trap.
    let stubborn = format!(
        "deployments:\n  - name: stubborn\n    work_pool:\n      job_variables:\n        command: sh -c 'trap \"\" TERM; touch {}; sleep 60'\n    schedules:\n      - interval: 3600\n        anchor_date: \"{}\"\n",
        ready.display(),
        crate::support::daemon::soon(5)
    );
    repo.commit(&[("deployments/s.yaml", Some(&stubborn))], "stubborn");
    let notify = NotifySocket::at_path();
    let mut service = Service::start(
        repo.path(),
        &[("NOTIFY_SOCKET", &notify.name), ("WATCHDOG_USEC", "400000")],
    );
    notify.wait_for(0, "READY=1");
    wait_until(WAIT, "the stubborn job to ignore SIGTERM", || {
        ready.exists().then_some(())
    });
    let seen = notify.messages().len();
    service.signal(Signal::SIGTERM);
    let (stopping_at, _) = notify.wait_for(seen, "STOPPING=1");
    assert_eq!(service.wait_exit(), Some(0), "{}", service.log());
    // The job ignored SIGTERM for the whole 2 s grace: pings every ~200 ms meanwhile.
    let stopping = notify.messages()[stopping_at].0;
    let during = notify
        .watchdog_pings()
        .into_iter()
        .filter(|at| *at > stopping && *at < stopping + Duration::from_millis(1800))
        .count();
    assert!(
        during >= 5,
        "{during} WATCHDOG=1 in the 1.8 s after STOPPING=1\n{}",
        service.log()
    );
}

#[test]
fn a_failed_run_and_its_stderr_are_warnings_in_the_journal() {
    let repo = GitRepo::new();
    let text = format!(
        "deployments:\n  - name: noisy\n    work_pool:\n      job_variables:\n        command: sh -c 'echo fine; echo broken >&2; exit 3'\n        stream_output: true\n    schedules:\n      - interval: 3600\n        anchor_date: \"{}\"\n",
        crate::support::daemon::soon(5)
    );
    repo.commit(&[("deployments/n.yaml", Some(&text))], "noisy");
    let mut service = Service::start_with(repo.path(), &[], |log| {
        let meta = std::fs::metadata(log).unwrap();
        vec![(
            "JOURNAL_STREAM".into(),
            format!("{}:{}", meta.dev(), meta.ino()),
        )]
    });
    wait_until(WAIT, "the run to end", || {
        service.log().contains("noisy: run 1 Failed").then_some(())
    });
    service.signal(Signal::SIGTERM);
    assert_eq!(service.wait_exit(), Some(0), "{}", service.log());
    let log = service.log();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {log}"))
            .to_string()
    };
    assert!(line("broken").starts_with("<4>"), "{log}");
    assert!(line("fine").starts_with("<6>"), "{log}");
    assert_eq!(
        line("noisy: run 1 Failed"),
        "<4>noisy: run 1 Failed (exit code 3)"
    );
}
