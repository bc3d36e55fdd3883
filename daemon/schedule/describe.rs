//! Schedules in words, for people: "At 09:00 every weekday, Europe/Madrid".
//!
//! Contract: pure and total. Common shapes (fixed times, steps of minutes or hours, days of
//! the week or month, intervals, simple rrules) get a sentence; anything else is the
//! expression itself ("cron 0 9 L * * (UTC)"), never a wrong sentence. Times are wall
//! times in the schedule's zone, which ends every description.

use std::fmt::Write;

use super::cron::CronFields;
use super::{Kind, Schedule};

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// More fixed times of day than this are not listed one by one.
const MAX_TIMES: usize = 6;

impl Schedule {
    /// This schedule in words, ending with its time zone.
    pub fn describe(&self) -> String {
        let words = match &self.kind {
            Kind::Cron { cron, day_or } => describe_cron(cron.fields(), *day_or)
                .unwrap_or_else(|| format!("cron {}", cron.source())),
            Kind::Interval(interval) => {
                let (days, nanos, anchor) = interval.step();
                match days {
                    Some(days) => {
                        format!("At {} every {}", anchor.format("%H:%M"), count(days, "day"))
                    }
                    None => format!("Every {}", exact(nanos)),
                }
            }
            Kind::RRule(recurrence) => describe_rrule(recurrence.source())
                .unwrap_or_else(|| format!("rrule {}", recurrence.source())),
        };
        format!("{words}, {}", self.tz)
    }
}

fn bits(set: u64, range: std::ops::RangeInclusive<u32>) -> Vec<u32> {
    range.filter(|i| set & (1 << i) != 0).collect()
}

/// `Some(n)` when `values` (within `0..=max`) are every n-th value from 0, n > 1.
fn step_of(values: &[u32], max: u32) -> Option<u32> {
    let step = *values.get(1)?;
    (values[0] == 0 && step > 1 && values.len() as u32 == max / step + 1)
        .then_some(step)
        .filter(|step| {
            values
                .iter()
                .enumerate()
                .all(|(i, v)| *v == i as u32 * step)
        })
}

fn describe_cron(f: CronFields, day_or: bool) -> Option<String> {
    if f.special_days || (day_or && f.days.is_some() && f.weekdays.is_some()) {
        return None;
    }
    let minutes = bits(f.minutes, 0..=59);
    let hours = bits(u64::from(f.hours), 0..=23);
    let every_hour = hours.len() == 24;
    // Several fires a day: "every day" would add nothing to it.
    let within_day = every_hour || step_of(&hours, 23).is_some();
    let time = if minutes.len() == 60 && every_hour {
        "Every minute".to_string()
    } else if let (Some(step), true) = (step_of(&minutes, 59), every_hour) {
        format!("Every {step} minutes")
    } else if minutes.len() == 1 && every_hour {
        format!("At minute {} of every hour", minutes[0])
    } else if let (Some(step), [m]) = (step_of(&hours, 23), minutes.as_slice()) {
        format!("At minute {m} of every {step} hours, from 00:{m:02}")
    } else if minutes.len() * hours.len() <= MAX_TIMES && minutes.len() < 60 {
        let times: Vec<String> = hours
            .iter()
            .flat_map(|h| minutes.iter().map(move |m| format!("{h:02}:{m:02}")))
            .collect();
        format!("At {}", and_list(&times))
    } else {
        return None;
    };
    let days = match (f.days, f.weekdays) {
        (None, None) => "every day".to_string(),
        (None, Some(weekdays)) => weekday_words(weekdays),
        (Some(days), None) => {
            let days: Vec<String> = bits(u64::from(days), 1..=31)
                .iter()
                .map(u32::to_string)
                .collect();
            let noun = if days.len() == 1 { "day" } else { "days" };
            format!("on {noun} {} of every month", and_list(&days))
        }
        (Some(_), Some(_)) => return None,
    };
    let months = bits(u64::from(f.months), 1..=12);
    let mut text = time;
    if !(days == "every day" && within_day) {
        write!(text, " {days}").ok();
    }
    if months.len() < 12 {
        let names: Vec<String> = months
            .iter()
            .map(|m| MONTHS[*m as usize - 1].to_string())
            .collect();
        let joined = and_list(&names);
        let days = if text.ends_with("of every month") {
            text.truncate(text.len() - " of every month".len());
            format!(" of {joined}")
        } else {
            format!(" in {joined}")
        };
        text.push_str(&days);
    }
    Some(text)
}

fn weekday_words(set: u8) -> String {
    match set {
        0b011_1110 => "every weekday".into(),
        0b100_0001 => "every Saturday and Sunday".into(),
        _ => {
            // Monday first, as calendars in most places are read.
            let names: Vec<String> = [1, 2, 3, 4, 5, 6, 0]
                .iter()
                .filter(|d| set & (1 << *d) != 0)
                .map(|d| WEEKDAYS[*d].to_string())
                .collect();
            format!("every {}", and_list(&names))
        }
    }
}

/// A simple single RRULE line: FREQ, INTERVAL, BYDAY, BYHOUR and BYMINUTE only.
fn describe_rrule(text: &str) -> Option<String> {
    let line = text.strip_prefix("RRULE:").unwrap_or(text);
    if line.contains('\n') {
        return None;
    }
    let (mut freq, mut every, mut days, mut hours, mut minutes) = (None, 1u32, None, None, None);
    for part in line.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=')?;
        match key.to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(value.to_ascii_uppercase()),
            "INTERVAL" => every = value.parse().ok()?,
            "BYDAY" => days = Some(value.to_ascii_uppercase()),
            "BYHOUR" => hours = Some(value.parse::<u32>().ok()?),
            "BYMINUTE" => minutes = Some(value.parse::<u32>().ok()?),
            _ => return None,
        }
    }
    let unit = match freq?.as_str() {
        "MINUTELY" => "minute",
        "HOURLY" => "hour",
        "DAILY" => "day",
        "WEEKLY" => "week",
        "MONTHLY" => "month",
        "YEARLY" => "year",
        _ => return None,
    };
    let mut text = format!("Every {}", count(i64::from(every), unit));
    if let Some(days) = days {
        let names = days
            .split(',')
            .map(|d| {
                let i = ["SU", "MO", "TU", "WE", "TH", "FR", "SA"]
                    .iter()
                    .position(|n| *n == d)?;
                Some(WEEKDAYS[i].to_string())
            })
            .collect::<Option<Vec<_>>>()?;
        write!(text, " on {}", and_list(&names)).ok();
    }
    if let Some(hour) = hours {
        write!(text, " at {hour:02}:{:02}", minutes.unwrap_or(0)).ok();
    } else if minutes.is_some() {
        return None;
    }
    Some(text.replace("Every 1 ", "Every "))
}

fn count(n: i64, unit: &str) -> String {
    if n == 1 {
        unit.to_string()
    } else {
        format!("{n} {unit}s")
    }
}

/// An exact interval in the largest unit that divides it.
fn exact(nanos: i128) -> String {
    const UNITS: [(i128, &str); 5] = [
        (604_800_000_000_000, "week"),
        (86_400_000_000_000, "day"),
        (3_600_000_000_000, "hour"),
        (60_000_000_000, "minute"),
        (1_000_000_000, "second"),
    ];
    for (size, unit) in UNITS {
        if nanos % size == 0 {
            return count((nanos / size) as i64, unit);
        }
    }
    format!("{} seconds", nanos as f64 / 1e9)
}

fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{parse_anchor, Schedule, Tz};

    fn cron(expr: &str, tz: &str) -> String {
        Schedule::cron(expr, tz.parse::<Tz>().unwrap(), true)
            .unwrap()
            .describe()
    }

    #[test]
    fn cron_expressions_in_words() {
        for (expr, words) in [
            ("0 9 * * 1-5", "At 09:00 every weekday, Europe/Madrid"),
            ("0 9 * * MON-FRI", "At 09:00 every weekday, Europe/Madrid"),
            ("0 9 * * *", "At 09:00 every day, Europe/Madrid"),
            ("@daily", "At 00:00 every day, Europe/Madrid"),
            (
                "30 8,17 * * 1,4",
                "At 08:30 and 17:30 every Monday and Thursday, Europe/Madrid",
            ),
            (
                "0 10 * * 0,6",
                "At 10:00 every Saturday and Sunday, Europe/Madrid",
            ),
            ("0 9 * * 7", "At 09:00 every Sunday, Europe/Madrid"),
            ("*/15 * * * *", "Every 15 minutes, Europe/Madrid"),
            ("* * * * *", "Every minute, Europe/Madrid"),
            ("@hourly", "At minute 0 of every hour, Europe/Madrid"),
            (
                "5 */6 * * *",
                "At minute 5 of every 6 hours, from 00:05, Europe/Madrid",
            ),
            (
                "0 0 1 * *",
                "At 00:00 on day 1 of every month, Europe/Madrid",
            ),
            (
                "0 6 1,15 * *",
                "At 06:00 on days 1 and 15 of every month, Europe/Madrid",
            ),
            ("0 0 1 1 *", "At 00:00 on day 1 of January, Europe/Madrid"),
            (
                "0 12 * 6-8 1",
                "At 12:00 every Monday in June, July and August, Europe/Madrid",
            ),
            ("*/10 9-17 * * *", "cron */10 9-17 * * *, Europe/Madrid"),
            ("0 9 L * *", "cron 0 9 L * *, Europe/Madrid"),
            ("0 9 1 * 1", "cron 0 9 1 * 1, Europe/Madrid"),
        ] {
            assert_eq!(cron(expr, "Europe/Madrid"), words, "{expr}");
        }
    }

    #[test]
    fn intervals_and_rrules_in_words() {
        let tz: Tz = "America/Chicago".parse().unwrap();
        let every = |secs: u64, anchor: Option<&str>| {
            let anchor = anchor.map(|a| parse_anchor(a, tz).unwrap());
            Schedule::interval(Duration::from_secs(secs), anchor, tz)
                .unwrap()
                .describe()
        };
        assert_eq!(every(900, None), "Every 15 minutes, America/Chicago");
        assert_eq!(every(90, None), "Every 90 seconds, America/Chicago");
        assert_eq!(every(7200, None), "Every 2 hours, America/Chicago");
        assert_eq!(
            every(86_400, Some("2026-01-01T09:30:00")),
            "At 09:30 every day, America/Chicago"
        );
        let rrule = |text: &str| Schedule::rrule(text, tz, None).unwrap().describe();
        assert_eq!(
            rrule("FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=30"),
            "Every week on Monday and Wednesday at 09:30, America/Chicago"
        );
        assert_eq!(
            rrule("FREQ=DAILY;INTERVAL=2"),
            "Every 2 days, America/Chicago"
        );
        assert_eq!(
            rrule("FREQ=MONTHLY;BYMONTHDAY=1"),
            "rrule FREQ=MONTHLY;BYMONTHDAY=1, America/Chicago"
        );
    }
}
