//! Git faults against the real daemon (issue 12, points 4 and 6): a damaged object at the
//! branch tip, a read that hangs, a deleted branch, a moved repository and a failing
//! fetch. Each is made for real in a real repository; the last good schedule must keep
//! firing, the fault must show in `/api/status` (`source`), `/metrics` and the log, and
//! clear at the first read that succeeds.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sundial::store::RunState;

use crate::support::daemon::{manifest, wait_until, Daemon, GitRepo, Setup};
use crate::support::{git, git_ok};

/// The `source` object of `/api/status`.
fn source(daemon: &Daemon) -> Value {
    daemon.json("/api/status")["source"].clone()
}

/// The value of the metric line that starts with `name ` (labels included in `name`).
fn metric(daemon: &Daemon, name: &str) -> Option<f64> {
    let (code, text) = daemon.get("/metrics");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// How many runs of `tick` completed.
fn completed(daemon: &Daemon) -> usize {
    daemon
        .stored_runs("tick")
        .iter()
        .filter(|r| r.state == RunState::Completed)
        .count()
}

/// Waits until `tick` completed `more` runs beyond those it has now: its schedule fires.
#[track_caller]
fn keeps_firing(daemon: &Daemon, more: usize) {
    let target = completed(daemon) + more;
    wait_until(Duration::from_secs(30), "tick to keep firing", || {
        (completed(daemon) >= target).then_some(())
    });
}

/// Waits until the source error holds `needle`; returns the `source` object.
#[track_caller]
fn source_error(daemon: &Daemon, needle: &str) -> Value {
    wait_until(
        Duration::from_secs(30),
        &format!("a source error with {needle:?}"),
        || {
            let source = source(daemon);
            source["error"]
                .as_str()
                .is_some_and(|e| e.contains(needle))
                .then_some(source)
        },
    )
}

/// Waits until the source error is gone; returns the `source` object.
#[track_caller]
fn source_clear(daemon: &Daemon) -> Value {
    wait_until(Duration::from_secs(30), "the source error to clear", || {
        let source = source(daemon);
        source["error"].is_null().then_some(source)
    })
}

fn rev_parse(repo: &Path, what: &str) -> String {
    let out = git(repo).args(["rev-parse", what]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn loose_object(repo: &Path, id: &str) -> PathBuf {
    repo.join(".git/objects").join(&id[..2]).join(&id[2..])
}

/// A repository whose `main` schedules `tick` every second: (repository, commit).
fn tick_repo() -> (GitRepo, String) {
    let repo = GitRepo::new();
    let sha = repo.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", "echo tick", "interval: 1", "")),
        )],
        "tick",
    );
    (repo, sha)
}

/// Commits a new version of `tick.yaml` (long, so that its compressed object spans
/// several deflate blocks) on a side branch, lets `damage` spoil the loose object of its
/// blob, then moves `main` there: the daemon never sees the commit whole. Returns (the
/// commit, the blob).
fn damaged_tip(repo: &GitRepo, damage: impl FnOnce(&Path)) -> (String, String) {
    git_ok(repo.path(), &["checkout", "-q", "-b", "next"]);
    let mut text = manifest("tick", "echo tick", "interval: 1", "");
    for i in 0..300 {
        text.push_str(&format!(
            "# note {i}: the next version of tick, never deployed\n"
        ));
    }
    let sha = repo.commit(&[("deployments/tick.yaml", Some(&text))], "damaged");
    let blob = rev_parse(repo.path(), "HEAD:deployments/tick.yaml");
    damage(&loose_object(repo.path(), &blob));
    git_ok(repo.path(), &["update-ref", "refs/heads/main", &sha]);
    (sha, blob)
}

/// Cuts a loose object file to half its size: a zlib stream without its end.
fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// Sends SIGTERM; asserts exit 0 and returns how long the stop took.
#[track_caller]
fn stop(daemon: &mut Daemon) -> Duration {
    let started = Instant::now();
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    started.elapsed()
}

/// Regression (issue 12.4): a truncated blob at the branch tip made libgit2 loop forever:
/// nothing was reported, SIGTERM never completed, and after a restart the daemon was never
/// ready and fired nothing.
#[test]
fn a_truncated_blob_at_the_tip_is_reported_while_the_last_good_schedule_fires() {
    let (repo, good) = tick_repo();
    let mut daemon = Daemon::start_with(repo.path(), &["--branch", "main"]);
    keeps_firing(&daemon, 1);
    let (_, blob) = damaged_tip(&repo, truncate);

    let found = source_error(&daemon, &format!("is damaged: object {blob}"));
    assert_eq!(found["kind"], "read", "{found:#}");
    let error = found["error"].as_str().unwrap();
    assert!(error.contains("is truncated"), "{error}");
    assert!(error.contains("run `git fsck` there"), "{error}");
    assert!(found["failures"].as_u64().unwrap() >= 1, "{found:#}");
    assert!(found["since"].is_string(), "{found:#}");
    assert_eq!(daemon.json("/api/status")["commit"], good.as_str());
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(1.0));
    assert!(metric(&daemon, r#"sundial_source_failures_total{kind="read"}"#) >= Some(1.0));
    assert!(
        daemon.log().contains(&format!("object {blob}")),
        "{}",
        daemon.log()
    );
    keeps_firing(&daemon, 2);

    let took = stop(&mut daemon);
    eprintln!("SIGTERM with a damaged tip: stopped in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A start that cannot read the branch runs the last good commit.
    daemon.restart();
    let status = daemon.json("/api/status");
    assert_eq!(status["ready"], true);
    assert_eq!(status["commit"], good.as_str(), "{status:#}");
    source_error(&daemon, &format!("is damaged: object {blob}"));
    keeps_firing(&daemon, 2);
    let took = stop(&mut daemon);
    eprintln!("SIGTERM after a restart with a damaged tip: stopped in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A read that hangs (here: the tip's object is a FIFO nobody writes, as a hung network
/// file system would leave it) is abandoned after `$SUNDIAL_GIT_TIMEOUT`; the engine, the
/// stop and a restart never wait for it, and reading resumes once it ends.
#[test]
fn a_read_that_hangs_is_abandoned_and_never_blocks_the_stop_or_a_restart() {
    let (repo, good) = tick_repo();
    let setup = Setup {
        extra: vec!["--branch".into(), "main".into()],
        env: vec![("SUNDIAL_GIT_TIMEOUT".into(), "2".into())],
        ..Setup::default()
    };
    let mut daemon = Daemon::launch(repo.path(), setup);
    keeps_firing(&daemon, 1);
    let mut object = Vec::new();
    let (tip, blob) = damaged_tip(&repo, |path| {
        object = std::fs::read(path).unwrap();
        std::fs::remove_file(path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success());
    });
    let fifo = loose_object(repo.path(), &blob);

    // Status shows the newest attempt: the time-out, then, while the abandoned read is
    // stuck, that no other starts. The log has both.
    let found = source_error(&daemon, "timed out");
    assert_eq!(found["kind"], "read", "{found:#}");
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(1.0));
    source_error(&daemon, "have still not ended (1 of them)");
    let log = daemon.log();
    assert!(
        log.contains("timed out after 2 s; check it with `git fsck` there"),
        "{log}"
    );
    keeps_firing(&daemon, 2);
    let took = stop(&mut daemon);
    eprintln!("SIGTERM with a read stuck in git: stopped in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    daemon.restart();
    let status = daemon.json("/api/status");
    assert_eq!(status["commit"], good.as_str(), "{status:#}");
    source_error(&daemon, "timed out");
    keeps_firing(&daemon, 2);

    // The file system "recovers": the stuck read ends (a writer comes and goes), the
    // object is whole again, and the next read applies the tip and clears the error.
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .expect("the stuck read holds the FIFO open");
    std::fs::remove_file(&fifo).unwrap();
    drop(writer);
    std::fs::write(&fifo, object).unwrap();
    source_clear(&daemon);
    wait_until(Duration::from_secs(30), "the tip applied", || {
        (daemon.json("/api/status")["commit"] == tip.as_str()).then_some(())
    });
    let took = stop(&mut daemon);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A repository (`origin`) with a 1-second `tick`, cloned to `clone` in `dir`, and the
/// daemon on the clone, fetching `origin`, once `tick` fired.
struct Fetching {
    origin: GitRepo,
    dir: tempfile::TempDir,
    clone: PathBuf,
    daemon: Daemon,
}

fn fetching() -> Fetching {
    let origin = GitRepo::new();
    origin.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", "echo tick", "interval: 1", "")),
        )],
        "tick",
    );
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("clone");
    let url = origin.path().to_str().unwrap();
    git_ok(dir.path(), &["clone", "-q", url, clone.to_str().unwrap()]);
    let daemon = Daemon::start_with(&clone, &["--remote", "origin", "--branch", "main"]);
    keeps_firing(&daemon, 1);
    Fetching {
        origin,
        dir,
        clone,
        daemon,
    }
}

/// Regression (issue 12.6): after the branch was deleted and created again at the same
/// commit, the error stayed until the next new commit, `sundial_sync_errors` stayed 1, and
/// the message said "no commits yet".
#[test]
fn a_deleted_branch_is_reported_missing_and_clears_when_it_is_recreated() {
    let (repo, good) = tick_repo();
    let daemon = Daemon::start_with(repo.path(), &["--branch", "main"]);
    keeps_firing(&daemon, 1);
    assert_eq!(source(&daemon)["error"], Value::Null);
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(0.0));

    git_ok(repo.path(), &["update-ref", "-d", "refs/heads/main"]);
    let found = source_error(&daemon, "does not exist");
    assert_eq!(
        found["error"],
        format!(
            "branch `main` does not exist in {}: create it, or pass the right --branch",
            repo.path().display()
        )
    );
    assert_eq!(found["kind"], "read");
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(1.0));
    assert_eq!(metric(&daemon, "sundial_sync_errors"), Some(0.0));
    keeps_firing(&daemon, 2);

    git_ok(repo.path(), &["update-ref", "refs/heads/main", &good]);
    let cleared = source_clear(&daemon);
    assert_eq!(cleared["kind"], Value::Null);
    assert_eq!(cleared["since"], Value::Null);
    assert!(cleared["failures"].as_u64().unwrap() >= 1, "{cleared:#}");
    assert!(
        cleared["last_success_at"].as_str() > found["since"].as_str(),
        "{cleared:#} {found:#}"
    );
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(0.0));
    assert!(metric(&daemon, r#"sundial_source_failures_total{kind="read"}"#) >= Some(1.0));
    assert!(metric(&daemon, "sundial_last_source_success_timestamp_seconds").is_some());
    assert_eq!(daemon.json("/api/status")["commit"], good.as_str());
    assert!(daemon.log().contains("the repository can be read again"));
}

/// Regression (issue 12.6): after the repository was moved away and back, the error
/// stayed until the next new commit.
#[test]
fn a_moved_repository_is_reported_and_clears_when_it_is_back() {
    let (repo, _) = tick_repo();
    let daemon = Daemon::start_with(repo.path(), &["--branch", "main"]);
    keeps_firing(&daemon, 1);
    let away = repo.path().with_extension("away");
    std::fs::rename(repo.path(), &away).unwrap();
    let found = source_error(&daemon, "no git repository at");
    assert_eq!(found["kind"], "read");
    keeps_firing(&daemon, 2);
    std::fs::rename(&away, repo.path()).unwrap();
    source_clear(&daemon);
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(0.0));
}

/// Regression (issue 12.6): a failing `git fetch` was only a log line; status and metrics
/// said nothing, so deployments silently froze.
#[test]
fn a_failing_fetch_is_shown_apart_and_clears_when_the_url_is_fixed() {
    let Fetching {
        origin,
        dir,
        clone,
        daemon,
    } = fetching();
    let url = origin.path().to_str().unwrap();
    let fetched = source(&daemon);
    assert!(fetched["last_fetch_at"].is_string(), "{fetched:#}");
    assert!(metric(&daemon, "sundial_last_fetch_timestamp_seconds").is_some());

    let gone = dir.path().join("no-such-origin");
    git_ok(
        &clone,
        &["remote", "set-url", "origin", gone.to_str().unwrap()],
    );
    let found = source_error(&daemon, "`git fetch` from remote `origin` failed");
    assert_eq!(found["kind"], "fetch", "{found:#}");
    assert!(
        found["error"].as_str().unwrap().contains("no-such-origin"),
        "{found:#}"
    );
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(1.0));
    assert!(metric(&daemon, r#"sundial_source_failures_total{kind="fetch"}"#) >= Some(1.0));
    let last_fetch = found["last_fetch_at"].clone();
    keeps_firing(&daemon, 2);
    assert_eq!(
        source(&daemon)["last_fetch_at"],
        last_fetch,
        "no fetch succeeded"
    );
    assert_eq!(daemon.json("/api/status")["errors"], serde_json::json!([]));

    git_ok(&clone, &["remote", "set-url", "origin", url]);
    let cleared = source_clear(&daemon);
    assert!(
        cleared["last_fetch_at"].as_str() > last_fetch.as_str(),
        "{cleared:#}"
    );
    assert_eq!(metric(&daemon, "sundial_source_error"), Some(0.0));
    // Fetching works again: a new commit on the remote is deployed.
    let next = origin.commit(&[("README.md", Some("next\n"))], "next");
    wait_until(
        Duration::from_secs(30),
        "the fetched commit applied",
        || (daemon.json("/api/status")["commit"] == next.as_str()).then_some(()),
    );
}

/// The pids of the live processes whose command line holds `mark` (a zombie's is empty).
fn marked(mark: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(mark))
        })
        .collect()
}

/// The daemon stops without leaving a fetch behind: `git fetch`, and what it started, run
/// in a process group of their own, which nothing else ends. Here a fetch that hangs in
/// its upload-pack.
#[test]
fn a_fetch_in_progress_is_ended_when_the_daemon_stops() {
    // The origin and the folder of the clone live as long as the test.
    let Fetching {
        origin: _origin,
        dir: _dir,
        clone,
        mut daemon,
    } = fetching();
    // `; true` keeps the shell (and the mark in its command line) until `sleep` ends.
    let mark = format!("sundial-hanging-fetch-{}", std::process::id());
    let hang = format!("sleep 300; true # {mark}");
    git_ok(&clone, &["config", "remote.origin.uploadpack", &hang]);
    wait_until(Duration::from_secs(30), "a fetch to hang", || {
        (!marked(&mark).is_empty()).then_some(())
    });
    assert_eq!(daemon.terminate(), Some(0));
    wait_until(Duration::from_secs(10), "the hanging fetch to end", || {
        marked(&mark).is_empty().then_some(())
    });
}
