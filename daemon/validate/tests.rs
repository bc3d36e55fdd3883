//! Validation must never panic, whatever the bytes: random bytes, manifest-like documents
//! and random edits of a real manifest go through the whole pipeline (loader, schema,
//! semantic checks, renderers).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{validate, SourceFile};

mod bounds;
mod entrypoints;
mod job_variables;
mod notify;
mod property;
mod real_files;
mod threads;

use property::check;

/// Every finding as `severity line:column code: message; help`.
fn finding_lines(validation: &super::Validation) -> Vec<String> {
    validation
        .diagnostics()
        .map(|d| {
            format!(
                "{} {}:{} {}: {}",
                if d.is_error() { "error" } else { "warning" },
                d.line,
                d.column,
                d.code.as_str(),
                d.message_with_help()
            )
        })
        .collect()
}

const MANIFEST: &str = include_str!("../../deployments/analytics.yaml");

/// Random bytes (one case in four) and manifest-like documents (the rest), counting how far
/// the documents get: random bytes alone are almost never UTF-8, so they only ever reach
/// the first check.
#[test]
fn random_bytes_and_documents_never_panic_and_mostly_reach_the_checks() {
    let cases = 400;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let input = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..400).prop_map(|b| (false, b)),
        3 => property::document().prop_map(|d| (true, d)),
    ];
    let (documents, parsed, checked) = (
        std::cell::Cell::new(0u32),
        std::cell::Cell::new(0u32),
        std::cell::Cell::new(0u32),
    );
    runner
        .run(&input, |(is_document, bytes)| {
            let validation = check(bytes);
            if is_document {
                documents.set(documents.get() + 1);
                let file = &validation.files[0];
                let unreadable = file.diagnostics.iter().any(|d| {
                    matches!(
                        d.code.as_str(),
                        "yaml-syntax" | "not-utf8" | "too-deep" | "too-large"
                    )
                });
                parsed.set(parsed.get() + u32::from(!unreadable));
                checked.set(checked.get() + u32::from(file.declared > 0));
            }
            Ok(())
        })
        .unwrap();
    // Shares of what ran, with a wide margin below what the generator gives (about 60%
    // and 40%), so that no seed fails them; random bytes alone give 0%.
    let (documents, parsed, checked) = (documents.get(), parsed.get(), checked.get());
    assert!(
        parsed * 3 >= documents,
        "only {parsed} of {documents} documents were readable YAML"
    );
    assert!(
        checked * 6 >= documents,
        "only {checked} of {documents} documents reached a deployment's checks"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_of_a_real_manifest_never_panic(
        edits in proptest::collection::vec((0usize..2000, prop::sample::select(vec![
            "", " ", "\t", ":", "- ", "\n", "{", "[", "*a", "&a ", "<<: ", "null", "'", "\"", "#", "~", "|", "-1", "0x", "é",
        ])), 1..6)
    ) {
        let mut text = MANIFEST.to_string();
        for (at, insert) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let cut = (at + 3).min(text.len());
            let cut = (at..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(at);
            text.replace_range(at..cut, insert);
        }
        check(text.into_bytes());
    }
}

#[test]
fn the_examples_build_their_deployments() {
    let file = SourceFile {
        display: "deployments/analytics.yaml".into(),
        repo_path: "deployments/analytics.yaml".into(),
        bytes: MANIFEST.as_bytes().to_vec().into(),
    };
    let validation = validate(&[file]);
    let deployments = validation.files[0].deployments.as_ref().expect("valid");
    let etl = &deployments[0];
    assert_eq!(etl.name, "production-etl");
    assert_eq!(etl.project_root, "");
    assert_eq!(etl.retries, 3);
    assert_eq!(etl.retry_delays.len(), 3);
    assert_eq!(etl.schedules[0].id, "daily-0900-chicago");
    assert_eq!(etl.env, vec![("LOG_LEVEL".to_string(), "info".to_string())]);
    assert!(etl.parameter_schema.is_some());
}

#[test]
fn a_command_whose_quotes_join_braces_into_a_placeholder_is_refused() {
    let file = SourceFile {
        display: "prefect.yaml".into(),
        repo_path: "prefect.yaml".into(),
        bytes: b"deployments:\n  - name: q\n    work_pool:\n      job_variables:\n        command: echo {\\{$TOKEN}}\n"
            .to_vec()
            .into(),
    };
    let validation = validate(&[file]);
    let errors: Vec<String> = validation
        .diagnostics()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message_with_help()))
        .collect();
    assert_eq!(
        errors,
        ["5:18 `command` cannot be split into words: in `{{$TOKEN}}`, removing quotes or backslashes joins braces into a different `{{ }}` placeholder; keep each `{{ ... }}` apart from quoted or escaped braces, e.g. `{ '{{ $X }}' }`"]
    );
}
