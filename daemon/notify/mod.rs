//! Notifications: who is told what happened to a deployment's runs, and when.
//!
//! Declared in git (`notifications:` at a manifest's top level, the default for its
//! deployments, or on a deployment, which replaces that default; `[]` silences it), each
//! entry is a [`Target`] (a webhook, a local command, or a healthchecks.io-style ping URL)
//! and the [`Event`]s it wants.
//!
//! Contract: events are derived from the run ledger alone ([`events`], pure): a run's
//! state change marks the row, and one pass per engine turn turns marked rows into
//! outbox rows in the same transaction that clears the marks, so a crash between a run's
//! end and its notification loses nothing (at least once). `failure` is said only when no
//! retry follows; `recovery` is the first success after a failure; `skipped` covers
//! Skipped slots and slots refused by a concurrency limit (`CANCEL_NEW`). Delivery
//! ([`deliver`]) happens off the engine's loop with a time limit and is retried with
//! backoff; it never blocks or delays a run. Secrets stay in the daemon's environment:
//! `{{ $NAME }}` placeholders are stored as written and resolved at each delivery.

pub mod deliver;
mod payload;

use serde::{Deserialize, Serialize};

use crate::store::{Run, RunState};

pub use payload::{Payload, RunLinks, SlaBreach};

/// What a notification can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An attempt started (healthchecks pings only: `/start`).
    Start,
    /// A run completed.
    Success,
    /// A run failed, timed out or crashed, and no retry follows.
    Failure,
    /// The first success after a failure.
    Recovery,
    /// A slot that did not run: skipped (missed, inactive) or refused (`CANCEL_NEW`).
    Skipped,
    /// The deployment's schedules were paused after failing slots in a row
    /// (`pause_after_failures`).
    Paused,
    /// One of its SLAs (`sla:`) was breached.
    Sla,
    /// A slot's first attempt started later than `late_grace_seconds` after its time
    /// (it waited behind a concurrency limit, or was caught up after downtime).
    Late,
}

impl Event {
    /// The events a notification may ask for in `events:`.
    pub const CHOOSABLE: [Event; 7] = [
        Event::Success,
        Event::Failure,
        Event::Recovery,
        Event::Skipped,
        Event::Late,
        Event::Paused,
        Event::Sla,
    ];
    /// What a webhook or command hears without `events:`.
    pub const DEFAULT: [Event; 4] = [Event::Failure, Event::Recovery, Event::Paused, Event::Sla];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Failure => "failure",
            Event::Recovery => "recovery",
            Event::Skipped => "skipped",
            Event::Paused => "paused",
            Event::Sla => "sla",
            Event::Late => "late",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        [Event::Start]
            .into_iter()
            .chain(Event::CHOOSABLE)
            .find(|e| e.as_str() == text)
    }
}

/// Where a notification goes. Text may hold `{{ $NAME }}` placeholders, resolved from
/// the daemon's environment at each delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A JSON POST of the [`Payload`], with extra headers (e.g. a secret).
    Webhook {
        url: String,
        headers: Vec<(String, String)>,
    },
    /// A local program (argv, no shell): the payload as JSON on stdin and as
    /// `SUNDIAL_*` environment variables.
    Command { argv: Vec<String> },
    /// A healthchecks.io-style check: `URL/start` when a run starts, `URL` on success,
    /// `URL/fail` on a failure after the last retry.
    Healthchecks { url: String },
}

impl Target {
    /// What it is, for people: `webhook https://hooks.slack.com/...`.
    pub fn describe(&self) -> String {
        match self {
            Target::Webhook { url, .. } => format!("webhook {url}"),
            Target::Command { argv } => format!("command {}", argv.join(" ")),
            Target::Healthchecks { url } => format!("healthchecks {url}"),
        }
    }
}

/// One declared notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub target: Target,
    /// The events it wants (`events:`; for healthchecks: start, success and failure, always).
    pub on: Vec<Event>,
}

impl Notification {
    pub fn wants(&self, event: Event) -> bool {
        match self.target {
            Target::Healthchecks { .. } => {
                matches!(event, Event::Start | Event::Success | Event::Failure)
            }
            _ => self.on.contains(&event),
        }
    }
}

/// What the ledger knows of a deployment's recent outcomes, kept in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// The last run that ended for good failed (no retry followed).
    pub failing: bool,
    /// Slots in a row whose last attempt failed.
    pub failures_in_a_row: u32,
    /// When its last run completed.
    pub last_success: Option<chrono::DateTime<chrono::Utc>>,
    /// When a `stale_after` SLA began to watch it (before any success).
    pub watch_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The events a run's row says are owed, given the state it was last noticed in and the
/// deployment's health, which is updated. Called once per change of the row.
/// `late_after` is the deployment's `late_grace_seconds`: a slot's first attempt that
/// starts later than that after its time is `late`.
pub fn events(
    run: &Run,
    noticed: Option<RunState>,
    health: &mut Health,
    late_after: Option<std::time::Duration>,
) -> Vec<Event> {
    let mut said = Vec::new();
    let seen_start = matches!(noticed, Some(s) if s == RunState::Running || s.is_final());
    if run.started_at.is_some() && !seen_start && run.state != RunState::Skipped {
        said.push(Event::Start);
        let late = match (run.scheduled_for, run.started_at, late_after) {
            (Some(slot), Some(start), Some(grace)) if run.attempt == 1 => {
                (start - slot).to_std().is_ok_and(|by| by > grace)
            }
            _ => false,
        };
        if late {
            said.push(Event::Late);
        }
    }
    match run.state {
        RunState::Completed => {
            said.push(Event::Success);
            if health.failing {
                said.push(Event::Recovery);
            }
            *health = Health {
                last_success: run.ended_at.or(health.last_success),
                ..Health::default()
            };
        }
        // Ended without success; with a retry still to decide, nothing yet (the decision
        // marks the row again, and a retry that follows clears the mark).
        RunState::Failed | RunState::TimedOut | RunState::Crashed if !run.retry_pending => {
            said.push(Event::Failure);
            health.failing = true;
            health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        }
        RunState::Skipped => said.push(Event::Skipped),
        RunState::Cancelled if run.reason.as_deref() == Some("overlap") => {
            said.push(Event::Skipped)
        }
        _ => {}
    }
    said
}

#[cfg(test)]
mod tests;
