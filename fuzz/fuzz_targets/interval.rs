//! Intervals and anchors (`input` format; the option line is the anchor): parsing never
//! panics; fires strictly increase; an interval that is not a whole number of days fires
//! exactly at `anchor + k * every`, the first one no later than `after + every`.

#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use sundial::schedule::{parse_anchor, parse_interval, Anchor, Schedule};

mod input;

fn nanos(from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
    let delta = to - from;
    i128::from(delta.num_seconds()) * 1_000_000_000 + i128::from(delta.subsec_nanos())
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input::parse(data) else {
        return;
    };
    let anchor = parse_anchor(input.option, input.zone).ok();
    let Ok(every) = parse_interval(input.text) else {
        return;
    };
    let Ok(schedule) = Schedule::interval(every, anchor, input.zone) else {
        return;
    };
    let fires = input::check_increasing(
        input.text,
        input.after,
        schedule.iter_after(input.after).take(12).map(|f| f.at),
    );
    let every = every.as_nanos() as i128;
    if every % 86_400_000_000_000 == 0 {
        return; // calendar days under the DST policy: not elapsed time
    }
    let anchor = anchor.unwrap_or_else(|| Anchor::default_for(input.zone));
    if let Some(first) = fires.first() {
        assert!(
            nanos(input.after, *first) <= every,
            "{:?}: first fire {first} more than one interval after {}",
            input.text,
            input.after
        );
    }
    for at in fires {
        assert_eq!(
            nanos(anchor.instant, at) % every,
            0,
            "{:?}: {at} is off the grid of {}",
            input.text,
            anchor.instant
        );
    }
});
