//! Recovery: settling the rows a dead daemon left (STYLE point 11: persist before acting;
//! recovery is a named, tested function). Runs before the first sync; what needs the
//! deployments (retries, the concurrency queue) is settled right after the first apply.
//!
//! - `Running`: the process group is ended if it outlived the daemon (SIGTERM, SIGKILL
//!   after the grace period) — sundial cannot follow a process it did not spawn — and the
//!   run is `Crashed`, then retried if attempts remain.
//! - `Pending` (queued behind a concurrency limit): back in its queue.
//! - `AwaitingRetry`: back on the retry timer, at its `not_before`.
//! - `Scheduled` (claimed, never started): `Skipped` with reason `missed`.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;

use crate::runner::process;
use crate::store::{RunState, StoreError};

use super::Engine;

/// Rows to settle once the deployments are known.
#[derive(Debug, Default)]
pub struct Recovered {
    crashed: Vec<i64>,
    pending: Vec<i64>,
    settled: bool,
}

impl Engine {
    pub(super) fn recover(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for run in self.store.unfinished_runs()? {
            match run.state {
                RunState::Running => {
                    let alive = run.pid.is_some_and(process::process_group_alive);
                    let reason = if alive {
                        "ended at restart: the daemon had lost track of it"
                    } else {
                        "lost when the daemon stopped"
                    };
                    if let (true, Some(pid)) = (alive, run.pid) {
                        end_group(pid, self.ctx.grace);
                    }
                    tracing::warn!(
                        "run {} of {} was running when the daemon stopped: Crashed ({reason})",
                        run.id,
                        run.deployment
                    );
                    self.store
                        .finish_run(run.id, RunState::Crashed, None, Some(reason), now)?;
                    self.recovered.crashed.push(run.id);
                }
                RunState::Pending => self.recovered.pending.push(run.id),
                RunState::AwaitingRetry => self
                    .retries
                    .push(Reverse((run.not_before.unwrap_or(now), run.id))),
                RunState::Scheduled => {
                    self.store
                        .finish_run(run.id, RunState::Skipped, None, Some("missed"), now)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// After the first apply: retries for runs the dead daemon lost, queued runs back in line.
    pub(super) fn settle_recovered(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.recovered.settled {
            return Ok(());
        }
        self.recovered.settled = true;
        for id in std::mem::take(&mut self.recovered.crashed) {
            if let Some(run) = self.store.run(id)? {
                self.maybe_retry(&run, now)?;
            }
        }
        for id in std::mem::take(&mut self.recovered.pending) {
            self.start_existing(id, now)?;
        }
        Ok(())
    }
}

/// SIGTERM to a leftover process group now, SIGKILL after `grace` if it is still there.
fn end_group(pgid: u32, grace: std::time::Duration) {
    if let Err(e) = process::kill_group(pgid, Signal::SIGTERM) {
        tracing::warn!("cannot signal the leftover process group {pgid}: {e}");
        return;
    }
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if !process::process_group_alive(pgid) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = process::kill_group(pgid, Signal::SIGKILL);
    });
}
