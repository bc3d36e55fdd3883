//! Test fixtures: real git repositories made with the `git` CLI in temporary directories,
//! isolated from the user's and the system's git configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Repo, SourceConfig};

/// A temporary directory holding a `HOME` for git and any repositories under `work/`.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs git in `cwd` and returns its trimmed stdout; panics with git's stderr on failure.
    #[track_caller]
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        self.git_with(cwd, args, &[])
    }

    /// [`Fixture::git`] with extra environment variables (`GIT_COMMITTER_DATE`).
    #[track_caller]
    pub fn git_with(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().copied())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `git init -b main` of a new work tree at `rel`.
    pub fn init(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(&path).unwrap();
        self.git(&path, &["init", "-q", "-b", "main"]);
        path
    }

    /// Writes `files` (path, contents) into the work tree, stages everything and commits;
    /// returns the new commit's sha.
    pub fn commit(&self, repo: &Path, files: &[(&str, &str)], message: &str) -> String {
        self.commit_at(repo, files, message, None)
    }

    /// [`Fixture::commit`] with the commit time `date` (RFC 3339) when given.
    pub fn commit_at(
        &self,
        repo: &Path,
        files: &[(&str, &str)],
        message: &str,
        date: Option<&str>,
    ) -> String {
        for (rel, text) in files {
            write(repo, rel, text);
        }
        self.git(repo, &["add", "-A"]);
        let env: Vec<(&str, &str)> = date
            .map(|d| vec![("GIT_COMMITTER_DATE", d), ("GIT_AUTHOR_DATE", d)])
            .unwrap_or_default();
        self.git_with(
            repo,
            &["commit", "-q", "--allow-empty", "-m", message],
            &env,
        );
        self.git(repo, &["rev-parse", "HEAD"])
    }
}

/// Writes a file in a work tree, creating its directories.
pub(crate) fn write(repo: &Path, rel: &str, text: &str) {
    let path = repo.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub(crate) fn config(repo: &Path, branch: &str) -> SourceConfig {
    SourceConfig {
        repo: repo.to_path_buf(),
        branch: branch.into(),
        remote: None,
        max_file_size: crate::manifest::limits::DEFAULT_MAX_FILE_SIZE,
    }
}

#[track_caller]
pub(crate) fn open(repo: &Path) -> Repo {
    Repo::open(&config(repo, "main")).expect("open repo")
}

/// The loose object file of `id` in the work tree `repo`.
pub(crate) fn loose_object(repo: &Path, id: &str) -> PathBuf {
    repo.join(".git/objects").join(&id[..2]).join(&id[2..])
}

/// Cuts the loose object `id` of `repo` to half its size: a zlib stream without its end,
/// as a crash or a full disk leaves it.
pub(crate) fn truncate_object(repo: &Path, id: &str) {
    let path = loose_object(repo, id);
    let bytes = std::fs::read(&path).expect("a loose object");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
}

/// A manifest large enough that half of its compressed object is a real truncated
/// stream (several deflate blocks' worth of input).
pub(crate) fn long_manifest() -> String {
    let mut text = String::from("deployments:\n");
    for i in 0..200 {
        text.push_str(&format!(
            "  - name: job-{i}\n    entrypoint: flows/job_{i}.py:main\n    schedules:\n      - cron: \"{} * * * *\"\n",
            i % 60
        ));
    }
    text
}

/// The variable that tells a re-executed test binary it is the child of [`in_child`].
const CHILD_VAR: &str = "SUNDIAL_TEST_CHILD";

/// Whether this process is the child [`in_child`] started for the test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).is_ok_and(|v| v == name)
}

/// Starts this test binary again running only the test `name` (its full path), as a
/// child of its own, with `env` added: for a test whose body must not share the process
/// with the tests beside it (process-wide counters, descriptors used up, a thread that
/// never returns). The test checks [`is_child`] first and, in the child, does the work.
pub fn in_child(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}
