//! Interval and rrule schedules: parsing, DST behaviour, COUNT/UNTIL/EXDATE/RDATE.

use std::time::Duration;

use super::super::{parse_anchor, parse_interval, Schedule, Tz};
use super::{at, fires, wall};

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
