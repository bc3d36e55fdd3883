//! Reusing a verdict gives what checking the file again gives: each case changes a
//! repository, validates it again reusing what still holds, and compares with validating
//! every file from scratch.

use super::*;
use crate::validate::locate::testing::files as files_view;
use crate::validate::validate_in;

type Tree<'a> = &'a [(&'a str, &'a str)];

fn is_manifest(path: &str) -> bool {
    path.starts_with("deployments/")
}

fn sources(tree: Tree) -> Vec<SourceFile> {
    let mut files: Vec<SourceFile> = tree
        .iter()
        .filter(|(p, _)| is_manifest(p))
        .map(|(p, t)| SourceFile {
            display: p.to_string(),
            repo_path: p.to_string(),
            bytes: t.as_bytes().to_vec().into(),
        })
        .collect();
    files.sort_by(|a, b| a.repo_path.cmp(&b.repo_path));
    files
}

fn check_all(tree: Tree) -> Vec<Checked> {
    let view = files_view(tree);
    let mut names = Names::default();
    sources(tree)
        .iter()
        .map(|f| check(f, &mut names, &view))
        .collect()
}

/// Validates `after` reusing the verdicts of `before` that still hold; asserts the
/// outcomes equal a validation from scratch and returns the paths checked again.
fn again(before: Tree, after: Tree) -> Vec<String> {
    let old = check_all(before);
    fn text<'a>(tree: Tree<'a>, path: &str) -> Option<&'a str> {
        tree.iter().find(|(p, _)| *p == path).map(|(_, t)| *t)
    }
    let mut paths: Vec<&str> = before.iter().chain(after).map(|(p, _)| *p).collect();
    paths.sort();
    paths.dedup();
    let changes = Changes::new(
        paths
            .into_iter()
            .filter(|p| text(before, p) != text(after, p))
            .map(str::to_string),
    );
    let view = files_view(after);
    let mut names = Names::default();
    let mut checked_again = Vec::new();
    let mut outcomes = Vec::new();
    for file in sources(after) {
        let path = file.repo_path.clone();
        let kept = old.iter().find(|c| {
            c.outcome.repo_path == path
                && !changes.contains(&path)
                && c.still_holds(&names, &changes)
        });
        match kept {
            Some(c) => {
                c.declare(&mut names);
                outcomes.push(c.outcome.clone());
            }
            None => {
                checked_again.push(path);
                outcomes.push(check(&file, &mut names, &view).outcome);
            }
        }
    }
    let fresh = validate_in(&sources(after), &view).files;
    assert_eq!(format!("{outcomes:#?}"), format!("{fresh:#?}"));
    checked_again
}

fn deployment(name: &str, extra: &str) -> String {
    format!("  - name: {name}\n    entrypoint: flows/a.py:run\n{extra}")
}

fn manifest(deployments: &[String]) -> String {
    format!("deployments:\n{}", deployments.concat())
}

const FLOW: &str = "def run():\n    pass\n";

#[test]
fn only_the_changed_file_is_checked_again() {
    let (a, b, c) = (
        manifest(&[deployment("a", "")]),
        manifest(&[deployment("b", "")]),
        manifest(&[deployment("c", "")]),
    );
    let b2 = manifest(&[deployment("b", "    description: edited\n")]);
    let before = [
        ("deployments/a.yaml", a.as_str()),
        ("deployments/b.yaml", b.as_str()),
        ("deployments/c.yaml", c.as_str()),
        ("flows/a.py", FLOW),
    ];
    let after = [
        ("deployments/a.yaml", a.as_str()),
        ("deployments/b.yaml", b2.as_str()),
        ("deployments/c.yaml", c.as_str()),
        ("flows/a.py", FLOW),
        ("flows/other.py", FLOW),
    ];
    assert_eq!(again(&before, &after), ["deployments/b.yaml"]);
}

#[test]
fn a_name_taken_by_an_earlier_file_checks_the_later_one_again() {
    let (a, b) = (
        manifest(&[deployment("a", "")]),
        manifest(&[deployment("b", "")]),
    );
    let a_takes_b = manifest(&[deployment("a", ""), deployment("b", "")]);
    let before = [
        ("deployments/a.yaml", a.as_str()),
        ("deployments/b.yaml", b.as_str()),
        ("flows/a.py", FLOW),
    ];
    let after = [
        ("deployments/a.yaml", a_takes_b.as_str()),
        ("deployments/b.yaml", b.as_str()),
        ("flows/a.py", FLOW),
    ];
    // b.yaml's bytes did not change, but its verdict did: `b` is a duplicate now.
    assert_eq!(
        again(&before, &after),
        ["deployments/a.yaml", "deployments/b.yaml"]
    );
    // And back: the duplicate error goes away.
    assert_eq!(
        again(&after, &before),
        ["deployments/a.yaml", "deployments/b.yaml"]
    );
}

#[test]
fn a_first_declaration_that_moves_checks_its_duplicate_again() {
    let a = manifest(&[deployment("x", "")]);
    let a_moved = format!("# a comment moves `x` down a line\n{a}");
    let b = manifest(&[deployment("x", "")]);
    let before = [
        ("deployments/a.yaml", a.as_str()),
        ("deployments/b.yaml", b.as_str()),
        ("flows/a.py", FLOW),
    ];
    let after = [
        ("deployments/a.yaml", a_moved.as_str()),
        ("deployments/b.yaml", b.as_str()),
        ("flows/a.py", FLOW),
    ];
    // b.yaml's error names a.yaml's line, which moved.
    assert_eq!(
        again(&before, &after),
        ["deployments/a.yaml", "deployments/b.yaml"]
    );
}

#[test]
fn a_file_it_names_that_changes_checks_it_again() {
    let a = manifest(&[deployment("a", "")]);
    let before = [("deployments/a.yaml", a.as_str()), ("flows/a.py", FLOW)];
    let gone = [("deployments/a.yaml", a.as_str())];
    let renamed = [
        ("deployments/a.yaml", a.as_str()),
        ("flows/a.py", "def other():\n    pass\n"),
    ];
    // The entrypoint's file left, or no longer defines the function: errors now.
    assert_eq!(again(&before, &gone), ["deployments/a.yaml"]);
    assert_eq!(again(&before, &renamed), ["deployments/a.yaml"]);
    // A directory that became a file, above the entrypoint.
    let flows_a_file = [("deployments/a.yaml", a.as_str()), ("flows", "")];
    assert_eq!(again(&before, &flows_a_file), ["deployments/a.yaml"]);
}

#[test]
fn changes_touch_a_path_itself_below_and_above_it_not_beside_it() {
    let changes = Changes::new(["flows/new/x.py".to_string(), "lib".to_string()]);
    assert!(changes.contains("flows/new/x.py"));
    assert!(!changes.contains("flows"));
    assert!(changes.touch("flows/new/x.py"));
    assert!(changes.touch("flows/new"), "a directory that gained a file");
    assert!(
        changes.touch("flows"),
        "a directory above one that gained a file"
    );
    assert!(changes.touch("lib/y.py"), "below a path that changed kind");
    assert!(changes.touch(""), "the root holds every change");
    assert!(!changes.touch("flows/old.py"), "beside a change");
    assert!(!changes.touch("flows/newer"));
    assert!(!Changes::default().touch(""));
}
