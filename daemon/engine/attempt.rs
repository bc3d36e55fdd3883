//! One attempt of a run, as a task: checkout of its commit, the process (the runner's one
//! spawn recipe), and the outcome reported back to the engine, which alone writes the store.
//!
//! Outcomes (DESIGN.md "Outcomes and retries"): exit 0 → Completed; non-zero → Failed;
//! ended by the timeout → TimedOut; killed by a signal sundial did not send, or no process
//! at all (checkout, launch or spawn failure) → Crashed; cancel → Cancelled; ended by the
//! daemon's graceful stop → Cancelled with reason `shutdown`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value as Json;
use tokio::sync::{mpsc, watch};

use crate::runner::launch;
use crate::runner::process::{self, Exit, ProcessSpec, StopRequest};
use crate::source::{Checkouts, Repo, SourceConfig};
use crate::store::RunState;
use crate::validate::Deployment;

use super::sync::error_chain;

/// What every attempt needs from the daemon.
pub struct RunContext {
    pub source: SourceConfig,
    pub checkouts: Checkouts,
    /// Where `checkouts` keeps them: `<root>/<sha>` (a ready one is used without opening git).
    pub checkouts_root: PathBuf,
    pub logs_dir: PathBuf,
    /// SIGTERM → SIGKILL grace for timeouts, cancels and the graceful stop.
    pub grace: Duration,
}

/// One attempt to execute.
pub struct Attempt {
    pub run_id: i64,
    pub deployment: Deployment,
    pub commit: String,
    /// With the schedule's offset, for `SUNDIAL_SCHEDULED_FOR`; `None` for manual runs.
    pub scheduled_for: Option<DateTime<chrono::FixedOffset>>,
    pub attempt: u32,
    pub parameters: Json,
    /// Do not spawn before this instant: the engine arms a slot a little ahead of its time
    /// (row committed, checkout and argv ready) so the process starts on the dot.
    pub not_before: Option<DateTime<Utc>>,
}

/// What an attempt tells the engine.
#[derive(Debug)]
pub enum RunEvent {
    Started {
        id: i64,
        pid: u32,
        at: DateTime<Utc>,
    },
    Finished {
        id: i64,
        state: RunState,
        exit_code: Option<i32>,
        reason: Option<String>,
    },
}

pub fn log_path(logs_dir: &std::path::Path, run_id: i64) -> PathBuf {
    logs_dir.join(format!("{run_id}.log"))
}

/// Executes the attempt and reports `Started` (if a process started) then `Finished`.
pub async fn execute(
    ctx: Arc<RunContext>,
    attempt: Attempt,
    stop: watch::Receiver<Option<StopRequest>>,
    events: mpsc::UnboundedSender<RunEvent>,
) {
    let id = attempt.run_id;
    let (state, exit_code, reason) = match prepare_and_run(&ctx, &attempt, stop, &events).await {
        Ok(exit) => outcome(exit),
        Err(message) => {
            let _ = process::append_log_line(
                &log_path(&ctx.logs_dir, id),
                &format!("# sundial: {message}"),
            );
            (RunState::Crashed, None, Some(message))
        }
    };
    let _ = events.send(RunEvent::Finished {
        id,
        state,
        exit_code,
        reason,
    });
}

async fn prepare_and_run(
    ctx: &Arc<RunContext>,
    attempt: &Attempt,
    stop: watch::Receiver<Option<StopRequest>>,
    events: &mpsc::UnboundedSender<RunEvent>,
) -> Result<Exit, String> {
    let log = log_path(&ctx.logs_dir, attempt.run_id);
    let ready = ctx.checkouts_root.join(&attempt.commit);
    let checkout = if ready.is_dir() {
        ready
    } else {
        let ctx = Arc::clone(ctx);
        let commit = attempt.commit.clone();
        tokio::task::spawn_blocking(move || {
            let repo = Repo::open(&ctx.source)?;
            ctx.checkouts.ensure(&repo, &commit)
        })
        .await
        .map_err(|e| format!("checkout failed: {e}"))?
        .map_err(|e| {
            format!(
                "checkout of {} failed: {}",
                short(&attempt.commit),
                error_chain(&e)
            )
        })?
    };
    let d = &attempt.deployment;
    let argv = launch::argv(d, &checkout).map_err(|e| error_chain(&e))?;
    let cwd = launch::working_dir(d, &checkout);
    let mut env: Vec<(String, String)> = d.env.clone();
    env.push(("SUNDIAL_RUN_ID".into(), attempt.run_id.to_string()));
    env.push(("SUNDIAL_DEPLOYMENT".into(), d.name.clone()));
    if let Some(at) = attempt.scheduled_for {
        env.push((
            "SUNDIAL_SCHEDULED_FOR".into(),
            at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
        ));
    }
    env.push(("SUNDIAL_ATTEMPT".into(), attempt.attempt.to_string()));
    env.push(("SUNDIAL_COMMIT".into(), attempt.commit.clone()));
    env.push(("SUNDIAL_PARAMETERS".into(), attempt.parameters.to_string()));
    let header = format!(
        "# sundial: run {} of {} attempt {} at commit {}: {}",
        attempt.run_id,
        d.name,
        attempt.attempt,
        short(&attempt.commit),
        shell_words::join(&argv)
    );
    let _ = process::append_log_line(&log, &header);
    let spec = ProcessSpec {
        argv,
        cwd,
        env,
        log_path: log,
        timeout: d.timeout,
        grace: ctx.grace,
        stream_output: d.stream_output.then(|| d.name.clone()),
    };
    let mut stop = stop;
    if let Some(at) = attempt.not_before {
        if let Some(request) = wait_until(at, &mut stop).await {
            return Ok(Exit::Stopped(request));
        }
    }
    let running = process::spawn(&spec).map_err(|e| error_chain(&e))?;
    let started = Utc::now();
    let _ = events.send(RunEvent::Started {
        id: attempt.run_id,
        pid: running.pid,
        at: started,
    });
    Ok(running.wait(stop).await)
}

/// Waits until the wall clock reads `at`: a timer to within a millisecond, then a short
/// spin, because timers wake late by up to their granularity. Returns early with a stop
/// request (a cancel of a run that has not started yet).
async fn wait_until(
    at: DateTime<Utc>,
    stop: &mut watch::Receiver<Option<StopRequest>>,
) -> Option<StopRequest> {
    let coarse = (at - Utc::now() - chrono::Duration::milliseconds(1))
        .to_std()
        .unwrap_or_default();
    if !coarse.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(coarse) => {}
            _ = stop.changed() => {}
        }
    }
    if let Some(request) = *stop.borrow() {
        return Some(request);
    }
    while Utc::now() < at {
        std::hint::spin_loop();
    }
    None
}

fn outcome(exit: Exit) -> (RunState, Option<i32>, Option<String>) {
    match exit {
        Exit::Code(0) => (RunState::Completed, Some(0), None),
        Exit::Code(code) => (RunState::Failed, Some(code), None),
        Exit::Signal(signal) => (
            RunState::Crashed,
            None,
            Some(format!("killed by signal {signal}")),
        ),
        Exit::TimedOut => (RunState::TimedOut, None, Some("timeout".into())),
        Exit::Stopped(StopRequest::Cancel) => (RunState::Cancelled, None, Some("cancelled".into())),
        Exit::Stopped(StopRequest::Shutdown) => {
            (RunState::Cancelled, None, Some("shutdown".into()))
        }
        Exit::Lost => (
            RunState::Crashed,
            None,
            Some("the process's exit status was lost".into()),
        ),
    }
}

pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// The time a slot was scheduled for, in its schedule's zone (`SUNDIAL_SCHEDULED_FOR`).
pub fn in_zone(at: DateTime<Utc>, tz: crate::schedule::Tz) -> DateTime<chrono::FixedOffset> {
    at.with_timezone(&tz).fixed_offset()
}
