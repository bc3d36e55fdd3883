//! The payload every target receives: what happened, to which run, with the end of its
//! log and a link to it. Its fields are documented in `docs/notifications.md`; `text` is a
//! one-line summary that Slack (and Slack-compatible webhooks) show as the message.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::store::Run;

use super::Event;

/// The most of a run's log a payload carries (its end).
pub const LOG_TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub event: Event,
    pub deployment: String,
    /// The run it is about (null for an SLA breach about no run in particular).
    pub run_id: Option<i64>,
    /// The slot the run is for (absent for manual runs).
    pub slot: Option<String>,
    pub state: Option<String>,
    pub attempt: Option<u32>,
    pub trigger: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub commit: Option<String>,
    /// The last lines of the run's log (at most [`LOG_TAIL_BYTES`]).
    pub log_tail: String,
    /// The run's page on the dashboard.
    pub url: String,
    /// A one-line summary for chat tools.
    pub text: String,
    /// For `paused`: why, and how to resume.
    #[serde(default)]
    pub note: Option<String>,
    /// For `sla`: the breached SLA.
    #[serde(default)]
    pub sla: Option<SlaBreach>,
}

/// The SLA a `sla` notification is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaBreach {
    pub name: String,
    /// `time_to_completion`, `lateness`, `frequency` or `min_duration`.
    pub kind: String,
    pub severity: String,
    pub detail: String,
}

/// Where a run's page is, and where its log is.
pub struct RunLinks<'a> {
    /// The dashboard's base URL, without a trailing slash.
    pub base_url: &'a str,
    /// The run's log file.
    pub log: &'a std::path::Path,
}

impl Payload {
    pub fn new(event: Event, run: &Run, links: &RunLinks<'_>) -> Payload {
        let stamp =
            |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        let duration = match (run.started_at, run.ended_at) {
            (Some(start), Some(end)) => Some((end - start).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        let url = format!("{}/runs/{}", links.base_url, run.id);
        Payload {
            event,
            deployment: run.deployment.clone(),
            run_id: Some(run.id),
            slot: stamp(run.scheduled_for),
            state: Some(run.state.as_str().to_string()),
            attempt: Some(run.attempt),
            trigger: Some(run.trigger.as_str().to_string()),
            started_at: stamp(run.started_at),
            ended_at: stamp(run.ended_at),
            duration_seconds: duration,
            exit_code: run.exit_code,
            reason: run.reason.clone(),
            commit: Some(run.commit.clone()),
            log_tail: log_tail(links.log),
            text: summary(event, run, duration, &url),
            url,
            note: None,
            sla: None,
        }
    }

    /// An SLA breach of `deployment`, about `run` when there is one.
    pub fn breach(
        deployment: &str,
        breach: &crate::sla::Breach,
        run: Option<&Run>,
        links: &RunLinks<'_>,
    ) -> Payload {
        let mut payload = match run {
            Some(run) => Payload::new(Event::Sla, run, links),
            None => Payload {
                event: Event::Sla,
                deployment: deployment.to_string(),
                run_id: None,
                slot: None,
                state: None,
                attempt: None,
                trigger: None,
                started_at: None,
                ended_at: None,
                duration_seconds: None,
                exit_code: None,
                reason: None,
                commit: None,
                log_tail: String::new(),
                url: links.base_url.to_string(),
                text: String::new(),
                note: None,
                sla: None,
            },
        };
        payload.text = format!(
            "sundial: {deployment} breached SLA `{}` ({}): {}: {}",
            breach.sla, breach.severity, breach.detail, payload.url
        );
        payload.sla = Some(SlaBreach {
            name: breach.sla.clone(),
            kind: breach.kind.to_string(),
            severity: breach.severity.clone(),
            detail: breach.detail.clone(),
        });
        payload
    }
}

/// `sundial: etl run 12 failed (exit code 1) after 3 attempts: <url>`.
fn summary(event: Event, run: &Run, duration: Option<f64>, url: &str) -> String {
    let name = &run.deployment;
    let id = run.id;
    let how = match (&run.reason, run.exit_code) {
        (Some(reason), _) => format!(" ({reason})"),
        (None, Some(code)) if code != 0 => format!(" (exit code {code})"),
        _ => String::new(),
    };
    let took = duration
        .map(|d| format!(" in {d:.1} s"))
        .unwrap_or_default();
    let attempts = if run.attempt > 1 {
        format!(" after {} attempts", run.attempt)
    } else {
        String::new()
    };
    let what = match event {
        Event::Start => format!("{name} run {id} started"),
        Event::Success => format!("{name} run {id} completed{took}"),
        Event::Recovery => format!("{name} recovered: run {id} completed{took}"),
        Event::Failure => format!(
            "{name} run {id} {}{how}{attempts}",
            run.state.as_str().to_lowercase()
        ),
        Event::Sla => format!("{name} breached an SLA (run {id})"),
        Event::Late => format!(
            "{name} run {id} started {:.1} s after its slot",
            match (run.started_at, run.scheduled_for) {
                (Some(start), Some(slot)) => (start - slot).num_milliseconds() as f64 / 1000.0,
                _ => 0.0,
            }
        ),
        Event::Paused => {
            format!("{name} paused after failing slots in a row (last: run {id}{how})")
        }
        Event::Skipped => format!(
            "{name} slot {} did not run{how}",
            run.scheduled_for
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default()
        ),
    };
    format!("sundial: {what}: {url}")
}

/// The end of a log file, cut at a line start when it can be, as text.
fn log_tail(path: &std::path::Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(LOG_TAIL_BYTES as u64);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err()
        || file
            .take(LOG_TAIL_BYTES as u64)
            .read_to_end(&mut bytes)
            .is_err()
    {
        return String::new();
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if from > 0 {
        if let Some(newline) = text.find('\n') {
            text.drain(..=newline);
        }
    }
    text
}
