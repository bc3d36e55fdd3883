//! Retention (`prune_runs`) on both stores, and on SQLite against the ranking of every row
//! it replaced.

use chrono::Duration;

use super::{at, on_both, slot, Fixture};
use crate::store::{time_text, RunFilter, RunState, Store};

on_both!(retention_keeps_the_newest_and_the_unfinished);

fn retention_keeps_the_newest_and_the_unfinished(mut f: Fixture) {
    let store = &mut *f.store;
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

/// Retention deletes exactly what ranking every row would pick (the statement it used
/// before it read only what it may delete): runs of several deployments in every state,
/// ended at various times, checked against that ranking over the same rows.
#[test]
fn retention_deletes_what_ranking_every_row_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    let start = at("2026-03-01T00:00:00Z");
    let states = [
        RunState::Completed,
        RunState::Failed,
        RunState::Running,
        RunState::Skipped,
        RunState::Cancelled,
        RunState::Pending,
        RunState::TimedOut,
        RunState::Crashed,
    ];
    // A fixed pseudo-random walk: deployments, states and end times interleaved.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for i in 0..600 {
        let name = format!("d{}", next(6));
        let when = start + Duration::minutes(i);
        let id = store
            .insert_run(&slot(&name, &time_text(when)), when)
            .unwrap()
            .unwrap();
        let state = states[next(states.len() as u64) as usize];
        let ended = when + Duration::seconds(next(5_000) as i64);
        match state {
            RunState::Running => {
                store.start_run(id, "abc", when).unwrap();
            }
            RunState::Pending => store.mark_pending(id).unwrap(),
            _ => store.finish_run(id, state, None, None, ended).unwrap(),
        }
    }
    let oracle = |conn: &rusqlite::Connection, keep: i64, older: &str| -> Vec<i64> {
        let mut stmt = conn
            .prepare(
                "SELECT id FROM (
                    SELECT id, state, ended_at,
                           ROW_NUMBER() OVER (PARTITION BY deployment ORDER BY id DESC) AS rank
                    FROM runs)
                 WHERE state IN ('Completed', 'Failed', 'TimedOut', 'Crashed', 'Cancelled', 'Skipped')
                   AND (rank > ?1 OR ended_at < ?2)
                 ORDER BY id",
            )
            .unwrap();
        let rows = stmt.query_map((keep, older), |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (keep, older) in [(40, start), (7, start + Duration::hours(4)), (1, start)] {
        let expected = oracle(&conn, keep as i64, &time_text(older));
        let pruned = store.prune_runs(keep, older).unwrap();
        assert!(
            !pruned.is_empty(),
            "keep {keep}: nothing to prune is no test"
        );
        assert_eq!(pruned, expected, "keep {keep}, older than {older}");
    }
}
