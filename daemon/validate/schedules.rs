//! A deployment's schedules: which entries it has (`schedules`, or the legacy `schedule`),
//! and each one checked and planned, with the identity its slots are keyed by (its slug, else
//! a digest of its timing and parameters) and the fingerprint of its timing.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::manifest::model::{RawDeployment, RawSchedule};
use crate::manifest::pointer;
use crate::schedule::{self, Schedule, Tz};

use super::desired::PlannedSchedule;
use super::diagnostic::Code;
use super::memo::Recurrences;
use super::report::FileReport;

/// The deployment's schedules with their pointers: `schedules`, or the legacy `schedule`.
pub fn of(
    report: &mut FileReport<'_>,
    at: &str,
    raw: &RawDeployment,
) -> Vec<(String, RawSchedule)> {
    let list: Vec<(String, RawSchedule)> = raw
        .schedules
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| s.clone().map(|s| (format!("{at}/schedules/{i}"), s)))
        .collect();
    let legacy = raw.schedule.clone().filter(|s| !s.is_empty());
    match legacy {
        Some(_) if raw.schedules.as_ref().is_some_and(|s| !s.is_empty()) => {
            report.error(
                &pointer(at, "schedule"),
                true,
                Code::ScheduleConflict,
                "both `schedule` and `schedules` are given",
                Some("move the single `schedule` into the `schedules` list".into()),
            );
            list
        }
        Some(single) => vec![(pointer(at, "schedule"), single)],
        None => list,
    }
}

pub fn planned(
    report: &mut FileReport<'_>,
    recurrences: &Recurrences,
    at: &str,
    raw: &RawSchedule,
) -> Option<PlannedSchedule> {
    // A bad zone or anchor is reported and the expression still checked (in UTC), so a
    // schedule with several mistakes shows them all.
    let mut broken = false;
    let tz = match raw.timezone.as_deref() {
        None => Tz::UTC,
        Some(name) => match schedule::parse_timezone(name) {
            Ok(tz) => tz,
            Err(e) => {
                report.error(
                    &pointer(at, "timezone"),
                    false,
                    Code::InvalidTimezone,
                    e.to_string(),
                    Some("use an IANA name such as `America/Chicago` or `UTC`".into()),
                );
                broken = true;
                Tz::UTC
            }
        },
    };
    let anchor = match raw.anchor_date.as_deref() {
        None => None,
        Some(text) => match schedule::parse_anchor(text, tz) {
            Ok(anchor) => {
                let naive = chrono::DateTime::parse_from_rfc3339(text.trim()).is_err();
                if naive && tz != Tz::UTC && anchor.instant.naive_utc() != anchor.wall {
                    report.warning(
                        &pointer(at, "anchor_date"),
                        false,
                        Code::PrefectDifference,
                        format!("sundial reads this naive anchor_date as a wall time in {tz}; Prefect reads it as UTC"),
                        Some("add an offset (`2026-01-01T09:00:00-06:00`) to mean one instant in both".into()),
                    );
                }
                Some(anchor)
            }
            Err(e) => {
                report.error(&pointer(at, "anchor_date"), false, Code::InvalidAnchor, e.to_string(), Some("write `2026-01-01T09:00:00` (a wall time in `timezone`) or an RFC 3339 instant".into()));
                broken = true;
                None
            }
        },
    };
    let day_or = raw.day_or.unwrap_or(true);
    let (kind, expression, built) = if let Some(expr) = &raw.cron {
        (
            "cron",
            expr.clone(),
            Schedule::cron(expr, tz, day_or).map_err(|e| {
                let code = match e {
                    schedule::ScheduleError::NeverFires { .. } => Code::NeverFires,
                    _ => Code::InvalidCron,
                };
                (code, "cron", e.to_string())
            }),
        )
    } else if let Some(interval) = &raw.interval {
        let text = interval.as_text();
        let built = schedule::parse_interval(&text)
            .map_err(|e| (Code::InvalidInterval, "interval", e.to_string()))
            .inspect(|every| {
                if anchor.is_none() && !broken && schedule::anchor_shifts_fires(*every) {
                    report.warning(
                        &pointer(at, "interval"),
                        false,
                        Code::PrefectDifference,
                        "without `anchor_date`, sundial anchors this interval at the time of the commit that introduces it (Prefect anchors it when `prefect deploy` runs), so the time of day it fires depends on that commit",
                        Some("write `anchor_date` (e.g. `2026-01-01T09:00:00`) to pin when it fires".into()),
                    );
                }
            })
            .and_then(|every| {
                Schedule::interval(every, anchor, tz)
                    .map_err(|e| (Code::InvalidInterval, "interval", e.to_string()))
            });
        ("interval", text, built)
    } else if let Some(rule) = &raw.rrule {
        (
            "rrule",
            rule.clone(),
            recurrences
                .schedule(rule, tz, anchor)
                .map_err(|e| (Code::InvalidRrule, "rrule", e.to_string())),
        )
    } else {
        return None;
    };
    let schedule = match built {
        Ok(schedule) if !broken => schedule,
        Ok(_) => return None,
        Err((code, field, message)) => {
            report.error(&pointer(at, field), false, code, message, None);
            return None;
        }
    };
    // The timing alone: what the cursor was planned for. A schedule whose timing changes
    // under the same identity (a slug) is planned anew from the commit that changed it.
    let timing = format!(
        "{kind}\0{expression}\0{tz}\0{day_or}\0{}",
        raw.anchor_date.as_deref().unwrap_or_default()
    );
    let fingerprint = short_digest(&timing).into();
    let id = match raw.slug.as_deref().map(str::trim) {
        Some(slug) if !slug.is_empty() => slug.to_string(),
        _ => {
            // Parameters tell apart schedules of one timing (`region: eu` and `region: us`);
            // `active` does not, so pausing a schedule keeps its identity and cursor.
            let parameters = canonical(&Json::Object(raw.parameters.clone().unwrap_or_default()));
            format!(
                "{kind}-{}",
                short_digest(&format!("{timing}\0{parameters}"))
            )
        }
    };
    Some(PlannedSchedule {
        id,
        fingerprint,
        description: format!("{kind} {expression} ({tz})"),
        anchored_at_commit: kind == "interval" && raw.anchor_date.is_none(),
        introduced_at: None,
        schedule,
        active: raw.active.unwrap_or(true),
        parameters: raw
            .parameters
            .clone()
            .filter(|p| !p.is_empty())
            .map(Box::new),
    })
}

/// JSON text with object keys sorted, so that key order does not change an identity.
fn canonical(value: &Json) -> String {
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Json::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The first 6 bytes of a SHA-256, in hex: a stable, short identity.
fn short_digest(text: &str) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(12);
    for b in &digest[..6] {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}
