//! The trusted view of what is committed: only `validate` builds these, and `reconcile`,
//! `scheduler` and `runner` accept nothing else. Every value here has passed its checks,
//! so downstream code never re-validates (ripgrep's low-args → high-args split).

use std::time::Duration;

use serde_json::{Map, Value as Json};

pub use crate::manifest::model::{Catchup, CollisionStrategy};
use crate::schedule::Schedule;

/// Every valid deployment of a commit (or of the files given to `sundial validate`).
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    pub deployments: Vec<Deployment>,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    /// The manifest file it came from, relative to the repository root.
    pub file: String,
    /// The directory `prefect deploy` would run in, relative to the repository root
    /// ("" for the root itself).
    pub project_root: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub version: Option<String>,
    pub launch: Launch,
    /// Default parameters (a JSON object).
    pub parameters: Map<String, Json>,
    /// Checked against every merged parameter set when present (enforcement on). Boxed:
    /// most deployments have none, and each of 10,000 would keep 72 bytes for it.
    pub parameter_schema: Option<Box<Json>>,
    pub pull: Vec<PullStep>,
    /// Directory the process starts in, relative to the repository root.
    pub working_dir: String,
    /// Whether `validate::locate` found that directory from the repository root rather
    /// than from the manifest's folder (the run's log says so).
    pub working_dir_from_root: bool,
    pub env: Vec<(String, String)>,
    pub stream_output: bool,
    pub python: Option<String>,
    /// `job_variables.prestart_seconds`: a Python entrypoint's interpreter is started and
    /// its module imported this long before the slot, and the function called on the dot.
    /// Kept only where it applies (an entrypoint, no `command`, no pull steps).
    pub prestart: Option<Duration>,
    /// `job_variables.node_labels`: in a cluster, only nodes carrying every one of these
    /// labels run it (`crate::cluster::labels`). Sorted by key.
    pub node_labels: Vec<(String, String)>,
    pub schedules: Vec<PlannedSchedule>,
    pub paused: bool,
    pub concurrency: Option<Concurrency>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// Delay before attempt i+1 is `retry_delays[min(i, len-1)]`; never empty.
    pub retry_delays: Vec<Duration>,
    pub catchup: Catchup,
    pub late_grace: Duration,
    /// Who is told about its runs (its own list, else its file's default).
    pub notifications: Vec<crate::notify::Notification>,
    /// Neither it nor its file lists notifications: the repository's default (the root
    /// `prefect.yaml`'s top-level list) applies.
    pub notifications_unset: bool,
    /// Slots in a row whose last attempt failed before the schedules pause at run time.
    pub pause_after_failures: Option<u32>,
    /// Its service level agreements (`sla:`), the enabled ones.
    pub slas: Vec<crate::sla::Sla>,
}

/// How the process is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `job_variables.command`, already split into argv (no shell).
    Command(Vec<String>),
    /// `path/file.py:func`, `package.module:func`, an executable path or `module.function`.
    Entrypoint(String),
}

/// A pull step sundial performs before each attempt (ignored steps are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullStep {
    /// `pip_install_requirements`: the requirements file, relative to the repository root
    /// (found by `validate::locate`: from the step's directory, else the repository root).
    PipInstall {
        requirements: String,
        directory: String,
    },
    /// `run_shell_script`: each line already split into argv.
    Script {
        lines: Vec<Vec<String>>,
        directory: String,
        env: Vec<(String, String)>,
    },
}

/// One schedule of a deployment, with the identity its slots are keyed by.
#[derive(Debug, Clone)]
pub struct PlannedSchedule {
    /// `slug`, else a stable hash of what the schedule means (never its list position).
    pub id: String,
    /// A digest of the timing (kind, expression, zone, day_or, anchor): the cursor
    /// remembers it, and a schedule whose timing changed is planned anew from now.
    /// Shared with the engine's record of what each schedule was planned for.
    pub fingerprint: std::sync::Arc<str>,
    /// What it says, for people: `cron 0 9 * * * (America/Chicago)`.
    pub description: String,
    pub schedule: Schedule,
    /// An interval without `anchor_date`: the daemon anchors it at the time of the commit
    /// that introduced it (found in git by the syncer, then kept with its cursor).
    pub anchored_at_commit: bool,
    /// That time, once the syncer found it in the branch's history; `schedule` is then
    /// anchored there.
    pub introduced_at: Option<chrono::DateTime<chrono::Utc>>,
    pub active: bool,
    /// This schedule's parameter overrides, if it has any (boxed: most have none).
    pub parameters: Option<Box<Map<String, Json>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub limit: u32,
    pub strategy: CollisionStrategy,
}
