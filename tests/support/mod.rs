//! Helpers shared by the integration tests.

use std::process::{Command, Output};

/// A `Command` for the `sundial` binary under test.
pub fn sundial() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sundial"))
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
