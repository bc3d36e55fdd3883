use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::store::Trigger;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn run(state: RunState) -> Run {
    let started = !matches!(
        state,
        RunState::Skipped | RunState::Pending | RunState::Scheduled | RunState::AwaitingRetry
    );
    Run {
        id: 7,
        deployment: "etl".into(),
        schedule_id: Some("s".into()),
        scheduled_for: Some(at("2026-03-01T09:00:00Z")),
        trigger: Trigger::Schedule,
        state,
        reason: None,
        attempt: 1,
        commit: "abc".into(),
        parameters: json!({}),
        created_at: at("2026-03-01T09:00:00Z"),
        started_at: started.then(|| at("2026-03-01T09:00:00.002Z")),
        ended_at: (started && state.is_final()).then(|| at("2026-03-01T09:00:03Z")),
        exit_code: None,
        pid: None,
        not_before: None,
        retry_pending: false,
        retry_of: None,
        node: None,
        epoch: None,
    }
}

#[test]
fn a_start_is_said_once_and_a_success_after_it() {
    let mut health = Health::default();
    assert_eq!(
        events(&run(RunState::Running), None, &mut health, None),
        [Event::Start]
    );
    assert_eq!(
        events(
            &run(RunState::Completed),
            Some(RunState::Running),
            &mut health,
            None
        ),
        [Event::Success]
    );
    // A run that started and ended between two passes still says both.
    assert_eq!(
        events(&run(RunState::Completed), None, &mut health, None),
        [Event::Start, Event::Success]
    );
}

#[test]
fn a_failure_waits_for_the_retry_decision_and_is_said_once_no_retry_follows() {
    let mut health = Health::default();
    let mut failed = run(RunState::Failed);
    failed.retry_pending = true;
    assert!(events(&failed, Some(RunState::Running), &mut health, None).is_empty());
    assert_eq!(health, Health::default());
    failed.retry_pending = false;
    assert_eq!(
        events(&failed, Some(RunState::Failed), &mut health, None),
        [Event::Failure]
    );
    assert_eq!(
        health,
        Health {
            failing: true,
            failures_in_a_row: 1,
            ..Health::default()
        }
    );
    assert_eq!(
        events(
            &run(RunState::TimedOut),
            Some(RunState::Running),
            &mut health,
            None
        ),
        [Event::Failure]
    );
    assert_eq!(health.failures_in_a_row, 2);
}

#[test]
fn the_first_success_after_a_failure_is_a_recovery_and_clears_the_count() {
    let mut health = Health {
        failing: true,
        failures_in_a_row: 3,
        watch_since: Some("2026-03-01T00:00:00Z".parse().unwrap()),
        last_success: None,
    };
    assert_eq!(
        events(
            &run(RunState::Completed),
            Some(RunState::Running),
            &mut health,
            None
        ),
        [Event::Success, Event::Recovery]
    );
    // Cleared, with the success's time kept for `stale_after`.
    assert_eq!(
        health,
        Health {
            last_success: Some("2026-03-01T09:00:03Z".parse().unwrap()),
            ..Health::default()
        }
    );
    assert_eq!(
        events(
            &run(RunState::Completed),
            Some(RunState::Running),
            &mut health,
            None
        ),
        [Event::Success]
    );
}

#[test]
fn skipped_and_refused_slots_are_skipped_and_a_cancel_is_nothing() {
    let mut health = Health::default();
    assert_eq!(
        events(&run(RunState::Skipped), None, &mut health, None),
        [Event::Skipped]
    );
    let mut refused = run(RunState::Cancelled);
    refused.started_at = None;
    refused.reason = Some("overlap".into());
    assert_eq!(events(&refused, None, &mut health, None), [Event::Skipped]);
    let mut cancelled = run(RunState::Cancelled);
    cancelled.reason = Some("cancelled by a user".into());
    assert!(events(&cancelled, Some(RunState::Running), &mut health, None).is_empty());
    assert_eq!(health, Health::default());
}

#[test]
fn healthchecks_hear_start_success_and_failure_only_and_others_their_list() {
    let ping = Notification {
        target: Target::Healthchecks {
            url: "https://hc-ping.com/x".into(),
        },
        on: Vec::new(),
    };
    let hook = Notification {
        target: Target::Webhook {
            url: "https://example.invalid/h".into(),
            headers: Vec::new(),
        },
        on: Event::DEFAULT.to_vec(),
    };
    for (event, pinged, hooked) in [
        (Event::Start, true, false),
        (Event::Success, true, false),
        (Event::Failure, true, true),
        (Event::Recovery, false, true),
        (Event::Skipped, false, false),
    ] {
        assert_eq!(ping.wants(event), pinged, "{event:?}");
        assert_eq!(hook.wants(event), hooked, "{event:?}");
    }
}

#[test]
fn the_payload_says_what_happened_with_the_log_tail_and_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("7.log");
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!("line {i}\n"));
    }
    std::fs::write(&log, &text).unwrap();
    let mut failed = run(RunState::Failed);
    failed.exit_code = Some(3);
    failed.attempt = 2;
    let links = RunLinks {
        base_url: "http://127.0.0.1:4280",
        log: &log,
    };
    let p = Payload::new(Event::Failure, &failed, &links);
    assert_eq!(p.url, "http://127.0.0.1:4280/runs/7");
    assert_eq!(p.duration_seconds, Some(2.998));
    assert_eq!(p.slot.as_deref(), Some("2026-03-01T09:00:00.000Z"));
    assert_eq!(
        p.text,
        "sundial: etl run 7 failed (exit code 3) after 2 attempts: http://127.0.0.1:4280/runs/7"
    );
    assert!(p.log_tail.len() <= payload::LOG_TAIL_BYTES);
    assert!(p.log_tail.starts_with("line ") && p.log_tail.ends_with("line 1999\n"));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["event"], "failure");
    assert_eq!(json["exit_code"], 3);
}

#[test]
fn a_first_attempt_started_past_the_grace_is_late() {
    let mut health = Health::default();
    let grace = Some(std::time::Duration::from_secs(60));
    let mut queued = run(RunState::Running);
    queued.started_at = Some(at("2026-03-01T09:01:00.001Z"));
    assert_eq!(
        events(&queued, Some(RunState::Pending), &mut health, grace),
        [Event::Start, Event::Late]
    );
    queued.started_at = Some(at("2026-03-01T09:01:00Z"));
    assert_eq!(
        events(&queued, Some(RunState::Pending), &mut health, grace),
        [Event::Start]
    );
    let mut retry = queued.clone();
    retry.attempt = 2;
    retry.started_at = Some(at("2026-03-01T10:00:00Z"));
    assert_eq!(
        events(&retry, None, &mut health, grace),
        [Event::Start],
        "a retry is not late"
    );
}
