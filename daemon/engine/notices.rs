//! Notifications in the engine: after every turn, the runs whose rows changed are
//! noticed ([`crate::notify::events`]) and what their deployments ask to hear goes to the
//! store's outbox; due deliveries are handed to threads the loop never waits for, and
//! their answers come back as [`Delivered`].
//!
//! A delivery is leased before it starts (its next try moved past its time limit), so a
//! daemon that dies mid-delivery tries it again after a restart: at least once. A failed
//! try is retried with backoff (10 s doubling, at most 10 min) for a day, then given up;
//! both show in the status, `/metrics` and the log. Nothing here delays a run: the pass
//! is a few statements per changed row, and delivery happens elsewhere.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::notify::{self, deliver, Payload, RunLinks};
use crate::store::{NewNotice, Notice, Noticed, StoreError};

use super::attempt::log_path;
use super::Engine;

/// Marked runs read per statement.
const BATCH: usize = 500;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 8;
/// The first retry of a failed delivery; each next one waits twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(10);
const LONGEST_RETRY: Duration = Duration::from_secs(600);
/// A delivery that has failed for this long is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(86_400);

/// A delivery's answer.
#[derive(Debug)]
pub struct Delivered {
    notice: Notice,
    result: Result<(), String>,
}

impl Engine {
    /// Notices every marked run and fills the outbox; then starts due deliveries.
    pub(super) fn notice(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        loop {
            let marked = self.store.marked_runs(BATCH)?;
            if marked.is_empty() {
                break;
            }
            let mut noticed = Noticed::default();
            let mut health = BTreeMap::new();
            for (run, seen) in &marked {
                noticed.runs.push((run.id, run.state));
                let h = match health.entry(run.deployment.clone()) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v.insert(self.store.health(&run.deployment)?),
                };
                let events = notify::events(run, *seen, h);
                let Some((deployment, _)) = self.applied.deployment(&run.deployment) else {
                    continue;
                };
                let log = log_path(&self.ctx.logs_dir, run.id);
                let links = RunLinks {
                    base_url: &self.public_url,
                    log: &log,
                };
                for event in events {
                    for n in deployment.notifications.iter().filter(|n| n.wants(event)) {
                        noticed.outbox.push(NewNotice {
                            target: n.target.clone(),
                            payload: Payload::new(event, run, &links),
                        });
                    }
                }
            }
            let done = marked.len() < BATCH;
            noticed.health = health.into_iter().collect();
            if !noticed.outbox.is_empty() {
                self.next_notice = Some(now);
            }
            self.store.record_noticed(&noticed, now)?;
            if done {
                break;
            }
        }
        self.deliver_due(now)
    }

    /// Hands due deliveries to threads, leasing each for its time limit.
    fn deliver_due(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.stopping || self.next_notice.is_none_or(|at| at > now) {
            return Ok(());
        }
        let room = IN_FLIGHT.saturating_sub(self.delivering);
        if room > 0 {
            for notice in self.store.due_notices(now, room)? {
                let lease =
                    now + chrono::Duration::from_std(deliver::TIME_LIMIT * 2).unwrap_or_default();
                self.store.lease_notice(notice.id, lease)?;
                self.delivering += 1;
                let answers = self.deliveries.clone();
                // A thread of its own, never joined: a hung endpoint holds up nothing.
                let spawned = std::thread::Builder::new()
                    .name("sundial-notify".into())
                    .spawn(move || {
                        let result = deliver::deliver(&notice.target, &notice.payload);
                        let _ = answers.send(Delivered { notice, result });
                    });
                if let Err(e) = spawned {
                    self.delivering -= 1;
                    tracing::warn!("cannot start a notification delivery: {e}; tried again later");
                }
            }
        }
        self.next_notice = self.store.next_notice_at()?;
        Ok(())
    }

    /// Records a delivery's answer: delivered, tried again later, or given up.
    pub(super) fn on_delivered(
        &mut self,
        done: Delivered,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.delivering = self.delivering.saturating_sub(1);
        let Delivered { notice, result } = done;
        let what = format!(
            "{} notification of run {} to {}",
            notice.payload.event.as_str(),
            notice.payload.run_id,
            notice.target.describe()
        );
        match result {
            Ok(()) => {
                tracing::debug!("{what}: delivered");
                self.store.notice_delivered(notice.id, now)?;
            }
            Err(error) => {
                let age = (now - notice.created_at).to_std().unwrap_or_default();
                if age >= GIVE_UP_AFTER {
                    tracing::error!(
                        "{what}: given up after {} tries over {} h: {error}",
                        notice.attempts + 1,
                        age.as_secs() / 3600
                    );
                    self.store.notice_failed(notice.id, &error, None, now)?;
                } else {
                    let wait = FIRST_RETRY
                        .saturating_mul(1 << notice.attempts.min(16))
                        .min(LONGEST_RETRY);
                    tracing::warn!(
                        "{what} failed (try {}): {error}; trying again in {} s",
                        notice.attempts + 1,
                        wait.as_secs()
                    );
                    let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    self.store.notice_failed(notice.id, &error, Some(at), now)?;
                }
            }
        }
        self.status.notifications = self.store.outbox_counts()?;
        self.publish();
        self.next_notice = self.store.next_notice_at()?;
        self.deliver_due(now)
    }
}
