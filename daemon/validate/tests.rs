//! Validation must never panic, whatever the bytes: random bytes and random edits of a
//! real manifest go through the whole pipeline (loader, schema, semantic checks).

use proptest::prelude::*;

use super::{validate, SourceFile};

mod bounds;

const MANIFEST: &str = include_str!("../../deployments/analytics.yaml");

fn check(bytes: Vec<u8>) {
    let file = SourceFile {
        display: "prefect.yaml".into(),
        repo_path: "prefect.yaml".into(),
        bytes: bytes.into(),
    };
    let validation = validate(&[file]);
    for d in validation.diagnostics() {
        // Positions are 1-based whenever there is a position at all.
        assert!(d.line == 0 || d.column >= 1, "{d:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(bytes);
    }

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
