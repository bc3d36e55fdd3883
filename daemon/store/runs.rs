//! Run rows: one per attempt of a slot or a manual trigger, plus the Skipped/Cancelled
//! rows that record why a due slot did not run ("nothing vanishes"). The statements that
//! write and read them; what a row is lives in `run.rs`.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;

use super::run::{
    read_row, NewRun, Progress, Run, RunFilter, RunState, SlotCursor, COLUMNS, RUN_TIME,
};
use super::{run_json, time_text, Store, StoreError};

impl Store {
    /// Inserts a run row; for a slot (schedule id and time set) returns `None` when that
    /// slot's attempt already has a row, which is how a slot fires at most once.
    pub fn insert_run(
        &mut self,
        new: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.savepoint()?;
        let id = insert(&tx, new, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// Records the handling of a slot in one transaction: its run row (if the slot has
    /// none yet) and the schedule's cursor, so a restart neither repeats nor loses it.
    pub fn claim_slots(
        &mut self,
        rows: &[NewRun],
        cursor: Option<SlotCursor<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let tx = self.conn.savepoint()?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(insert(&tx, row, now)?);
        }
        if let Some(c) = cursor {
            super::state::set_cursor(&tx, c.deployment, c.schedule_id, c.last_slot, c.fingerprint)?;
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Marks a waiting run Running before its process starts, at `commit` (the commit
    /// whose definition and checkout it runs); false if it was not waiting to start
    /// (cancelled, or already started by someone else).
    pub fn start_run(
        &mut self,
        id: i64,
        commit: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE runs SET state = 'Running', started_at = ?2, commit_sha = ?3, notice_due = 1 WHERE id = ?1 AND state IN ('Scheduled', 'Pending', 'AwaitingRetry')",
            (id, time_text(at), commit),
        )?;
        Ok(changed == 1)
    }

    /// Records what attempts reported while running, in one transaction: when each began
    /// and which process it runs now (for people: recovery finds a run's processes by
    /// their marker, never by this pid). A burst of starts costs one `fsync`.
    pub fn record_progress(&mut self, progress: &[Progress]) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        {
            let mut began = tx.prepare_cached("UPDATE runs SET started_at = ?2 WHERE id = ?1")?;
            let mut spawned = tx.prepare_cached("UPDATE runs SET pid = ?2 WHERE id = ?1")?;
            for step in progress {
                match *step {
                    Progress::Began(id, at) => began.execute((id, time_text(at)))?,
                    Progress::Spawned(id, pid) => spawned.execute((id, pid))?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Inserts the next attempt of `ended` and marks `ended`'s retry decided, in one
    /// transaction; `None` when that attempt already has a row.
    pub fn insert_retry(
        &mut self,
        ended: i64,
        next: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.savepoint()?;
        let id = insert(&tx, next, now)?;
        // A retry follows: the ended attempt has nothing more to say.
        tx.execute(
            "UPDATE runs SET retry_pending = 0, notice_due = 0 WHERE id = ?1",
            [ended],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Marks the retry of an ended attempt decided: it gets none.
    pub fn retry_decided(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET retry_pending = 0, notice_due = 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Ended attempts whose retry is still to be decided, oldest first (a daemon that
    /// stopped between an attempt's end and that decision leaves them).
    pub fn retry_pending(&self) -> Result<Vec<Run>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE retry_pending = 1 ORDER BY id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], read_row)?;
        rows.map(|r| r?).collect()
    }

    /// Records how a run ended, once: a run that has ended already keeps its end (a
    /// late second report changes nothing, and owes no second retry). An attempt that
    /// ended Failed, TimedOut or Crashed is marked as owing a retry decision in the same
    /// statement (see [`Store::insert_retry`], [`Store::retry_decided`]). A run that
    /// started ends with the end's reason (none for a plain exit): why it was made is its
    /// cause ([`Run::cause`]), not its outcome; one that never started keeps its reason
    /// unless the end gives one.
    pub fn finish_run(
        &mut self,
        id: i64,
        state: RunState,
        exit_code: Option<i32>,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ended = state.is_final().then(|| time_text(at));
        self.conn.prepare_cached(
            "UPDATE runs SET state = ?2, exit_code = ?3, reason = CASE WHEN started_at IS NULL THEN COALESCE(?4, reason) ELSE ?4 END, ended_at = ?5, retry_pending = ?6, notice_due = 1 WHERE id = ?1 AND ended_at IS NULL",
        )?
        .execute((id, state.as_str(), exit_code, reason, ended, state.may_retry()))?;
        Ok(())
    }

    pub fn run(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE id = ?1");
        let found = self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], read_row)
            .optional()?;
        found.transpose()
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let (sql, values) = page_query(filter);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let params: Vec<(&str, &dyn rusqlite::ToSql)> =
            values.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let rows = stmt.query_map(params.as_slice(), read_row)?;
        rows.map(|r| r?).collect()
    }

    /// [`Store::runs`] written into `out` as the JSON array `GET /api/runs` answers (see
    /// `run_json`), straight from the rows. Returns how many runs it wrote and the id of
    /// the last one. On an error `out` holds part of a page.
    pub fn runs_json(
        &self,
        filter: &RunFilter,
        out: &mut String,
    ) -> Result<(usize, Option<i64>), StoreError> {
        let (sql, values) = page_query(filter);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let params: Vec<(&str, &dyn rusqlite::ToSql)> =
            values.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let mut rows = stmt.query(params.as_slice())?;
        let (mut count, mut last) = (0, None);
        let mut cause = String::new();
        out.push('[');
        while let Some(row) = rows.next()? {
            if count > 0 {
                out.push(',');
            }
            run_json::write_row(row, out, &mut cause)?;
            last = Some(row.get(0)?);
            count += 1;
        }
        out.push(']');
        Ok((count, last))
    }

    /// Every attempt of the slot `run` belongs to, first attempt first (just `run` for a
    /// manual run, which has no slot).
    pub fn attempts_of(&self, run: &Run) -> Result<Vec<Run>, StoreError> {
        let (Some(schedule_id), Some(at)) = (&run.schedule_id, run.scheduled_for) else {
            return Ok(vec![run.clone()]);
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE deployment = ?1 AND schedule_id = ?2 AND scheduled_for = ?3 ORDER BY attempt"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map((&run.deployment, schedule_id, time_text(at)), read_row)?;
        rows.map(|r| r?).collect()
    }

    /// Rows something may still happen to: the input of `recover` at start-up.
    pub fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE state IN ('Scheduled', 'Pending', 'Running', 'AwaitingRetry') ORDER BY id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], read_row)?;
        rows.map(|r| r?).collect()
    }

    /// Cancels a run that waits (`Scheduled`, `Pending`, `AwaitingRetry`); false when it no
    /// longer waits.
    pub fn cancel_waiting(
        &mut self,
        id: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE runs SET state = 'Cancelled', reason = ?2, ended_at = ?3, notice_due = 1
             WHERE id = ?1 AND state IN ('Scheduled', 'Pending', 'AwaitingRetry') AND ended_at IS NULL",
            (id, reason, time_text(at)),
        )?;
        Ok(changed == 1)
    }

    /// Moves a waiting row to `Pending` (queued behind a concurrency limit).
    pub fn mark_pending(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE runs SET state = 'Pending' WHERE id = ?1 AND state IN ('Scheduled', 'AwaitingRetry')", [id])?;
        Ok(())
    }

    /// Deletes finished runs beyond the newest `keep` of each deployment, and finished runs
    /// that ended before `older_than`; returns the ids deleted, in order (their logs go too).
    ///
    /// It reads only what it may delete: each deployment's rows past its newest `keep`
    /// through the `(deployment, id)` index (the deployments themselves found by skipping
    /// through that index), and the finished rows by age. With 1,000,000 rows this is a
    /// small fraction of ranking every row (which took 3 s and held the writer meanwhile).
    pub fn prune_runs(
        &mut self,
        keep: usize,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.savepoint()?;
        let mut ids: Vec<i64> = Vec::new();
        {
            let deployments: Vec<String> = {
                let mut stmt = tx.prepare(
                    "WITH RECURSIVE d(name) AS (
                        SELECT MIN(deployment) FROM runs
                        UNION ALL
                        SELECT (SELECT MIN(deployment) FROM runs WHERE deployment > d.name)
                        FROM d WHERE d.name IS NOT NULL)
                     SELECT name FROM d WHERE name IS NOT NULL",
                )?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            // The newest run of a deployment beyond its `keep` newest, and the finished
            // ones from there down.
            let mut cut = tx.prepare(
                "SELECT id FROM runs WHERE deployment = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
            )?;
            let mut older = tx.prepare(&format!(
                "SELECT id FROM runs WHERE deployment = ?1 AND id <= ?2 AND state IN ({FINISHED})"
            ))?;
            for deployment in &deployments {
                let Some(from) = cut
                    .query_row((deployment, keep as i64), |r| r.get::<_, i64>(0))
                    .optional()?
                else {
                    continue;
                };
                for id in older.query_map((deployment, from), |r| r.get(0))? {
                    ids.push(id?);
                }
            }
            let mut aged = tx.prepare(&format!(
                "SELECT id FROM runs WHERE ended_at < ?1 AND state IN ({FINISHED})"
            ))?;
            for id in aged.query_map([time_text(older_than)], |r| r.get(0))? {
                ids.push(id?);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(500) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            tx.execute(&format!("DELETE FROM runs WHERE id IN ({list})"), [])?;
        }
        tx.commit()?;
        Ok(ids)
    }

    /// The newest run of each deployment (for listings).
    pub fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY deployment)"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], read_row)?;
        rows.map(|r| r?).collect()
    }
}

/// The states of a run that has ended (what retention may delete).
const FINISHED: &str = "'Completed', 'Failed', 'TimedOut', 'Crashed', 'Cancelled', 'Skipped'";

/// Values bound to a statement by name.
type Bound = Vec<(&'static str, Box<dyn rusqlite::ToSql>)>;

/// The statement of a page of [`Store::runs`], and its values.
fn page_query(filter: &RunFilter) -> (String, Bound) {
    let mut terms = Vec::new();
    let mut values: Bound = Vec::new();
    if let Some(d) = &filter.deployment {
        terms.push("deployment = :deployment".to_string());
        values.push((":deployment", Box::new(d.clone())));
    }
    if let Some(s) = filter.state {
        terms.push("state = :state".to_string());
        values.push((":state", Box::new(s.as_str())));
    }
    if let Some(t) = filter.trigger {
        terms.push("trigger = :trigger".to_string());
        values.push((":trigger", Box::new(t.as_str())));
    }
    if let Some(since) = filter.since {
        terms.push(format!("{RUN_TIME} >= :since"));
        values.push((":since", Box::new(time_text(since))));
    }
    if let Some(until) = filter.until {
        terms.push(format!("{RUN_TIME} < :until"));
        values.push((":until", Box::new(time_text(until))));
    }
    if let Some(before) = filter.before {
        terms.push("id < :before".to_string());
        values.push((":before", Box::new(before)));
    }
    let condition = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    // The ids first: the dashboard indexes (migration 8) hold every filtered column
    // and the id, so the page is found from an index alone, and only its rows are read.
    // The limit is written in the text, not bound: SQLite plans for a bound limit's
    // value, so binding one prepares the statement again on every call.
    // (A limit past i64::MAX is no limit, -1, as it was when bound.)
    let limit = i64::try_from(filter.limit).unwrap_or(-1);
    let sql = format!(
        "SELECT {COLUMNS} FROM runs WHERE id IN
            (SELECT id FROM runs {condition} ORDER BY id DESC LIMIT {limit})
         ORDER BY id DESC"
    );
    (sql, values)
}

fn insert(
    tx: &rusqlite::Connection,
    new: &NewRun,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    // Cached: a burst inserts thousands of rows with this one statement.
    let changed = tx.prepare_cached(
        "INSERT INTO runs (deployment, schedule_id, scheduled_for, trigger, state, reason, attempt, commit_sha, parameters, created_at, ended_at, started_at, not_before, notice_due, retry_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT DO NOTHING",
    )?.execute(
        rusqlite::params![
            new.deployment,
            new.schedule_id,
            new.scheduled_for.map(time_text),
            new.trigger.as_str(),
            new.state.as_str(),
            new.reason,
            new.attempt,
            new.commit,
            new.parameters.to_string(),
            time_text(now),
            new.state.is_final().then(|| time_text(now)),
            new.started_at.map(time_text),
            new.not_before.map(time_text),
            // A row that waits (queued, retrying) has nothing to say yet.
            !matches!(
                new.state,
                RunState::Pending | RunState::Scheduled | RunState::AwaitingRetry
            ),
            new.retry_of,
        ],
    )?;
    Ok((changed == 1).then(|| tx.last_insert_rowid()))
}
