//! What only the PostgreSQL store has to show: the same schema as SQLite, its session
//! settings, its time limit, its errors. The store's behaviour is tested on both stores
//! in `store/tests.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::conn::Conn;
use super::testing::TestDatabase;
use super::{PgStore, Target};
use crate::store::{
    NewRun, RunFilter, RunState, SqliteStore, StoreError, StoreRead, StoreSpec, StoreWrite, Trigger,
};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn slot(deployment: &str) -> NewRun {
    NewRun {
        deployment: deployment.into(),
        schedule_id: Some("daily".into()),
        scheduled_for: Some(at("2026-03-01T09:00:00Z")),
        trigger: Trigger::Schedule,
        state: RunState::Scheduled,
        reason: None,
        attempt: 1,
        commit: "abc".into(),
        parameters: json!({}),
        started_at: None,
        not_before: None,
        retry_of: None,
    }
}

/// Each table's columns (with whether they may be NULL) and the index names.
type Schema = (BTreeMap<String, Vec<(String, bool)>>, Vec<String>);

fn sqlite_schema(store: &SqliteStore) -> Schema {
    let conn = &store.conn;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut columns = BTreeMap::new();
    for table in tables {
        let mut stmt = conn
            .prepare("SELECT name, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY name")
            .unwrap();
        let cols: Vec<(String, bool)> = stmt
            .query_map([&table], |r| {
                // A primary key is never NULL (SQLite's `notnull` does not say so).
                Ok((r.get(0)?, r.get::<_, bool>(1)? || r.get::<_, i64>(2)? > 0))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        columns.insert(table, cols);
    }
    let indexes = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (columns, indexes)
}

fn postgres_schema(store: &PgStore) -> Schema {
    store
        .conn
        .call(|c| {
            let mut columns: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
            for r in c.query(
                "SELECT table_name::text, column_name::text, is_nullable = 'NO' FROM information_schema.columns
                 WHERE table_schema = 'public' ORDER BY table_name, column_name COLLATE \"C\"",
                &[],
            )? {
                let (table, column): (String, String) = (r.get(0), r.get(1));
                // PostgreSQL's own: the version, the store id, commits' order, the cluster.
                if table.starts_with("sundial_") || (table == "commits" && column == "seq") {
                    continue;
                }
                columns.entry(table).or_default().push((column, r.get(2)));
            }
            let indexes = c
                .query(
                    "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'
                       AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE 'sundial\\_%'
                     ORDER BY indexname COLLATE \"C\"",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok((columns, indexes))
        })
        .unwrap()
}

/// Both stores have the same tables, columns (and which may be NULL) and indexes.
#[test]
fn the_schema_is_the_same_as_sqlites() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let db = TestDatabase::new();
    let postgres = PgStore::open(&db.target()).unwrap();
    let (want, got) = (sqlite_schema(&sqlite), postgres_schema(&postgres));
    assert!(want.0.contains_key("runs") && want.1.contains(&"runs_slot".to_string()));
    assert_eq!(got, want);
}

/// A second open finds the schema made (not created again), and a store written by a
/// newer sundial is refused, never changed.
#[test]
fn a_newer_schema_is_refused() {
    let db = TestDatabase::new();
    assert!(PgStore::open(&db.target()).unwrap().created());
    assert!(!PgStore::open(&db.target()).unwrap().created());
    db.execute("UPDATE sundial_schema SET version = 99");
    assert!(matches!(
        PgStore::open(&db.target()),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

/// Every session runs with the server-side time limits (so an abandoned transaction
/// ends on the server too) and in UTC.
#[test]
fn sessions_have_their_time_limits() {
    let db = TestDatabase::new();
    let store = PgStore::open(&db.target()).unwrap();
    let settings = store
        .conn
        .call(|c| {
            let r = c.query_one(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),
                        current_setting('idle_in_transaction_session_timeout'), current_setting('TimeZone')",
                &[],
            )?;
            Ok((r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, String>(3)))
        })
        .unwrap();
    assert_eq!(
        settings,
        ("5s".into(), "2s".into(), "5s".into(), "UTC".into())
    );
}

/// A call that gets no answer in time is `Unavailable` at its limit, not later; the
/// next call connects anew and works.
#[test]
fn a_call_without_an_answer_ends_at_its_limit_and_the_next_one_reconnects() {
    let db = TestDatabase::new();
    let conn = Conn::new(db.target(), Duration::from_millis(500));
    let first = conn.generation().unwrap();
    let started = Instant::now();
    let stuck = conn.call(|c| Ok(c.batch_execute("SELECT pg_sleep(3)")?));
    let waited = started.elapsed();
    assert!(
        matches!(stuck, Err(StoreError::Unavailable { .. })),
        "{stuck:?}"
    );
    assert!(stuck.as_ref().unwrap_err().is_unavailable());
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    let answer = conn.call(|c| Ok(c.query_one("SELECT 1::bigint", &[])?.get::<_, i64>(0)));
    assert_eq!(answer.unwrap(), 1);
    assert!(conn.generation().unwrap() > first, "a new connection");
}

/// A server that cannot be reached is `Unavailable`, and the message names the database
/// without the password.
#[test]
fn an_unreachable_server_is_named_without_its_password() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://sundial:s3cret-pw@127.0.0.1:{port}/jobs");
    let spec = StoreSpec::from_flag(Some(&url), std::path::Path::new("/nonexistent")).unwrap();
    let e = match spec.open_writer() {
        Err(e) => e,
        Ok(_) => panic!("opened a store on a closed port"),
    };
    assert!(e.is_unavailable(), "{e:?}");
    let text = crate::engine::error_chain(&e);
    assert!(
        text.contains(&format!("postgres://sundial@127.0.0.1:{port}/jobs")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{spec:?}").contains("s3cret"));
}

/// `--store` takes PostgreSQL URLs only; anything else is refused with what to give,
/// without repeating a password.
#[test]
fn the_store_flag_takes_a_postgres_url_or_nothing() {
    let dir = std::path::Path::new("/var/lib/sundial");
    assert!(matches!(
        StoreSpec::from_flag(None, dir),
        Ok(StoreSpec::Sqlite(p)) if p == dir.join("state.db")
    ));
    assert!(matches!(
        StoreSpec::from_flag(Some("postgresql://u@h/db"), dir),
        Ok(StoreSpec::Postgres(_))
    ));
    for bad in [
        "mysql://u:pw1@h/db",
        "/tmp/state.db",
        "postgres://u:pw1@h:notaport/db",
    ] {
        let e = StoreSpec::from_flag(Some(bad), dir).unwrap_err();
        assert!(e.starts_with("--store: "), "{e}");
        assert!(e.contains("postgres://USER@HOST"), "{e}");
        assert!(!e.contains("pw1"), "{e}");
    }
    let e =
        StoreSpec::from_flag(Some("postgres://u@h/db?sslrootcert=/nonexistent"), dir).unwrap_err();
    assert!(e.contains("sslmode=verify-full"), "{e}");
}

/// Whether a connection to `url` speaks TLS, as the server says; or why it failed.
fn speaks_tls(url: &str) -> Result<bool, String> {
    let target = Arc::new(Target::parse(url)?);
    let conn = Conn::new(target, Duration::from_secs(10));
    conn.call(|c| {
        Ok(c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )?
        .get::<_, bool>(0))
    })
    .map_err(|e| crate::engine::error_chain(&e))
}

/// TLS as libpq's `sslmode` says, against the test server (which has a CA of its own):
/// `prefer` (the default) and `require` encrypt, `disable` does not; `verify-full`
/// checks the chain and the name, `verify-ca` the chain only; a server whose CA is not
/// trusted is refused, saying so.
#[test]
fn connections_speak_tls_as_the_sslmode_says() {
    let db = TestDatabase::new();
    let ca = super::testing::server_ca();
    let ca = ca.display();
    let url = |query: &str| format!("{}?{query}", db.url);
    assert_eq!(speaks_tls(&db.url), Ok(true), "prefer");
    assert_eq!(speaks_tls(&url("sslmode=require")), Ok(true));
    assert_eq!(speaks_tls(&url("sslmode=disable")), Ok(false));
    assert_eq!(
        speaks_tls(&url(&format!("sslmode=verify-full&sslrootcert={ca}"))),
        Ok(true)
    );
    // Mozilla's roots do not include the test CA.
    let e = speaks_tls(&url("sslmode=verify-full")).unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The server's certificate names 127.0.0.1 and localhost, not db.invalid: reached
    // as db.invalid (at 127.0.0.1), the name fails verify-full, not verify-ca.
    let (user, rest) = db.url.split_once('@').unwrap();
    let port_and_db = rest.split_once(':').unwrap().1;
    let renamed = format!("{user}@db.invalid:{port_and_db}?hostaddr=127.0.0.1");
    let e = speaks_tls(&format!("{renamed}&sslmode=verify-full&sslrootcert={ca}")).unwrap_err();
    assert!(
        e.contains("certificate not valid for name \"db.invalid\""),
        "{e}"
    );
    assert_eq!(
        speaks_tls(&format!("{renamed}&sslmode=verify-ca&sslrootcert={ca}")),
        Ok(true)
    );
    // No host name to check (an address alone): TLS cannot start; `prefer` connects
    // plain, as libpq does, and `require` refuses.
    let (port, name) = port_and_db.split_once('/').unwrap();
    let addressed = format!("{user}@/{name}?hostaddr=127.0.0.1&port={port}");
    assert_eq!(speaks_tls(&addressed), Ok(false));
    let e = speaks_tls(&format!("{addressed}&sslmode=require")).unwrap_err();
    assert!(e.contains("TLS"), "{e}");
}

/// A database dropped and made again under a running daemon is another store.
#[test]
fn a_database_made_anew_is_noticed() {
    let db = TestDatabase::new();
    let store = PgStore::open(&db.target()).unwrap();
    store.check_identity().unwrap();
    db.execute("UPDATE sundial_meta SET store_id = 'another'");
    assert!(matches!(
        store.check_identity(),
        Err(StoreError::Replaced { .. })
    ));
    // An empty database in its place: no tables at all.
    db.execute("DROP TABLE sundial_meta");
    assert!(matches!(
        store.check_identity(),
        Err(StoreError::Replaced { .. })
    ));
}

/// A statement PostgreSQL refuses (a NUL byte in text, which SQLite stores) is a row
/// error, and inside a batch it undoes only its method: the batch goes on.
#[test]
fn a_refused_statement_in_a_batch_undoes_only_its_method() {
    let db = TestDatabase::new();
    let mut store = PgStore::open(&db.target()).unwrap();
    let now = at("2026-03-01T09:00:00Z");
    store.begin_batch().unwrap();
    StoreWrite::insert_run(&mut store, &slot("a"), now).unwrap();
    let e = StoreWrite::insert_run(&mut store, &slot("b\0"), now).unwrap_err();
    assert!(e.is_row_error(), "{e:?}");
    StoreWrite::insert_run(&mut store, &slot("c"), now).unwrap();
    store.commit_batch().unwrap();
    let runs = StoreRead::runs(
        &store,
        &RunFilter {
            limit: 10,
            ..RunFilter::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.deployment.as_str()).collect();
    assert_eq!(names, ["c", "a"]);
}

/// A reader opened from the same `--store` sees what the writer committed.
#[test]
fn a_reader_sees_what_the_writer_committed() {
    let db = TestDatabase::new();
    let spec = StoreSpec::Postgres(Arc::new(Target::parse(&db.url).unwrap()));
    let mut writer = spec.open_writer().unwrap();
    let id = writer
        .insert_run(&slot("etl"), at("2026-03-01T09:00:00Z"))
        .unwrap()
        .unwrap();
    let reader = spec.open_reader().unwrap();
    assert_eq!(reader.run(id).unwrap().unwrap().deployment, "etl");
}

/// A connection lost inside a batch takes the batch with it: the batch's later writes
/// fail (they are never run outside its transaction), nothing of it stays, and after the
/// rollback the store connects anew and works.
#[test]
fn a_connection_lost_in_a_batch_fails_the_batch_and_the_store_goes_on() {
    let db = TestDatabase::new();
    let mut store = PgStore::open(&db.target()).unwrap();
    let now = at("2026-03-01T09:00:00Z");
    store.begin_batch().unwrap();
    StoreWrite::insert_run(&mut store, &slot("a"), now).unwrap();
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let lost = StoreWrite::insert_run(&mut store, &slot("b"), now).unwrap_err();
    assert!(lost.is_unavailable(), "{lost:?}");
    let after = StoreWrite::insert_run(&mut store, &slot("c"), now).unwrap_err();
    assert!(
        matches!(&after, StoreError::Unavailable { detail, .. } if detail.contains("during a transaction")),
        "{after:?}"
    );
    store.rollback_batch();
    StoreWrite::insert_run(&mut store, &slot("d"), now).unwrap();
    let runs = StoreRead::runs(
        &store,
        &RunFilter {
            limit: 10,
            ..RunFilter::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.deployment.as_str()).collect();
    assert_eq!(names, ["d"]);
}

/// A statement the server refused (here a time-out; a deadlock alike) was rolled back:
/// its outcome is known, and the engine just tries again. A call that got no answer may
/// have committed: its outcome is unknown, and a leader stands by on it.
#[test]
fn a_refused_statement_has_a_known_outcome_and_a_lost_answer_has_not() {
    let db = TestDatabase::new();
    let store = PgStore::open(&db.target()).unwrap();
    let refused = store
        .conn
        .call(|c| Ok(c.batch_execute("SET statement_timeout = '10ms'; SELECT pg_sleep(1)")?))
        .unwrap_err();
    assert!(refused.is_transient(), "{refused:?}");
    assert!(!refused.outcome_unknown(), "{refused:?}");
    let lost = StoreError::Unavailable {
        what: "postgres://db".into(),
        detail: "no answer within 6 s".into(),
    };
    assert!(lost.outcome_unknown());
}

/// A session the server ended while it sat in a transaction (the node was stopped, e.g.
/// SIGSTOP, past `idle_in_transaction_session_timeout`) is a lost connection like any
/// other: the next call's FATAL error is transient, its outcome unknown, and the call
/// after it connects anew. A daemon woken from such a stop must wait it out, not exit.
#[test]
fn a_session_ended_in_a_transaction_is_a_lost_connection_not_a_fatal_error() {
    let db = TestDatabase::new();
    let store = PgStore::open(&db.target()).unwrap();
    let pid: i32 = store
        .conn
        .call(|c| {
            c.batch_execute("SET idle_in_transaction_session_timeout = '50ms'; BEGIN")?;
            let rows = c.simple_query("SELECT pg_backend_pid()")?;
            let pid = rows.iter().find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            });
            Ok(pid.unwrap().parse::<i32>().unwrap())
        })
        .unwrap();
    // The server ends the session once it has idled in its transaction past the limit.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = db.url.clone();
        let alive = std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get::<_, i64>(0)
        })
        .join()
        .unwrap();
        if alive == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server kept the idle session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next statement reads the server's FATAL error (25P03), as the engine's next
    // statement in its batch did after the stop.
    let ended = store
        .conn
        .call(|c| Ok(c.batch_execute("SAVEPOINT sundial")?))
        .unwrap_err();
    assert!(
        matches!(&ended, StoreError::Pg(e) if e.as_db_error().is_some()),
        "not the server's FATAL error: {ended:?}"
    );
    assert!(ended.is_transient(), "{ended:?}");
    assert!(ended.outcome_unknown(), "{ended:?}");
    store
        .conn
        .call(|c| Ok(c.batch_execute("SELECT 1")?))
        .expect("a new connection after the ended one");
}
