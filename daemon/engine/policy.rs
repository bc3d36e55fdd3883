//! Run policies (DESIGN.md "Outcomes and retries", "Concurrency"): which runs may start
//! now, which wait in their deployment's queue, which are refused as an overlap, and which
//! ended runs get another attempt.
//!
//! - Concurrency: runs in flight count against `concurrency_limit` whatever their trigger
//!   (schedule, catch-up, manual, retry). ENQUEUE (the default) keeps a run `Pending` and
//!   starts it when a place frees, oldest slot first: a new run never overtakes the queue
//!   (also across a restart). CANCEL_NEW records it `Cancelled` with reason `overlap`. A
//!   run waiting to retry holds no place.
//! - A waiting run starts with the deployment as it is then (definition and checkout of
//!   the newest applied commit, recorded on its row). A deployment that is gone by then
//!   cancels it (`deployment removed`); a paused one too (`deployment paused`): pausing
//!   stops what waits as well as new slots. So does an attempt armed ahead of its slot
//!   (or pre-started) that has not begun when its deployment is paused or removed: it is
//!   withdrawn and ends Cancelled with the same reason; one that has begun goes on. A
//!   commit that changes the timing of the schedule a slot was armed for, or makes it
//!   inactive, withdraws that slot likewise (`schedule changed`, `schedule inactive`).
//! - Retries: a `Failed`, `TimedOut` or `Crashed` attempt is retried while attempts remain
//!   (total = `retries` + 1). The ended attempt keeps its own outcome (exit code, reason);
//!   the next attempt is a new row (trigger `retry`, same slot, attempt n+1) that waits
//!   `AwaitingRetry` until `not_before`, in SQLite, so a restart keeps it. The decision
//!   itself is durable: an ended attempt owes it in the store until it is made, so a
//!   daemon that stops in between makes it at its next start. A run cancelled by a user
//!   is never retried, even when its process failed on its own as the cancel arrived.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::reconcile::SharedDeployment;
use crate::runner::process::{StopRequest, Withdrawal};
use crate::store::{NewRun, Run, RunState, StoreError, Trigger};
use crate::validate::desired::CollisionStrategy;
use crate::validate::Deployment;

use super::attempt::{self, Attempt};
use super::Engine;

/// An attempt in flight.
pub struct InFlight {
    pub stop: watch::Sender<Option<StopRequest>>,
    pub commit: String,
    pub deployment: String,
    /// A user asked to cancel it: whatever it ends as, it gets no retry.
    pub cancel_requested: bool,
    /// When it was started (for time-to-completion SLAs).
    pub started_at: DateTime<Utc>,
    /// For a scheduled slot: which slot it is (a commit that leaves it no slot withdraws
    /// it if it has not begun).
    pub slot_of: Option<Box<ArmedSlot>>,
}

/// The slot an attempt was armed for: its schedule's id, that schedule's timing then, and
/// its instant.
pub struct ArmedSlot {
    pub schedule_id: String,
    pub timing: Arc<str>,
    pub at: DateTime<Utc>,
}

impl ArmedSlot {
    /// Why `deployment` (as a newer commit has it) no longer has this slot, if it does not:
    /// its schedule was made inactive, or no active schedule fires at its instant any more
    /// (the same timing, or a new timing that still has the instant, keeps it: the new
    /// timing is planned from after the armed slots, so a withdrawal would lose the run).
    /// A schedule anchored at the commit that introduced it is anchored anew by a change,
    /// so only the same timing keeps its slot.
    pub fn withdrawal(&self, deployment: &Deployment) -> Option<Withdrawal> {
        let same = deployment
            .schedules
            .iter()
            .find(|s| s.id == self.schedule_id);
        if same.is_some_and(|s| !s.active) {
            return Some(Withdrawal::ScheduleInactive);
        }
        let fires_then = |s: &&crate::validate::desired::PlannedSchedule| {
            s.active
                && (s.fingerprint == self.timing
                    || (!s.anchored_at_commit
                        && s.schedule
                            .next_after(self.at - chrono::TimeDelta::milliseconds(1))
                            .is_some_and(|fire| fire.at == self.at)))
        };
        let kept = match same {
            Some(s) => fires_then(&s),
            // Another identity (its parameters or timing changed without a slug).
            None => deployment.schedules.iter().any(|s| fires_then(&s)),
        };
        (!kept).then_some(Withdrawal::ScheduleChanged)
    }
}

/// What to do with a run that wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Start,
    Queue,
    Refuse,
}

impl Engine {
    /// How many attempts of `deployment` are in flight: here, or in a cluster on every
    /// node (dispatched or running, as last counted plus what was dispatched since).
    pub(super) fn in_flight(&self, deployment: &str) -> usize {
        if self.dispatches() {
            return self.active.get(deployment).copied().unwrap_or(0);
        }
        self.running
            .values()
            .filter(|r| r.deployment == deployment)
            .count()
    }

    /// Whether the limit leaves a place for one more run, given `extra` already admitted
    /// in this batch.
    fn has_place(&self, deployment: &Deployment, extra: usize) -> bool {
        deployment
            .concurrency
            .is_none_or(|limit| self.in_flight(&deployment.name) + extra < limit.limit as usize)
    }

    /// What to do with a new run of `deployment` (one not already in its queue), given
    /// `extra` already admitted in this batch: it starts only if there is a place and no
    /// older run waits for one.
    pub(super) fn admission(&self, deployment: &Deployment, extra: usize) -> Admission {
        let Some(limit) = deployment.concurrency else {
            return Admission::Start;
        };
        let queued = self
            .queues
            .get(&deployment.name)
            .is_some_and(|q| !q.is_empty());
        if !queued && self.has_place(deployment, extra) {
            return Admission::Start;
        }
        match limit.strategy {
            CollisionStrategy::Enqueue => Admission::Queue,
            CollisionStrategy::CancelNew => Admission::Refuse,
        }
    }

    /// Starts the attempt of a run row already committed as Running. Inside a batch of
    /// claims ([`Engine::batch`]) the run takes its place at once (so limits count it) but
    /// its process waits for the batch's commit.
    pub(super) fn start(
        &mut self,
        id: i64,
        deployment: &SharedDeployment,
        commit: &str,
        row: &NewRun,
        epoch: Option<i64>,
    ) {
        let (stop, stop_rx) = watch::channel(None);
        let slot_of = row
            .schedule_id
            .as_ref()
            .filter(|_| row.trigger == Trigger::Schedule)
            .and_then(|sid| deployment.schedules.iter().find(|s| &s.id == sid))
            .zip(row.scheduled_for)
            .map(|(s, at)| {
                Box::new(ArmedSlot {
                    schedule_id: s.id.clone(),
                    timing: Arc::clone(&s.fingerprint),
                    at,
                })
            });
        self.running.insert(
            id,
            InFlight {
                stop,
                commit: commit.to_string(),
                deployment: deployment.name.clone(),
                cancel_requested: false,
                started_at: Utc::now(),
                slot_of,
            },
        );
        let tz = row
            .schedule_id
            .as_ref()
            .and_then(|sid| deployment.schedules.iter().find(|s| &s.id == sid))
            .map_or(crate::schedule::Tz::UTC, |s| s.schedule.timezone());
        let attempt = Attempt {
            run_id: id,
            deployment: deployment.clone(),
            commit: commit.to_string(),
            scheduled_for: row.scheduled_for.map(|at| attempt::in_zone(at, tz)),
            attempt: row.attempt,
            parameters: row.parameters.clone(),
            // A slot armed ahead of its time starts on the dot, never early.
            not_before: row.scheduled_for.filter(|at| *at > Utc::now()),
            epoch,
        };
        tracing::info!(
            "{}: run {id} started ({}, attempt {}, slot {})",
            super::shown(&deployment.name),
            row.trigger.as_str(),
            row.attempt,
            super::time(row.scheduled_for)
        );
        match &mut self.batch {
            Some(batch) => batch.spawns.push((attempt, stop_rx)),
            None => self.spawn(attempt, stop_rx),
        }
    }

    /// Spawns an attempt whose run row is durable.
    pub(super) fn spawn(&self, attempt: Attempt, stop_rx: watch::Receiver<Option<StopRequest>>) {
        tokio::spawn(attempt::execute(
            Arc::clone(&self.ctx),
            attempt,
            stop_rx,
            self.events.clone(),
        ));
    }

    /// Withdraws the attempts of `deployment` that have not begun (a slot armed ahead of its
    /// time, a pre-started run not yet released): paused or removed, it starts nothing
    /// more. Those that have begun ignore it.
    pub(super) fn withdraw(&self, deployment: &str, why: Withdrawal) {
        for flight in self.running.values().filter(|r| r.deployment == deployment) {
            StopRequest::withdraw(&flight.stop, why);
        }
    }

    /// Withdraws the scheduled slots of `deployment` (as a commit now has it) that have not
    /// begun and are no longer slots ([`ArmedSlot::withdrawal`]). Prefect likewise drops the
    /// scheduled runs of a schedule it changes.
    pub(super) fn withdraw_changed_slots(&self, deployment: &Deployment) {
        for flight in self
            .running
            .values()
            .filter(|r| r.deployment == deployment.name)
        {
            if let Some(why) = flight
                .slot_of
                .as_ref()
                .and_then(|s| s.withdrawal(deployment))
            {
                StopRequest::withdraw(&flight.stop, why);
            }
        }
    }

    /// Queues a `Pending` run behind its deployment's limit, oldest slot first.
    pub(super) fn enqueue(&mut self, deployment: &str, id: i64, order: DateTime<Utc>) {
        if let Some(batch) = &mut self.batch {
            batch.queued.push((deployment.to_string(), id, order));
            return;
        }
        let queue = self.queues.entry(deployment.to_string()).or_default();
        if queue.iter().any(|(_, queued)| *queued == id) {
            return;
        }
        let at = queue.partition_point(|(t, q)| (*t, *q) <= (order, id));
        queue.insert(at, (order, id));
    }

    /// Starts queued runs of `deployment` while its limit allows.
    pub(super) fn drain_queue(
        &mut self,
        deployment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        loop {
            let Some(&(_, id)) = self.queues.get(deployment).and_then(|q| q.first()) else {
                return Ok(());
            };
            // A gone or paused deployment admits every queued run, and `start_waiting`
            // records each Cancelled.
            let blocked = self.applied.deployment(deployment).is_some_and(|(d, _)| {
                !d.paused && !self.pauses.contains_key(&d.name) && !self.has_place(d, 0)
            });
            if blocked {
                return Ok(());
            }
            if let Some(queue) = self.queues.get_mut(deployment) {
                queue.remove(0);
            }
            self.start_waiting(id, true, now)?;
        }
    }

    /// Starts a stored run that waited (queued or retrying), if it still waits.
    /// `from_queue`: it is its queue's head (so the queue does not hold it back).
    pub(super) fn start_waiting(
        &mut self,
        id: i64,
        from_queue: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(run) = self.store.run(id)? else {
            return Ok(());
        };
        if !matches!(
            run.state,
            RunState::Pending | RunState::AwaitingRetry | RunState::Scheduled
        ) {
            return Ok(()); // cancelled meanwhile
        }
        let Some((deployment, commit)) = self.applied.shared(&run.deployment) else {
            return self.cancel_waiting(id, "deployment removed", now);
        };
        if deployment.paused {
            return self.cancel_waiting(id, "deployment paused", now);
        }
        // A manual run asked for now starts; what waited on a schedule's behalf does not.
        if self.pauses.contains_key(&deployment.name) && run.trigger != Trigger::Manual {
            return self.cancel_waiting(id, crate::store::PAUSED_AFTER_FAILURES, now);
        }
        // The deployment as it is now: its definition and the checkout of the same commit.
        let (deployment, commit) = (deployment.clone(), commit.to_string());
        let admission = if from_queue && self.has_place(&deployment, 0) {
            Admission::Start
        } else {
            self.admission(&deployment, 0)
        };
        match admission {
            Admission::Start if self.dispatches() => {
                if self.store.dispatch_run(id, &commit)? {
                    self.dispatched(&deployment.name, now)?;
                }
            }
            Admission::Start => {
                if self.store.start_run(id, &commit, now)? {
                    let row = row_of(&run, &commit);
                    self.start(id, &deployment, &commit, &row, None);
                }
            }
            Admission::Queue => {
                self.store.mark_pending(id)?;
                self.enqueue(
                    &deployment.name,
                    id,
                    run.scheduled_for.unwrap_or(run.created_at),
                );
            }
            Admission::Refuse => self.cancel_waiting(id, "overlap", now)?,
        }
        Ok(())
    }

    fn cancel_waiting(
        &mut self,
        id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.store.cancel_waiting(id, reason, now)? {
            tracing::info!("run {id} Cancelled ({reason})");
        }
        Ok(())
    }

    /// After an attempt ended: schedules the next attempt if one remains, and records
    /// that the decision was made. `cancelled`: a user asked to cancel it (no retry).
    pub(super) fn maybe_retry(
        &mut self,
        ended: &Run,
        cancelled: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // No retry decision is owed: its end needs none, it was made already, or a cancel
        // was asked of the node that ran it.
        if !ended.state.may_retry() || !ended.retry_pending {
            return Ok(());
        }
        let deployment = self.applied.deployment(&ended.deployment);
        let Some((deployment, commit)) =
            deployment.filter(|(d, _)| !cancelled && ended.attempt <= d.retries)
        else {
            return self.store.retry_decided(ended.id);
        };
        let delay = retry_delay(&deployment.retry_delays, ended.attempt);
        let not_before = now + chrono::Duration::from_std(delay).unwrap_or_default();
        let row = NewRun {
            deployment: ended.deployment.clone(),
            schedule_id: ended.schedule_id.clone(),
            scheduled_for: ended.scheduled_for,
            trigger: Trigger::Retry,
            state: RunState::AwaitingRetry,
            reason: Some(format!(
                "after attempt {} ended {}",
                ended.attempt,
                ended.state.as_str()
            )),
            attempt: ended.attempt + 1,
            commit: commit.to_string(),
            parameters: ended.parameters.clone(),
            started_at: None,
            not_before: Some(not_before),
            retry_of: Some(ended.id),
        };
        let inserted = match self.store.insert_retry(ended.id, &row, now) {
            Err(e) if e.is_row_error() => {
                // The next attempt cannot be recorded: it is not made (nothing starts
                // unrecorded), and the ended attempt's retry is decided.
                tracing::error!(
                    "{}: run {} is not retried: {}",
                    super::shown(&ended.deployment),
                    ended.id,
                    super::due::unstorable(&e, std::slice::from_ref(&row))
                );
                return self.store.retry_decided(ended.id);
            }
            inserted => inserted?,
        };
        if let Some(id) = inserted {
            tracing::info!(
                "{}: run {id} will retry in {delay:?} (attempt {})",
                super::shown(&ended.deployment),
                row.attempt
            );
            self.retries.push(Reverse((not_before, id)));
        }
        Ok(())
    }

    /// Starts every retry whose time has come, once a commit has been applied since the
    /// start (before that, no deployment is known and a retry would be lost as removed).
    pub(super) fn due_retries(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if !self.recovered.is_settled() {
            return Ok(());
        }
        while let Some(Reverse((at, id))) = self.retries.peek().copied() {
            if at > now {
                break;
            }
            self.retries.pop();
            self.start_waiting(id, false, now)?;
        }
        Ok(())
    }
}

/// The wait before the attempt after attempt `ended_attempt` (1-based): the list's entry
/// for that retry, the last entry repeating.
pub fn retry_delay(delays: &[Duration], ended_attempt: u32) -> Duration {
    let i = (ended_attempt as usize).saturating_sub(1);
    delays.get(i).or(delays.last()).copied().unwrap_or_default()
}

/// The stored run as the row shape `start` takes.
pub(super) fn row_of(run: &Run, commit: &str) -> NewRun {
    NewRun {
        deployment: run.deployment.clone(),
        schedule_id: run.schedule_id.clone(),
        scheduled_for: run.scheduled_for,
        trigger: run.trigger,
        state: RunState::Running,
        reason: None,
        attempt: run.attempt,
        commit: commit.to_string(),
        parameters: run.parameters.clone(),
        started_at: None,
        not_before: None,
        retry_of: run.retry_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_use_the_list_then_repeat_its_last() {
        let delays = [Duration::from_secs(1), Duration::from_secs(2)];
        assert_eq!(retry_delay(&delays, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(&delays, 2), Duration::from_secs(2));
        assert_eq!(retry_delay(&delays, 5), Duration::from_secs(2));
        assert_eq!(retry_delay(&[], 1), Duration::ZERO);
    }
}
