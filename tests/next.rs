//! `sundial next`: output formats, DST notes and bad-input errors.

use crate::support::{failure_of, stdout_of};

#[test]
fn json_lists_fires_in_the_schedule_offset_with_gap_moved_to_its_end() {
    let out = stdout_of(&[
        "next",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-03-07T12:00:00-05:00",
        "--count",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(
        out,
        "[\n  \"2026-03-08T03:00:00-04:00\",\n  \"2026-03-09T02:30:00-04:00\",\n  \"2026-03-10T02:30:00-04:00\"\n]\n"
    );
}

#[test]
fn json_interval_of_90_minutes_steps_exact_time_across_dst() {
    let out = stdout_of(&[
        "next",
        "--interval",
        "PT90M",
        "--anchor",
        "2026-03-08T00:00:00",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-03-08T00:00:00-05:00",
        "--count",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(
        out,
        "[\n  \"2026-03-08T01:30:00-05:00\",\n  \"2026-03-08T04:00:00-04:00\"\n]\n"
    );
}

#[test]
fn text_marks_fires_moved_by_dst() {
    let out = stdout_of(&[
        "next",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-03-07T12:00:00-05:00",
        "--count",
        "2",
    ]);
    assert_eq!(
        out,
        "2026-03-08 03:00:00 EDT (-04:00)  2026-03-08T07:00:00Z  (DST: 02:30 does not exist; fired at gap end)\n\
         2026-03-09 02:30:00 EDT (-04:00)  2026-03-09T06:30:00Z\n"
    );
    let out = stdout_of(&[
        "next",
        "--rrule",
        "FREQ=DAILY;BYHOUR=1;BYMINUTE=30",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-10-31T12:00:00-04:00",
        "--count",
        "1",
    ]);
    assert_eq!(
        out,
        "2026-11-01 01:30:00 EDT (-04:00)  2026-11-01T05:30:00Z  (DST: 01:30 occurs twice; fires at the first only)\n"
    );
}

#[test]
fn text_says_when_a_schedule_ends() {
    let out = stdout_of(&[
        "next",
        "--rrule",
        "DTSTART:20260101T090000\\nRRULE:FREQ=DAILY;COUNT=1",
        "--timezone",
        "Europe/Madrid",
        "--after",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(
        out,
        "2026-01-01 09:00:00 CET (+01:00)  2026-01-01T08:00:00Z\n(no more fires: the schedule has ended)\n"
    );
}

#[test]
fn bad_input_exits_2_naming_the_flag() {
    let table: &[(&[&str], &str)] = &[
        (&["--cron", "61 * * * *"], "error: --cron: cron expression \"61 * * * *\": minute field: 61 is out of range 0-59\n"),
        (&["--cron", "0 0 30 2 *"], "error: --cron: cron expression \"0 0 30 2 *\" never fires (no date matches its day and month fields); fix the day-of-month, month or day-of-week field\n"),
        (&["--cron", "* * * * *", "--timezone", "Europe/Berln"], "error: --timezone: unknown time zone \"Europe/Berln\"; did you mean Europe/Berlin?\n"),
        (&["--interval", "3600", "--anchor", "soon"], "error: --anchor: anchor date \"soon\": not a date-time; write RFC 3339 such as 2026-01-01T09:00:00+01:00, or a wall time in the schedule's timezone such as 2026-01-01T09:00:00 or 2026-01-01\n"),
        (&["--interval", "0"], "error: --interval: interval \"0\": must be greater than zero\n"),
        (&["--cron", "* * * * *", "--after", "tomorrow"], "error: --after \"tomorrow\": write an RFC 3339 instant such as 2026-03-08T00:00:00-05:00\n"),
    ];
    for (args, message) in table {
        let mut full = vec!["next"];
        full.extend_from_slice(args);
        assert_eq!(failure_of(&full, 2), *message, "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let stderr = failure_of(&["next"], 2);
    assert!(stderr.contains("--cron"), "{stderr}");
    let stderr = failure_of(&["next", "--cron", "* * * * *", "--interval", "60"], 2);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn manifest_schedules_are_previewed_per_deployment() {
    let project = crate::support::Project::new().file(
        "prefect.yaml",
        "deployments:\n  - name: etl\n    entrypoint: flows/etl.py:run\n    schedules:\n      - cron: \"30 2 * * *\"\n        timezone: America/New_York\n        slug: nightly\n  - name: other\n    entrypoint: flows/etl.py:run\n    paused: true\n    schedules:\n      - interval: PT1H\n",
    );
    let run = project
        .run(&[
            "next",
            "--manifest",
            "prefect.yaml",
            "--after",
            "2026-03-07T12:00:00Z",
            "--count",
            "2",
            "--format",
            "json",
        ])
        .code(0);
    // A schedule without a slug is named by what it says: its kind and the first 6 bytes
    // of SHA-256 over "interval\0PT1H\0UTC\0true\0\0{}" (kind, expression, zone, day_or,
    // anchor, then its parameters as JSON with sorted keys), so the id survives reordering
    // and changes with the definition.
    assert_eq!(
        run.json(),
        serde_json::json!([
            {"deployment": "etl", "schedule": "nightly", "active": true,
             "fires": ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]},
            {"deployment": "other", "schedule": "interval-9c005a421c0e", "active": false,
             "fires": ["2026-03-07T13:00:00+00:00", "2026-03-07T14:00:00+00:00"],
             "anchor": "default: the daemon anchors it at the time of the commit that introduces it"}
        ])
    );
    // `next` reads no history: an interval without `anchor_date` says so.
    let text = project
        .run(&[
            "next",
            "--manifest",
            "prefect.yaml",
            "--deployment",
            "other",
            "--after",
            "2026-03-07T12:00:00Z",
            "--count",
            "1",
        ])
        .code(0)
        .stdout;
    assert_eq!(
        text,
        "other · interval PT1H (UTC) · id interval-9c005a421c0e  [paused: slots are recorded Skipped]\n\
         (no anchor_date: the daemon anchors this interval at the time of the commit that introduces it, so these times are from 2020-01-01T00:00:00 in its zone; write anchor_date to pin them)\n\
         2026-03-07 13:00:00 UTC (+00:00)  2026-03-07T13:00:00Z\n\n"
    );
    let text = project
        .run(&[
            "next",
            "--manifest",
            "prefect.yaml",
            "--deployment",
            "etl",
            "--after",
            "2026-03-07T12:00:00Z",
            "--count",
            "1",
        ])
        .code(0)
        .stdout;
    assert_eq!(
        text,
        "etl · cron 30 2 * * * (America/New_York) · id nightly\n\
         2026-03-08 03:00:00 EDT (-04:00)  2026-03-08T07:00:00Z  (DST: 02:30 does not exist; fired at gap end)\n\n"
    );
    project
        .run(&["next", "--manifest", "prefect.yaml", "--deployment", "nope"])
        .code(2)
        .stderr_has("no deployment `nope`");
}

#[test]
fn an_invalid_manifest_is_refused_with_the_first_error() {
    let project = crate::support::Project::new().file(
        "prefect.yaml",
        "deployments:\n  - name: etl\n    entrypoint: a.py:f\n    retries: -1\n",
    );
    project
        .run(&["next", "--manifest", "prefect.yaml"])
        .code(2)
        .stderr_has("prefect.yaml:4:14: must be at least 0");
}

#[test]
fn text_marks_wall_times_a_gap_dropped() {
    let out = crate::support::stdout_of(&[
        "next",
        "--cron",
        "30 * * * *",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-03-08T06:00:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(
        out,
        "2026-03-08 01:30:00 EST (-05:00)  2026-03-08T06:30:00Z\n\
         2026-03-08 02:30:00  (DST: does not exist, skipped by the spring-forward gap; not fired)\n\
         2026-03-08 03:30:00 EDT (-04:00)  2026-03-08T07:30:00Z\n"
    );
}
