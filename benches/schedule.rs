//! `cargo bench --bench schedule`: nanoseconds per `Schedule::next_after` call.
//!
//! Each case walks successive fires from a fixed instant (so each call does real work and
//! none is served from a trivial state) and reports the mean over the run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sundial::schedule::{parse_anchor, Schedule, Tz};

fn bench(name: &str, schedule: &Schedule, calls: u32) {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("start instant");
    // Warm up, then time.
    let mut after = start;
    for _ in 0..calls / 10 {
        after = schedule
            .next_after(black_box(after))
            .map_or(start, |fire| fire.at);
    }
    let mut after = start;
    let began = Instant::now();
    for _ in 0..calls {
        after = match schedule.next_after(black_box(after)) {
            Some(fire) => fire.at,
            None => start,
        };
    }
    let elapsed = began.elapsed();
    black_box(after);
    let per_call = elapsed.as_nanos() / u128::from(calls);
    println!("{name:<48} {per_call:>9} ns/next_after  ({calls} calls)");
}

fn main() {
    let chicago = Tz::America__Chicago;
    let cron =
        |expr: &str, tz: Tz, day_or: bool| Schedule::cron(expr, tz, day_or).expect("valid cron");
    bench(
        "cron */5 * * * * UTC",
        &cron("*/5 * * * *", Tz::UTC, true),
        200_000,
    );
    bench(
        "cron */5 * * * * America/Chicago",
        &cron("*/5 * * * *", chicago, true),
        200_000,
    );
    bench(
        "cron 0 9 * * * America/Chicago",
        &cron("0 9 * * *", chicago, true),
        100_000,
    );
    bench(
        "cron 0 0 29 2 1 day_or=false UTC (sparse)",
        &cron("0 0 29 2 1", Tz::UTC, false),
        2_000,
    );
    bench(
        "interval 3600 s UTC",
        &Schedule::interval(Duration::from_secs(3600), None, Tz::UTC).expect("interval"),
        500_000,
    );
    let anchor = parse_anchor("2026-01-01T09:00:00", chicago).expect("anchor");
    bench(
        "interval 1 day America/Chicago",
        &Schedule::interval(Duration::from_secs(86_400), Some(anchor), chicago).expect("interval"),
        200_000,
    );
    bench(
        "rrule WEEKLY;BYDAY=MO,WE 09:00 America/Chicago",
        &Schedule::rrule(
            "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
            chicago,
            None,
        )
        .expect("rrule"),
        20_000,
    );
    bench(
        "rrule HOURLY;COUNT=100000 (replays from DTSTART)",
        &Schedule::rrule("FREQ=HOURLY;COUNT=100000", Tz::UTC, None).expect("rrule"),
        200,
    );
}
