//! `sla:` on a deployment, as Prefect writes it (Prefect honours it only in its Cloud):
//! a list of SLAs, each with a `name`, a `severity` and one promise: `duration` (time to
//! completion, seconds), `within` (lateness) or `stale_after` (frequency), plus sundial's
//! `min_duration`. Times are seconds or text (`PT10M`, `01:00:00`), as Prefect's
//! timedelta fields take them. A freshness SLA (`resource_match`, `expected_event`)
//! watches Prefect's events, which sundial has not: it is a warning and ignored, as is an
//! SLA with `enabled: false`.

use std::time::Duration;

use crate::manifest::{pointer, Node, Value};
use crate::schedule::parse_interval;
use crate::sla::{Kind, Sla};

use super::diagnostic::Code;
use super::report::FileReport;

const SEVERITIES: [&str; 5] = ["minor", "low", "moderate", "high", "critical"];
const PROMISES: [&str; 4] = ["duration", "within", "stale_after", "min_duration"];

pub fn check(report: &mut FileReport<'_>, list: &Node, at: &str) -> Vec<Sla> {
    let mut out: Vec<Sla> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, entry) in list.items().iter().enumerate() {
        let here = pointer(at, i);
        if !matches!(entry.value, Value::Map(_)) {
            continue; // the schema reported it
        }
        let Some(name) = string(entry, "name").filter(|n| !n.trim().is_empty()) else {
            report.error(
                &here,
                false,
                Code::Sla,
                "an SLA needs a `name`",
                Some("add `name: my-sla` (unique in the deployment)".into()),
            );
            continue;
        };
        if !names.insert(name.clone()) {
            report.error(
                &pointer(&here, "name"),
                false,
                Code::Sla,
                format!("two SLAs are named `{name}`"),
                Some("names are unique per deployment, as in Prefect".into()),
            );
            continue;
        }
        if entry.get("resource_match").is_some() || entry.get("expected_event").is_some() {
            report.warning(&here, false, Code::Sla, format!("SLA `{name}` is a freshness SLA, which watches Prefect's events; sundial has none, so it is ignored"), Some("use `stale_after` for \"no successful run for a while\"".into()));
            continue;
        }
        let severity = string(entry, "severity").unwrap_or_else(|| "moderate".into());
        if !SEVERITIES.contains(&severity.as_str()) {
            continue; // the schema reported it
        }
        let promised: Vec<&str> = entry
            .entries()
            .iter()
            .map(|e| e.key.as_str())
            .filter(|k| PROMISES.contains(k))
            .collect();
        let key = match promised.as_slice() {
            [one] => *one,
            [] => {
                report.error(&here, false, Code::Sla, format!("SLA `{name}` promises nothing"), Some("give one of `duration` (seconds to completion), `within` (lateness), `stale_after` (time without a successful run) or `min_duration`".into()));
                continue;
            }
            [_, second, ..] => {
                report.error(
                    &pointer(&here, second),
                    true,
                    Code::Sla,
                    format!(
                        "SLA `{name}` has both `{}`: one SLA makes one promise",
                        promised.join("` and `")
                    ),
                    Some("make each promise its own SLA with its own name".into()),
                );
                continue;
            }
        };
        let key_at = pointer(&here, key);
        let Some(limit) = seconds(entry.get(key)) else {
            report.error(
                &key_at,
                false,
                Code::Sla,
                format!("`{key}` is a duration: seconds or text like `PT10M` or `01:00:00`"),
                None,
            );
            continue;
        };
        if limit.is_zero() {
            report.error(
                &key_at,
                false,
                Code::Sla,
                format!("`{key}` must be more than 0"),
                None,
            );
            continue;
        }
        if entry
            .get("enabled")
            .is_some_and(|e| matches!(&e.value, Value::Bool(b) if !b.value))
        {
            continue; // `enabled: false`: kept in git, not watched
        }
        let kind = match key {
            "duration" => Kind::TimeToCompletion(limit),
            "within" => Kind::Lateness(limit),
            "stale_after" => Kind::Frequency(limit),
            _ => Kind::MinDuration(limit),
        };
        out.push(Sla {
            name,
            severity,
            kind,
        });
    }
    out
}

/// Seconds (a number) or a duration text, as Prefect's timedelta fields read them.
fn seconds(node: Option<&Node>) -> Option<Duration> {
    match &node?.value {
        Value::Int(i) if *i >= 0 => Some(Duration::from_secs(*i as u64)),
        Value::Float(f) if f.is_finite() && *f >= 0.0 => Duration::try_from_secs_f64(*f).ok(),
        Value::Str { text, .. } => parse_interval(text).ok(),
        _ => None,
    }
}

/// A string value (not a number or boolean read as text: the schema said so already).
fn string(node: &Node, key: &str) -> Option<String> {
    match &node.get(key)?.value {
        Value::Str { text, .. } => Some(text.clone()),
        _ => None,
    }
}
