//! Schedules: cron, interval and rrule, each a pure function `(schedule, after) -> next fire`.
//!
//! Contract: nothing here reads a clock, touches the file system or loops without a bound;
//! callers pass the instant to search from, so tests can stand on any DST edge. A
//! [`Schedule`] is parsed once and then answers [`Schedule::next_after`] (strictly after the
//! given instant, `None` once the schedule has ended) as often as needed.
//!
//! DST policy (DESIGN.md, "DST policy"): a *fixed-time* schedule — a cron expression whose
//! minute and hour fields do not start with `*`, every rrule, and an interval of whole days —
//! names wall-clock times. A wall time inside a spring-forward gap fires once at the instant
//! the gap ends; a wall time that occurs twice at fall-back fires at its first occurrence
//! only. Several wall times in one gap (`0,30 2 * * *`) fire once together. Every other cron
//! expression follows real time: every existing instant whose local time matches fires, so
//! `*/15` fires in both copies of a repeated hour and nothing fires inside a gap. Intervals
//! that are not whole days step exact elapsed time. Fires moved or thinned by the policy
//! carry a [`DstShift`] so `sundial next` can say so.

mod cron;
mod describe;
mod dst;
mod interval;
mod rrule;
mod timezone;

#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};

pub use self::cron::{Cron, CronError, CronField};
pub use self::interval::{anchor_shifts_fires, parse_anchor, parse_interval, Anchor};
pub use self::timezone::parse_timezone;
pub use chrono_tz::Tz;

use self::interval::Interval;
use self::rrule::Recurrence;

/// How far ahead a cron search looks: the Gregorian calendar repeats every 400 years, so an
/// expression that matches nothing in that span matches nothing ever.
const CRON_HORIZON_YEARS: i32 = 400;
/// Bound on the constant-offset segments walked by one real-time cron search.
const MAX_SEGMENTS: usize = 10_000;
/// Bound on wall times tried by one fixed-time search (a repeated hour holds at most 60).
const MAX_WALLS: usize = 10_000;

/// One fire of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    pub at: DateTime<Utc>,
    /// Set when the DST policy moved this fire or dropped a second occurrence of it.
    pub shift: Option<DstShift>,
}

/// How the DST policy touched a fire of a fixed-time schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstShift {
    /// The wanted wall time does not exist (spring-forward gap); the fire is at the gap end.
    GapMoved { wanted: NaiveDateTime },
    /// The wall time occurs twice (fall-back); this is the first occurrence, the second one
    /// does not fire.
    SecondOccurrenceSkipped { wall: NaiveDateTime },
}

/// Why a schedule could not be built. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron expression {expr:?}: {error}")]
    Cron { expr: String, error: CronError },
    #[error(
        "cron expression {expr:?} never fires (no date matches its day and month fields); \
         fix the day-of-month, month or day-of-week field"
    )]
    NeverFires { expr: String },
    #[error(
        "cron expression {expr:?}: its day-of-month never falls on its `#`/`L` weekday, so \
         croniter (Prefect) refuses it; write `*` in the day-of-month field"
    )]
    NthWeekdayNeverOnDay { expr: String },
    #[error("unknown time zone {name:?}; {}", suggest(.suggestions))]
    UnknownTimezone {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("interval {text:?}: {reason}")]
    Interval { text: String, reason: String },
    #[error("anchor date {text:?}: {reason}")]
    Anchor { text: String, reason: String },
    #[error("rrule {text:?}: {reason}")]
    RRule { text: String, reason: String },
    #[error(
        "rrule DTSTART has TZID={tzid} but the schedule's timezone is {timezone}; drop the \
         TZID or set `timezone: {tzid}`"
    )]
    RRuleTimezone { tzid: String, timezone: String },
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        "use an IANA name such as Europe/Berlin or UTC".to_string()
    } else {
        format!("did you mean {}?", names.join(" or "))
    }
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: Tz,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron { cron: Cron, day_or: bool },
    Interval(Interval),
    RRule(Box<Recurrence>),
}

impl Schedule {
    /// A cron schedule. Errors when the expression does not parse or can never fire
    /// (`0 0 30 2 *`).
    pub fn cron(expr: &str, tz: Tz, day_or: bool) -> Result<Schedule, ScheduleError> {
        let cron = Cron::parse(expr).map_err(|error| ScheduleError::Cron {
            expr: expr.to_string(),
            error,
        })?;
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
        let until = NaiveDate::from_ymd_opt(2000 + CRON_HORIZON_YEARS, 1, 1);
        let fires = |day_or| match (start, until) {
            (Some(start), Some(until)) => cron.next_wall(start, until, day_or).is_some(),
            _ => false,
        };
        if !fires(day_or) {
            return Err(ScheduleError::NeverFires {
                expr: expr.to_string(),
            });
        }
        if day_or && cron.has_nth_weekday_and_day() && !fires(false) {
            return Err(ScheduleError::NthWeekdayNeverOnDay {
                expr: expr.to_string(),
            });
        }
        Ok(Schedule {
            tz,
            kind: Kind::Cron { cron, day_or },
        })
    }

    /// An interval schedule; see [`parse_interval`] and [`parse_anchor`] for the inputs.
    pub fn interval(
        every: Duration,
        anchor: Option<Anchor>,
        tz: Tz,
    ) -> Result<Schedule, ScheduleError> {
        let interval = Interval::new(every, anchor, tz)?;
        Ok(Schedule {
            tz,
            kind: Kind::Interval(interval),
        })
    }

    /// An RFC 5545 recurrence (`FREQ=...`, `RRULE:...`, or `DTSTART...\nRRULE:...` with
    /// EXDATE/RDATE lines). DTSTART defaults to the anchor, else 2020-01-01T00:00:00 in `tz`.
    pub fn rrule(text: &str, tz: Tz, anchor: Option<Anchor>) -> Result<Schedule, ScheduleError> {
        let recurrence = Recurrence::parse(text, tz, anchor)?;
        Ok(Schedule {
            tz,
            kind: Kind::RRule(Box::new(recurrence)),
        })
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// This schedule with its interval anchored at `instant` instead (an interval whose
    /// manifest gives no `anchor_date` is anchored at the commit that introduced it).
    /// Cron and rrule schedules are returned unchanged.
    pub fn anchored_at(&self, instant: DateTime<Utc>) -> Schedule {
        match &self.kind {
            Kind::Interval(interval) => Schedule {
                tz: self.tz,
                kind: Kind::Interval(interval.anchored_at(instant)),
            },
            _ => self.clone(),
        }
    }

    /// The next fire strictly after `after`, or `None` if the schedule has ended or never
    /// fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Fire> {
        match &self.kind {
            Kind::Cron { cron, day_or } if cron.is_fixed_time() => {
                fixed_cron_next(cron, *day_or, self.tz, after)
            }
            Kind::Cron { cron, day_or } => real_time_cron_next(cron, *day_or, self.tz, after),
            Kind::Interval(interval) => interval.next_after(after),
            Kind::RRule(recurrence) => recurrence.next_after(after),
        }
    }

    /// Wall times a real-time cron schedule matched that did not exist because a
    /// spring-forward gap in `(from, to]` skipped them; they do not fire (DESIGN.md's DST
    /// policy), and `sundial next` shows them so nobody wonders where a run went. Empty for
    /// every other schedule: fixed-time ones move such a fire to the gap's end instead.
    /// Offset changes are looked for day by day, over at most 400 days.
    pub fn dropped_by_dst(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDateTime> {
        let Kind::Cron { cron, day_or } = &self.kind else {
            return Vec::new();
        };
        if cron.is_fixed_time() {
            return Vec::new();
        }
        let offset = |at: DateTime<Utc>| self.tz.offset_from_utc_datetime(&at.naive_utc()).fix();
        let mut dropped = Vec::new();
        let mut day_start = from;
        for _ in 0..400 {
            if day_start >= to {
                break;
            }
            let day_end = (day_start + chrono::Duration::days(1)).min(to);
            let (before, after) = (offset(day_start), offset(day_end));
            if after.local_minus_utc() > before.local_minus_utc() {
                // Narrow down to the transition instant, to the second.
                let (mut lo, mut hi) = (day_start, day_end);
                while hi - lo > chrono::Duration::seconds(1) {
                    let mid = lo + (hi - lo) / 2;
                    if offset(mid) == before {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                let gap_start =
                    hi.naive_utc() + chrono::Duration::seconds(i64::from(before.local_minus_utc()));
                let gap_end =
                    hi.naive_utc() + chrono::Duration::seconds(i64::from(after.local_minus_utc()));
                let mut wall = truncate_to_minute(gap_start);
                while wall < gap_end {
                    if wall >= gap_start && cron.matches(wall, *day_or) {
                        dropped.push(wall);
                    }
                    wall += chrono::Duration::minutes(1);
                }
            }
            day_start = day_end;
        }
        dropped
    }

    /// Successive fires strictly after `after`, strictly increasing.
    pub fn iter_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = Fire> + '_ {
        let mut cursor = after;
        std::iter::from_fn(move || {
            let fire = self.next_after(cursor)?;
            cursor = fire.at;
            Some(fire)
        })
    }
}

fn horizon(wall: NaiveDateTime) -> NaiveDate {
    let date = wall.date();
    date.checked_add_months(chrono::Months::new(12 * CRON_HORIZON_YEARS as u32))
        .unwrap_or(NaiveDate::MAX)
}

/// Fixed-time cron: wall times map monotonically to instants under the policy, so the
/// answer is the first matching wall time at or after `after`'s own whose instant is later.
fn fixed_cron_next(cron: &Cron, day_or: bool, tz: Tz, after: DateTime<Utc>) -> Option<Fire> {
    let start = dst::local(tz, after);
    let until = horizon(start);
    let mut wall = truncate_to_minute(start);
    for _ in 0..MAX_WALLS {
        let found = cron.next_wall(wall, until, day_or)?;
        let fire = dst::fixed_time_fire(tz, found);
        if fire.at > after {
            return Some(fire);
        }
        wall = found + chrono::Duration::minutes(1);
    }
    None
}

/// Real-time cron: walk segments of constant UTC offset. Within one, wall time and instant
/// move together, so the first matching wall time gives the first instant, unless the offset
/// changes before it; then the search resumes at the change, whose wall time may repeat
/// earlier ones (fall-back) or skip some (spring-forward).
fn real_time_cron_next(cron: &Cron, day_or: bool, tz: Tz, after: DateTime<Utc>) -> Option<Fire> {
    let mut start = truncate_to_minute_utc(after) + chrono::Duration::minutes(1);
    for _ in 0..MAX_SEGMENTS {
        let offset = chrono::Duration::seconds(dst::offset_seconds(tz, start));
        let wall_start = start.naive_utc() + offset;
        let wall = cron.next_wall(wall_start, horizon(wall_start), day_or)?;
        let at = (wall - offset).and_utc();
        match dst::first_change(tz, start, at) {
            None => return Some(Fire { at, shift: None }),
            Some(change) => start = change,
        }
    }
    None
}

fn truncate_to_minute(wall: NaiveDateTime) -> NaiveDateTime {
    use chrono::Timelike;
    wall.with_second(0)
        .and_then(|w| w.with_nanosecond(0))
        .unwrap_or(wall)
}

fn truncate_to_minute_utc(at: DateTime<Utc>) -> DateTime<Utc> {
    truncate_to_minute(at.naive_utc()).and_utc()
}
