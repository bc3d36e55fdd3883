//! Fetching the configured remote's branch with the `git` CLI.
//!
//! The CLI, not git2, so the daemon user's ssh keys, ssh config, credential helpers and
//! `insteadOf` rules apply exactly as in their shell. Only the remote-tracking ref
//! `refs/remotes/<remote>/<branch>` is written (never a local branch or a work tree).
//! No shell is involved, terminal prompts are disabled, and git runs in its own process
//! group so that a timeout also kills ssh or a remote helper it started. Being in a group
//! of its own, it is not reached by what stops the daemon's group: the daemon ends the
//! fetches still running when it stops ([`stop_fetches`]).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::runner::kill_group;

use super::{Repo, SourceError};

/// How long `git fetch` may take before it is killed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fetch stopped at its timeout has after SIGTERM before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(2);

/// The process groups of the fetches running now (each `git fetch`'s pid), each listed
/// until just before it is reaped, so that a pid here always names the fetch's group.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends the fetches still running, so that the daemon stops without leaving them (and
/// the ssh or remote helper they started) behind: SIGTERM to each one's group, on which
/// git removes its lock files and temporary packs. Does not wait for them.
pub fn stop_fetches() {
    for &pid in running().iter() {
        let _ = kill_group(pid, Signal::SIGTERM);
    }
}

impl Repo {
    /// Runs `git fetch <remote> +refs/heads/<branch>:refs/remotes/<remote>/<branch>` with
    /// the `git` CLI (no shell, no terminal prompts, killed after [`FETCH_TIMEOUT`]).
    /// A no-op without a remote. Errors: [`SourceError::Fetch`] with git's own message.
    pub fn fetch(&self) -> Result<(), SourceError> {
        self.fetch_within(FETCH_TIMEOUT)
    }

    fn fetch_within(&self, timeout: Duration) -> Result<(), SourceError> {
        let Some(remote) = &self.config.remote else {
            return Ok(());
        };
        let branch = &self.config.branch;
        let fail = |detail: String| SourceError::Fetch {
            remote: remote.clone(),
            detail,
        };
        if remote.starts_with('-') || branch.starts_with('-') {
            return Err(fail(
                "remote and branch names must not start with `-`".into(),
            ));
        }
        let refspec = format!("+refs/heads/{branch}:refs/remotes/{remote}/{branch}");
        let mut command = Command::new("git");
        command
            .arg("--git-dir")
            .arg(self.git.path())
            .args(["fetch", "--quiet", "--no-write-fetch-head", "--"])
            .arg(remote)
            .arg(&refspec)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own process group, so a timeout also stops ssh or a remote helper.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| fail(format!("could not run `git`: {e}")))?;
        let pid = child.id();
        running().push(pid);
        let mut stderr = child.stderr.take();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.read_to_string(&mut text);
            }
            // Unlisted before it is reaped: a pid listed is never another process's.
            running().retain(|&p| p != pid);
            let _ = done_tx.send((child.wait(), text));
        });
        let (status, text) = match done_rx.recv_timeout(timeout) {
            Ok(done) => done,
            Err(_) => {
                // Unless it ended this very instant, git is not reaped yet (the thread
                // reads to EOF first), so its pid still names its process group. SIGTERM
                // first: on it git removes its lock files, which a SIGKILL would leave
                // behind to fail every later fetch; SIGKILL if the group is still there.
                let _ = kill_group(pid, Signal::SIGTERM);
                if done_rx.recv_timeout(KILL_AFTER).is_err() {
                    let _ = kill_group(pid, Signal::SIGKILL);
                    // Reap it; should something outside the group hold the pipe open,
                    // give up on the thread rather than hang the caller.
                    let _ = done_rx.recv_timeout(Duration::from_secs(5));
                }
                return Err(fail(format!(
                    "it did not finish within {} s and was killed",
                    timeout.as_secs()
                )));
            }
        };
        let status = status.map_err(|e| fail(format!("could not wait for `git`: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let text = text.trim();
        Err(fail(if text.is_empty() {
            format!("git exited with {status}")
        } else {
            text.to_string()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, open, Fixture};
    use super::super::SourceConfig;
    use super::*;
    use crate::manifest::discover::is_default_manifest;

    #[test]
    fn fetch_moves_the_remote_tracking_branch() {
        let fx = Fixture::new();
        let origin = fx.init("origin");
        let old = fx.commit(&origin, &[("prefect.yaml", "v1\n")], "first");
        fx.git(
            fx.dir.path(),
            &["clone", "-q", origin.to_str().unwrap(), "clone"],
        );
        let clone = fx.path("clone");
        let new = fx.commit(&origin, &[("prefect.yaml", "v2\n")], "second");

        let source = Repo::open(&SourceConfig {
            remote: Some("origin".into()),
            ..config(&clone, "main")
        })
        .unwrap();
        assert_eq!(source.head().unwrap(), old);
        source.fetch().unwrap();
        assert_eq!(source.head().unwrap(), new);
        let snapshot = source.snapshot(&new, &is_default_manifest).unwrap();
        assert_eq!(snapshot.files[0].bytes.as_bytes(), b"v2\n");
        // The clone's own branch and work tree are untouched.
        assert_eq!(fx.git(&clone, &["rev-parse", "main"]), old);

        // Without a remote, fetch does nothing.
        open(&clone).fetch().unwrap();
    }

    #[test]
    fn a_hanging_fetch_is_killed_at_the_timeout() {
        let fx = Fixture::new();
        let origin = fx.init("origin");
        fx.commit(&origin, &[("prefect.yaml", "v1\n")], "first");
        let repo = fx.init("work");
        let url = origin.to_str().unwrap();
        fx.git(&repo, &["remote", "add", "slow", url]);
        // The upload-pack "server" hangs, holding git's stderr open, as a dead ssh would.
        fx.git(&repo, &["config", "remote.slow.uploadpack", "sleep 30 #"]);
        let source = Repo::open(&SourceConfig {
            remote: Some("slow".into()),
            ..config(&repo, "main")
        })
        .unwrap();
        let started = std::time::Instant::now();
        let err = source.fetch_within(Duration::from_secs(1)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err.to_string(),
            "`git fetch` from remote `slow` failed: it did not finish within 1 s and was \
             killed; check the remote's URL and the credentials of the daemon's user"
        );

        // SIGTERM first, so that git can remove its locks: a helper that notes it.
        let noted = fx.path("termed");
        let noting = format!(
            "trap 'echo termed > {}; exit 1' TERM; sleep 30 & wait; true #",
            noted.display()
        );
        fx.git(&repo, &["config", "remote.slow.uploadpack", &noting]);
        source.fetch_within(Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            std::fs::read_to_string(&noted).ok().as_deref(),
            Some("termed\n")
        );
        // And SIGKILL when SIGTERM is not enough.
        fx.git(
            &repo,
            &[
                "config",
                "remote.slow.uploadpack",
                "trap '' TERM; sleep 30; true #",
            ],
        );
        let started = std::time::Instant::now();
        source.fetch_within(Duration::from_secs(1)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn fetch_failures_are_reported() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        let source = Repo::open(&SourceConfig {
            remote: Some("nowhere".into()),
            ..config(&repo, "main")
        })
        .unwrap();
        let err = source.head().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("branch `nowhere/main` does not exist"),
            "{err}"
        );
        let err = source.fetch().unwrap_err();
        let SourceError::Fetch { remote, detail } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(remote, "nowhere");
        assert!(detail.contains("nowhere"), "{detail}");
    }
}
