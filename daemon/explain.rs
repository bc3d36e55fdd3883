//! "Why didn't it run?": for one deployment and an instant or a range, what happened at
//! each slot its schedules have there, and why, from the run ledger.
//!
//! Pure: it takes the deployment as the engine plans it (interval anchors applied), the
//! rows the store holds for those slots, and the facts around them (now, a held-back file,
//! a pause), and reads no clock, store or git. Every slot gets one story: it ran (with
//! its lateness and attempts), it waits or runs now, it was skipped or refused (with the
//! recorded reason in words), it is still to come, it came before the schedule was
//! deployed, or nothing was recorded because the schedule was not in force then. An
//! instant where no slot falls says so, with the nearest fires on either side and what the
//! DST policy did to them.

use chrono::{DateTime, Duration, Utc};

use crate::schedule::{DstShift, Fire};
use crate::store::{Pause, Run, RunState};
use crate::validate::desired::Deployment;

/// The most slots one explanation lists.
pub const MAX_SLOTS: usize = 1000;

/// Slots before and after `now` that [`Span::Recent`] shows per schedule.
pub const RECENT_PAST: usize = 20;
pub const RECENT_AHEAD: usize = 3;

/// What to explain: one instant, every slot in a range (both ends included), or each
/// schedule's most recent slots and its next ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    At(DateTime<Utc>),
    Between(DateTime<Utc>, DateTime<Utc>),
    Recent(DateTime<Utc>),
}

/// What is known around the slots.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// The deployment's file fails at the newest commit: `file:line:column: message`.
    pub held_back: Option<String>,
    /// Paused at run time after failures.
    pub pause: Option<Pause>,
    /// Per schedule id, its earliest recorded slot (any row), if any.
    pub first_recorded: Vec<(String, DateTime<Utc>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub deployment: String,
    /// What holds for the whole deployment now (paused in git or after failures, held
    /// back, no schedules).
    pub notes: Vec<String>,
    pub slots: Vec<Story>,
    /// For an instant no slot falls on: why, with the nearest fires.
    pub no_slot: Option<NoSlot>,
    /// More slots fell in the range than are listed.
    pub truncated: bool,
}

/// One slot and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Story {
    pub at: DateTime<Utc>,
    pub schedule: String,
    /// `ran`, `failed`, `running`, `waiting`, `skipped`, `refused`, `cancelled`,
    /// `upcoming`, `not_deployed_yet`, `not_in_force`.
    pub what: &'static str,
    /// The first attempt's run, if the slot has one.
    pub run_id: Option<i64>,
    /// The last attempt's state.
    pub state: Option<String>,
    pub attempts: u32,
    /// How late the first attempt started, in seconds.
    pub lateness_seconds: Option<f64>,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NoSlot {
    pub why: String,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
}

/// The slots a span covers: (time, schedule index, what DST did), in time order.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    fires: Vec<(DateTime<Utc>, usize, Option<DstShift>)>,
    truncated: bool,
}

impl Slots {
    /// The first and last slot, to read their rows.
    pub fn range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        Some((self.fires.first()?.0, self.fires.last()?.0))
    }
}

/// The slots of `deployment`'s schedules in `span`, at most [`MAX_SLOTS`].
pub fn slots(deployment: &Deployment, span: Span) -> Slots {
    let mut fires = Vec::new();
    for (i, planned) in deployment.schedules.iter().enumerate() {
        let schedule = &planned.schedule;
        let found: Vec<Fire> = match span {
            Span::At(t) => schedule
                .next_after(t - Duration::milliseconds(1))
                .filter(|f| f.at == t)
                .into_iter()
                .collect(),
            Span::Between(from, to) => schedule
                .iter_after(from - Duration::milliseconds(1))
                .take_while(|f| f.at <= to)
                .take(MAX_SLOTS + 1)
                .collect(),
            Span::Recent(now) => {
                let mut found = fires_before(schedule, now, RECENT_PAST);
                found.extend(schedule.iter_after(now).take(RECENT_AHEAD));
                found
            }
        };
        fires.extend(found.into_iter().map(|f| (f.at, i, f.shift)));
    }
    fires.sort_by_key(|(at, i, _)| (*at, *i));
    let truncated = fires.len() > MAX_SLOTS;
    fires.truncate(MAX_SLOTS);
    Slots { fires, truncated }
}

/// Explains `slots` of `deployment` from `rows` (its runs whose slot is among them).
pub fn explain(
    deployment: &Deployment,
    slots: &Slots,
    rows: &[Run],
    facts: &Facts,
    span: Span,
) -> Explanation {
    let mut out = Explanation {
        deployment: deployment.name.clone(),
        notes: notes(deployment, facts),
        slots: Vec::new(),
        no_slot: None,
        truncated: slots.truncated,
    };
    for &(at, i, shift) in &slots.fires {
        let planned = &deployment.schedules[i];
        let attempts: Vec<&Run> = rows
            .iter()
            .filter(|r| {
                r.schedule_id.as_deref() == Some(&planned.id) && r.scheduled_for == Some(at)
            })
            .collect();
        let first_recorded = facts
            .first_recorded
            .iter()
            .find(|(id, _)| *id == planned.id)
            .map(|(_, t)| *t);
        let mut story = story(
            at,
            &planned.description,
            &attempts,
            rows,
            first_recorded,
            planned.introduced_at,
            facts.now,
        );
        if let Some(shift) = shift {
            story.why.push_str(&format!("; {}", shift_words(shift)));
        }
        out.slots.push(story);
    }
    if let Span::At(t) = span {
        if out.slots.is_empty() {
            out.no_slot = Some(no_slot(deployment, t));
        }
    }
    out
}

fn notes(d: &Deployment, facts: &Facts) -> Vec<String> {
    let mut notes = Vec::new();
    if d.schedules.is_empty() {
        notes.push("it has no schedules: it runs only when triggered".into());
    }
    if d.paused {
        notes.push("git says `paused: true`: every slot is recorded Skipped (inactive)".into());
    }
    if let Some(p) = &facts.pause {
        notes.push(format!("{} (since {})", p.note, p.since.to_rfc3339()));
    }
    if let Some(err) = &facts.held_back {
        notes.push(format!(
            "its file fails at the newest commit, so its last good version is in force: {err}"
        ));
    }
    notes
}

fn story(
    at: DateTime<Utc>,
    schedule: &str,
    attempts: &[&Run],
    rows: &[Run],
    first_recorded: Option<DateTime<Utc>>,
    introduced_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Story {
    let mut s = Story {
        at,
        schedule: schedule.to_string(),
        what: "",
        run_id: None,
        state: None,
        attempts: attempts.len() as u32,
        lateness_seconds: None,
        why: String::new(),
    };
    let (Some(first), Some(last)) = (
        attempts.iter().min_by_key(|r| r.attempt),
        attempts.iter().max_by_key(|r| r.attempt),
    ) else {
        (s.what, s.why) = unrecorded(at, rows, first_recorded, introduced_at, now);
        return s;
    };
    s.run_id = Some(first.id);
    s.state = Some(last.state.as_str().to_string());
    s.lateness_seconds = first
        .started_at
        .map(|st| (st - at).num_milliseconds() as f64 / 1000.0);
    let tries = if attempts.len() > 1 {
        format!(" after {} attempts", attempts.len())
    } else {
        String::new()
    };
    let late = s
        .lateness_seconds
        .map(|l| format!(", {:.3} s after its time", l.max(0.0)))
        .unwrap_or_default();
    let reason = last.reason.as_deref().unwrap_or("");
    (s.what, s.why) = match last.state {
        RunState::Completed => ("ran", format!("run {} completed{tries}{late}", first.id)),
        RunState::Failed | RunState::TimedOut | RunState::Crashed if last.retry_pending => (
            "failed",
            format!(
                "run {} ended {}; its retry is still to be decided",
                last.id,
                last.state.as_str()
            ),
        ),
        RunState::Failed | RunState::TimedOut | RunState::Crashed => (
            "failed",
            format!(
                "run {} ended {}{}{tries}{late}",
                last.id,
                last.state.as_str(),
                match (last.exit_code, reason) {
                    (_, r) if !r.is_empty() => format!(" ({r})"),
                    (Some(c), _) => format!(" (exit code {c})"),
                    _ => String::new(),
                }
            ),
        ),
        RunState::Running => (
            "running",
            format!(
                "run {} is running (attempt {}){late}",
                last.id, last.attempt
            ),
        ),
        RunState::Pending => (
            "waiting",
            format!(
                "run {} waits for a place under the concurrency limit",
                last.id
            ),
        ),
        RunState::Scheduled => (
            "waiting",
            format!("run {} is recorded and about to start", last.id),
        ),
        RunState::AwaitingRetry => (
            "waiting",
            format!(
                "run {} waits to retry (attempt {}){}",
                last.id,
                last.attempt,
                last.not_before
                    .map(|t| format!(" at {}", t.to_rfc3339()))
                    .unwrap_or_default()
            ),
        ),
        RunState::Skipped => (
            "skipped",
            format!("recorded Skipped: {}", skip_words(reason)),
        ),
        RunState::Cancelled if reason == "overlap" => (
            "refused",
            "refused by the concurrency limit (CANCEL_NEW): an earlier run still held its place"
                .into(),
        ),
        RunState::Cancelled => (
            "cancelled",
            format!("run {} was cancelled ({reason})", last.id),
        ),
    };
    s
}

/// A slot with no row of its own: still to come, covered by a summary of missed slots,
/// before the schedule was deployed, or when it was not in force.
fn unrecorded(
    at: DateTime<Utc>,
    rows: &[Run],
    first_recorded: Option<DateTime<Utc>>,
    introduced_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (&'static str, String) {
    if at > now {
        return ("upcoming", "still to come".into());
    }
    if let Some(summary) = rows.iter().find(|r| covers(r, at)) {
        return (
            "skipped",
            format!(
                "missed while the daemon could not run it; run {} records it: {}",
                summary.id,
                summary.reason.as_deref().unwrap_or("")
            ),
        );
    }
    match (introduced_at, first_recorded) {
        (Some(intro), _) if at < intro => (
            "not_deployed_yet",
            format!("the commit that added this schedule came later ({})", intro.to_rfc3339()),
        ),
        (_, Some(first)) if at < first => (
            "not_deployed_yet",
            format!("before this schedule's first slot on record ({}): it was deployed later, or retention has pruned older runs", first.to_rfc3339()),
        ),
        (_, None) => (
            "not_deployed_yet",
            "nothing of this schedule is on record yet: it was deployed after this slot (or its history was pruned)".into(),
        ),
        _ => (
            "not_in_force",
            "no record: the schedule was not in force then (removed from the branch or planned with another timing); a schedule that comes back is planned from its return, without catching up".into(),
        ),
    }
}

/// Whether a `missed: N slots from A to B` summary row covers `at`.
fn covers(row: &Run, at: DateTime<Utc>) -> bool {
    let (Some(first), Some(reason)) = (row.scheduled_for, row.reason.as_deref()) else {
        return false;
    };
    let Some(last) = reason
        .strip_prefix("missed: ")
        .and_then(|r| r.split(" to ").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
    else {
        return false;
    };
    row.state == RunState::Skipped && first <= at && at <= last.with_timezone(&Utc)
}

fn skip_words(reason: &str) -> String {
    match reason {
        "missed" => "missed: it came due while the daemon was down, asleep or stalled, later than `late_grace_seconds`, and `catchup` did not run it".into(),
        "inactive" => "inactive: the deployment was paused in git (`paused: true`) or the schedule had `active: false`".into(),
        r if r == crate::store::PAUSED_AFTER_FAILURES => "paused after failures (`pause_after_failures`) until resumed".into(),
        r => r.to_string(),
    }
}

fn shift_words(shift: DstShift) -> String {
    match shift {
        DstShift::GapMoved { wanted } => format!("{wanted} does not exist that day (DST gap), so it fired at the gap's end"),
        DstShift::SecondOccurrenceSkipped { wall } => format!("{wall} occurred twice that day (DST); it fired at the first, and the second did not fire"),
    }
}

/// No slot at `t`: the nearest fires of each schedule before and after it.
fn no_slot(d: &Deployment, t: DateTime<Utc>) -> NoSlot {
    let after = d
        .schedules
        .iter()
        .filter_map(|s| s.schedule.next_after(t))
        .min_by_key(|f| f.at);
    let before = d
        .schedules
        .iter()
        .filter_map(|s| fire_before(&s.schedule, t))
        .max_by_key(|f| f.at);
    let mut why = if d.schedules.is_empty() {
        "it has no schedules".to_string()
    } else {
        format!(
            "no schedule fires at {}: {}",
            t.to_rfc3339(),
            d.schedules
                .iter()
                .map(|s| s.description.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    for fire in before.iter().chain(after.iter()) {
        if let Some(shift) = fire.shift {
            why.push_str(&format!("; near it, {}", shift_words(shift)));
        }
    }
    NoSlot {
        why,
        before: before.map(|f| f.at),
        after: after.map(|f| f.at),
    }
}

/// The last fire strictly before `t`, looking back up to ten years.
fn fire_before(schedule: &crate::schedule::Schedule, t: DateTime<Utc>) -> Option<Fire> {
    fires_before(schedule, t, 1).pop()
}

/// The last `n` fires strictly before `t` (oldest first), looking back in growing windows
/// up to ten years, so a dense schedule looks back an hour and a yearly one years.
fn fires_before(schedule: &crate::schedule::Schedule, t: DateTime<Utc>, n: usize) -> Vec<Fire> {
    let mut window = Duration::hours(1);
    loop {
        let mut last: std::collections::VecDeque<Fire> = std::collections::VecDeque::new();
        for fire in schedule.iter_after(t - window) {
            if fire.at >= t {
                break;
            }
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(fire);
        }
        if last.len() == n || window > Duration::days(3660) {
            return last.into();
        }
        window = window * 8;
    }
}

#[cfg(test)]
mod tests;
