//! Aggregates of the run history for `/metrics`, computed at scrape time with one query
//! each, so the engine needs no counters of its own. They count what the store holds:
//! pruning history would lower them (sundial does not prune yet).

use super::{Store, StoreError};

/// How many runs share a (deployment, state, trigger, reason), and how many of them
/// started. `reason` is kept only for rows that never started (skipped or refused
/// slots), whose reasons are a few fixed words.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCount {
    pub deployment: String,
    pub state: String,
    pub trigger: String,
    pub reason: Option<String>,
    pub rows: u64,
    pub started: u64,
}

/// Start lateness (started_at − scheduled_for) of first attempts of scheduled slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Lateness {
    pub count: u64,
    pub sum_seconds: f64,
    /// For each upper bound given, how many fall at or below it (cumulative).
    pub at_most: Vec<u64>,
}

impl Store {
    pub fn run_counts(&self) -> Result<Vec<RunCount>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT deployment, state, trigger,
                    CASE WHEN started_at IS NULL THEN reason END AS why,
                    COUNT(*), SUM(started_at IS NOT NULL)
             FROM runs GROUP BY deployment, state, trigger, why",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RunCount {
                deployment: r.get(0)?,
                state: r.get(1)?,
                trigger: r.get(2)?,
                reason: r.get(3)?,
                rows: r.get::<_, i64>(4)? as u64,
                started: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lateness of every started first attempt of a slot, against `bounds` (seconds,
    /// ascending), in one pass over the table.
    pub fn lateness(&self, bounds: &[f64]) -> Result<Lateness, StoreError> {
        let mut columns = String::from("COUNT(*), COALESCE(SUM(late), 0)");
        for (i, _) in bounds.iter().enumerate() {
            columns.push_str(&format!(", COALESCE(SUM(late <= ?{}), 0)", i + 1));
        }
        let sql = format!(
            "SELECT {columns} FROM (
                SELECT (julianday(started_at) - julianday(scheduled_for)) * 86400.0 AS late
                FROM runs
                WHERE scheduled_for IS NOT NULL AND started_at IS NOT NULL AND attempt = 1
             )"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let found = stmt.query_row(rusqlite::params_from_iter(bounds.iter()), |r| {
            let mut at_most = Vec::with_capacity(bounds.len());
            for i in 0..bounds.len() {
                at_most.push(r.get::<_, i64>(i + 2)? as u64);
            }
            Ok(Lateness {
                count: r.get::<_, i64>(0)? as u64,
                sum_seconds: r.get(1)?,
                at_most,
            })
        })?;
        Ok(found)
    }

    /// When the daemon applied `sha` (the newest time, if applied more than once).
    pub fn applied_at(
        &self,
        sha: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let text: Option<String> = self.conn.query_row(
            "SELECT MAX(applied_at) FROM commits WHERE sha = ?1",
            [sha],
            |r| r.get(0),
        )?;
        text.as_deref().map(super::parse_time).transpose()
    }
}
