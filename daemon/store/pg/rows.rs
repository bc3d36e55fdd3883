//! Values to and from PostgreSQL rows: statement arguments owned for the connection's
//! thread, the text-length limit, and run rows read back as [`Run`]s.

use postgres::types::ToSql;
use postgres::Row;

use super::super::run::{Run, RunState, Trigger};
use super::super::{parse_time, StoreError};

/// A statement argument, owned so that it can go to the connection's thread.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

/// The arguments as the client takes them.
pub(super) fn params(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| match a {
            Arg::Text(v) => v as &(dyn ToSql + Sync),
            Arg::Int(v) => v as &(dyn ToSql + Sync),
        })
        .collect()
}

/// Refuses a text value longer than `limit` (`$SUNDIAL_STORE_MAX_VALUE`), as SQLite's
/// length limit does (a row error).
pub(super) fn fit(limit: Option<usize>, text: &str) -> Result<(), StoreError> {
    match limit {
        Some(limit) if text.len() > limit => Err(StoreError::TooBig {
            bytes: text.len(),
            limit,
        }),
        _ => Ok(()),
    }
}

/// A run row read with [`super::run::COLUMNS`].
pub(super) fn read_run(row: &Row) -> Result<Run, StoreError> {
    let time = |i: usize| -> Result<_, StoreError> {
        row.try_get::<_, Option<&str>>(i)?
            .map(parse_time)
            .transpose()
    };
    let int = |i: usize| -> Result<Option<i64>, StoreError> { Ok(row.try_get(i)?) };
    let trigger: &str = row.try_get(4)?;
    let state: &str = row.try_get(5)?;
    let parameters: &str = row.try_get(9)?;
    let narrow = |what: &str, v: i64| StoreError::Corrupt(format!("{what} {v}"));
    Ok(Run {
        id: row.try_get(0)?,
        deployment: row.try_get(1)?,
        schedule_id: row.try_get(2)?,
        scheduled_for: time(3)?,
        trigger: Trigger::parse(trigger)
            .ok_or_else(|| StoreError::Corrupt(format!("trigger {trigger:?}")))?,
        state: RunState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?,
        reason: row.try_get(6)?,
        attempt: {
            let v: i64 = row.try_get(7)?;
            u32::try_from(v).map_err(|_| narrow("attempt", v))?
        },
        commit: row.try_get(8)?,
        parameters: serde_json::from_str(parameters)
            .map_err(|e| StoreError::Corrupt(format!("parameters: {e}")))?,
        created_at: parse_time(row.try_get(10)?)?,
        started_at: time(11)?,
        ended_at: time(12)?,
        exit_code: int(13)?
            .map(|v| i32::try_from(v).map_err(|_| narrow("exit code", v)))
            .transpose()?,
        pid: int(14)?
            .map(|v| u32::try_from(v).map_err(|_| narrow("pid", v)))
            .transpose()?,
        not_before: time(15)?,
        retry_pending: row.try_get(16)?,
        retry_of: row.try_get(17)?,
        node: row.try_get(18)?,
        epoch: row.try_get(19)?,
    })
}

/// Every row of a query as runs.
pub(super) fn read_runs(rows: Vec<Row>) -> Result<Vec<Run>, StoreError> {
    rows.iter().map(read_run).collect()
}

/// A count read as `u64`.
pub(super) fn count(row: &Row, i: usize) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(i)?;
    Ok(v.max(0) as u64)
}
