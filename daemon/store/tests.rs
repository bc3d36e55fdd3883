use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::*;

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

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

#[test]
fn a_slot_gets_one_row_whatever_happens() {
    let (dir, mut store) = open();
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
    drop(store);
    // Reopening (a restart) keeps the promise.
    let mut store = Store::open(&dir.path().join("state.db")).unwrap();
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

#[test]
fn runs_move_through_their_states() {
    let (_dir, mut store) = open();
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

#[test]
fn listings_filter_and_page_newest_first() {
    let (_dir, mut store) = open();
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

#[test]
fn cursors_only_move_forward_and_travel_with_their_slots() {
    let (_dir, mut store) = open();
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

#[test]
fn an_interval_anchor_stays_with_its_cursor_until_the_timing_changes() {
    let (_dir, mut store) = open();
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

#[test]
fn cursors_of_schedules_that_left_are_forgotten() {
    let (_dir, mut store) = open();
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

#[test]
fn a_failed_attempt_owes_a_retry_decision_until_it_is_made() {
    let (_dir, mut store) = open();
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

#[test]
fn commits_and_good_files_are_remembered() {
    let (_dir, mut store) = open();
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
fn retention_keeps_the_newest_and_the_unfinished() {
    let (_dir, mut store) = open();
    let now = at("2026-03-01T09:00:00Z");
    let mut ids = Vec::new();
    for minute in 0..6 {
        let id = store
            .insert_run(&slot("a", &format!("2026-03-01T09:0{minute}:00Z")), now)
            .unwrap()
            .unwrap();
        ids.push(id);
    }
    for id in &ids[..5] {
        store
            .finish_run(*id, RunState::Completed, Some(0), None, now)
            .unwrap();
    }
    // Keep 2 per deployment: the 4 oldest finished go; the unfinished newest stays.
    let pruned = store.prune_runs(2, at("2000-01-01T00:00:00Z")).unwrap();
    assert_eq!(pruned, ids[..4].to_vec());
    // Age: everything finished before the cut goes.
    let pruned = store.prune_runs(100, now + Duration::seconds(1)).unwrap();
    assert_eq!(pruned, vec![ids[4]]);
    assert_eq!(
        store
            .runs(&RunFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .len(),
        1
    );
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

#[test]
fn a_batch_is_one_transaction_committed_or_rolled_back_whole() {
    let (_dir, mut store) = open();
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
