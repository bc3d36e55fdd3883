//! `sundial explain` and `GET /api/deployments/{name}/explain` on a real daemon: each
//! reason a slot ran or did not (issue 15, point 4).

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;

use crate::support::daemon::{manifest, wait_for_wall_time, Daemon, GitRepo};

fn explain(daemon: &Daemon, deployment: &str, query: &str) -> Value {
    daemon.json(&format!("/api/deployments/{deployment}/explain{query}"))
}

fn stamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// (what, why) of every slot.
fn stories(found: &Value) -> Vec<(String, String)> {
    found["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["what"].as_str().unwrap().to_string(),
                s["why"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn explain_says_why_each_slot_ran_or_did_not() {
    let repo = GitRepo::new();
    let ok = manifest("ok", "echo ok", "interval: 1", "");
    let busy = manifest(
        "busy",
        "sleep 1.6",
        "interval: 1",
        "    concurrency_limit: {limit: 1, collision_strategy: CANCEL_NEW}\n",
    );
    let off = manifest("idle", "echo idle", "interval: 1", "    paused: true\n");
    let daily = manifest(
        "daily",
        "echo daily",
        "cron: \"0 9 * * *\"\n        timezone: Europe/Madrid",
        "",
    );
    let before_deploy = Utc::now();
    repo.commit(
        &[
            ("deployments/ok.yaml", Some(&ok)),
            ("deployments/busy.yaml", Some(&busy)),
            ("deployments/idle.yaml", Some(&off)),
            ("deployments/daily.yaml", Some(&daily)),
        ],
        "four",
    );
    let mut daemon = Daemon::start(repo.path());
    daemon.runs_when("busy", Duration::from_secs(30), "a refused slot", |runs| {
        runs.iter().any(|r| r.reason.as_deref() == Some("overlap"))
    });
    let ran = daemon.completed("ok");

    // Ran, with its lateness; before the deployment, not deployed yet.
    let from = stamp(before_deploy - chrono::Duration::seconds(3));
    let to = stamp(ran[0].scheduled_for.unwrap());
    let found = explain(&daemon, "ok", &format!("?from={from}&to={to}"));
    let told = stories(&found);
    assert_eq!(told.last().unwrap().0, "ran", "{found:#}");
    assert!(told.last().unwrap().1.contains("completed"), "{found:#}");
    assert!(
        found["slots"].as_array().unwrap().last().unwrap()["lateness_seconds"]
            .as_f64()
            .unwrap()
            < 1.0
    );
    assert_eq!(told[0].0, "not_deployed_yet", "{found:#}");

    // Refused by the concurrency limit; skipped because git pauses it.
    let refused = explain(&daemon, "busy", "");
    assert!(
        stories(&refused)
            .iter()
            .any(|(what, why)| what == "refused" && why.contains("CANCEL_NEW")),
        "{refused:#}"
    );
    let off = explain(&daemon, "idle", "");
    assert!(
        off["notes"][0].as_str().unwrap().contains("paused: true"),
        "{off:#}"
    );
    assert!(
        stories(&off)
            .iter()
            .any(|(what, why)| what == "skipped" && why.contains("inactive")),
        "{off:#}"
    );

    // No slot at noon: the nearest fires, 09:00 Madrid on either side.
    let noon = explain(&daemon, "daily", "?at=2026-07-01T12:00");
    assert_eq!(
        noon["no_slot"]["before"], "2026-07-01T07:00:00.000Z",
        "{noon:#}"
    );
    assert_eq!(
        noon["no_slot"]["after"], "2026-07-02T07:00:00.000Z",
        "{noon:#}"
    );
    let (code, body) = daemon.get("/api/deployments/daily/explain?at=noonish");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a time"), "{body}");
    assert_eq!(daemon.get("/api/deployments/nope/explain").0, 404);

    // Missed while the daemon was down.
    daemon.kill_9();
    let down = Utc::now();
    wait_for_wall_time(down + chrono::Duration::seconds(3));
    daemon.restart();
    let missed = daemon.runs_when("ok", Duration::from_secs(30), "the missed slots", |runs| {
        runs.iter()
            .any(|r| r.reason.as_deref().is_some_and(|w| w.starts_with("missed")))
    });
    let slot = missed
        .iter()
        .find(|r| r.reason.as_deref().is_some_and(|w| w.starts_with("missed")))
        .unwrap()
        .scheduled_for
        .unwrap();
    let found = explain(&daemon, "ok", &format!("?at={}", stamp(slot)));
    let told = stories(&found);
    assert_eq!(told.len(), 1, "{found:#}");
    assert_eq!(told[0].0, "skipped", "{found:#}");
    assert!(told[0].1.contains("missed"), "{found:#}");

    // A broken commit: its last good version is in force, and explain says so.
    let head = repo.commit(
        &[(
            "deployments/ok.yaml",
            Some(&ok.replace("interval: 1", "intervall: 1")),
        )],
        "typo",
    );
    daemon.wait_applied(&head);
    let found = explain(&daemon, "ok", "");
    assert!(
        found["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("last good version is in force: deployments/ok.yaml:")),
        "{found:#}"
    );

    // The CLI prints the same as a table.
    let state_dir = daemon.state_dir.display().to_string();
    let out = crate::support::run(&["explain", "busy", "--state-dir", &state_dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("busy: interval"), "{text}");
    assert!(
        text.contains("SLOT") && text.contains("refused") && text.contains("upcoming"),
        "{text}"
    );
}
