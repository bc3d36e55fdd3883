//! Manifest-like documents for property tests: keys from the JSON Schema, schedule
//! strings, placeholders, anchors and aliases (alias bombs too), nesting past the depth
//! bound, and now and then a broken byte. [`document`] renders them as YAML text.
//!
//! The bounded property: whatever such a document holds, loading and validating it takes
//! less than a deadline on a 2 MiB stack, and what loading built stays within every bound
//! of `manifest::limits`, measured on the tree itself.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value as Json;

use super::bounds::within;
use crate::manifest::limits::{expanded_bytes_limit, MAX_DEPTH, MAX_NODES};
use crate::manifest::{yaml, Node, Value};
use crate::validate::{render, schema::SCHEMA_TEXT, validate, SourceFile, Validation};

/// A value of a generated document.
#[derive(Debug, Clone)]
enum Doc {
    /// Rendered as is (plain, quoted, or an alias).
    Text(String),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
    /// `levels` lists or mappings around a value, in one line.
    Nested {
        levels: usize,
        maps: bool,
        inner: Box<Doc>,
    },
}

/// Every property name the manifest schema declares, at any depth.
fn schema_keys() -> Vec<String> {
    fn collect(value: &Json, keys: &mut Vec<String>) {
        match value {
            Json::Object(map) => {
                if let Some(Json::Object(properties)) = map.get("properties") {
                    keys.extend(properties.keys().cloned());
                }
                map.values().for_each(|v| collect(v, keys));
            }
            Json::Array(items) => items.iter().for_each(|v| collect(v, keys)),
            _ => {}
        }
    }
    let schema: Json = serde_json::from_str(SCHEMA_TEXT).expect("the schema is JSON");
    let mut keys = Vec::new();
    collect(&schema, &mut keys);
    keys.sort();
    keys.dedup();
    keys
}

/// A double-quoted YAML scalar.
fn quoted(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

fn cron_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "*", "*/5", "0", "59", "1-5", "L", "5#2", "L5", "mon-fri", "jan", "?", "61", "1,2,3",
        "22-2", "0/15", "7", "sun", "31", "feb", "-1", "",
    ]);
    prop_oneof![
        6 => prop::collection::vec(token, 4..=6).prop_map(|fields| fields.join(" ")),
        1 => prop::sample::select(vec!["@daily", "@hourly", "@yearly", "@every", "@reboot"])
            .prop_map(str::to_string),
    ]
}

fn interval_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "60",
            "PT10M",
            "P1D",
            "P1W",
            "01:00:00",
            "0",
            "-5",
            "1e3",
            "P1M",
            "0.0001",
            "PT",
            "P1DT1H",
            "99999999999999",
            "1.5",
            "00:00:00.5",
            "PT0.5S",
        ])
        .prop_map(str::to_string),
        (1u64..100_000).prop_map(|s| s.to_string()),
    ]
}

fn rrule_text() -> impl Strategy<Value = String> {
    let freq = prop::sample::select(vec![
        "DAILY",
        "WEEKLY",
        "MONTHLY",
        "MINUTELY",
        "SECONDLY",
        "YEARLY",
        "HOURLY",
        "SOMETIMES",
    ]);
    let part = prop::sample::select(vec![
        ";INTERVAL=3",
        ";BYDAY=MO,FR",
        ";COUNT=3",
        ";UNTIL=20300101T000000Z",
        ";BYHOUR=9",
        ";BYMINUTE=0,30",
        ";BYMONTHDAY=31",
        ";BYSETPOS=-1",
        ";WKST=SU",
        ";BYYEARDAY=366",
        ";INTERVAL=0",
        "",
    ]);
    let start = prop::sample::select(vec![
        "",
        "DTSTART:20260101T090000\n",
        "DTSTART;TZID=Europe/Berlin:20260329T023000\n",
        "DTSTART:20200229T000000Z\n",
    ]);
    (start, freq, prop::collection::vec(part, 0..3)).prop_map(|(start, freq, parts)| {
        let rule = if start.is_empty() { "" } else { "RRULE:" };
        format!("{start}{rule}FREQ={freq}{}", parts.concat())
    })
}

/// A scalar as it would be written: plain or quoted.
fn scalar() -> impl Strategy<Value = Doc> {
    let words = prop::sample::select(vec![
        "etl",
        "flows/etl.py:run",
        "pkg.mod:func",
        "../escape",
        "/abs/path",
        "true",
        "yes",
        "off",
        "null",
        "~",
        "0",
        "-1",
        "1.5",
        "1.10",
        "0x1f",
        "0755",
        ".inf",
        "UTC",
        "Europe/Berlin",
        "Mars/Olympus",
        "Etc/GMT+5",
        "2026-01-01T09:00:00",
        "2026-01-01",
        "ENQUEUE",
        "CANCEL_NEW",
        "all",
        "latest",
        "none",
        "python -m etl",
        "echo a | wc",
        "{{ $TOKEN }}",
        "{{ clone.directory }}/sub",
        "{{ prefect.variables.x }}",
        "{{ flow_run.id }}",
        "{{ 1 + 2 }}",
        "requirements.txt",
        "",
    ]);
    prop_oneof![
        4 => words.prop_map(str::to_string),
        3 => cron_text(),
        2 => interval_text(),
        2 => rrule_text(),
        2 => "[a-z0-9 :#{}\\[\\],&*!|>'\"-]{0,16}",
    ]
    .prop_flat_map(|text| {
        // Plain when YAML reads it back as the same text, quoted otherwise; now and then
        // an unsafe text is left plain anyway, to break the syntax.
        let plain = Just(Doc::Text(text.clone()));
        let quoted = Just(Doc::Text(quoted(&text)));
        if plain_is_safe(&text) {
            prop_oneof![plain, quoted].boxed()
        } else {
            prop_oneof![60 => quoted, 1 => plain].boxed()
        }
    })
}

/// Whether `text` can be written as a plain scalar inside a flow collection.
fn plain_is_safe(text: &str) -> bool {
    let starts_badly = text.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c));
    !text.is_empty()
        && !starts_badly
        && !text.ends_with([' ', ':'])
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.contains(['\n', '{', '}', '[', ']', ','])
}

/// A key: from the schema mostly, sometimes a near miss, a merge or anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(schema_keys()),
        1 => prop::sample::select(vec![
            "schedulez", "timezone", "env", "command", "tz", "is_paused", "prefect.deployments.steps.run_shell_script",
            "prefect.deployments.steps.set_working_directory", "prefect.deployments.steps.git_clone",
            "prefect.deployments.steps.pip_install_requirements", "script", "directory",
            "requirements_file", "id", "limit", "collision_strategy",
        ])
        .prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
    ]
}

/// Any value: scalars, lists and mappings a few levels deep, aliases of `&a0` (which
/// `definitions` always has) and rarely a value nested to around [`MAX_DEPTH`].
fn value() -> impl Strategy<Value = Doc> {
    values(true)
}

/// [`value`], without aliases when `aliases` is false (inside the anchored values).
fn values(aliases: bool) -> impl Strategy<Value = Doc> {
    let alias_weight = if aliases { 2 } else { 0 };
    let leaf = prop_oneof![
        12 => scalar(),
        alias_weight => Just(Doc::Text("*a0".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 0..6).prop_map(Doc::List),
            4 => prop::collection::vec((key(), inner.clone()), 0..6).prop_map(Doc::Map),
            1 => (
                prop_oneof![6 => 1usize..8, 1 => (MAX_DEPTH - 6)..(MAX_DEPTH + 6)],
                any::<bool>(),
                inner
            )
                .prop_map(|(levels, maps, inner)| Doc::Nested {
                    levels,
                    maps,
                    inner: Box::new(inner),
                }),
        ]
    })
}

/// A schedule entry: a mapping with schedule keys and schedule strings.
fn schedule() -> impl Strategy<Value = Doc> {
    let entry = prop_oneof![
        3 => cron_text().prop_map(|t| ("cron".to_string(), Doc::Text(quoted(&t)))),
        2 => interval_text().prop_map(|t| ("interval".to_string(), Doc::Text(t))),
        2 => rrule_text().prop_map(|t| ("rrule".to_string(), Doc::Text(quoted(&t)))),
        3 => (key(), scalar()),
        1 => (key(), value()),
    ];
    prop::collection::vec(entry, 1..4).prop_map(Doc::Map)
}

/// A deployment: mostly the keys a deployment has, with values of the right kind.
fn deployment() -> impl Strategy<Value = Doc> {
    let entry = prop_oneof![
        3 => "[a-z]{1,6}".prop_map(|n| ("name".to_string(), Doc::Text(n))),
        2 => Just(("entrypoint".to_string(), Doc::Text("flows/etl.py:run".into()))),
        3 => prop::collection::vec(schedule(), 0..3)
            .prop_map(|s| ("schedules".to_string(), Doc::List(s))),
        2 => value().prop_map(|v| ("parameters".to_string(), v)),
        1 => value().prop_map(|v| ("parameter_openapi_schema".to_string(), v)),
        1 => (scalar(), value()).prop_map(|(command, env)| {
            let jobs = Doc::Map(vec![("command".into(), command), ("env".into(), env)]);
            ("work_pool".to_string(), Doc::Map(vec![("job_variables".into(), jobs)]))
        }),
        1 => prop::collection::vec((key(), value()), 1..3)
            .prop_map(|steps| ("pull".to_string(), Doc::List(vec![Doc::Map(steps)]))),
        4 => (key(), value()),
        1 => Just(("<<".to_string(), Doc::Text("*a0".into()))),
    ];
    prop::collection::vec(entry, 1..8).prop_map(Doc::Map)
}

/// Anchored values under `definitions:` (`d0` is always there, a mapping, as `&a0`), and now and
/// then an alias bomb: lists of `fanout` aliases of the previous anchor, `levels` deep,
/// over a string of `width` bytes.
fn definitions() -> impl Strategy<Value = Vec<(String, Doc)>> {
    // `d0` is a mapping, so that `<<: *a0` merges.
    let first = prop::collection::vec((key(), values(false)), 0..4).prop_map(Doc::Map);
    let plain = (first, prop::collection::vec(values(false), 0..3)).prop_map(|(first, rest)| {
        std::iter::once(first)
            .chain(rest)
            .enumerate()
            .map(|(i, v)| (format!("d{i}"), v))
            .collect::<Vec<_>>()
    });
    let bomb = (1usize..6, 2usize..40, 1usize..30_000).prop_map(|(levels, fanout, width)| {
        let mut entries = vec![
            ("d0".to_string(), Doc::Text("{anchored: true}".into())),
            (
                "b0".to_string(),
                Doc::Text(format!("&b0 {}", quoted(&"x".repeat(width)))),
            ),
        ];
        for level in 1..=levels {
            let copies = vec![Doc::Text(format!("*b{}", level - 1)); fanout];
            entries.push((format!("b{level}"), Doc::List(copies)));
        }
        entries
    });
    prop_oneof![4 => plain, 1 => bomb]
}

/// YAML text for `doc`, in flow style; anchors `&a0`…`&a3` are put on the first values
/// of `definitions` and `&bN` on each bomb level.
fn render_doc(doc: &Doc, out: &mut String) {
    match doc {
        Doc::Text(text) => out.push_str(text),
        Doc::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_doc(item, out);
            }
            out.push(']');
        }
        Doc::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(": ");
                render_doc(value, out);
            }
            out.push('}');
        }
        Doc::Nested {
            levels,
            maps,
            inner,
        } => {
            let (open, close) = if *maps { ("{k: ", "}") } else { ("[", "]") };
            out.push_str(&open.repeat(*levels));
            render_doc(inner, out);
            out.push_str(&close.repeat(*levels));
        }
    }
}

/// What may happen to the rendered text: nothing, mostly.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        8 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => (any::<usize>(), prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\t'), Just(b'\n'), Just(b':'), Just(b'&'), Just(b'*')],
            1..4,
        ))
            .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
    ]
}

/// A manifest-like YAML document: top-level keys in block style (definitions first, so
/// anchors come before aliases), deployments as a block list, values in flow style.
pub(super) fn document() -> impl Strategy<Value = Vec<u8>> {
    let top = prop::collection::vec((key(), value()), 0..3);
    let deployments = prop::collection::vec(deployment(), 0..4);
    (definitions(), top, deployments, damage()).prop_map(|(defs, top, deployments, damage)| {
        let mut text = String::new();
        if !defs.is_empty() {
            text.push_str("definitions:\n");
            for (i, (name, value)) in defs.iter().enumerate() {
                text.push_str(&format!("  {name}: "));
                if i < 4 && !name.starts_with('b') {
                    text.push_str(&format!("&a{i} "));
                } else if name.starts_with('b') && name != "b0" {
                    text.push_str(&format!("&{name} "));
                }
                render_doc(value, &mut text);
                text.push('\n');
            }
        }
        for (key, value) in &top {
            text.push_str(&format!("{key}: "));
            render_doc(value, &mut text);
            text.push('\n');
        }
        text.push_str("deployments:\n");
        for deployment in &deployments {
            text.push_str("  - ");
            render_doc(deployment, &mut text);
            text.push('\n');
        }
        let mut bytes = text.into_bytes();
        match damage {
            Damage::None => {}
            Damage::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Damage::Insert(at, inserted) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, inserted);
            }
        }
        bytes
    })
}

/// Validates `bytes` as a manifest; checks what every diagnostic must hold.
pub(super) fn check(bytes: Vec<u8>) -> Validation {
    let lines = bytes.split(|b| *b == b'\n').count();
    let file = SourceFile {
        display: "prefect.yaml".into(),
        repo_path: "prefect.yaml".into(),
        bytes: bytes.clone().into(),
    };
    let validation = validate(&[file]);
    for d in validation.diagnostics() {
        // Positions are 1-based whenever there is a position at all, inside the file.
        assert!(d.line == 0 || (d.column >= 1 && d.line <= lines), "{d:?}");
    }
    let sources = std::iter::once((
        "prefect.yaml".to_string(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
    .collect();
    let _ = render::human(&validation, &sources);
    let _ = render::json(&validation);
    let _ = render::github(&validation);
    validation
}

/// The values, text bytes and depth of a tree, walked without recursion.
fn measure(root: &Node) -> (usize, usize, usize) {
    let (mut nodes, mut bytes, mut deepest) = (0, 0, 0);
    let mut stack = vec![(root, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        nodes += 1;
        match &node.value {
            Value::Seq(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Map(entries) => {
                deepest = deepest.max(depth + 1);
                for e in entries {
                    nodes += 1;
                    bytes += e.key.len();
                    stack.push((&e.value, depth + 1));
                }
            }
            Value::Str { text, .. } => bytes += text.len(),
            _ => {}
        }
    }
    (nodes, bytes, deepest)
}

/// How long one document may take to load and validate, in a debug build on a loaded
/// machine; documents take milliseconds, an unbounded one would take minutes.
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn hostile_documents_are_checked_within_a_deadline_and_every_bound() {
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&document(), |bytes| {
            let len = bytes.len();
            let (loaded, _) = within(DEADLINE, "loading and validating a document", move || {
                let loaded = yaml::load(&bytes);
                let validation = check(bytes);
                (loaded, validation)
            });
            let cost = loaded.cost;
            prop_assert!(cost.depth <= MAX_DEPTH, "{cost:?}");
            prop_assert!(cost.nodes <= MAX_NODES, "{cost:?}");
            prop_assert!(cost.bytes <= expanded_bytes_limit(len), "{cost:?}");
            if let Some(root) = &loaded.root {
                // The counters are what the tree really holds, or more (a duplicate key's
                // value is counted, then dropped).
                let (nodes, bytes, depth) = measure(root);
                prop_assert!(nodes <= cost.nodes, "{nodes} values, counted {cost:?}");
                prop_assert!(bytes <= cost.bytes, "{bytes} bytes, counted {cost:?}");
                prop_assert!(depth <= cost.depth, "depth {depth}, counted {cost:?}");
            }
            Ok(())
        })
        .unwrap();
}
