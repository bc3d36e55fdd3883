//! Interval schedules: every N seconds from an anchor.
//!
//! The interval is seconds (`3600`, `2.5`), an ISO 8601 duration (`PT10M`, `P1D`,
//! `PT1H30M`, `P1W`; years and months are refused, they have no fixed length) or `HH:MM:SS`.
//! It must be at least 1 millisecond; fractions finer than a microsecond are rounded, as
//! Python's `timedelta` (Prefect) would.
//!
//! The anchor with an offset is that instant; a naive one is a wall time in the schedule's
//! zone (a gap moves it to the gap end, a repeat takes the first occurrence); absent, it is
//! 2020-01-01T00:00:00 in the zone here, and the daemon re-anchors the schedule at the time
//! of the commit that introduced it ([`super::Schedule::anchored_at`]; this module reads no
//! git and no clock). A whole number of days steps calendar days from the
//! anchor's wall time under the fixed-time DST policy (09:00 stays 09:00); anything else steps
//! exact elapsed time: fires are `anchor + k * every` for every integer k, found by arithmetic.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::{dst, Fire, ScheduleError};

const NANOS_PER_DAY: u128 = 86_400 * 1_000_000_000;
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Where an interval (or an rrule without DTSTART) starts, seen both as an instant and as a
/// wall time in the schedule's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Anchor {
    pub instant: DateTime<Utc>,
    pub wall: NaiveDateTime,
}

impl Anchor {
    /// The anchor of a naive wall time in `tz` (gap → gap end, repeat → first occurrence).
    pub fn from_wall(wall: NaiveDateTime, tz: Tz) -> Anchor {
        Anchor {
            instant: dst::fixed_time_fire(tz, wall).at,
            wall,
        }
    }

    /// The anchor of an instant; its wall time is read in `tz`.
    pub fn from_instant(instant: DateTime<Utc>, tz: Tz) -> Anchor {
        Anchor {
            instant,
            wall: dst::local(tz, instant),
        }
    }

    /// 2020-01-01T00:00:00 in `tz`: the default, the same on every host.
    pub fn default_for(tz: Tz) -> Anchor {
        let wall = NaiveDate::from_ymd_opt(2020, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        Anchor::from_wall(wall, tz)
    }
}

/// Parses an anchor: RFC 3339 with an offset (an instant), or a naive
/// `2026-01-01T00:00:00[.ffffff]`, `2026-01-01 00:00:00` or `2026-01-01` (a wall time in `tz`).
pub fn parse_anchor(text: &str, tz: Tz) -> Result<Anchor, ScheduleError> {
    let trimmed = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(Anchor::from_instant(at.with_timezone(&Utc), tz));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(trimmed, format) {
            return Ok(Anchor::from_instant(at.with_timezone(&Utc), tz));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(wall) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Ok(Anchor::from_wall(wall, tz));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        return Ok(Anchor::from_wall(date.and_time(chrono::NaiveTime::MIN), tz));
    }
    Err(ScheduleError::Anchor {
        text: text.to_string(),
        reason: "not a date-time; write RFC 3339 such as 2026-01-01T09:00:00+01:00, or a wall \
                 time in the schedule's timezone such as 2026-01-01T09:00:00 or 2026-01-01"
            .to_string(),
    })
}

/// Whether two anchors a whole number of seconds apart (commit times are whole seconds)
/// can give different fires: false only for an interval that divides one second.
pub fn anchor_shifts_fires(every: Duration) -> bool {
    every.is_zero() || !1_000_000_000u128.is_multiple_of(every.as_nanos())
}

/// Parses an interval: seconds, an ISO 8601 duration or `HH:MM:SS`. Must be ≥ 1 ms.
pub fn parse_interval(text: &str) -> Result<Duration, ScheduleError> {
    let trimmed = text.trim();
    let fail = |reason: &str| ScheduleError::Interval {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let duration = if trimmed.starts_with(['P', 'p']) {
        parse_iso8601(&trimmed[1..]).map_err(|reason| fail(&reason))?
    } else if trimmed.contains(':') {
        parse_clock(trimmed).ok_or_else(|| fail("write HH:MM:SS, e.g. 01:30:00"))?
    } else {
        let seconds: f64 = trimmed.parse().map_err(|_| {
            fail("write seconds (3600 or 2.5), an ISO 8601 duration (PT10M) or HH:MM:SS")
        })?;
        seconds_to_duration(seconds).ok_or_else(|| fail("must be a positive number of seconds"))?
    };
    check_positive(duration).map_err(|reason| fail(&reason))
}

fn check_positive(every: Duration) -> Result<Duration, String> {
    if every.is_zero() {
        Err("must be greater than zero".to_string())
    } else if every < MIN_INTERVAL {
        Err("must be at least 1 millisecond".to_string())
    } else {
        Ok(every)
    }
}

fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    if !seconds.is_finite() || !(0.0..=1e12).contains(&seconds) {
        return None;
    }
    let micros = (seconds * 1e6).round() as u64;
    Some(Duration::from_micros(micros))
}

/// `HH:MM:SS[.ffffff]` (hours may exceed 23).
fn parse_clock(text: &str) -> Option<Duration> {
    let mut parts = text.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let hours: u64 = h.parse().ok()?;
    let minutes: u64 = m.parse().ok().filter(|m| *m < 60)?;
    let seconds: f64 = s.parse().ok().filter(|s: &f64| *s < 60.0)?;
    let whole = seconds_to_duration(seconds)?;
    Some(Duration::from_secs(hours * 3600 + minutes * 60) + whole)
}

/// The part of an ISO 8601 duration after `P`.
fn parse_iso8601(body: &str) -> Result<Duration, String> {
    let upper = body.to_ascii_uppercase();
    let (date, time) = match upper.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (upper.as_str(), None),
    };
    if date.is_empty() && time.is_none_or(str::is_empty) {
        return Err("an ISO 8601 duration needs a value, e.g. PT10M or P1D".to_string());
    }
    let mut total = 0.0_f64;
    for (number, unit) in components(date)? {
        total +=
            number
                * match unit {
                    'W' => 7.0 * 86_400.0,
                    'D' => 86_400.0,
                    'Y' | 'M' => return Err(
                        "years and months have no fixed length; write days (P30D) or use an rrule"
                            .to_string(),
                    ),
                    other => return Err(format!("unknown unit {other:?} before T")),
                };
    }
    for (number, unit) in components(time.unwrap_or(""))? {
        total += number
            * match unit {
                'H' => 3600.0,
                'M' => 60.0,
                'S' => 1.0,
                other => return Err(format!("unknown unit {other:?} after T")),
            };
    }
    seconds_to_duration(total).ok_or_else(|| "the duration is out of range".to_string())
}

fn components(text: &str) -> Result<Vec<(f64, char)>, String> {
    let mut out = Vec::new();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            number.push(if c == ',' { '.' } else { c });
        } else {
            let value: f64 = number
                .parse()
                .map_err(|_| format!("a number is missing before {c:?}"))?;
            out.push((value, c));
            number.clear();
        }
    }
    if !number.is_empty() {
        return Err(format!("{number:?} has no unit; end it with D, H, M or S"));
    }
    Ok(out)
}

/// A parsed interval schedule.
#[derive(Debug, Clone)]
pub(crate) struct Interval {
    tz: Tz,
    anchor: Anchor,
    step: Step,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Calendar days, keeping the anchor's wall time.
    Days(i64),
    /// Exact elapsed nanoseconds.
    Exact(i128),
}

impl Interval {
    pub(crate) fn new(
        every: Duration,
        anchor: Option<Anchor>,
        tz: Tz,
    ) -> Result<Self, ScheduleError> {
        check_positive(every).map_err(|reason| ScheduleError::Interval {
            text: format!("{}s", every.as_secs_f64()),
            reason,
        })?;
        let nanos = every.as_nanos();
        let step = if nanos.is_multiple_of(NANOS_PER_DAY) {
            Step::Days((nanos / NANOS_PER_DAY) as i64)
        } else {
            Step::Exact(nanos as i128)
        };
        Ok(Interval {
            tz,
            anchor: anchor.unwrap_or_else(|| Anchor::default_for(tz)),
            step,
        })
    }

    /// The same interval from another anchor instant (its wall time read in the zone).
    pub(crate) fn anchored_at(&self, instant: DateTime<Utc>) -> Interval {
        Interval {
            anchor: Anchor::from_instant(instant, self.tz),
            ..self.clone()
        }
    }

    /// The step as whole days (keeping the anchor's wall time), else as exact
    /// nanoseconds; and the anchor's wall time.
    pub(super) fn step(&self) -> (Option<i64>, i128, NaiveDateTime) {
        match self.step {
            Step::Days(days) => (
                Some(days),
                days as i128 * NANOS_PER_DAY as i128,
                self.anchor.wall,
            ),
            Step::Exact(nanos) => (None, nanos, self.anchor.wall),
        }
    }

    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<Fire> {
        match self.step {
            Step::Exact(every) => {
                let anchor = nanos_since_epoch(self.anchor.instant);
                let elapsed = nanos_since_epoch(after) - anchor;
                let k = elapsed.div_euclid(every) + 1;
                let at = from_nanos(anchor + k * every)?;
                Some(Fire { at, shift: None })
            }
            Step::Days(days) => {
                let local_date = dst::local(self.tz, after).date();
                let elapsed = (local_date - self.anchor.wall.date()).num_days();
                // Start a step early: that wall time lies before `after`'s own, so its fire
                // is not later than `after`; the first later one is at most a few steps on.
                let first = elapsed.div_euclid(days) - 1;
                (first..first + 8).find_map(|k| {
                    let wall = self
                        .anchor
                        .wall
                        .checked_add_signed(chrono::Duration::try_days(k.checked_mul(days)?)?)?;
                    let fire = dst::fixed_time_fire(self.tz, wall);
                    (fire.at > after).then_some(fire)
                })
            }
        }
    }
}

fn nanos_since_epoch(at: DateTime<Utc>) -> i128 {
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

fn from_nanos(nanos: i128) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    DateTime::from_timestamp(seconds, sub)
}
