//! Cron expressions in croniter's five-field dialect (the one Prefect uses).
//!
//! `minute hour day-of-month month day-of-week`, with lists, ranges (wrapping ranges such as
//! `22-2` too), steps (`*/15`, `5-30/5`, `10/5`), month and weekday names, `L` (last day of the
//! month), `L5` (last Friday), `5#2` (second Friday), weekday 7 = Sunday, `?` = `*` in the day
//! fields and the `@yearly`-style macros. Fields are stored as bitsets and the next match is
//! found by jumping month → day → hour → minute over *wall-clock* times; mapping a wall time
//! to an instant (DST) is [`super::dst`]'s job.
//!
//! Where croniter has quirks they are kept, because a file Prefect accepts should fire at the
//! same times here:
//! - a field is "unrestricted" when it covers its whole range (`*`, `0-6`, `*/1`), except that
//!   a fully covered day field stays restricted when the other day field has no `*`;
//! - `day_or` joins the day fields with OR only when both are restricted;
//! - with `#`/`L` weekdays, OR mode ignores the day-of-month (croniter evaluates both sides as
//!   an intersection and keeps the earlier), AND mode intersects them;
//! - an equal range written out (`5-5`) means the whole field, as croniter reads `Jan-Jan`.
//!
//! Non-goals: seconds and year fields, `W` (nearest weekday), croniter's `H` hashing.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// One of the five fields, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronField {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    const ALL: [CronField; 5] = [
        CronField::Minute,
        CronField::Hour,
        CronField::DayOfMonth,
        CronField::Month,
        CronField::DayOfWeek,
    ];

    fn range(self) -> (u32, u32) {
        match self {
            CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 6),
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        })
    }
}

/// Why a cron expression was refused; `field` is `None` for whole-expression errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub field: Option<CronField>,
    pub message: String,
}

impl CronError {
    fn field(field: CronField, message: impl Into<String>) -> CronError {
        CronError {
            field: Some(field),
            message: message.into(),
        }
    }
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field} field: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CronError {}

/// A parsed cron expression. Matching happens on wall-clock times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    last_day: bool,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, 0 = Sunday.
    weekdays: u8,
    /// Per weekday (0 = Sunday): bit n (1..=5) = n-th such weekday, bit 0 = last one.
    nth: [u8; 7],
    day_star: bool,
    weekday_star: bool,
    fixed_time: bool,
}

/// What a [`Cron`] matches, as bitsets (see [`Cron::fields`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct CronFields {
    pub minutes: u64,
    pub hours: u32,
    /// Bits 1..=31; `None` for `*`.
    pub days: Option<u32>,
    /// Bits 1..=12.
    pub months: u16,
    /// Bits 0..=6 (0 = Sunday); `None` for `*`.
    pub weekdays: Option<u8>,
    /// `L` or `#` somewhere: described by the expression itself.
    pub special_days: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Fields as parsed: the values as a bitset, plus day-field extras.
#[derive(Default)]
struct Parsed {
    bits: u64,
    last_day: bool,
    nth: [u8; 7],
}

impl Cron {
    /// Parses a five-field expression or an `@macro`.
    ///
    /// Errors name the field and say why (`minute field: 61 is out of range 0-59`); a wrong
    /// number of fields is a whole-expression error.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let source = expr.trim().to_string();
        let lower = source.to_ascii_lowercase();
        let expanded = match lower.as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(CronError {
                    field: None,
                    message: format!(
                        "unknown macro {source:?}; use one of @yearly @annually @monthly \
                         @weekly @daily @midnight @hourly"
                    ),
                })
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_ascii_whitespace().collect();
        if fields.len() != 5 {
            let message = match fields.len() {
                0 => "the expression is empty; write five fields: minute hour day-of-month \
                      month day-of-week"
                    .to_string(),
                6 | 7 => format!(
                    "{} fields given; sundial takes 5 fields as Prefect/croniter do; a \
                     {}-field (seconds) expression is not supported",
                    fields.len(),
                    fields.len()
                ),
                n => format!(
                    "{n} fields given; write five fields: minute hour day-of-month month \
                     day-of-week"
                ),
            };
            return Err(CronError {
                field: None,
                message,
            });
        }
        let mut parsed: Vec<Parsed> = Vec::with_capacity(5);
        for (text, field) in fields.iter().zip(CronField::ALL) {
            parsed.push(parse_field(text, field)?);
        }
        let (dom_text, dow_text) = (fields[2], fields[4]);
        let [minute, hour, dom, month, dow] = <[Parsed; 5]>::try_from(parsed)
            .unwrap_or_else(|_| unreachable!("five fields were parsed"));
        let has_nth = dow.nth.iter().any(|&b| b != 0);
        if has_nth && dow.bits != 0 {
            return Err(CronError::field(
                CronField::DayOfWeek,
                "plain weekdays cannot be mixed with `#` or `L` weekdays; use a second schedule",
            ));
        }
        // croniter: a fully covered day field counts as `*` unless the other day field has
        // no `*` at all (`0 0 1-31 * 1` stays restricted on both sides).
        let is_star = |text: &str| text == "*" || text == "?";
        let dom_count = (dom.bits >> 1).count_ones() + u32::from(dom.last_day);
        let day_star = is_star(dom_text) || (dom_count == 31 && dow_text.contains('*'));
        let weekday_star =
            is_star(dow_text) || (!has_nth && dow.bits.count_ones() == 7 && dom_text.contains('*'));
        Ok(Cron {
            fixed_time: !fields[0].starts_with('*') && !fields[1].starts_with('*'),
            source,
            minutes: minute.bits,
            hours: hour.bits as u32,
            days: dom.bits as u32,
            last_day: dom.last_day,
            months: month.bits as u16,
            weekdays: dow.bits as u8,
            nth: dow.nth,
            day_star,
            weekday_star,
        })
    }

    /// True when neither the minute nor the hour field starts with `*`: such a schedule
    /// names a wall-clock time, so DST gaps move it and repeats fire it once.
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// True when `#`/`L` weekdays meet a restricted day-of-month: croniter's OR mode then
    /// needs the two to coincide somewhere, or it refuses the expression.
    pub(crate) fn has_nth_weekday_and_day(&self) -> bool {
        !self.day_star && self.nth.iter().any(|&b| b != 0)
    }

    /// The fields as sets, for describing the expression in words.
    pub(super) fn fields(&self) -> CronFields {
        CronFields {
            minutes: self.minutes,
            hours: self.hours,
            days: (!self.day_star).then_some(self.days),
            months: self.months,
            weekdays: (!self.weekday_star).then_some(self.weekdays),
            special_days: self.last_day || self.nth.iter().any(|n| *n != 0),
        }
    }

    /// The expression as written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression matches this wall-clock minute.
    pub fn matches(&self, wall: NaiveDateTime, day_or: bool) -> bool {
        self.months & (1 << wall.month()) != 0
            && self.matches_day(wall.date(), day_or)
            && self.hours & (1 << wall.hour()) != 0
            && self.minutes & (1 << wall.minute()) != 0
            && wall.second() == 0
    }

    fn matches_day(&self, date: NaiveDate, day_or: bool) -> bool {
        let day = date.day();
        let dom_ok =
            self.day_star || self.days & (1 << day) != 0 || (self.last_day && is_last_day(date));
        let weekday = date.weekday().num_days_from_sunday() as usize;
        if self.nth.iter().any(|&b| b != 0) {
            let mask = self.nth[weekday];
            let which = (day - 1) / 7 + 1;
            let nth_ok = mask & (1 << which) != 0 || (mask & 1 != 0 && day + 7 > last_day(date));
            return nth_ok && (dom_ok || (day_or && !self.day_star));
        }
        let dow_ok = self.weekday_star || self.weekdays & (1 << weekday) != 0;
        if day_or && !self.day_star && !self.weekday_star {
            dom_ok || dow_ok
        } else {
            dom_ok && dow_ok
        }
    }

    /// The first matching wall-clock minute at or after `from` (rounded up to a whole
    /// minute), searching dates up to `until` inclusive.
    pub fn next_wall(
        &self,
        from: NaiveDateTime,
        until: NaiveDate,
        day_or: bool,
    ) -> Option<NaiveDateTime> {
        let mut from = from.with_nanosecond(0)?;
        if from.second() != 0 {
            from = from.with_second(0)? + chrono::Duration::minutes(1);
        }
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour(), from.minute());
        while date <= until {
            if self.months & (1 << date.month()) == 0 {
                date = self.next_month_start(date)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.matches_day(date, day_or) {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
                continue;
            }
            let Some(h) = next_bit(u64::from(self.hours), hour, 23) else {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
                continue;
            };
            if h != hour {
                (hour, minute) = (h, 0);
            }
            match next_bit(self.minutes, minute, 59) {
                Some(m) => return Some(date.and_time(NaiveTime::from_hms_opt(hour, m, 0)?)),
                None if hour < 23 => (hour, minute) = (hour + 1, 0),
                None => {
                    date = date.succ_opt()?;
                    (hour, minute) = (0, 0);
                }
            }
        }
        None
    }

    /// The first day of the next month (after `date`'s) that the month field allows.
    fn next_month_start(&self, date: NaiveDate) -> Option<NaiveDate> {
        let (year, month) = (date.year(), date.month());
        match next_bit(u64::from(self.months), month + 1, 12) {
            Some(m) => NaiveDate::from_ymd_opt(year, m, 1),
            None => {
                let first = next_bit(u64::from(self.months), 1, 12)?;
                NaiveDate::from_ymd_opt(year + 1, first, 1)
            }
        }
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The lowest set bit at or above `from`, not above `max`.
fn next_bit(bits: u64, from: u32, max: u32) -> Option<u32> {
    if from > max {
        return None;
    }
    let masked = (bits >> from) << from;
    let found = masked.trailing_zeros();
    (found <= max).then_some(found)
}

fn last_day(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

fn is_last_day(date: NaiveDate) -> bool {
    date.day() == last_day(date)
}

fn parse_field(text: &str, field: CronField) -> Result<Parsed, CronError> {
    let mut parsed = Parsed::default();
    if text == "?" {
        if !matches!(field, CronField::DayOfMonth | CronField::DayOfWeek) {
            return Err(CronError::field(
                field,
                "`?` is only allowed in the day fields",
            ));
        }
        return parse_field("*", field);
    }
    for item in text.split(',') {
        if item.is_empty() {
            return Err(CronError::field(
                field,
                format!("empty list item in {text:?}"),
            ));
        }
        parse_item(item, field, &mut parsed)?;
    }
    Ok(parsed)
}

fn parse_item(item: &str, field: CronField, parsed: &mut Parsed) -> Result<(), CronError> {
    let (min, max) = field.range();
    if field == CronField::DayOfWeek {
        if let Some(rest) = item.strip_prefix('l') {
            let weekday = parse_value(rest, field)?;
            parsed.nth[weekday as usize] |= 1;
            return Ok(());
        }
        if let Some((day, which)) = item.split_once('#') {
            let weekday = parse_value(day, field)?;
            let which: u32 = which
                .parse()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| {
                    CronError::field(field, format!("{item:?}: the number after `#` must be 1-5"))
                })?;
            parsed.nth[weekday as usize] |= 1 << which;
            return Ok(());
        }
    }
    if field == CronField::DayOfMonth && item == "l" {
        parsed.last_day = true;
        return Ok(());
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step.parse().map_err(|_| {
                CronError::field(
                    field,
                    format!("{item:?}: the step after `/` must be a number"),
                )
            })?;
            if step == 0 {
                return Err(CronError::field(
                    field,
                    format!("{item:?}: the step must be at least 1"),
                ));
            }
            (range, Some(step))
        }
        None => (item, None),
    };
    let (low, high) = if range == "*" {
        (min, max)
    } else if let Some((low, high)) = range.split_once('-') {
        let low = parse_value(low, field)?;
        let high = if field == CronField::DayOfMonth && high == "l" {
            31
        } else {
            parse_value(high, field)?
        };
        if low == high {
            // croniter reads an equal range written out ("Jan-Jan") as the whole field.
            (min, max)
        } else {
            (low, high)
        }
    } else {
        let low = parse_value(range, field)?;
        match step {
            // "10/5" is "10-max/5".
            Some(_) => (low, max),
            None => (low, low),
        }
    };
    let step = step.unwrap_or(1);
    if low <= high {
        for v in (low..=high).step_by(step as usize) {
            parsed.bits |= 1 << v;
        }
    } else {
        // A wrapping range (`22-2`, `fri-mon`): croniter's arithmetic, kept for compatibility.
        let mut last = low;
        for v in (low..=max).step_by(step as usize) {
            parsed.bits |= 1 << v;
            last = v;
        }
        let skip = if last + step == max + 1 {
            0
        } else {
            step - (max - last)
        };
        for v in (min + skip..=high).step_by(step as usize) {
            parsed.bits |= 1 << v;
        }
    }
    Ok(())
}

fn parse_value(text: &str, field: CronField) -> Result<u32, CronError> {
    let (min, max) = field.range();
    if text.is_empty() {
        return Err(CronError::field(field, "a value is missing"));
    }
    let names: &[&str] = match field {
        CronField::Month => &MONTH_NAMES,
        CronField::DayOfWeek => &WEEKDAY_NAMES,
        _ => &[],
    };
    if let Some(index) = names.iter().position(|name| *name == text) {
        return Ok(if field == CronField::Month {
            index as u32 + 1
        } else {
            index as u32
        });
    }
    let value: u32 = text.parse().map_err(|_| {
        let hint = match field {
            CronField::Month => "; use 1-12 or jan-dec",
            CronField::DayOfWeek => "; use 0-7 or sun-sat",
            CronField::DayOfMonth => "; use 1-31 or L",
            _ => "",
        };
        if text.starts_with('-') {
            CronField::message(field, format!("negative value {text:?} is not allowed"))
        } else {
            CronField::message(field, format!("{text:?} is not a number{hint}"))
        }
    })?;
    if field == CronField::DayOfWeek && value == 7 {
        return Ok(0);
    }
    let shown_max = if field == CronField::DayOfWeek {
        7
    } else {
        max
    };
    if value < min || value > max {
        return Err(CronError::field(
            field,
            format!("{value} is out of range {min}-{shown_max}"),
        ));
    }
    Ok(value)
}

impl CronField {
    fn message(self, message: String) -> CronError {
        CronError::field(self, message)
    }
}
