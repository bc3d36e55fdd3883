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
    pub run_id: i64,
    /// The slot the run is for (absent for manual runs).
    pub slot: Option<String>,
    pub state: String,
    pub attempt: u32,
    pub trigger: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub commit: String,
    /// The last lines of the run's log (at most [`LOG_TAIL_BYTES`]).
    pub log_tail: String,
    /// The run's page on the dashboard.
    pub url: String,
    /// A one-line summary for chat tools.
    pub text: String,
    /// For `paused`: why, and how to resume.
    #[serde(default)]
    pub note: Option<String>,
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
            run_id: run.id,
            slot: stamp(run.scheduled_for),
            state: run.state.as_str().to_string(),
            attempt: run.attempt,
            trigger: run.trigger.as_str().to_string(),
            started_at: stamp(run.started_at),
            ended_at: stamp(run.ended_at),
            duration_seconds: duration,
            exit_code: run.exit_code,
            reason: run.reason.clone(),
            commit: run.commit.clone(),
            log_tail: log_tail(links.log),
            text: summary(event, run, duration, &url),
            url,
            note: None,
        }
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
