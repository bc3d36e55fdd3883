//! Schema migrations, versioned in code with SQLite's `user_version`. Each step runs in
//! one transaction; a database newer than this binary is refused, never downgraded.

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: runs, cursors, applied commits, last-known-good files.
    "
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY,
        deployment    TEXT NOT NULL,
        schedule_id   TEXT,
        scheduled_for TEXT,
        trigger       TEXT NOT NULL,
        state         TEXT NOT NULL,
        reason        TEXT,
        attempt       INTEGER NOT NULL DEFAULT 1,
        commit_sha    TEXT NOT NULL,
        parameters    TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        started_at    TEXT,
        ended_at      TEXT,
        exit_code     INTEGER,
        pid           INTEGER
    );
    CREATE UNIQUE INDEX runs_slot ON runs (deployment, schedule_id, scheduled_for, attempt)
        WHERE schedule_id IS NOT NULL;
    CREATE INDEX runs_by_deployment ON runs (deployment, id);
    CREATE INDEX runs_by_state ON runs (state, id);
    CREATE TABLE cursors (
        deployment  TEXT NOT NULL,
        schedule_id TEXT NOT NULL,
        last_slot   TEXT NOT NULL,
        PRIMARY KEY (deployment, schedule_id)
    );
    CREATE TABLE commits (
        sha        TEXT PRIMARY KEY,
        applied_at TEXT NOT NULL,
        summary    TEXT NOT NULL,
        errors     TEXT NOT NULL,
        warnings   TEXT NOT NULL
    );
    CREATE TABLE good_files (
        path        TEXT PRIMARY KEY,
        commit_sha  TEXT NOT NULL
    );
    ",
    // 2: when a waiting retry may start.
    "ALTER TABLE runs ADD COLUMN not_before TEXT;",
    // 3: what a schedule's cursor was planned for (a changed definition is planned anew),
    //    and ended attempts whose retry is still to be decided (durable across a crash).
    "
    ALTER TABLE cursors ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN retry_pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_retry_pending ON runs (retry_pending) WHERE retry_pending = 1;
    ",
    // 4: notifications. A run row whose state changed is marked until its events are
    //    derived (`noticed`: the state they were derived for); each deployment's recent
    //    outcomes; the outbox of deliveries, kept until delivered or given up.
    "
    ALTER TABLE runs ADD COLUMN notice_due INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN noticed TEXT;
    CREATE INDEX runs_notice_due ON runs (notice_due) WHERE notice_due = 1;
    CREATE TABLE health (
        deployment        TEXT PRIMARY KEY,
        failing           INTEGER NOT NULL,
        failures_in_a_row INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY,
        deployment   TEXT NOT NULL,
        run_id       INTEGER,
        event        TEXT NOT NULL,
        target       TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      TEXT NOT NULL,
        delivered_at TEXT,
        gave_up_at   TEXT,
        last_error   TEXT
    );
    CREATE INDEX outbox_waiting ON outbox (next_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
    ",
    // 5: the anchor of an interval without `anchor_date` (the time of the commit that
    //    introduced it), kept with its cursor so that it never moves once planned.
    "ALTER TABLE cursors ADD COLUMN anchor TEXT;",
    // 6: which attempt a retry follows (provenance), and deployments paused at run time
    //    after failing slots in a row, until resumed.
    "
    ALTER TABLE runs ADD COLUMN retry_of INTEGER;
    CREATE TABLE pauses (
        deployment TEXT PRIMARY KEY,
        since      TEXT NOT NULL,
        note       TEXT NOT NULL
    );
    ",
    // 7: SLAs: when each deployment last succeeded (or began to be watched), and each
    //    breach, once per SLA and subject (a run, a slot, a stretch without success).
    "
    ALTER TABLE health ADD COLUMN last_success TEXT;
    ALTER TABLE health ADD COLUMN watch_since TEXT;
    CREATE TABLE breaches (
        id         INTEGER PRIMARY KEY,
        deployment TEXT NOT NULL,
        sla        TEXT NOT NULL,
        kind       TEXT NOT NULL,
        severity   TEXT NOT NULL,
        subject    TEXT NOT NULL,
        run_id     INTEGER,
        at         TEXT NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE UNIQUE INDEX breaches_subject ON breaches (deployment, sla, subject);
    ",
    // 8: the dashboard's indexes.
    DASHBOARD_INDEXES,
];

/// Step 8 (its own step, written apart for its length):
/// indexes for the dashboard's filters and charts, so no page reads all runs. The time
/// expression is [`super::run::RUN_TIME`], written out the same way, or SQLite would not
/// use these indexes for it. The charts count (state, time) ranges from
/// `runs_by_state_time`, and a deployment's from `runs_by_deployment_time`, where `state`
/// rides along so its `GROUP BY` reads only the index.
const DASHBOARD_INDEXES: &str = "
    CREATE INDEX runs_by_trigger ON runs (trigger, id);
    CREATE INDEX runs_by_deployment_state ON runs (deployment, state, id);
    CREATE INDEX runs_by_time ON runs (COALESCE(started_at, scheduled_for, created_at));
    CREATE INDEX runs_by_state_time ON runs (state, COALESCE(started_at, scheduled_for, created_at));
    CREATE INDEX runs_by_deployment_time
        ON runs (deployment, COALESCE(started_at, scheduled_for, created_at), state);
";

/// The schema version this binary writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date; true when the database was new (schema version 0).
pub fn migrate(conn: &mut Connection) -> Result<bool, StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > CURRENT {
        return Err(StoreError::TooNew {
            found,
            known: CURRENT,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(found == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of schema 3 (before the dashboard indexes) with runs in it takes step
    /// 4 on open: the indexes exist and the runs are kept.
    #[test]
    fn a_schema_3_database_gets_the_dashboard_indexes_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute(
                "INSERT INTO runs (deployment, trigger, state, commit_sha, parameters, created_at)
                 VALUES ('etl', 'manual', 'Completed', 'abc', '{}', '2026-03-01T09:00:00.000Z')",
                [],
            )
            .unwrap();
        }
        let store = crate::store::Store::open(&path).unwrap();
        assert!(!store.created());
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT);
        let mut stmt = store
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'runs_by_%' ORDER BY name")
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            names,
            [
                "runs_by_deployment",
                "runs_by_deployment_state",
                "runs_by_deployment_time",
                "runs_by_state",
                "runs_by_state_time",
                "runs_by_time",
                "runs_by_trigger"
            ]
        );
        assert_eq!(store.run(1).unwrap().unwrap().deployment, "etl");
    }
}
