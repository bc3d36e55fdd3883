//! Real processes through the one spawn recipe: exit codes, logs, env, stops, and the
//! Python bootstrap end to end. Every wait is a condition polled against a deadline.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::Instant;

use super::launch::test_deployment;
use super::*;
use crate::validate::desired::Launch;

const PATIENCE: Duration = Duration::from_secs(20);

fn spec(dir: &Path, argv: &[&str]) -> ProcessSpec {
    ProcessSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: dir.to_path_buf(),
        env: Vec::new(),
        log_path: dir.join("logs/run.log"),
        timeout: None,
        deadline: None,
        grace: Duration::from_secs(5),
        stream_output: None,
        stdin: None,
    }
}

/// A time limit counted from now.
fn limit(spec: &mut ProcessSpec, timeout: Duration) {
    spec.timeout = Some(timeout);
    spec.deadline = Some(tokio::time::Instant::now() + timeout);
}

fn sh(dir: &Path, script: &str) -> ProcessSpec {
    spec(dir, &["sh", "-c", script])
}

/// A stop channel nobody will ever use.
fn no_stop() -> watch::Receiver<Option<StopRequest>> {
    watch::channel(None).1
}

async fn run(spec: &ProcessSpec) -> Exit {
    spawn(spec).expect("spawn").wait(no_stop()).await
}

#[track_caller]
fn log(spec: &ProcessSpec) -> String {
    std::fs::read_to_string(&spec.log_path).expect("the run log exists")
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pid a test job wrote to `file` once it has written all of it.
async fn pid_in(dir: &Path, file: &str) -> i32 {
    let path = dir.join(file);
    let mut pid = None;
    wait_until(&format!("{file} holds a pid"), || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .filter(|text| text.ends_with('\n'))
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    })
    .await;
    pid.unwrap()
}

/// Gone, or a zombie nobody will reap (this sandbox's init does not): not running.
fn gone(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(true)
}

async fn wait_gone(pid: i32) {
    wait_until(&format!("process {pid} is gone"), || gone(pid)).await;
}

#[tokio::test]
async fn exit_code_and_both_streams_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), "echo out; echo err >&2; exit 3");
    append_log_line(&spec.log_path, "# sundial: header").unwrap();
    assert_eq!(run(&spec).await, Exit::Code(3));
    assert_eq!(log(&spec), "# sundial: header\nout\nerr\n");
}

#[tokio::test]
async fn env_is_added_on_top_of_the_inherited_one_and_cwd_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut spec = sh(
        dir.path(),
        r#"echo "job=$JOB run=$SUNDIAL_RUN_ID path=$PATH"; pwd -P"#,
    );
    spec.cwd = work.clone();
    spec.log_path = dir.path().join("run.log");
    spec.env = vec![
        ("JOB".into(), "etl".into()),
        ("SUNDIAL_RUN_ID".into(), "from-job-env".into()),
        ("SUNDIAL_RUN_ID".into(), "r-1".into()),
    ];
    assert_eq!(run(&spec).await, Exit::Code(0));
    let path = std::env::var("PATH").unwrap();
    let cwd = work.canonicalize().unwrap();
    assert_eq!(
        log(&spec),
        format!("job=etl run=r-1 path={path}\n{}\n", cwd.display())
    );
}

#[tokio::test]
async fn a_timeout_stops_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(dir.path(), "sleep 1000 & echo $! > grandchild.pid; wait");
    limit(&mut spec, Duration::from_millis(300));
    spec.grace = Duration::from_millis(200);
    let running = spawn(&spec).unwrap();
    let grandchild = pid_in(dir.path(), "grandchild.pid").await;
    assert_eq!(running.wait(no_stop()).await, Exit::TimedOut);
    wait_gone(grandchild).await;
    assert!(log(&spec).contains("# sundial: timed out after 300ms: SIGTERM to process group"));
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    // An ignored signal stays ignored across fork and exec, so `sleep` ignores it too.
    let mut spec = sh(
        dir.path(),
        "trap '' TERM; sleep 1000 & echo $! > grandchild.pid; wait",
    );
    limit(&mut spec, Duration::from_millis(300));
    spec.grace = Duration::from_millis(200);
    let running = spawn(&spec).unwrap();
    let leader = running.pid as i32;
    let grandchild = pid_in(dir.path(), "grandchild.pid").await;
    let asked = Instant::now();
    assert_eq!(running.wait(no_stop()).await, Exit::TimedOut);
    assert!(asked.elapsed() >= Duration::from_millis(200));
    wait_gone(leader).await;
    wait_gone(grandchild).await;
    let log = log(&spec);
    assert!(
        log.contains(&format!(
            "# sundial: grace of 200ms over: SIGKILL to process group {leader}"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn nothing_of_the_group_outlives_a_leader_that_exits() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), "sleep 1000 & echo $! > grandchild.pid");
    assert_eq!(run(&spec).await, Exit::Code(0));
    let grandchild = pid_in(dir.path(), "grandchild.pid").await;
    wait_gone(grandchild).await;
    assert!(log(&spec).contains("exited; SIGKILL to what is left of its group"));
}

#[tokio::test]
async fn cancel_stops_a_running_group() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), "sleep 1000 & echo $! > grandchild.pid; wait");
    let (stop, stop_rx) = watch::channel(None);
    let running = spawn(&spec).unwrap();
    let pgid = running.pid;
    let waiting = tokio::spawn(running.wait(stop_rx));
    let grandchild = pid_in(dir.path(), "grandchild.pid").await;
    stop.send(Some(StopRequest::Cancel)).unwrap();
    assert_eq!(waiting.await.unwrap(), Exit::Stopped(StopRequest::Cancel));
    wait_gone(grandchild).await;
    wait_until("the group is gone", || !process_group_alive(pgid)).await;
    assert!(log(&spec).contains(&format!(
        "# sundial: cancelled: SIGTERM to process group {pgid}"
    )));
}

#[tokio::test]
async fn a_begun_process_ignores_a_withdrawal_which_never_replaces_a_cancel() {
    let dir = tempfile::tempdir().unwrap();
    // Withdrawn before the wait: a process that has begun goes on to its own end.
    let begun = sh(dir.path(), "sleep 0.2; exit 3");
    let (stop, stop_rx) = watch::channel(None);
    StopRequest::withdraw(&stop, Withdrawal::Paused);
    assert_eq!(
        *stop.borrow(),
        Some(StopRequest::Withdraw(Withdrawal::Paused))
    );
    assert_eq!(spawn(&begun).unwrap().wait(stop_rx).await, Exit::Code(3));
    // A cancel or a stop already asked for stays: the withdrawal would let a run go on.
    for asked in [StopRequest::Cancel, StopRequest::Shutdown] {
        let (stop, _stop_rx) = watch::channel(Some(asked));
        StopRequest::withdraw(&stop, Withdrawal::Removed);
        assert_eq!(*stop.borrow(), Some(asked));
    }
    // A cancel after it replaces it, and stops the process.
    let long = spec(dir.path(), &["sleep", "1000"]);
    let (stop, stop_rx) = watch::channel(None);
    StopRequest::withdraw(&stop, Withdrawal::Paused);
    let waiting = tokio::spawn(spawn(&long).unwrap().wait(stop_rx));
    stop.send(Some(StopRequest::Cancel)).unwrap();
    assert_eq!(waiting.await.unwrap(), Exit::Stopped(StopRequest::Cancel));
}

#[tokio::test]
async fn a_stop_requested_before_waiting_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), &["sleep", "1000"]);
    let (_stop, stop_rx) = watch::channel(Some(StopRequest::Shutdown));
    let running = spawn(&spec).unwrap();
    let pid = running.pid as i32;
    assert_eq!(
        running.wait(stop_rx).await,
        Exit::Stopped(StopRequest::Shutdown)
    );
    wait_gone(pid).await;
}

#[tokio::test]
async fn a_signal_from_outside_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), &["sleep", "1000"]);
    let running = spawn(&spec).unwrap();
    kill(Pid::from_raw(running.pid as i32), Signal::SIGKILL).unwrap();
    assert_eq!(running.wait(no_stop()).await, Exit::Signal(9));
}

#[tokio::test]
async fn a_missing_program_is_an_error_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), &["sundial-no-such-program", "--flag"]);
    let err = spawn(&spec).unwrap_err();
    assert!(matches!(err, SpawnError::Program { .. }), "{err:?}");
    let message = format!(
        "cannot start `sundial-no-such-program` in {}: no such program (or its #! interpreter is missing)",
        dir.path().display()
    );
    assert_eq!(err.to_string(), message);
    assert_eq!(log(&spec), format!("# sundial: {message}\n"));
}

#[tokio::test]
async fn a_missing_working_directory_is_an_error_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), &["true"]);
    spec.cwd = dir.path().join("absent");
    let err = spawn(&spec).unwrap_err();
    let message = format!(
        "cannot start `true`: working directory {} does not exist",
        spec.cwd.display()
    );
    assert_eq!(err.to_string(), message);
    assert_eq!(log(&spec), format!("# sundial: {message}\n"));
}

#[tokio::test]
async fn a_file_that_is_not_executable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let spec = spec(dir.path(), &[script.to_str().unwrap()]);
    let err = spawn(&spec).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("permission denied (is it executable?)"),
        "{err}"
    );
}

#[tokio::test]
async fn streamed_output_still_lands_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(dir.path(), "echo out; echo err >&2; printf 'no newline'");
    spec.stream_output = Some("r-1 etl".into());
    assert_eq!(run(&spec).await, Exit::Code(0));
    let log = log(&spec);
    for line in ["out\n", "err\n", "no newline"] {
        assert!(log.contains(line), "{line:?} not in {log:?}");
    }
}

#[test]
fn group_helpers_refuse_groups_that_mean_everyone_or_us() {
    assert!(!process_group_alive(0));
    assert!(!process_group_alive(1));
    assert_eq!(kill_group(0, Signal::SIGTERM), Err(Errno::EINVAL));
    assert_eq!(kill_group(1, Signal::SIGTERM), Err(Errno::EINVAL));
    let ours = nix::unistd::getpgrp().as_raw() as u32;
    assert_eq!(kill_group(ours, Signal::SIGTERM), Err(Errno::EINVAL));
    assert!(process_group_alive(ours));
}

// The Python bootstrap, end to end with the system's python3.

const ETL: &str = r#"from __future__ import annotations
import asyncio
from dataclasses import dataclass


@dataclass
class Batch:
    size: int


def run(a, b=2):
    print(a + b)


async def arun(a):
    await asyncio.sleep(0)
    print("async", Batch(a).size * 2)


def boom():
    raise ValueError("bad batch")
"#;

/// A temporary directory holding a checkout `co/` with a flow file, a package and a script.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = &dir.path().join("co");
    std::fs::create_dir_all(root.join("flows")).unwrap();
    std::fs::write(root.join("flows/etl.py"), ETL).unwrap();
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(
        root.join("pkg/mod.py"),
        "def main(name):\n    print('hello ' + name)\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let job = root.join("bin/job.sh");
    std::fs::write(&job, "#!/bin/sh\necho \"exec $SUNDIAL_PARAMETERS\"\n").unwrap();
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `entrypoint` in the checkout `<dir>/co` with these parameters; the exit and the log.
async fn run_entrypoint(dir: &Path, entrypoint: &str, parameters: &str) -> (Exit, String) {
    let checkout = &dir.join("co");
    let deployment = test_deployment(Launch::Entrypoint(entrypoint.into()));
    let argv = argv(&deployment, checkout).expect("a launchable entrypoint");
    let mut spec = spec(&working_dir(&deployment, checkout), &[]);
    spec.argv = argv;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    spec.log_path = dir.join(format!("logs/{}.log", RUNS.fetch_add(1, Ordering::Relaxed)));
    spec.env = vec![("SUNDIAL_PARAMETERS".into(), parameters.into())];
    let exit = run(&spec).await;
    (exit, log(&spec))
}

#[tokio::test]
async fn file_form_calls_the_function_with_the_parameters() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "flows/etl.py:run", r#"{"a": 40}"#).await;
    assert_eq!((exit, log.as_str()), (Exit::Code(0), "42\n"));
}

#[tokio::test]
async fn an_async_function_is_awaited() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "flows/etl.py:arun", r#"{"a": 21}"#).await;
    assert_eq!((exit, log.as_str()), (Exit::Code(0), "async 42\n"));
}

#[tokio::test]
async fn an_exception_exits_1_with_its_traceback() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "flows/etl.py:boom", "{}").await;
    assert_eq!(exit, Exit::Code(1));
    assert!(
        log.starts_with("Traceback (most recent call last):\n"),
        "{log}"
    );
    assert!(log.ends_with("ValueError: bad batch\n"), "{log}");
}

#[tokio::test]
async fn a_missing_function_exits_1_saying_so() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "flows/etl.py:nope", "{}").await;
    let file = co.path().join("co/flows/etl.py");
    assert_eq!(exit, Exit::Code(1));
    assert_eq!(
        log,
        format!(
            "sundial: entrypoint function not found: {} has no `nope`\n",
            file.display()
        )
    );
}

#[tokio::test]
async fn a_missing_file_or_module_exits_1_saying_so() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "flows/gone.py:run", "{}").await;
    assert_eq!(exit, Exit::Code(1));
    let file = co.path().join("co/flows/gone.py");
    assert_eq!(
        log,
        format!("sundial: entrypoint file not found: {}\n", file.display())
    );

    let (exit, log) = run_entrypoint(co.path(), "nopkg.jobs:run", "{}").await;
    assert_eq!(exit, Exit::Code(1));
    assert!(
        log.starts_with("sundial: entrypoint module not found: nopkg.jobs"),
        "{log}"
    );
}

#[tokio::test]
async fn parameters_that_do_not_fit_are_a_traceback() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "flows/etl.py:run", r#"{"c": 1}"#).await;
    assert_eq!(exit, Exit::Code(1));
    assert!(log.contains("TypeError"), "{log}");
}

#[tokio::test]
async fn module_and_dotted_forms_import_from_the_working_directory() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "pkg.mod:main", r#"{"name": "module"}"#).await;
    assert_eq!((exit, log.as_str()), (Exit::Code(0), "hello module\n"));
    let (exit, log) = run_entrypoint(co.path(), "pkg.mod.main", r#"{"name": "dotted"}"#).await;
    assert_eq!((exit, log.as_str()), (Exit::Code(0), "hello dotted\n"));
}

#[tokio::test]
async fn an_executable_entrypoint_runs_directly() {
    let co = checkout();
    let (exit, log) = run_entrypoint(co.path(), "bin/job.sh", r#"{"a": 1}"#).await;
    assert_eq!((exit, log.as_str()), (Exit::Code(0), "exec {\"a\": 1}\n"));
}

/// The two tests that need a held log, or all of them, take turns.
static HELD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_prepared_start_writes_through_the_log_it_opened_ahead() {
    let _held = HELD.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), "echo out; echo err >&2");
    let prepared = prepare(&spec, &["# header".to_string()]).unwrap();
    assert_eq!(
        log(&spec),
        "# header\n",
        "the preamble is written when prepared"
    );
    // The log is moved away before the start: a start that opened the path again would
    // write to a new file there, a prepared one writes to the file it holds.
    let moved = dir.path().join("moved.log");
    std::fs::rename(&spec.log_path, &moved).unwrap();
    let exit = prepared.start().unwrap().wait(no_stop()).await;
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(
        std::fs::read_to_string(&moved).unwrap(),
        "# header\nout\nerr\n"
    );
    assert!(
        !spec.log_path.exists(),
        "the log was opened again at the start"
    );
}

#[tokio::test]
async fn past_the_most_held_logs_a_prepared_start_opens_its_log_at_the_start() {
    let _held = HELD.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), "echo late");
    // Other tests may hold some too: these take whatever is left.
    let held: Vec<Prepared> = (0..spawn::MOST_HELD_LOGS)
        .map(|_| prepare(&spec, &[]).unwrap())
        .collect();
    let last = prepare(&spec, &["# over".to_string()]).unwrap();
    std::fs::remove_file(&spec.log_path).unwrap();
    assert_eq!(last.start().unwrap().wait(no_stop()).await, Exit::Code(0));
    assert_eq!(log(&spec), "late\n", "opened anew at the start");
    drop(held);
}

#[tokio::test]
async fn a_directory_gone_between_prepare_and_start_is_named_as_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), &["true"]);
    spec.cwd = dir.path().join("work");
    std::fs::create_dir(&spec.cwd).unwrap();
    let prepared = prepare(&spec, &[]).unwrap();
    std::fs::remove_dir(&spec.cwd).unwrap();
    let err = prepared.start().unwrap_err();
    let message = format!(
        "cannot start `true`: working directory {} does not exist",
        spec.cwd.display()
    );
    assert_eq!(err.to_string(), message);
    assert_eq!(log(&spec), format!("# sundial: {message}\n"));
}
