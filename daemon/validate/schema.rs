//! The JSON Schema of a manifest (`schema/deployment-manifest.schema.json`, embedded) and
//! the translation of its findings into diagnostics that say what to do.
//!
//! The schema is what editors and `check-jsonschema` see; this module runs the same file.
//! Unknown keys are left to `keys`, which knows Prefect's vocabulary and suggests the right
//! place, so `additionalProperties` findings are dropped here.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value as Json;

use crate::manifest::as_json::YamlJson;
use crate::manifest::{split_pointer, Node, Value};

use super::diagnostic::Code;
use super::report::FileReport;

/// The schema text, as printed by `sundial schema`.
pub const SCHEMA_TEXT: &str = include_str!("../../schema/deployment-manifest.schema.json");

/// The schema, compiled once, for instances read from the node tree as they stand
/// (`manifest::as_json`): no JSON copy of the file is made to check it.
fn validator() -> &'static Validator<YamlJson> {
    static VALIDATOR: OnceLock<Validator<YamlJson>> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Json = serde_json::from_str(SCHEMA_TEXT).expect("the embedded schema is JSON");
        jsonschema::options_for::<YamlJson>()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&schema)
            .expect("the embedded schema compiles")
    })
}

/// Checks the file (its `root` node, read as JSON) and reports each finding; returns the
/// pointers of the nodes found wrong, so later checks can treat those values as absent.
pub fn check(report: &mut FileReport<'_>, root: &Node) -> BTreeSet<String> {
    let mut wrong = BTreeSet::new();
    for error in validator().iter_errors(root) {
        translate(report, root, &error, &mut wrong);
    }
    wrong
}

/// Of the branches of an `anyOf` or `oneOf` that the value at `at` failed, the one it
/// nearly fits: the only branch whose type it has (its errors are all deeper, or about
/// its content). `{limit: 2, collision_strategy: DROP_OLDEST}` fails the whole-number
/// branch by its type, and the mapping branch only by the strategy: that is the error.
fn near_miss<'e>(
    at: &str,
    branches: &'e [Vec<ValidationError<'static>>],
) -> Option<&'e [ValidationError<'static>]> {
    let mut fitting = branches.iter().filter(|errors| {
        !errors.is_empty()
            && !errors.iter().any(|e| {
                e.instance_path().as_str() == at
                    && matches!(
                        e.kind(),
                        ValidationErrorKind::Type { .. }
                            | ValidationErrorKind::Constant { .. }
                            | ValidationErrorKind::MaxProperties { .. }
                    )
            })
    });
    let branch = fitting.next()?;
    fitting.next().is_none().then_some(branch.as_slice())
}

/// Reports one schema finding as a diagnostic, recording the nodes found wrong.
fn translate(
    report: &mut FileReport<'_>,
    root: &Node,
    error: &ValidationError<'_>,
    wrong: &mut BTreeSet<String>,
) {
    let at = error.instance_path().as_str().to_string();
    let node = root.at(&at);
    let finding = match error.kind() {
        ValidationErrorKind::AdditionalProperties { .. } => return,
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            Some((
                Code::Required,
                format!("missing required key `{key}`"),
                None,
            ))
        }
        ValidationErrorKind::Type { kind } => {
            // A mapping or list in block style starts on a line below its key, at its
            // first entry: point at the key and name it instead.
            if node.is_some_and(|n| matches!(n.value, Value::Map(_) | Value::Seq(_))) {
                let (parent, field) = split_pointer(&at).unwrap_or_default();
                let below_its_key = root
                    .at(&parent)
                    .and_then(|p| p.entry(&field))
                    .is_some_and(|e| e.value.span.start.line > e.key_span.start.line);
                if !wrong.contains(&at) && below_its_key {
                    let help = (at == "/deployments").then(|| {
                        "write each deployment as a list entry: `- name: etl` on its own line, its keys indented under it".to_string()
                    });
                    report.error(
                        &at,
                        true,
                        Code::Type,
                        format!(
                            "`{field}` must be {}, found {}",
                            expected_types(kind),
                            describe(node)
                        ),
                        help,
                    );
                    wrong.insert(at);
                    return;
                }
            }
            // `off`, `no`, `on`, `yes` meant as text: YAML 1.1 made them booleans.
            let quote = node.and_then(|n| match &n.value {
                Value::Bool(b) if b.is_yaml11_word() => Some(format!(
                    "YAML 1.1 (which Prefect's PyYAML follows) reads a plain `{w}` as {v}; quote it to mean the word: '{w}'",
                    w = b.word,
                    v = b.value
                )),
                _ => None,
            });
            Some((
                Code::Type,
                format!(
                    "expected {}, found {}",
                    expected_types(kind),
                    describe(node)
                ),
                quote,
            ))
        }
        ValidationErrorKind::Enum { options } => Some((
            Code::Type,
            format!(
                "expected one of {}, found {}",
                list_options(options),
                describe(node)
            ),
            None,
        )),
        ValidationErrorKind::Minimum { limit } => {
            Some((Code::OutOfRange, format!("must be at least {limit}"), None))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => Some((
            Code::OutOfRange,
            format!("must be greater than {limit}"),
            None,
        )),
        ValidationErrorKind::Maximum { limit } => {
            Some((Code::OutOfRange, format!("must be at most {limit}"), None))
        }
        ValidationErrorKind::MinLength { .. } => {
            Some((Code::Type, "must not be empty".into(), None))
        }
        ValidationErrorKind::MinItems { .. } => {
            Some((Code::Type, "the list must not be empty".into(), None))
        }
        ValidationErrorKind::MinProperties { .. } | ValidationErrorKind::MaxProperties { .. } => {
            Some((
                Code::PullStep,
                "a pull step is a mapping with exactly one step name".into(),
                Some(
                    "write `- prefect.deployments.steps.set_working_directory: {directory: ...}`"
                        .into(),
                ),
            ))
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => schedule_kind(node),
        ValidationErrorKind::AnyOf { context } => {
            if let Some(inner) = concurrency_detail(&at, node) {
                report.error(&format!("{at}/limit"), false, Code::OutOfRange, inner, None);
                wrong.insert(at);
                return;
            }
            if let Some(branch) = near_miss(&at, context) {
                for inner in branch {
                    translate(report, root, inner, wrong);
                }
                wrong.insert(at);
                return;
            }
            Some(any_of(&at, node))
        }
        _ => Some((Code::Type, error.to_string(), None)),
    };
    let Some((code, message, help)) = finding else {
        return;
    };
    if wrong.contains(&at) && code != Code::Required {
        return;
    }
    report.error(&at, false, code, message, help);
    if !matches!(code, Code::Required) {
        wrong.insert(at);
    }
}

/// A schedule entry must name exactly one kind. When exactly one is named, its own type
/// error (reported separately) is the real problem.
fn schedule_kind(node: Option<&Node>) -> Option<(Code, String, Option<String>)> {
    let node = node?;
    let kinds: Vec<&str> = ["cron", "interval", "rrule"]
        .into_iter()
        .filter(|k| node.get(k).is_some_and(|v| !v.is_null()))
        .collect();
    match kinds.as_slice() {
        [] => Some((
            Code::ScheduleKind,
            "a schedule needs one of `cron`, `interval` or `rrule`".into(),
            Some("for example `cron: \"0 9 * * *\"`".into()),
        )),
        [_] => None,
        several => {
            Some((
                Code::ScheduleKind,
                format!(
                "a schedule takes exactly one of `cron`, `interval` or `rrule`; this one has {}",
                several.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
            ),
                Some("split it into one list entry per schedule".into()),
            ))
        }
    }
}

/// `concurrency_limit: {limit: 0}` deserves "limit must be at least 1", not "no branch matched".
fn concurrency_detail(at: &str, node: Option<&Node>) -> Option<String> {
    if !at.ends_with("/concurrency_limit") {
        return None;
    }
    match node?.get("limit").map(|l| &l.value) {
        Some(Value::Int(n)) if *n < 1 => Some(format!("`limit` must be at least 1, found `{n}`")),
        _ => None,
    }
}

fn any_of(at: &str, node: Option<&Node>) -> (Code, String, Option<String>) {
    let field = split_pointer(at).map(|(_, last)| last).unwrap_or_default();
    let found = describe(node);
    match field.as_str() {
        "concurrency_limit" => (
            Code::Type,
            format!("expected a whole number ≥ 1 or `{{limit: N, collision_strategy: ENQUEUE|CANCEL_NEW}}`, found {found}"),
            None,
        ),
        "retry_delay_seconds" => (
            Code::Type,
            format!("expected seconds (a number ≥ 0) or a non-empty list of them, found {found}"),
            None,
        ),
        "schedule" => (
            Code::Type,
            format!("expected a schedule mapping with one of `cron`, `interval` or `rrule`, found {found}"),
            Some("or write `schedules:` as a list".into()),
        ),
        _ => (Code::Type, format!("unexpected value {found}"), None),
    }
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(ts) => ts.iter().map(|t| t.to_string()).collect(),
    };
    let names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "null")
        .map(|n| match n {
            "object" => "a mapping",
            "array" => "a list",
            "string" => "a string",
            "integer" => "a whole number",
            "number" => "a number",
            "boolean" => "true or false",
            other => other,
        })
        .collect();
    match names.as_slice() {
        [] => "null".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn list_options(options: &Json) -> String {
    match options {
        Json::Array(items) => items
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| {
                format!(
                    "`{}`",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A short description of what was found, for "expected X, found Y".
pub fn describe(node: Option<&Node>) -> String {
    let Some(node) = node else {
        return "nothing".into();
    };
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("`{}`", b.word),
        Value::Int(i) => format!("`{i}`"),
        Value::Float(f) => format!("`{f}`"),
        Value::Str { text, .. } => {
            let short: String = text.chars().take(40).collect();
            format!("the string \"{short}\"")
        }
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}
