//! Recovery: settling what a dead daemon of this state directory left (STYLE point 11:
//! persist before acting; recovery is a named, tested function). It runs before the first
//! sync; what needs the deployments (retry decisions, starts) waits for the first apply.
//!
//! - Processes: every live process carrying this state directory's run marker (see
//!   [`crate::runner::contain`]) belonged to a run of the dead daemon — the state lock
//!   says no other daemon runs here — and is ended (SIGTERM, grace, SIGKILL) before
//!   anything else happens, so no retry ever runs beside what it retries. A stored pid is
//!   never signalled: after a reboot or a long time it may name someone else's process.
//! - `Running`: `Crashed` ("ended at restart" when a process of it was found, "lost when
//!   the daemon stopped" when none was); its retry decision is owed in the store.
//! - `Pending` (queued behind a concurrency limit): back in its queue, in slot order,
//!   before any new slot lines up.
//! - `AwaitingRetry`: back on the retry timer, at its `not_before`.
//! - `Scheduled` (claimed, never started): `Skipped` with reason `missed`.
//! - Owed retry decisions (an attempt that ended while the daemon was stopping, or that
//!   recovery just recorded Crashed) are made after the first apply, from the store.
//! - In a cluster (a PostgreSQL store) the start settles only this node's `Running`
//!   runs; the rest (waiting runs, runs no node claims) is settled when the node comes to
//!   lead (`role.rs`), and another node's runs are its own until it is lost.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::runner::contain;
use crate::store::{RunState, StoreError};

use super::Engine;

/// Whether the first apply since the start has settled what recovery left.
#[derive(Debug, Default)]
pub struct Recovered {
    settled: bool,
}

impl Recovered {
    pub fn is_settled(&self) -> bool {
        self.settled
    }
}

impl Engine {
    pub(super) async fn recover(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let instance = self.ctx.instance.clone();
        let left = tokio::task::spawn_blocking(move || contain::scan(&instance))
            .await
            .unwrap_or_default();
        if !left.is_empty() {
            tracing::warn!(
                "{} process(es) of runs of a previous daemon still run: SIGTERM, SIGKILL after {:?}",
                left.len(),
                self.ctx.grace
            );
            for p in &left {
                let _ = crate::runner::append_log_line(
                    &super::attempt::log_path(&self.ctx.logs_dir, p.run_id),
                    &format!(
                        "# sundial: process {} ({}) outlived the daemon that started it; ended at restart",
                        p.pid, p.name
                    ),
                );
            }
            contain::end(&left, self.ctx.grace).await;
        }
        let had_process: BTreeSet<i64> = left.iter().map(|p| p.run_id).collect();
        self.settle_unfinished(&had_process, now)
    }

    /// Settles what the store says is unfinished, as far as this engine may: alone,
    /// everything; in a cluster, a standby only its own node's `Running` runs (the rest is
    /// the leader's), and a leader also what waits and the runs no node claims. Another
    /// live node's runs are its own (a lost node's are settled as `node_lost`). A run
    /// this engine still runs is left alone.
    pub(super) fn settle_unfinished(
        &mut self,
        had_process: &BTreeSet<i64>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = self.cluster.as_ref().map(|c| c.config.node.clone());
        let leads = self.leads();
        for run in self.store.unfinished_runs()? {
            match run.state {
                RunState::Running => {
                    let ours = match (&node, &run.node) {
                        (None, _) => true,
                        (Some(me), Some(theirs)) => me == theirs,
                        (Some(_), None) => leads,
                    };
                    if !ours || self.running.contains_key(&run.id) {
                        continue;
                    }
                    let reason = if had_process.contains(&run.id) {
                        "ended at restart: the daemon had lost track of it"
                    } else {
                        "lost when the daemon stopped"
                    };
                    tracing::warn!(
                        "run {} of {} was running when the daemon stopped: Crashed ({reason})",
                        run.id,
                        super::shown(&run.deployment)
                    );
                    self.store
                        .finish_run(run.id, RunState::Crashed, None, Some(reason), now)?;
                }
                _ if !leads => {}
                RunState::Pending => self.enqueue(
                    &run.deployment,
                    run.id,
                    run.scheduled_for.unwrap_or(run.created_at),
                ),
                RunState::AwaitingRetry => self
                    .retries
                    .push(Reverse((run.not_before.unwrap_or(now), run.id))),
                // In a cluster a dispatched run waits for a node to claim it, unless its
                // slot is long past (no node was there to take it).
                RunState::Scheduled
                    if self.dispatches()
                        && run.node.is_none()
                        && run
                            .scheduled_for
                            .is_none_or(|at| now - at < super::dispatch::STALE_DISPATCH) => {}
                RunState::Scheduled => {
                    self.store
                        .finish_run(run.id, RunState::Skipped, None, Some("missed"), now)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// At the first apply: makes every retry decision the store says is owed.
    pub(super) fn settle_recovered(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.recovered.settled {
            return Ok(());
        }
        self.recovered.settled = true;
        for run in self.store.retry_pending()? {
            self.maybe_retry(&run, false, now)?;
        }
        Ok(())
    }
}
