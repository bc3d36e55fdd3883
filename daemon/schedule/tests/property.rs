//! Property: for random cron expressions, zones and instants, fires strictly increase, each
//! one's local time matches the expression unless DST moved it, and (for schedules that
//! follow real time) a minute-by-minute scan of a two-day window finds exactly the same fires;
//! an expression is refused exactly when no day ever matches its day and month fields.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use proptest::prelude::*;

use super::super::{dst, Cron, DstShift, Schedule, ScheduleError, Tz};

const ZONES: [Tz; 9] = [
    Tz::UTC,
    Tz::America__New_York,
    Tz::America__Chicago,
    Tz::Europe__Berlin,
    Tz::Europe__Dublin,
    Tz::Australia__Lord_Howe,
    Tz::America__Santiago,
    Tz::Asia__Kolkata,
    Tz::Asia__Kathmandu,
];

fn item(min: u32, max: u32) -> impl Strategy<Value = String> {
    let value = min..=max;
    prop_oneof![
        3 => Just("*".to_string()),
        3 => value.clone().prop_map(|v| v.to_string()),
        2 => (value.clone(), value.clone()).prop_filter_map("a range", |(a, b)| {
            (a < b).then(|| format!("{a}-{b}"))
        }),
        2 => (1..=(max - min).max(1)).prop_map(|s| format!("*/{s}")),
        1 => (value.clone(), 1..=(max - min).max(1)).prop_map(|(a, s)| format!("{a}/{s}")),
        1 => (value.clone(), value, 1u32..=10).prop_filter_map("a stepped range", |(a, b, s)| {
            (a < b).then(|| format!("{a}-{b}/{s}"))
        }),
    ]
}

fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
    prop::collection::vec(item(min, max), 1..=3).prop_map(|items| {
        if items.iter().any(|i| i == "*") {
            items
                .into_iter()
                .find(|i| i.starts_with('*'))
                .unwrap_or_default()
        } else {
            items.join(",")
        }
    })
}

/// Random expressions; one in eight names late days of short months, so that some can
/// never fire (`0 0 30,31 2 *`) and some fire only through the weekday (`day_or`).
fn expression() -> impl Strategy<Value = String> {
    let late_days = prop::sample::select(vec!["29", "30", "31", "30,31", "29-31", "31/2"]);
    let short_months = prop::sample::select(vec!["2", "4,6", "9", "11", "2,4", "2-4/2"]);
    let day_and_month = prop_oneof![
        7 => (field(1, 31), field(1, 12)),
        1 => (late_days, short_months).prop_map(|(d, m)| (d.to_string(), m.to_string())),
    ];
    (field(0, 59), field(0, 23), day_and_month, field(0, 6))
        .prop_map(|(m, h, (dom, mon), dow)| format!("{m} {h} {dom} {mon} {dow}"))
}

/// The values one field of [`expression`]'s syntax names, worked out here independently of
/// the parser: `*`, `v`, `a-b`, `*/s`, `a/s` (from `a` to the end) and `a-b/s`, joined by
/// commas.
fn values(field: &str, min: u32, max: u32) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse().expect("a step")),
            None => (item, 1),
        };
        let (from, to) = match range.split_once('-') {
            _ if range == "*" => (min, max),
            Some((a, b)) => (a.parse().expect("a value"), b.parse().expect("a value")),
            None if item.contains('/') => (range.parse().expect("a value"), max),
            None => {
                let v = range.parse().expect("a value");
                (v, v)
            }
        };
        set.extend((from..=to).step_by(step as usize));
    }
    set
}

/// Whether no day in 28 years (a full cycle of weekdays and leap days) matches the day and
/// month fields, by croniter's rules: a day field covering its whole range counts as `*`
/// unless the other has no `*`; with `day_or`, two restricted day fields join with OR.
fn never_fires(expr: &str, day_or: bool) -> bool {
    let fields: Vec<&str> = expr.split(' ').collect();
    let (dom_text, month_text, dow_text) = (fields[2], fields[3], fields[4]);
    let doms = values(dom_text, 1, 31);
    let months = values(month_text, 1, 12);
    let dows = values(dow_text, 0, 6);
    let dom_star = dom_text == "*" || (doms.len() == 31 && dow_text.contains('*'));
    let dow_star = dow_text == "*" || (dows.len() == 7 && dom_text.contains('*'));
    let start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date");
    !start
        .iter_days()
        .take_while(|d| d.year() < 2028)
        .any(|date| {
            let dom_ok = dom_star || doms.contains(&date.day());
            let weekday = date.weekday().num_days_from_sunday();
            let dow_ok = dow_star || dows.contains(&weekday);
            let day_ok = if day_or && !dom_star && !dow_star {
                dom_ok || dow_ok
            } else {
                dom_ok && dow_ok
            };
            months.contains(&date.month()) && day_ok
        })
}

/// Instants 2000–2040, half of them in months where DST changes somewhere.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let month = prop_oneof![1 => 1u32..=12, 1 => prop::sample::select(vec![3u32, 4, 9, 10, 11])];
    (2000i32..=2040, month, 1u32..=28, 0i64..86_400).prop_map(|(y, m, d, s)| {
        let day = NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
        day.and_hms_opt(0, 0, 0).expect("midnight").and_utc() + Duration::seconds(s)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn cron_fires_increase_match_and_miss_nothing(
        expr in expression(),
        zone in prop::sample::select(ZONES.to_vec()),
        day_or in any::<bool>(),
        after in instant(),
    ) {
        let never = never_fires(&expr, day_or);
        let schedule = match Schedule::cron(&expr, zone, day_or) {
            Ok(schedule) => schedule,
            // Only "never fires" may be refused, e.g. 31 in a 30-day month, and only then.
            Err(ScheduleError::NeverFires { .. }) if never => return Ok(()),
            Err(e) => {
                prop_assert!(false, "{expr} (day_or {day_or}) refused: {e}");
                unreachable!()
            }
        };
        prop_assert!(!never, "{expr} (day_or {day_or}) can never fire, yet was accepted");
        let cron = Cron::parse(&expr).expect("parsed once already");
        let window_end = after + Duration::days(2);
        let fires: Vec<_> = schedule
            .iter_after(after)
            .take_while(|fire| fire.at <= window_end)
            .take(5_000)
            .collect();
        let mut previous = after;
        for fire in &fires {
            prop_assert!(fire.at > previous, "{expr}: {} not after {previous}", fire.at);
            previous = fire.at;
            let local = dst::local(zone, fire.at);
            match fire.shift {
                None | Some(DstShift::SecondOccurrenceSkipped { .. }) => {
                    prop_assert!(cron.matches(local, day_or), "{expr} fired at {local} in {zone}");
                }
                Some(DstShift::GapMoved { wanted }) => {
                    prop_assert!(cron.is_fixed_time());
                    prop_assert!(cron.matches(wanted, day_or));
                }
            }
        }
        if !cron.is_fixed_time() {
            let first = (after.timestamp().div_euclid(60) + 1) * 60;
            let scanned: Vec<DateTime<Utc>> = (0..2 * 24 * 60)
                .map(|i| DateTime::from_timestamp(first + 60 * i, 0).expect("in range"))
                .filter(|at| *at <= window_end && cron.matches(dst::local(zone, *at), day_or))
                .collect();
            let got: Vec<DateTime<Utc>> = fires.iter().map(|fire| fire.at).collect();
            prop_assert_eq!(got, scanned, "{} in {} from {}", expr, zone, after);
        }
    }
}
