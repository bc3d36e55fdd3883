//! Reads of the run history for the dashboard: the newest run of named deployments, the
//! attempts of the slots on a page, and runs counted per time bucket and state.
//!
//! Contract: every read is bounded by what the page shows (a list of names, a page of
//! runs, a time window) and answered from an index (migration 8), never by reading all
//! runs, so a page costs the same with a thousand runs or a million. Non-goal: counts over
//! the whole history (that is `/metrics`' job, at scrape time).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::run::{read_row, COLUMNS, RUN_TIME};
use super::{time_text, Run, RunState, Store, StoreError};

/// One attempt of a slot, as a list shows it beside the run.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRef {
    pub id: i64,
    pub attempt: u32,
    pub state: RunState,
    pub commit: String,
}

/// A slot: (deployment, schedule id, scheduled time).
pub type SlotKey = (String, String, DateTime<Utc>);

/// How many runs of one state fell in one bucket of a [`Store::run_histogram`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketCount {
    /// The bucket's index from the window's start (0-based).
    pub bucket: i64,
    pub state: RunState,
    pub count: u64,
}

impl Store {
    /// The newest run of each deployment named, one indexed look-up each.
    pub fn newest_runs(&self, deployments: &[&str]) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE id = (SELECT MAX(id) FROM runs WHERE deployment = ?1)"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut found = Vec::new();
        for name in deployments {
            let mut rows = stmt.query_map([name], read_row)?;
            if let Some(row) = rows.next() {
                found.push(row??);
            }
        }
        Ok(found)
    }

    /// Every attempt of the slots of `runs` (manual runs have none), first attempt
    /// first, keyed by slot; one look-up per slot on the slot's unique index.
    pub fn slot_attempts(
        &self,
        runs: &[Run],
    ) -> Result<HashMap<SlotKey, Vec<AttemptRef>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, attempt, state, commit_sha FROM runs
             WHERE deployment = ?1 AND schedule_id = ?2 AND scheduled_for = ?3 ORDER BY attempt",
        )?;
        let mut slots = HashMap::new();
        for run in runs {
            let (Some(schedule), Some(at)) = (&run.schedule_id, run.scheduled_for) else {
                continue;
            };
            let key = (run.deployment.clone(), schedule.clone(), at);
            if slots.contains_key(&key) {
                continue;
            }
            let rows = stmt.query_map((&run.deployment, schedule, time_text(at)), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut attempts = Vec::new();
            for row in rows {
                let (id, attempt, state, commit) = row?;
                let state = RunState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
                attempts.push(AttemptRef {
                    id,
                    attempt,
                    state,
                    commit,
                });
            }
            slots.insert(key, attempts);
        }
        Ok(slots)
    }

    /// Runs whose time falls in `[since, since + buckets * width)`, counted per bucket of
    /// `width` and state (only of `deployment` when given); empty buckets are absent.
    /// Every count is a range of an index, never a read of rows or a parse of times: over
    /// all deployments one count per state and bucket (`runs_by_state_time`: no sorting),
    /// for one deployment a `GROUP BY state` per bucket (`runs_by_deployment_time`, a
    /// twentieth of the entries or so). The cost is the runs in the window, cheaply.
    pub fn run_histogram(
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
        let mut counts = Vec::new();
        if let Some(deployment) = deployment {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT state, COUNT(*) FROM runs
                 WHERE deployment = ?3 AND {RUN_TIME} >= ?1 AND {RUN_TIME} < ?2 GROUP BY state"
            ))?;
            for (bucket, (start, end)) in edges.iter().enumerate() {
                let rows = stmt.query_map((start, end, deployment), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (state, count) = row?;
                    let state = RunState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
                    counts.push((bucket as i64, state, count));
                }
            }
        } else {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT COUNT(*) FROM runs WHERE state = ?3 AND {RUN_TIME} >= ?1 AND {RUN_TIME} < ?2"
            ))?;
            for (bucket, (start, end)) in edges.iter().enumerate() {
                for state in RunState::ALL {
                    let count: i64 = stmt.query_row((start, end, state.as_str()), |r| r.get(0))?;
                    if count > 0 {
                        counts.push((bucket as i64, state, count));
                    }
                }
            }
        }
        counts.sort_by_key(|(bucket, state, _)| (*bucket, state.as_str()));
        Ok(counts
            .into_iter()
            .map(|(bucket, state, count)| BucketCount {
                bucket,
                state,
                count: count as u64,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use crate::store::tests::{on_both, Fixture};
    use crate::store::{NewRun, RunFilter, RunState, Store, StoreWrite, Trigger};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn row(deployment: &str, when: &str, state: RunState, attempt: u32) -> NewRun {
        NewRun {
            deployment: deployment.into(),
            schedule_id: Some("hourly".into()),
            scheduled_for: Some(at(when)),
            trigger: if attempt > 1 {
                Trigger::Retry
            } else {
                Trigger::Schedule
            },
            state,
            reason: None,
            attempt,
            commit: format!("c{attempt}"),
            parameters: json!({}),
            started_at: Some(at(when) + Duration::seconds(1)),
            not_before: None,
            retry_of: None,
        }
    }

    on_both!(
        filters_combine_and_page_by_id,
        runs_are_counted_per_hour_and_state,
        the_attempts_of_a_slot_come_together_with_their_commits,
        the_newest_run_of_each_named_deployment,
    );

    /// etl: 09:00 Failed then Completed on its retry, 10:00 Completed, 11:30 Failed;
    /// report: 10:15 Completed; and a manual run of report at 12:00.
    fn history() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state.db")).unwrap();
        fill(&mut store);
        (dir, store)
    }

    fn fill(store: &mut dyn StoreWrite) {
        let now = at("2026-03-01T12:00:00Z");
        for r in [
            row("etl", "2026-03-01T09:00:00Z", RunState::Failed, 1),
            row("etl", "2026-03-01T09:00:00Z", RunState::Completed, 2),
            row("etl", "2026-03-01T10:00:00Z", RunState::Completed, 1),
            row("report", "2026-03-01T10:15:00Z", RunState::Completed, 1),
            row("etl", "2026-03-01T11:30:00Z", RunState::Failed, 1),
        ] {
            store.insert_run(&r, now).unwrap().unwrap();
        }
        let mut manual = row("report", "2026-03-01T12:00:00Z", RunState::Running, 1);
        (manual.schedule_id, manual.scheduled_for) = (None, None);
        manual.trigger = Trigger::Manual;
        manual.started_at = Some(at("2026-03-01T12:00:00Z"));
        store.insert_run(&manual, now).unwrap().unwrap();
    }

    fn ids(runs: &[crate::store::Run]) -> Vec<i64> {
        runs.iter().map(|r| r.id).collect()
    }

    fn filters_combine_and_page_by_id(mut f: Fixture) {
        fill(&mut *f.store);
        let store = &*f.store;
        let filter = |f: RunFilter| ids(&store.runs(&RunFilter { limit: 10, ..f }).unwrap());
        assert_eq!(filter(RunFilter::default()), [6, 5, 4, 3, 2, 1]);
        let manual = RunFilter {
            trigger: Some(Trigger::Manual),
            ..RunFilter::default()
        };
        assert_eq!(filter(manual), [6]);
        let etl_failed = RunFilter {
            deployment: Some("etl".into()),
            state: Some(RunState::Failed),
            ..RunFilter::default()
        };
        assert_eq!(filter(etl_failed), [5, 1]);
        let window = RunFilter {
            since: Some(at("2026-03-01T10:00:00Z")),
            until: Some(at("2026-03-01T11:30:00Z")),
            ..RunFilter::default()
        };
        assert_eq!(filter(window), [4, 3]);
        let page = RunFilter {
            before: Some(4),
            limit: 2,
            ..RunFilter::default()
        };
        assert_eq!(ids(&store.runs(&page).unwrap()), [3, 2]);
    }

    fn runs_are_counted_per_hour_and_state(mut f: Fixture) {
        fill(&mut *f.store);
        let store = &*f.store;
        let counts = store
            .run_histogram(None, at("2026-03-01T09:00:00Z"), Duration::hours(1), 3)
            .unwrap();
        let got: Vec<(i64, &str, u64)> = counts
            .iter()
            .map(|c| (c.bucket, c.state.as_str(), c.count))
            .collect();
        // The manual run at 12:00 is outside the three hours.
        assert_eq!(
            got,
            [
                (0, "Completed", 1),
                (0, "Failed", 1),
                (1, "Completed", 2),
                (2, "Failed", 1)
            ]
        );
        let etl = store
            .run_histogram(
                Some("report"),
                at("2026-03-01T09:00:00Z"),
                Duration::hours(1),
                4,
            )
            .unwrap();
        assert_eq!(etl.iter().map(|c| c.bucket).collect::<Vec<_>>(), [1, 3]);
    }

    fn the_attempts_of_a_slot_come_together_with_their_commits(mut f: Fixture) {
        fill(&mut *f.store);
        let store = &*f.store;
        let retry = store.run(2).unwrap().unwrap();
        let manual = store.run(6).unwrap().unwrap();
        let slots = store.slot_attempts(&[retry, manual]).unwrap();
        assert_eq!(slots.len(), 1, "a manual run has no slot");
        let attempts = slots.values().next().unwrap();
        let got: Vec<(i64, u32, &str)> = attempts
            .iter()
            .map(|a| (a.id, a.attempt, a.commit.as_str()))
            .collect();
        assert_eq!(got, [(1, 1, "c1"), (2, 2, "c2")]);
    }

    fn the_newest_run_of_each_named_deployment(mut f: Fixture) {
        fill(&mut *f.store);
        let store = &*f.store;
        let newest = store.newest_runs(&["etl", "report", "gone"]).unwrap();
        assert_eq!(ids(&newest), [5, 6]);
    }

    /// The dashboard's reads use the migration-4 indexes: none scans the table.
    #[test]
    fn the_dashboard_reads_are_answered_from_indexes() {
        let (_dir, store) = history();
        let plan = |sql: &str| -> String {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let time = super::RUN_TIME;
        for (sql, index) in [
            (
                format!("SELECT COUNT(*) FROM runs WHERE state = 'Failed' AND {time} >= '2026' AND {time} < '2027'"),
                "COVERING INDEX runs_by_state_time",
            ),
            (
                format!("SELECT id FROM runs WHERE {time} >= '2026' AND {time} < '2027' ORDER BY id DESC LIMIT 50"),
                "COVERING INDEX runs_by_time",
            ),
            (
                format!("SELECT state, COUNT(*) FROM runs WHERE {time} >= '2026' AND {time} < '2027' AND deployment = 'etl' GROUP BY state"),
                "COVERING INDEX runs_by_deployment_time",
            ),
            (
                "SELECT id FROM runs WHERE trigger = 'manual' ORDER BY id DESC LIMIT 50".into(),
                "COVERING INDEX runs_by_trigger",
            ),
            (
                "SELECT id FROM runs WHERE deployment = 'etl' AND state = 'Failed' ORDER BY id DESC LIMIT 50".into(),
                "COVERING INDEX runs_by_deployment_state",
            ),
        ] {
            let plan = plan(&sql);
            assert!(plan.contains(index), "{sql}\nplan: {plan}");
            assert!(!plan.contains("SCAN runs"), "{sql}\nplan: {plan}");
        }
    }
}
