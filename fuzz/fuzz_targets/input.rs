//! The text form of a schedule fuzz input, so seeds stay readable: a zone line, an
//! instant line (Unix seconds), an option line, then the text under test (which may hold
//! newlines, as an rrule with DTSTART does). Missing or unreadable header lines fall back
//! to UTC and 2026-03-07T12:00:00Z.

use chrono::{DateTime, Utc};
use sundial::schedule::{parse_timezone, Tz};

pub struct Input<'a> {
    pub zone: Tz,
    pub after: DateTime<Utc>,
    pub option: &'a str,
    pub text: &'a str,
}

/// 1900-01-01 and 2200-01-01: what a schedule may reasonably be asked about.
const EARLIEST: i64 = -2_208_988_800;
const LATEST: i64 = 7_258_118_400;

pub fn parse(data: &[u8]) -> Option<Input<'_>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.splitn(4, '\n');
    let zone = parts.next().unwrap_or_default().trim();
    let after = parts.next().unwrap_or_default().trim();
    let option = parts.next().unwrap_or_default().trim();
    let text = parts.next().unwrap_or_default();
    let zone = if zone.is_empty() {
        Tz::UTC
    } else {
        parse_timezone(zone).unwrap_or(Tz::UTC)
    };
    let after = after
        .parse::<i64>()
        .ok()
        .map(|secs| secs.clamp(EARLIEST, LATEST))
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(|| DateTime::from_timestamp(1_772_884_800, 0).expect("in range"));
    Some(Input {
        zone,
        after,
        option,
        text,
    })
}

/// Fires strictly increase and come strictly after `after`.
#[track_caller]
pub fn check_increasing(
    what: &str,
    after: DateTime<Utc>,
    fires: impl Iterator<Item = DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let mut previous = after;
    let mut seen = Vec::new();
    for at in fires {
        assert!(at > previous, "{what}: fire {at} is not after {previous}");
        previous = at;
        seen.push(at);
    }
    seen
}
