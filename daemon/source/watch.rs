//! Notice fast that a branch may have moved.
//!
//! Contract: [`watch`] returns a receiver that yields `()` whenever the refs may have
//! changed; the caller then asks [`super::Repo::head`] whether they did. A notification is
//! a hint, never a fact: spurious ones happen, and bursts coalesce into one (the channel
//! holds at most one pending `()`). Sources:
//! - inotify (through `notify`) on the git directory itself (`HEAD`, `packed-refs`; git
//!   replaces files by rename, so directories are watched, not files) and on `refs/`
//!   recursively. Reads never notify (open/access events are ignored), so the caller's
//!   own `head()` cannot trigger itself.
//! - a tick every `poll_interval`, the safety net for file systems without inotify
//!   (network mounts) and for a git directory that does not exist yet; watching starts on
//!   the first tick that finds it.
//!
//! At once, then once more after the burst: the first event that can mean a ref moved
//! (a ref file renamed into place, `HEAD` or `packed-refs` written; git's `*.lock`
//! files are its work in progress and do not count) is reported at once, so a commit is
//! applied without waiting; further events are coalesced and reported again after 50 ms
//! without any, or 200 ms after the first, so the end of a long `git fetch` is seen too.
//! Dropping the receiver stops the background task and the inotify watches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};

/// Quiet time that ends a burst of events.
const QUIET: Duration = Duration::from_millis(50);
/// The longest a burst may delay its notification.
const MAX_DELAY: Duration = Duration::from_millis(200);
/// Poll intervals below this are raised to it.
const MIN_POLL: Duration = Duration::from_millis(10);

/// Starts watching `git_dir` (see [`super::Repo::git_dir`]) and returns the receiver of
/// its notifications. Never fails: when inotify cannot be used (no such directory yet,
/// watch limits reached) it logs a warning and relies on the `poll_interval` tick.
/// Must be called inside a tokio runtime (it spawns the task that debounces).
pub fn watch(git_dir: &Path, poll_interval: Duration) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    let raw = Arc::new(Notify::new());
    // Set up before returning, so a commit made right after this call is seen.
    let watcher = start(git_dir, &raw);
    let poll = poll_interval.max(MIN_POLL);
    tokio::spawn(run(git_dir.to_path_buf(), poll, raw, watcher, tx));
    rx
}

async fn run(
    git_dir: PathBuf,
    poll: Duration,
    raw: Arc<Notify>,
    mut watcher: Option<RecommendedWatcher>,
    tx: mpsc::Sender<()>,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + poll, poll);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick() => {
                if watcher.is_none() && git_dir.is_dir() {
                    watcher = start(&git_dir, &raw);
                    if watcher.is_some() {
                        tracing::info!(git_dir = %git_dir.display(), "watching the git directory for new commits");
                    }
                }
            }
            () = raw.notified() => {
                // The leading edge: the ref has most likely moved already.
                let _ = tx.try_send(());
                debounce(&raw).await;
            }
        }
        // Full means a notification is already pending: that one covers this change too.
        let _ = tx.try_send(());
    }
}

/// Waits until events stop for [`QUIET`], or [`MAX_DELAY`] after the first one.
async fn debounce(raw: &Notify) {
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let quiet_end = (Instant::now() + QUIET).min(deadline);
        tokio::select! {
            () = raw.notified() => {
                if Instant::now() >= deadline {
                    return;
                }
            }
            () = tokio::time::sleep_until(quiet_end) => return,
        }
    }
}

/// Watches `git_dir` and its `refs/`, or logs why it cannot and returns `None`.
fn start(git_dir: &Path, raw: &Arc<Notify>) -> Option<RecommendedWatcher> {
    if !git_dir.is_dir() {
        tracing::warn!(
            git_dir = %git_dir.display(),
            "the git directory does not exist yet; polling for new commits until it does"
        );
        return None;
    }
    let raw = Arc::clone(raw);
    let dir = git_dir.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if !relevant(&dir, &event) => {}
        Ok(_) => raw.notify_one(),
        // A lost event (queue overflow) may have been a ref: look.
        Err(_) => raw.notify_one(),
    };
    let warn = |e: notify::Error| {
        tracing::warn!(
            git_dir = %git_dir.display(),
            error = %e,
            "cannot watch the git directory (raise fs.inotify.max_user_watches if that is \
             the cause); polling for new commits instead"
        );
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(warn).ok()?;
    watcher
        .watch(git_dir, RecursiveMode::NonRecursive)
        .map_err(warn)
        .ok()?;
    let refs = git_dir.join("refs");
    if refs.is_dir() {
        watcher
            .watch(&refs, RecursiveMode::Recursive)
            .map_err(warn)
            .ok()?;
    }
    Some(watcher)
}

/// Whether an event may mean a ref moved: any change under `refs/`, and changes of
/// `HEAD` or `packed-refs` in the git directory itself; never a mere read, nor a lock
/// file (git writes `X.lock`, then renames it to `X`: the rename's `X` is the event),
/// nor the index, logs or objects that git also writes there.
fn relevant(git_dir: &Path, event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    let refs = git_dir.join("refs");
    event.paths.is_empty()
        || event.paths.iter().any(|path| {
            if path.extension().is_some_and(|e| e == "lock") {
                return false;
            }
            if path.starts_with(&refs) || path == git_dir {
                return true;
            }
            let top = path.parent() == Some(git_dir);
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            top && (name.starts_with("HEAD") || name.starts_with("packed-refs"))
        })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{open, Fixture};
    use super::*;
    use tokio::time::timeout;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Receives the next notification within `limit`, failing the test otherwise.
    async fn next(rx: &mut mpsc::Receiver<()>, limit: Duration, what: &str) {
        match timeout(limit, rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("{what}: the watch task ended"),
            Err(_) => panic!("{what}: no notification within {limit:?}"),
        }
    }

    /// Empties the channel of notifications that are still arriving (e.g. from setup).
    async fn settle(rx: &mut mpsc::Receiver<()>) {
        while timeout(Duration::from_millis(400), rx.recv()).await.is_ok() {}
    }

    #[tokio::test]
    async fn a_commit_is_noticed_by_inotify() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "v1\n")], "first");
        let git_dir = open(&repo).git_dir();
        // With an hour between ticks, only inotify can deliver within the test.
        let mut rx = watch(&git_dir, HOUR);
        settle(&mut rx).await;
        fx.commit(&repo, &[("prefect.yaml", "v2\n")], "second");
        next(&mut rx, Duration::from_secs(2), "after a commit").await;

        settle(&mut rx).await;
        fx.git(&repo, &["branch", "-q", "other"]);
        fx.git(&repo, &["pack-refs", "--all"]);
        next(&mut rx, Duration::from_secs(2), "after pack-refs").await;
    }

    #[tokio::test]
    async fn a_fetch_into_a_new_refs_directory_is_noticed() {
        let fx = Fixture::new();
        let origin = fx.init("origin");
        fx.commit(&origin, &[("prefect.yaml", "v1\n")], "first");
        let mirror = fx.init("mirror");
        let mut rx = watch(&open(&mirror).git_dir(), HOUR);
        settle(&mut rx).await;
        // refs/remotes/origin/ does not exist yet: the recursive watch must pick it up.
        let url = origin.to_str().unwrap();
        fx.git(
            &mirror,
            &["fetch", "-q", url, "+main:refs/remotes/origin/main"],
        );
        next(&mut rx, Duration::from_secs(2), "after a fetch").await;
    }

    #[tokio::test]
    async fn reading_refs_does_not_notify() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "v1\n")], "first");
        let source = open(&repo);
        let mut rx = watch(&source.git_dir(), HOUR);
        settle(&mut rx).await;
        for _ in 0..5 {
            source.head().unwrap();
            fx.git(&repo, &["log", "-1", "--format=%H"]);
        }
        let got = timeout(Duration::from_millis(500), rx.recv()).await;
        assert!(got.is_err(), "reads must not notify");
    }

    #[tokio::test]
    async fn a_burst_notifies_within_the_debounce_cap_and_coalesces() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(&repo, &[("prefect.yaml", "v1\n")], "first");
        let git_dir = open(&repo).git_dir();
        let mut rx = watch(&git_dir, HOUR);
        settle(&mut rx).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = Arc::clone(&stop);
            let path = git_dir.join("refs/heads/burst");
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(&path, format!("{sha}\n")).unwrap();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        // Events every 10 ms never leave 50 ms of quiet; the cap still lets one through.
        let first = timeout(Duration::from_secs(1), rx.recv()).await;
        // Let the burst go on unread: its notifications pile up as one pending `()`.
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(first.is_ok(), "a burst must not hold back its notification");
        let mut pending = 0;
        while timeout(Duration::from_millis(400), rx.recv()).await.is_ok() {
            pending += 1;
        }
        // Hundreds of events coalesced: the queued `()`, plus the burst's tail that the
        // debouncer may still have been handling (events still in flight when it stopped).
        assert!(
            (1..=3).contains(&pending),
            "{pending} notifications after the burst"
        );
    }

    #[tokio::test]
    async fn polling_alone_ticks_when_the_git_dir_is_absent() {
        let fx = Fixture::new();
        let mut rx = watch(&fx.path("no-such-repo/.git"), Duration::from_millis(50));
        for i in 0..3 {
            next(&mut rx, Duration::from_secs(2), &format!("tick {i}")).await;
        }
    }
}
