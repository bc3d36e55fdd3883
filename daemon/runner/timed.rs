//! Work released at an instant, on a thread of its own.
//!
//! The daemon's async side is one thread: the engine's store writes (each commit waits for
//! `fsync`), an apply and the API all take turns on it. A process that must start on the
//! dot is therefore not started there: [`at`] queues the start for the *launch threads*
//! ([`launchers`] of them, started once). They share one queue ordered by instant; the
//! thread that takes a job sleeps the last stretch with
//! `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` and runs the work (the spawn) at
//! once, whatever the async thread is busy with. A burst due at one instant is spawned by
//! all of them together, with no round trip through the async thread; a job waiting for
//! a far instant (a pre-started run's release) holds no thread.
//!
//! Contract: the work runs at most once, never before the instant, and either it ran or
//! the wait was stopped, never both: a stop request that arrives while a thread is in the
//! work waits for the work's result (the caller then stops what it started).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
use tokio::sync::{oneshot, watch};

use super::process::StopRequest;

/// How many launch threads there are: the machine's cores, at least 2, at most 8.
pub fn launchers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// A launch thread waits on the queue until this close to a job's instant, then takes it
/// and sleeps the rest precisely (a job due sooner, queued meanwhile, goes to another).
const TAKE_AHEAD: Duration = Duration::from_millis(2);

/// What [`at`] gives back.
#[derive(Debug)]
pub enum Released<T> {
    /// The work ran at `at`: its result and the instant it began.
    Ran(T, chrono::DateTime<chrono::Utc>),
    /// A stop request came first; the work did not run.
    Stopped(StopRequest),
    /// The work panicked: whether it did what it was for is unknown.
    Lost,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Waiting,
    Stopped,
    Running,
}

/// One queued start.
struct Job {
    when: Instant,
    /// Queue order among jobs of one instant: first queued, first run.
    seq: u64,
    run: Box<dyn FnOnce() + Send>,
}

impl PartialEq for Job {
    fn eq(&self, other: &Job) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Job) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Job) -> std::cmp::Ordering {
        (self.when, self.seq).cmp(&(other.when, other.seq))
    }
}

/// The launch threads' shared queue, earliest instant first.
struct Pool {
    queue: Mutex<(BinaryHeap<Reverse<Job>>, u64)>,
    changed: Condvar,
}

static POOL: LazyLock<Arc<Pool>> = LazyLock::new(|| {
    let pool = Arc::new(Pool {
        queue: Mutex::new((BinaryHeap::new(), 0)),
        changed: Condvar::new(),
    });
    for i in 0..launchers() {
        let pool = Arc::clone(&pool);
        let started = std::thread::Builder::new()
            .name(format!("sundial-launch-{i}"))
            .stack_size(256 * 1024)
            .spawn(move || pool.serve());
        if let Err(e) = started {
            tracing::error!("cannot start launch thread {i}: {e}");
        }
    }
    pool
});

impl Pool {
    fn submit(&self, when: Instant, run: Box<dyn FnOnce() + Send>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.1 += 1;
        let seq = queue.1;
        queue.0.push(Reverse(Job { when, seq, run }));
        drop(queue);
        self.changed.notify_all();
    }

    /// A launch thread: takes the earliest job when its instant is near, runs it on the dot.
    fn serve(&self) {
        let _ = nix::sys::prctl::set_timerslack(1_000);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let Some(Reverse(next)) = queue.0.peek() else {
                queue = self.changed.wait(queue).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let left = next.when.saturating_duration_since(Instant::now());
            if left > TAKE_AHEAD {
                queue = self
                    .changed
                    .wait_timeout(queue, left - TAKE_AHEAD)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let Some(Reverse(job)) = queue.0.pop() else {
                continue;
            };
            drop(queue);
            sleep_until(job.when);
            (job.run)();
            queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A queued job due this soon (or overdue) means a launch is near.
const NEAR: Duration = Duration::from_millis(20);
/// The longest work that waits for launches ([`launching`]) waits.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(2);
/// How often such work looks whether the launches are over.
pub const LOOK_EVERY: Duration = Duration::from_millis(5);

/// Whether a launch is near: a queued job is due within [`NEAR`], or overdue. Work that
/// can wait (bookkeeping, `/proc` scans) waits while it is, so a burst has the cores.
pub fn launching() -> bool {
    let queue = POOL.queue.lock().unwrap_or_else(|e| e.into_inner());
    queue
        .0
        .peek()
        .is_some_and(|Reverse(job)| job.when <= Instant::now() + NEAR)
}

/// Returns once no launch is near ([`launching`]), or after [`WAIT_AT_MOST`].
pub async fn launches_over() {
    let asked = Instant::now();
    while launching() && asked.elapsed() < WAIT_AT_MOST {
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Runs `work` on a launch thread at the monotonic instant `when` (at once when it has
/// passed), unless `stop` receives a request first. Must be called inside the runtime:
/// the work runs with the runtime entered (it may spawn a process and tasks).
pub async fn at<T: Send + 'static>(
    when: Instant,
    stop: &mut watch::Receiver<Option<StopRequest>>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Released<T> {
    if let Some(request) = *stop.borrow_and_update() {
        return Released::Stopped(request);
    }
    let gate = Arc::new(Mutex::new(Gate::Waiting));
    let thread_gate = Arc::clone(&gate);
    let (done, mut result) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    POOL.submit(
        when,
        Box::new(move || {
            {
                let mut gate = thread_gate.lock().unwrap_or_else(|e| e.into_inner());
                if *gate == Gate::Stopped {
                    return;
                }
                *gate = Gate::Running;
            }
            let began = chrono::Utc::now();
            let _entered = runtime.enter();
            let ran = catch_unwind(AssertUnwindSafe(work)).ok();
            let _ = done.send(ran.map(|value| (value, began)));
        }),
    );
    let result = tokio::select! {
        ran = &mut result => ran,
        request = stopped(stop) => {
            if close(&gate) {
                // The thread sees the stop when the instant comes and does nothing.
                return Released::Stopped(request);
            }
            // Already under way: its result is the caller's to stop.
            result.await
        }
    };
    match result {
        Ok(Some((value, began))) => Released::Ran(value, began),
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
/// timer and the thread's timer slack (1 µs on the launch threads).
pub fn sleep_until(when: Instant) {
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

    fn queued() -> usize {
        POOL.queue.lock().unwrap().0.len()
    }

    /// Yields until the launch is queued (it waits for its instant).
    async fn launch_begun() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while queued() == 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert!(queued() > 0, "nothing was queued");
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
            // Its instant passed and the queue is empty: a launch thread took it and, seeing
            // the stop, did nothing (the work would have run at the instant).
            let deadline = when + Duration::from_millis(100);
            while queued() > 0 || Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(!ran.load(Ordering::SeqCst), "the work ran after the stop");
        });
    }

    #[test]
    fn a_burst_at_one_instant_runs_on_several_threads() {
        let _serial = serial();
        runtime().block_on(async {
            let when = Instant::now() + Duration::from_millis(50);
            let mut waits = Vec::new();
            for i in 0..64 {
                waits.push(tokio::spawn(async move {
                    let (_tx, mut stop) = watch::channel(None);
                    at(when, &mut stop, move || {
                        // As long as a spawn takes: long enough for every thread to join in.
                        std::thread::sleep(Duration::from_millis(2));
                        (i, std::thread::current().id())
                    })
                    .await
                }));
            }
            let mut threads = std::collections::HashSet::new();
            for (i, wait) in waits.into_iter().enumerate() {
                let Ok(Released::Ran((n, thread), _)) = wait.await else {
                    panic!("job {i} did not run");
                };
                assert_eq!(n, i);
                threads.insert(thread);
            }
            assert!(threads.len() >= 2, "one thread ran the whole burst");
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
