//! Wall-clock time ↔ instant, under sundial's DST policy.
//!
//! A *fixed-time* schedule names a wall-clock time. When that time falls in a spring-forward
//! gap it fires once, at the instant the gap ends (the transition instant: 02:30 on a
//! 02:00→03:00 jump fires at 03:00 local), marked [`DstShift::GapMoved`]; when it occurs
//! twice at fall-back it fires at the first occurrence only, marked
//! [`DstShift::SecondOccurrenceSkipped`]. Gaps are found from the zone's transition data,
//! never assumed to be one hour (Lord Howe moves 30 minutes, Santiago skips midnight).
//!
//! Schedules that follow real time (non-fixed-time cron) use [`first_change`] to walk
//! segments of constant UTC offset instead.

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

use super::{DstShift, Fire};

/// What a wall-clock time is in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wall {
    Single(DateTime<Utc>),
    /// Inside a spring-forward gap; `end` is the first instant after the gap.
    Gap {
        end: DateTime<Utc>,
    },
    /// Occurs twice at fall-back.
    Repeated {
        first: DateTime<Utc>,
        second: DateTime<Utc>,
    },
}

pub(crate) fn resolve(tz: Tz, wall: NaiveDateTime) -> Wall {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(at) => Wall::Single(at.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Wall::Repeated {
                first: a.min(b),
                second: a.max(b),
            }
        }
        chrono::LocalResult::None => Wall::Gap {
            end: gap_end(tz, wall),
        },
    }
}

/// The instant a fixed-time schedule fires for this wall time, with the shift if DST moved it.
pub(crate) fn fixed_time_fire(tz: Tz, wall: NaiveDateTime) -> Fire {
    match resolve(tz, wall) {
        Wall::Single(at) => Fire { at, shift: None },
        Wall::Gap { end } => Fire {
            at: end,
            shift: Some(DstShift::GapMoved { wanted: wall }),
        },
        Wall::Repeated { first, .. } => Fire {
            at: first,
            shift: Some(DstShift::SecondOccurrenceSkipped { wall }),
        },
    }
}

/// The wall-clock time of an instant in `tz`.
pub(crate) fn local(tz: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// The UTC offset in seconds in effect at `at`.
pub(crate) fn offset_seconds(tz: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The first instant in `(from, to]` whose UTC offset differs from the offset at `from`.
///
/// Probes in steps of a week, then bisects to the second; tzdata never puts two transitions
/// that cancel out within a week of each other in the years schedules use.
pub(crate) fn first_change(
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let base = offset_seconds(tz, from);
    let week = chrono::Duration::days(7);
    let mut lo = from;
    loop {
        let hi = if to - lo > week { lo + week } else { to };
        if offset_seconds(tz, hi) != base {
            return Some(bisect(tz, lo, hi, base));
        }
        if hi >= to {
            return None;
        }
        lo = hi;
    }
}

/// The first whole second in `(lo, hi]` whose offset is not `base`, given that `hi`'s is not.
fn bisect(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>, base: i64) -> DateTime<Utc> {
    let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let at = DateTime::from_timestamp(mid, 0).unwrap_or_default();
        if offset_seconds(tz, at) == base {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or_default()
}

/// The first instant after the gap that contains `wall`.
fn gap_end(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    if let Some(end) = GapInfo::new(&wall, &tz).and_then(|gap| gap.end) {
        return end.with_timezone(&Utc);
    }
    // No tzdata bound (should not happen for a real gap): bisect on local time around it.
    let guess = wall.and_utc();
    let (mut lo, mut hi) = (
        guess - chrono::Duration::days(1),
        guess + chrono::Duration::days(1),
    );
    while hi - lo > chrono::Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if local(tz, mid) < wall {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}
