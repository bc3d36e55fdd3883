//! What a run row is: its states and triggers, the row to insert ([`NewRun`]), the row
//! read back ([`Run`], [`read_row`] over [`COLUMNS`]) and the filter of a listing. The
//! statements that write and read run rows are in `runs.rs`.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use serde_json::Value as Json;

use super::{parse_time, StoreError};

/// Prefect's run state names, plus sundial's `Skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    Scheduled,
    Pending,
    Running,
    AwaitingRetry,
    Completed,
    Failed,
    TimedOut,
    Crashed,
    Cancelled,
    Skipped,
}

impl RunState {
    pub const ALL: [RunState; 10] = [
        RunState::Scheduled,
        RunState::Pending,
        RunState::Running,
        RunState::AwaitingRetry,
        RunState::Completed,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Crashed,
        RunState::Cancelled,
        RunState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Scheduled => "Scheduled",
            RunState::Pending => "Pending",
            RunState::Running => "Running",
            RunState::AwaitingRetry => "AwaitingRetry",
            RunState::Completed => "Completed",
            RunState::Failed => "Failed",
            RunState::TimedOut => "TimedOut",
            RunState::Crashed => "Crashed",
            RunState::Cancelled => "Cancelled",
            RunState::Skipped => "Skipped",
        }
    }

    /// Parses a state name, ignoring case (`completed`, `Completed`).
    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether nothing more will happen to the row.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Completed
                | RunState::Failed
                | RunState::TimedOut
                | RunState::Crashed
                | RunState::Cancelled
                | RunState::Skipped
        )
    }

    /// Whether an attempt that ended so may get another attempt (retries).
    pub fn may_retry(self) -> bool {
        matches!(
            self,
            RunState::Failed | RunState::TimedOut | RunState::Crashed
        )
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Retry,
    Catchup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::Catchup => "catchup",
        }
    }

    pub const ALL: [Trigger; 4] = [
        Trigger::Schedule,
        Trigger::Manual,
        Trigger::Retry,
        Trigger::Catchup,
    ];

    pub fn parse(text: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Where a schedule's cursor moves when its slots are claimed.
#[derive(Debug, Clone, Copy)]
pub struct SlotCursor<'a> {
    pub deployment: &'a str,
    pub schedule_id: &'a str,
    pub last_slot: DateTime<Utc>,
    pub fingerprint: &'a str,
}

/// A row to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub deployment: String,
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub trigger: Trigger,
    pub state: RunState,
    pub reason: Option<String>,
    pub attempt: u32,
    pub commit: String,
    pub parameters: Json,
    /// Set when the row is written as already `Running` (claimed and started at once).
    pub started_at: Option<DateTime<Utc>>,
    /// For an `AwaitingRetry` row: the earliest time it may start.
    pub not_before: Option<DateTime<Utc>>,
    /// For a retry: the attempt it follows.
    pub retry_of: Option<i64>,
}

/// The reason of a slot skipped, or a waiting run cancelled, while its deployment is
/// paused after failures.
pub const PAUSED_AFTER_FAILURES: &str = "paused after failures";

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub deployment: String,
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub trigger: Trigger,
    pub state: RunState,
    pub reason: Option<String>,
    pub attempt: u32,
    pub commit: String,
    pub parameters: Json,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    pub not_before: Option<DateTime<Utc>>,
    /// An ended attempt whose retry is still to be decided.
    pub retry_pending: bool,
    /// For a retry: the attempt it follows.
    pub retry_of: Option<i64>,
    /// The node that ran it (PostgreSQL clusters; `None` on SQLite and until claimed).
    pub node: Option<String>,
    /// The epoch of the leader that wrote it (PostgreSQL clusters).
    pub epoch: Option<i64>,
}

impl Run {
    /// Who or what made this run, in words: its schedule and slot, a catch-up, a retry of
    /// which attempt, or a manual trigger.
    pub fn cause(&self) -> String {
        let slot = self
            .scheduled_for
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let mut text = String::new();
        write_cause(
            &mut text,
            self.trigger,
            self.schedule_id.as_deref(),
            slot.as_deref(),
            self.attempt,
            self.retry_of,
        );
        text
    }
}

/// Writes [`Run::cause`] of a run with these columns into `out`; `slot` is its
/// `scheduled_for` in whole seconds (RFC 3339, `Z`).
pub(super) fn write_cause(
    out: &mut String,
    trigger: Trigger,
    schedule_id: Option<&str>,
    slot: Option<&str>,
    attempt: u32,
    retry_of: Option<i64>,
) {
    use std::fmt::Write;
    let schedule = schedule_id.unwrap_or("?");
    let at = slot.unwrap_or_default();
    // Writing into a String cannot fail.
    let _ = match trigger {
        Trigger::Schedule => write!(out, "schedule {schedule}, slot {at}"),
        Trigger::Catchup => write!(out, "catch-up of schedule {schedule}'s slot {at}"),
        Trigger::Manual => {
            write!(
                out,
                "a manual trigger (API, CLI or dashboard, with the API token)"
            )
        }
        Trigger::Retry => {
            let _ = write!(out, "retry (attempt {}) of ", attempt);
            let _ = match retry_of {
                Some(id) => write!(out, "run {id}"),
                None => write!(out, "attempt {}", attempt.saturating_sub(1)),
            };
            match slot {
                Some(at) => write!(out, ", slot {at}"),
                None => Ok(()),
            }
        }
    };
}

/// Which runs to list: newest first. Each condition given becomes a `WHERE` term of its
/// own (no `:x IS NULL OR` terms, which keep SQLite from using an index).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub deployment: Option<String>,
    pub state: Option<RunState>,
    pub trigger: Option<Trigger>,
    /// Only runs whose time ([`RUN_TIME`]) is at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only runs whose time is before this.
    pub until: Option<DateTime<Utc>>,
    /// Only runs with a smaller id (pagination).
    pub before: Option<i64>,
    pub limit: usize,
}

/// A run's time for filters and charts: when it started, else when it was due, else when
/// its row was written (a manual run refused before starting). The dashboard indexes
/// (migration 8) are on this exact expression.
pub(super) const RUN_TIME: &str = "COALESCE(started_at, scheduled_for, created_at)";

pub(super) const COLUMNS: &str = "id, deployment, schedule_id, scheduled_for, trigger, state, reason, attempt, commit_sha, parameters, created_at, started_at, ended_at, exit_code, pid, not_before, retry_pending, retry_of, node, epoch";

/// How many columns [`COLUMNS`] selects: the index of a column a query selects after them.
pub(super) const COLUMN_COUNT: usize = 20;

/// What a running attempt reports, for [`Store::record_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The run (id) began at this instant.
    Began(i64, DateTime<Utc>),
    /// The run (id) runs this process now.
    Spawned(i64, u32),
}

pub(super) fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<Run, StoreError>> {
    // The texts that are parsed are borrowed from the row, not copied (a page of runs
    // would allocate each of them).
    let text = |i: usize| text_ref(row, i);
    let scheduled_for = text(3)?;
    let trigger = text_of(row, 4)?;
    let state = text_of(row, 5)?;
    let parameters = text_of(row, 9)?;
    let created_at = text_of(row, 10)?;
    let started_at = text(11)?;
    let ended_at = text(12)?;
    let not_before = text(15)?;
    let retry_pending: bool = row.get(16)?;
    let retry_of: Option<i64> = row.get(17)?;
    let node: Option<String> = row.get(18)?;
    let epoch: Option<i64> = row.get(19)?;
    let (id, deployment, schedule_id, reason, attempt, commit, exit_code, pid) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(13)?,
        row.get(14)?,
    );
    Ok((|| {
        Ok(Run {
            id,
            deployment,
            schedule_id,
            scheduled_for: scheduled_for.map(parse_time).transpose()?,
            trigger: Trigger::parse(trigger)
                .ok_or_else(|| StoreError::Corrupt(format!("trigger {trigger:?}")))?,
            state: RunState::parse(state)
                .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?,
            reason,
            attempt,
            commit,
            parameters: serde_json::from_str(parameters)
                .map_err(|e| StoreError::Corrupt(format!("parameters: {e}")))?,
            created_at: parse_time(created_at)?,
            started_at: started_at.map(parse_time).transpose()?,
            ended_at: ended_at.map(parse_time).transpose()?,
            exit_code,
            pid,
            not_before: not_before.map(parse_time).transpose()?,
            retry_pending,
            retry_of,
            node,
            epoch,
        })
    })())
}

/// Column `i` as text borrowed from the row (`None` for NULL), refused with the error
/// `row.get::<_, Option<String>>(i)` gives.
pub(super) fn text_ref<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    let value = row.get_ref(i)?;
    value
        .as_str_or_null()
        .map_err(|e| refused(row, i, value.data_type(), e))
}

/// Column `i` as text borrowed from the row, refused as `row.get::<_, String>(i)` refuses
/// it (NULL too).
pub(super) fn text_of<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    let value = row.get_ref(i)?;
    value
        .as_str()
        .map_err(|e| refused(row, i, value.data_type(), e))
}

fn refused(
    row: &Row<'_>,
    i: usize,
    found: rusqlite::types::Type,
    e: rusqlite::types::FromSqlError,
) -> rusqlite::Error {
    use rusqlite::types::FromSqlError;
    match e {
        FromSqlError::InvalidType => {
            let name = row.as_ref().column_name(i).unwrap_or_default();
            rusqlite::Error::InvalidColumnType(i, name.into(), found)
        }
        FromSqlError::Utf8Error(e) => rusqlite::Error::Utf8Error(i, e),
        e => rusqlite::Error::FromSqlConversionFailure(i, found, Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    /// A column selected after [`super::COLUMNS`] is read at [`super::COLUMN_COUNT`].
    #[test]
    fn the_column_count_is_the_columns_selected() {
        assert_eq!(super::COLUMNS.split(',').count(), super::COLUMN_COUNT);
    }
}
