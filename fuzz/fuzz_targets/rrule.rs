//! rrule text (`input` format; the option line is an anchor, as `anchor_date`): parsing
//! never panics, and fires strictly increase.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial::schedule::{parse_anchor, Schedule};

mod input;

fuzz_target!(|data: &[u8]| {
    let Some(input) = input::parse(data) else {
        return;
    };
    let anchor = parse_anchor(input.option, input.zone).ok();
    let Ok(schedule) = Schedule::rrule(input.text, input.zone, anchor) else {
        return;
    };
    input::check_increasing(
        input.text,
        input.after,
        schedule.iter_after(input.after).take(12).map(|f| f.at),
    );
});
