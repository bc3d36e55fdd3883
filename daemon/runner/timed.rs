//! Work released at an instant, on a thread of its own.
//!
//! The daemon's async side is one thread: the engine's store writes (each commit waits for
//! `fsync`), an apply and the API all take turns on it. A process that must start on the
//! dot is therefore not started there: [`at`] hands the start to one of the runtime's
//! blocking threads, which sleeps with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`
//! until the instant and runs the work (the spawn) at once, whatever the async thread is
//! busy with. At most [`LAUNCHERS`] such threads wait or spawn at a time (a burst of due
//! slots is spawned by that many threads, first come first served).
//!
//! Contract: the work runs at most once, never before the instant, and either it ran or
//! the wait was stopped, never both: a stop request that arrives while the thread is in
//! the work waits for the work's result (the caller then stops what it started).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
use tokio::sync::{watch, Semaphore};

use super::process::StopRequest;

/// How many threads wait for and start timed work at once.
pub fn launchers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// The permits for the launch threads (FIFO: the earliest caller goes first).
static LAUNCHERS: std::sync::LazyLock<Semaphore> =
    std::sync::LazyLock::new(|| Semaphore::new(launchers()));

/// What [`at`] gives back.
#[derive(Debug)]
pub enum Released<T> {
    /// The work ran at `at`: its result and the instant it began.
    Ran(T, chrono::DateTime<chrono::Utc>),
    /// A stop request came first; the work did not run.
    Stopped(StopRequest),
    /// The launch thread failed (the work panicked): whether it ran is unknown.
    Lost,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Waiting,
    Stopped,
    Running,
}

/// Runs `work` on a launch thread at the monotonic instant `when` (at once when it has
/// passed), unless `stop` receives a request first. Must be called inside the runtime.
pub async fn at<T: Send + 'static>(
    when: Instant,
    stop: &mut watch::Receiver<Option<StopRequest>>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Released<T> {
    if let Some(request) = *stop.borrow_and_update() {
        return Released::Stopped(request);
    }
    let permit = tokio::select! {
        permit = LAUNCHERS.acquire() => permit.ok(),
        request = stopped(stop) => return Released::Stopped(request),
    };
    let gate = Arc::new(Mutex::new(Gate::Waiting));
    let thread_gate = Arc::clone(&gate);
    let mut task = tokio::task::spawn_blocking(move || {
        // Held until the thread is done, also when the caller stopped waiting for it.
        let _permit = permit;
        sleep_until(when);
        {
            let mut gate = thread_gate.lock().unwrap_or_else(|e| e.into_inner());
            if *gate == Gate::Stopped {
                return None;
            }
            *gate = Gate::Running;
        }
        let began = chrono::Utc::now();
        Some((work(), began))
    });
    let result = tokio::select! {
        ran = &mut task => ran,
        request = stopped(stop) => {
            if close(&gate) {
                // The thread sees the stop when it wakes and does nothing.
                return Released::Stopped(request);
            }
            // Already under way: its result is the caller's to stop.
            (&mut task).await
        }
    };
    match result {
        Ok(Some((value, began))) => Released::Ran(value, began),
        // The gate is closed only above, which returns; so this is a panic of the work.
        Ok(None) | Err(_) => Released::Lost,
    }
}

/// Closes the gate of a work not yet under way; false when the work already began.
fn close(gate: &Mutex<Gate>) -> bool {
    let mut state = gate.lock().unwrap_or_else(|e| e.into_inner());
    if *state == Gate::Waiting {
        *state = Gate::Stopped;
        true
    } else {
        false
    }
}

/// The first stop request in `stop`; pending for ever once its sender is gone.
async fn stopped(stop: &mut watch::Receiver<Option<StopRequest>>) -> StopRequest {
    loop {
        if let Some(request) = *stop.borrow_and_update() {
            return request;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sleeps this thread until the monotonic instant `when`, to the precision of the kernel's
/// timer (the thread's timer slack is set to 1 µs first).
pub fn sleep_until(when: Instant) {
    let _ = nix::sys::prctl::set_timerslack(1_000);
    loop {
        let left = when.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        // `Instant` is CLOCK_MONOTONIC on Linux: the same instant as an absolute timespec.
        let Ok(now) = clock_gettime(ClockId::CLOCK_MONOTONIC) else {
            std::thread::sleep(left);
            return;
        };
        let target = now + nix::sys::time::TimeSpec::from_duration(left);
        match clock_nanosleep(
            ClockId::CLOCK_MONOTONIC,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &target,
        ) {
            // Interrupted by a signal: sleep on to the same instant.
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                std::thread::sleep(left);
                return;
            }
            Ok(_) => return,
        }
    }
}

/// The monotonic instant of the wall-clock time `at`, as seen now (at once if it passed).
pub fn monotonic(at: chrono::DateTime<chrono::Utc>) -> Instant {
    let wait: Duration = (at - chrono::Utc::now()).to_std().unwrap_or_default();
    Instant::now() + wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The tests watch the shared launch permits: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Yields until a launch thread holds a permit (it waits for its instant).
    async fn launch_begun() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while LAUNCHERS.available_permits() == launchers() && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_work_runs_on_its_own_thread_never_before_the_instant() {
        let _serial = serial();
        runtime().block_on(async {
            let (_tx, mut stop) = watch::channel(None);
            let when = Instant::now() + Duration::from_millis(30);
            let caller = std::thread::current().id();
            let released = at(when, &mut stop, move || {
                (Instant::now(), std::thread::current().id() != caller)
            })
            .await;
            let Released::Ran((ran_at, elsewhere), _) = released else {
                panic!("the work did not run: {released:?}");
            };
            assert!(ran_at >= when, "ran {:?} early", when - ran_at);
            assert!(elsewhere, "the work ran on the caller's thread");
        });
    }

    #[test]
    fn the_async_thread_being_blocked_does_not_delay_the_work() {
        let _serial = serial();
        runtime().block_on(async {
            let (_tx, mut stop) = watch::channel(None);
            let when = Instant::now() + Duration::from_millis(20);
            let work = tokio::spawn(async move { at(when, &mut stop, Instant::now).await });
            // Let the launch begin, then keep the only async thread busy past the instant
            // (as a slow fsync in the engine would).
            launch_begun().await;
            std::thread::sleep(Duration::from_millis(300));
            let Ok(Released::Ran(ran_at, _)) = work.await else {
                panic!("the work did not run");
            };
            let late = ran_at.saturating_duration_since(when);
            assert!(late < Duration::from_millis(200), "started {late:?} late");
        });
    }

    #[test]
    fn a_stop_before_the_instant_means_the_work_never_runs() {
        let _serial = serial();
        runtime().block_on(async {
            let (tx, mut stop) = watch::channel(None);
            let ran = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&ran);
            let when = Instant::now() + Duration::from_millis(200);
            let waiting = tokio::spawn(async move {
                at(when, &mut stop, move || flag.store(true, Ordering::SeqCst)).await
            });
            // Stop once a launch thread waits for the instant.
            launch_begun().await;
            tx.send(Some(StopRequest::Cancel)).unwrap();
            let released = waiting.await.unwrap();
            assert!(
                matches!(released, Released::Stopped(StopRequest::Cancel)),
                "{released:?}"
            );
            // Every launch thread done (this one woke at the instant and saw the stop).
            let all = LAUNCHERS.acquire_many(launchers() as u32).await.unwrap();
            drop(all);
            assert!(!ran.load(Ordering::SeqCst), "the work ran after the stop");
        });
    }

    #[test]
    fn a_stop_already_given_returns_at_once() {
        runtime().block_on(async {
            let (tx, mut stop) = watch::channel(None);
            tx.send(Some(StopRequest::Shutdown)).unwrap();
            let released = at(Instant::now(), &mut stop, || unreachable!()).await;
            assert!(matches!(released, Released::Stopped(StopRequest::Shutdown)));
        });
    }
}
