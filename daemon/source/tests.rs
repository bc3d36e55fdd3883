use super::testing::{config, long_manifest, open, truncate_object, write, Fixture};
use super::*;
use crate::manifest::discover::is_default_manifest;

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot
        .files
        .iter()
        .map(|f| f.repo_path.as_str())
        .collect()
}

#[test]
fn snapshot_reads_committed_files_only() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let sha = fx.commit(&repo, &[("prefect.yaml", "committed\n")], "first");
    write(&repo, "prefect.yaml", "edited, not committed\n");
    write(&repo, "deployments/untracked.yaml", "untracked\n");
    write(&repo, "deployments/staged.yaml", "staged\n");
    fx.git(&repo, &["add", "deployments/staged.yaml"]);

    let source = open(&repo);
    assert_eq!(source.head().unwrap(), sha);
    let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
    assert_eq!(snapshot.commit, sha);
    assert_eq!(snapshot.summary, "first");
    assert_eq!(paths(&snapshot), ["prefect.yaml"]);
    assert_eq!(snapshot.files[0].bytes.as_bytes(), b"committed\n");
    assert_eq!(snapshot.files[0].display, "prefect.yaml");
    let age = Utc::now() - snapshot.committed_at;
    assert!(
        age.num_seconds().abs() < 600,
        "committed_at {}",
        snapshot.committed_at
    );
}

#[test]
fn later_commits_discovery_and_file_at() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let first = fx.commit(&repo, &[("prefect.yaml", "v1\n")], "first");
    let second = fx.commit(
        &repo,
        &[
            ("prefect.yaml", "v2\n"),
            ("svc/prefect.yaml", "svc\n"),
            ("deployments/a/b.yaml", "nested\n"),
            ("deployments/notes.md", "not a manifest\n"),
            ("other.yaml", "not a manifest\n"),
            (".hidden/prefect.yaml", "hidden\n"),
        ],
        "second\n\nbody",
    );
    let source = open(&repo);
    assert_eq!(source.head().unwrap(), second);
    let snapshot = source.snapshot(&second, &is_default_manifest).unwrap();
    assert_eq!(
        paths(&snapshot),
        ["deployments/a/b.yaml", "prefect.yaml", "svc/prefect.yaml"]
    );
    assert_eq!(snapshot.summary, "second");
    assert_eq!(snapshot.files[1].bytes.as_bytes(), b"v2\n");

    let old = source.snapshot(&first, &is_default_manifest).unwrap();
    assert_eq!(paths(&old), ["prefect.yaml"]);
    assert_eq!(
        source.file_at(&first, "prefect.yaml").unwrap().unwrap(),
        Contents::Bytes(b"v1\n".to_vec())
    );
    assert_eq!(source.file_at(&first, "svc/prefect.yaml").unwrap(), None);
    assert_eq!(source.file_at(&second, "svc").unwrap(), None);
    assert_eq!(
        source
            .file_at(&second, "deployments/a/b.yaml")
            .unwrap()
            .unwrap(),
        Contents::Bytes(b"nested\n".to_vec())
    );
}

#[test]
fn a_file_over_the_size_limit_is_reported_by_size_without_being_read() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let sha = fx.commit(
        &repo,
        &[
            ("prefect.yaml", "0123456789\n"),
            ("deployments/small.yaml", "0123456789"),
        ],
        "first",
    );
    let source = Repo::open(&SourceConfig {
        max_file_size: 10,
        ..config(&repo, "main")
    })
    .unwrap();
    let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
    assert_eq!(paths(&snapshot), ["deployments/small.yaml", "prefect.yaml"]);
    assert_eq!(
        snapshot.files[0].bytes,
        Contents::Bytes(b"0123456789".to_vec())
    );
    let too_large = Contents::TooLarge {
        size: 11,
        limit: 10,
    };
    assert_eq!(snapshot.files[1].bytes, too_large);
    assert_eq!(
        source.file_at(&sha, "prefect.yaml").unwrap(),
        Some(too_large)
    );
}

#[test]
fn symlinks_and_submodules_are_skipped() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    write(&repo, "outside.yaml", "outside\n");
    std::os::unix::fs::symlink("../outside.yaml", repo.join("prefect.yaml")).unwrap();
    let sub = fx.init("sub");
    let sub_sha = fx.commit(&sub, &[("x", "x\n")], "sub");
    let cacheinfo = format!("160000,{sub_sha},deployments/sub.yaml");
    fx.git(&repo, &["update-index", "--add", "--cacheinfo", &cacheinfo]);
    let sha = fx.commit(&repo, &[], "links");
    let source = open(&repo);
    let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
    assert!(snapshot.files.is_empty(), "{:?}", paths(&snapshot));
    assert_eq!(source.file_at(&sha, "prefect.yaml").unwrap(), None);
}

#[test]
fn missing_path_is_missing() {
    let fx = Fixture::new();
    let err = Repo::open(&config(&fx.path("nope"), "main")).unwrap_err();
    assert!(matches!(err, SourceError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("git init"), "{err}");
    // A plain directory is no repository either, and its parents are not searched.
    let repo = fx.init("work");
    std::fs::create_dir(repo.join("sub")).unwrap();
    let err = Repo::open(&config(&repo.join("sub"), "main")).unwrap_err();
    assert!(matches!(err, SourceError::Missing { .. }), "{err:?}");
}

#[test]
fn empty_repo_has_no_branch_and_reopening_later_works() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let source = open(&repo);
    let err = source.head().unwrap_err();
    assert!(
        matches!(err, SourceError::NoBranch { empty: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no commits yet"), "{err}");

    let sha = fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
    assert_eq!(open(&repo).head().unwrap(), sha);
}

#[test]
fn wrong_branch_is_no_branch() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
    let source = Repo::open(&config(&repo, "release")).unwrap();
    let err = source.head().unwrap_err();
    assert!(
        matches!(&err, SourceError::NoBranch { empty: false, branch, .. } if branch == "release"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "branch `release` does not exist in {}: create it, or pass the right --branch",
            repo.display()
        )
    );
}

#[test]
fn damaged_objects_are_an_error() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let sha = fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
    let tree = fx.git(&repo, &["rev-parse", "HEAD^{tree}"]);
    let object = repo.join(".git/objects").join(&tree[..2]).join(&tree[2..]);
    std::fs::remove_file(object).unwrap();
    let source = open(&repo);
    assert_eq!(source.head().unwrap(), sha);
    let err = source.snapshot(&sha, &is_default_manifest).unwrap_err();
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("git fsck"), "{err}");
    assert!(source.file_at(&sha, "prefect.yaml").is_err());

    // The commit object itself gone: head() cannot peel the branch to a commit.
    let commit = repo.join(".git/objects").join(&sha[..2]).join(&sha[2..]);
    std::fs::remove_file(commit).unwrap();
    let err = open(&repo).head().unwrap_err();
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");
}

/// Regression (issue 12.5): with every file descriptor in use, reading the branch was
/// reported as "the git repository is damaged: run `git fsck`". The reads run in a
/// child process (this test again, see `testing::in_child`), since using up the
/// descriptors here would break the tests running beside this one.
#[test]
fn reads_out_of_descriptors_say_too_many_open_files() {
    const NAME: &str = "source::tests::reads_out_of_descriptors_say_too_many_open_files";
    if crate::source::testing::is_child(NAME) {
        let repo = std::env::var_os("SUNDIAL_TEST_FD_REPO").unwrap();
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_NOFILE, 256, 256).unwrap();
        let source = open(Path::new(&repo));
        let mut hog = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            hog.push(file);
        }
        let answer = match source.head() {
            Ok(sha) => format!("Ok: {sha}"),
            Err(e @ SourceError::TooManyOpenFiles { .. }) => {
                format!("TooManyOpenFiles: {}", crate::engine::error_chain(&e))
            }
            Err(e) => format!("{e:?}: {}", crate::engine::error_chain(&e)),
        };
        drop(hog);
        println!("head: {answer}");
        return;
    }
    let fx = Fixture::new();
    let repo = fx.init("work");
    fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
    let out = crate::source::testing::in_child(NAME, &[("SUNDIAL_TEST_FD_REPO", repo.as_os_str())])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("head: ").map(|(_, answer)| answer))
        .unwrap_or_else(|| panic!("no answer from the child:\n{stdout}"));
    assert!(line.starts_with("TooManyOpenFiles: "), "{line}");
    assert!(line.contains("too many open files"), "{line}");
    assert!(!line.contains("damaged"), "{line}");
    assert!(
        line.contains("Too many open files"),
        "the cause is kept: {line}"
    );
}

#[test]
fn unknown_or_malformed_commits() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
    let source = open(&repo);
    let err = source
        .snapshot(&"1".repeat(40), &is_default_manifest)
        .unwrap_err();
    assert!(matches!(err, SourceError::NoCommit { .. }), "{err:?}");
    let err = source.file_at("abc", "prefect.yaml").unwrap_err();
    assert!(matches!(err, SourceError::BadSha { .. }), "{err:?}");
}

#[test]
fn bare_repository_works() {
    let fx = Fixture::new();
    let work = fx.init("work");
    let sha = fx.commit(&work, &[("deployments/etl.yaml", "x\n")], "first");
    let bare = fx.path("bare.git");
    fx.git(
        fx.dir.path(),
        &["clone", "-q", "--bare", work.to_str().unwrap(), "bare.git"],
    );
    let source = open(&bare);
    assert_eq!(source.git_dir(), bare.canonicalize().unwrap());
    assert_eq!(source.head().unwrap(), sha);
    let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
    assert_eq!(paths(&snapshot), ["deployments/etl.yaml"]);
}

#[test]
fn repo_is_send() {
    fn send<T: Send>() {}
    send::<Repo>();
    send::<Snapshot>();
    send::<SourceError>();
}

#[test]
fn git_dir_of_a_work_tree() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let source = open(&repo);
    assert_eq!(source.git_dir(), repo.join(".git").canonicalize().unwrap());
}

/// Regression (issue 12.4): a truncated blob at the branch tip made libgit2 loop
/// forever in `inflate`, so the daemon's read never returned. Bounded here, so a
/// failing check shows as a time-out instead of a hung test.
#[test]
fn a_truncated_tip_blob_is_a_damaged_object_not_a_hang() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let sha = fx.commit(&repo, &[("prefect.yaml", &long_manifest())], "big");
    let blob = fx.git(&repo, &["rev-parse", "HEAD:prefect.yaml"]);
    truncate_object(&repo, &blob);
    let cfg = config(&repo, "main");
    let started = std::time::Instant::now();
    let err = bounded::run_blocking(
        &repo,
        "reading",
        std::time::Duration::from_secs(20),
        move || {
            let source = Repo::open(&cfg)?;
            assert_eq!(source.head()?, sha);
            source.snapshot(&sha, &is_default_manifest)
        },
    )
    .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let SourceError::DamagedObject { object, damage, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(object, &blob);
    assert!(matches!(damage, Damage::Truncated { .. }), "{damage:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the git repository at {} is damaged: object {blob} ({}) {damage}; run `git \
             fsck` there and restore the object (e.g. fetch it again from a clone)",
            repo.display(),
            super::testing::loose_object(&repo, &blob).display()
        )
    );
}

/// A file's existence is answered from its tree: a damaged file that is only looked
/// up (a requirements file) does not fail the read, while reading it does.
#[test]
fn has_file_reads_trees_only() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let sha = fx.commit(
        &repo,
        &[("prefect.yaml", "x\n"), ("flows/req.txt", &long_manifest())],
        "first",
    );
    let blob = fx.git(&repo, &["rev-parse", "HEAD:flows/req.txt"]);
    truncate_object(&repo, &blob);
    let source = open(&repo);
    assert!(source.has_file(&sha, "flows/req.txt").unwrap());
    assert!(source.has_file(&sha, "/flows//req.txt").unwrap());
    assert!(!source.has_file(&sha, "flows").unwrap());
    assert!(!source.has_file(&sha, "flows/none.txt").unwrap());
    assert!(!source.has_file(&sha, "prefect.yaml/x").unwrap());
    let err = source.file_at(&sha, "flows/req.txt").unwrap_err();
    assert!(matches!(err, SourceError::DamagedObject { .. }), "{err:?}");
}

/// Regression (issue 12.6): deleting the only branch said "the repository has no
/// commits yet" although every commit was still there.
#[test]
fn a_deleted_branch_is_missing_not_no_commits_yet() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
    fx.git(&repo, &["update-ref", "-d", "refs/heads/main"]);
    let err = open(&repo).head().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "branch `main` does not exist in {}: create it, or pass the right --branch",
            repo.display()
        )
    );
}

/// What the check in `object` works around: the bundled libgit2 never returns from
/// reading a truncated loose object. When this fails, libgit2 has the fix (libgit2
/// PR 7346) and the check may go. The read runs in a child process (this test again,
/// see `testing::in_child`), which is killed: a looping thread cannot be.
#[test]
fn the_bundled_libgit2_still_loops_on_a_truncated_object() {
    const NAME: &str = "source::tests::the_bundled_libgit2_still_loops_on_a_truncated_object";
    if crate::source::testing::is_child(NAME) {
        let repo = std::env::var_os("SUNDIAL_TEST_LOOP_REPO").unwrap();
        let blob = std::env::var("SUNDIAL_TEST_LOOP_BLOB").unwrap();
        let git = Repository::open(repo).unwrap();
        let answer = git.find_blob(Oid::from_str(&blob).unwrap()).map(|_| ());
        println!("find_blob returned: {answer:?}");
        return;
    }
    let fx = Fixture::new();
    let repo = fx.init("work");
    fx.commit(&repo, &[("prefect.yaml", &long_manifest())], "big");
    let blob = fx.git(&repo, &["rev-parse", "HEAD:prefect.yaml"]);
    truncate_object(&repo, &blob);
    let mut child = crate::source::testing::in_child(
        NAME,
        &[
            ("SUNDIAL_TEST_LOOP_REPO", repo.as_os_str()),
            ("SUNDIAL_TEST_LOOP_BLOB", std::ffi::OsStr::new(&blob)),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut ended = None;
    while std::time::Instant::now() < deadline && ended.is_none() {
        ended = child.try_wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        ended.is_none(),
        "libgit2 returned from a truncated object ({ended:?}): {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_commit_that_introduced_a_schedule_is_the_oldest_of_its_unbroken_run() {
    let fx = Fixture::new();
    let repo = fx.init("work");
    let before = "deployments:\n- name: a\n  schedules:\n  - cron: 0 9 * * *\n";
    let with = format!("{before}  - interval: 86400\n");
    let commit = |files: &[(&str, &str)], date: &str| fx.commit_at(&repo, files, date, Some(date));
    commit(&[("prefect.yaml", before)], "2026-01-01T00:00:00Z");
    let introduced = commit(&[("prefect.yaml", &with)], "2026-01-02T10:17:23Z");
    commit(
        &[("flows/etl.py", "def run(): pass\n")],
        "2026-01-03T00:00:00Z",
    );
    let head = commit(
        &[("prefect.yaml", &format!("# edited\n{with}"))],
        "2026-01-04T00:00:00Z",
    );
    let source = open(&repo);
    let mut has_interval =
        |bytes: &[u8]| String::from_utf8_lossy(bytes).contains("interval: 86400");
    assert_eq!(
        source
            .introduced(&head, "prefect.yaml", &mut has_interval)
            .unwrap(),
        Some((introduced, "2026-01-02T10:17:23Z".parse().unwrap()))
    );
    // Removed and brought back: the run starts again where it came back.
    commit(&[("prefect.yaml", before)], "2026-01-05T00:00:00Z");
    let back = commit(&[("prefect.yaml", &with)], "2026-01-06T06:00:00Z");
    assert_eq!(
        source
            .introduced(&back, "prefect.yaml", &mut has_interval)
            .unwrap(),
        Some((back.clone(), "2026-01-06T06:00:00Z".parse().unwrap()))
    );
    assert_eq!(
        source
            .introduced(&back, "prefect.yaml", &mut |_| false)
            .unwrap(),
        None
    );
    assert_eq!(
        source
            .introduced(&back, "missing.yaml", &mut |_| true)
            .unwrap(),
        None
    );
}
