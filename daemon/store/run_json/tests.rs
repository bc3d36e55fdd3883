//! `run_json` against serde: every page, row and piece is compared with what
//! `serde_json` writes for the same run (`RunJson::from(&Run)`).

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::api::types::RunJson;
use crate::store::{NewRun, Progress, RunFilter, Store};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

fn run(deployment: &str, trigger: Trigger, state: RunState, parameters: Value) -> NewRun {
    NewRun {
        deployment: deployment.into(),
        schedule_id: (trigger != Trigger::Manual).then(|| "daily".into()),
        scheduled_for: (trigger != Trigger::Manual).then(|| at("2026-03-01T09:00:00.250Z")),
        trigger,
        state,
        reason: None,
        attempt: 1,
        commit: "abc".into(),
        parameters,
        started_at: None,
        not_before: None,
        retry_of: None,
    }
}

/// The page `runs_json` writes, and the one serde writes from `runs`; both must agree,
/// also on failing (then `None`).
#[track_caller]
fn assert_same_page(store: &Store, filter: &RunFilter) -> Option<String> {
    let mut ours = String::new();
    let written = store.runs_json(filter, &mut ours);
    let serde = store.runs(filter).map(|runs| {
        let page: Vec<RunJson> = runs.iter().map(RunJson::from).collect();
        let last = runs.last().map(|r| r.id);
        (runs.len(), last, serde_json::to_string(&page).unwrap())
    });
    match (written, serde) {
        (Ok((count, last)), Ok((n, l, text))) => {
            assert_eq!(ours, text);
            assert_eq!((count, last), (n, l));
            Some(ours)
        }
        (Err(_), Err(_)) => None,
        (ours, serde) => panic!("runs_json: {ours:?}, runs: {:?}", serde.map(|s| s.2)),
    }
}

fn every(limit: usize) -> RunFilter {
    RunFilter {
        limit,
        ..RunFilter::default()
    }
}

#[test]
fn pages_are_written_as_serde_writes_them() {
    let (_dir, mut store) = open();
    let now = at("2026-03-01T09:00:01.125Z");
    let mut ids = Vec::new();
    let names = [
        "etl",
        "quo\"te\\back",
        "ctl\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}",
        "été ✓ 🦀",
        "",
    ];
    let parameters = [
        json!({"batch_size": 500, "day": 3}),
        json!({}),
        json!({"z": 1, "a": [1, -2, 3.5, 1e300, null, true, false], "n": {"deep": [{}]}}),
        json!({"text": "a\"b\\c\n\u{1}/é🦀", "big": 18_446_744_073_709_551_615u64, "neg": -9_223_372_036_854_775_808i64}),
        json!({"f": -0.0, "g": 0.1, "h": 100.0}),
    ];
    for (i, trigger) in Trigger::ALL.into_iter().enumerate() {
        for (j, state) in RunState::ALL.into_iter().enumerate() {
            let k = i * RunState::ALL.len() + j;
            let mut new = run(
                names[k % names.len()],
                trigger,
                state,
                parameters[k % 5].clone(),
            );
            new.attempt = 1 + (k % 3) as u32;
            new.reason = k.is_multiple_of(2).then(|| format!("why \"{k}\"\n"));
            new.retry_of = (trigger == Trigger::Retry && k % 4 != 1).then_some(k as i64);
            new.schedule_id = new.schedule_id.map(|s| format!("{s}-{k}\u{0}"));
            new.scheduled_for = new
                .scheduled_for
                .map(|t| t + Duration::milliseconds(k as i64 * 1001));
            new.not_before = k.is_multiple_of(5).then(|| now + Duration::seconds(30));
            if state == RunState::Running {
                new.started_at = Some(now + Duration::milliseconds(7));
            }
            ids.push(store.insert_run(&new, now).unwrap().unwrap());
        }
    }
    store
        .record_progress(&[
            Progress::Began(ids[2], now),
            Progress::Spawned(ids[2], 4242),
        ])
        .unwrap();
    store.start_run(ids[0], "def", now).unwrap();
    store
        .finish_run(
            ids[0],
            RunState::Failed,
            Some(-9),
            Some("killed"),
            now + Duration::seconds(3),
        )
        .unwrap();
    store
        .finish_run(ids[1], RunState::Completed, Some(i32::MAX), None, now)
        .unwrap();

    let all = assert_same_page(&store, &every(1000)).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&all).unwrap().len(),
        ids.len()
    );
    // A page of none, of one, and pages picked by each filter.
    let none = RunFilter {
        before: Some(1),
        ..every(50)
    };
    assert_eq!(assert_same_page(&store, &none).unwrap(), "[]");
    assert_same_page(&store, &every(1));
    for filter in [
        RunFilter {
            deployment: Some("etl".into()),
            ..every(7)
        },
        RunFilter {
            state: Some(RunState::Running),
            ..every(50)
        },
        RunFilter {
            trigger: Some(Trigger::Retry),
            before: Some(ids[30]),
            ..every(3)
        },
        RunFilter {
            since: Some(now),
            until: Some(now + Duration::days(1)),
            ..every(50)
        },
    ] {
        assert_ne!(
            assert_same_page(&store, &filter).unwrap(),
            "[]",
            "{filter:?}"
        );
    }
}

/// Rows in forms sundial does not write itself (older versions, hand edits) take the slow
/// way and still come out as serde writes them, or fail as `runs` fails.
#[test]
fn rows_in_other_forms_are_written_as_serde_writes_them() {
    let (_dir, mut store) = open();
    let now = at("2026-03-01T09:00:00Z");
    let id = store
        .insert_run(
            &run("etl", Trigger::Catchup, RunState::Completed, json!({})),
            now,
        )
        .unwrap()
        .unwrap();
    let set = |store: &Store, column: &str, value: &dyn rusqlite::ToSql| {
        store
            .conn
            .execute(
                &format!("UPDATE runs SET {column} = ?1 WHERE id = ?2"),
                (value, id),
            )
            .unwrap();
    };
    // Each time, and whether it is a time at all.
    let times = [
        ("2026-03-01T09:00:00Z", true),
        ("2026-03-01T09:00:00.5+02:00", true),
        ("2026-03-01T09:00:00.123456789Z", true),
        ("2026-03-01t09:00:00.000z", true),
        ("2026-03-01T09:00:00.000-00:00", true),
        ("2026-03-01 09:00:00.000Z", true),
        ("0000-01-01T00:00:00.000Z", true),
        ("9999-12-31T23:59:59.999Z", true),
        ("2024-02-29T23:59:60.000Z", true),
        ("2026-02-30T00:00:00.000Z", false),
        ("2026-13-01T00:00:00.000Z", false),
        ("2026-03-01T24:00:00.000Z", false),
        ("2026-03-01T09:60:00.000Z", false),
        ("yesterday", false),
    ];
    for column in [
        "scheduled_for",
        "started_at",
        "ended_at",
        "created_at",
        "not_before",
    ] {
        for (time, valid) in times {
            set(&store, column, &time);
            let page = assert_same_page(&store, &every(5));
            assert_eq!(page.is_some(), valid, "{column} {time}");
        }
        set(&store, column, &"2026-03-01T09:00:00.000Z");
    }
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    // Each text, and whether it is JSON.
    for (text, valid) in [
        (r#"{"a": 1}"#.to_string(), true),
        (r#" {"a":1}"#.into(), true),
        (r#"{"b":1,"a":2,"b":3}"#.into(), true),
        (
            r#"{"s":"\u0041\/\u001F\u001f\u0008\b\u00e9\ud83e\udd80"}"#.into(),
            true,
        ),
        (
            r#"{"n":[1e3,1E3,-0,0,-1,1.50,12345678901234567890,-1234567890123456789]}"#.into(),
            true,
        ),
        (r#"{"n":-0}"#.into(), true),
        (
            r#"{"n":[0,-1,123456789012345678,-123456789012345678,1234567890123456789]}"#.into(),
            true,
        ),
        (r#""text""#.into(), true),
        ("null".into(), true),
        (deep(100), true),
        (deep(200), false),
        ("{".into(), false),
        (r#"{"a":01}"#.into(), false),
        (r#"{"a":tru}"#.into(), false),
        (r#"{"a":"\x"}"#.into(), false),
        ("{}{}".into(), false),
        ("".into(), false),
    ] {
        set(&store, "parameters", &text);
        let page = assert_same_page(&store, &every(5));
        assert_eq!(page.is_some(), valid, "{text}");
    }
    // Each escape alone: those serde writes otherwise are not copied.
    for escape in [
        "u0000", "u001f", "u001F", "u0008", "u0009", "u000a", "u000c", "u000d", "u0020", "u007f",
        "u00e9", "b", "t", "n", "f", "r", "\"", "\\", "/",
    ] {
        set(&store, "parameters", &format!(r#"{{"s":"\{escape}"}}"#));
        assert!(assert_same_page(&store, &every(5)).is_some(), "{escape}");
    }
    set(&store, "parameters", &"{}");
    // Each value, and whether the row can be read with it.
    for (column, value, valid) in [
        ("state", Value::from("completed"), true),
        ("state", Value::from("Done"), false),
        ("trigger", Value::from("Schedule"), false),
        ("deployment", Value::from(7), true),
        ("attempt", Value::from(-1), false),
        ("exit_code", Value::from(i64::MAX), false),
        ("pid", Value::from(-1), false),
        ("retry_pending", Value::from("yes"), false),
        ("commit_sha", Value::from(42), true),
    ] {
        let sql = match &value {
            Value::String(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap()),
            _ => rusqlite::types::Value::Null,
        };
        let before = store
            .conn
            .query_row(
                &format!("SELECT {column} FROM runs WHERE id = ?1"),
                [id],
                |r| r.get::<_, rusqlite::types::Value>(0),
            )
            .unwrap();
        set(&store, column, &sql);
        let page = assert_same_page(&store, &every(5));
        assert_eq!(page.is_some(), valid, "{column} {value}");
        set(&store, column, &before);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn strings_are_escaped_as_serde_escapes_them(text in any::<String>(), ctl in 0u8..0x80) {
        let text = format!("{text}{}", char::from(ctl));
        let mut ours = String::new();
        push_json_str(&mut ours, &text);
        prop_assert_eq!(ours, serde_json::to_string(&text).unwrap());
    }

    #[test]
    fn a_time_copied_is_the_time_written_back(millis in -62_167_219_200_000i64..253_402_300_800_000) {
        let time = DateTime::from_timestamp_millis(millis).unwrap();
        let text = time_text(time);
        prop_assert!(is_time_text(&text), "{}", text);
        let secs = Time::read(&text).unwrap().secs();
        prop_assert_eq!(secs.as_str(), time.to_rfc3339_opts(SecondsFormat::Secs, true));
    }

    #[test]
    fn parameters_copied_are_the_parameters_serde_writes(value in json_value(), edits in json_edits()) {
        // Serde's own compact text is copied (when its numbers are small integers).
        let text = value.to_string();
        if small_integers(&value) {
            prop_assert!(canonical_json(&text), "{}", text);
        }
        // Whatever the scanner lets through is what serde writes for it.
        let mut edited = text.clone();
        for (at, insert) in edits {
            let mut at = at % (edited.len() + 1);
            while !edited.is_char_boundary(at) {
                at -= 1;
            }
            edited.insert_str(at, insert);
        }
        for text in [&text, &edited, &serde_json::to_string_pretty(&value).unwrap()] {
            if canonical_json(text) {
                let parsed: Value = serde_json::from_str(text).unwrap();
                prop_assert_eq!(&parsed.to_string(), text);
            }
        }
    }
}

/// Whether every number in `value` is an integer of at most 18 digits.
fn small_integers(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_i64().is_some_and(|n| n.unsigned_abs() < 10u64.pow(18)),
        Value::Array(items) => items.iter().all(small_integers),
        Value::Object(map) => map.len() <= MAX_KEYS && map.values().all(small_integers),
        _ => true,
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z\"\\\\/\u{0}-\u{1f}\u{7f}é🦀]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::vec(("[a-c\"\\\\\u{1}é]{0,3}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn json_edits() -> impl Strategy<Value = Vec<(usize, &'static str)>> {
    proptest::collection::vec(
        (
            0usize..400,
            prop::sample::select(vec![
                " ",
                ",",
                ":",
                "\"",
                "\\",
                "\\u0041",
                "\\u001F",
                "\\u001f",
                "\\/",
                "\\n",
                "\\u0009",
                "0",
                "-",
                "-0",
                "1",
                ".5",
                "e3",
                "[",
                "]",
                "{",
                "}",
                "{\"a\":1}",
                "\"a\":1,",
                "null",
                "tru",
                "é",
                "\u{1}",
            ]),
        ),
        0..3,
    )
}
