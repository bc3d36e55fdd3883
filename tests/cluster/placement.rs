//! Which node runs what: a deployment that asks for labels runs only on the nodes that
//! carry them, a node that has not yet seen the leader's commit runs none of its runs,
//! and a cancel asked of any node reaches the node that runs the run.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sundial::store::pg::testing::TestDatabase;

use super::{cluster, node_at, node_with, wait_leads};
use crate::support::daemon::{wait_until, Daemon, GitRepo};

/// Triggers `deployment` on `daemon`; the run's id.
#[track_caller]
fn trigger(daemon: &Daemon, deployment: &str) -> i64 {
    let (code, body) = daemon.post(
        &format!("/api/deployments/{deployment}/runs"),
        "{}",
        Some(&daemon.token()),
    );
    assert_eq!(code, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// The run `id` as `daemon`'s API shows it.
fn run(daemon: &Daemon, id: i64) -> Value {
    daemon.json(&format!("/api/runs/{id}"))
}

/// Whether process `pid` is gone (ended and reaped).
fn gone(pid: i64) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs of `gpu` (which asks for `gpu: true`) go only to the node labelled so, though
/// the leader claims first and has room; `any` runs anywhere. The status shows each
/// node's capacity, labels and running count. A cancel sent to the leader of a run that
/// the other node runs is handed to that node, which ends the process and records the
/// run Cancelled.
#[test]
fn labelled_runs_go_to_labelled_nodes_and_a_cancel_reaches_the_node_running_it() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    std::fs::create_dir(&pids).unwrap();
    let command = format!(
        "sh -c 'echo $$ > {}/$SUNDIAL_RUN_ID; echo running on $SUNDIAL_NODE; exec sleep 120'",
        pids.display()
    );
    let text = format!(
        "deployments:\n  - name: gpu\n    work_pool:\n      job_variables:\n        command: {command}\n        node_labels:\n          gpu: true\n  - name: any\n    work_pool:\n      job_variables:\n        command: 'true'\n"
    );
    repo.commit(&[("prefect.yaml", Some(&text))], "gpu and any");
    let a = node_with(&repo, &db.url, "a", &["--capacity", "4"]);
    wait_leads(&a, Duration::from_secs(20));
    // b speaks TLS to the database, checking its certificate and name.
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url,
        sundial::store::pg::testing::server_ca().display()
    );
    let b = node_with(
        &repo,
        &verified,
        "b",
        &["--capacity", "4", "--label", "gpu=true,zone=x"],
    );
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    let ids: Vec<i64> = (0..3).map(|_| trigger(&a, "gpu")).collect();
    let any = trigger(&a, "any");
    for id in &ids {
        wait_until(Duration::from_secs(20), "the gpu run to start", || {
            let r = run(&a, *id);
            (r["state"] == "Running" && pids.join(id.to_string()).exists()).then_some(r)
        });
        assert_eq!(
            run(&a, *id)["node"],
            "b",
            "run {id} went to a node without the label"
        );
    }
    wait_until(
        Duration::from_secs(20),
        "the unlabelled run to complete",
        || (run(&a, any)["state"] == "Completed").then_some(()),
    );
    // Each node as every node sees it: capacity, running, labels.
    let nodes = wait_until(
        Duration::from_secs(20),
        "a to count the runs of a (none) and b (three)",
        || {
            let nodes = cluster(&a)["nodes"].clone();
            (nodes[0]["running"] == 0 && nodes[1]["running"] == 3).then_some(nodes)
        },
    );
    assert_eq!(nodes[0]["name"], "a");
    assert_eq!(nodes[0]["capacity"], 4);
    assert_eq!(nodes[0]["labels"], serde_json::json!({}));
    assert_eq!(nodes[1]["name"], "b");
    assert_eq!(nodes[1]["capacity"], 4);
    assert_eq!(
        nodes[1]["labels"],
        serde_json::json!({"gpu": "true", "zone": "x"})
    );
    let (code, metrics) = a.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("sundial_cluster_node_capacity{node=\"b\"} 4")
            && metrics.contains("sundial_cluster_node_running{node=\"b\"} 3"),
        "{metrics}"
    );
    // Readiness says each node's role.
    let epoch = cluster(&a)["epoch"].as_i64().unwrap();
    assert_eq!(
        a.get("/readyz"),
        (200, format!("ready: leader (epoch {epoch})\n"))
    );
    assert_eq!(
        b.get("/readyz"),
        (200, format!("ready: standby (leader a, epoch {epoch})\n"))
    );
    // The same in the dashboard's header and `sundial status`, on a.
    let (code, page) = a.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("b 3/4 running [gpu=true,zone=x]"), "{page}");
    let out = crate::support::sundial()
        .args(["status", "--url", &a.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cluster: this node (a) leads")
            && stdout.contains("nodes: a 0/4 running, b 3/4 running [gpu=true,zone=x]"),
        "{stdout}"
    );
    // Its log is b's: a's API sends the reader there, its dashboard links to it.
    let (code, log) = a.get(&format!("/api/runs/{}/logs", ids[1]));
    assert_eq!(code, 200, "{log}");
    assert!(log.ends_with("\nrunning on b\n"), "{log}");
    // A redirect that lands on the wrong node (an address that leads elsewhere) stops
    // there, saying so, instead of going round.
    let (code, body) = a.get(&format!("/api/runs/{}/logs?node=b", ids[1]));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("this is node a, not node b"), "{body}");
    let (code, page) = a.get(&format!("/runs/{}", ids[1]));
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!("href=\"{}/runs/{}\"", b.url, ids[1])),
        "{page}"
    );
    // A cancel sent to a, of a run b runs.
    let pid: i64 = std::fs::read_to_string(pids.join(ids[0].to_string()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!gone(pid));
    let (code, body) = a.post(
        &format!("/api/runs/{}/cancel", ids[0]),
        "",
        Some(&a.token()),
    );
    assert_eq!(code, 202, "{body}");
    let cancelled = wait_until(Duration::from_secs(20), "the run to be cancelled", || {
        let r = run(&a, ids[0]);
        (r["state"] == "Cancelled").then_some(r)
    });
    assert_eq!(cancelled["node"], "b");
    wait_until(Duration::from_secs(10), "its process to end", || {
        gone(pid).then_some(())
    });
    // The others still run; a second cancel of the ended run is refused.
    assert_eq!(run(&a, ids[1])["state"], "Running");
    let (code, body) = a.post(
        &format!("/api/runs/{}/cancel", ids[0]),
        "",
        Some(&a.token()),
    );
    assert_eq!(code, 409, "{body}");
    // The jobs left are ended with the test (a SIGKILLed daemon leaves its jobs).
    for entry in std::fs::read_dir(&pids).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if let Ok(pid) = text.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A node whose repository lacks the leader's commit claims none of that commit's
/// runs, though it has room and the leader has not, even of a deployment it has at its
/// own (older) commit; once its repository has the commit, it claims them too.
#[test]
fn a_node_without_the_leaders_commit_claims_none_of_its_runs_until_it_has_it() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let work = |command: &str| {
        format!("deployments:\n  - name: work\n    concurrency_limit: 10\n    work_pool:\n      job_variables:\n        command: {command}\n")
    };
    let first = repo.commit(&[("prefect.yaml", Some(&work("'true'")))], "work");
    // b reads its own clone, which is updated only when the test says so.
    let clones = tempfile::tempdir().unwrap();
    let clone = clones.path().join("b");
    crate::support::git_ok(
        clones.path(),
        &["clone", "-q", repo.path().to_str().unwrap(), "b"],
    );
    let a = node_with(&repo, &db.url, "a", &["--capacity", "1"]);
    wait_leads(&a, Duration::from_secs(20));
    let b = node_at(&clone, &db.url, "b", &["--capacity", "8"]);
    b.wait_applied(&first);
    let second = repo.commit(&[("prefect.yaml", Some(&work("sleep 0.3")))], "work sleeps");
    a.wait_applied(&second);
    let ids: Vec<i64> = (0..4).map(|_| trigger(&a, "work")).collect();
    for id in &ids {
        let ended = wait_until(Duration::from_secs(30), "each run to complete", || {
            let r = run(&a, *id);
            (r["state"]
                .as_str()
                .is_some_and(|s| s != "Scheduled" && s != "Running"))
            .then_some(r)
        });
        assert_eq!(
            (&ended["state"], &ended["node"], &ended["commit"]),
            (&"Completed".into(), &"a".into(), &second.clone().into()),
            "b ran a commit it does not have: {ended}"
        );
    }
    // b catches up, and then takes its share.
    crate::support::git_ok(&clone, &["pull", "-q", "--ff-only"]);
    b.wait_applied(&second);
    let ids: Vec<i64> = (0..6).map(|_| trigger(&a, "work")).collect();
    let on_b = ids
        .iter()
        .map(|id| {
            wait_until(Duration::from_secs(30), "each run to complete", || {
                let r = run(&a, *id);
                (r["state"] == "Completed").then_some(r)
            })
        })
        .filter(|r| r["node"] == "b")
        .count();
    assert!(on_b >= 1, "b ran none after it had the commit");
}
