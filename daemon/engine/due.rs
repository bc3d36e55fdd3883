//! Due slots: the tick (the clock watch, due slots, due retries, log caps, retention) and
//! the settling of one schedule's due slots into run rows. The at-most-once claim and the
//! planning of new or changed schedules from the arm horizon live here.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use std::time::Instant;

use crate::scheduler::slots::{decide, due_slots, Action};
use crate::scheduler::{Jump, Key};
use crate::store::{NewRun, RunState, SlotCursor, StoreError, Trigger};

use super::{policy, shown, time, Engine};

impl Engine {
    /// Handles every schedule that is due at `now`.
    pub(super) fn tick(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.ticked_at = Instant::now();
        self.store.check_identity()?;
        self.retry_deferred(now)?;
        match self.clock.observe(now, Instant::now()) {
            Some(Jump::Forward(by)) => tracing::warn!("the wall clock jumped forward by {by:?} (suspend or clock step); slots passed over follow each deployment's catch-up policy"),
            Some(Jump::Backward(by)) => {
                let resume = now + chrono::Duration::from_std(by).unwrap_or_default();
                let warning = format!(
                    "the wall clock was stepped back by {by:?} at {}: slots already handled do not fire again, so schedules resume at about {}",
                    time(Some(now)),
                    time(Some(resume))
                );
                tracing::warn!("{warning}");
                self.status.clock_warning = Some((warning, resume));
                self.publish();
            }
            None => {}
        }
        // A standby schedules nothing: it stops the runs whose cancel was asked, claims
        // what it has room for, and keeps its own runs' logs in bounds.
        if !self.leads() {
            self.cap_logs();
            return self.node_turn(now);
        }
        if self
            .status
            .clock_warning
            .as_ref()
            .is_some_and(|(_, resume)| now >= *resume)
        {
            self.status.clock_warning = None;
            self.publish();
        }
        // A burst due at one instant is armed earlier, by its size.
        let lead = self.arm_lead();
        let horizon = now + chrono::Duration::from_std(lead).unwrap_or_default();
        self.armed_until = Some(self.armed_until.map_or(horizon, |at| at.max(horizon)));
        let due = self.timer.pop_due(horizon);
        // Every due schedule's slots in one transaction (one fsync for a burst).
        let claimed = if due.is_empty() {
            Ok(())
        } else {
            self.batched(|engine| {
                due.iter()
                    .try_for_each(|key| engine.handle_due(key, now, horizon))
            })
        };
        match claimed {
            Ok(()) => {}
            // Not claimed: tried again in a second, then due or missed by the rule.
            Err(e) if e.is_transient() => {
                for key in &due {
                    self.timer
                        .set(key.clone(), Some(now + chrono::Duration::seconds(1)));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        self.due_retries(now)?;
        self.leader_wake(now)?;
        self.node_turn(now)?;
        self.check_slas(now)?;
        self.cap_logs();
        self.maybe_prune(now)?;
        // Views change only when a schedule's next fire moved; most wake-ups (log checks,
        // retries, the clock watch) leave them as they were.
        if !due.is_empty() {
            self.publish();
        }
        Ok(())
    }

    /// Settles every slot of `key` between its cursor and `horizon` (run or recorded),
    /// then arms the timer for its next fire. A schedule seen for the first time, or whose
    /// timing changed since its cursor was planned, is planned from the arm horizon: no
    /// slot before the commit that brought it is due, and no slot already armed under
    /// another identity is claimed twice.
    pub(super) fn handle_due(
        &mut self,
        key: &Key,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some((deployment, commit)) = self.applied.shared(&key.0) else {
            return Ok(());
        };
        let Some(planned) = deployment.schedules.iter().find(|s| s.id == key.1) else {
            return Ok(());
        };
        let (deployment, commit, mut planned) =
            (deployment.clone(), commit.to_string(), planned.clone());
        let name = shown(&key.0);
        // A pre-started deployment is claimed (its row durable) before its process starts.
        let ahead = prestart_lead(&deployment);
        let horizon = horizon + ahead;
        let mut kept_anchor = None;
        let cursor = match self.store.cursor(&key.0, &key.1)? {
            // A cursor from before fingerprints were kept adopts the current timing.
            Some(c) if *c.fingerprint == *planned.fingerprint || c.fingerprint.is_empty() => {
                kept_anchor = c.anchor;
                c.last_slot
            }
            found => {
                if found.is_some() {
                    tracing::info!(
                        "{name}: schedule {} changed its timing; planned anew from now",
                        key.1
                    );
                }
                self.store
                    .set_cursor(&key.0, &key.1, horizon, &planned.fingerprint)?;
                horizon
            }
        };
        if planned.anchored_at_commit {
            // Planned once from the commit that introduced it, then kept with the cursor,
            // so a restart or a longer history never moves it.
            let anchor = match kept_anchor {
                Some(anchor) => anchor,
                None => {
                    let anchor = planned.introduced_at.unwrap_or(now);
                    self.store.set_anchor(&key.0, &key.1, anchor)?;
                    tracing::info!(
                        "{name}: interval schedule {} anchored at {}{}",
                        key.1,
                        time(Some(anchor)),
                        if planned.introduced_at.is_some() {
                            ", the time of the commit that introduced it"
                        } else {
                            " (its introducing commit was not found)"
                        }
                    );
                    anchor
                }
            };
            planned.schedule = planned.schedule.anchored_at(anchor);
        }
        self.fingerprints
            .insert(key.clone(), planned.fingerprint.clone());
        let (due, dropped) = due_slots(&planned.schedule, cursor, horizon);
        let mut parameters: Map<String, Json> = deployment.parameters.clone();
        if let Some(overrides) = &planned.parameters {
            parameters.extend(overrides.as_ref().clone());
        }
        let parameters = Json::Object(parameters);
        let inactive = deployment.paused || !planned.active;
        let paused_after_failures = self.pauses.contains_key(&key.0);
        let mut rows = Vec::new();
        if let Some(d) = dropped {
            // Nothing vanishes: slots beyond the per-schedule limit are one summary row.
            tracing::warn!(
                "{name}: {} slots from {} to {} were missed; recorded as one Skipped row",
                d.count,
                time(Some(d.first)),
                time(Some(d.last))
            );
            rows.push(NewRun {
                deployment: key.0.clone(),
                schedule_id: Some(key.1.clone()),
                scheduled_for: Some(d.first),
                trigger: Trigger::Schedule,
                state: RunState::Skipped,
                reason: Some(format!(
                    "missed: {} slots from {} to {}, recorded as this one row",
                    d.count,
                    time(Some(d.first)),
                    time(Some(d.last))
                )),
                attempt: 1,
                commit: commit.clone(),
                parameters: parameters.clone(),
                started_at: None,
                not_before: None,
                retry_of: None,
            });
        }
        let mut admitted = 0;
        for (at, action) in decide(&due, now, deployment.catchup, deployment.late_grace) {
            let (trigger, state, reason, started_at) = match action {
                // A paused deployment's slots did not run because it is paused, however late.
                Action::Skip if inactive => {
                    (Trigger::Schedule, RunState::Skipped, Some("inactive"), None)
                }
                Action::Skip if paused_after_failures => (
                    Trigger::Schedule,
                    RunState::Skipped,
                    Some(crate::store::PAUSED_AFTER_FAILURES),
                    None,
                ),
                Action::Skip => (Trigger::Schedule, RunState::Skipped, Some("missed"), None),
                Action::Run { .. } if inactive => {
                    (Trigger::Schedule, RunState::Skipped, Some("inactive"), None)
                }
                Action::Run { .. } if paused_after_failures => (
                    Trigger::Schedule,
                    RunState::Skipped,
                    Some(crate::store::PAUSED_AFTER_FAILURES),
                    None,
                ),
                Action::Run { catchup } => {
                    let trigger = if catchup {
                        Trigger::Catchup
                    } else {
                        Trigger::Schedule
                    };
                    match self.admission(&deployment, admitted) {
                        policy::Admission::Start if self.dispatches() => {
                            admitted += 1;
                            (trigger, RunState::Scheduled, None, None)
                        }
                        policy::Admission::Start => {
                            admitted += 1;
                            (trigger, RunState::Running, None, Some(now))
                        }
                        policy::Admission::Queue => (trigger, RunState::Pending, None, None),
                        policy::Admission::Refuse => {
                            (trigger, RunState::Cancelled, Some("overlap"), None)
                        }
                    }
                }
            };
            rows.push(NewRun {
                deployment: key.0.clone(),
                schedule_id: Some(key.1.clone()),
                scheduled_for: Some(at),
                trigger,
                state,
                reason: reason.map(str::to_string),
                attempt: 1,
                commit: commit.clone(),
                parameters: parameters.clone(),
                started_at,
                not_before: None,
                retry_of: None,
            });
        }
        if let Some(last) = due.last() {
            let cursor = SlotCursor {
                deployment: &key.0,
                schedule_id: &key.1,
                last_slot: *last,
                fingerprint: &planned.fingerprint,
            };
            let ids = match self.store.claim_slots(&rows, Some(cursor), now) {
                Err(e) if e.is_row_error() => {
                    // The slot is still claimed (at most once, nothing lost), as a run that
                    // failed without starting: the reason says why, without the value.
                    let reason = unstorable(&e, &rows);
                    tracing::error!("{name}: {reason}");
                    for row in &mut rows {
                        row.parameters = Json::Object(Map::new());
                        if matches!(
                            row.state,
                            RunState::Running | RunState::Pending | RunState::Scheduled
                        ) {
                            row.state = RunState::Failed;
                            row.started_at = None;
                            row.reason = Some(reason.clone());
                        }
                    }
                    self.store.claim_slots(&rows, Some(cursor), now)?
                }
                claimed => claimed?,
            };
            for (row, id) in rows.iter().zip(ids) {
                match (id, row.state) {
                    (Some(id), RunState::Running) => {
                        self.start(id, &deployment, &commit, row, None)
                    }
                    (Some(_), RunState::Scheduled) => self.dispatched(&key.0, now)?,
                    (Some(id), RunState::Pending) => {
                        tracing::info!("{name}: run {id} waits for a place (concurrency limit)");
                        self.enqueue(&key.0, id, row.scheduled_for.unwrap_or(now));
                    }
                    (Some(_), _) => tracing::info!(
                        "{name}: slot {} recorded Skipped ({})",
                        time(row.scheduled_for),
                        row.reason.as_deref().unwrap_or("")
                    ),
                    (None, _) => {
                        tracing::debug!("{name}: slot {} already handled", time(row.scheduled_for))
                    }
                }
            }
        }
        self.timer.set_ahead(
            key.clone(),
            planned.schedule.next_after(horizon).map(|f| f.at),
            ahead,
        );
        Ok(())
    }
}

/// How far ahead of its slots a deployment is armed beyond the usual: its
/// `prestart_seconds`, the time its interpreter has to start and import.
fn prestart_lead(deployment: &crate::validate::Deployment) -> chrono::Duration {
    deployment
        .prestart
        .and_then(|lead| chrono::Duration::from_std(lead).ok())
        .unwrap_or_default()
}

/// Why the rows of a slot could not be stored as they were: the store's word and the
/// largest parameters among them, with what to do.
pub(super) fn unstorable(error: &StoreError, rows: &[NewRun]) -> String {
    let size = rows
        .iter()
        .map(|r| r.parameters.to_string().len())
        .max()
        .unwrap_or(0);
    format!(
        "not started: the state database refused its row ({}); its parameters are {size} bytes as JSON and are left out of this record; make them smaller (or raise $SUNDIAL_STORE_MAX_VALUE)",
        super::error_chain(error)
    )
}
