use std::collections::BTreeMap;

use super::super::testing::{open, Fixture};
use super::*;
use crate::manifest::discover::is_default_manifest;

/// Each changed path with whether it is a regular file at the newer commit.
fn changed(repo: &Repo, old: &str, new: &str) -> BTreeMap<String, bool> {
    repo.changes(old, new)
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.file.is_some()))
        .collect()
}

fn expect(list: &[(&str, bool)]) -> BTreeMap<String, bool> {
    list.iter().map(|(p, f)| (p.to_string(), *f)).collect()
}

#[test]
fn changes_list_every_path_that_differs_and_nothing_else() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let first = fx.commit(
        &work,
        &[
            ("prefect.yaml", "v1\n"),
            ("flows/a.py", "a\n"),
            ("flows/deep/b.py", "b\n"),
            ("same/x.py", "x\n"),
            ("gone/y.py", "y\n"),
            ("link", "target\n"),
        ],
        "first",
    );
    std::fs::remove_dir_all(work.join("gone")).unwrap();
    std::fs::remove_file(work.join("link")).unwrap();
    std::os::unix::fs::symlink("flows/a.py", work.join("link")).unwrap();
    std::fs::remove_dir_all(work.join("flows/deep")).unwrap();
    let second = fx.commit(
        &work,
        &[
            ("prefect.yaml", "v2\n"),
            ("flows/deep", "now a file\n"),
            ("new/dir/z.py", "z\n"),
        ],
        "second",
    );
    let repo = open(&work);
    assert_eq!(
        changed(&repo, &first, &second),
        expect(&[
            ("flows/deep", true),
            ("flows/deep/b.py", false),
            ("gone", false),
            ("gone/y.py", false),
            ("link", false),
            ("new", false),
            ("new/dir", false),
            ("new/dir/z.py", true),
            ("prefect.yaml", true),
        ])
    );
    assert_eq!(changed(&repo, &second, &second), expect(&[]));
    // The other way round, what was added is gone.
    assert!(!changed(&repo, &second, &first)["new/dir/z.py"]);
    assert!(changed(&repo, &second, &first)["flows/deep/b.py"]);
}

#[test]
fn manifest_blobs_list_what_snapshot_reads() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let sha = fx.commit(
        &work,
        &[
            ("prefect.yaml", "root\n"),
            ("deployments/b.yaml", "b\n"),
            ("deployments/a/c.yml", "c\n"),
            ("deployments/notes.md", "no\n"),
        ],
        "first",
    );
    let repo = open(&work);
    let blobs = repo.manifest_blobs(&sha, &is_default_manifest).unwrap();
    let snapshot = repo.snapshot(&sha, &is_default_manifest).unwrap();
    let paths: Vec<&str> = blobs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["deployments/a/c.yml", "deployments/b.yaml", "prefect.yaml"]
    );
    for ((path, blob), file) in blobs.iter().zip(&snapshot.files) {
        assert_eq!(path, &file.repo_path);
        assert_eq!(repo.read_blob(*blob).unwrap(), file.bytes);
        assert_eq!(repo.blob_at(&sha, path).unwrap(), Some(*blob));
    }
    assert_eq!(repo.blob_at(&sha, "deployments").unwrap(), None);
}

#[test]
fn commits_between_follow_first_parents() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let one = fx.commit(&work, &[("a", "1\n")], "one");
    let two = fx.commit(&work, &[("a", "2\n")], "two");
    let three = fx.commit(&work, &[("a", "3\n")], "three");
    let repo = open(&work);
    assert_eq!(
        repo.commits_between(&two, &three, 10).unwrap(),
        Some(vec![])
    );
    assert_eq!(
        repo.commits_between(&one, &three, 10).unwrap(),
        Some(vec![two.clone()])
    );
    assert_eq!(repo.commits_between(&one, &three, 1).unwrap(), None);
    assert_eq!(repo.commits_between(&three, &one, 10).unwrap(), None);
    assert_eq!(repo.summary(&three).unwrap(), "three");
}
