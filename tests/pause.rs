//! Pause after failures (issue 15): the failure that reaches `pause_after_failures`
//! pauses the schedules at run time, notifies, and skips slots until a resume (CLI, API)
//! or a commit that changes the deployment.

use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{wait_until, Daemon, GitRepo};
use crate::support::receiver::Receiver;

/// `pause_after_failures`: the failure that reaches the count pauses the schedules (a
/// `paused` notification says so and how to resume); slots are then Skipped `paused after
/// failures`; the pause survives a restart; `sundial resume` ends it, and the next success
/// is a recovery. A commit that changes the deployment resumes it too.
#[test]
fn failing_slots_in_a_row_pause_the_deployment_until_it_is_resumed() {
    let hooks = Receiver::start();
    let repo = GitRepo::new();
    let files = tempfile::tempdir().unwrap();
    let code_file = files.path().join("code");
    std::fs::write(&code_file, "1").unwrap();
    let manifest = |description: &str| {
        format!(
            "deployments:
  - name: flaky
    description: {description}
    pause_after_failures: 3
    notifications:
      - webhook: {hook}
    work_pool:
      job_variables:
        command: sh -c 'exit $(cat {code})'
    schedules:
      - interval: 1
",
            hook = hooks.url("/hook"),
            code = code_file.display()
        )
    };
    repo.commit(&[("prefect.yaml", Some(&manifest("first")))], "flaky");
    let mut daemon = Daemon::start(repo.path());
    let pause = wait_until(Duration::from_secs(30), "the pause", || {
        let list = daemon.json("/api/deployments");
        let pause = list[0]["paused_after_failures"].clone();
        (!pause.is_null()).then_some(pause)
    });
    let note = pause["note"].as_str().unwrap();
    assert!(
        note.contains("paused after 3 failed runs in a row")
            && note.contains("sundial resume flaky"),
        "{note}"
    );
    assert_eq!(
        daemon.json("/api/deployments")[0]["paused"],
        false,
        "git does not say paused"
    );
    // Slots go on being recorded, Skipped, and nothing starts.
    let runs = daemon.runs_when(
        "flaky",
        Duration::from_secs(30),
        "two paused slots",
        |runs| {
            runs.iter()
                .filter(|r| r.reason.as_deref() == Some("paused after failures"))
                .count()
                >= 2
        },
    );
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| r.state == sundial::store::RunState::Failed)
        .collect();
    assert!(failed.len() >= 3, "{runs:#?}");
    let since: chrono::DateTime<chrono::Utc> = pause["since"].as_str().unwrap().parse().unwrap();
    // A slot armed before the pause was decided (its row committed ahead of its time, at
    // most the arm lead: 100 ms, up to 5 s while commits are slow) either had begun, or is
    // withdrawn (Cancelled `deployment paused`); none armed after it starts.
    assert!(
        runs.iter()
            .all(|r| r.started_at.is_none() || r.created_at <= since),
        "a run armed after the pause started: {runs:#?}"
    );
    let heard = wait_until(Duration::from_secs(30), "the paused notification", || {
        let hook = hooks.to("/hook");
        hook.iter()
            .any(|r| r.json()["event"] == "paused")
            .then_some(hook)
    });
    let events: Vec<Value> = heard.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(events.len(), failed.len() + 1, "{events:?}");
    assert_eq!(events.last().unwrap(), "paused");
    assert!(heard.last().unwrap().json()["text"]
        .as_str()
        .unwrap()
        .contains("sundial resume flaky"));

    // Durable: still paused after a restart.
    daemon.terminate();
    daemon.restart();
    assert!(!daemon.json("/api/deployments")[0]["paused_after_failures"].is_null());

    // Resume: refused without the token, then done by the CLI; the next success recovers.
    let (code, _) = daemon.post("/api/deployments/flaky/resume", "", None);
    assert_eq!(code, 401);
    std::fs::write(&code_file, "0").unwrap();
    let state_dir = daemon.state_dir.display().to_string();
    let out = crate::support::run(&["resume", "flaky", "--state-dir", &state_dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Resumed flaky"));
    let (code, body) = daemon.post("/api/deployments/flaky/resume", "", Some(&daemon.token()));
    assert_eq!(code, 409, "{body}");
    wait_until(Duration::from_secs(30), "the recovery", || {
        hooks
            .to("/hook")
            .iter()
            .any(|r| r.json()["event"] == "recovery")
            .then_some(())
    });

    // Paused again; this time a commit that changes the deployment resumes it.
    std::fs::write(&code_file, "1").unwrap();
    wait_until(Duration::from_secs(30), "the second pause", || {
        (!daemon.json("/api/deployments")[0]["paused_after_failures"].is_null()).then_some(())
    });
    std::fs::write(&code_file, "0").unwrap();
    let head = repo.commit(&[("prefect.yaml", Some(&manifest("fixed")))], "fix flaky");
    daemon.wait_applied(&head);
    assert!(daemon.json("/api/deployments")[0]["paused_after_failures"].is_null());
    assert!(
        daemon
            .log()
            .contains("flaky: resumed: a new commit changed it"),
        "{}",
        daemon.log()
    );
    daemon.runs_when(
        "flaky",
        Duration::from_secs(30),
        "a run after the fix",
        |runs| {
            runs.iter()
                .any(|r| r.state == sundial::store::RunState::Completed && r.commit == head)
        },
    );
}
