//! Containment: finding every process a run started, wherever it went.
//!
//! A process group catches most descendants, but a job can leave it (`setsid`, a
//! double fork), and a daemon that died cannot tell what its runs left behind. So every
//! process of a run carries a marker in its environment, [`MARK_VAR`] =
//! `<instance>.<run id>`, where the instance id is made once per state directory
//! ([`instance_id`]). The environment is inherited across fork, exec, `setsid` and
//! re-parenting, so the marker finds:
//! - what is left of a run when its main process ends (the attempt ends it: SIGTERM,
//!   grace, SIGKILL, and says so in the run's log);
//! - what a dead daemon of this state directory left (recovery ends it before anything
//!   is retried), without trusting a stored pid that may since name another process.
//!
//! Reading `/proc/<pid>/environ` needs the same user as the process (or root), which is
//! how sundial runs its jobs. Limits, written down: a process that replaces its whole
//! environment (`env -i`, `execve` with an empty one) drops the marker and is out of
//! reach, as it would be of a process-group supervisor; a cgroup per run would catch it,
//! and is not used because it needs a delegated cgroup v2 subtree that a plain user
//! process does not have. Off Linux (no `/proc`), scans find nothing.
//!
//! Scans are shared: [`Sweeper`] batches the requests that arrive while one scan runs, so
//! a burst of thousands of ending runs costs a few scans of `/proc`, not thousands; and
//! while a burst is being launched ([`timed::launching`]) a scan waits for it, at most
//! 2 s, so it does not take a core from the spawns.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};

use super::timed;

/// The environment variable that marks a run's processes.
pub const MARK_VAR: &str = "SUNDIAL_RUN_MARK";

/// The longest environment read per process; the marker sits among the first variables
/// sundial sets, but a job may have a large inherited environment before it.
const MAX_ENVIRON: u64 = 1 << 20;

/// A process that carries a run's marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub pid: u32,
    pub run_id: i64,
    /// The process's name (`/proc/<pid>/comm`), for the log.
    pub name: String,
}

/// The marker value of run `run_id` under `instance`.
pub fn mark(instance: &str, run_id: i64) -> String {
    format!("{instance}.{run_id}")
}

/// The state directory's instance id: read from `<state-dir>/instance`, created (random,
/// mode 0600) on first use.
pub fn instance_id(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = state_dir.join("instance.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::Write::write_all(&mut file, format!("{id}\n").as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// Every live process carrying a marker of `instance`, by scanning `/proc`. Processes
/// that vanish or cannot be read during the scan are passed over; zombies are skipped
/// (they have ended, and their environment reads empty).
pub fn scan(instance: &str) -> Vec<Marked> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    let needle = format!("{MARK_VAR}={instance}.");
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Some(run_id) = read_mark(pid, &needle) else {
            continue;
        };
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|n| n.trim().to_string())
            .unwrap_or_default();
        found.push(Marked { pid, run_id, name });
    }
    found
}

fn read_mark(pid: u32, needle: &str) -> Option<i64> {
    let file = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    let mut environ = Vec::new();
    file.take(MAX_ENVIRON).read_to_end(&mut environ).ok()?;
    environ
        .split(|&b| b == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix(needle))
        .and_then(|id| id.parse().ok())
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the command's closing parenthesis.
    match stat.rsplit_once(')') {
        Some((_, rest)) => !matches!(rest.split_whitespace().next(), Some("Z" | "X")),
        None => false,
    }
}

/// Ends these processes: SIGTERM, up to `grace` for them to go, SIGKILL to the rest.
/// Returns once every one is gone (or was killed).
pub async fn end(processes: &[Marked], grace: Duration) {
    if processes.is_empty() {
        return;
    }
    for p in processes {
        signal(p.pid, Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    let mut pause = Duration::from_millis(5);
    // Not our children (re-parented to init), so no exit event comes: poll, backing off.
    while processes.iter().any(|p| alive(p.pid)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    kill_the_rest(processes);
}

/// [`end`] on a thread that runs no tokio tasks (the cluster's keeper).
pub fn end_blocking(processes: &[Marked], grace: Duration) {
    for p in processes {
        signal(p.pid, Signal::SIGTERM);
    }
    let deadline = std::time::Instant::now() + grace;
    let mut pause = Duration::from_millis(5);
    while processes.iter().any(|p| alive(p.pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    kill_the_rest(processes);
}

/// SIGKILL to each of `processes` still alive once its grace is over.
fn kill_the_rest(processes: &[Marked]) {
    for p in processes.iter().filter(|p| alive(p.pid)) {
        tracing::warn!(
            pid = p.pid,
            run = p.run_id,
            "grace over; SIGKILL to a process the run left"
        );
        signal(p.pid, Signal::SIGKILL);
    }
}

fn signal(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, %signal, error = %e, "cannot signal a process the run left"),
    }
}

/// A shared scanner: [`Sweeper::leftovers`] answers which processes still carry a run's
/// marker, batching concurrent questions into one scan of `/proc`.
#[derive(Clone)]
pub struct Sweeper {
    requests: mpsc::UnboundedSender<(i64, oneshot::Sender<Vec<Marked>>)>,
}

impl Sweeper {
    /// Starts the scanning task for `instance`; it ends when every handle is dropped.
    /// Must be called inside a tokio runtime.
    pub fn start(instance: String) -> Sweeper {
        let (tx, mut rx) = mpsc::unbounded_channel::<(i64, oneshot::Sender<Vec<Marked>>)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // A scan reads every process's environment: while a burst is launched it
                // waits, and answers everyone who asked meanwhile.
                timed::launches_over().await;
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let instance = instance.clone();
                let found = tokio::task::spawn_blocking(move || scan(&instance))
                    .await
                    .unwrap_or_default();
                let mut by_run: HashMap<i64, Vec<Marked>> = HashMap::new();
                for marked in found {
                    by_run.entry(marked.run_id).or_default().push(marked);
                }
                for (run_id, reply) in batch {
                    let _ = reply.send(by_run.get(&run_id).cloned().unwrap_or_default());
                }
            }
        });
        Sweeper { requests: tx }
    }

    /// The live processes that carry run `run_id`'s marker (a fresh scan, shared with
    /// whoever else asked meanwhile).
    pub async fn leftovers(&self, run_id: i64) -> Vec<Marked> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((run_id, reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_finds_a_marked_process_and_only_its_instance() {
        let mut marked = std::process::Command::new("sleep")
            .arg("30")
            .env(MARK_VAR, mark("inst1", 42))
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env(MARK_VAR, mark("inst2", 42))
            .spawn()
            .unwrap();
        // A child that has not exec'd yet still shows its parent's environment: poll
        // until the marked one is seen (a deadline, not a sleep).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = scan("inst1");
            if !found.is_empty() || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::yield_now();
        };
        let _ = marked.kill();
        let _ = other.kill();
        let _ = marked.wait();
        let _ = other.wait();
        assert_eq!(
            found,
            vec![Marked {
                pid: marked.id(),
                run_id: 42,
                name: "sleep".into()
            }]
        );
        // `inst1` must not match `inst10`'s runs either.
        assert!(read_mark(std::process::id(), "SUNDIAL_RUN_MARK=inst10.").is_none());
    }

    #[test]
    fn the_instance_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = instance_id(dir.path()).unwrap();
        assert_eq!(first.len(), 24);
        assert_eq!(instance_id(dir.path()).unwrap(), first);
    }
}
