//! Which due slots run and which are recorded Skipped: one pure rule for every case where
//! slots come due (on time, after downtime, after a suspend or a wall-clock step).
//!
//! DESIGN.md "Catch-up": the most recent due slot still runs if it is at most
//! `late_grace` late (so a restart at 09:00:00.5 does not lose the 09:00 run); older ones
//! follow `catchup`: `none` records them Skipped/`missed`, `latest` runs the most recent
//! one whatever its age, `all` runs each oldest first, at most [`CATCHUP_ALL_CAP`] (the
//! most recent ones), the rest Skipped/`missed`. On-time operation is the case of one due
//! slot with ~0 lateness.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::schedule::Schedule;
use crate::validate::desired::Catchup;

/// At most this many missed slots of one schedule run under `catchup: all`.
pub const CATCHUP_ALL_CAP: usize = 100;

/// At most this many due slots of one schedule get a row each; a longer outage of a very
/// frequent schedule records the older ones as one summary (see [`due_slots`]).
pub const MAX_DUE: usize = 10_000;

/// The oldest due slots beyond [`MAX_DUE`]: how many, and the first and last of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub count: u64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// What happens to one due slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start it now; `late` is false for a slot within the grace period.
    Run { catchup: bool },
    /// Record it Skipped with reason `missed`.
    Skip,
}

/// Slots of `schedule` in `(after, now]`, oldest first; when there are more than
/// [`MAX_DUE`], the most recent [`MAX_DUE`] and a summary of the older ones, so that the
/// caller records every slot (one by one, or the oldest as one summary row).
pub fn due_slots(
    schedule: &Schedule,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<Dropped>) {
    let mut slots = std::collections::VecDeque::new();
    let mut dropped: Option<Dropped> = None;
    for fire in schedule.iter_after(after) {
        if fire.at > now {
            break;
        }
        if slots.len() == MAX_DUE {
            if let Some(old) = slots.pop_front() {
                let d = dropped.get_or_insert(Dropped {
                    count: 0,
                    first: old,
                    last: old,
                });
                d.count += 1;
                d.last = old;
            }
        }
        slots.push_back(fire.at);
    }
    (slots.into(), dropped)
}

/// Decides each due slot (oldest first) at `now`.
pub fn decide(
    due: &[DateTime<Utc>],
    now: DateTime<Utc>,
    catchup: Catchup,
    grace: Duration,
) -> Vec<(DateTime<Utc>, Action)> {
    let Some(&latest) = due.last() else {
        return Vec::new();
    };
    let within_grace = (now - latest).to_std().map_or(true, |late| late <= grace);
    let older = &due[..due.len() - 1];
    let mut out: Vec<(DateTime<Utc>, Action)> = Vec::with_capacity(due.len());
    match catchup {
        Catchup::None => {
            out.extend(older.iter().map(|t| (*t, Action::Skip)));
            out.push((
                latest,
                if within_grace {
                    Action::Run { catchup: false }
                } else {
                    Action::Skip
                },
            ));
        }
        Catchup::Latest => {
            out.extend(older.iter().map(|t| (*t, Action::Skip)));
            out.push((
                latest,
                Action::Run {
                    catchup: !within_grace,
                },
            ));
        }
        Catchup::All => {
            let keep_from = due.len().saturating_sub(CATCHUP_ALL_CAP);
            for (i, t) in due.iter().enumerate() {
                let action = if i < keep_from {
                    Action::Skip
                } else if i == due.len() - 1 && within_grace {
                    Action::Run { catchup: false }
                } else {
                    Action::Run { catchup: true }
                };
                out.push((*t, action));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as ChronoDuration;

    fn t(minute: i64) -> DateTime<Utc> {
        "2026-03-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + ChronoDuration::minutes(minute)
    }

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn on_time_runs() {
        let now = t(0) + ChronoDuration::milliseconds(3);
        assert_eq!(
            decide(&[t(0)], now, Catchup::None, GRACE),
            [(t(0), Action::Run { catchup: false })]
        );
    }

    #[test]
    fn a_restart_within_grace_still_runs_the_latest() {
        let now = t(3) + ChronoDuration::milliseconds(500);
        assert_eq!(
            decide(&[t(1), t(2), t(3)], now, Catchup::None, GRACE),
            [
                (t(1), Action::Skip),
                (t(2), Action::Skip),
                (t(3), Action::Run { catchup: false })
            ]
        );
    }

    #[test]
    fn none_skips_everything_older_than_grace() {
        let now = t(10);
        assert_eq!(
            decide(&[t(1), t(2)], now, Catchup::None, GRACE),
            [(t(1), Action::Skip), (t(2), Action::Skip)]
        );
    }

    #[test]
    fn latest_runs_the_most_recent_whatever_its_age() {
        let now = t(10);
        assert_eq!(
            decide(&[t(1), t(2)], now, Catchup::Latest, GRACE),
            [(t(1), Action::Skip), (t(2), Action::Run { catchup: true })]
        );
    }

    #[test]
    fn all_runs_each_up_to_the_cap() {
        let due: Vec<_> = (0..105).map(t).collect();
        let decided = decide(&due, t(200), Catchup::All, GRACE);
        assert_eq!(
            decided.iter().filter(|(_, a)| *a == Action::Skip).count(),
            5
        );
        assert!(decided[..5].iter().all(|(_, a)| *a == Action::Skip));
        assert!(decided[5..]
            .iter()
            .all(|(_, a)| *a == Action::Run { catchup: true }));
    }

    #[test]
    fn due_slots_are_bounded() {
        let every_second =
            Schedule::interval(Duration::from_secs(1), None, crate::schedule::Tz::UTC).unwrap();
        let (slots, dropped) =
            due_slots(&every_second, t(0), t(0) + ChronoDuration::seconds(20_000));
        assert_eq!(slots.len(), MAX_DUE);
        assert_eq!(
            *slots.last().unwrap(),
            t(0) + ChronoDuration::seconds(20_000)
        );
        // Nothing vanishes: the 10,000 oldest are summarised, right up to the first kept.
        assert_eq!(
            dropped,
            Some(Dropped {
                count: 10_000,
                first: t(0) + ChronoDuration::seconds(1),
                last: t(0) + ChronoDuration::seconds(10_000),
            })
        );
        assert_eq!(slots[0], t(0) + ChronoDuration::seconds(10_001));
        let (slots, dropped) = due_slots(&every_second, t(0), t(0) + ChronoDuration::seconds(3));
        assert_eq!((slots.len(), dropped), (3, None));
    }
}
