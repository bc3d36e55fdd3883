//! Helpers shared by the integration tests: a builder for a temporary project, the built
//! binary, and external tools that the test command installs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sundial` binary cargo built for this test run.
pub fn sundial() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sundial"))
}

/// A temporary directory holding files a test writes.
pub struct Project {
    dir: tempfile::TempDir,
}

/// The flow files the tests' manifests name, each defining its function: `sundial
/// validate` finds entrypoints in the work tree, and a missing one is an error.
const FLOWS: &[(&str, &str)] = &[
    (
        "flows/etl.py",
        "def run():\n    pass\n\n\ndef daily_job():\n    pass\n",
    ),
    (
        "flows/hello.py",
        "def hello(name=\"world\"):\n    print(name)\n",
    ),
    ("a.py", "def f():\n    pass\n"),
    ("x.py", "def f():\n    pass\n"),
    ("y.py", "def g():\n    pass\n"),
];

impl Project {
    /// An empty directory but for the flow files of [`FLOWS`].
    #[track_caller]
    pub fn new() -> Project {
        let project = Project {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        for (rel, text) in FLOWS {
            project.write(rel, text.as_bytes());
        }
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` at `rel` (creating directories); returns self for chaining.
    #[track_caller]
    pub fn file(self, rel: &str, text: &str) -> Project {
        self.write(rel, text.as_bytes());
        self
    }

    #[track_caller]
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        std::fs::write(&path, bytes).expect("write a file");
        path
    }

    /// Runs `sundial ARGS` in the project directory.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_from("", args)
    }

    /// Runs `sundial ARGS` in the project's directory `rel` (created if missing).
    #[track_caller]
    pub fn run_from(&self, rel: &str, args: &[&str]) -> Run {
        let dir = self.path().join(rel);
        std::fs::create_dir_all(&dir).expect("create the directory");
        let output = sundial()
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run sundial");
        Run::from(output)
    }
}

impl Project {
    /// Runs `sundial ARGS` in the project directory with its address space limited to
    /// `bytes` (`ulimit -v`): an allocation past it fails, and so does the run.
    #[track_caller]
    pub fn run_within(&self, bytes: u64, args: &[&str]) -> Run {
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -v "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg((bytes >> 10).to_string())
            .arg(env!("CARGO_BIN_EXE_sundial"))
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("run sundial under sh");
        Run::from(output)
    }
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn code(self, expected: i32) -> Run {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Finds an external tool the test command installs; fails the test with the fix when it
/// is missing, so a machine without it cannot pass by skipping.
#[track_caller]
pub fn require_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("`{name}` is not installed; run `./scripts/test.sh`, which installs what the tests need"))
}

/// A `git` command with a fixed identity, for test repositories.
pub fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "sundial test")
        .env("GIT_AUTHOR_EMAIL", "test@sundial.invalid")
        .env("GIT_COMMITTER_NAME", "sundial test")
        .env("GIT_COMMITTER_EMAIL", "test@sundial.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    cmd
}

/// Runs a git command and insists that it succeeds.
#[track_caller]
pub fn git_ok(dir: &Path, args: &[&str]) {
    let out = git(dir).args(args).output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `sundial` with `args`, returning its output whatever the exit code.
#[track_caller]
pub fn run(args: &[&str]) -> Output {
    sundial()
        .args(args)
        .output()
        .expect("the sundial binary runs")
}

/// Runs `sundial` with `args`, asserts exit 0 and an empty stderr, and returns stdout.
#[track_caller]
pub fn stdout_of(args: &[&str]) -> String {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sundial {args:?} failed: {stderr}");
    assert_eq!(stderr, "", "sundial {args:?} wrote to stderr");
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// Runs `sundial` with `args`, asserts exit code `code` and returns stderr.
#[track_caller]
pub fn failure_of(args: &[&str], code: i32) -> String {
    let output = run(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "sundial {args:?}: {output:?}"
    );
    String::from_utf8(output.stderr).expect("utf-8 stderr")
}

pub mod browser;
pub mod daemon;
pub mod postgres;
pub mod proxy;
pub mod receiver;
