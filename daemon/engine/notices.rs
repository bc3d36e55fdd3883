//! Notifications in the engine: after every turn, the runs whose rows changed are
//! noticed ([`crate::notify::events`]) and what their deployments ask to hear goes to the
//! store's outbox; due deliveries are handed to threads the loop never waits for, and
//! their answers come back as [`Delivered`].
//!
//! One delivery at a time goes to each target, oldest first, so a receiver hears a
//! deployment's events in the order they happened (a failure before its recovery).
//! A delivery is leased before it starts (its next try moved past its time limit), so a
//! daemon that dies mid-delivery tries it again after a restart: at least once. A failed
//! try is retried with backoff (10 s doubling, at most 10 min) for a day, then given up;
//! both show in the status, `/metrics` and the log. Nothing here delays a run: the pass
//! is a few statements per changed row, and delivery happens elsewhere.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::notify::{self, deliver, Event, Payload, RunLinks};
use crate::runner::process::Withdrawal;
use crate::store::{NewNotice, Notice, Noticed, Pause, StoreError};

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
        // The leader notices every node's runs.
        if !self.leads() || self.notice_waits() {
            return Ok(());
        }
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
                let deployment = self.applied.deployment(&run.deployment).map(|(d, _)| d);
                let late_after = deployment.map(|d| d.late_grace);
                let mut events = notify::events(run, *seen, h, late_after);
                let Some(deployment) = deployment else {
                    continue;
                };
                let started_now = events.contains(&Event::Start);
                let breaches = self.run_breaches(deployment, run, started_now, now);
                if breaches.iter().any(|b| !b.notices.is_empty()) {
                    self.next_notice = Some(now);
                }
                noticed.breaches.extend(breaches);
                // `pause_after_failures`: the failure that reaches the count pauses it.
                let mut pause_note = None;
                let reached = deployment
                    .pause_after_failures
                    .is_some_and(|n| h.failures_in_a_row >= n);
                let pausing = self.pauses.contains_key(&run.deployment)
                    || noticed.pauses.iter().any(|(d, _)| d == &run.deployment);
                if events.contains(&Event::Failure) && reached && !pausing {
                    let name = &run.deployment;
                    let note = format!(
                        "{name} paused after {} failed runs in a row (the last: run {}); its slots are skipped until it is resumed (`sundial resume {name}`, POST /api/deployments/{name}/resume or the dashboard) or a commit changes it",
                        h.failures_in_a_row, run.id
                    );
                    noticed.pauses.push((name.clone(), note.clone()));
                    events.push(Event::Paused);
                    pause_note = Some(note);
                }
                let log = log_path(&self.ctx.logs_dir, run.id);
                let links = RunLinks {
                    base_url: &self.public_url,
                    log: &log,
                };
                for event in events {
                    let to = self.applied.notifications_of(deployment);
                    for n in to.iter().filter(|n| n.wants(event)) {
                        let mut payload = Payload::new(event, run, &links);
                        if event == Event::Paused {
                            payload.note = pause_note.clone();
                            payload.text = format!(
                                "sundial: {}: {}",
                                pause_note.as_deref().unwrap_or_default(),
                                payload.url
                            );
                        }
                        noticed.outbox.push(NewNotice {
                            target: n.target.clone(),
                            payload,
                        });
                    }
                }
            }
            let done = marked.len() < BATCH;
            noticed.health = health.into_iter().collect();
            if !noticed.outbox.is_empty() {
                self.next_notice = Some(now);
            }
            for b in self.store.record_noticed(&noticed, now)? {
                tracing::warn!("SLA `{}` breached ({}): {}", b.sla, b.severity, b.detail);
            }
            for (deployment, note) in noticed.pauses {
                tracing::warn!("{note}");
                let pause = Pause {
                    deployment: deployment.clone(),
                    since: now,
                    note,
                };
                self.withdraw(&deployment, Withdrawal::Paused);
                self.pauses.insert(deployment, pause);
                self.publish();
            }
            if done {
                break;
            }
        }
        if self.next_notice.is_some_and(|at| at <= now) {
            self.deliver_due(now)?;
        }
        Ok(())
    }

    /// Ends a deployment's pause after failures: its next slots run again.
    pub(super) fn resume(&mut self, deployment: &str, why: &str) -> Result<(), StoreError> {
        if self.store.resume(deployment)? {
            tracing::info!(
                "{}: {why}; its schedules run again",
                super::shown(deployment)
            );
        }
        self.pauses.remove(deployment);
        self.publish();
        Ok(())
    }

    /// Hands due deliveries to threads (one per target at a time, oldest first), leasing
    /// each for its time limit. What waits for its target or a free place is handed on
    /// when a delivery ends; the timer wakes the loop only for retries to come.
    fn deliver_due(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.stopping {
            return Ok(());
        }
        let room = IN_FLIGHT.saturating_sub(self.delivering.len());
        if room > 0 {
            let mut picked = 0;
            for notice in self.store.due_notices(now, BATCH)? {
                if picked == room {
                    break;
                }
                if !self.delivering.insert(notice.target.clone()) {
                    continue; // its target is busy: after that delivery
                }
                picked += 1;
                let lease =
                    now + chrono::Duration::from_std(deliver::TIME_LIMIT * 2).unwrap_or_default();
                self.store.lease_notice(notice.id, lease)?;
                let answers = self.deliveries.clone();
                let target = notice.target.clone();
                // A thread of its own, never joined: a hung endpoint holds up nothing.
                let spawned = std::thread::Builder::new()
                    .name("sundial-notify".into())
                    .spawn(move || {
                        let result = deliver::deliver(&notice.target, &notice.payload);
                        let _ = answers.send(Delivered { notice, result });
                    });
                if let Err(e) = spawned {
                    // Tried again when its lease ends.
                    self.delivering.remove(&target);
                    tracing::warn!("cannot start a notification delivery: {e}");
                }
            }
        }
        self.next_notice = self.store.next_notice_after(now)?;
        Ok(())
    }

    /// Records a delivery's answer: delivered, tried again later, or given up.
    pub(super) fn on_delivered(
        &mut self,
        done: Delivered,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Delivered { notice, result } = done;
        self.delivering.remove(&notice.target);
        let what = format!(
            "{} notification of {} to {}",
            notice.payload.event.as_str(),
            match notice.payload.run_id {
                Some(id) => format!("run {id}"),
                None => notice.payload.deployment.clone(),
            },
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
        self.deliver_due(now)
    }
}
