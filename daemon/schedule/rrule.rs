//! RFC 5545 recurrences via the `rrule` crate, under sundial's DST policy.
//!
//! Input: a bare `FREQ=...` rule, `RRULE:...`, or several lines (`DTSTART`, `RRULE`,
//! `EXDATE`, `RDATE`). DTSTART may be naive, UTC (`Z`) or carry `TZID=` equal to the
//! schedule's timezone (another TZID is an error); without it the anchor's wall time is used,
//! else 2020-01-01T00:00:00. UNTIL, EXDATE and RDATE in UTC are converted to wall times.
//!
//! The crate generates *wall-clock* times: it runs in UTC on the local wall values, so its
//! own DST handling never applies. Each wall time is then mapped to an instant with the
//! fixed-time rule (gap → gap end, repeat → first occurrence); equal instants fire once.
//!
//! Cost: a rule without COUNT is restarted a whole number of periods before the searched
//! instant (the same occurrences, since every period expands the same way), so a query does
//! not replay years of history. A rule with COUNT must count from DTSTART; every search is
//! capped at [`MAX_OCCURRENCES`]. EXRULE is not supported (RFC 5545 deprecated it).

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rrule::{Frequency, RRule, RRuleSet, Unvalidated};

use super::{dst, parse_timezone, Anchor, Fire, ScheduleError};

/// Occurrences one search may generate before giving up (returns `None`).
const MAX_OCCURRENCES: usize = 500_000;

#[derive(Debug, Clone)]
pub(crate) struct Recurrence {
    /// The text as written, for describing it.
    source: String,
    tz: Tz,
    start: NaiveDateTime,
    rules: Vec<Rule>,
    /// Sorted wall times.
    rdates: Vec<NaiveDateTime>,
    exdates: BTreeSet<NaiveDateTime>,
}

#[derive(Debug, Clone)]
struct Rule {
    rule: RRule<Unvalidated>,
    freq: Frequency,
    interval: u32,
    counted: bool,
    until: Option<NaiveDateTime>,
}

impl Recurrence {
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn parse(text: &str, tz: Tz, anchor: Option<Anchor>) -> Result<Self, ScheduleError> {
        let fail = |reason: String| ScheduleError::RRule {
            text: text.to_string(),
            reason,
        };
        if let Some(err) = tzid_error(text, tz) {
            return Err(err);
        }
        let mut start = None;
        let mut rule_texts = Vec::new();
        let mut rdates = Vec::new();
        let mut exdates = BTreeSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (head, value) = match line.split_once(':') {
                Some((head, value)) => (head, value),
                None if line.contains('=') => ("RRULE", line),
                None => return Err(fail(format!("cannot read {line:?}; write FREQ=...;..."))),
            };
            let mut params = head.split(';');
            let name = params.next().unwrap_or("").trim().to_ascii_uppercase();
            let params: Vec<&str> = params.collect();
            match name.as_str() {
                "DTSTART" => {
                    let mut values = parse_dates(&params, value, tz).map_err(fail)?;
                    if values.len() != 1 {
                        return Err(fail("DTSTART takes exactly one date-time".to_string()));
                    }
                    start = values.pop();
                }
                "RRULE" => rule_texts.push(value.trim().to_string()),
                "EXDATE" => exdates.extend(parse_dates(&params, value, tz).map_err(fail)?),
                "RDATE" => rdates.extend(parse_dates(&params, value, tz).map_err(fail)?),
                "EXRULE" => {
                    return Err(fail(
                        "EXRULE is not supported (RFC 5545 deprecated it); list the \
                                     excluded dates with EXDATE"
                            .to_string(),
                    ))
                }
                other => {
                    return Err(fail(format!(
                        "unknown property {other:?}; use DTSTART, RRULE, EXDATE or RDATE"
                    )))
                }
            }
        }
        if rule_texts.is_empty() && rdates.is_empty() {
            return Err(fail(
                "no RRULE; write e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=9".to_string(),
            ));
        }
        let start = start
            .or(anchor.map(|a| a.wall))
            .unwrap_or_else(|| Anchor::default_for(tz).wall);
        let rules = rule_texts
            .iter()
            .map(|text| Rule::parse(text, start, tz))
            .collect::<Result<Vec<_>, String>>()
            .map_err(fail)?;
        rdates.sort();
        Ok(Recurrence {
            source: text.trim().to_string(),
            tz,
            start,
            rules,
            rdates,
            exdates,
        })
    }

    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<Fire> {
        // A day of margin: wall times this far before `after`'s cannot fire after it.
        let floor = dst::local(self.tz, after) - chrono::Duration::days(1);
        let from_rules = self
            .rules
            .iter()
            .filter_map(|rule| self.rule_next(rule, after, floor))
            .min_by_key(|fire| fire.at);
        let first = self.rdates.partition_point(|wall| *wall < floor);
        let from_rdates = self.rdates[first..]
            .iter()
            .filter(|wall| !self.exdates.contains(wall))
            .map(|wall| dst::fixed_time_fire(self.tz, *wall))
            .find(|fire| fire.at > after);
        [from_rules, from_rdates]
            .into_iter()
            .flatten()
            .min_by_key(|fire| fire.at)
    }

    fn rule_next(&self, rule: &Rule, after: DateTime<Utc>, floor: NaiveDateTime) -> Option<Fire> {
        let start = rule.restart(self.start, floor);
        if rule.until.is_some_and(|until| until < start) {
            return None;
        }
        let validated = rule.rule.clone().validate(as_crate_utc(start)).ok()?;
        let set = RRuleSet::new(as_crate_utc(start)).rrule(validated).limit();
        (&set)
            .into_iter()
            .take(MAX_OCCURRENCES)
            .map(|occurrence| occurrence.naive_utc())
            .filter(|wall| *wall >= floor && !self.exdates.contains(wall))
            .map(|wall| dst::fixed_time_fire(self.tz, wall))
            .find(|fire| fire.at > after)
    }
}

impl Rule {
    fn parse(text: &str, start: NaiveDateTime, tz: Tz) -> Result<Rule, String> {
        let mut until = None;
        let mut kept = Vec::new();
        for part in text.split(';').filter(|p| !p.trim().is_empty()) {
            match part.split_once('=') {
                Some((key, value)) if key.trim().eq_ignore_ascii_case("UNTIL") => {
                    until = Some(parse_date_value(value.trim(), tz)?);
                }
                _ => kept.push(part.trim()),
            }
        }
        let mut rule =
            RRule::<Unvalidated>::from_str(&kept.join(";")).map_err(|e| e.to_string())?;
        if let Some(until) = until {
            rule = rule.until(as_crate_utc(until));
        }
        let validated = rule
            .clone()
            .validate(as_crate_utc(start))
            .map_err(|e| e.to_string())?;
        Ok(Rule {
            freq: validated.get_freq(),
            interval: u32::from(validated.get_interval()).max(1),
            counted: validated.get_count().is_some(),
            until,
            rule,
        })
    }

    /// DTSTART moved forward by whole periods to at most `floor`: the same occurrences from
    /// there on, without replaying the ones before. Rules with COUNT cannot move.
    fn restart(&self, start: NaiveDateTime, floor: NaiveDateTime) -> NaiveDateTime {
        if self.counted || floor <= start {
            return start;
        }
        let seconds = match self.freq {
            Frequency::Secondly => 1,
            Frequency::Minutely => 60,
            Frequency::Hourly => 3_600,
            Frequency::Daily => 86_400,
            Frequency::Weekly => 7 * 86_400,
            Frequency::Monthly => return restart_months(start, floor, self.interval),
            Frequency::Yearly => return restart_months(start, floor, 12 * self.interval),
        };
        let period = i64::from(self.interval) * seconds;
        let periods = (floor - start).num_seconds() / period;
        start + chrono::Duration::seconds(periods * period)
    }
}

/// `start` plus a multiple of `step` months, not after `floor`, on the same day of the month
/// (a 31st or a 29 February only moves to months that have it; else it stays).
fn restart_months(start: NaiveDateTime, floor: NaiveDateTime, step: u32) -> NaiveDateTime {
    let months = (floor.year() - start.year()) * 12 + floor.month() as i32 - start.month() as i32;
    let periods = (months.max(0) as u32) / step;
    (0..=periods.min(8))
        .filter_map(|back| {
            let moved = start.checked_add_months(chrono::Months::new((periods - back) * step))?;
            (moved.day() == start.day() && moved <= floor).then_some(moved)
        })
        .next()
        .unwrap_or(start)
}

/// The crate's view of a wall time: the same numbers, in UTC.
fn as_crate_utc(wall: NaiveDateTime) -> DateTime<rrule::Tz> {
    rrule::Tz::UTC.from_utc_datetime(&wall)
}

/// A TZID anywhere in the text must name the schedule's zone.
fn tzid_error(text: &str, tz: Tz) -> Option<ScheduleError> {
    let upper = text.to_ascii_uppercase();
    let at = upper.find("TZID=")?;
    let rest = &text[at + 5..];
    let tzid = rest.split([':', ';']).next().unwrap_or("").trim();
    match parse_timezone(tzid) {
        Ok(named) if named == tz || named.name() == tz.name() => None,
        _ => Some(ScheduleError::RRuleTimezone {
            tzid: tzid.to_string(),
            timezone: tz.name().to_string(),
        }),
    }
}

/// The comma-separated values of a DTSTART/EXDATE/RDATE line, as wall times in `tz`.
fn parse_dates(params: &[&str], value: &str, tz: Tz) -> Result<Vec<NaiveDateTime>, String> {
    for param in params {
        let (key, val) = param.split_once('=').unwrap_or((param, ""));
        if key.trim().eq_ignore_ascii_case("VALUE") && val.trim().eq_ignore_ascii_case("PERIOD") {
            return Err("RDATE periods are not supported; list date-times".to_string());
        }
    }
    value
        .split(',')
        .map(|v| parse_date_value(v.trim(), tz))
        .collect()
}

/// `20260308T023000Z` (an instant), `20260308T023000` (a wall time) or `20260308` (midnight).
fn parse_date_value(value: &str, tz: Tz) -> Result<NaiveDateTime, String> {
    let bad = || {
        format!("{value:?} is not an iCalendar date-time; write 20260308T090000, with Z for UTC")
    };
    if let Some(utc) = value.strip_suffix(['Z', 'z']) {
        let wall = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
        return Ok(dst::local(tz, Utc.from_utc_datetime(&wall)));
    }
    if let Ok(wall) = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S") {
        return Ok(wall);
    }
    NaiveDate::parse_from_str(value, "%Y%m%d")
        .map(|date| date.and_time(chrono::NaiveTime::MIN))
        .map_err(|_| bad())
}
