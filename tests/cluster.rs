//! Several daemons on one PostgreSQL store (`--store postgres://… --node NAME`): one
//! leads, the others stand by and take over. Each node has its own state directory and
//! port and the same repository; real processes, real HTTP, a database of its own on the
//! test server. Timings are halved (`SUNDIAL_CLUSTER_TIMINGS=scale=0.5`: a 5 s lease,
//! given up 3 s after the last renew sent, nodes lost after 10 s).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use sundial::store::pg::testing::TestDatabase;

use crate::support::daemon::{
    assert_each_second_once, manifest, slots_of, wait_until, Daemon, GitRepo, Setup,
};

/// The scale of the timings under test, and the lease it makes.
const SCALE: &str = "scale=0.5";
const LEASE: Duration = Duration::from_secs(5);

/// Starts node `name` of the cluster on the database at `store`, ready (it serves its
/// API, leading or not).
fn node(repo: &GitRepo, store: &str, name: &str) -> Daemon {
    node_with(repo, store, name, &[])
}

/// [`node`] with extra flags (e.g. `--capacity`).
fn node_with(repo: &GitRepo, store: &str, name: &str, extra: &[&str]) -> Daemon {
    Daemon::launch(
        repo.path(),
        Setup {
            extra: ["--store", store, "--node", name]
                .iter()
                .chain(extra)
                .map(|a| a.to_string())
                .collect(),
            env: vec![("SUNDIAL_CLUSTER_TIMINGS".into(), SCALE.into())],
            ..Setup::default()
        },
    )
}

/// The node's view of the cluster (`/api/status`'s `cluster`).
fn cluster(daemon: &Daemon) -> Value {
    let (code, body) = daemon.get("/api/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["cluster"].clone()
}

/// Waits until `daemon` leads; returns its epoch.
#[track_caller]
fn wait_leads(daemon: &Daemon, within: Duration) -> i64 {
    wait_until(within, "the node to lead", || {
        let c = cluster(daemon);
        (c["role"] == "leader").then(|| c["epoch"].as_i64().unwrap())
    })
}

/// A 1-second schedule whose every process appends
/// `node epoch slot start-time` to `stamps`.
fn stamping(repo: &GitRepo, stamps: &std::path::Path) {
    let command = format!(
        "sh -c 'echo \"$SUNDIAL_NODE $SUNDIAL_LEADER_EPOCH $SUNDIAL_SCHEDULED_FOR $(date +%s.%N)\" >> {}'",
        stamps.display()
    );
    repo.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", &command, "interval: 1", "")),
        )],
        "tick",
    );
}

/// Every stamp: (node, epoch, slot, start time).
fn stamps(path: &std::path::Path) -> Vec<(String, i64, DateTime<Utc>, DateTime<Utc>)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 4, "a stamp line: {line:?}");
            let secs: f64 = f[3].parse().unwrap();
            let started = DateTime::from_timestamp_micros((secs * 1e6) as i64).unwrap();
            let slot = DateTime::parse_from_rfc3339(f[2]).unwrap().to_utc();
            (f[0].to_string(), f[1].parse().unwrap(), slot, started)
        })
        .collect()
}

/// Every run of `deployment` as the database holds it (read directly, not through a
/// node's API).
fn stored_runs(store: &str, deployment: &str) -> Vec<sundial::store::Run> {
    let (store, deployment) = (store.to_string(), deployment.to_string());
    // The sync PostgreSQL client runs on a thread of its own.
    std::thread::spawn(move || {
        let spec =
            sundial::store::StoreSpec::from_flag(Some(&store), std::path::Path::new("/")).unwrap();
        let filter = sundial::store::RunFilter {
            deployment: Some(deployment),
            limit: 100_000,
            ..Default::default()
        };
        spec.open_reader().unwrap().runs(&filter).unwrap()
    })
    .join()
    .unwrap()
}

/// No slot was started twice, by whichever node.
#[track_caller]
fn assert_no_slot_started_twice(path: &std::path::Path) {
    let mut seen: BTreeMap<DateTime<Utc>, String> = BTreeMap::new();
    for (node, epoch, slot, _) in stamps(path) {
        if let Some(first) = seen.insert(slot, format!("{node}@{epoch}")) {
            panic!("slot {slot} started twice: by {first} and by {node}@{epoch}");
        }
    }
}

/// The slots of the runs completed after `after` (each node sees the same database);
/// none while the API cannot read the database (an API reader's first read after an
/// outage fails, and it connects anew).
fn completed_after(daemon: &Daemon, after: DateTime<Utc>) -> usize {
    let (code, body) = daemon.get("/api/runs?deployment=tick&limit=1000");
    if code != 200 {
        return 0;
    }
    let runs: Vec<Value> = serde_json::from_str(&body).unwrap();
    slots_of(&runs)
        .into_iter()
        .zip(&runs)
        .filter(|(slot, r)| *slot > after && r["state"] == "Completed")
        .count()
}

/// kill -9 of the leader under a 1-second schedule: the standby takes over within the
/// lease plus a renew, no slot has two rows or was started twice, the gap is recorded
/// (each second has its row), and the runs after the takeover carry the new node and a
/// higher epoch. Then a graceful stop of the new leader hands over within about a renew.
#[test]
fn a_leader_killed_is_replaced_within_its_lease_and_no_slot_runs_twice() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    stamping(&repo, &stamps_path);
    let mut a = node(&repo, &db.url, "a");
    let epoch_a = wait_leads(&a, Duration::from_secs(20));
    let mut b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        let c = cluster(&b);
        (c["role"] == "standby" && c["leader"] == "a").then_some(())
    });
    // Its dashboard says who leads.
    let (code, page) = b.get("/");
    assert_eq!(code, 200);
    assert!(
        page.contains("standby; <code>a</code> leads (epoch"),
        "{page}"
    );
    // A standby takes no resume: it names the leader.
    let (code, body) = b.post("/api/deployments/tick/resume", "", Some(&b.token()));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("node a leads"), "{body}");
    let since = Utc::now();
    wait_until(Duration::from_secs(20), "three runs by a", || {
        (completed_after(&a, since) >= 3).then_some(())
    });

    a.kill_9();
    let killed = Instant::now();
    let epoch_b = wait_leads(&b, Duration::from_secs(20));
    let takeover = killed.elapsed();
    println!("takeover after kill -9: {takeover:?} (lease {LEASE:?})");
    assert!(epoch_b > epoch_a, "{epoch_b} after {epoch_a}");
    // The lease, the standby's next try (≤ 0.6 s), and room for a loaded machine.
    assert!(takeover < LEASE + Duration::from_secs(4), "{takeover:?}");
    let led_at = Utc::now();
    wait_until(Duration::from_secs(20), "two runs by b", || {
        (completed_after(&b, led_at) >= 2).then_some(())
    });
    let runs = b.runs("tick");
    assert_each_second_once(&slots_of(&runs));
    for r in runs.iter().filter(|r| r["state"] == "Completed") {
        let slot: DateTime<Utc> = r["scheduled_for"].as_str().unwrap().parse().unwrap();
        if slot > led_at {
            assert_eq!(r["node"], "b", "{r}");
            assert_eq!(r["epoch"], epoch_b, "{r}");
        }
    }
    // Every process ran on a node of the cluster, under the epoch of the leader that
    // dispatched it: a's before the kill, b's after.
    for (node, epoch, slot, _) in stamps(&stamps_path) {
        assert!(node == "a" || node == "b", "a stamp of node {node:?}");
        assert!(
            epoch == epoch_a || epoch == epoch_b,
            "{slot}: epoch {epoch}"
        );
        if slot > led_at {
            assert_eq!((node.as_str(), epoch), ("b", epoch_b), "{slot}");
        }
    }

    // A graceful stop hands the lease over at once.
    a.restart();
    wait_until(Duration::from_secs(20), "a back as a standby", || {
        (cluster(&a)["role"] == "standby").then_some(())
    });
    let stopping = Instant::now();
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
    let epoch_a2 = wait_leads(&a, Duration::from_secs(20));
    let handover = stopping.elapsed();
    println!("takeover after SIGTERM: {handover:?}");
    assert!(epoch_a2 > epoch_b);
    // About a renew (0.5 s here); the bound leaves room for a loaded machine, and
    // benches/cluster.py measures the figure.
    assert!(handover < Duration::from_secs(6), "{handover:?}");
    let led_at = Utc::now();
    wait_until(Duration::from_secs(20), "two runs by a again", || {
        (completed_after(&a, led_at) >= 2).then_some(())
    });
    assert_each_second_once(&slots_of(&a.runs("tick")));
    assert_no_slot_started_twice(&stamps_path);
}

/// A leader stopped (SIGSTOP) for longer than its lease, then continued: a standby leads
/// meanwhile, and nothing runs or is written under the old leader's epoch once it wakes;
/// it stands by (and runs what the new leader dispatches). No slot runs twice.
#[test]
fn a_leader_paused_past_its_lease_starts_nothing_when_it_wakes() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    stamping(&repo, &stamps_path);
    let a = node(&repo, &db.url, "a");
    let epoch_a = wait_leads(&a, Duration::from_secs(20));
    let b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    let since = Utc::now();
    wait_until(Duration::from_secs(20), "two runs by a", || {
        (completed_after(&a, since) >= 2).then_some(())
    });

    let pid = Pid::from_raw(a.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    let epoch_b = wait_leads(&b, Duration::from_secs(20));
    println!("takeover from a stopped leader: {:?}", stopped.elapsed());
    assert!(epoch_b > epoch_a);
    // Past the lease and the node-lost time (10 s): a's runs are settled by b.
    wait_until(Duration::from_secs(30), "a to be silent for 12 s", || {
        (stopped.elapsed() > Duration::from_secs(12)).then_some(())
    });
    kill(pid, Signal::SIGCONT).unwrap();
    let woke = Utc::now();
    wait_until(Duration::from_secs(20), "a to stand by", || {
        let c = cluster(&a);
        (c["role"] == "standby" && c["leader"] == "b").then_some(())
    });
    // Two more runs by b after the wake, then look at everything.
    wait_until(
        Duration::from_secs(20),
        "two runs by b after the wake",
        || (completed_after(&b, woke) >= 2).then_some(()),
    );
    // Once awake, a may run what b dispatches (it is a node like any other), never
    // anything of its own old epoch.
    for (node, epoch, slot, started) in stamps(&stamps_path) {
        if epoch == epoch_a {
            assert!(
                started < woke,
                "slot {slot} of a's epoch started at {started} on {node}, after a woke at {woke}"
            );
        }
    }
    assert_no_slot_started_twice(&stamps_path);
    let runs = b.runs("tick");
    assert_each_second_once(&slots_of(&runs));
    // Nothing was written under a's old epoch once it woke, in any state.
    let stored = stored_runs(&db.url, "tick");
    assert!(
        stored.iter().any(|r| r.epoch == Some(epoch_a)),
        "no run of a: {stored:?}"
    );
    for r in &stored {
        if r.epoch == Some(epoch_a) {
            assert!(r.created_at < woke, "a wrote a run after it woke: {r:?}");
        }
    }
    let log = a.log();
    assert!(log.contains("stands by now"), "{log}");
}

/// A run armed before its leader paused (its row committed, its Python interpreter
/// started ahead with `prestart_seconds`) is never released after the leader wakes past
/// its lease: the launch thread checks at the instant of the start that the node still
/// leads. The row keeps the settlement of the new leader (`node_lost`).
#[test]
fn a_run_armed_before_the_leader_paused_is_not_started_after_it_wakes() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let module = format!(
        "import os\nOUT = {out:?}\nopen(os.path.join(OUT, 'imported'), 'w').write('1')\n\ndef run():\n    open(os.path.join(OUT, 'called'), 'w').write('1')\n",
        out = out.display().to_string()
    );
    let slot = Utc::now() + chrono::Duration::seconds(10);
    let slot = slot - chrono::Duration::nanoseconds(slot.timestamp_subsec_nanos().into());
    let text = format!(
        "deployments:\n- name: early\n  entrypoint: flows/early.py:run\n  work_pool:\n    job_variables:\n      prestart_seconds: 6\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    repo.commit(
        &[
            ("flows/early.py", Some(&module)),
            ("prefect.yaml", Some(&text)),
        ],
        "one slot, prestarted",
    );
    let a = node(&repo, &db.url, "a");
    wait_leads(&a, Duration::from_secs(20));
    // b runs nothing itself: the slot is a's.
    let b = node_with(&repo, &db.url, "b", &["--capacity", "0"]);
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    wait_until(
        Duration::from_secs(20),
        "the interpreter to start ahead",
        || out.join("imported").exists().then_some(()),
    );
    let pid = Pid::from_raw(a.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    wait_leads(&b, Duration::from_secs(20));
    // Past the slot, and past the node-lost time: b settles the run as lost.
    wait_until(
        Duration::from_secs(40),
        "b to settle the run as lost",
        || {
            let runs = b.runs("early");
            (Utc::now() > slot + chrono::Duration::seconds(1)
                && runs.len() == 1
                && runs[0]["reason"] == "node_lost")
                .then_some(())
        },
    );
    println!("settled as lost {:?} after the stop", stopped.elapsed());
    kill(pid, Signal::SIGCONT).unwrap();
    wait_until(
        Duration::from_secs(20),
        "a to refuse the late start",
        || {
            a.log()
                .contains("this node lost the database before the run's time")
                .then_some(())
        },
    );
    assert!(
        !out.join("called").exists(),
        "the function ran after its leader woke"
    );
    let runs = b.runs("early");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "Crashed", "{runs:?}");
    assert_eq!(runs[0]["reason"], "node_lost", "{runs:?}\n{}", b.log());
}

/// A PostgreSQL server of the test's own (`scripts/pg-cluster.sh`), which it can stop and
/// start again on the same port; deleted on drop.
struct PrivateServer {
    dir: String,
    url: String,
}

impl PrivateServer {
    fn script(args: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");
        let out = std::process::Command::new(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start() -> PrivateServer {
        let line = PrivateServer::script(&["start"]);
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {line:?}"))
                .to_string()
        };
        let server = field("SUNDIAL_TEST_POSTGRES=");
        let (base, _) = server.rsplit_once('/').unwrap();
        let url = format!("{base}/postgres");
        PrivateServer {
            dir: field("PG_CLUSTER_DIR="),
            url,
        }
    }

    fn down(&self) {
        PrivateServer::script(&["down", &self.dir]);
    }

    fn up(&self) {
        PrivateServer::script(&["up", &self.dir]);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .args(["stop", &self.dir])
        .output();
    }
}

/// The database goes away for longer than the lease, then comes back: the daemon does not
/// exit, the status says what is wrong meanwhile, it stops leading, then leads again at a
/// new epoch and plans its schedules anew, and every second of the schedule has one row
/// (the outage's slots follow the catch-up rule). One node, so that it is the one that
/// comes back to lead.
#[test]
fn a_database_outage_stops_no_daemon_and_no_slot_is_lost_or_doubled() {
    let server = PrivateServer::start();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    stamping(&repo, &stamps_path);
    let mut a = node(&repo, &server.url, "a");
    let epoch = wait_leads(&a, Duration::from_secs(20));
    let since = Utc::now();
    wait_until(Duration::from_secs(20), "two runs", || {
        (completed_after(&a, since) >= 2).then_some(())
    });

    server.down();
    let down = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "a to say the store is unreachable",
        || {
            let (code, body) = a.get("/api/status");
            (code == 200 && body.contains("cannot reach the PostgreSQL database")).then_some(())
        },
    );
    wait_until(Duration::from_secs(20), "a to stop leading", || {
        (cluster(&a)["role"] == "standby").then_some(())
    });
    wait_until(
        Duration::from_secs(20),
        "an outage longer than the lease",
        || (down.elapsed() > LEASE + Duration::from_secs(1)).then_some(()),
    );
    server.up();
    let back = Utc::now();
    let leader = wait_leads(&a, Duration::from_secs(30));
    assert!(leader > epoch, "{leader} after {epoch}");
    wait_until(Duration::from_secs(30), "two runs after the outage", || {
        (completed_after(&a, back) >= 2).then_some(())
    });
    wait_until(Duration::from_secs(20), "the status to clear", || {
        (a.get("/api/status").1.contains("\"store_error\":null")).then_some(())
    });
    assert_eq!(a.exited(), None, "a exited: {}", a.log());
    assert_each_second_once(&slots_of(&a.runs("tick")));
    assert_no_slot_started_twice(&stamps_path);
}

/// Two daemons may not share a node name: the second (another state directory) stops at
/// start, naming the flag; the first leads on.
#[test]
fn a_second_daemon_under_a_node_name_in_use_is_refused_naming_the_flag() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    repo.commit(
        &[(
            "deployments/tick.yaml",
            Some(&manifest("tick", "true", "interval: 60", "")),
        )],
        "tick",
    );
    let a = node(&repo, &db.url, "a");
    wait_leads(&a, Duration::from_secs(20));
    let state = tempfile::tempdir().unwrap();
    let out = crate::support::sundial()
        .args(["daemon", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--store", &db.url, "--node", "a"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the node name a is in use") && stderr.contains("--node"),
        "{stderr}"
    );
    assert_eq!(cluster(&a)["role"], "leader");
}

/// A node cut off from the database (its connection through a proxy that stops
/// relaying, a partition): it stops leading within its give-up time, another node takes
/// over, the cut node ends its own job before the new leader settles it as lost
/// (`node_lost`) and retries it, so the retry never runs beside it; after the heal the
/// cut node stands by.
#[test]
fn a_node_cut_off_from_the_database_ends_its_job_before_the_retry_runs_elsewhere() {
    let db = TestDatabase::new();
    let upstream: std::net::SocketAddr = {
        let rest = db.url.split_once('@').unwrap().1;
        rest.split_once('/').unwrap().0.parse().unwrap()
    };
    let proxy = crate::support::proxy::Proxy::start(upstream);
    let through_proxy = db.url.replace(
        &format!(":{}/", upstream.port()),
        &format!(":{}/", proxy.port()),
    );
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    let script = "echo \"$SUNDIAL_NODE $SUNDIAL_ATTEMPT start $(date +%s.%N)\" >> \"$1\"\n\
        [ \"$SUNDIAL_ATTEMPT\" = 2 ] && exit 0\n\
        trap 'echo \"$SUNDIAL_NODE $SUNDIAL_ATTEMPT end $(date +%s.%N)\" >> \"$1\"; exit 143' TERM\n\
        sleep 120 & wait\n";
    let text = format!(
        "deployments:\n  - name: long\n    retries: 1\n    retry_delay_seconds: 0\n    work_pool:\n      job_variables:\n        command: sh jobs/long.sh {}\n",
        stamps_path.display()
    );
    repo.commit(
        &[
            ("jobs/long.sh", Some(script)),
            ("prefect.yaml", Some(&text)),
        ],
        "a long job, retried once",
    );
    let a = node(&repo, &through_proxy, "a");
    wait_leads(&a, Duration::from_secs(20));
    let (code, body) = a.post("/api/deployments/long/runs", "{}", Some(&a.token()));
    assert_eq!(code, 201, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    wait_until(Duration::from_secs(20), "attempt 1 to start on a", || {
        std::fs::read_to_string(&stamps_path)
            .unwrap_or_default()
            .contains("a 1 start")
            .then_some(())
    });
    // b joins once attempt 1 runs on a, so the retry is the only run it can take.
    let b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });

    proxy.cut();
    let cut = Instant::now();
    wait_until(Duration::from_secs(20), "a to stop leading", || {
        (cluster(&a)["role"] == "standby").then_some(())
    });
    println!("a stood by {:?} after the cut", cut.elapsed());
    wait_leads(&b, Duration::from_secs(20));
    // b settles attempt 1 as lost and starts attempt 2 (on b).
    wait_until(Duration::from_secs(40), "the retry to run on b", || {
        std::fs::read_to_string(&stamps_path)
            .unwrap_or_default()
            .contains("b 2 start")
            .then_some(())
    });
    let text = std::fs::read_to_string(&stamps_path).unwrap();
    let time_of = |needle: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (ended, retried) = (time_of("a 1 end"), time_of("b 2 start"));
    assert!(
        ended < retried,
        "attempt 1 ended at {ended}, after its retry started at {retried}"
    );
    let runs = b.runs("long");
    let lost = runs
        .iter()
        .find(|r| r["id"] == first["id"])
        .expect("attempt 1");
    assert_eq!(
        (lost["state"].as_str(), lost["reason"].as_str()),
        (Some("Crashed"), Some("node_lost")),
        "{runs:?}"
    );
    wait_until(Duration::from_secs(20), "the retry to complete", || {
        b.runs("long")
            .iter()
            .any(|r| r["attempt"] == 2 && r["state"] == "Completed")
            .then_some(())
    });

    proxy.heal();
    wait_until(
        Duration::from_secs(30),
        "a to stand by, seeing b lead",
        || {
            let c = cluster(&a);
            (c["role"] == "standby" && c["leader"] == "b" && c["error"].is_null()).then_some(())
        },
    );
    // The cut node's end of attempt 1 did not overwrite the leader's settlement.
    let lost = b
        .runs("long")
        .into_iter()
        .find(|r| r["id"] == first["id"])
        .unwrap();
    assert_eq!(lost["reason"], "node_lost", "{lost}");
    let log = std::fs::read_to_string(
        a.state_dir
            .join("logs")
            .join(format!("{}.log", first["id"])),
    )
    .unwrap();
    assert!(log.contains("this node lost the database"), "{log}");
}

/// Runs spread over three nodes: 60 manual runs of a deployment limited to 5 at once,
/// asked of all three nodes in turn, each node taking at most 2: every run completes,
/// each node runs a share, and never more than 5 run at once across the cluster (the
/// leader admits every node's requests and counts every node's runs).
#[test]
fn runs_spread_over_three_nodes_and_a_concurrency_limit_holds_across_them() {
    const RUNS: usize = 60;
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let stamps_path = dir.path().join("stamps");
    let script = "echo \"$SUNDIAL_NODE $SUNDIAL_RUN_ID start $(date +%s.%N)\" >> \"$1\"\n\
        sleep 0.3\n\
        echo \"$SUNDIAL_NODE $SUNDIAL_RUN_ID end $(date +%s.%N)\" >> \"$1\"\n";
    let text = format!(
        "deployments:\n  - name: work\n    concurrency_limit: 5\n    work_pool:\n      job_variables:\n        command: sh jobs/work.sh {}\n",
        stamps_path.display()
    );
    repo.commit(
        &[
            ("jobs/work.sh", Some(script)),
            ("prefect.yaml", Some(&text)),
        ],
        "work, five at once",
    );
    let capacity = ["--capacity", "2"];
    let a = node_with(&repo, &db.url, "a", &capacity);
    wait_leads(&a, Duration::from_secs(20));
    let b = node_with(&repo, &db.url, "b", &capacity);
    let c = node_with(&repo, &db.url, "c", &capacity);
    for n in [&b, &c] {
        wait_until(Duration::from_secs(20), "the node to see a lead", || {
            (cluster(n)["leader"] == "a").then_some(())
        });
    }
    // Asked of every node: the standbys write their requests for the leader to admit.
    let nodes = [&a, &b, &c];
    let tokens: Vec<String> = nodes.iter().map(|n| n.token()).collect();
    for i in 0..RUNS {
        let (n, token) = (nodes[i % 3], &tokens[i % 3]);
        let (code, body) = n.post("/api/deployments/work/runs", "{}", Some(token));
        assert_eq!(code, 201, "{body}");
    }
    let runs = wait_until(Duration::from_secs(90), "every run to complete", || {
        let (code, body) = a.get("/api/runs?deployment=work&limit=1000");
        let runs: Vec<Value> = if code == 200 {
            serde_json::from_str(&body).unwrap()
        } else {
            Vec::new()
        };
        (runs.len() == RUNS && runs.iter().all(|r| r["state"] == "Completed")).then_some(runs)
    });
    // Each node ran a share, as the rows and the processes say.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        *per_node
            .entry(r["node"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    println!("runs per node: {per_node:?}");
    for name in ["a", "b", "c"] {
        assert!(
            per_node.get(name).copied().unwrap_or(0) >= RUNS / 10,
            "{per_node:?}"
        );
    }
    // Never more than 5 at once: a sweep over every start and end.
    let text = std::fs::read_to_string(&stamps_path).unwrap();
    let mut edges: Vec<(f64, i32)> = text
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let at: f64 = f[3].parse().unwrap();
            (at, if f[2] == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(edges.len(), 2 * RUNS, "{text}");
    // An end before a start at the same instant.
    edges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert!(most <= 5, "{most} ran at once");
    assert!(
        most >= 3,
        "only {most} ran at once: the runs did not spread"
    );
}

/// A node dies with runs on it (kill -9 of the daemon and of its jobs, as when its host
/// dies): the leader settles them `Crashed` (`node_lost`) once the node has been silent
/// for the node-lost time, and each is retried once, on a live node.
#[test]
fn runs_of_a_dead_node_are_settled_lost_and_retried_once_elsewhere() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let script = "[ \"$SUNDIAL_ATTEMPT\" = 2 ] && exit 0\nsleep 120\n";
    let text = "deployments:\n  - name: long\n    retries: 1\n    retry_delay_seconds: 0\n    work_pool:\n      job_variables:\n        command: sh jobs/long.sh\n";
    repo.commit(
        &[("jobs/long.sh", Some(script)), ("prefect.yaml", Some(text))],
        "a long job, retried once",
    );
    // a schedules only; b takes the first attempts; c, started after, the retries.
    let a = node_with(&repo, &db.url, "a", &["--capacity", "0"]);
    wait_leads(&a, Duration::from_secs(20));
    let mut b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    let token = a.token();
    for _ in 0..3 {
        let (code, body) = a.post("/api/deployments/long/runs", "{}", Some(&token));
        assert_eq!(code, 201, "{body}");
    }
    wait_until(Duration::from_secs(20), "three runs on b", || {
        let runs = a.runs("long");
        (runs.len() == 3
            && runs
                .iter()
                .all(|r| r["state"] == "Running" && r["node"] == "b"))
        .then_some(())
    });
    let c = node(&repo, &db.url, "c");
    // b's host dies: the daemon and every process of its runs.
    let instance = std::fs::read_to_string(b.state_dir.join("instance")).unwrap();
    b.kill_9();
    for p in sundial::runner::contain::scan(instance.trim()) {
        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
    }
    let runs = wait_until(
        Duration::from_secs(40),
        "three retries completed on c",
        || {
            let runs = c.runs("long");
            let done = runs
                .iter()
                .filter(|r| r["attempt"] == 2 && r["state"] == "Completed" && r["node"] == "c")
                .count();
            (done == 3).then_some(runs)
        },
    );
    assert_eq!(runs.len(), 6, "one retry each, no more: {runs:?}");
    for r in runs.iter().filter(|r| r["attempt"] == 1) {
        assert_eq!(
            (
                r["state"].as_str(),
                r["reason"].as_str(),
                r["node"].as_str()
            ),
            (Some("Crashed"), Some("node_lost"), Some("b")),
            "{r}"
        );
    }
}

/// A concurrency limit holds across a takeover: the new leader counts the runs already
/// running on the nodes before it admits any.
#[test]
fn a_new_leader_counts_the_runs_already_running_before_it_admits() {
    let db = TestDatabase::new();
    let repo = GitRepo::new();
    let text = "deployments:\n  - name: one\n    concurrency_limit: 1\n    work_pool:\n      job_variables:\n        command: sleep 120\n";
    repo.commit(&[("prefect.yaml", Some(text))], "one at a time");
    let mut a = node_with(&repo, &db.url, "a", &["--capacity", "0"]);
    wait_leads(&a, Duration::from_secs(20));
    let b = node(&repo, &db.url, "b");
    wait_until(Duration::from_secs(20), "b to see a lead", || {
        (cluster(&b)["leader"] == "a").then_some(())
    });
    let (code, body) = a.post("/api/deployments/one/runs", "{}", Some(&a.token()));
    assert_eq!(code, 201, "{body}");
    wait_until(Duration::from_secs(20), "the run to run on b", || {
        let runs = b.runs("one");
        (runs.len() == 1 && runs[0]["state"] == "Running" && runs[0]["node"] == "b").then_some(())
    });
    a.kill_9();
    wait_leads(&b, Duration::from_secs(20));
    let (code, body) = b.post("/api/deployments/one/runs", "{}", Some(&b.token()));
    assert_eq!(code, 201, "{body}");
    let second: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        second["state"], "Pending",
        "the limit of 1 was passed: {second}"
    );
}
