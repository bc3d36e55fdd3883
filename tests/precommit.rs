//! The real `pre-commit` tool runs `sundial validate` as a hook in a real git repository.

use std::path::Path;

use crate::support::{git, git_ok, require_tool, Project};

/// A repository whose pre-commit config runs the built binary on manifest files.
fn repository() -> Project {
    let binary = env!("CARGO_BIN_EXE_sundial");
    let config = format!(
        "repos:\n  - repo: local\n    hooks:\n      - id: sundial-validate\n        name: sundial validate\n        entry: {binary} validate\n        language: system\n        files: (^|/)(prefect\\.ya?ml|deployments/.+\\.ya?ml)$\n        require_serial: true\n"
    );
    let project = Project::new().file(".pre-commit-config.yaml", &config);
    git_ok(project.path(), &["init", "-q", "-b", "main"]);
    project
}

fn pre_commit(dir: &Path, args: &[&str]) -> std::process::Output {
    let tool = require_tool("pre-commit");
    std::process::Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env("PRE_COMMIT_HOME", dir.join(".cache-pre-commit"))
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "sundial test")
        .env("GIT_AUTHOR_EMAIL", "test@sundial.invalid")
        .env("GIT_COMMITTER_NAME", "sundial test")
        .env("GIT_COMMITTER_EMAIL", "test@sundial.invalid")
        .output()
        .expect("run pre-commit")
}

#[test]
fn a_bad_manifest_blocks_the_commit_and_a_good_one_passes() {
    let project = repository();
    let dir = project.path();
    let out = pre_commit(dir, &["install"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    project.write(
        "deployments/etl.yaml",
        b"deployments:\n  - name: etl\n    entrypoint: flows/etl.py:run\n    retries: -1\n",
    );
    git_ok(dir, &["add", "."]);
    let out = git(dir)
        .env("PRE_COMMIT_HOME", dir.join(".cache-pre-commit"))
        .args(["commit", "-q", "-m", "bad"])
        .output()
        .unwrap();
    let shown =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the commit went through:\n{shown}");
    assert!(shown.contains("deployments/etl.yaml:4:14"), "{shown}");
    assert!(shown.contains("must be at least 0"), "{shown}");

    project.write(
        "deployments/etl.yaml",
        b"deployments:\n  - name: etl\n    entrypoint: flows/etl.py:run\n    retries: 1\n",
    );
    git_ok(dir, &["add", "."]);
    let out = git(dir)
        .env("PRE_COMMIT_HOME", dir.join(".cache-pre-commit"))
        .args(["commit", "-q", "-m", "good"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_published_hook_manifest_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = Project::new();
    let out = pre_commit(
        scratch.path(),
        &[
            "validate-manifest",
            root.join(".pre-commit-hooks.yaml").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
