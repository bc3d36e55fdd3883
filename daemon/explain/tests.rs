//! Each story on explicit instants: a deployment built by `validate` from a manifest, and
//! run rows as the store would hold them.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::store::Trigger;
use crate::validate::{validate, SourceFile};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// The one deployment of a manifest with `schedule`.
fn deployment(schedule: &str) -> Deployment {
    let text = format!(
        "deployments:\n  - name: etl\n    work_pool: {{job_variables: {{command: echo}}}}\n    schedules:\n      - {schedule}\n"
    );
    let validation = validate(&[SourceFile {
        display: "prefect.yaml".into(),
        repo_path: "prefect.yaml".into(),
        bytes: text.into_bytes().into(),
    }]);
    let files = &validation.files[0];
    files
        .deployments
        .clone()
        .unwrap_or_else(|| panic!("{:?}", files.diagnostics))[0]
        .clone()
}

fn row(d: &Deployment, id: i64, slot: &str, state: RunState, attempt: u32) -> Run {
    let slot = at(slot);
    let started = !matches!(
        state,
        RunState::Skipped | RunState::Pending | RunState::Cancelled
    );
    Run {
        id,
        deployment: d.name.clone(),
        schedule_id: Some(d.schedules[0].id.clone()),
        scheduled_for: Some(slot),
        trigger: if attempt > 1 {
            Trigger::Retry
        } else {
            Trigger::Schedule
        },
        state,
        reason: None,
        attempt,
        commit: "abc".into(),
        parameters: json!({}),
        created_at: slot,
        started_at: started.then(|| slot + chrono::Duration::milliseconds(3)),
        ended_at: None,
        exit_code: (state == RunState::Failed).then_some(2),
        pid: None,
        not_before: None,
        retry_pending: false,
        retry_of: (attempt > 1).then_some(id - 1),
        node: None,
        epoch: None,
    }
}

fn tell(d: &Deployment, rows: &[Run], facts: &Facts, span: Span) -> Explanation {
    explain(d, &slots(d, span), rows, facts, span)
}

#[test]
fn each_slot_of_a_range_says_what_became_of_it() {
    let d = deployment("interval: 3600\n        anchor_date: \"2026-03-01T00:00:00Z\"");
    let mut skipped = row(&d, 4, "2026-03-01T03:00:00Z", RunState::Skipped, 1);
    skipped.reason = Some("missed".into());
    let mut refused = row(&d, 5, "2026-03-01T04:00:00Z", RunState::Cancelled, 1);
    refused.reason = Some("overlap".into());
    let rows = vec![
        row(&d, 1, "2026-03-01T01:00:00Z", RunState::Completed, 1),
        row(&d, 2, "2026-03-01T02:00:00Z", RunState::Failed, 1),
        row(&d, 3, "2026-03-01T02:00:00Z", RunState::Failed, 2),
        skipped,
        refused,
    ];
    let facts = Facts {
        now: at("2026-03-01T06:30:00Z"),
        first_recorded: vec![(d.schedules[0].id.clone(), at("2026-03-01T01:00:00Z"))],
        ..Facts::default()
    };
    let told = tell(
        &d,
        &rows,
        &facts,
        Span::Between(at("2026-03-01T00:00:00Z"), at("2026-03-01T07:00:00Z")),
    );
    let whats: Vec<(&str, Option<i64>)> = told.slots.iter().map(|s| (s.what, s.run_id)).collect();
    assert_eq!(
        whats,
        [
            ("not_deployed_yet", None),
            ("ran", Some(1)),
            ("failed", Some(2)),
            ("skipped", Some(4)),
            ("refused", Some(5)),
            ("not_in_force", None),
            ("not_in_force", None),
            ("upcoming", None),
        ]
    );
    assert_eq!(told.slots[1].lateness_seconds, Some(0.003));
    assert!(
        told.slots[2]
            .why
            .contains("run 3 ended Failed (exit code 2) after 2 attempts"),
        "{}",
        told.slots[2].why
    );
    assert!(
        told.slots[3]
            .why
            .contains("later than `late_grace_seconds`"),
        "{}",
        told.slots[3].why
    );
    assert!(told.slots[4].why.contains("CANCEL_NEW"));
    assert!(!told.truncated && told.no_slot.is_none());
}

#[test]
fn a_summary_of_missed_slots_covers_each_slot_it_counts() {
    let d = deployment("interval: 60\n        anchor_date: \"2026-03-01T00:00:00Z\"");
    let mut summary = row(&d, 9, "2026-03-01T00:01:00Z", RunState::Skipped, 1);
    summary.reason = Some("missed: 3 slots from 2026-03-01T00:01:00.000Z to 2026-03-01T00:03:00.000Z, recorded as this one row".into());
    let facts = Facts {
        now: at("2026-03-01T01:00:00Z"),
        first_recorded: vec![(d.schedules[0].id.clone(), at("2026-03-01T00:01:00Z"))],
        ..Facts::default()
    };
    let told = tell(
        &d,
        &[summary],
        &facts,
        Span::Between(at("2026-03-01T00:02:00Z"), at("2026-03-01T00:04:00Z")),
    );
    let whats: Vec<&str> = told.slots.iter().map(|s| s.what).collect();
    assert_eq!(whats, ["skipped", "skipped", "not_in_force"]);
    assert!(
        told.slots[0].why.contains("run 9 records it"),
        "{}",
        told.slots[0].why
    );
}

#[test]
fn an_instant_without_a_slot_names_the_nearest_fires_and_the_dst_gap() {
    // 02:30 every day in Madrid: on 2026-03-29 the clocks jump from 02:00 to 03:00.
    let d = deployment("cron: \"30 2 * * *\"\n        timezone: Europe/Madrid");
    let facts = Facts {
        now: at("2026-04-01T00:00:00Z"),
        ..Facts::default()
    };
    let told = tell(&d, &[], &facts, Span::At(at("2026-03-28T12:00:00Z")));
    let none = told.no_slot.expect("no slot at noon");
    assert_eq!(none.before, Some(at("2026-03-28T01:30:00Z")));
    assert_eq!(
        none.after,
        Some(at("2026-03-29T01:00:00Z")),
        "the gap's end, 03:00 CEST"
    );
    assert!(none.why.contains("DST gap"), "{}", none.why);
    // The moved fire itself is a slot, and says why it is at 03:00.
    let told = tell(&d, &[], &facts, Span::At(at("2026-03-29T01:00:00Z")));
    assert_eq!(told.slots.len(), 1);
    assert!(
        told.slots[0]
            .why
            .contains("does not exist that day (DST gap)"),
        "{}",
        told.slots[0].why
    );
}

#[test]
fn recent_slots_are_the_last_twenty_and_the_next_three_with_the_deployments_notes() {
    let d = deployment("interval: 1\n        anchor_date: \"2026-03-01T00:00:00Z\"");
    let facts = Facts {
        now: at("2026-03-01T12:00:00.500Z"),
        held_back: Some("prefect.yaml:3:5: unknown key".into()),
        ..Facts::default()
    };
    let told = tell(&d, &[], &facts, Span::Recent(facts.now));
    assert_eq!(told.slots.len(), RECENT_PAST + RECENT_AHEAD);
    assert_eq!(told.slots[0].at, at("2026-03-01T11:59:41Z"));
    assert_eq!(told.slots[RECENT_PAST].at, at("2026-03-01T12:00:01Z"));
    assert_eq!(told.slots[RECENT_PAST].what, "upcoming");
    assert!(
        told.notes[0].contains("last good version is in force: prefect.yaml:3:5"),
        "{:?}",
        told.notes
    );
}

#[test]
fn a_range_is_bounded() {
    let d = deployment("interval: 1");
    let facts = Facts {
        now: at("2026-03-02T00:00:00Z"),
        ..Facts::default()
    };
    let told = tell(
        &d,
        &[],
        &facts,
        Span::Between(at("2026-03-01T00:00:00Z"), at("2026-03-02T00:00:00Z")),
    );
    assert_eq!(told.slots.len(), MAX_SLOTS);
    assert!(told.truncated);
}
