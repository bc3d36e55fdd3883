//! Git work the caller can walk away from.
//!
//! Contract: [`Reads::run`] (async) and [`run_blocking`] do `work` on a thread of its own
//! and wait at most `limit` for it. Past the limit the caller gets
//! [`SourceError::TimedOut`] and goes on; the thread is *abandoned*: detached, never
//! joined (so neither the engine, the API nor the daemon's stop ever waits for it), and
//! its result dropped whenever it ends. The threads are plain OS threads, not tokio's
//! blocking pool, whose shutdown would wait for them.
//!
//! A thread cannot be killed, and a read stuck in libgit2 may never end (a damaged object
//! can make it loop). So work is refused at once with [`SourceError::Stuck`] while the
//! same [`Reads`]' last abandoned thread still runs (one stuck read per purpose: the
//! syncer does not pile up threads poll after poll), and while [`MAX_ABANDONED`]
//! abandoned threads are alive in the process. That bounds the CPU and memory a stuck
//! repository can take; when a stuck thread ends after all, work starts again.
//!
//! Non-goals: cancelling work. What a timed-out thread does later (e.g. write a checkout)
//! must be harmless on its own.

use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::SourceError;

/// Abandoned threads allowed alive at once: one stuck read of the branch, plus one of
/// the last good commit at a start (or one checkout).
pub const MAX_ABANDONED: usize = 2;

/// How long a read of the repository may take before the caller walks away, unless
/// `$SUNDIAL_GIT_TIMEOUT` (seconds) says otherwise.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Abandoned threads still running.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// The thread works and its caller waits.
const RUNNING: u8 = 0;
/// The thread ended while its caller waited.
const DONE: u8 = 1;
/// The caller left; the thread still works.
const LEFT: u8 = 2;
/// The caller left, and the thread ended later.
const LEFT_DONE: u8 = 3;

/// The read time limit: `$SUNDIAL_GIT_TIMEOUT` seconds when set to a positive number,
/// else [`READ_TIMEOUT`].
pub fn read_timeout() -> Duration {
    std::env::var("SUNDIAL_GIT_TIMEOUT")
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .map_or(READ_TIMEOUT, Duration::from_secs_f64)
}

/// Abandoned threads still running in this process.
pub fn abandoned() -> usize {
    ABANDONED.load(Ordering::SeqCst)
}

/// The state a work thread and its waiter share: who finished first decides whether the
/// thread counts as abandoned.
struct Shared(AtomicU8);

impl Shared {
    /// The thread ended; if its waiter had left, it stops counting as abandoned.
    fn finish(&self) {
        if self
            .0
            .compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            self.0.store(LEFT_DONE, Ordering::SeqCst);
            ABANDONED.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Abandoned and still working.
    fn stuck(&self) -> bool {
        self.0.load(Ordering::SeqCst) == LEFT
    }

    /// The waiter gives up; false when the thread finished at this very moment.
    fn leave(&self) -> bool {
        let left = self
            .0
            .compare_exchange(RUNNING, LEFT, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if left {
            ABANDONED.fetch_add(1, Ordering::SeqCst);
        }
        left
    }
}

/// Marks its thread finished when dropped.
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Starts `work` on its own thread; `send` hands its result over.
fn start<T: Send + 'static>(
    repo: &Path,
    what: &'static str,
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
    send: impl FnOnce(Result<T, SourceError>) + Send + 'static,
) -> Result<Arc<Shared>, SourceError> {
    let stuck = abandoned();
    if stuck >= MAX_ABANDONED {
        return Err(SourceError::Stuck {
            repo: repo.to_path_buf(),
            count: stuck,
        });
    }
    let shared = Arc::new(Shared(AtomicU8::new(RUNNING)));
    let mine = Arc::clone(&shared);
    std::thread::Builder::new()
        .name(format!("git {what}"))
        .spawn(move || {
            // Finished even if `work` panics, so the count of abandoned threads holds.
            let finished = Finished(mine);
            let result = work();
            drop(finished);
            send(result);
        })
        .map_err(|source| SourceError::Io {
            action: "start a thread to read",
            path: repo.to_path_buf(),
            source,
        })?;
    Ok(shared)
}

fn timed_out(repo: &Path, what: &'static str, limit: Duration) -> SourceError {
    SourceError::TimedOut {
        repo: repo.to_path_buf(),
        what,
        seconds: limit.as_secs_f64(),
    }
}

/// Work of one purpose (e.g. the syncer's reads of the branch), one thread at a time
/// once one is stuck.
#[derive(Default)]
pub struct Reads {
    last: Option<Arc<Shared>>,
}

impl Reads {
    pub fn new() -> Reads {
        Reads::default()
    }

    /// Runs `work` (`what` names it in errors, e.g. "reading") on its own thread and
    /// waits at most `limit`. Errors: `work`'s own, [`SourceError::TimedOut`] (the thread
    /// is abandoned), [`SourceError::Stuck`] (no thread started), [`SourceError::Io`] when
    /// no thread starts, [`SourceError::Panicked`].
    pub async fn run<T: Send + 'static>(
        &mut self,
        repo: &Path,
        what: &'static str,
        limit: Duration,
        work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SourceError> {
        if self.last.as_ref().is_some_and(|last| last.stuck()) {
            return Err(SourceError::Stuck {
                repo: repo.to_path_buf(),
                count: abandoned().max(1),
            });
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let shared = start(repo, what, work, move |result| {
            let _ = tx.send(result);
        })?;
        self.last = Some(Arc::clone(&shared));
        match tokio::time::timeout(limit, &mut rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(panicked(repo)),
            Err(_) if shared.leave() => Err(timed_out(repo, what, limit)),
            // It finished just as the time ran out: take its answer.
            Err(_) => rx.await.unwrap_or_else(|_| Err(panicked(repo))),
        }
    }
}

/// [`Reads::run`] for one-off work of callers that are a blocking thread themselves
/// (limited by [`MAX_ABANDONED`] only).
pub fn run_blocking<T: Send + 'static>(
    repo: &Path,
    what: &'static str,
    limit: Duration,
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let shared = start(repo, what, work, move |result| {
        let _ = tx.send(result);
    })?;
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(panicked(repo)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) if shared.leave() => {
            Err(timed_out(repo, what, limit))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            rx.recv().unwrap_or_else(|_| Err(panicked(repo)))
        }
    }
}

fn panicked(repo: &Path) -> SourceError {
    SourceError::Panicked {
        repo: repo.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, loose_object, Fixture};
    use super::super::Repo;
    use super::*;
    use crate::manifest::discover::is_default_manifest;
    use std::time::Instant;

    /// Abandoned threads are counted process-wide, so the body runs in a child process
    /// (this test again, see `testing::in_child`), where no other test reads a repository.
    #[test]
    fn reads_that_hang_are_abandoned_and_capped() {
        const NAME: &str = "source::bounded::tests::reads_that_hang_are_abandoned_and_capped";
        if !crate::source::testing::is_child(NAME) {
            let out = crate::source::testing::in_child(NAME, &[])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        // A FIFO in place of the blob: opening it blocks, as a hung file system would.
        let blob = fx.git(&repo, &["rev-parse", "HEAD:prefect.yaml"]);
        let fifo = loose_object(&repo, &blob);
        let object = std::fs::read(&fifo).unwrap();
        std::fs::remove_file(&fifo).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let snapshot = {
            let cfg = config(&repo, "main");
            move || {
                let repo = Repo::open(&cfg)?;
                repo.snapshot(&sha, &is_default_manifest)
            }
        };

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let limit = Duration::from_millis(300);
        let mut reads = Reads::new();
        let err = runtime
            .block_on(reads.run(&repo, "reading", limit, snapshot.clone()))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            format!(
                "reading the git repository at {} timed out after 0.3 s; check it with `git \
                 fsck` there (a damaged object can make a read loop forever)",
                repo.display()
            )
        );
        assert_eq!(abandoned(), 1);
        // While it is stuck, the same `Reads` starts no other thread.
        let err = runtime
            .block_on(reads.run(&repo, "reading", limit, || Ok(())))
            .unwrap_err();
        assert!(
            matches!(err, SourceError::Stuck { count: 1, .. }),
            "{err:?}"
        );

        let (release, wait) = std::sync::mpsc::channel::<()>();
        let err = run_blocking(&repo, "reading", limit, move || {
            let _ = wait.recv();
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
        assert_eq!(abandoned(), MAX_ABANDONED);

        // The cap: refused at once, without a thread.
        let started = Instant::now();
        let err = run_blocking(&repo, "reading", limit, || Ok(())).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(
            err.to_string(),
            format!(
                "earlier reads of the git repository at {} timed out and have still not \
                 ended (2 of them), so no new read starts until one does; check it with `git \
                 fsck` there, and restart the daemon if this lasts",
                repo.display()
            )
        );

        // Both end (a writer opens the FIFO and closes it: the read sees an empty file):
        // they stop counting, and reads work again.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while abandoned() > 0 {
            assert!(Instant::now() < deadline, "{} still abandoned", abandoned());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Work that ends is waited for (a generous limit: the machine may be busy).
        let patient = Duration::from_secs(30);
        assert_eq!(
            run_blocking(&repo, "reading", patient, || Ok(7)).unwrap(),
            7
        );
        std::fs::remove_file(&fifo).unwrap();
        std::fs::write(&fifo, object).unwrap();
        let read = reads.run(&repo, "reading", patient, snapshot);
        assert_eq!(runtime.block_on(read).unwrap().files.len(), 1);
        let err = runtime
            .block_on(reads.run(&repo, "reading", patient, || -> Result<(), _> {
                panic!("a bug")
            }))
            .unwrap_err();
        assert!(matches!(err, SourceError::Panicked { .. }), "{err:?}");
        assert_eq!(abandoned(), 0);
    }
}
