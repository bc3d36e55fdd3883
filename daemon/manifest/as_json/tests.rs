//! The readers must see exactly what the JSON copy holds: every finding of the schema and
//! every deserialized value is compared with the copy's, on the fuzz seeds, the example
//! deployments and values chosen for their edges.

use serde_json::Value as JsonValue;

use serde::Deserialize;

use super::*;
use crate::manifest::model::RawDeployment;
use crate::manifest::yaml;
use crate::validate::schema::SCHEMA_TEXT;

const DOCUMENTS: &[&str] = &[
    include_str!("../../../fuzz/seeds/manifest/merge-keys.yaml"),
    include_str!("../../../fuzz/seeds/manifest/near-limits.yaml"),
    include_str!("../../../fuzz/seeds/manifest/templates-and-pull.yaml"),
    include_str!("../../../fuzz/seeds/manifest/errors.yaml"),
    include_str!("../../../fuzz/seeds/manifest/prefect2-and-legacy.yaml"),
    include_str!("../../../fuzz/seeds/manifest/parameters.yaml"),
    include_str!("../../../deployments/heartbeat.yaml"),
    include_str!("../../../deployments/madrid.yaml"),
    include_str!("../../../deployments/analytics.yaml"),
    // Numbers at their edges, YAML 1.1 words, non-finite floats, nulls, nesting, merges.
    "deployments:
  - name: edges
    entrypoint: flows/a.py:f
    parameters: {big: 9223372036854775807, neg: -12, zero: 0, half: 0.5, whole: 2.0,
                 inf: .inf, ninf: -.inf, nan: .nan, octal: 0755, word: yes, off: off,
                 none: ~, list: [1, -1, 1.5, [], {}], text: '12', slash/key: 1, tilde~key: 2}
    retries: 3
    retry_delay_seconds: [1, 2.5, null]
    timeout_seconds: .inf
    late_grace_seconds: -1
    concurrency_limit: {limit: 2, collision_strategy: CANCEL_NEW}
    catchup: latest
    schedules:
      - interval: 1.5
      - interval: PT10M
        active: no
      - cron: 0 9 * * *
        day_or: off
        parameters: {big: 1}
  - name: wrong
    entrypoint: 12
    retries: -1
    retry_delay_seconds: [-1, x]
    concurrency_limit: {limit: 0, collision_strategy: DROP_OLDEST}
    catchup: {latest: 1}
    paused: maybe
    schedules: [{cron: 1, interval: 2}, {}, 5, {rrule: .nan}]
    work_pool: {name: 1, job_variables: {env: {A: 1, B: .inf}, stream_output: 2}}
    tags: [.inf, 1, yes]
  - 12
  - []
  - name: x
    schedule: {interval: .nan}
    concurrency_limit: 1.5
",
    "[1, 2]",
    "12",
    ".nan",
    "",
    "deployments: {name: a}",
];

/// Every finding as path, kind and message.
fn findings_of<'a, F: jsonschema::json::Json>(
    validator: &'a jsonschema::Validator<F>,
    instance: F::Node<'a>,
) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} {:?} {}", e.instance_path().as_str(), e.kind(), e))
        .collect()
}

#[test]
fn the_schema_finds_in_the_tree_what_it_finds_in_the_copy() {
    let schema: JsonValue = serde_json::from_str(SCHEMA_TEXT).unwrap();
    let on_copy = jsonschema::draft202012::new(&schema).unwrap();
    let on_tree = jsonschema::options_for::<YamlJson>()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap();
    let mut total = 0;
    for doc in DOCUMENTS {
        // A seed that does not parse has no tree to read.
        let Some(root) = yaml::load(doc.as_bytes()).root else {
            continue;
        };
        let copy = root.to_json();
        let expected = findings_of(&on_copy, &copy);
        total += expected.len();
        assert_eq!(findings_of(&on_tree, &root), expected, "in:\n{doc}");
    }
    // The documents do reach the schema's errors.
    assert!(total > 20, "{total} findings");
}

#[test]
fn property_names_and_every_type_read_as_in_the_copy() {
    let schema = serde_json::json!({
        "propertyNames": {"maxLength": 3},
        "additionalProperties": {"type": ["integer", "string"], "enum": [1, "NaN", "inf", 2.0]},
        "properties": {"list": {"uniqueItems": true, "items": {"not": {"type": "null"}}}}
    });
    let on_copy = jsonschema::draft202012::new(&schema).unwrap();
    let on_tree = jsonschema::options_for::<YamlJson>()
        .build(&schema)
        .unwrap();
    let doc = "{a: 1, long: 2, n: .nan, i: .inf, f: 2.0, b: yes, z: ~, list: [1, 1.0, ~, x]}";
    let root = yaml::load(doc.as_bytes()).root.unwrap();
    let copy = root.to_json();
    let expected = findings_of(&on_copy, &copy);
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(findings_of(&on_tree, &root), expected);
}

#[test]
fn deserializing_from_the_tree_gives_what_the_copy_gives() {
    for doc in DOCUMENTS {
        let Some(root) = yaml::load(doc.as_bytes()).root else {
            continue;
        };
        let copy = root.to_json();
        let value: JsonValue = from_node(&root).unwrap();
        assert_eq!(value, copy, "in:\n{doc}");
        for (i, item) in root
            .get("deployments")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let from_copy = serde_json::from_value::<RawDeployment>(item.to_json());
            let from_tree = from_node::<RawDeployment>(item);
            assert_eq!(
                format!("{from_tree:?}"),
                format!("{from_copy:?}"),
                "deployment {i} of:\n{doc}"
            );
        }
    }
}

#[test]
fn the_reader_itself_reads_every_kind_without_the_copy() {
    let doc = "{n: ~, b: on, u: 7, i: -7, f: 1.5, inf: .inf, s: text, l: [1, x], m: {k: v}}";
    let root = yaml::load(doc.as_bytes()).root.unwrap();
    let read = JsonValue::deserialize(Reader(&root)).unwrap();
    assert_eq!(read, root.to_json());
    assert!(read["u"].is_u64() && read["i"].is_i64() && read["inf"].is_string());
    // What it does not mirror falls back to the copy, which gives serde_json's message.
    assert!(
        RawDeployment::deserialize(Reader(&yaml::load(b"catchup: {latest: 1}").root.unwrap()))
            .is_err()
    );
    let err = from_node::<RawDeployment>(&yaml::load(b"retries: -1").root.unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        serde_json::from_value::<RawDeployment>(serde_json::json!({"retries": -1}))
            .unwrap_err()
            .to_string()
    );
}
