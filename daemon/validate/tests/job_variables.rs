//! Job variables that are sundial's own: `node_labels` (which nodes of a cluster run a
//! deployment), checked key by key at its line.

use super::super::locate::testing::files as files_view;
use super::super::{validate_in, SourceFile, Validation};
use super::finding_lines as findings;

fn run(text: &str) -> Validation {
    validate_in(
        &[SourceFile {
            display: "prefect.yaml".into(),
            repo_path: "prefect.yaml".into(),
            bytes: text.as_bytes().to_vec().into(),
        }],
        &files_view(&[]),
    )
}

/// Scalars become the text a node's `--label KEY=VALUE` carries, sorted by key.
#[test]
fn node_labels_are_kept_as_text_sorted_by_key() {
    let v = run("deployments:\n  - name: train\n    work_pool:\n      job_variables:\n        command: 'true'\n        node_labels:\n          zone: eu-west\n          gpu: true\n          slots: 2\n");
    assert!(findings(&v).is_empty(), "{:?}", findings(&v));
    let d = &v.files[0].deployments.as_ref().unwrap()[0];
    let pairs: Vec<(&str, &str)> = d
        .node_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [("gpu", "true"), ("slots", "2"), ("zone", "eu-west")]
    );
}

/// A key or a value no `--label` could carry is an error at its own line, and the
/// file is not applied (its deployment could never run where it was meant to).
#[test]
fn a_label_no_node_could_carry_is_an_error_at_its_line() {
    let v = run("deployments:\n  - name: train\n    work_pool:\n      job_variables:\n        command: 'true'\n        node_labels:\n          gpu: true\n          -bad: x\n          zone: eu west\n");
    let found = findings(&v);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("error 8:11 node-labels: \"-bad\" is not a label key"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("error 9:11 node-labels: \"eu west\" is not a label value"),
        "{found:?}"
    );
    assert!(v.files[0].deployments.is_none());
}
