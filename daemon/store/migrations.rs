//! Schema migrations, one list for both stores: each step is a template whose tokens
//! ([`render`]) become SQLite's or PostgreSQL's types, and SQLite's rendering is the text
//! it always was (the golden test). Versioned with SQLite's `user_version`, or the
//! `sundial_schema` table on PostgreSQL (see `store::pg`). Each step runs in one
//! transaction; a database newer than this binary is refused, never downgraded.

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`. Each is a template in
/// both dialects: see [`render`] for its tokens.
const MIGRATIONS: &[&str] = &[
    // 1: runs, cursors, applied commits, last-known-good files.
    "
    CREATE TABLE runs (
        id            {ID},
        deployment    TEXT NOT NULL,
        schedule_id   TEXT,
        scheduled_for {TIME},
        trigger       TEXT NOT NULL,
        state         TEXT NOT NULL,
        reason        TEXT,
        attempt       {INT} NOT NULL DEFAULT 1,
        commit_sha    TEXT NOT NULL,
        parameters    TEXT NOT NULL,
        created_at    {TIME} NOT NULL,
        started_at    {TIME},
        ended_at      {TIME},
        exit_code     {INT},
        pid           {INT}
    );
    CREATE UNIQUE INDEX runs_slot ON runs (deployment, schedule_id, scheduled_for, attempt)
        WHERE schedule_id IS NOT NULL;
    CREATE INDEX runs_by_deployment ON runs (deployment, id);
    CREATE INDEX runs_by_state ON runs (state, id);
    CREATE TABLE cursors (
        deployment  TEXT NOT NULL,
        schedule_id TEXT NOT NULL,
        last_slot   {TIME} NOT NULL,
        PRIMARY KEY (deployment, schedule_id)
    );
    CREATE TABLE commits (
        sha        TEXT PRIMARY KEY,
        applied_at {TIME} NOT NULL,
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
    "ALTER TABLE runs ADD COLUMN not_before {TIME};",
    // 3: what a schedule's cursor was planned for (a changed definition is planned anew),
    //    and ended attempts whose retry is still to be decided (durable across a crash).
    "
    ALTER TABLE cursors ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN retry_pending {BOOL} NOT NULL DEFAULT {FALSE};
    CREATE INDEX runs_retry_pending ON runs (retry_pending) WHERE retry_pending = {TRUE};
    ",
    // 4: notifications. A run row whose state changed is marked until its events are
    //    derived (`noticed`: the state they were derived for); each deployment's recent
    //    outcomes; the outbox of deliveries, kept until delivered or given up.
    "
    ALTER TABLE runs ADD COLUMN notice_due {BOOL} NOT NULL DEFAULT {FALSE};
    ALTER TABLE runs ADD COLUMN noticed TEXT;
    CREATE INDEX runs_notice_due ON runs (notice_due) WHERE notice_due = {TRUE};
    CREATE TABLE health (
        deployment        TEXT PRIMARY KEY,
        failing           {BOOL} NOT NULL,
        failures_in_a_row {INT} NOT NULL
    );
    CREATE TABLE outbox (
        id           {ID},
        deployment   TEXT NOT NULL,
        run_id       {INT},
        event        TEXT NOT NULL,
        target       TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   {TIME} NOT NULL,
        attempts     {INT} NOT NULL DEFAULT 0,
        next_at      {TIME} NOT NULL,
        delivered_at {TIME},
        gave_up_at   {TIME},
        last_error   TEXT
    );
    CREATE INDEX outbox_waiting ON outbox (next_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
    ",
    // 5: the anchor of an interval without `anchor_date` (the time of the commit that
    //    introduced it), kept with its cursor so that it never moves once planned.
    "ALTER TABLE cursors ADD COLUMN anchor {TIME};",
    // 6: which attempt a retry follows (provenance), and deployments paused at run time
    //    after failing slots in a row, until resumed.
    "
    ALTER TABLE runs ADD COLUMN retry_of {INT};
    CREATE TABLE pauses (
        deployment TEXT PRIMARY KEY,
        since      {TIME} NOT NULL,
        note       TEXT NOT NULL
    );
    ",
    // 7: SLAs: when each deployment last succeeded (or began to be watched), and each
    //    breach, once per SLA and subject (a run, a slot, a stretch without success).
    "
    ALTER TABLE health ADD COLUMN last_success {TIME};
    ALTER TABLE health ADD COLUMN watch_since {TIME};
    CREATE TABLE breaches (
        id         {ID},
        deployment TEXT NOT NULL,
        sla        TEXT NOT NULL,
        kind       TEXT NOT NULL,
        severity   TEXT NOT NULL,
        subject    TEXT NOT NULL,
        run_id     {INT},
        at         {TIME} NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE UNIQUE INDEX breaches_subject ON breaches (deployment, sla, subject);
    ",
    // 8: the dashboard's indexes.
    DASHBOARD_INDEXES,
    // 9: which node ran a run, under which leader's epoch (PostgreSQL clusters; NULL on
    //    SQLite, where one daemon is all there is).
    "
    ALTER TABLE runs ADD COLUMN node TEXT;
    ALTER TABLE runs ADD COLUMN epoch {INT};
    ",
    // 10: when a cancel was asked of the node that runs a run (PostgreSQL clusters; NULL
    //     on SQLite, where a cancel acts at once).
    "
    ALTER TABLE runs ADD COLUMN cancel_asked {TIME};
    ",
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

/// Which SQL a migration is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Each token of a migration template, as SQLite and as PostgreSQL write it. Times are
/// text in both (RFC 3339, which sorts as time); PostgreSQL compares them byte by byte
/// (`COLLATE "C"`) whatever the database's locale, as SQLite does.
const TOKENS: [(&str, &str, &str); 6] = [
    (
        "{ID}",
        "INTEGER PRIMARY KEY",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    ("{INT}", "INTEGER", "BIGINT"),
    ("{BOOL}", "INTEGER", "BOOLEAN"),
    ("{TRUE}", "1", "true"),
    ("{FALSE}", "0", "false"),
    ("{TIME}", "TEXT", "TEXT COLLATE \"C\""),
];

/// A migration template in `dialect`.
pub fn render(template: &str, dialect: Dialect) -> String {
    TOKENS
        .iter()
        .fold(template.to_string(), |sql, (token, sqlite, postgres)| {
            sql.replace(
                token,
                match dialect {
                    Dialect::Sqlite => sqlite,
                    Dialect::Postgres => postgres,
                },
            )
        })
}

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
        tx.execute_batch(&render(sql, Dialect::Sqlite))?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(found == 0)
}

/// What PostgreSQL adds to a step, after its rendering: step 1 numbers the commits in
/// the order applied (SQLite has its implicit `rowid`) and records the store's random id
/// (to notice a database dropped and made again, as a replaced SQLite file is noticed);
/// step 9 adds the cluster's lease and nodes (`crate::cluster`), dated by the server's
/// clock, and finds each node's runs by index; step 10 records each node's capacity and
/// labels.
const POSTGRES_EXTRA: [(usize, &str); 3] = [
    (
        0,
        "ALTER TABLE commits ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
     CREATE TABLE sundial_meta (store_id TEXT NOT NULL);
     INSERT INTO sundial_meta (store_id) VALUES (md5(random()::text || clock_timestamp()::text));",
    ),
    (
        8,
        "CREATE TABLE sundial_lease (
         id          INTEGER PRIMARY KEY CHECK (id = 1),
         holder      TEXT NOT NULL DEFAULT '',
         epoch       BIGINT NOT NULL DEFAULT 0,
         expires_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
         acquired_at TIMESTAMPTZ
     );
     INSERT INTO sundial_lease (id) VALUES (1);
     CREATE TABLE sundial_nodes (
         name         TEXT PRIMARY KEY,
         incarnation  BIGINT NOT NULL,
         instance     TEXT NOT NULL,
         started_at   TIMESTAMPTZ NOT NULL,
         heartbeat_at TIMESTAMPTZ NOT NULL,
         url          TEXT,
         version      TEXT
     );
     CREATE INDEX sundial_runs_by_node ON runs (node, state) WHERE node IS NOT NULL;",
    ),
    (
        9,
        "ALTER TABLE sundial_nodes ADD COLUMN capacity BIGINT;
     ALTER TABLE sundial_nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '';",
    ),
];

/// The advisory lock the migrations of a PostgreSQL database take, so that daemons
/// starting together migrate once. It guards nothing else.
const MIGRATION_LOCK: i64 = 0x73_756e_6469_616c; // "sundial"

/// Brings a PostgreSQL schema up to date in one transaction, under an advisory lock;
/// returns whether it was new, and the store's id. The version is kept in the table
/// `sundial_schema`.
pub fn migrate_postgres(client: &mut postgres::Client) -> Result<(bool, String), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sundial_schema (version BIGINT NOT NULL)")?;
    let found: i64 = match tx.query_opt("SELECT version FROM sundial_schema", &[])? {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO sundial_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if found > CURRENT {
        return Err(StoreError::TooNew {
            found,
            known: CURRENT,
        });
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(&render(sql, Dialect::Postgres))?;
        for (_, extra) in POSTGRES_EXTRA.iter().filter(|(s, _)| *s == step) {
            tx.batch_execute(extra)?;
        }
        tx.execute(
            "UPDATE sundial_schema SET version = $1",
            &[&(step as i64 + 1)],
        )?;
    }
    let id: String = tx
        .query_one("SELECT store_id FROM sundial_meta", &[])?
        .try_get(0)?;
    tx.commit()?;
    Ok((found == 0, id))
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
                conn.execute_batch(&render(sql, Dialect::Sqlite)).unwrap();
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

    /// SQLite's rendering of each step is, byte for byte, the text the step had before
    /// the templates: a database made by an older sundial and one made now are the same.
    /// (SHA-256 of each step's text as it was.)
    #[test]
    fn sqlite_renders_each_step_as_it_always_was() {
        use sha2::Digest;
        let golden = [
            "753d2109c6b0e7c42dbc146065020973e6667dbceef135db8b641d61193ca05d",
            "bb002f62aa9afbaaa4cd0234d627ae0d36b11e2ca6b632d761144a70c4f43b2b",
            "2cd43ce8b6e5f74656d252487f2651df8958cf7e8e18666f001160f72de0c077",
            "b1651b8b058a65e740caa3f368435cda902efa4bd34e40c4d8635f5d18f0625c",
            "2b4f34ad78e26d70c66a5820079dca95989491cfac6dac7a8fcfc8952c2bcead",
            "7b7383b7c497632275d0a515a0827b0eeab4c66757ea07e75fe1e342f472a93b",
            "ef1acef6d0717c831175764b2450525c9bc1bbdcbb3eae69b6b5d93252a68add",
            "c22af06d1ed756344594e0d3be9e6b33b7b71dabbf35fff5acd3f5a3375e0d26",
            "61736f8c5b955403e46257ab9d2d3523fdc74994686d9e10f9b49d9393a580f1",
            "768d5a3de062cfe08ff7c9048b93ee96259aefb6842e96cbc541023c6f3c16f9",
        ];
        assert_eq!(MIGRATIONS.len(), golden.len());
        for (i, (sql, want)) in MIGRATIONS.iter().zip(golden).enumerate() {
            let rendered = render(sql, Dialect::Sqlite);
            let hash = sha2::Sha256::digest(rendered.as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, want, "step {}:\n{rendered}", i + 1);
        }
    }

    /// Every token is known to both dialects, and no brace is left in either rendering.
    #[test]
    fn every_token_is_rendered_in_both_dialects() {
        for sql in MIGRATIONS {
            for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                let rendered = render(sql, dialect);
                assert!(!rendered.contains('{'), "{dialect:?}: {rendered}");
            }
        }
    }
}
