use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::*;

mod retention;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn slot(deployment: &str, when: &str) -> NewRun {
    NewRun {
        deployment: deployment.into(),
        schedule_id: Some("daily".into()),
        scheduled_for: Some(at(when)),
        trigger: Trigger::Schedule,
        state: RunState::Scheduled,
        reason: None,
        attempt: 1,
        commit: "abc".into(),
        parameters: json!({"a": 1}),
        started_at: None,
        not_before: None,
        retry_of: None,
    }
}

/// The store tests run on both stores (`on_both!`): each test is a function of a
/// [`Fixture`], and its `sqlite` and `postgres` variants call it with each store.
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            #[test]
            fn sqlite() {
                super::$test(super::Fixture::sqlite(None))
            }
            #[test]
            fn postgres() {
                super::$test(super::Fixture::postgres(None))
            }
        })*
    };
}
pub(super) use on_both;

on_both!(
    a_slot_gets_one_row_whatever_happens,
    runs_move_through_their_states,
    listings_filter_and_page_newest_first,
    cursors_only_move_forward_and_travel_with_their_slots,
    an_interval_anchor_stays_with_its_cursor_until_the_timing_changes,
    cursors_of_schedules_that_left_are_forgotten,
    a_failed_attempt_owes_a_retry_decision_until_it_is_made,
    commits_and_good_files_are_remembered,
    a_batch_is_one_transaction_committed_or_rolled_back_whole,
    an_end_is_recorded_once,
);

/// Inside a batch, a method that fails undoes only itself: the batch goes on and commits
/// what the other methods wrote (the engine retries a refused row shortened, in the same
/// batch). On PostgreSQL, where a failed statement aborts the transaction, this is the
/// savepoint each method takes.
fn a_failing_method_in_a_batch_undoes_only_itself(
    limit: Option<i32>,
    make: fn(Option<i32>) -> Fixture,
) {
    let mut f = make(limit);
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    let mut big = slot("b", "2026-03-01T09:00:00Z");
    big.parameters = json!({"blob": "x".repeat(5000)});
    store.begin_batch().unwrap();
    store
        .claim_slots(&[slot("a", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    // The first row fits, the second does not: the whole claim is undone, cursor too.
    let refused = store
        .claim_slots(
            &[slot("b", "2026-03-01T08:00:00Z"), big],
            Some(SlotCursor {
                deployment: "b",
                schedule_id: "daily",
                last_slot: at("2026-03-01T09:00:00Z"),
                fingerprint: "f",
            }),
            now,
        )
        .unwrap_err();
    assert!(refused.is_row_error(), "{refused:?}");
    store
        .claim_slots(&[slot("c", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    store.commit_batch().unwrap();
    let runs = store
        .runs(&RunFilter {
            limit: 10,
            ..RunFilter::default()
        })
        .unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.deployment.as_str()).collect();
    assert_eq!(names, ["c", "a"]);
    assert_eq!(store.cursor("b", "daily").unwrap(), None);
}

mod a_failing_method_in_a_batch_undoes_only_itself {
    #[test]
    fn sqlite() {
        super::a_failing_method_in_a_batch_undoes_only_itself(Some(4096), super::Fixture::sqlite)
    }
    #[test]
    fn postgres() {
        super::a_failing_method_in_a_batch_undoes_only_itself(Some(4096), super::Fixture::postgres)
    }
}

/// A store to test, open as the engine holds it, and where it lives.
pub(super) struct Fixture {
    pub store: Box<dyn StoreWrite>,
    place: Place,
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(pg::testing::TestDatabase),
}

impl Fixture {
    /// A new SQLite store; `limit` lowers its value limit (as `$SUNDIAL_STORE_MAX_VALUE`).
    pub fn sqlite(limit: Option<i32>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        if let Some(limit) = limit {
            store
                .conn
                .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, limit)
                .unwrap();
        }
        Fixture {
            store: Box::new(store),
            place: Place::Sqlite(dir),
        }
    }

    /// A new PostgreSQL store in a database of its own on the test server.
    pub fn postgres(limit: Option<i32>) -> Fixture {
        let db = pg::testing::TestDatabase::new();
        let mut store = pg::PgStore::open(&db.target()).unwrap();
        store.limit_values(limit.map(|l| l as usize));
        Fixture {
            store: Box::new(store),
            place: Place::Postgres(db),
        }
    }

    /// Closes the store and opens it again (a restart).
    fn reopen(&mut self) {
        self.store = match &self.place {
            Place::Sqlite(dir) => Box::new(Store::open(&dir.path().join("state.db")).unwrap()),
            Place::Postgres(db) => Box::new(pg::PgStore::open(&db.target()).unwrap()),
        };
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

fn a_slot_gets_one_row_whatever_happens(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    let first = store
        .insert_run(&slot("etl", "2026-03-01T09:00:00Z"), now)
        .unwrap();
    assert!(first.is_some());
    assert_eq!(
        store
            .insert_run(&slot("etl", "2026-03-01T09:00:00Z"), now)
            .unwrap(),
        None
    );
    // Reopening (a restart) keeps the promise.
    f.reopen();
    let store = &mut *f.store;
    assert_eq!(
        store
            .insert_run(&slot("etl", "2026-03-01T09:00:00Z"), now)
            .unwrap(),
        None
    );
    let mut retry = slot("etl", "2026-03-01T09:00:00Z");
    retry.attempt = 2;
    assert!(store.insert_run(&retry, now).unwrap().is_some());
}

fn runs_move_through_their_states(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    let id = store
        .insert_run(&slot("etl", "2026-03-01T09:00:00Z"), now)
        .unwrap()
        .unwrap();
    assert!(store.start_run(id, "def", now).unwrap());
    assert!(
        !store.start_run(id, "ghi", now).unwrap(),
        "a run starts once"
    );
    store
        .record_progress(&[
            Progress::Began(id, now + Duration::milliseconds(2)),
            Progress::Spawned(id, 4242),
        ])
        .unwrap();
    store
        .finish_run(
            id,
            RunState::Failed,
            Some(3),
            None,
            now + Duration::seconds(1),
        )
        .unwrap();
    let run = store.run(id).unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.pid, Some(4242));
    assert_eq!(run.started_at, Some(now + Duration::milliseconds(2)));
    assert_eq!(run.ended_at, Some(now + Duration::seconds(1)));
    assert_eq!(run.parameters, json!({"a": 1}));
    assert_eq!(
        run.commit, "def",
        "a waiting run records the commit it starts at"
    );
    assert!(store.unfinished_runs().unwrap().is_empty());
}

fn listings_filter_and_page_newest_first(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    for minute in 0..5 {
        store
            .insert_run(&slot("a", &format!("2026-03-01T09:0{minute}:00Z")), now)
            .unwrap();
    }
    store
        .insert_run(&slot("b", "2026-03-01T09:00:00Z"), now)
        .unwrap();
    let all = store
        .runs(&RunFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let page = store
        .runs(&RunFilter {
            deployment: Some("a".into()),
            limit: 2,
            before: Some(all[2].id),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![all[3].id, all[4].id]
    );
    let scheduled = store
        .runs(&RunFilter {
            state: Some(RunState::Scheduled),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(scheduled.len(), 6);
    assert_eq!(store.last_runs().unwrap().len(), 2);
}

fn cursors_only_move_forward_and_travel_with_their_slots(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    let ids = store
        .claim_slots(
            &[slot("etl", "2026-03-01T09:00:00Z")],
            Some(SlotCursor {
                deployment: "etl",
                schedule_id: "daily",
                last_slot: at("2026-03-01T09:00:00Z"),
                fingerprint: "f1",
            }),
            now,
        )
        .unwrap();
    assert!(ids[0].is_some());
    store
        .set_cursor("etl", "daily", at("2026-02-01T00:00:00Z"), "f2")
        .unwrap();
    assert_eq!(
        store.cursor("etl", "daily").unwrap(),
        Some(Cursor {
            last_slot: at("2026-03-01T09:00:00Z"),
            fingerprint: "f2".into(),
            anchor: None,
        })
    );
    assert_eq!(store.cursor("etl", "other").unwrap(), None);
}

fn an_interval_anchor_stays_with_its_cursor_until_the_timing_changes(mut f: Fixture) {
    let store = &mut *f.store;
    let anchor = at("2026-01-02T10:17:23Z");
    store
        .set_cursor("etl", "hourly", at("2026-03-01T09:00:00Z"), "f1")
        .unwrap();
    store.set_anchor("etl", "hourly", anchor).unwrap();
    // Slots claimed under the same timing keep it.
    store
        .claim_slots(
            &[slot("etl", "2026-03-01T10:17:23Z")],
            Some(SlotCursor {
                deployment: "etl",
                schedule_id: "hourly",
                last_slot: at("2026-03-01T10:17:23Z"),
                fingerprint: "f1",
            }),
            at("2026-03-01T10:17:23Z"),
        )
        .unwrap();
    assert_eq!(
        store.cursor("etl", "hourly").unwrap().unwrap().anchor,
        Some(anchor)
    );
    // A schedule planned anew (another timing) forgets it.
    store
        .set_cursor("etl", "hourly", at("2026-03-02T00:00:00Z"), "f2")
        .unwrap();
    assert_eq!(store.cursor("etl", "hourly").unwrap().unwrap().anchor, None);
}

fn cursors_of_schedules_that_left_are_forgotten(mut f: Fixture) {
    let store = &mut *f.store;
    for (d, s) in [("etl", "daily"), ("etl", "hourly"), ("gone", "daily")] {
        store
            .set_cursor(d, s, at("2026-03-01T09:00:00Z"), "f")
            .unwrap();
    }
    let keep: std::collections::BTreeSet<(String, String)> =
        [("etl".to_string(), "daily".to_string())].into();
    let mut gone = store.forget_cursors_except(&keep).unwrap();
    gone.sort();
    assert_eq!(
        gone,
        vec![
            ("etl".to_string(), "hourly".to_string()),
            ("gone".to_string(), "daily".to_string())
        ]
    );
    assert!(store.cursor("etl", "daily").unwrap().is_some());
    assert_eq!(store.cursor("etl", "hourly").unwrap(), None);
}

/// A run's end is recorded once: a second report (a late one from a node whose run was
/// already settled, or one recorded again after a lost answer) changes nothing, and owes
/// no second retry.
fn an_end_is_recorded_once(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    let id = store
        .insert_run(&slot("etl", "2026-03-01T09:00:00Z"), now)
        .unwrap()
        .unwrap();
    store
        .finish_run(id, RunState::Failed, Some(1), None, now)
        .unwrap();
    let mut next = slot("etl", "2026-03-01T09:00:00Z");
    next.attempt = 2;
    next.state = RunState::AwaitingRetry;
    assert!(store.insert_retry(id, &next, now).unwrap().is_some());
    let later = at("2026-03-01T09:05:00Z");
    store
        .finish_run(id, RunState::Crashed, None, Some("again"), later)
        .unwrap();
    let run = store.run(id).unwrap().unwrap();
    assert_eq!(
        (run.state, run.exit_code, run.ended_at, run.retry_pending),
        (RunState::Failed, Some(1), Some(now), false)
    );
    assert!(store.retry_pending().unwrap().is_empty());
}

fn a_failed_attempt_owes_a_retry_decision_until_it_is_made(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    let first = store
        .insert_run(&slot("etl", "2026-03-01T09:00:00Z"), now)
        .unwrap()
        .unwrap();
    let other = store
        .insert_run(&slot("etl", "2026-03-01T10:00:00Z"), now)
        .unwrap()
        .unwrap();
    store
        .finish_run(first, RunState::Failed, Some(1), None, now)
        .unwrap();
    store
        .finish_run(other, RunState::Completed, Some(0), None, now)
        .unwrap();
    let owed: Vec<i64> = store
        .retry_pending()
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(owed, vec![first]);
    let mut next = slot("etl", "2026-03-01T09:00:00Z");
    next.attempt = 2;
    next.state = RunState::AwaitingRetry;
    assert!(store.insert_retry(first, &next, now).unwrap().is_some());
    assert!(store.retry_pending().unwrap().is_empty());
}

fn commits_and_good_files_are_remembered(mut f: Fixture) {
    let store = &mut *f.store;
    let commit = AppliedCommit {
        sha: "abc".into(),
        applied_at: at("2026-03-01T09:00:00Z"),
        summary: "first".into(),
        errors: vec![FileError {
            file: "prefect.yaml".into(),
            line: 3,
            column: 5,
            message: "bad".into(),
        }],
        warnings: vec![],
    };
    store
        .record_commit(&commit, &["deployments/a.yaml".into()])
        .unwrap();
    assert_eq!(store.last_commit().unwrap(), Some(commit));
    assert_eq!(
        store.good_files().unwrap(),
        vec![("deployments/a.yaml".to_string(), "abc".to_string())]
    );
    store.forget_file("deployments/a.yaml").unwrap();
    assert!(store.good_files().unwrap().is_empty());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn the_database_is_wal_with_full_sync() {
    let (_dir, store) = open();
    let mode: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let sync: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(
        (mode.as_str(), sync),
        ("wal", 2),
        "WAL and synchronous=FULL (2)"
    );
}

fn a_batch_is_one_transaction_committed_or_rolled_back_whole(mut f: Fixture) {
    let store = &mut *f.store;
    let now = at("2026-03-01T09:00:00Z");
    store.begin_batch().unwrap();
    // The store's own transactions nest inside it (as savepoints).
    store
        .claim_slots(&[slot("a", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    store
        .claim_slots(&[slot("b", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    store.rollback_batch();
    assert!(store
        .runs(&RunFilter {
            limit: 10,
            ..RunFilter::default()
        })
        .unwrap()
        .is_empty());
    store.begin_batch().unwrap();
    store
        .claim_slots(&[slot("a", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    store
        .claim_slots(&[slot("b", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    store.commit_batch().unwrap();
    assert_eq!(
        store
            .runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .unwrap()
            .len(),
        2
    );
    // Without a batch, each claim is its own transaction, as before.
    store
        .claim_slots(&[slot("c", "2026-03-01T09:00:00Z")], None, now)
        .unwrap();
    store.rollback_batch();
    assert_eq!(
        store
            .runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .unwrap()
            .len(),
        3
    );
}

/// The bytes of the connection's page cache in use (`SQLITE_DBSTATUS_CACHE_USED`).
fn cache_used(store: &Store) -> i32 {
    let (mut used, mut high) = (0, 0);
    // SAFETY: the handle is the connection's own, alive while `store` is borrowed; the call
    // only reads counters of it.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            store.conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut used,
            &mut high,
            0,
        )
    };
    assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
    used
}

/// After a burst's thousands of rows, the page cache they filled is given back, and the
/// store reads and writes as before.
#[test]
fn releasing_memory_empties_the_page_cache_and_changes_nothing() {
    let (_dir, mut store) = open();
    let now = at("2026-03-01T09:00:00Z");
    let rows: Vec<NewRun> = (0..5000)
        .map(|i| slot(&format!("deployment-{i}"), "2026-03-01T09:00:00Z"))
        .collect();
    let ids = store.claim_slots(&rows, None, now).unwrap();
    let filled = cache_used(&store);
    assert!(filled > 500_000, "{filled} bytes of cache after 5,000 rows");
    store.release_memory();
    let released = cache_used(&store);
    assert!(
        released < filled / 10,
        "{released} of {filled} bytes still cached"
    );
    let first = ids[0].unwrap();
    store
        .finish_run(first, RunState::Completed, Some(0), None, now)
        .unwrap();
    assert_eq!(
        store.run(first).unwrap().unwrap().state,
        RunState::Completed
    );
    assert_eq!(
        store.run(ids[4999].unwrap()).unwrap().unwrap().deployment,
        "deployment-4999"
    );
}
