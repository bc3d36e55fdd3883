//! A deployment's slots as the ledger holds them, for "why didn't it run?"
//! ([`crate::explain`]): the rows of a range of slots (with the summaries of missed
//! slots that may cover it) and each schedule's first slot on record.

use chrono::{DateTime, Utc};

use super::run::{read_row, COLUMNS};
use super::{parse_time, time_text, Run, Store, StoreError};

impl Store {
    /// The rows of `deployment`'s slots from `from` to `to` (both included), in slot
    /// order, at most `limit`; with the newest summaries of missed slots that begin before
    /// `from` (they may cover slots in the range).
    pub fn slot_rows(
        &self,
        deployment: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT * FROM (SELECT {COLUMNS} FROM runs
                WHERE deployment = ?1 AND schedule_id IS NOT NULL AND scheduled_for >= ?2 AND scheduled_for <= ?3
                ORDER BY scheduled_for, attempt LIMIT ?4)
             UNION ALL
             SELECT * FROM (SELECT {COLUMNS} FROM runs
                WHERE deployment = ?1 AND schedule_id IS NOT NULL AND scheduled_for < ?2
                  AND state = 'Skipped' AND reason LIKE 'missed: %'
                ORDER BY scheduled_for DESC LIMIT 20)"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(
            (deployment, time_text(from), time_text(to), limit as i64),
            read_row,
        )?;
        rows.map(|r| r?).collect()
    }

    /// Each schedule's earliest slot on record for `deployment`.
    pub fn first_slots(
        &self,
        deployment: &str,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT schedule_id, MIN(scheduled_for) FROM runs
             WHERE deployment = ?1 AND schedule_id IS NOT NULL GROUP BY schedule_id",
        )?;
        let rows = stmt.query_map([deployment], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at) = row?;
            out.push((id, parse_time(&at)?));
        }
        Ok(out)
    }
}
