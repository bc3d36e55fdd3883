//! SLAs in the engine: what a notice pass learns about a run (it started late, it never
//! started, it completed too fast) and what only time tells (a run still going, a queued
//! slot not started, no success for too long), checked at every tick. Each breach is
//! recorded once per subject with its `sla` notices, logged as a warning, and listed by
//! `GET /api/breaches`; the run itself is never touched (it keeps running until its
//! timeout).

use chrono::{DateTime, Utc};

use crate::notify::{Event, Payload, RunLinks};
use crate::sla::{self, Breach, Kind};
use crate::store::{NewBreach, NewNotice, Run, RunFilter, RunState, StoreError};
use crate::validate::desired::Deployment;

use super::attempt::log_path;
use super::Engine;

impl Engine {
    /// The breaches a changed run shows, with their notices.
    pub(super) fn run_breaches(
        &self,
        deployment: &Deployment,
        run: &Run,
        started_now: bool,
        now: DateTime<Utc>,
    ) -> Vec<NewBreach> {
        let mut found = Vec::new();
        for s in &deployment.slas {
            let breach = match (run.state, run.scheduled_for) {
                // Lateness is about a slot's first attempt.
                (_, Some(slot)) if started_now && run.attempt == 1 => {
                    sla::started_late(s, slot, run.started_at, Some(run.id), now)
                }
                (RunState::Skipped, Some(slot))
                    if run
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with("missed")) =>
                {
                    sla::never_started(s, slot, run.id, "missed")
                }
                (RunState::Cancelled, Some(slot)) if run.reason.as_deref() == Some("overlap") => {
                    sla::never_started(s, slot, run.id, "refused by the concurrency limit")
                }
                (RunState::Completed, _) => match (run.started_at, run.ended_at) {
                    (Some(start), Some(end)) => {
                        sla::too_fast(s, run.id, (end - start).to_std().unwrap_or_default())
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(b) = breach {
                found.push(self.with_notices(deployment, b, Some(run)));
            }
        }
        found
    }

    /// Checks what only time tells: runs going on too long, queued slots not started,
    /// deployments without a success for too long.
    pub(super) fn check_slas(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut candidates: Vec<(String, Breach)> = Vec::new();
        for (id, flight) in &self.running {
            let Some((d, _)) = self.applied.deployment(&flight.deployment) else {
                continue;
            };
            for s in &d.slas {
                if let Some(b) = sla::running_too_long(s, *id, flight.started_at, now) {
                    candidates.push((d.name.clone(), b));
                }
            }
        }
        for (name, queue) in &self.queues {
            let Some((d, _)) = self.applied.deployment(name) else {
                continue;
            };
            for (slot, id) in queue {
                for s in &d.slas {
                    if let Some(b) = sla::started_late(s, *slot, None, Some(*id), now) {
                        candidates.push((d.name.clone(), b));
                    }
                }
            }
        }
        let watched: Vec<Deployment> = self
            .applied
            .deployments()
            .map(|(d, _)| d)
            .filter(|d| d.slas.iter().any(|s| matches!(s.kind, Kind::Frequency(_))))
            .cloned()
            .collect();
        for d in &watched {
            let mut health = self.store.health(&d.name)?;
            let since = match (health.last_success, health.watch_since) {
                (Some(at), _) | (None, Some(at)) => at,
                (None, None) => {
                    health.watch_since = Some(now);
                    self.store.set_health(&d.name, &health)?;
                    continue;
                }
            };
            for s in &d.slas {
                if let Some(b) = sla::stale(s, since, health.last_success.is_some(), now) {
                    candidates.push((d.name.clone(), b));
                }
            }
        }
        let mut new = Vec::new();
        for (name, breach) in candidates {
            if self.store.has_breach(&name, &breach.sla, &breach.subject)? {
                continue;
            }
            let Some((d, _)) = self.applied.deployment(&name) else {
                continue;
            };
            let run = match breach.run_id {
                Some(id) => self.store.run(id)?,
                None => self
                    .store
                    .runs(&RunFilter {
                        deployment: Some(name.clone()),
                        limit: 1,
                        ..RunFilter::default()
                    })?
                    .pop(),
            };
            new.push(self.with_notices(d, breach, run.as_ref()));
        }
        if new.is_empty() {
            return Ok(());
        }
        for b in self.store.record_breaches(&new, now)? {
            tracing::warn!("SLA `{}` breached ({}): {}", b.sla, b.severity, b.detail);
        }
        self.next_notice = Some(now);
        Ok(())
    }

    /// A breach with the `sla` notices its deployment asks for.
    fn with_notices(&self, d: &Deployment, breach: Breach, run: Option<&Run>) -> NewBreach {
        let log = run
            .map(|r| log_path(&self.ctx.logs_dir, r.id))
            .unwrap_or_default();
        let links = RunLinks {
            base_url: &self.public_url,
            log: &log,
        };
        let notices = self
            .applied
            .notifications_of(d)
            .iter()
            .filter(|n| n.wants(Event::Sla))
            .map(|n| NewNotice {
                target: n.target.clone(),
                payload: Payload::breach(&d.name, &breach, run, &links),
            })
            .collect();
        NewBreach {
            deployment: d.name.clone(),
            breach,
            notices,
        }
    }
}
