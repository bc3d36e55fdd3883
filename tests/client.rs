//! The CLI client (`sundial deployments|runs|logs|trigger|cancel`) against a real daemon,
//! found through the state directory's `url` file.

use std::time::Duration;

use crate::support::daemon::{wait_until, Daemon};
use crate::support::{sundial, Run};

/// Runs `sundial ARGS --state-dir <the daemon's>` with no SUNDIAL_* variables around.
#[track_caller]
fn cli(daemon: &Daemon, args: &[&str]) -> Run {
    let output = sundial()
        .args(args)
        .arg("--state-dir")
        .arg(&daemon.state_dir)
        .env_remove("SUNDIAL_URL")
        .env_remove("SUNDIAL_STATE_DIR")
        .env("TZ", "Europe/Madrid")
        .output()
        .expect("run sundial");
    Run::from(output)
}

#[test]
fn the_client_lists_triggers_follows_and_cancels() {
    let (_repo, daemon) = crate::api::start();

    let out = cli(&daemon, &["deployments"]).code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "NAME   SCHEDULES                         NEXT                     LAST RUN"
    );
    assert!(
        lines[1].starts_with("hello  cron 0 9 * * * (America/Chicago)  20"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].contains(" CET ") || lines[1].contains(" CEST "),
        "local time with its zone: {}",
        out.stdout
    );
    assert!(lines[2].starts_with("quick  -"), "{}", out.stdout);
    let json = cli(&daemon, &["deployments", "--format", "json"])
        .code(0)
        .json();
    assert_eq!(json[1]["name"], "quick");

    // --param values are JSON when they parse, else strings.
    let run = cli(
        &daemon,
        &[
            "trigger",
            "quick",
            "--param",
            "n=5",
            "--param",
            "who=world",
            "--format",
            "json",
        ],
    )
    .code(0)
    .json();
    assert_eq!(
        run["parameters"],
        serde_json::json!({"n": 5, "who": "world"})
    );
    let id = run["id"].to_string();
    let log = cli(&daemon, &["logs", &id, "--follow"]).code(0);
    assert!(
        log.stdout.contains("done <script>alert(1)</script>\n"),
        "{}",
        log.stdout
    );
    let json = cli(&daemon, &["logs", &id, "--format", "json"])
        .code(0)
        .json();
    assert_eq!(json["run"]["id"].to_string(), id);
    assert!(
        json["log"]
            .as_str()
            .unwrap()
            .contains("done <script>alert(1)</script>\n"),
        "{json}"
    );

    let refused = cli(&daemon, &["trigger", "hello", "--param", "n=abc"]).code(1);
    assert_eq!(
        refused.stderr,
        "error: the parameters do not match the deployment's parameter schema\n  - `n`: \"abc\" is not of type \"integer\"\n"
    );
    let started = cli(&daemon, &["trigger", "hello", "--params", r#"{"n": 2}"#]).code(0);
    let hello = wait_until(Duration::from_secs(5), "hello's run", || {
        started
            .stdout
            .strip_prefix("Started run ")?
            .split(' ')
            .next()
            .map(str::to_string)
    });
    assert_eq!(
        started.stdout,
        format!("Started run {hello} of hello (Running). Follow it with `sundial logs {hello} --follow`.\n")
    );

    let runs = cli(&daemon, &["runs", "--deployment", "quick"]).code(0);
    let lines: Vec<&str> = runs.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID  DEPLOYMENT  STATE      CAUSE   STARTED"),
        "{}",
        runs.stdout
    );
    assert!(
        lines[1].starts_with(&format!("{id}   quick       Completed  manual  20")),
        "{}",
        runs.stdout
    );
    assert!(
        runs.stdout.lines().all(|l| l.chars().count() <= 80),
        "{}",
        runs.stdout
    );

    let cancelled = cli(&daemon, &["cancel", &hello]).code(0);
    assert_eq!(
        cancelled.stdout,
        format!("Cancelling run {hello} of hello (it was Running): SIGTERM to its process group, SIGKILL after the daemon's grace.\n")
    );
    wait_until(Duration::from_secs(20), "hello cancelled", || {
        (daemon.json(&format!("/api/runs/{hello}"))["state"] == "Cancelled").then_some(())
    });
    cli(&daemon, &["cancel", &hello])
        .code(1)
        .stderr_has(&format!("error: run {hello} already ended (Cancelled)"));
    cli(
        &daemon,
        &["runs", "--state", "Cancelled", "--format", "json"],
    )
    .code(0);
    cli(&daemon, &["runs", "--state", "bogus"])
        .code(1)
        .stderr_has("unknown state \"bogus\"");
    cli(&daemon, &["logs", "999"])
        .code(1)
        .stderr_has("error: no run 999");
}

#[test]
fn the_client_says_how_to_start_a_daemon_that_is_not_running() {
    let out = sundial()
        .args([
            "runs",
            "--url",
            "http://127.0.0.1:9",
            "--state-dir",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    let run = Run::from(out).code(1);
    run.stderr_has("cannot reach the sundial daemon at http://127.0.0.1:9")
        .stderr_has("Start it with `sundial daemon --repo PATH`");
}

#[test]
fn usage_errors_exit_2_with_what_to_do() {
    let run = |args: &[&str]| {
        Run::from(
            sundial()
                .args(args)
                .env_remove("SUNDIAL_URL")
                .output()
                .unwrap(),
        )
    };
    run(&["trigger", "x", "--param", "novalue"])
        .code(2)
        .stderr_has("--param \"novalue\": write it as KEY=VALUE");
    run(&["trigger", "x", "--params", "[1]"])
        .code(2)
        .stderr_has("--params: give a JSON object");
    run(&["runs", "--limit", "many"]).code(2);
    run(&[
        "cancel",
        "1",
        "--url",
        "http://127.0.0.1:9",
        "--state-dir",
        "/nonexistent",
    ])
    .code(2)
    .stderr_has("cannot read the API token `/nonexistent/token`");
}

#[test]
fn runs_of_an_unknown_deployment_say_so_and_suggest_the_closest() {
    let (_repo, daemon) = crate::api::start();
    let out = cli(&daemon, &["runs", "--deployment", "helo"]).code(1);
    assert_eq!(
        out.stderr,
        "error: no runs, and no deployment is named `helo`; did you mean `hello`?\n"
    );
    let out = cli(&daemon, &["runs", "--deployment", "zzz"]).code(1);
    assert!(
        out.stderr.contains("`sundial deployments` lists them"),
        "{}",
        out.stderr
    );
    let out = cli(&daemon, &["runs", "--deployment", "hello"]).code(0);
    assert_eq!(out.stdout, "No runs of hello yet.\n");
}

#[test]
fn next_refuses_a_count_of_zero() {
    let out = sundial()
        .args(["next", "--cron", "0 9 * * *", "--count", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid value '0' for '--count <N>'"),
        "{out:?}"
    );
}

#[test]
fn tables_sent_to_a_pipe_are_never_cut() {
    let (_repo, daemon) = crate::api::start();
    let output = sundial()
        .args(["deployments", "--state-dir"])
        .arg(&daemon.state_dir)
        .env_remove("SUNDIAL_URL")
        .env_remove("SUNDIAL_STATE_DIR")
        .env("COLUMNS", "40")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("cron 0 9 * * * (America/Chicago)") && !stdout.contains('…'),
        "{stdout}"
    );
}

#[test]
fn status_shows_a_broken_commits_errors_and_exits_1() {
    use crate::support::daemon::{manifest, GitRepo};
    let repo = GitRepo::new();
    let good = manifest("nightly", "echo ok", "cron: \"0 3 * * *\"", "");
    let first = repo.commit(&[("deployments/n.yaml", Some(&good))], "good");
    let daemon = Daemon::start(repo.path());
    let out = cli(&daemon, &["status"]).code(0);
    assert!(
        out.stdout
            .starts_with(&format!("commit {} applied ", &first[..7])),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("next: nightly at "), "{}", out.stdout);
    let bad = good.replace("0 3 * * *", "0 25 * * *");
    let broken = repo.commit(&[("deployments/n.yaml", Some(&bad))], "bad");
    wait_until(Duration::from_secs(20), "the broken commit applied", || {
        (daemon.json("/api/status")["commit"] == broken.as_str()).then_some(())
    });
    let out = cli(&daemon, &["status"]).code(1);
    assert!(
        out.stdout.contains("error: deployments/n.yaml:7:15: "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("held at their last good version (their file fails now): nightly"),
        "{}",
        out.stdout
    );
}
