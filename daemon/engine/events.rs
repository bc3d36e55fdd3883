//! Run events: what attempts report (a run began, its process, its end), recorded.
//!
//! The events that arrived together are handled together, so a burst costs a few
//! transactions instead of one `fsync` per event: the starts among them in one
//! transaction, and each stretch of ends in one transaction, then what follows each end
//! (the log line, the retry decision, the next queued run), in order. The promise holds
//! per run: its end is durable before anything acts on it. When the disk is full, the
//! ends not yet recorded wait whole (see [`Engine::retry_deferred`]) and the runs keep
//! their places until they are.

use chrono::{DateTime, Utc};

use crate::store::{Progress, RunState, StoreError};

use super::attempt::RunEvent;
use super::faults::ignore_transient;
use super::{shown, Engine};

/// After how many ends, once nothing runs, the heap's free pages are given back.
const RELEASE_AFTER_ENDS: usize = 1_000;
/// How long after a burst's last end its memory is given back.
const RELEASE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The fields of one `Finished` event.
struct End {
    id: i64,
    state: RunState,
    exit_code: Option<i32>,
    reason: Option<String>,
}

impl End {
    fn of(event: RunEvent) -> Option<End> {
        match event {
            RunEvent::Finished {
                id,
                state,
                exit_code,
                reason,
            } => Some(End {
                id,
                state,
                exit_code,
                reason,
            }),
            _ => None,
        }
    }

    fn event(self) -> RunEvent {
        RunEvent::Finished {
            id: self.id,
            state: self.state,
            exit_code: self.exit_code,
            reason: self.reason,
        }
    }
}

impl Engine {
    /// Handles the events that arrived together: the starts in one transaction, then the
    /// ends in one transaction, then what follows each end, in order. (A run's start
    /// always arrives before its end, so recording every start first keeps each run's
    /// order.)
    pub(super) fn on_events(
        &mut self,
        events: Vec<RunEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut progress = Vec::new();
        let mut ends = Vec::new();
        for event in events {
            match event {
                RunEvent::Began { id, at } => progress.push(Progress::Began(id, at)),
                RunEvent::Spawned { id, pid } => progress.push(Progress::Spawned(id, pid)),
                finished @ RunEvent::Finished { .. } => ends.extend(End::of(finished)),
            }
        }
        self.record_progress(&mut progress)?;
        if ends.is_empty() {
            return Ok(());
        }
        self.on_ends(ends, now)
    }

    /// One event (the graceful stop hands them over one at a time).
    pub(super) fn on_event(
        &mut self,
        event: RunEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.on_events(vec![event], now)
    }

    /// Records when runs began and which process each runs. Informational: lost (not
    /// retried) when the disk is full.
    fn record_progress(&mut self, progress: &mut [Progress]) -> Result<(), StoreError> {
        if progress.is_empty() {
            return Ok(());
        }
        // In the order of the runs' ids, as `on_ends` (the order within a run is kept).
        progress.sort_by_key(|p| match p {
            Progress::Began(id, _) | Progress::Spawned(id, _) => *id,
        });
        ignore_transient(self.store.record_progress(progress))
    }

    /// Records the ends in one transaction, then follows up each. Nothing acts on an end
    /// before it is durable; when the disk is full, every end waits.
    fn on_ends(&mut self, mut ends: Vec<End>, now: DateTime<Utc>) -> Result<(), StoreError> {
        // Rows are written in the order of their ids, as every other transaction writing
        // several runs does: two nodes' transactions then never wait for each other in a
        // circle (a deadlock).
        ends.sort_by_key(|end| end.id);
        let written = if ends.len() == 1 {
            self.record_end(&ends[0], now)
        } else {
            self.store.begin_batch().and_then(|()| {
                ends.iter()
                    .try_for_each(|end| self.record_end(end, now))
                    .and_then(|()| self.store.commit_batch())
            })
        };
        if let Err(e) = written {
            if ends.len() > 1 {
                self.store.rollback_batch();
            }
            if e.is_transient() {
                self.deferred_events
                    .extend(ends.into_iter().map(End::event));
            }
            return Err(e);
        }
        self.ended_since_release += ends.len();
        // In a cluster: the leader is told, and counts again what runs where.
        ignore_transient(self.tell_ended())?;
        self.refresh_active()?;
        // Each end's follow-ups; one that fails does not keep the others from theirs.
        let mut first_error = None;
        for end in ends {
            if let Err(e) = self.after_end(end, now) {
                first_error = first_error.or(Some(e));
            }
        }
        // Room was made: this node claims what waits for one.
        if let Err(e) = self.claim(now) {
            first_error = first_error.or(Some(e));
        }
        // A burst is over: the memory its attempts held goes back to the system.
        if self.running.is_empty() && self.ended_since_release >= RELEASE_AFTER_ENDS {
            self.ended_since_release = 0;
            // The table of runs in flight keeps the size of the burst unless told, and the
            // store's page cache the pages its rows filled.
            self.running.shrink_to_fit();
            self.store.release_memory();
            // A moment later: what the last ends set free (the attempts' tasks, the views
            // and status they changed, API pages read meanwhile) is freed after them.
            tokio::spawn(async {
                tokio::time::sleep(RELEASE_DELAY).await;
                let _ = tokio::task::spawn_blocking(crate::memory::release).await;
            });
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Caps the run's log (final before the run is reported final) and records its end;
    /// a reason too long to store is left out.
    fn record_end(&mut self, end: &End, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.cap_log(end.id);
        let (id, state, code) = (end.id, end.state, end.exit_code);
        let finished = self
            .store
            .finish_run(id, state, code, end.reason.as_deref(), now);
        if finished.as_ref().is_err_and(StoreError::is_row_error) {
            return self.store.finish_run(id, state, code, None, now);
        }
        finished
    }

    /// What follows a recorded end: the run leaves the running set, the log line, the
    /// retry decision and the next queued run of its deployment.
    fn after_end(&mut self, end: End, now: DateTime<Utc>) -> Result<(), StoreError> {
        let End {
            id,
            state,
            exit_code,
            reason,
        } = end;
        let flight = self.running.remove(&id);
        let name = flight.as_ref().map(|f| shown(&f.deployment).into_owned());
        let outcome = match (exit_code, reason.as_deref()) {
            (_, Some(reason)) => format!(" ({reason})"),
            (Some(code), None) if code != 0 => format!(" (exit code {code})"),
            _ => String::new(),
        };
        let line = format!(
            "{}: run {id} {}{outcome}",
            name.as_deref().unwrap_or("?"),
            state.as_str()
        );
        // What went wrong is a warning, so `journalctl -p warning` shows it.
        if state.may_retry() {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
        // Stopping, or standing by: the retry stays owed in the store, decided at the
        // next start or by the leader.
        if self.stopping || !self.leads() {
            return Ok(());
        }
        let cancelled = flight.as_ref().is_some_and(|f| f.cancel_requested);
        if let Some(ended) = self.store.run(id)? {
            self.maybe_retry(&ended, cancelled, now)?;
        }
        if let Some(flight) = flight {
            self.drain_queue(&flight.deployment, now)?;
        }
        Ok(())
    }
}
