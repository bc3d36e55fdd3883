//! Notifications (issue 15): a real HTTP receiver on 127.0.0.1 and a real local command
//! hear each event exactly when it should happen: a failure only after the last retry,
//! a recovery at the first success after it, healthchecks pings at each start, success
//! and final failure. A receiver that is down gets each notification later, once, across
//! a daemon killed in between, and runs go on meanwhile.

use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{wait_until, Daemon, GitRepo, Setup};
use crate::support::receiver::{free_port, Receiver};

/// A manifest whose `job` exits with the code in `code_file`, retried once at once.
fn job_manifest(code_file: &std::path::Path, notifications: &str, schedule: &str) -> String {
    format!(
        "# notifications for every deployment of this file
notifications:
{notifications}
deployments:
  - name: job
    retries: 1
    retry_delay_seconds: 0
    work_pool:
      job_variables:
        command: sh -c 'echo working; exit $(cat {code})'
{schedule}",
        code = code_file.display()
    )
}

fn trigger(daemon: &Daemon) -> i64 {
    let (code, body) = daemon.post("/api/deployments/job/runs", "", Some(&daemon.token()));
    assert_eq!(code, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_webhook_a_command_and_a_healthchecks_ping_hear_each_event_exactly_when_due() {
    let hooks = Receiver::start();
    let repo = GitRepo::new();
    let files = tempfile::tempdir().unwrap();
    let code_file = files.path().join("code");
    let heard = files.path().join("heard.jsonl");
    std::fs::write(&code_file, "1").unwrap();
    let notifications = format!(
        "  - webhook: {hook}
    headers: {{X-Token: \"{{{{ $HOOK_TOKEN }}}}\"}}
    events: [failure, recovery, success]
  - healthchecks: {hc}
  - command: [sh, -c, 'cat >> {heard}; echo \" $SUNDIAL_EVENT $SUNDIAL_DEPLOYMENT\" >> {heard}']
    events: [failure]",
        hook = hooks.url("/hook"),
        hc = hooks.url("/hc/check-1"),
        heard = heard.display(),
    );
    repo.commit(
        &[(
            "prefect.yaml",
            Some(&job_manifest(&code_file, &notifications, "")),
        )],
        "job with notifications",
    );
    let daemon = Daemon::launch(
        repo.path(),
        Setup {
            env: vec![("HOOK_TOKEN".into(), "s3cret".into())],
            ..Setup::default()
        },
    );

    // Two attempts fail: one failure, for the last attempt; a start ping for each.
    let first = trigger(&daemon);
    let failed = wait_until(Duration::from_secs(30), "the failure webhook", || {
        let hook = hooks.to("/hook");
        (!hook.is_empty()).then_some(hook)
    });
    let payload = failed[0].json();
    assert_eq!(payload["event"], "failure", "{payload}");
    assert_eq!(payload["deployment"], "job");
    assert_eq!(
        payload["attempt"], 2,
        "the failure is said after the last retry"
    );
    assert_ne!(payload["run_id"], first, "the first attempt said nothing");
    assert_eq!(payload["state"], "Failed");
    assert_eq!(payload["exit_code"], 1);
    assert_eq!(payload["trigger"], "retry");
    assert!(
        payload["log_tail"].as_str().unwrap().contains("working"),
        "{payload}"
    );
    let run_id = payload["run_id"].as_i64().unwrap();
    assert_eq!(payload["url"], format!("{}/runs/{run_id}", daemon.url));
    assert!(
        payload["text"].as_str().unwrap().contains("job run"),
        "{payload}"
    );
    assert_eq!(
        failed[0].headers.get("x-token").map(String::as_str),
        Some("s3cret")
    );
    assert_eq!(
        failed[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let pinged = wait_until(
        Duration::from_secs(30),
        "the healthchecks fail ping",
        || {
            let hc = hooks.to("/hc/");
            hc.iter().any(|r| r.path.ends_with("/fail")).then_some(hc)
        },
    );
    let paths: Vec<&str> = pinged.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/hc/check-1/start", "/hc/check-1/start", "/hc/check-1/fail"]
    );
    assert!(
        pinged[2].body.contains("working"),
        "the fail ping carries the log tail"
    );
    let command_heard = wait_until(Duration::from_secs(30), "the command", || {
        std::fs::read_to_string(&heard)
            .ok()
            .filter(|t| t.contains(" failure job"))
    });
    let json: Value = serde_json::from_str(
        command_heard
            .lines()
            .next()
            .unwrap()
            .trim_end_matches(" failure job"),
    )
    .unwrap_or_else(|e| panic!("{e}: {command_heard}"));
    assert_eq!(json["run_id"], run_id, "{command_heard}");

    // The next run succeeds: success and recovery, and the plain ping.
    std::fs::write(&code_file, "0").unwrap();
    trigger(&daemon);
    let after = wait_until(Duration::from_secs(30), "success and recovery", || {
        let hook = hooks.to("/hook");
        (hook.len() >= 3).then_some(hook)
    });
    let events: Vec<Value> = after.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(events, ["failure", "success", "recovery"]);
    wait_until(Duration::from_secs(30), "the success ping", || {
        hooks
            .to("/hc/")
            .iter()
            .any(|r| r.path == "/hc/check-1")
            .then_some(())
    });
    // A third success is no recovery; nothing was said twice.
    trigger(&daemon);
    wait_until(Duration::from_secs(30), "the third run's success", || {
        (hooks.to("/hook").len() >= 4).then_some(())
    });
    // A delivery counts once its answer came back: the hooks may have heard the last
    // ones an instant before the daemon recorded them.
    let status = wait_until(Duration::from_secs(30), "every delivery made", || {
        let status = daemon.json("/api/status");
        let n = &status["notifications"];
        (n["waiting"] == 0 && n["delivered"].as_u64() >= Some(4 + 7 + 1)).then_some(status)
    });
    let events: Vec<Value> = hooks
        .to("/hook")
        .iter()
        .map(|r| r.json()["event"].clone())
        .collect();
    assert_eq!(events, ["failure", "success", "recovery", "success"]);
    let pings: Vec<String> = hooks.to("/hc/").iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        pings,
        [
            "/hc/check-1/start",
            "/hc/check-1/start",
            "/hc/check-1/fail",
            "/hc/check-1/start",
            "/hc/check-1",
            "/hc/check-1/start",
            "/hc/check-1"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&heard)
            .unwrap()
            .matches(" failure job")
            .count(),
        1
    );
    assert_eq!(status["notifications"]["delivered"], 4 + 7 + 1, "{status}");
    assert_eq!(status["notifications"]["failing"], 0, "{status}");
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics.contains("sundial_notifications_delivered 12"),
        "{metrics}"
    );
}

#[test]
fn a_receiver_that_is_down_gets_each_notification_later_once_and_runs_go_on() {
    let port = free_port();
    let repo = GitRepo::new();
    let files = tempfile::tempdir().unwrap();
    let code_file = files.path().join("code");
    std::fs::write(&code_file, "1").unwrap();
    let notifications = format!(
        "  - webhook: http://127.0.0.1:{port}/hook\n  - webhook: http://127.0.0.1:{port}/other\n    events: [failure]"
    );
    // Its own empty list: the root prefect.yaml's is the repository's default.
    let tick = "deployments:\n  - name: tick\n    notifications: []\n    work_pool:\n      job_variables:\n        command: echo tick\n    schedules:\n      - interval: 1\n";
    repo.commit(
        &[
            (
                "prefect.yaml",
                Some(&job_manifest(&code_file, &notifications, "")),
            ),
            ("deployments/tick.yaml", Some(tick)),
        ],
        "job and tick",
    );
    let mut daemon = Daemon::start(repo.path());
    let run = trigger(&daemon);
    let _ = run;
    // Nothing listens: each delivery fails, is retried later, and shows in the status.
    let status = wait_until(Duration::from_secs(30), "failing deliveries", || {
        let status = daemon.json("/api/status");
        (status["notifications"]["failing"] == 2).then_some(status)
    });
    let error = status["notifications"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("webhook http://127.0.0.1") && error.contains("/…"),
        "{error}"
    );
    assert!(
        !error.contains("/hook"),
        "the path (which may hold a secret) is not shown: {error}"
    );
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics.contains("sundial_notifications_failing 2"),
        "{metrics}"
    );
    // Runs are not held up: `tick` goes on every second meanwhile.
    let ticks = daemon.stored_runs("tick").len();
    daemon.runs_when("tick", Duration::from_secs(30), "tick going on", |runs| {
        runs.len() >= ticks + 3
    });

    // Killed while the deliveries wait: they are in the store, and delivered after the
    // restart once the receiver is up.
    daemon.kill_9();
    let hooks = Receiver::start_on(port);
    daemon.restart();
    let delivered = wait_until(Duration::from_secs(60), "both deliveries", || {
        let d = hooks.delivered();
        (d.len() >= 2).then_some(d)
    });
    let status = wait_until(Duration::from_secs(30), "nothing waiting", || {
        let status = daemon.json("/api/status");
        (status["notifications"]["waiting"] == 0).then_some(status)
    });
    assert_eq!(status["notifications"]["delivered"], 2, "{status}");
    assert_eq!(status["notifications"]["failing"], 0, "{status}");
    assert!(status["notifications"]["last_error"].is_null(), "{status}");
    let mut paths: Vec<&str> = delivered.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/hook", "/other"], "each delivered once");
    for r in &delivered {
        assert_eq!(r.json()["event"], "failure");
    }
    assert_eq!(hooks.seen().len(), 2, "nothing was sent twice");
}

/// `skipped` for a slot refused by the concurrency limit (CANCEL_NEW) or inactive, and
/// `late` for a first attempt that started past `late_grace_seconds` (queued behind the
/// limit); nothing for slots that ran on time.
#[test]
fn skipped_and_late_slots_are_told_and_on_time_ones_are_not() {
    let hooks = Receiver::start();
    let repo = GitRepo::new();
    let text = format!(
        "notifications:
  - webhook: {hook}
    events: [skipped, late]
deployments:
  - name: refusing
    concurrency_limit: {{limit: 1, collision_strategy: CANCEL_NEW}}
    work_pool: {{job_variables: {{command: sleep 1.5}}}}
    schedules:
      - interval: 1
  - name: queueing
    concurrency_limit: 1
    late_grace_seconds: 0.5
    work_pool: {{job_variables: {{command: sleep 1.5}}}}
    schedules:
      - interval: 1
  - name: on-time
    work_pool: {{job_variables: {{command: echo on time}}}}
    schedules:
      - interval: 1
",
        hook = hooks.url("/hook"),
    );
    repo.commit(&[("prefect.yaml", Some(&text))], "three");
    let daemon = Daemon::start(repo.path());
    let heard = wait_until(
        Duration::from_secs(60),
        "a skipped and a late notification",
        || {
            let all: Vec<Value> = hooks.to("/hook").iter().map(|r| r.json()).collect();
            let skipped = all
                .iter()
                .any(|p| p["event"] == "skipped" && p["deployment"] == "refusing");
            let late = all
                .iter()
                .any(|p| p["event"] == "late" && p["deployment"] == "queueing");
            (skipped && late).then_some(all)
        },
    );
    daemon.completed("on-time");
    // A slot a stalled machine let pass is `skipped` (missed) too, whichever deployment:
    // told rightly, and not what this test is about.
    let heard: Vec<&Value> = heard.iter().filter(|p| p["reason"] != "missed").collect();
    for p in &heard {
        match p["event"].as_str().unwrap() {
            "skipped" => {
                assert_eq!(p["deployment"], "refusing", "{p}");
                assert_eq!(p["reason"], "overlap", "{p}");
                assert!(p["started_at"].is_null(), "{p}");
            }
            "late" => {
                assert_eq!(p["deployment"], "queueing", "{p}");
                let slot: chrono::DateTime<chrono::Utc> =
                    p["slot"].as_str().unwrap().parse().unwrap();
                let start: chrono::DateTime<chrono::Utc> =
                    p["started_at"].as_str().unwrap().parse().unwrap();
                assert!(start - slot > chrono::Duration::milliseconds(500), "{p}");
            }
            other => panic!("unexpected event {other}: {p}"),
        }
    }
    assert!(heard.iter().all(|p| p["deployment"] != "on-time"));
}

/// The root `prefect.yaml`'s top-level `notifications:` is the repository's default: a
/// deployment in another file hears it unless that file or the deployment lists its own.
#[test]
fn the_root_prefect_yaml_sets_the_repository_default_and_a_file_or_deployment_replaces_it() {
    let hooks = Receiver::start();
    let repo = GitRepo::new();
    let root = format!(
        "# the repository's default: every deployment without a list of its own
notifications:
  - webhook: {}
    events: [failure]
deployments: []
",
        hooks.url("/root")
    );
    let plain =
        "deployments:\n  - name: plain\n    work_pool: {job_variables: {command: 'false'}}\n";
    let own_file = format!(
        "notifications:\n  - webhook: {}\n    events: [failure]\ndeployments:\n  - name: filed\n    work_pool: {{job_variables: {{command: 'false'}}}}\n",
        hooks.url("/file")
    );
    repo.commit(
        &[
            ("prefect.yaml", Some(&root)),
            ("deployments/plain.yaml", Some(plain)),
            ("deployments/filed.yaml", Some(&own_file)),
        ],
        "defaults",
    );
    let daemon = Daemon::start(repo.path());
    for name in ["plain", "filed"] {
        let (code, body) = daemon.post(
            &format!("/api/deployments/{name}/runs"),
            "",
            Some(&daemon.token()),
        );
        assert_eq!(code, 201, "{body}");
    }
    let heard = wait_until(Duration::from_secs(30), "both failures told", || {
        let d = hooks.delivered();
        (d.len() >= 2).then_some(d)
    });
    let mut told: Vec<(String, String)> = heard
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.json()["deployment"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        [
            ("/file".to_string(), "filed".to_string()),
            ("/root".to_string(), "plain".to_string())
        ]
    );
}
