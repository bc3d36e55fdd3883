//! Reading a commit with the memory of an earlier one gives what reading it afresh gives,
//! and checks again only what changed.

use std::sync::Arc;

use super::*;
use crate::source::testing::{open, Fixture};

fn discovery() -> Discovery {
    Discovery::default()
}

/// Reads `head` both ways (with `memory`, and afresh), asserts the outcomes are the same,
/// and returns them with the new memory.
fn read(repo: &Repo, head: &str, memory: Option<Memory>) -> (Vec<FileOutcome>, Memory) {
    let (outcomes, memory) = validate_commit(repo, &discovery(), head, memory).unwrap();
    let (fresh, _) = validate_commit(repo, &discovery(), head, None).unwrap();
    assert_eq!(format!("{outcomes:#?}"), format!("{fresh:#?}"));
    (outcomes, memory)
}

fn deployments(outcomes: &[FileOutcome], path: &str) -> Arc<Vec<crate::validate::Deployment>> {
    let outcome = outcomes.iter().find(|o| o.repo_path == path).unwrap();
    outcome.deployments.clone().expect("valid")
}

const A: &str = "deployments:\n  - name: a\n    entrypoint: flows/a.py:run\n    schedules:\n      - interval: 600\n";
const B: &str = "deployments:\n  - name: b\n    entrypoint: flows/a.py:run\n";
const B2: &str =
    "deployments:\n  - name: b\n    description: edited\n    entrypoint: flows/a.py:run\n";
const FLOW: &str = "def run():\n    pass\n";

#[test]
fn an_unchanged_file_keeps_its_verdict_and_a_changed_one_is_read_again() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let files = [
        ("deployments/a.yaml", A),
        ("deployments/b.yaml", B),
        ("flows/a.py", FLOW),
    ];
    let one = fx.commit_at(&work, &files, "one", Some("2026-01-01T00:00:00Z"));
    let two = fx.commit_at(
        &work,
        &[("deployments/b.yaml", B2), ("flows/other.py", FLOW)],
        "two",
        Some("2026-01-02T00:00:00Z"),
    );
    let repo = open(&work);
    let (first, memory) = read(&repo, &one, None);
    let (second, memory) = read(&repo, &two, Some(memory));
    // a.yaml (with an interval anchored at the commit that introduced it, and a flow
    // file beside which another was added) is the very same; b.yaml was checked again.
    assert!(Arc::ptr_eq(
        &deployments(&first, "deployments/a.yaml"),
        &deployments(&second, "deployments/a.yaml")
    ));
    assert!(!Arc::ptr_eq(
        &deployments(&first, "deployments/b.yaml"),
        &deployments(&second, "deployments/b.yaml")
    ));
    let anchored = &deployments(&second, "deployments/a.yaml")[0].schedules[0];
    assert_eq!(
        anchored.introduced_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-01-01T00:00:00+00:00")
    );

    // The flow file goes: both files name it, both are checked again and fail.
    std::fs::remove_file(work.join("flows/a.py")).unwrap();
    let three = fx.commit(&work, &[], "three");
    let (third, memory) = read(&repo, &three, Some(memory));
    assert!(third.iter().all(|o| !o.is_valid()));
    // A name taken by an earlier file makes the later, unchanged one a duplicate.
    let four = fx.commit(
        &work,
        &[
            ("flows/a.py", FLOW),
            (
                "deployments/a.yaml",
                &format!("{A}  - name: b\n    entrypoint: flows/a.py:run\n"),
            ),
        ],
        "four",
    );
    let (fourth, _) = read(&repo, &four, Some(memory));
    assert!(!fourth[1].is_valid(), "{:?}", fourth[1].diagnostics);
}

#[test]
fn an_anchor_is_found_again_when_the_file_changed_in_between() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let files = [("deployments/a.yaml", A), ("flows/a.py", FLOW)];
    let one = fx.commit_at(&work, &files, "one", Some("2026-01-01T00:00:00Z"));
    let other = "deployments:\n  - name: a\n    entrypoint: flows/a.py:run\n";
    fx.commit_at(
        &work,
        &[("deployments/a.yaml", other)],
        "two",
        Some("2026-01-02T00:00:00Z"),
    );
    let three = fx.commit_at(
        &work,
        &[("deployments/a.yaml", A)],
        "three",
        Some("2026-01-03T00:00:00Z"),
    );
    let repo = open(&work);
    let (_, memory) = read(&repo, &one, None);
    // Same bytes at `one` and `three`, but the schedule left and came back in between:
    // it is anchored at `three`, as a fresh read says (`read` compares).
    let (third, _) = read(&repo, &three, Some(memory));
    let anchored = &deployments(&third, "deployments/a.yaml")[0].schedules[0];
    assert_eq!(
        anchored.introduced_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-01-03T00:00:00+00:00")
    );
}

#[test]
fn a_memory_of_a_commit_that_is_gone_reads_everything() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let one = fx.commit(
        &work,
        &[("deployments/b.yaml", B), ("flows/a.py", FLOW)],
        "one",
    );
    let repo = open(&work);
    let (_, mut memory) = read(&repo, &one, None);
    memory.head = "0".repeat(40);
    let (outcomes, _) = read(&repo, &one, Some(memory));
    assert!(outcomes[0].is_valid());
}
