//! Cron expressions (`input` format; the option line `0` means `day_or: false`): parsing
//! never panics, and a schedule's fires strictly increase and match the expression unless
//! the DST policy moved them.

#![no_main]

use chrono::{Duration, TimeZone};
use libfuzzer_sys::fuzz_target;
use sundial::schedule::{Cron, Schedule};

mod input;

fuzz_target!(|data: &[u8]| {
    let Some(input) = input::parse(data) else {
        return;
    };
    let day_or = input.option != "0";
    let parsed = Cron::parse(input.text);
    let Ok(schedule) = Schedule::cron(input.text, input.zone, day_or) else {
        return;
    };
    let cron = parsed.expect("a schedule's expression parses");
    let fires: Vec<_> = schedule.iter_after(input.after).take(12).collect();
    input::check_increasing(input.text, input.after, fires.iter().map(|f| f.at));
    for fire in fires.iter().filter(|f| f.shift.is_none()) {
        let wall = input
            .zone
            .from_utc_datetime(&fire.at.naive_utc())
            .naive_local();
        assert!(
            cron.matches(wall, day_or),
            "{:?} fired at {wall} in {}",
            input.text,
            input.zone
        );
    }
    let _ = schedule.dropped_by_dst(input.after, input.after + Duration::days(2));
});
