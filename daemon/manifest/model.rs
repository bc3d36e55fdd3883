//! The raw serde model of one deployment: whatever the YAML says, typed as loosely as
//! Prefect reads it (every key optional, `null` meaning absent; list items optional too, so
//! a wrong item can be read as absent while its siblings are still checked). It is read only after
//! the JSON Schema has accepted the deployment, so a failure here is a schema gap, not a
//! user error. `validate` turns it into the trusted `validate::Deployment`.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// One entry of `deployments:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawDeployment {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<Json>>,
    pub version: Option<Json>,
    pub entrypoint: Option<String>,
    pub parameters: Option<Map<String, Json>>,
    pub parameter_openapi_schema: Option<Json>,
    pub enforce_parameter_schema: Option<bool>,
    pub work_pool: Option<RawWorkPool>,
    pub schedules: Option<Vec<Option<RawSchedule>>>,
    /// Prefect 2's single schedule; `{}` deserializes to a schedule with no kind (none).
    pub schedule: Option<RawSchedule>,
    pub concurrency_limit: Option<RawConcurrency>,
    pub paused: Option<bool>,
    pub pull: Option<Vec<Option<Map<String, Json>>>>,
    pub timeout_seconds: Option<f64>,
    pub retries: Option<u32>,
    pub retry_delay_seconds: Option<RawRetryDelay>,
    pub catchup: Option<Catchup>,
    pub late_grace_seconds: Option<f64>,
    pub is_schedule_active: Option<bool>,
    pub pause_after_failures: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawWorkPool {
    pub name: Option<String>,
    pub job_variables: Option<RawJobVariables>,
}

/// The job variables sundial honours; other keys belong to other pool types.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawJobVariables {
    pub command: Option<String>,
    pub env: Option<Map<String, Json>>,
    pub working_dir: Option<String>,
    pub stream_output: Option<bool>,
    pub python: Option<String>,
    pub prestart_seconds: Option<f64>,
    pub node_labels: Option<Map<String, Json>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawSchedule {
    pub cron: Option<String>,
    pub interval: Option<RawInterval>,
    pub rrule: Option<String>,
    pub timezone: Option<String>,
    pub day_or: Option<bool>,
    pub active: Option<bool>,
    pub parameters: Option<Map<String, Json>>,
    pub anchor_date: Option<String>,
    pub slug: Option<String>,
}

impl RawSchedule {
    /// Whether it names any kind at all (`schedule: {}` does not).
    pub fn is_empty(&self) -> bool {
        self.cron.is_none() && self.interval.is_none() && self.rrule.is_none()
    }
}

/// `interval:` as seconds (int or float) or as text (`PT10M`, `01:00:00`, `"3600"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawInterval {
    Seconds(f64),
    Text(String),
}

impl RawInterval {
    pub fn as_text(&self) -> String {
        match self {
            RawInterval::Seconds(s) => s.to_string(),
            RawInterval::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawConcurrency {
    Limit(u32),
    Full {
        limit: u32,
        #[serde(default)]
        collision_strategy: Option<CollisionStrategy>,
    },
}

/// What happens to a run that would exceed the concurrency limit (Prefect's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CollisionStrategy {
    /// Wait, first in first out by scheduled time.
    #[default]
    Enqueue,
    /// Record the new run `Cancelled` with reason `overlap`.
    CancelNew,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawRetryDelay {
    One(f64),
    PerAttempt(Vec<Option<f64>>),
}

/// What to do with slots missed while the daemon was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// Record them Skipped/`missed` (the most recent still runs within `late_grace_seconds`).
    #[default]
    None,
    /// Run the most recent one, whatever its age.
    Latest,
    /// Run each, oldest first (capped).
    All,
}
