//! The daemon end to end: real git repositories, the real binary, real processes, real
//! HTTP. Every wait polls a condition with a deadline.

use std::time::Duration;

use serde_json::Value;

use chrono::Timelike;

use crate::support::daemon::{
    assert_each_second_once, slots_of, wait_for_wall_time, wait_until, Daemon, GitRepo,
};
use crate::support::git_ok;

/// A Python program that appends its environment and working directory to a JSON-lines
/// file named by `OUT` (set through `job_variables.env`).
const RECORD_PY: &str = r#"import json, os
with open(os.environ["OUT"], "a") as f:
    f.write(json.dumps({"cwd": os.getcwd(), "env": {k: v for k, v in os.environ.items() if k.startswith("SUNDIAL_")}}) + "\n")
"#;

fn every_second(name: &str, out: &std::path::Path) -> String {
    format!(
        "deployments:\n  - name: {name}\n    parameters: {{size: 3}}\n    work_pool:\n      job_variables:\n        command: python3 record.py\n        env: {{OUT: \"{}\"}}\n    schedules:\n      - interval: 1\n        slug: every-second\n",
        out.display()
    )
}

/// A repository whose one commit schedules `tick` every second, recording to `out.jsonl`:
/// (the repository, that file, the commit).
fn tick_repo() -> (GitRepo, std::path::PathBuf, String) {
    let repo = GitRepo::new();
    let out = repo.path().join("out.jsonl");
    let sha = repo.commit(
        &[
            ("record.py", Some(RECORD_PY)),
            ("deployments/tick.yaml", Some(&every_second("tick", &out))),
        ],
        "tick",
    );
    (repo, out, sha)
}

fn finished(runs: &[Value], state: &str) -> usize {
    runs.iter().filter(|r| r["state"] == state).count()
}

fn records(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_one_second_interval_runs_with_the_documented_environment_in_a_checkout() {
    let (repo, out, sha) = tick_repo();
    let daemon = Daemon::start(repo.path());
    let runs = wait_until(Duration::from_secs(30), "two completed runs", || {
        let runs = daemon.runs("tick");
        (finished(&runs, "Completed") >= 2).then_some(runs)
    });
    let run = runs.iter().find(|r| r["state"] == "Completed").unwrap();
    assert_eq!(run["trigger"], "schedule");
    assert_eq!(run["commit"], sha.as_str());
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["parameters"], serde_json::json!({"size": 3}));
    let seen = records(&out);
    let record = seen
        .iter()
        .find(|r| r["env"]["SUNDIAL_RUN_ID"].as_str() == Some(run["id"].to_string().as_str()))
        .expect("the run's record");
    let env = &record["env"];
    assert_eq!(env["SUNDIAL_DEPLOYMENT"], "tick");
    assert_eq!(env["SUNDIAL_ATTEMPT"], "1");
    assert_eq!(env["SUNDIAL_COMMIT"], sha.as_str());
    assert_eq!(env["SUNDIAL_PARAMETERS"], r#"{"size":3}"#);
    let scheduled =
        chrono::DateTime::parse_from_rfc3339(env["SUNDIAL_SCHEDULED_FOR"].as_str().unwrap())
            .unwrap();
    let stored =
        chrono::DateTime::parse_from_rfc3339(run["scheduled_for"].as_str().unwrap()).unwrap();
    assert_eq!(scheduled, stored);
    let checkout = daemon
        .state_dir
        .join("checkouts")
        .join(&sha)
        .canonicalize()
        .unwrap();
    assert_eq!(
        std::path::Path::new(record["cwd"].as_str().unwrap()),
        checkout
    );
    let log = daemon.get(&format!("/api/runs/{}/logs", run["id"]));
    assert_eq!(log.0, 200);
    assert!(log.1.contains("python3 record.py"), "{}", log.1);
}

#[test]
fn a_new_commit_is_applied_and_its_new_deployment_runs() {
    let (repo, _, _) = tick_repo();
    let daemon = Daemon::start(repo.path());
    let out2 = repo.path().join("out2.jsonl");
    let sha = repo.commit(
        &[("deployments/tock.yaml", Some(&every_second("tock", &out2)))],
        "tock",
    );
    wait_until(Duration::from_secs(10), "the new commit applied", || {
        (daemon.json("/api/status")["commit"] == sha.as_str()).then_some(())
    });
    let names: Vec<Value> = daemon
        .json("/api/deployments")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert!(names.contains(&"tock".into()), "{names:?}");
    wait_until(Duration::from_secs(30), "tock to complete a run", || {
        (finished(&daemon.runs("tock"), "Completed") >= 1).then_some(())
    });
}

#[test]
fn a_bad_commit_keeps_the_old_schedule_and_reports_the_error() {
    let (repo, out, good) = tick_repo();
    let daemon = Daemon::start(repo.path());
    let broken = every_second("tick", &out)
        .replace("interval: 1", "interval: 1\n        timezone: Mars/Olympus");
    let bad = repo.commit(&[("deployments/tick.yaml", Some(&broken))], "break it");
    let status = wait_until(Duration::from_secs(10), "the bad commit seen", || {
        let status = daemon.json("/api/status");
        (status["commit"] == bad.as_str()).then_some(status)
    });
    let errors = status["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{status}");
    assert_eq!(errors[0]["file"], "deployments/tick.yaml");
    assert_eq!(errors[0]["line"], 10);
    assert_eq!(errors[0]["column"], 19);
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("Mars/Olympus"));
    let deployments = daemon.json("/api/deployments");
    assert_eq!(deployments[0]["held_back"], true);
    assert_eq!(deployments[0]["commit"], good.as_str());
    // The old schedule keeps running, from the good commit's checkout.
    let before = daemon.runs("tick").len();
    wait_until(Duration::from_secs(30), "runs after the bad commit", || {
        let runs = daemon.runs("tick");
        (runs.len() >= before + 2 && runs.last().unwrap()["commit"] == good.as_str()).then_some(())
    });
}

#[test]
fn kill_9_and_restart_neither_doubles_nor_loses_a_slot() {
    let (repo, _, _) = tick_repo();
    let mut daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "a few runs", || {
        (daemon.runs("tick").len() >= 3).then_some(())
    });
    daemon.kill_9();
    wait_for_wall_time(chrono::Utc::now() + chrono::Duration::seconds(4));
    daemon.restart();
    let restarted_at = chrono::Utc::now();
    wait_until(Duration::from_secs(30), "runs after the restart", || {
        let runs = daemon.runs("tick");
        runs.iter()
            .any(|r| {
                r["state"] == "Completed"
                    && r["scheduled_for"]
                        .as_str()
                        .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
                        .is_some_and(|t| t > restarted_at)
            })
            .then_some(())
    });
    let runs = daemon.runs("tick");
    let slots = slots_of(&runs);
    // Every second from the first slot to the last is accounted for: run or recorded.
    assert_each_second_once(&slots);
    let missed = runs
        .iter()
        .filter(|r| r["state"] == "Skipped" && r["reason"] == "missed")
        .count();
    assert!(
        missed >= 2,
        "the downtime's slots are Skipped/missed rows: {runs:?}"
    );
    // Every slot from before the restart is settled; only the newest may still run.
    let unsettled: Vec<&Value> = runs
        .iter()
        .filter(|r| {
            let slot: chrono::DateTime<chrono::Utc> =
                r["scheduled_for"].as_str().unwrap().parse().unwrap();
            let settled =
                ["Completed", "Skipped", "Crashed"].contains(&r["state"].as_str().unwrap());
            slot < restarted_at && !settled
        })
        .collect();
    assert!(unsettled.is_empty(), "{unsettled:?}");
}

#[test]
fn sigterm_exits_zero_and_records_the_running_runs_end() {
    let repo = GitRepo::new();
    let manifest = "deployments:\n  - name: sleeper\n    work_pool:\n      job_variables:\n        command: python3 -c \"import time; time.sleep(600)\"\n    schedules:\n      - interval: 1\n";
    repo.commit(&[("deployments/sleeper.yaml", Some(manifest))], "sleeper");
    let mut daemon = Daemon::start(repo.path());
    let run = wait_until(Duration::from_secs(30), "the sleeper running", || {
        daemon
            .runs("sleeper")
            .into_iter()
            .find(|r| r["state"] == "Running" && !r["started_at"].is_null())
    });
    assert_eq!(run["trigger"], "schedule");
    let pid_file_gone = || {
        let store =
            sundial::store::Store::open_read_only(&daemon.state_dir.join("state.db")).unwrap();
        store
            .run(run["id"].as_i64().unwrap())
            .unwrap()
            .and_then(|r| r.pid)
    };
    let pid = wait_until(Duration::from_secs(10), "the pid recorded", pid_file_gone);
    assert_eq!(daemon.terminate(), Some(0));
    let store = sundial::store::Store::open_read_only(&daemon.state_dir.join("state.db")).unwrap();
    let ended = store.run(run["id"].as_i64().unwrap()).unwrap().unwrap();
    assert_eq!(ended.state, sundial::store::RunState::Cancelled);
    assert_eq!(ended.reason.as_deref(), Some("shutdown"));
    assert!(ended.ended_at.is_some());
    assert!(
        !sundial::runner::process::process_group_alive(pid),
        "the job's process group outlived the daemon"
    );
    let unfinished = store.unfinished_runs().unwrap();
    assert!(
        unfinished.is_empty(),
        "runs left unfinished after the stop: {unfinished:?}"
    );
}

#[test]
fn uncommitted_edits_never_run() {
    let (repo, out, _) = tick_repo();
    let daemon = Daemon::start(repo.path());
    repo.write(
        "deployments/sneaky.yaml",
        &every_second("sneaky", &repo.path().join("sneaky.jsonl")),
    );
    repo.write(
        "deployments/tick.yaml",
        &every_second("tick", &out).replace("size: 3", "size: 99"),
    );
    let clean = repo.commit(&[("README.md", Some("unrelated\n"))], "unrelated");
    let daemon_saw = |sha: &str| daemon.json("/api/status")["commit"] == sha;
    wait_until(Duration::from_secs(10), "the clean commit applied", || {
        daemon_saw(&clean).then_some(())
    });
    let names: Vec<Value> = daemon
        .json("/api/deployments")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("tick")]);
    wait_until(
        Duration::from_secs(30),
        "a run after the clean commit",
        || {
            daemon
                .runs("tick")
                .into_iter()
                .rev()
                .find(|r| r["commit"] == clean.as_str() && r["state"] == "Completed")
        },
    );
    assert!(
        daemon
            .runs("tick")
            .iter()
            .all(|r| r["parameters"]["size"] == 3),
        "an uncommitted edit ran"
    );
    assert!(daemon.runs("sneaky").is_empty());
}

#[test]
fn a_deleted_deployment_stops() {
    let (repo, _, _) = tick_repo();
    let daemon = Daemon::start(repo.path());
    wait_until(Duration::from_secs(30), "a run", || {
        (!daemon.runs("tick").is_empty()).then_some(())
    });
    let sha = repo.commit(&[("deployments/tick.yaml", None)], "remove tick");
    wait_until(Duration::from_secs(10), "the removal applied", || {
        (daemon.json("/api/status")["commit"] == sha.as_str()).then_some(())
    });
    assert_eq!(daemon.json("/api/deployments"), serde_json::json!([]));
    let count = daemon.runs("tick").len();
    wait_for_wall_time(chrono::Utc::now() + chrono::Duration::milliseconds(2500));
    assert_eq!(daemon.runs("tick").len(), count, "a removed deployment ran");
    assert!(count >= 1, "history stays");
}

#[test]
fn a_missing_repository_is_an_error_in_status_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("not-yet");
    let daemon = Daemon::start_unready(&repo_path, &["--branch", "main"]);
    let get = |path: &str| Some(daemon.get(path)).filter(|(code, _)| *code != 0);
    let status = wait_until(Duration::from_secs(20), "an error in the status", || {
        let (_, body) = get("/api/status")?;
        let status: Value = serde_json::from_str(&body).ok()?;
        status["source"]["error"].is_string().then_some(status)
    });
    assert_eq!(status["source"]["kind"], "read", "{status:#}");
    assert_eq!(status["ready"], false);
    assert_eq!(get("/readyz").map(|r| r.0), Some(503));
    // The repository appears: the daemon recovers without a restart.
    let repo = GitRepo::new();
    std::fs::rename(repo.path(), &repo_path).unwrap();
    let _keep = repo;
    crate::support::git_ok(
        &repo_path,
        &["commit", "-q", "--allow-empty", "-m", "first"],
    );
    wait_until(
        Duration::from_secs(20),
        "ready after the repository appears",
        || (get("/readyz")?.0 == 200).then_some(()),
    );
}

/// An interval without `anchor_date` fired at midnight UTC plus multiples of it (anchored at
/// 2020-01-01), where Prefect anchors it at deploy time: now it is anchored at the time of
/// the commit that introduced it, found in the history, and kept with its cursor.
#[test]
fn an_interval_without_anchor_date_is_anchored_at_its_introducing_commit_for_good() {
    let repo = GitRepo::new();
    let now = chrono::Utc::now().with_nanosecond(0).unwrap();
    // Introduced 90 minutes and 17 seconds ago: the next fire is about 29 minutes away,
    // and at 17 seconds past a minute, which no midnight anchor gives.
    let introduced = now - chrono::Duration::seconds(90 * 60 + 17);
    let day_before = introduced - chrono::Duration::days(1);
    let text = |description: &str| {
        format!("deployments:\n  - name: hourly\n    description: {description}\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - interval: 3600\n        slug: hourly\n")
    };
    let without = "deployments:\n  - name: hourly\n    work_pool:\n      job_variables:\n        command: \"true\"\n";
    repo.commit_at(
        &[("prefect.yaml", Some(without))],
        "no schedule yet",
        Some(day_before),
    );
    repo.commit_at(
        &[("prefect.yaml", Some(&text("first")))],
        "the schedule",
        Some(introduced),
    );
    // Later commits, to the file and to others, do not move it.
    let later = introduced + chrono::Duration::seconds(600);
    repo.commit_at(&[("README", Some("hi\n"))], "other", Some(later));
    repo.commit_at(
        &[("prefect.yaml", Some(&text("edited")))],
        "edit",
        Some(later),
    );
    let mut daemon = Daemon::start(repo.path());
    let expected = introduced + chrono::Duration::seconds(2 * 3600);
    assert_eq!(daemon_next(&daemon), expected);
    assert!(daemon.log().contains("anchored at"), "{}", daemon.log());

    // History rewritten to one commit of another time: the anchor planned first stays,
    // across a restart too.
    git_ok(repo.path(), &["checkout", "-q", "--orphan", "rewritten"]);
    let rewritten = repo.commit_at(&[], "squashed", Some(now - chrono::Duration::seconds(5)));
    git_ok(repo.path(), &["branch", "-q", "-D", "main"]);
    git_ok(repo.path(), &["branch", "-q", "-m", "main"]);
    daemon.wait_applied(&rewritten);
    assert_eq!(daemon.terminate(), Some(0));
    daemon.restart();
    assert_eq!(daemon_next(&daemon), expected);
}

/// The next fire of the daemon's only schedule.
fn daemon_next(daemon: &Daemon) -> chrono::DateTime<chrono::Utc> {
    let json = daemon.json("/api/deployments");
    let next = json[0]["schedules"][0]["next"]
        .as_str()
        .unwrap_or_else(|| panic!("no next fire: {json}"));
    next.parse().unwrap()
}
