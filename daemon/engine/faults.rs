//! Store faults: a full disk is not fatal (what could not be written waits and is
//! written again every turn; the status says so until writes succeed), any other store
//! error is; a new database sets an old state directory's run logs aside.

use chrono::{DateTime, Utc};

use crate::store::StoreError;

use super::sync::SyncMessage;
use super::{error_chain, Engine};

impl Engine {
    /// After each turn: a full disk is reported in the status (and cleared once writes
    /// succeed again) and the loop goes on; any other store error is returned (fatal).
    pub(super) fn settle_turn(&mut self, turn: Result<(), StoreError>) -> Result<(), StoreError> {
        match turn {
            Ok(()) => {
                let waiting = !self.deferred_events.is_empty() || self.deferred_sync.is_some();
                if self.status.store_error.is_some() && !waiting {
                    tracing::info!("the state database is writable again");
                    self.status.store_error = None;
                    self.publish();
                }
                Ok(())
            }
            // Another node leads: this one stands by.
            Err(e) if e.is_fenced() => {
                self.demote(&error_chain(&e));
                Ok(())
            }
            Err(e) if e.is_transient() => {
                // Whether a scheduling write that got no answer was committed is unknown:
                // a leader stands by, and takes over again from what the store holds. (A
                // deadlock or a time-out rolled it back: it is tried again.)
                if e.outcome_unknown() && self.leads() && self.cluster.is_some() {
                    self.demote(&format!(
                        "the database did not answer ({})",
                        error_chain(&e)
                    ));
                }
                if self.status.store_error.is_none() {
                    let (log, shown) = if e.is_disk_full() {
                        (
                            format!("the disk of the state database is full: {}; slots and run ends wait until it can be written", error_chain(&e)),
                            format!(
                                "the disk of {} is full: new slots wait (and follow the catch-up rule once recorded), run ends are recorded when space returns; free some space",
                                self.store_name
                            ),
                        )
                    } else {
                        (
                            format!("{}; slots and run ends wait until it answers", error_chain(&e)),
                            format!(
                                "{}: new slots wait (and follow the catch-up rule once recorded), run ends are recorded when it answers",
                                error_chain(&e)
                            ),
                        )
                    };
                    tracing::error!("{log}");
                    self.status.store_error = Some(shown);
                    self.publish();
                }
                Ok(())
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Retries what a full disk held back: run ends, then a commit.
    pub(super) fn retry_deferred(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let events = std::mem::take(&mut self.deferred_events);
        self.on_events(events, now)?;
        if let Some(synced) = self.deferred_sync.take() {
            self.on_sync(SyncMessage::Synced(synced), now)?;
        }
        Ok(())
    }
}

/// A store write whose loss is harmless when the store cannot be written for now (a full
/// disk, an unreachable server); other errors stay errors.
pub(super) fn ignore_transient(written: Result<(), StoreError>) -> Result<(), StoreError> {
    match written {
        Err(e) if e.is_transient() => {
            tracing::debug!("not recorded: {}", error_chain(&e));
            Ok(())
        }
        other => other,
    }
}

/// A new database beside the logs of an old one (deleted, or a fresh start on an old
/// state directory): run ids start again at 1, so the old logs move to
/// `logs.before-<time>` rather than mix with new runs' logs.
pub(super) fn set_aside_old_logs(logs_dir: &std::path::Path) {
    let has_logs = std::fs::read_dir(logs_dir).is_ok_and(|mut d| d.next().is_some());
    if !has_logs {
        return;
    }
    let aside = logs_dir.with_file_name(format!(
        "logs.before-{}",
        Utc::now().format("%Y%m%dT%H%M%S")
    ));
    match std::fs::rename(logs_dir, &aside) {
        Ok(()) => tracing::warn!(
            "the state database is new but {} holds run logs: moved them to {} so no two runs' logs mix",
            logs_dir.display(),
            aside.display()
        ),
        Err(e) => tracing::error!("cannot move the old run logs out of {}: {e}", logs_dir.display()),
    }
}
