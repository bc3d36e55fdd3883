//! `notifications:`: the file's default, a deployment's own list replacing it, and every
//! mistake at its line and column with what to write instead.

use crate::notify::{Event, Target};

use super::super::{validate, SourceFile, Validation};

fn run(text: &str) -> Validation {
    validate(&[SourceFile {
        display: "prefect.yaml".into(),
        repo_path: "prefect.yaml".into(),
        bytes: text.as_bytes().to_vec().into(),
    }])
}

/// (code, line, column) of each error.
fn errors(text: &str) -> Vec<(String, usize, usize)> {
    run(text)
        .diagnostics()
        .filter(|d| d.is_error())
        .map(|d| (d.code.as_str().to_string(), d.line, d.column))
        .collect()
}

const FILE: &str = "\
# every deployment of this file tells the on-call channel
notifications:
  - webhook: https://hooks.slack.com/services/{{ $SLACK_HOOK }}
    headers: {X-Token: '{{ $HOOK_TOKEN }}'}
    events: [failure, recovery]
  - healthchecks: https://hc-ping.com/{{ $HC_UUID }}
deployments:
  - name: default
    entrypoint: flows/etl.py:run
  - name: own
    entrypoint: flows/etl.py:run
    notifications:
      - command: notify-send --urgency critical   # split into words, no shell
        events: [failure, skipped]
  - name: quiet
    entrypoint: flows/etl.py:run
    notifications: []
  - name: nulled
    entrypoint: flows/etl.py:run
    notifications: null
";

#[test]
fn the_files_default_applies_unless_a_deployment_has_its_own_list() {
    let validation = run(FILE);
    assert!(
        validation.is_valid(),
        "{:?}",
        validation.diagnostics().collect::<Vec<_>>()
    );
    let deployments = validation.files[0].deployments.clone().unwrap();
    let of = |name: &str| {
        deployments
            .iter()
            .find(|d| d.name == name)
            .unwrap()
            .notifications
            .clone()
    };
    let default = of("default");
    assert_eq!(default.len(), 2);
    assert_eq!(
        default[0].target,
        Target::Webhook {
            url: "https://hooks.slack.com/services/{{ $SLACK_HOOK }}".into(),
            headers: vec![("X-Token".into(), "{{ $HOOK_TOKEN }}".into())],
        }
    );
    assert_eq!(default[0].on, [Event::Failure, Event::Recovery]);
    assert!(matches!(default[1].target, Target::Healthchecks { .. }));
    let own = of("own");
    assert_eq!(
        own[0].target,
        Target::Command {
            argv: vec!["notify-send".into(), "--urgency".into(), "critical".into()]
        }
    );
    assert_eq!(own[0].on, [Event::Failure, Event::Skipped]);
    assert!(of("quiet").is_empty());
    assert_eq!(of("nulled").len(), 2, "null means absent: the default");
}

#[test]
fn a_webhook_without_events_hears_failure_and_recovery() {
    let validation = run("notifications:\n  - webhook: http://127.0.0.1:9/x\ndeployments:\n  - name: a\n    entrypoint: f.py:g\n");
    let d = &validation.files[0].deployments.as_ref().unwrap()[0];
    assert_eq!(d.notifications[0].on, Event::DEFAULT);
}

#[test]
fn every_mistake_is_at_its_place() {
    let text = "\
notifications:
  - healthchecks: https://hc-ping.com/x
    events: [failure]
  - webhook: hooks.example.com/x
    on: [failure]
  - webhook: https://h/{{ flow_run.id }}
    headers: {'bad header': x}
  - command: x
    webhook: https://h
  - events: [failure]
deployments:
  - name: a
    entrypoint: f.py:g
    notifications:
      - command: \"notify 'unclosed\"
      - webhook: https://h
        events: [start]
";
    assert_eq!(
        errors(text),
        [
            ("notification".to_string(), 3, 5),
            ("notification".to_string(), 4, 14),
            ("notification".to_string(), 5, 5),
            ("template".to_string(), 6, 14),
            ("notification".to_string(), 7, 15),
            ("notification".to_string(), 9, 5),
            ("notification".to_string(), 10, 5),
            ("notification".to_string(), 15, 18),
            ("type".to_string(), 17, 18),
        ]
    );
    let messages: Vec<String> = run(text)
        .diagnostics()
        .map(|d| d.message_with_help())
        .collect();
    let all = messages.join("\n");
    assert!(
        all.contains("`on:` is read as the key `true`")
            && all.contains("write the events under `events:`"),
        "{all}"
    );
    assert!(
        all.contains("a healthchecks ping has no `events:`"),
        "{all}"
    );
    assert!(
        all.contains("`hooks.example.com/x` is not an http(s) URL"),
        "{all}"
    );
    assert!(
        all.contains("`{{ flow_run.id }}` cannot be resolved in a notification"),
        "{all}"
    );
}

#[test]
fn pause_after_failures_is_a_whole_number_from_one() {
    let ok =
        run("deployments:\n  - name: a\n    entrypoint: f.py:g\n    pause_after_failures: 3\n");
    assert_eq!(
        ok.files[0].deployments.as_ref().unwrap()[0].pause_after_failures,
        Some(3)
    );
    for (bad, code) in [
        ("0", "out-of-range"),
        ("-1", "out-of-range"),
        ("2.5", "type"),
        ("yes", "type"),
    ] {
        let text = format!(
            "deployments:\n  - name: a\n    entrypoint: f.py:g\n    pause_after_failures: {bad}\n"
        );
        assert_eq!(errors(&text), [(code.to_string(), 4, 27)], "{bad}");
    }
}

#[test]
fn slas_are_read_as_prefect_writes_them_and_every_mistake_is_at_its_place() {
    let ok = run("\
deployments:
  - name: a
    entrypoint: f.py:g
    sla:
      - name: done
        duration: 7200
        severity: high
      - name: on-time
        within: PT10M
      - name: fresh
        stale_after: '26:00:00'
      - name: real-work
        min_duration: 60
      - name: not-watched
        duration: 5
        enabled: false
");
    let slas = &ok.files[0].deployments.as_ref().unwrap()[0].slas;
    use crate::sla::Kind;
    use std::time::Duration;
    let kinds: Vec<(&str, &str, Kind)> = slas
        .iter()
        .map(|s| (s.name.as_str(), s.severity.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "done",
                "high",
                Kind::TimeToCompletion(Duration::from_secs(7200))
            ),
            (
                "on-time",
                "moderate",
                Kind::Lateness(Duration::from_secs(600))
            ),
            (
                "fresh",
                "moderate",
                Kind::Frequency(Duration::from_secs(26 * 3600))
            ),
            (
                "real-work",
                "moderate",
                Kind::MinDuration(Duration::from_secs(60))
            ),
        ],
        "an SLA with enabled: false is not watched"
    );
    let text = "\
deployments:
  - name: a
    entrypoint: f.py:g
    sla:
      - duration: 5
      - name: two
        duration: 5
        within: 10
      - name: bad
        within: soon
      - name: bad
        duration: 5
      - name: sev
        duration: 5
        severity: urgent
      - name: fresh
        resource_match: {prefect.resource.id: x}
        expected_event: prefect.flow-run.Completed
";
    assert_eq!(
        errors(text),
        [
            ("sla".to_string(), 5, 9),
            ("sla".to_string(), 8, 9),
            ("sla".to_string(), 10, 17),
            ("sla".to_string(), 11, 15),
            ("type".to_string(), 15, 19),
        ]
    );
    let warnings: Vec<String> = run(text)
        .diagnostics()
        .filter(|d| !d.is_error())
        .map(|d| d.message.clone())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("freshness SLA")),
        "{warnings:?}"
    );
}

#[test]
fn a_yaml_1_1_word_where_text_was_meant_is_told_to_be_quoted() {
    let text = "deployments:\n  - name: off\n    entrypoint: f.py:g\n";
    let found: Vec<String> = run(text)
        .diagnostics()
        .map(|d| d.message_with_help())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("expected a string, found `off`")
            && found[0].contains("quote it to mean the word: 'off'"),
        "{found:?}"
    );
}
