//! Service level agreements, from prefect.yaml's own `sla:` key (which Prefect honours
//! only in its Cloud): what each kind promises and when it is breached.
//!
//! Kinds, as Prefect writes them: `duration` (time to completion: a run still going
//! after this long; it goes on until its timeout), `within` (lateness: a slot not started
//! this long after its time), `stale_after` (frequency: no successful run for this long),
//! and sundial's `min_duration` (a run that completed suspiciously fast).
//!
//! Contract: pure. Each check takes the facts and `now` and says whether the promise is
//! broken and for which *subject* (a run, a slot, a stretch without success), so a breach
//! is recorded once per subject however often it is checked.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// One SLA of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sla {
    pub name: String,
    /// Prefect's severities: minor, low, moderate (default), high, critical.
    pub severity: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `duration`: a run has gone on longer than this.
    TimeToCompletion(Duration),
    /// `within`: a slot has not started this long after its time.
    Lateness(Duration),
    /// `stale_after`: no successful run for this long.
    Frequency(Duration),
    /// `min_duration`: a run completed in less than this.
    MinDuration(Duration),
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TimeToCompletion(_) => "time_to_completion",
            Kind::Lateness(_) => "lateness",
            Kind::Frequency(_) => "frequency",
            Kind::MinDuration(_) => "min_duration",
        }
    }
}

/// A broken promise: which SLA, about what, and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub sla: String,
    pub kind: &'static str,
    pub severity: String,
    /// What it is about, unique per SLA: `run:12`, `slot:<schedule>:<time>`,
    /// `stale:<since>`.
    pub subject: String,
    pub run_id: Option<i64>,
    pub detail: String,
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 && s % 3600.0 == 0.0 {
        format!("{} h", s / 3600.0)
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{} min", s / 60.0)
    } else {
        format!("{s} s")
    }
}

fn breach(sla: &Sla, subject: String, run_id: Option<i64>, detail: String) -> Breach {
    Breach {
        sla: sla.name.clone(),
        kind: sla.kind.as_str(),
        severity: sla.severity.clone(),
        subject,
        run_id,
        detail,
    }
}

/// A run still going at `now`, started at `started`.
pub fn running_too_long(
    sla: &Sla,
    run_id: i64,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Breach> {
    let Kind::TimeToCompletion(limit) = sla.kind else {
        return None;
    };
    let ran = (now - started).to_std().ok()?;
    (ran >= limit).then(|| {
        breach(
            sla,
            format!("run:{run_id}"),
            Some(run_id),
            format!(
                "run {run_id} has been running for longer than {} (since {})",
                secs(limit),
                started.to_rfc3339()
            ),
        )
    })
}

/// A slot due at `slot` that started at `started` (or has not started by `now`).
pub fn started_late(
    sla: &Sla,
    slot: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    run_id: Option<i64>,
    now: DateTime<Utc>,
) -> Option<Breach> {
    let Kind::Lateness(within) = sla.kind else {
        return None;
    };
    let deadline = slot + chrono::Duration::from_std(within).ok()?;
    let detail = match started {
        Some(at) if at > deadline => format!(
            "the slot of {} started {:.3} s after its time, later than {}",
            slot.to_rfc3339(),
            (at - slot).num_milliseconds() as f64 / 1000.0,
            secs(within)
        ),
        None if now > deadline => format!(
            "the slot of {} had not started {} after its time",
            slot.to_rfc3339(),
            secs(within)
        ),
        _ => return None,
    };
    Some(breach(sla, slot_subject(slot), run_id, detail))
}

/// A slot that will never start (missed, or refused by the concurrency limit).
pub fn never_started(sla: &Sla, slot: DateTime<Utc>, run_id: i64, why: &str) -> Option<Breach> {
    let Kind::Lateness(within) = sla.kind else {
        return None;
    };
    Some(breach(
        sla,
        slot_subject(slot),
        Some(run_id),
        format!(
            "the slot of {} never started ({why}), so not within {}",
            slot.to_rfc3339(),
            secs(within)
        ),
    ))
}

fn slot_subject(slot: DateTime<Utc>) -> String {
    format!("slot:{}", slot.to_rfc3339())
}

/// No success since `since` (the last success, or when the deployment was first watched).
pub fn stale(
    sla: &Sla,
    since: DateTime<Utc>,
    had_success: bool,
    now: DateTime<Utc>,
) -> Option<Breach> {
    let Kind::Frequency(limit) = sla.kind else {
        return None;
    };
    let quiet = (now - since).to_std().ok()?;
    (quiet >= limit).then(|| {
        let what = if had_success {
            format!(
                "no run has completed since {} ({} ago)",
                since.to_rfc3339(),
                secs(limit)
            )
        } else {
            format!(
                "no run has completed in the {} since it was deployed",
                secs(limit)
            )
        };
        breach(
            sla,
            format!("stale:{}", since.to_rfc3339()),
            None,
            format!("{what}, more than `stale_after`"),
        )
    })
}

/// A run that completed after `took`.
pub fn too_fast(sla: &Sla, run_id: i64, took: Duration) -> Option<Breach> {
    let Kind::MinDuration(min) = sla.kind else {
        return None;
    };
    (took < min).then(|| {
        breach(
            sla,
            format!("run:{run_id}"),
            Some(run_id),
            format!(
                "run {run_id} completed in {:.3} s, less than {}: did it do its work?",
                took.as_secs_f64(),
                secs(min)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn sla(kind: Kind) -> Sla {
        Sla {
            name: "s".into(),
            severity: "high".into(),
            kind,
        }
    }

    #[test]
    fn a_run_past_its_duration_is_breached_once_per_run() {
        let s = sla(Kind::TimeToCompletion(Duration::from_secs(60)));
        let start = at("2026-03-01T09:00:00Z");
        assert_eq!(
            running_too_long(&s, 7, start, at("2026-03-01T09:00:59Z")),
            None
        );
        let b = running_too_long(&s, 7, start, at("2026-03-01T09:01:00Z")).unwrap();
        assert_eq!(
            (b.subject.as_str(), b.run_id, b.kind),
            ("run:7", Some(7), "time_to_completion")
        );
        assert!(b.detail.contains("longer than 1 min"), "{}", b.detail);
    }

    #[test]
    fn a_slot_is_late_when_it_starts_or_has_not_started_past_within() {
        let s = sla(Kind::Lateness(Duration::from_secs(10)));
        let slot = at("2026-03-01T09:00:00Z");
        let on_time = Some(at("2026-03-01T09:00:09Z"));
        assert_eq!(
            started_late(&s, slot, on_time, Some(1), at("2026-03-01T10:00:00Z")),
            None
        );
        let late = started_late(&s, slot, Some(at("2026-03-01T09:00:11Z")), Some(1), slot).unwrap();
        assert!(
            late.detail.contains("started 11.000 s after"),
            "{}",
            late.detail
        );
        assert_eq!(
            started_late(&s, slot, None, None, at("2026-03-01T09:00:10Z")),
            None
        );
        let waiting = started_late(&s, slot, None, None, at("2026-03-01T09:00:11Z")).unwrap();
        assert_eq!(
            waiting.subject, late.subject,
            "one breach per slot, however it is seen"
        );
    }

    #[test]
    fn no_success_for_stale_after_is_breached_once_per_quiet_stretch() {
        let s = sla(Kind::Frequency(Duration::from_secs(3600)));
        let since = at("2026-03-01T09:00:00Z");
        assert_eq!(stale(&s, since, true, at("2026-03-01T09:59:59Z")), None);
        let b = stale(&s, since, true, at("2026-03-01T10:00:00Z")).unwrap();
        assert_eq!(b.subject, "stale:2026-03-01T09:00:00+00:00");
        let later = stale(&s, since, true, at("2026-03-01T12:00:00Z")).unwrap();
        assert_eq!(later.subject, b.subject);
    }

    #[test]
    fn a_run_faster_than_min_duration_is_breached() {
        let s = sla(Kind::MinDuration(Duration::from_secs(5)));
        assert_eq!(too_fast(&s, 3, Duration::from_secs(5)), None);
        let b = too_fast(&s, 3, Duration::from_millis(20)).unwrap();
        assert!(
            b.detail.contains("completed in 0.020 s, less than 5 s"),
            "{}",
            b.detail
        );
    }

    #[test]
    fn other_kinds_say_nothing() {
        let s = sla(Kind::MinDuration(Duration::from_secs(5)));
        let t = at("2026-03-01T09:00:00Z");
        assert_eq!(
            running_too_long(&s, 1, t, t + chrono::Duration::days(1)),
            None
        );
        assert_eq!(
            started_late(&s, t, None, None, t + chrono::Duration::days(1)),
            None
        );
        assert_eq!(stale(&s, t, false, t + chrono::Duration::days(1)), None);
    }
}
