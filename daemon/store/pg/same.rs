//! The same answers from both stores: one script of writes (runs through their states,
//! retries, commits, cursors, the notification ledger, pauses, breaches) is played on a
//! SQLite store and on a PostgreSQL store, and every read of the traits is asked after it.
//! Each answer is written down as text; the two transcripts must be equal, line by line.
//! Lists whose order neither store promises are sorted first.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::testing::TestDatabase;
use super::PgStore;
use crate::notify::{Event, Health, Payload, Target};
use crate::sla::Breach;
use crate::store::{
    AppliedCommit, FileError, NewBreach, NewNotice, NewRun, Noticed, Progress, RunFilter, RunState,
    SlotCursor, SqliteStore, StoreWrite, Trigger,
};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn row(deployment: &str, when: Option<&str>, state: RunState, attempt: u32) -> NewRun {
    NewRun {
        deployment: deployment.into(),
        schedule_id: when.map(|_| "hourly".into()),
        scheduled_for: when.map(at),
        trigger: match (when, attempt) {
            (None, _) => Trigger::Manual,
            (_, 1) => Trigger::Schedule,
            _ => Trigger::Retry,
        },
        state,
        reason: None,
        attempt,
        commit: "c1".into(),
        parameters: json!({"b": 1, "a": [1, 2]}),
        started_at: None,
        not_before: None,
        retry_of: None,
    }
}

fn notice(event: Event, run_id: Option<i64>, target: Target) -> NewNotice {
    NewNotice {
        target,
        payload: Payload {
            event,
            deployment: "etl".into(),
            run_id,
            slot: None,
            state: Some("Failed".into()),
            attempt: Some(1),
            trigger: None,
            started_at: None,
            ended_at: None,
            duration_seconds: Some(1.5),
            exit_code: Some(1),
            reason: None,
            commit: Some("c1".into()),
            log_tail: "last line\n".into(),
            url: "http://x/runs/1".into(),
            text: "etl failed".into(),
            note: None,
            sla: None,
        },
    }
}

fn breach(subject: &str, run_id: Option<i64>) -> Breach {
    Breach {
        sla: "fast".into(),
        kind: "time_to_completion",
        severity: "error".into(),
        subject: subject.into(),
        run_id,
        detail: "took too long".into(),
    }
}

/// Plays the script on `store`; returns every answer, one a line.
fn transcript(store: &mut dyn StoreWrite) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    let now = at("2026-03-01T12:00:00Z");
    let hook = Target::Webhook {
        url: "https://hooks.example/x".into(),
        headers: vec![("X-Key".into(), "1".into())],
    };
    let ping = Target::Healthchecks {
        url: "https://hc.example/p".into(),
    };

    // Commits, applied in order; the second is applied again.
    for (sha, time, files) in [
        (
            "c1",
            "2026-03-01T08:00:00Z",
            vec!["b.yaml", "a.yaml", "B.yaml"],
        ),
        ("c2", "2026-03-01T09:00:00Z", vec!["a.yaml"]),
        ("c2", "2026-03-01T09:00:00Z", vec![]),
    ] {
        let commit = AppliedCommit {
            sha: sha.into(),
            applied_at: at(time),
            summary: format!("commit {sha}"),
            errors: vec![FileError {
                file: "x.yaml".into(),
                line: 1,
                column: 2,
                message: "bad".into(),
            }],
            warnings: vec![],
        };
        let files: Vec<String> = files.into_iter().map(String::from).collect();
        say(
            "record_commit",
            format!("{:?}", store.record_commit(&commit, &files)),
        );
    }
    store.forget_file("b.yaml").unwrap();

    // Slots, a retry, a manual run, a missed summary.
    let cursor = SlotCursor {
        deployment: "etl",
        schedule_id: "hourly",
        last_slot: at("2026-03-01T10:00:00Z"),
        fingerprint: "f1",
    };
    let rows = [
        row("etl", Some("2026-03-01T09:00:00Z"), RunState::Scheduled, 1),
        row("etl", Some("2026-03-01T10:00:00Z"), RunState::Scheduled, 1),
    ];
    say(
        "claim",
        format!("{:?}", store.claim_slots(&rows, Some(cursor), now)),
    );
    let mut missed = row("etl", Some("2026-03-01T07:00:00Z"), RunState::Skipped, 1);
    missed.reason = Some("missed: 2 slots".into());
    say("missed", format!("{:?}", store.insert_run(&missed, now)));
    let mut manual = row("report", None, RunState::Running, 1);
    manual.started_at = Some(at("2026-03-01T11:00:00.250Z"));
    say("manual", format!("{:?}", store.insert_run(&manual, now)));
    say(
        "start",
        format!(
            "{:?}",
            store.start_run(1, "c2", at("2026-03-01T09:00:02.5Z"))
        ),
    );
    say(
        "start twice",
        format!("{:?}", store.start_run(1, "c2", now)),
    );
    store
        .record_progress(&[
            Progress::Began(1, at("2026-03-01T09:00:03Z")),
            Progress::Spawned(1, 4242),
        ])
        .unwrap();
    store
        .finish_run(
            1,
            RunState::Failed,
            Some(1),
            None,
            at("2026-03-01T09:01:00Z"),
        )
        .unwrap();
    let mut retry = row(
        "etl",
        Some("2026-03-01T09:00:00Z"),
        RunState::AwaitingRetry,
        2,
    );
    retry.not_before = Some(at("2026-03-01T09:02:00Z"));
    retry.retry_of = Some(1);
    say("retry", format!("{:?}", store.insert_retry(1, &retry, now)));
    store.mark_pending(5).unwrap();
    store
        .start_run(5, "c2", at("2026-03-01T09:02:00Z"))
        .unwrap();
    store
        .finish_run(
            5,
            RunState::Completed,
            Some(0),
            None,
            at("2026-03-01T09:03:00Z"),
        )
        .unwrap();
    store
        .finish_run(2, RunState::Cancelled, None, Some("cancelled by hand"), now)
        .unwrap();
    store.retry_decided(2).unwrap();

    // Cursors and anchors.
    store
        .set_anchor("etl", "hourly", at("2026-01-01T00:30:00Z"))
        .unwrap();
    store
        .set_cursor("etl", "daily", at("2026-03-01T00:00:00Z"), "f9")
        .unwrap();
    store
        .set_cursor("gone", "hourly", at("2026-03-01T00:00:00Z"), "f9")
        .unwrap();
    let keep: BTreeSet<(String, String)> = [
        ("etl".to_string(), "hourly".to_string()),
        ("etl".to_string(), "daily".to_string()),
    ]
    .into();
    say(
        "forget except",
        format!("{:?}", store.forget_cursors_except(&keep)),
    );
    let daily = [("etl".to_string(), "daily".to_string())];
    say("forget", format!("{:?}", store.forget_cursors(&daily)));

    // The ledger: health, a pass, the outbox, pauses, breaches.
    let health = Health {
        failing: true,
        failures_in_a_row: 2,
        last_success: Some(at("2026-03-01T08:00:00Z")),
        watch_since: None,
    };
    store.set_health("etl", &health).unwrap();
    say("marked", format!("{:?}", store.marked_runs(10)));
    let noticed = Noticed {
        runs: vec![(1, RunState::Failed), (2, RunState::Cancelled)],
        health: vec![("report".into(), Health::default())],
        outbox: vec![
            notice(Event::Failure, Some(1), hook.clone()),
            notice(Event::Start, Some(4), ping.clone()),
            notice(Event::Paused, None, hook.clone()),
        ],
        pauses: vec![("etl".into(), "paused after 2 failures".into())],
        breaches: vec![NewBreach {
            deployment: "etl".into(),
            breach: breach("run:1", Some(1)),
            notices: vec![notice(Event::Sla, Some(1), hook.clone())],
        }],
    };
    say(
        "noticed",
        format!("{:?}", store.record_noticed(&noticed, now)),
    );
    store.lease_notice(1, at("2026-03-01T12:01:00Z")).unwrap();
    store
        .notice_failed(1, "HTTP 500", Some(at("2026-03-01T12:05:00Z")), now)
        .unwrap();
    store.notice_failed(2, "no route", None, now).unwrap();
    store.notice_delivered(3, now).unwrap();
    let more = [NewBreach {
        deployment: "report".into(),
        breach: breach("stale:2026-03-01", None),
        notices: vec![notice(Event::Sla, None, ping.clone())],
    }];
    say(
        "breaches",
        format!("{:?}", store.record_breaches(&more, now)),
    );
    say("pauses", format!("{:?}", store.pauses()));
    say("resume", format!("{:?}", store.resume("etl")));
    say("resume again", format!("{:?}", store.resume("etl")));
    say(
        "prune outbox",
        format!("{:?}", store.prune_outbox(at("2026-01-01T00:00:00Z"))),
    );

    // Every read.
    for id in 1..=7 {
        say(&format!("run {id}"), format!("{:?}", store.run(id)));
    }
    for filter in [
        RunFilter {
            limit: 100,
            ..RunFilter::default()
        },
        RunFilter {
            deployment: Some("etl".into()),
            state: Some(RunState::Completed),
            limit: 100,
            ..RunFilter::default()
        },
        RunFilter {
            trigger: Some(Trigger::Manual),
            limit: 100,
            ..RunFilter::default()
        },
        RunFilter {
            since: Some(at("2026-03-01T09:00:00Z")),
            until: Some(at("2026-03-01T10:00:00Z")),
            before: Some(5),
            limit: 2,
            ..RunFilter::default()
        },
        RunFilter {
            limit: usize::MAX,
            ..RunFilter::default()
        },
    ] {
        say(
            "runs",
            format!("{:?}", store.runs(&filter).map(|r| ids(&r))),
        );
    }
    let first = store.run(1).unwrap().unwrap();
    say(
        "attempts",
        format!("{:?}", store.attempts_of(&first).map(|r| ids(&r))),
    );
    say(
        "retry pending",
        format!("{:?}", store.retry_pending().map(|r| ids(&r))),
    );
    say(
        "unfinished",
        format!("{:?}", store.unfinished_runs().map(|r| ids(&r))),
    );
    say(
        "last runs",
        format!("{:?}", store.last_runs().map(|r| sorted(ids(&r)))),
    );
    say(
        "slot rows",
        format!(
            "{:?}",
            store
                .slot_rows(
                    "etl",
                    at("2026-03-01T09:00:00Z"),
                    at("2026-03-01T10:00:00Z"),
                    10
                )
                .map(|r| ids(&r))
        ),
    );
    say(
        "first slots",
        format!("{:?}", store.first_slots("etl").map(sorted)),
    );
    say("cursor", format!("{:?}", store.cursor("etl", "hourly")));
    say(
        "cursor gone",
        format!("{:?}", store.cursor("gone", "hourly")),
    );
    say("last commit", format!("{:?}", store.last_commit()));
    say("good files", format!("{:?}", store.good_files()));
    say(
        "newest",
        format!(
            "{:?}",
            store
                .newest_runs(&["report", "etl", "none"])
                .map(|r| ids(&r))
        ),
    );
    let runs = store
        .runs(&RunFilter {
            limit: 100,
            ..RunFilter::default()
        })
        .unwrap();
    say(
        "slot attempts",
        format!(
            "{:?}",
            store
                .slot_attempts(&runs)
                .map(|m| m.into_iter().collect::<BTreeMap<_, _>>())
        ),
    );
    for deployment in [None, Some("etl")] {
        say(
            "histogram",
            format!(
                "{:?}",
                store.run_histogram(
                    deployment,
                    at("2026-03-01T07:00:00Z"),
                    Duration::hours(1),
                    6
                )
            ),
        );
    }
    say(
        "run counts",
        format!(
            "{:?}",
            store
                .run_counts()
                .map(|c| sorted(c.iter().map(|c| format!("{c:?}")).collect()))
        ),
    );
    let late = store.lateness(&[1.0, 2.5, 60.0]).unwrap();
    say(
        "lateness",
        format!("{} {:.3} {:?}", late.count, late.sum_seconds, late.at_most),
    );
    say("applied at", format!("{:?}", store.applied_at("c2")));
    say("applied at none", format!("{:?}", store.applied_at("c9")));
    say(
        "marked after",
        format!(
            "{:?}",
            store
                .marked_runs(10)
                .map(|m| m.iter().map(|(r, s)| (r.id, *s)).collect::<Vec<_>>())
        ),
    );
    say("health", format!("{:?}", store.health("etl")));
    say("health none", format!("{:?}", store.health("none")));
    say(
        "due",
        format!("{:?}", store.due_notices(at("2026-03-01T13:00:00Z"), 10)),
    );
    say("next notice", format!("{:?}", store.next_notice_at()));
    say(
        "next notice after",
        format!("{:?}", store.next_notice_after(now)),
    );
    say("outbox", format!("{:?}", store.outbox_counts()));
    say("notices of 1", format!("{:?}", store.notices_of(1)));
    say(
        "has breach",
        format!("{:?}", store.has_breach("etl", "fast", "run:1")),
    );
    say(
        "has no breach",
        format!("{:?}", store.has_breach("etl", "fast", "run:2")),
    );
    say("breaches all", format!("{:?}", store.breaches(None, 10)));
    say(
        "breaches etl",
        format!("{:?}", store.breaches(Some("etl"), 10)),
    );
    say(
        "breach counts",
        format!("{:?}", store.breach_counts().map(sorted)),
    );
    say(
        "prune runs",
        format!("{:?}", store.prune_runs(1, at("2026-03-01T09:02:30Z"))),
    );
    say(
        "after prune",
        format!(
            "{:?}",
            store
                .runs(&RunFilter {
                    limit: 100,
                    ..RunFilter::default()
                })
                .map(|r| ids(&r))
        ),
    );

    // Last, what writes nothing: a slot that has its row, a breach recorded already. (On
    // PostgreSQL a refused insert still uses up an id, so ids after it would differ.)
    say(
        "claim again",
        format!(
            "{:?}",
            store.claim_slots(std::slice::from_ref(&retry), None, now)
        ),
    );
    say(
        "noticed again",
        format!("{:?}", store.record_noticed(&noticed, now)),
    );
    let again = [NewBreach {
        deployment: "etl".into(),
        breach: breach("run:1", Some(1)),
        notices: vec![notice(Event::Sla, Some(1), hook.clone())],
    }];
    say(
        "breaches again",
        format!("{:?}", store.record_breaches(&again, now)),
    );
    say(
        "breach counts again",
        format!("{:?}", store.breach_counts().map(sorted)),
    );
    say("outbox again", format!("{:?}", store.outbox_counts()));
    out
}

fn ids(runs: &[crate::store::Run]) -> Vec<i64> {
    runs.iter().map(|r| r.id).collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn both_stores_give_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let db = TestDatabase::new();
    let mut postgres = PgStore::open(&db.target()).unwrap();
    let want = transcript(&mut sqlite);
    let got = transcript(&mut postgres);
    assert_eq!(want.len(), got.len());
    for (want, got) in want.iter().zip(&got) {
        assert_eq!(got, want);
    }
    // The script reached what it means to: runs, outbox rows, breaches.
    assert!(
        want.iter().any(|l| l.starts_with("run 5: Ok(Some(Run {")),
        "{want:#?}"
    );
    assert!(
        want.iter().any(|l| l.starts_with("due: Ok([Notice {")),
        "{want:#?}"
    );
}
