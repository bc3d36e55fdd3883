//! The supervision of a started process (the start itself is `runner/spawn.rs`).
//!
//! [`Running::wait`] awaits the exit. On a timeout or a [`StopRequest`] it sends SIGTERM to
//! the whole group, gives it `grace`, then SIGKILLs the group; after the leader exits for
//! whatever reason, any member left in its group is SIGKILLed, so nothing outlives its run.
//! [`Exit`] says why the process ended; recording it is the caller's job. With
//! `stream_output`, [`forward`] copies each pipe to the run's log and the daemon's log.
//!
//! Non-goals: run rows, retries, concurrency and the log header line (the orchestrator's).
//! A process that leaves its group (`setsid`) is out of reach, as under any process-group
//! supervisor.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, Pid};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use super::spawn::append_log_line;

/// How long [`Running::wait`] waits for the output pipes to reach end-of-file after the
/// group is gone; only a process that left the group can hold them open longer.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A longer output line is cut in the daemon's log (the run's log file keeps it whole).
const MAX_FORWARDED_LINE: usize = 16 * 1024;

/// Who asked a running process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// A user cancelled the run.
    Cancel,
    /// The daemon is stopping.
    Shutdown,
    /// The run's deployment was paused or removed before the run began: a run that has
    /// not begun (its slot's instant not come, or a pre-started run not yet released)
    /// does not; one that has begun ignores it and goes on. Never replaces a cancel or a
    /// stop ([`StopRequest::withdraw`]).
    Withdraw(Withdrawal),
}

/// Why a run that had not begun was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// Its deployment was paused.
    Paused,
    /// Its deployment was removed.
    Removed,
    /// The timing of the schedule it was armed for changed, or that schedule was removed:
    /// its slot is no longer one.
    ScheduleChanged,
    /// The schedule it was armed for was made inactive (`active: false`).
    ScheduleInactive,
}

impl Withdrawal {
    /// The run's reason (a cancelled waiting run of a paused or removed deployment has the
    /// same).
    pub fn reason(self) -> &'static str {
        match self {
            Withdrawal::Paused => "deployment paused",
            Withdrawal::Removed => "deployment removed",
            Withdrawal::ScheduleChanged => "schedule changed",
            Withdrawal::ScheduleInactive => "schedule inactive",
        }
    }
}

impl StopRequest {
    /// Asks a run that has not begun not to: sets the request unless a cancel or a stop is
    /// already there (either ends the run whatever it is doing; a withdrawal would let a
    /// begun run go on).
    pub fn withdraw(stop: &tokio::sync::watch::Sender<Option<StopRequest>>, why: Withdrawal) {
        stop.send_if_modified(|request| {
            if request.is_some() {
                return false;
            }
            *request = Some(StopRequest::Withdraw(why));
            true
        });
    }
}

/// Why a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself with this code.
    Code(i32),
    /// Killed by a signal sundial did not send (OOM killer, an operator's `kill`).
    Signal(i32),
    /// `timeout` ran out; sundial stopped the group.
    TimedOut,
    /// Stopped on request.
    Stopped(StopRequest),
    /// Its exit status could not be read (someone else reaped it); the group was killed.
    Lost,
}

/// A started process; consume it with [`Running::wait`].
#[derive(Debug)]
pub struct Running {
    /// The process id, which is also its process group id.
    pub pid: u32,
    pub(super) child: Child,
    pub(super) pumps: Vec<JoinHandle<()>>,
    pub(super) log_path: PathBuf,
    /// When the attempt's time limit runs out.
    pub(super) deadline: Option<Instant>,
    pub(super) timeout: Option<Duration>,
    pub(super) grace: Duration,
}

impl Running {
    /// Waits for the process; on timeout or on a stop request (from `stop`), signals the
    /// whole process group: SIGTERM, waits `grace`, then SIGKILL to the group; returns why
    /// it ended. After the leader exits, any member of its group that survives is
    /// SIGKILLed, so a grandchild that ignored SIGTERM or kept running never outlives the
    /// run. A request already in `stop` when called stops at once; a dropped sender only
    /// means no stop will come.
    ///
    /// A plain function returning the future, not an `async fn`: an `async fn` keeps a
    /// second copy of a by-value `self` in its future (rust-lang/rust#62958), and every
    /// attempt of a burst holds this future.
    #[allow(clippy::manual_async_fn)] // one copy of its by-value arguments (see the doc)
    pub fn wait(
        mut self,
        mut stop: watch::Receiver<Option<StopRequest>>,
    ) -> impl std::future::Future<Output = Exit> + Send {
        async move {
            let deadline = self.deadline;
            let mut stop_open = true;
            let why = loop {
                let requested = *stop.borrow_and_update();
                match requested {
                    // Begun: a withdrawal comes too late and the run goes on.
                    None | Some(StopRequest::Withdraw(_)) => {}
                    Some(request) => break Exit::Stopped(request),
                }
                tokio::select! {
                    status = self.child.wait() => {
                        let exit = self.exited(status);
                        self.sweep_group();
                        self.drain().await;
                        return exit;
                    }
                    () = until(deadline) => break Exit::TimedOut,
                    changed = stop.changed(), if stop_open => stop_open = changed.is_ok(),
                }
            };
            self.terminate(why).await;
            self.drain().await;
            why
        }
    }

    /// Ends a process that is not to run (a pre-started run withdrawn before its release):
    /// its group is stopped as for a cancel, and `why` is what it ended by.
    pub async fn end(mut self, why: Exit) -> Exit {
        self.terminate(why).await;
        self.drain().await;
        why
    }

    fn exited(&mut self, status: io::Result<ExitStatus>) -> Exit {
        match status {
            Ok(status) => {
                let exit = match (status.code(), status.signal()) {
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(signal)) => Exit::Signal(signal),
                    (None, None) => Exit::Lost,
                };
                tracing::debug!(pid = self.pid, ?exit, "process exited");
                exit
            }
            Err(e) => {
                tracing::error!(pid = self.pid, error = %e, "cannot read the exit status; killing its group");
                self.note(&format!("sundial lost track of process {}: {e}", self.pid));
                Exit::Lost
            }
        }
    }

    /// The leader is gone; whatever is left of its group goes too.
    fn sweep_group(&self) {
        if process_group_alive(self.pid) {
            self.note(&format!(
                "process {} exited; SIGKILL to what is left of its group",
                self.pid
            ));
            self.signal(Signal::SIGKILL);
        }
    }

    /// SIGTERM to the group, `grace` for the leader and then the rest to exit, SIGKILL.
    async fn terminate(&mut self, why: Exit) {
        let reason = match why {
            Exit::TimedOut => format!("timed out after {:?}", self.timeout.unwrap_or_default()),
            Exit::Stopped(StopRequest::Cancel) => "cancelled".to_string(),
            Exit::Stopped(StopRequest::Shutdown) => "the daemon is stopping".to_string(),
            Exit::Stopped(StopRequest::Withdraw(why)) => format!("withdrawn ({})", why.reason()),
            _ => "stopping".to_string(),
        };
        self.note(&format!(
            "{reason}: SIGTERM to process group {}, SIGKILL after {:?}",
            self.pid, self.grace
        ));
        tracing::info!(pid = self.pid, %reason, "stopping process group");
        self.signal(Signal::SIGTERM);
        let grace_end = Instant::now() + self.grace;
        let leader = timeout_at(grace_end, self.child.wait()).await.ok();
        if leader.is_some() {
            wait_group_gone(self.pid, grace_end).await;
        }
        if process_group_alive(self.pid) {
            self.note(&format!(
                "grace of {:?} over: SIGKILL to process group {}",
                self.grace, self.pid
            ));
            tracing::warn!(pid = self.pid, "grace over; killing process group");
            self.signal(Signal::SIGKILL);
        }
        if leader.is_none() {
            if let Err(e) = self.child.wait().await {
                tracing::error!(pid = self.pid, error = %e, "cannot reap the stopped process");
            }
        }
    }

    fn signal(&self, signal: Signal) {
        match kill_group(self.pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::error!(pgid = self.pid, %signal, error = %e, "cannot signal process group")
            }
        }
    }

    /// Waits (bounded) for the output pumps to reach end-of-file, then lets them go.
    async fn drain(&mut self) {
        let limit = Instant::now() + DRAIN_LIMIT;
        for pump in self.pumps.drain(..) {
            let abort = pump.abort_handle();
            if timeout_at(limit, pump).await.is_err() {
                tracing::warn!(pid = self.pid, "output still open after the process group ended (a process left the group?); no longer forwarding it");
                abort.abort();
            }
        }
    }

    /// A line of our own in the run's log, so the log says why the process ended.
    fn note(&self, text: &str) {
        if let Err(e) = append_log_line(&self.log_path, &format!("# sundial: {text}")) {
            tracing::warn!(log = %self.log_path.display(), error = %e, "cannot write to the run log");
        }
    }
}

/// Whether any live process is in group `pgid` (`kill(-pgid, 0)`); zombies waiting for a
/// parent that never reaps them do not count. For recovering runs a dead daemon left.
/// `false` for 0 and 1, which name no run's group.
pub fn process_group_alive(pgid: u32) -> bool {
    let Some(group) = run_group(pgid) else {
        return false;
    };
    match killpg(group, None) {
        Err(Errno::ESRCH) => false,
        // EPERM: the group exists but is not ours to signal.
        Err(_) => true,
        Ok(()) => has_live_member(pgid).unwrap_or(true),
    }
}

/// Sends `signal` to every process in group `pgid`. Refuses (EINVAL) 0, 1 and the
/// daemon's own group, which `killpg` would read as "us" or "everyone".
pub fn kill_group(pgid: u32, signal: Signal) -> nix::Result<()> {
    let group = run_group(pgid).ok_or(Errno::EINVAL)?;
    if group == getpgrp() {
        return Err(Errno::EINVAL);
    }
    killpg(group, signal)
}

fn run_group(pgid: u32) -> Option<Pid> {
    i32::try_from(pgid)
        .ok()
        .filter(|&g| g > 1)
        .map(Pid::from_raw)
}

/// Whether `/proc` shows a member of the group that is not a zombie; `None` when `/proc`
/// cannot be read (then `kill(-pgid, 0)` is trusted as is).
#[cfg(target_os = "linux")]
fn has_live_member(pgid: u32) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let live = entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            return false;
        };
        // Fields after the command's closing parenthesis: state ppid pgrp ...
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().take(3).collect();
        matches!(fields[..], [state, _, group] if group == pgid.to_string() && state != "Z" && state != "X")
    });
    Some(live)
}

#[cfg(not(target_os = "linux"))]
fn has_live_member(_pgid: u32) -> Option<bool> {
    None
}

/// Polls until the group is empty or `deadline`. A group emptying is no event a parent
/// is told about (its members are not our children), so this is the one poll here.
async fn wait_group_gone(pgid: u32, deadline: Instant) {
    let mut pause = Duration::from_millis(5);
    while process_group_alive(pgid) && Instant::now() < deadline {
        sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Copies a pipe to the log file chunk by chunk and forwards each line to tracing.
pub(super) async fn forward<R: AsyncRead + Unpin>(
    pipe: R,
    mut file: Option<File>,
    label: String,
    stream: &'static str,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::warn!(run = %label, stream, error = %e, "cannot read process output");
                break;
            }
        };
        // A local append; keep draining the pipe even when the disk refuses, so the
        // process never blocks on a full pipe.
        if let Some(f) = &mut file {
            if let Err(e) = f.write_all(chunk) {
                tracing::warn!(run = %label, stream, error = %e, "cannot write process output to the run log");
                file = None;
            }
        }
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            let room = MAX_FORWARDED_LINE.saturating_sub(line.len());
            line.extend_from_slice(&piece[..piece.len().min(room)]);
            if piece.ends_with(b"\n") {
                emit(&label, stream, &line);
                line.clear();
            }
        }
        let used = chunk.len();
        reader.consume(used);
    }
    if !line.is_empty() {
        emit(&label, stream, &line);
    }
}

fn emit(label: &str, stream: &'static str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    // A job's stderr is where it says what went wrong: a warning, so that
    // `journalctl -p warning` shows it; stdout is information.
    if stream == "stderr" {
        tracing::warn!(target: "sundial::output", run = %label, stream, "{text}");
    } else {
        tracing::info!(target: "sundial::output", run = %label, stream, "{text}");
    }
}
