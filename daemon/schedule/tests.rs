//! Table tests at real 2026 transitions (checked against chrono-tz's data):
//! New York 03-08 07:00Z (02→03) and 11-01 06:00Z (02→01); Chicago an hour later in UTC;
//! Berlin, Madrid and Dublin 03-29 01:00Z and 10-25 01:00Z; Lord Howe 04-04 15:00Z
//! (02:00→01:30) and 10-03 15:30Z (02:00→02:30); Santiago 04-05 03:00Z (24:00→23:00) and
//! 09-06 04:00Z (00:00→01:00); Kolkata never.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::*;

mod property;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant")
        .with_timezone(&Utc)
}

fn wall(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").expect("test wall time")
}

/// The next `n` fires as RFC 3339 in the schedule's zone, a `*` after each one DST moved
/// into a gap end and a `1` after each first-of-two occurrence.
fn fires(schedule: &Schedule, after: &str, n: usize) -> Vec<String> {
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
fn interval_parsing() {
    let ok = [
        ("3600", 3600.0),
        ("2.5", 2.5),
        ("PT10M", 600.0),
        ("P1D", 86_400.0),
        ("PT1H30M", 5400.0),
        ("P1W", 604_800.0),
        ("P1DT12H", 129_600.0),
        ("PT0.5S", 0.5),
        ("01:30:00", 5400.0),
        ("25:00:00", 90_000.0),
    ];
    for (text, seconds) in ok {
        assert_eq!(
            parse_interval(text).unwrap().as_secs_f64(),
            seconds,
            "{text}"
        );
    }
    for text in [
        "0", "-5", "P1M", "P1Y", "PT", "abc", "0.0001", "1:99:00", "PT5",
    ] {
        assert!(parse_interval(text).is_err(), "{text} should be refused");
    }
    assert_eq!(
        parse_interval("P1M").unwrap_err().to_string(),
        "interval \"P1M\": years and months have no fixed length; write days (P30D) or use an rrule"
    );
}

#[test]
fn anchor_parsing() {
    let ny = Tz::America__New_York;
    let instant = parse_anchor("2026-01-01T09:00:00+01:00", ny).unwrap();
    assert_eq!(instant.instant, at("2026-01-01T08:00:00Z"));
    assert_eq!(instant.wall, wall("2026-01-01T03:00"));
    for text in [
        "2026-01-01T09:00:00",
        "2026-01-01 09:00:00",
        "2026-01-01T09:00:00.000000",
    ] {
        let anchor = parse_anchor(text, ny).unwrap();
        assert_eq!(anchor.wall, wall("2026-01-01T09:00"), "{text}");
        assert_eq!(anchor.instant, at("2026-01-01T14:00:00Z"), "{text}");
    }
    assert_eq!(
        parse_anchor("2026-01-01", ny).unwrap().wall,
        wall("2026-01-01T00:00")
    );
    assert!(parse_anchor("yesterday", ny).is_err());
}

#[test]
fn whole_day_interval_keeps_wall_time_across_dst() {
    let ny = Tz::America__New_York;
    let anchor = parse_anchor("2026-03-01T09:00:00", ny).unwrap();
    let daily = Schedule::interval(Duration::from_secs(86_400), Some(anchor), ny).unwrap();
    assert_eq!(
        fires(&daily, "2026-03-07T10:00:00-05:00", 2),
        ["2026-03-08T09:00:00-04:00", "2026-03-09T09:00:00-04:00"]
    );
    assert_eq!(
        fires(&daily, "2026-10-31T10:00:00-04:00", 2),
        ["2026-11-01T09:00:00-05:00", "2026-11-02T09:00:00-05:00"]
    );
    let gap_anchor = parse_anchor("2026-03-01T02:30:00", ny).unwrap();
    let weekly = Schedule::interval(Duration::from_secs(7 * 86_400), Some(gap_anchor), ny).unwrap();
    assert_eq!(
        fires(&weekly, "2026-03-02T00:00:00-05:00", 2),
        ["2026-03-08T03:00:00-04:00 *", "2026-03-15T02:30:00-04:00"]
    );
}

#[test]
fn sub_day_interval_steps_exact_elapsed_time() {
    let ny = Tz::America__New_York;
    let anchor = parse_anchor("2026-03-08T00:00:00", ny).unwrap();
    let every = Schedule::interval(Duration::from_secs(90 * 60), Some(anchor), ny).unwrap();
    assert_eq!(
        fires(&every, "2026-03-08T00:00:00-05:00", 3),
        [
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T04:00:00-04:00",
            "2026-03-08T05:30:00-04:00"
        ]
    );
    // k may be negative: fires before the anchor exist too.
    assert_eq!(
        fires(&every, "2026-03-07T22:00:00-05:00", 1),
        ["2026-03-07T22:30:00-05:00"]
    );
    let default_anchor = Schedule::interval(Duration::from_secs(3600), None, Tz::UTC).unwrap();
    assert_eq!(
        fires(&default_anchor, "2026-05-28T10:20:00Z", 1),
        ["2026-05-28T11:00:00+00:00"]
    );
    assert!(Schedule::interval(Duration::ZERO, None, Tz::UTC).is_err());
}

#[test]
fn rrule_weekly_at_0230_moves_to_gap_end_on_spring_forward() {
    let ny = Tz::America__New_York;
    let schedule = Schedule::rrule(
        "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=30;BYSECOND=0",
        ny,
        None,
    )
    .unwrap();
    assert_eq!(
        fires(&schedule, "2026-02-28T00:00:00-05:00", 3),
        [
            "2026-03-01T02:30:00-05:00",
            "2026-03-08T03:00:00-04:00 *",
            "2026-03-15T02:30:00-04:00"
        ]
    );
    assert_eq!(
        fires(&schedule, "2026-10-31T00:00:00-04:00", 2),
        ["2026-11-01T02:30:00-05:00", "2026-11-08T02:30:00-05:00"]
    );
    let repeat = Schedule::rrule("RRULE:FREQ=DAILY;BYHOUR=1;BYMINUTE=30", ny, None).unwrap();
    assert_eq!(
        fires(&repeat, "2026-10-31T12:00:00-04:00", 2),
        ["2026-11-01T01:30:00-04:00 1", "2026-11-02T01:30:00-05:00"]
    );
}

#[test]
fn rrule_count_until_exdate_rdate() {
    let madrid = Tz::Europe__Madrid;
    let count = Schedule::rrule(
        "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=3",
        madrid,
        None,
    )
    .unwrap();
    assert_eq!(
        fires(&count, "2025-12-01T00:00:00Z", 5),
        [
            "2026-01-01T09:00:00+01:00",
            "2026-01-02T09:00:00+01:00",
            "2026-01-03T09:00:00+01:00"
        ]
    );
    // UNTIL in UTC is converted to the zone's wall time: 08:00Z is 09:00 in Madrid.
    let until = Schedule::rrule(
        "DTSTART;TZID=Europe/Madrid:20260101T090000\nRRULE:FREQ=DAILY;UNTIL=20260102T080000Z",
        madrid,
        None,
    )
    .unwrap();
    assert_eq!(
        fires(&until, "2025-12-01T00:00:00Z", 5),
        ["2026-01-01T09:00:00+01:00", "2026-01-02T09:00:00+01:00"]
    );
    let exdate = Schedule::rrule(
        "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=3\nEXDATE:20260102T090000\nRDATE:20260110T120000",
        madrid,
        None,
    )
    .unwrap();
    assert_eq!(
        fires(&exdate, "2025-12-01T00:00:00Z", 5),
        [
            "2026-01-01T09:00:00+01:00",
            "2026-01-03T09:00:00+01:00",
            "2026-01-10T12:00:00+01:00"
        ]
    );
    // DTSTART in UTC, anchor as DTSTART, and DTSTART only counting when the rule matches it.
    let utc_start = Schedule::rrule(
        "DTSTART:20260105T080000Z\nRRULE:FREQ=WEEKLY;BYDAY=TU",
        madrid,
        None,
    )
    .unwrap();
    assert_eq!(
        fires(&utc_start, "2026-01-01T00:00:00Z", 1),
        ["2026-01-06T09:00:00+01:00"]
    );
    let anchor = parse_anchor("2026-01-01T07:15:00", madrid).unwrap();
    let anchored = Schedule::rrule("FREQ=DAILY", madrid, Some(anchor)).unwrap();
    assert_eq!(
        fires(&anchored, "2026-01-10T12:00:00+01:00", 1),
        ["2026-01-11T07:15:00+01:00"]
    );
}

#[test]
fn rrule_errors() {
    let err = Schedule::rrule(
        "DTSTART;TZID=America/New_York:20260101T090000\nRRULE:FREQ=DAILY",
        Tz::Europe__Madrid,
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rrule DTSTART has TZID=America/New_York but the schedule's timezone is Europe/Madrid; \
         drop the TZID or set `timezone: America/New_York`"
    );
    assert!(Schedule::rrule("FREQ=SOMETIMES", Tz::UTC, None).is_err());
    assert!(Schedule::rrule("EXRULE:FREQ=DAILY", Tz::UTC, None).is_err());
    assert!(Schedule::rrule("", Tz::UTC, None).is_err());
}

#[test]
fn long_running_rrule_does_not_replay_history() {
    let minutely = Schedule::rrule("FREQ=MINUTELY;INTERVAL=7", Tz::UTC, None).unwrap();
    // 2020-01-01T00:00Z + 7-minute steps: the first one after 2040-06-01T00:00Z.
    let fire = minutely.next_after(at("2040-06-01T00:00:00Z")).unwrap();
    let minutes = (fire.at - at("2020-01-01T00:00:00Z")).num_minutes();
    assert_eq!(minutes % 7, 0);
    assert!(fire.at > at("2040-06-01T00:00:00Z"));
    assert!(fire.at <= at("2040-06-01T00:07:00Z"));
    let monthly =
        Schedule::rrule("DTSTART:20200131T100000\nRRULE:FREQ=MONTHLY", Tz::UTC, None).unwrap();
    assert_eq!(
        fires(&monthly, "2040-01-31T10:00:00Z", 2),
        ["2040-03-31T10:00:00+00:00", "2040-05-31T10:00:00+00:00"]
    );
}
