//! Hostile manifests (README "Limits"): files nested thousands deep, alias bombs and
//! oversized files are each one error at the place the bound is crossed, from
//! `sundial validate` (exit 1, quickly, in bounded memory) and from the real daemon
//! (which keeps running, reports the error in `/api/status` and keeps firing the other
//! deployments, also after a restart).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::daemon::{wait_until, Daemon, GitRepo};
use crate::support::Project;

/// What `sundial validate` may use at most: the old loader needed 4–7 GB for the alias
/// bomb below; today none of these files costs more than a few tens of MiB.
const MEMORY: u64 = 256 << 20;

/// The help of every nesting error.
const DEPTH_HELP: &str = "a prefect.yaml rarely nests more than 10 levels; sundial reads at most 64, so that no file can exhaust the stack of the daemon that reads it; flatten this value";

/// `- - - … x`: `levels` lists in one line.
fn nested_lists(levels: usize) -> String {
    format!("{}x\n", "- ".repeat(levels))
}

/// A deployment whose parameters are mappings nested `levels` deep in one line.
fn nested_mappings(levels: usize) -> String {
    format!(
        "deployments:\n  - name: deep\n    entrypoint: flows/etl.py:run\n    parameters: {}1{}\n",
        "{a: ".repeat(levels),
        "}".repeat(levels)
    )
}

/// ~100 KB that aliases expand to ~1 GB of text: five 20 KB strings, a list of 50 copies
/// of them (1 MB), and a parameter listing that list 1,000 times.
fn alias_bomb() -> String {
    let strings: String = (0..5)
        .map(|i| format!("  s{i}: &s{i} \"{}\"\n", "x".repeat(20_000)))
        .collect();
    let fifty = ["*s0, *s1, *s2, *s3, *s4"; 10].join(", ");
    let thousand = vec!["*big"; 1_000].join(", ");
    format!(
        "definitions:\n{strings}  big: &big [{fifty}]\ndeployments:\n  - name: bomb\n    entrypoint: flows/etl.py:run\n    parameters: {{p: [{thousand}]}}\n"
    )
}

/// Runs `sundial validate --format json FILE` on `text` within [`MEMORY`] of address space;
/// returns the run and how long it took.
#[track_caller]
fn validate_bounded(text: &str) -> (crate::support::Run, Duration) {
    let project = Project::new().file("prefect.yaml", text);
    let started = Instant::now();
    let run = project.run_within(MEMORY, &["validate", "--format", "json", "prefect.yaml"]);
    (run, started.elapsed())
}

/// The `errors` of `sundial validate --format json`, asserting exit 1 within 10 seconds.
#[track_caller]
fn refused(text: &str) -> Value {
    let (run, took) = validate_bounded(text);
    let run = run.code(1);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    run.json()["errors"].clone()
}

fn error(line: u64, column: u64, code: &str, message: &str) -> Value {
    json!([{
        "file": "prefect.yaml",
        "line": line,
        "column": column,
        "pointer": "",
        "code": code,
        "message": message,
    }])
}

#[test]
fn a_list_nested_5000_deep_is_one_error_at_level_65_not_a_stack_overflow() {
    let expected = error(
        1,
        129,
        "too-deep",
        &format!("lists and mappings nest deeper than 64 levels here; {DEPTH_HELP}"),
    );
    assert_eq!(refused(&nested_lists(5_000)), expected);
    // `sundial validate` itself used to overflow its 8 MiB main stack at ~50,000.
    assert_eq!(refused(&nested_lists(50_000)), expected);
}

#[test]
fn the_human_report_of_a_10_kb_line_shows_100_characters_around_the_error() {
    let text = nested_lists(5_000);
    let run = Project::new()
        .file("prefect.yaml", &text)
        .run_within(MEMORY, &["validate", "prefect.yaml"])
        .code(1);
    // Characters 96 to 195 of the line, cut on both sides; column 129 is the 35th shown.
    let shown = &text[95..195];
    assert_eq!(
        run.stdout,
        format!(
            "error[too-deep]: lists and mappings nest deeper than 64 levels here\n \
             --> prefect.yaml:1:129\n  \
             |\n\
             1 | …{shown}…\n  \
             | {}^\n  \
             = help: {DEPTH_HELP}\n\
             \n\
             error: 1 error in 1 file\n",
            " ".repeat(34)
        )
    );
}

#[test]
fn mappings_nested_1500_deep_are_one_error_at_level_65_not_a_stack_overflow() {
    // `parameters:` is level 4 at column 17; each `{a: ` is one level more, 4 columns on.
    assert_eq!(
        refused(&nested_mappings(1_500)),
        error(
            4,
            17 + 4 * 61,
            "too-deep",
            &format!("lists and mappings nest deeper than 64 levels here; {DEPTH_HELP}"),
        )
    );
    let (run, _) = validate_bounded(&nested_mappings(61));
    run.code(0);
}

#[test]
fn an_alias_bomb_of_strings_is_refused_at_the_alias_that_crosses_16_mib() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 110_000, "{}", bomb.len());
    // Before the parameter's list: 1,100,080 bytes of keys and strings; each `*big` adds
    // 1,000,000, so the 16th crosses 16 MiB. The list starts at column 22, 6 columns a copy.
    assert_eq!(
        refused(&bomb),
        error(
            11,
            22 + 6 * 15,
            "too-large",
            "aliases expand the document to more than 16 MiB of text; each alias (`*name`) copies its anchor's whole value, and a file may expand to 16 MiB (or four times its size); anchor smaller values or repeat them less",
        )
    );
}

#[test]
fn a_file_over_max_file_size_is_one_error_naming_the_flag_and_is_never_read() {
    let project = Project::new();
    // 200 MiB of holes: reading it would break the memory bound, stat-ing it does not.
    let path = project.write("prefect.yaml", b"");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(200 << 20))
        .expect("a sparse file");
    let run = project
        .run_within(MEMORY, &["validate", "prefect.yaml"])
        .code(1);
    assert_eq!(
        run.stdout,
        "error[too-large]: the file is 200 MiB (209715200 bytes), over the limit of 4 MiB for a manifest\n \
         --> prefect.yaml\n  \
         = help: split it into smaller manifests, or raise the limit with `--max-file-size` (on `sundial validate` and `sundial daemon`)\n\
         \n\
         error: 1 error in 1 file\n"
    );

    // The flag moves the limit both ways.
    let padded = format!(
        "{}\ndeployments:\n  - name: etl\n    entrypoint: flows/etl.py:run\n",
        "# padding\n".repeat(500)
    );
    let project = Project::new().file("prefect.yaml", &padded);
    project
        .run(&["validate", "--max-file-size", "4K", "prefect.yaml"])
        .code(1)
        .stdout_has("over the limit of 4 KiB for a manifest");
    project
        .run(&["validate", "--max-file-size", "8KiB", "prefect.yaml"])
        .code(0);
    project
        .run(&["validate", "--max-file-size", "4 MB", "prefect.yaml"])
        .code(2)
        .stderr_has("`4 MB` is not a size; write bytes or a whole number with K, M or G");
}

/// Scheduled every second, running `true`.
const TICK: &str = "deployments:\n  - name: tick\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - interval: 1\n";

/// Waits for a completed run of `tick` scheduled after `after`.
#[track_caller]
fn ticks_after(daemon: &Daemon, after: chrono::DateTime<chrono::Utc>) {
    wait_until(Duration::from_secs(30), "tick to fire again", || {
        daemon
            .runs("tick")
            .iter()
            .any(|r| {
                r["state"] == "Completed"
                    && r["scheduled_for"]
                        .as_str()
                        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                        .is_some_and(|t| t > after)
            })
            .then_some(())
    });
}

/// The daemon's peak resident memory, from `/proc`.
fn peak_rss(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))
        .expect("the daemon's /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib << 10
}

#[test]
fn hostile_commits_leave_the_daemon_running_and_reporting_and_other_deployments_firing() {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/tick.yaml", Some(TICK))], "tick");
    let mut daemon = Daemon::start_with(repo.path(), &["--max-file-size", "200K"]);
    ticks_after(&daemon, chrono::Utc::now());

    let oversized = format!("{}{TICK}", "# padding\n".repeat(30_000));
    let bad = repo.commit(
        &[
            ("deployments/deep-lists.yaml", Some(&nested_lists(5_000))),
            ("deployments/deep-maps.yaml", Some(&nested_mappings(1_500))),
            ("deployments/bomb.yaml", Some(&alias_bomb())),
            ("deployments/oversized.yaml", Some(&oversized)),
        ],
        "hostile files",
    );
    let committed = chrono::Utc::now();
    let expected = json!([
        {"file": "deployments/bomb.yaml", "line": 11, "column": 112,
         "message": "aliases expand the document to more than 16 MiB of text; each alias (`*name`) copies its anchor's whole value, and a file may expand to 16 MiB (or four times its size); anchor smaller values or repeat them less"},
        {"file": "deployments/deep-lists.yaml", "line": 1, "column": 129,
         "message": format!("lists and mappings nest deeper than 64 levels here; {DEPTH_HELP}")},
        {"file": "deployments/deep-maps.yaml", "line": 4, "column": 261,
         "message": format!("lists and mappings nest deeper than 64 levels here; {DEPTH_HELP}")},
        {"file": "deployments/oversized.yaml", "line": 0, "column": 0,
         "message": "the file is 293 KiB (300123 bytes), over the limit of 200 KiB for a manifest; split it into smaller manifests, or raise the limit with `--max-file-size` (on `sundial validate` and `sundial daemon`)"},
    ]);
    let status = wait_until(Duration::from_secs(30), "the hostile commit seen", || {
        let status = daemon.json("/api/status");
        (status["commit"] == bad.as_str()).then_some(status)
    });
    assert_eq!(status["errors"], expected, "{status}");
    ticks_after(&daemon, committed);
    let peak = peak_rss(&daemon);
    assert!(peak < MEMORY, "the daemon's peak RSS is {peak} bytes");

    // The daemon used to abort again at every start: it starts, reports and fires.
    assert_eq!(daemon.terminate(), Some(0));
    daemon.restart();
    let restarted = chrono::Utc::now();
    assert_eq!(daemon.json("/api/status")["errors"], expected);
    ticks_after(&daemon, restarted);
}
