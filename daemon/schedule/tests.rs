//! Table tests at real 2026 transitions (checked against chrono-tz's data):
//! New York 03-08 07:00Z (02→03) and 11-01 06:00Z (02→01); Chicago an hour later in UTC;
//! Berlin, Madrid and Dublin 03-29 01:00Z and 10-25 01:00Z; Lord Howe 04-04 15:00Z
//! (02:00→01:30) and 10-03 15:30Z (02:00→02:30); Santiago 04-05 03:00Z (24:00→23:00) and
//! 09-06 04:00Z (00:00→01:00); Kolkata never.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::*;

mod interval_rrule;
mod property;

pub(super) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant")
        .with_timezone(&Utc)
}

pub(super) fn wall(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").expect("test wall time")
}

/// The next `n` fires as RFC 3339 in the schedule's zone, a `*` after each one DST moved
/// into a gap end and a `1` after each first-of-two occurrence.
pub(super) fn fires(schedule: &Schedule, after: &str, n: usize) -> Vec<String> {
    schedule
        .iter_after(at(after))
        .take(n)
        .map(|fire| {
            let local = fire.at.with_timezone(&schedule.timezone()).to_rfc3339();
            match fire.shift {
                None => local,
                Some(DstShift::GapMoved { .. }) => format!("{local} *"),
                Some(DstShift::SecondOccurrenceSkipped { .. }) => format!("{local} 1"),
            }
        })
        .collect()
}

fn cron(expr: &str, tz: Tz) -> Schedule {
    Schedule::cron(expr, tz, true).expect("valid cron")
}

#[test]
fn fixed_time_in_spring_gap_fires_once_at_gap_end() {
    let cases: &[(&str, Tz, &str, [&str; 2])] = &[
        (
            "30 2 * * *",
            Tz::America__New_York,
            "2026-03-07T12:00:00-05:00",
            ["2026-03-08T03:00:00-04:00 *", "2026-03-09T02:30:00-04:00"],
        ),
        (
            "30 2 * * *",
            Tz::America__Chicago,
            "2026-03-07T12:00:00-06:00",
            ["2026-03-08T03:00:00-05:00 *", "2026-03-09T02:30:00-05:00"],
        ),
        (
            "30 2 * * *",
            Tz::Europe__Berlin,
            "2026-03-28T12:00:00+01:00",
            ["2026-03-29T03:00:00+02:00 *", "2026-03-30T02:30:00+02:00"],
        ),
        (
            "0 2 * * *",
            Tz::Europe__Madrid,
            "2026-03-28T12:00:00+01:00",
            ["2026-03-29T03:00:00+02:00 *", "2026-03-30T02:00:00+02:00"],
        ),
        (
            "15 2 * * *",
            Tz::Australia__Lord_Howe,
            "2026-10-03T12:00:00+10:30",
            ["2026-10-04T02:30:00+11:00 *", "2026-10-05T02:15:00+11:00"],
        ),
        (
            "0 0 * * *",
            Tz::America__Santiago,
            "2026-09-05T12:00:00-04:00",
            ["2026-09-06T01:00:00-03:00 *", "2026-09-07T00:00:00-03:00"],
        ),
        (
            "30 1 * * *",
            Tz::Europe__Dublin,
            "2026-03-28T12:00:00+00:00",
            ["2026-03-29T02:00:00+01:00 *", "2026-03-30T01:30:00+01:00"],
        ),
        // Several wall times in one gap fire once, together.
        (
            "0,30 2 * * *",
            Tz::America__New_York,
            "2026-03-08T00:00:00-05:00",
            ["2026-03-08T03:00:00-04:00 *", "2026-03-09T02:00:00-04:00"],
        ),
        (
            "30 2 * * *",
            Tz::Asia__Kolkata,
            "2026-03-07T12:00:00+05:30",
            ["2026-03-08T02:30:00+05:30", "2026-03-09T02:30:00+05:30"],
        ),
    ];
    for (expr, tz, after, expected) in cases {
        assert_eq!(
            fires(&cron(expr, *tz), after, 2),
            expected,
            "{expr} in {tz}"
        );
    }
}

#[test]
fn gap_fire_is_never_at_or_before_after() {
    let schedule = cron("0,30 2 * * *", Tz::America__New_York);
    // Asking from the gap end itself must not return the gap end again.
    assert_eq!(
        fires(&schedule, "2026-03-08T03:00:00-04:00", 1),
        ["2026-03-09T02:00:00-04:00"]
    );
    let fire = schedule
        .next_after(at("2026-03-08T01:59:59-05:00"))
        .unwrap();
    assert_eq!(
        fire.shift,
        Some(DstShift::GapMoved {
            wanted: wall("2026-03-08T02:00")
        })
    );
}

#[test]
fn fixed_time_repeated_at_fall_back_fires_first_occurrence_only() {
    let cases: &[(&str, Tz, &str, [&str; 2])] = &[
        (
            "30 1 * * *",
            Tz::America__New_York,
            "2026-10-31T12:00:00-04:00",
            ["2026-11-01T01:30:00-04:00 1", "2026-11-02T01:30:00-05:00"],
        ),
        (
            "30 1 * * *",
            Tz::America__Chicago,
            "2026-10-31T12:00:00-05:00",
            ["2026-11-01T01:30:00-05:00 1", "2026-11-02T01:30:00-06:00"],
        ),
        (
            "30 2 * * *",
            Tz::Europe__Berlin,
            "2026-10-24T12:00:00+02:00",
            ["2026-10-25T02:30:00+02:00 1", "2026-10-26T02:30:00+01:00"],
        ),
        (
            "45 1 * * *",
            Tz::Australia__Lord_Howe,
            "2026-04-04T12:00:00+11:00",
            ["2026-04-05T01:45:00+11:00 1", "2026-04-06T01:45:00+10:30"],
        ),
        (
            "30 23 * * *",
            Tz::America__Santiago,
            "2026-04-04T12:00:00-03:00",
            ["2026-04-04T23:30:00-03:00 1", "2026-04-05T23:30:00-04:00"],
        ),
        (
            "30 1 * * *",
            Tz::Europe__Dublin,
            "2026-10-24T12:00:00+01:00",
            ["2026-10-25T01:30:00+01:00 1", "2026-10-26T01:30:00+00:00"],
        ),
    ];
    for (expr, tz, after, expected) in cases {
        assert_eq!(
            fires(&cron(expr, *tz), after, 2),
            expected,
            "{expr} in {tz}"
        );
    }
    // Asked from inside the second copy, the day's fire is already past.
    let schedule = cron("30 1 * * *", Tz::America__New_York);
    assert_eq!(
        fires(&schedule, "2026-11-01T01:10:00-05:00", 1),
        ["2026-11-02T01:30:00-05:00"]
    );
}

#[test]
fn real_time_cron_fires_both_copies_and_nothing_in_gap() {
    let ny = Tz::America__New_York;
    assert_eq!(
        fires(&cron("*/15 * * * *", ny), "2026-03-08T01:30:00-05:00", 3),
        [
            "2026-03-08T01:45:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:15:00-04:00"
        ]
    );
    assert_eq!(
        fires(&cron("*/15 * * * *", ny), "2026-11-01T01:30:00-04:00", 6),
        [
            "2026-11-01T01:45:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:15:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T01:45:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ]
    );
    assert_eq!(
        fires(&cron("30 * * * *", ny), "2026-11-01T00:00:00-04:00", 4),
        [
            "2026-11-01T00:30:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:30:00-05:00",
        ]
    );
    assert_eq!(
        fires(&cron("30 * * * *", ny), "2026-03-08T00:00:00-05:00", 3),
        [
            "2026-03-08T00:30:00-05:00",
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:30:00-04:00"
        ]
    );
    assert_eq!(
        fires(
            &cron("30 * * * *", Tz::Europe__Madrid),
            "2026-10-25T01:00:00+02:00",
            3
        ),
        [
            "2026-10-25T01:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:30:00+01:00"
        ]
    );
    assert_eq!(
        fires(
            &cron("*/15 * * * *", Tz::Australia__Lord_Howe),
            "2026-04-05T01:40:00+11:00",
            4
        ),
        [
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ]
    );
    assert_eq!(
        fires(
            &cron("*/15 * * * *", Tz::Australia__Lord_Howe),
            "2026-10-04T01:40:00+10:30",
            2
        ),
        ["2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00"]
    );
    assert_eq!(
        fires(
            &cron("0 * * * *", Tz::America__Santiago),
            "2026-09-05T22:30:00-04:00",
            2
        ),
        ["2026-09-05T23:00:00-04:00", "2026-09-06T01:00:00-03:00"]
    );
    assert_eq!(
        fires(
            &cron("0 * * * *", Tz::America__Santiago),
            "2026-04-04T22:30:00-03:00",
            3
        ),
        [
            "2026-04-04T23:00:00-03:00",
            "2026-04-04T23:00:00-04:00",
            "2026-04-05T00:00:00-04:00"
        ]
    );
    assert_eq!(
        fires(
            &cron("*/30 1 * * *", Tz::Europe__Dublin),
            "2026-10-25T00:50:00+01:00",
            4
        ),
        [
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T01:30:00+00:00",
        ]
    );
}

#[test]
fn fixed_time_daily_keeps_wall_time_across_dst() {
    let schedule = cron("0 9 * * *", Tz::America__Chicago);
    assert_eq!(
        fires(&schedule, "2026-03-07T10:00:00-06:00", 2),
        ["2026-03-08T09:00:00-05:00", "2026-03-09T09:00:00-05:00"]
    );
}

#[test]
fn leap_days_month_ends_and_last_weekdays() {
    let utc = Tz::UTC;
    let leap = cron("0 0 29 2 *", utc);
    let end = at("2032-01-01T00:00:00Z");
    let in_eight_years: Vec<_> = leap
        .iter_after(at("2024-01-01T00:00:00Z"))
        .take_while(|f| f.at < end)
        .collect();
    assert_eq!(in_eight_years.len(), 2);
    assert_eq!(
        fires(&leap, "2024-01-01T00:00:00Z", 2),
        ["2024-02-29T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]
    );

    let monday_leap = Schedule::cron("0 0 29 2 1", utc, false).unwrap();
    assert_eq!(
        fires(&monday_leap, "2026-01-01T00:00:00Z", 2),
        ["2044-02-29T00:00:00+00:00", "2072-02-29T00:00:00+00:00"]
    );

    assert_eq!(
        fires(&cron("0 0 L * *", utc), "2028-01-15T00:00:00Z", 4),
        [
            "2028-01-31T00:00:00+00:00",
            "2028-02-29T00:00:00+00:00",
            "2028-03-31T00:00:00+00:00",
            "2028-04-30T00:00:00+00:00",
        ]
    );
    assert_eq!(
        fires(&cron("0 0 31 * *", utc), "2026-01-31T00:00:00Z", 2),
        ["2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00"]
    );
    assert_eq!(
        fires(&cron("0 0 * * L5", utc), "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-30T00:00:00+00:00",
            "2026-02-27T00:00:00+00:00",
            "2026-03-27T00:00:00+00:00"
        ]
    );
    assert_eq!(
        fires(&cron("0 0 * * 5#2", utc), "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-09T00:00:00+00:00",
            "2026-02-13T00:00:00+00:00",
            "2026-03-13T00:00:00+00:00"
        ]
    );
    assert_eq!(
        fires(&cron("0 0 * * fri#5", utc), "2026-01-01T00:00:00Z", 2),
        ["2026-01-30T00:00:00+00:00", "2026-05-29T00:00:00+00:00"]
    );
}

#[test]
fn day_or_joins_restricted_day_fields() {
    let utc = Tz::UTC;
    let or = Schedule::cron("0 0 1 * 1", utc, true).unwrap();
    assert_eq!(
        fires(&or, "2026-05-28T00:00:00Z", 3),
        [
            "2026-06-01T00:00:00+00:00",
            "2026-06-08T00:00:00+00:00",
            "2026-06-15T00:00:00+00:00"
        ]
    );
    let and = Schedule::cron("0 0 1 * 1", utc, false).unwrap();
    assert_eq!(
        fires(&and, "2026-05-28T00:00:00Z", 2),
        ["2026-06-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]
    );
    // A `*` day field means no OR: `* * 1` is every Monday whatever day_or says.
    let star = Schedule::cron("0 0 * * 1", utc, true).unwrap();
    assert_eq!(
        fires(&star, "2026-05-28T00:00:00Z", 1),
        ["2026-06-01T00:00:00+00:00"]
    );
}

#[test]
fn macros_names_and_weekday_seven() {
    let utc = Tz::UTC;
    let after = "2026-05-28T10:20:00Z"; // a Thursday
    let table = [
        ("@hourly", "2026-05-28T11:00:00+00:00"),
        ("@daily", "2026-05-29T00:00:00+00:00"),
        ("@midnight", "2026-05-29T00:00:00+00:00"),
        ("@weekly", "2026-05-31T00:00:00+00:00"),
        ("@monthly", "2026-06-01T00:00:00+00:00"),
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@ANNUALLY", "2027-01-01T00:00:00+00:00"),
        ("0 0 * * 7", "2026-05-31T00:00:00+00:00"),
        ("0 0 * * 0", "2026-05-31T00:00:00+00:00"),
        ("0 0 * * SUN", "2026-05-31T00:00:00+00:00"),
        ("0 9 * JUL mon-fri", "2026-07-01T09:00:00+00:00"),
        ("0 9 ? * sat,sun", "2026-05-30T09:00:00+00:00"),
        ("5-30/5 10 * * *", "2026-05-28T10:25:00+00:00"),
        ("10/20 * * * *", "2026-05-28T10:30:00+00:00"),
        ("0 22-2 * * *", "2026-05-28T22:00:00+00:00"),
    ];
    for (expr, expected) in table {
        assert_eq!(fires(&cron(expr, utc), after, 1), [expected], "{expr}");
    }
    assert!(cron("0 9 * * 1-5", utc).next_after(at(after)).is_some());
    assert!(Cron::parse("0 9 * * 1-5").unwrap().is_fixed_time());
    assert!(Cron::parse("0,30 9 * * *").unwrap().is_fixed_time());
    assert!(!Cron::parse("*/15 * * * *").unwrap().is_fixed_time());
    assert!(!Cron::parse("30 * * * *").unwrap().is_fixed_time());
    assert!(!Cron::parse("@hourly").unwrap().is_fixed_time());
}

#[test]
fn cron_parse_errors_name_the_field() {
    let table = [
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("* * * foo *", "month field: \"foo\" is not a number; use 1-12 or jan-dec"),
        ("*/0 * * * *", "minute field: \"*/0\": the step must be at least 1"),
        ("* * * * 5#6", "day-of-week field: \"5#6\": the number after `#` must be 1-5"),
        ("1,,2 * * * *", "minute field: empty list item in \"1,,2\""),
        ("? * * * *", "minute field: `?` is only allowed in the day fields"),
        (
            "0 0 * * * *",
            "6 fields given; sundial takes 5 fields as Prefect/croniter do; a 6-field (seconds) \
             expression is not supported",
        ),
        ("0 0 *", "3 fields given; write five fields: minute hour day-of-month month day-of-week"),
        ("@often", "unknown macro \"@often\"; use one of @yearly @annually @monthly @weekly @daily @midnight @hourly"),
    ];
    for (expr, message) in table {
        let err = Cron::parse(expr).unwrap_err();
        assert_eq!(err.to_string(), message, "{expr}");
    }
    assert_eq!(Cron::parse("0 0 * * * *").unwrap_err().field, None);
    assert_eq!(
        Cron::parse("61 * * * *").unwrap_err().field,
        Some(CronField::Minute)
    );
}

#[test]
fn never_firing_cron_is_an_error() {
    let err = Schedule::cron("0 0 30 2 *", Tz::UTC, true).unwrap_err();
    assert!(matches!(err, ScheduleError::NeverFires { .. }), "{err}");
    assert!(Schedule::cron("0 0 31 4,6,9,11 *", Tz::UTC, true).is_err());
    assert!(Schedule::cron("0 0 29 2 *", Tz::UTC, true).is_ok());
}

#[test]
fn real_time_cron_reports_the_wall_times_a_gap_dropped() {
    let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let wall = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    let ny = Schedule::cron("30 * * * *", chrono_tz::America::New_York, true).unwrap();
    assert_eq!(
        ny.dropped_by_dst(utc("2026-03-08T06:30:00Z"), utc("2026-03-08T07:30:00Z")),
        vec![wall("2026-03-08 02:30")]
    );
    // Lord Howe springs forward by 30 minutes (02:00 → 02:30 on 2026-10-04).
    let lh = Schedule::cron("*/15 * * * *", chrono_tz::Australia::Lord_Howe, true).unwrap();
    assert_eq!(
        lh.dropped_by_dst(utc("2026-10-03T15:00:00Z"), utc("2026-10-03T16:00:00Z")),
        vec![wall("2026-10-04 02:00"), wall("2026-10-04 02:15")]
    );
    // Fixed-time schedules move instead of dropping; nothing is reported for them.
    let fixed = Schedule::cron("30 2 * * *", chrono_tz::America::New_York, true).unwrap();
    assert!(fixed
        .dropped_by_dst(utc("2026-03-07T12:00:00Z"), utc("2026-03-09T12:00:00Z"))
        .is_empty());
}
