//! The dashboard's history reads and the metrics aggregates on PostgreSQL: the
//! statements of `store/history.rs` and `store/stats.rs`. Counts use `COUNT(CASE …)`
//! (PostgreSQL's `SUM` of a condition is not an integer), and lateness is computed from
//! the times cast to `timestamptz` (SQLite uses `julianday`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::super::run::{COLUMNS, RUN_TIME};
use super::super::{
    parse_time, time_text, AttemptRef, BucketCount, Lateness, Run, RunCount, RunState, SlotKey,
    StoreError,
};
use super::{count, read_runs, PgStore};

fn state_of(text: &str) -> Result<RunState, StoreError> {
    RunState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("state {text:?}")))
}

impl PgStore {
    pub(super) fn newest_runs(&self, deployments: &[&str]) -> Result<Vec<Run>, StoreError> {
        let names: Vec<String> = deployments.iter().map(|d| d.to_string()).collect();
        self.read(move |c| {
            let stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM runs WHERE id = (SELECT MAX(id) FROM runs WHERE deployment = $1)"
            ))?;
            let mut found = Vec::new();
            for name in &names {
                found.extend(read_runs(c.query(&stmt, &[name])?)?);
            }
            Ok(found)
        })
    }

    pub(super) fn slot_attempts(
        &self,
        runs: &[Run],
    ) -> Result<HashMap<SlotKey, Vec<AttemptRef>>, StoreError> {
        let mut keys: Vec<SlotKey> = Vec::new();
        for run in runs {
            if let (Some(schedule), Some(at)) = (&run.schedule_id, run.scheduled_for) {
                let key = (run.deployment.clone(), schedule.clone(), at);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        self.read(move |c| {
            let stmt = c.prepare(
                "SELECT id, attempt, state, commit_sha FROM runs
                 WHERE deployment = $1 AND schedule_id = $2 AND scheduled_for = $3 ORDER BY attempt",
            )?;
            let mut slots = HashMap::new();
            for key in keys {
                let rows = c.query(&stmt, &[&key.0, &key.1, &time_text(key.2)])?;
                let mut attempts = Vec::new();
                for r in &rows {
                    attempts.push(AttemptRef {
                        id: r.try_get(0)?,
                        attempt: count(r, 1)? as u32,
                        state: state_of(r.try_get(2)?)?,
                        commit: r.try_get(3)?,
                    });
                }
                slots.insert(key, attempts);
            }
            Ok(slots)
        })
    }

    pub(super) fn run_histogram(
        &self,
        deployment: Option<&str>,
        since: DateTime<Utc>,
        width: chrono::Duration,
        buckets: i64,
    ) -> Result<Vec<BucketCount>, StoreError> {
        let edges: Vec<(String, String)> = (0..buckets.max(0))
            .map(|b| {
                let start = since + width * b as i32;
                (time_text(start), time_text(start + width))
            })
            .collect();
        let deployment = deployment.map(str::to_string);
        self.read(move |c| {
            let mut counts = Vec::new();
            if let Some(deployment) = deployment {
                let stmt = c.prepare(&format!(
                    "SELECT state, COUNT(*) FROM runs
                     WHERE deployment = $3 AND {RUN_TIME} >= $1 AND {RUN_TIME} < $2 GROUP BY state"
                ))?;
                for (bucket, (start, end)) in edges.iter().enumerate() {
                    for r in c.query(&stmt, &[start, end, &deployment])? {
                        counts.push((bucket as i64, state_of(r.try_get(0)?)?, count(&r, 1)?));
                    }
                }
            } else {
                let stmt = c.prepare(&format!(
                    "SELECT state, COUNT(*) FROM runs
                     WHERE {RUN_TIME} >= $1 AND {RUN_TIME} < $2 GROUP BY state"
                ))?;
                for (bucket, (start, end)) in edges.iter().enumerate() {
                    for r in c.query(&stmt, &[start, end])? {
                        counts.push((bucket as i64, state_of(r.try_get(0)?)?, count(&r, 1)?));
                    }
                }
            }
            counts.sort_by_key(|(bucket, state, _)| (*bucket, state.as_str()));
            Ok(counts
                .into_iter()
                .map(|(bucket, state, count)| BucketCount {
                    bucket,
                    state,
                    count,
                })
                .collect())
        })
    }

    pub(super) fn run_counts(&self) -> Result<Vec<RunCount>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT deployment, state, trigger,
                        CASE WHEN started_at IS NULL THEN reason END AS why,
                        COUNT(*), COUNT(started_at)
                 FROM runs GROUP BY deployment, state, trigger, why",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(RunCount {
                    deployment: r.try_get(0)?,
                    state: r.try_get(1)?,
                    trigger: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    rows: count(r, 4)?,
                    started: count(r, 5)?,
                })
            })
            .collect()
        })
    }

    pub(super) fn lateness(&self, bounds: &[f64]) -> Result<Lateness, StoreError> {
        let bounds = bounds.to_vec();
        self.read(move |c| {
            let mut columns = String::from("COUNT(*), COALESCE(SUM(late), 0)::float8");
            for (i, _) in bounds.iter().enumerate() {
                columns.push_str(&format!(
                    ", COUNT(CASE WHEN late <= ${}::float8 THEN 1 END)",
                    i + 1
                ));
            }
            let sql = format!(
                "SELECT {columns} FROM (
                    SELECT EXTRACT(EPOCH FROM started_at::timestamptz - scheduled_for::timestamptz)::float8 AS late
                    FROM runs
                    WHERE scheduled_for IS NOT NULL AND started_at IS NOT NULL AND attempt = 1
                 ) AS started"
            );
            let args: Vec<&(dyn postgres::types::ToSql + Sync)> = bounds
                .iter()
                .map(|b| b as &(dyn postgres::types::ToSql + Sync))
                .collect();
            let r = c.query_one(&sql, &args)?;
            let mut at_most = Vec::with_capacity(bounds.len());
            for i in 0..bounds.len() {
                at_most.push(count(&r, i + 2)?);
            }
            Ok(Lateness {
                count: count(&r, 0)?,
                sum_seconds: r.try_get(1)?,
                at_most,
            })
        })
    }

    pub(super) fn applied_at(&self, sha: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sha = sha.to_string();
        self.read(move |c| {
            let r = c.query_one(
                "SELECT MAX(applied_at) FROM commits WHERE sha = $1",
                &[&sha],
            )?;
            r.try_get::<_, Option<&str>>(0)?.map(parse_time).transpose()
        })
    }
}
