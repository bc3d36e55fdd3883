//! What the engine publishes for the HTTP API and the logs: readiness, the applied
//! commit and its findings, and the deployments in force with their next fire times.
//! Published through a `tokio::sync::watch` channel: the API reads the latest value and
//! never reaches into the engine's state.

use chrono::{DateTime, Utc};

use crate::store::FileError;

#[derive(Debug, Clone, Default)]
pub struct Status {
    /// True once the first sync was applied.
    pub ready: bool,
    /// The newest commit seen and applied.
    pub commit: Option<String>,
    pub synced_at: Option<DateTime<Utc>>,
    /// Validation errors of that commit, plus a source error (repo missing, no branch, ...).
    pub errors: Vec<FileError>,
    pub warnings: Vec<FileError>,
    pub deployments: Vec<DeploymentView>,
    /// Why the state database cannot be written now (a full disk), if so.
    pub store_error: Option<String>,
    /// The wall clock was stepped back: what it means, and when schedules resume.
    pub clock_warning: Option<(String, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
pub struct DeploymentView {
    pub name: String,
    pub file: String,
    /// The commit its runs execute.
    pub commit: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub paused: bool,
    /// True when its file fails at the newest commit and this is the last good version.
    pub held_back: bool,
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Clone)]
pub struct ScheduleView {
    pub id: String,
    pub description: String,
    pub timezone: String,
    pub active: bool,
    pub next: Option<DateTime<Utc>>,
}

impl Status {
    /// The deployment firing next, for logs and the systemd status line.
    pub fn next_fire(&self) -> Option<(&str, DateTime<Utc>)> {
        self.deployments
            .iter()
            .flat_map(|d| {
                d.schedules
                    .iter()
                    .filter_map(move |s| s.next.map(|n| (d.name.as_str(), n)))
            })
            .min_by_key(|(_, n)| *n)
    }
}
