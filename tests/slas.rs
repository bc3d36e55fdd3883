//! SLAs from prefect.yaml's `sla:` key (issue 15): each kind of breach recorded once per
//! subject, shown and notified, on a real daemon with a real receiver.

use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{wait_until, Daemon, GitRepo};
use crate::support::receiver::Receiver;

/// SLAs from prefect.yaml's `sla:` key: each kind is recorded once per subject, listed by
/// `/api/breaches` and `sundial breaches`, counted in `/metrics` and sent as `sla`
/// notifications; the runs themselves go on (a long run completes after its breach).
#[test]
fn each_kind_of_sla_breach_is_recorded_once_shown_and_notified() {
    let hooks = Receiver::start();
    let repo = GitRepo::new();
    let text = format!(
        "notifications:
  - webhook: {hook}
    events: [sla]
deployments:
  - name: long
    work_pool: {{job_variables: {{command: sleep 3}}}}
    schedules:
      - interval: 3600
        anchor_date: \"{soon}\"
    sla:
      - name: done-in-a-second
        duration: 1
        severity: high
  - name: quick
    work_pool: {{job_variables: {{command: echo quick}}}}
    schedules:
      - interval: 3600
        anchor_date: \"{soon}\"
    sla:
      - name: takes-a-while
        min_duration: 5
  - name: queued
    concurrency_limit: 1
    work_pool: {{job_variables: {{command: sleep 2.5}}}}
    schedules:
      - interval: 1
    sla:
      - name: starts-on-time
        within: 1
        severity: critical
  - name: never-succeeds
    work_pool: {{job_variables: {{command: 'false'}}}}
    schedules:
      - interval: 1
    sla:
      - name: fresh
        stale_after: PT2S
      - name: freshness
        resource_match: {{prefect.resource.id: x}}
        expected_event: prefect.flow-run.Completed
",
        hook = hooks.url("/hook"),
        soon = crate::support::daemon::soon(4),
    );
    repo.commit(&[("prefect.yaml", Some(&text))], "slas");
    let daemon = Daemon::start(repo.path());
    let kinds = [
        "time_to_completion",
        "min_duration",
        "lateness",
        "frequency",
    ];
    let breaches = wait_until(Duration::from_secs(60), "a breach of each kind", || {
        let found = daemon.json("/api/breaches?limit=1000");
        let all = found.as_array().unwrap().clone();
        kinds
            .iter()
            .all(|k| all.iter().any(|b| b["kind"] == *k))
            .then_some(all)
    });
    let of = |kind: &str| -> Vec<Value> {
        breaches
            .iter()
            .filter(|b| b["kind"] == kind)
            .cloned()
            .collect()
    };
    let long = &of("time_to_completion")[0];
    assert_eq!(
        (
            long["deployment"].as_str(),
            long["sla"].as_str(),
            long["severity"].as_str()
        ),
        (Some("long"), Some("done-in-a-second"), Some("high"))
    );
    assert!(
        long["detail"]
            .as_str()
            .unwrap()
            .contains("running for longer than 1 s"),
        "{long}"
    );
    let quick = &of("min_duration")[0];
    assert!(
        quick["detail"].as_str().unwrap().contains("less than 5 s"),
        "{quick}"
    );
    assert_eq!(of("lateness")[0]["severity"], "critical");
    assert!(
        of("frequency")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no run has completed"),
        "{breaches:?}"
    );
    assert_eq!(
        of("time_to_completion").len(),
        1,
        "one breach per run, however often it is checked"
    );
    assert_eq!(of("min_duration").len(), 1);
    // The long run goes on to complete after its breach.
    let runs = daemon.runs_when(
        "long",
        Duration::from_secs(30),
        "the long run completed",
        |runs| {
            runs.iter()
                .any(|r| r.state == sundial::store::RunState::Completed)
        },
    );
    assert_eq!(runs.len(), 1);
    // Each breach is one `sla` notification, with the SLA in the payload.
    let heard = wait_until(Duration::from_secs(30), "the notifications", || {
        let hook = hooks.to("/hook");
        (hook.len() >= breaches.len()).then_some(hook)
    });
    for r in &heard {
        let payload = r.json();
        assert_eq!(payload["event"], "sla", "{payload}");
        assert!(
            kinds.contains(&payload["sla"]["kind"].as_str().unwrap()),
            "{payload}"
        );
        assert!(
            payload["text"].as_str().unwrap().contains("breached SLA"),
            "{payload}"
        );
    }
    let stale = heard
        .iter()
        .map(|r| r.json())
        .find(|p| p["sla"]["kind"] == "frequency")
        .unwrap();
    assert_eq!(stale["deployment"], "never-succeeds");
    // Shown: in /metrics and by the CLI; the freshness SLA was a warning and is not watched.
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics
            .contains("sundial_sla_breaches_total{deployment=\"long\",sla=\"done-in-a-second\"} 1"),
        "{metrics}"
    );
    assert!(breaches.iter().all(|b| b["sla"] != "freshness"));
    let status = daemon.json("/api/status");
    assert!(
        status["warnings"].to_string().contains("freshness SLA"),
        "{status}"
    );
    let state_dir = daemon.state_dir.display().to_string();
    let out = crate::support::run(&[
        "breaches",
        "--deployment",
        "long",
        "--state-dir",
        &state_dir,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("done-in-a-second (time_to_completion)"));
}
