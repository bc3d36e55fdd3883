//! One attempt of a run, as a task: checkout of its commit, the process (the runner's one
//! spawn recipe), and the outcome reported back to the engine, which alone writes the store.
//!
//! Outcomes (DESIGN.md "Outcomes and retries"): exit 0 → Completed; non-zero → Failed;
//! ended by the timeout → TimedOut; killed by a signal sundial did not send, or no process
//! at all (checkout, launch or spawn failure) → Crashed; cancel → Cancelled; ended by the
//! daemon's graceful stop → Cancelled with reason `shutdown`; withdrawn before it began
//! (its deployment paused or removed while its slot was armed) → Cancelled with reason
//! `deployment paused` or `deployment removed`.
//!
//! The attempt's time limit (`timeout_seconds`) counts from the moment it begins (after
//! the wait for its slot), and bounds pull steps and the main process together. When the
//! main process has ended, whatever the run left (processes that escaped its group) is
//! ended too before the outcome is reported (see [`crate::runner::contain`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value as Json;
use tokio::sync::{mpsc, watch};

use crate::reconcile::SharedDeployment;
use crate::runner::contain::{self, Sweeper};
use crate::runner::launch;
use crate::runner::process::{Exit, StopRequest};
use crate::runner::spawn::{self, ProcessSpec};
use crate::runner::timed::{self, Released};
use crate::source::{Checkouts, Repo, SourceConfig};
use crate::store::RunState;
use crate::template;

use super::error_chain;
use super::pull::with_pull_steps;

/// What every attempt needs from the daemon.
pub struct RunContext {
    pub source: SourceConfig,
    pub checkouts: Checkouts,
    pub logs_dir: PathBuf,
    /// SIGTERM → SIGKILL grace for timeouts, cancels and the graceful stop.
    pub grace: Duration,
    /// This state directory's instance id, in every run process's marker.
    pub instance: String,
    /// Finds what a run left behind.
    pub sweeper: Sweeper,
    /// In a cluster: whether this node is still alive (its heartbeat recent), checked at
    /// the instant of each spawn.
    pub lease: Option<Arc<crate::cluster::Liveness>>,
    /// In a cluster: this node's name (`SUNDIAL_NODE`).
    pub node: Option<String>,
}

impl RunContext {
    /// Whether a run may start now: alone always; in a cluster only while this node's
    /// heartbeat is recent (a node stopped or cut off from the database starts nothing
    /// when it wakes: the leader settles its runs as lost and retries them elsewhere).
    fn may_start(lease: Option<&crate::cluster::Liveness>) -> bool {
        lease.is_none_or(crate::cluster::Liveness::alive)
    }
}

/// One attempt to execute.
pub struct Attempt {
    pub run_id: i64,
    pub deployment: SharedDeployment,
    pub commit: String,
    /// With the schedule's offset, for `SUNDIAL_SCHEDULED_FOR`; `None` for manual runs.
    pub scheduled_for: Option<DateTime<chrono::FixedOffset>>,
    pub attempt: u32,
    pub parameters: Json,
    /// Do not spawn before this instant: the engine arms a slot a little ahead of its time
    /// (row committed, checkout and argv ready) so the process starts on the dot.
    pub not_before: Option<DateTime<Utc>>,
    /// In a cluster: the epoch of the leader that dispatched it (`SUNDIAL_LEADER_EPOCH`).
    pub epoch: Option<i64>,
}

/// What an attempt tells the engine.
#[derive(Debug)]
pub enum RunEvent {
    /// The attempt began (its slot's time came): pull steps, then the main process.
    Began { id: i64, at: DateTime<Utc> },
    /// A process of the attempt was spawned (a pull step's or the main one).
    Spawned { id: i64, pid: u32 },
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
///
/// A plain function returning the future, not an `async fn`: an `async fn` keeps a second
/// copy of its by-value `attempt` in its future (rust-lang/rust#62958), and a burst holds
/// one such future per slot.
#[allow(clippy::manual_async_fn)] // one copy of its by-value arguments (see the doc)
pub fn execute(
    ctx: Arc<RunContext>,
    attempt: Attempt,
    stop: watch::Receiver<Option<StopRequest>>,
    events: mpsc::UnboundedSender<RunEvent>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let id = attempt.run_id;
        let result = prepare_and_run(&ctx, &attempt, stop, &events).await;
        end_leftovers(&ctx, id).await;
        let (state, exit_code, reason) = match result {
            Ok(exit) => outcome(exit),
            Err(failure) => {
                let (state, message) = match failure {
                    Failure::Crashed(message) => (RunState::Crashed, message),
                    Failure::Failed(message) => (RunState::Failed, message),
                };
                let _ = spawn::append_log_line(
                    &log_path(&ctx.logs_dir, id),
                    &format!("# sundial: {message}"),
                );
                (state, None, Some(message))
            }
        };
        let _ = events.send(RunEvent::Finished {
            id,
            state,
            exit_code,
            reason,
        });
    }
}

/// Ends what the run left behind (processes that left its group), and says so in its log.
async fn end_leftovers(ctx: &RunContext, id: i64) {
    let left = ctx.sweeper.leftovers(id).await;
    if left.is_empty() {
        return;
    }
    let names: Vec<String> = left
        .iter()
        .map(|p| format!("{} ({})", p.pid, p.name))
        .collect();
    let line = format!(
        "# sundial: the run left {} process(es) outside its group: {}; SIGTERM, SIGKILL after {:?}",
        left.len(),
        names.join(", "),
        ctx.grace
    );
    tracing::info!("run {id}: {}", &line[12..]);
    let _ = spawn::append_log_line(&log_path(&ctx.logs_dir, id), &line);
    contain::end(&left, ctx.grace).await;
}

/// The attempt: its checkout, its process built, then started on the dot (the usual
/// path), or pre-started, or after its pull steps.
///
/// The task of every armed attempt lives from its arming to its end, so a burst of 10,000
/// slots holds 10,000 of them at once: what this future keeps across its waits is kept
/// small. The process is built by a plain function (its temporaries are gone before the
/// first wait), and the rare paths (pull steps, pre-started) are boxed, so they do not
/// size every attempt.
#[allow(clippy::manual_async_fn)] // one copy of its by-value arguments (see the doc)
fn prepare_and_run<'a>(
    ctx: &'a Arc<RunContext>,
    attempt: &'a Attempt,
    mut stop: watch::Receiver<Option<StopRequest>>,
    events: &'a mpsc::UnboundedSender<RunEvent>,
) -> impl std::future::Future<Output = Result<Exit, Failure>> + Send + 'a {
    // Not an `async fn`: that would keep `stop` twice (rust-lang/rust#62958).
    async move {
        let lease = ctx.lease.clone();
        let may_start = move || RunContext::may_start(lease.as_deref());
        // What is built here is gone before the wait for the instant, but on the rare paths.
        let (prepared, when) = {
            let checkout = checkout_of(ctx, attempt).await?;
            let (mut spec, preamble, bootstrapped) = process_of(ctx, attempt, &checkout)?;
            // The instant the attempt begins: its slot's time (armed ahead), or now.
            let when = attempt
                .not_before
                .map_or_else(std::time::Instant::now, timed::monotonic);
            // Its time limit counts from then, for every process of it.
            let begins = tokio::time::Instant::from_std(when.max(std::time::Instant::now()));
            let d = &attempt.deployment;
            spec.deadline = d.timeout.map(|t| begins + t);
            if !d.pull.is_empty() || (d.prestart.is_some() && bootstrapped) {
                let _ = spawn::append_log_lines(&spec.log_path, &preamble);
                let id = attempt.run_id;
                return if d.pull.is_empty() {
                    Box::pin(prestarted(id, spec, when, stop, events, may_start)).await
                } else {
                    Box::pin(with_pull_steps(
                        ctx, attempt, &checkout, spec, when, stop, events, may_start,
                    ))
                    .await
                };
            }
            // The main process is prepared now (its log open, the command built) and spawned
            // by a launch thread on the dot, if this node may still start it then. A failure
            // to prepare is reported at the instant too, as the spawn's would be.
            (spawn::prepare(&spec, &preamble), when)
        };
        let launched = timed::at(when, &mut stop, move || {
            may_start().then(|| prepared.and_then(spawn::Prepared::start))
        })
        .await;
        let (running, began) = match launched {
            Released::Ran(None, _) => return Err(Failure::Crashed(NOT_ALIVE.into())),
            Released::Ran(Some(started), began) => (
                started.map_err(|e| Failure::Crashed(error_chain(&e)))?,
                began,
            ),
            Released::Stopped(request) => return Ok(Exit::Stopped(request)),
            Released::Lost => return Err(Failure::Crashed(LAUNCH_LOST.into())),
        };
        let id = attempt.run_id;
        let _ = events.send(RunEvent::Began { id, at: began });
        let _ = events.send(RunEvent::Spawned {
            id,
            pid: running.pid,
        });
        Ok(running.wait(stop).await)
    }
}

/// The checkout of the attempt's commit: a ready one (`<root>/<sha>`) is used without
/// opening git.
async fn checkout_of(ctx: &Arc<RunContext>, attempt: &Attempt) -> Result<PathBuf, Failure> {
    let ready = ctx.checkouts.root().join(&attempt.commit);
    if ready.is_dir() {
        return Ok(ready);
    }
    let ctx = Arc::clone(ctx);
    let commit = attempt.commit.clone();
    let made = tokio::task::spawn_blocking(move || {
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
    })?;
    Ok(made)
}

/// The attempt's main process, built: its spec (argv and environment with their
/// `{{ $NAME }}` placeholders read from the daemon's environment now, at run start), the
/// lines its log begins with, and whether it runs sundial's Python bootstrap.
fn process_of(
    ctx: &RunContext,
    attempt: &Attempt,
    checkout: &std::path::Path,
) -> Result<(ProcessSpec, Vec<String>, bool), Failure> {
    let d = &attempt.deployment;
    let plan = launch::plan(d, checkout).map_err(|e| Failure::Crashed(error_chain(&e)))?;
    let argv = plan
        .argv
        .iter()
        .map(|word| render(word))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = in_checkout(checkout, &d.working_dir, "working directory")?;
    let mut env: Vec<(String, String)> = Vec::new();
    for (key, value) in &d.env {
        env.push((key.clone(), render(value)?));
    }
    if let Some(dir) = &plan.python_path {
        // A module found only from the repository root: put the root first on its path.
        let inherited = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PYTHONPATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PYTHONPATH").ok())
            .filter(|v| !v.is_empty());
        let mut value = dir.display().to_string();
        if let Some(rest) = inherited {
            value = format!("{value}:{rest}");
        }
        env.push(("PYTHONPATH".into(), value));
    }
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
    if let (Some(node), Some(epoch)) = (&ctx.node, attempt.epoch) {
        env.push(("SUNDIAL_NODE".into(), node.clone()));
        env.push(("SUNDIAL_LEADER_EPOCH".into(), epoch.to_string()));
    }
    env.push((
        contain::MARK_VAR.into(),
        contain::mark(&ctx.instance, attempt.run_id),
    ));
    let parameters = render_json(&attempt.parameters)?.to_string();
    if parameters.len() > launch::MAX_PARAMETERS_BYTES {
        // Linux would refuse the exec ("Argument list too long"): say why instead.
        return Err(Failure::Failed(format!(
            "the parameters are {} bytes as JSON, over the limit of {}: they reach the run in SUNDIAL_PARAMETERS, which Linux limits to 128 KiB; pass large inputs another way (e.g. a path or URL as a parameter)",
            parameters.len(),
            launch::MAX_PARAMETERS_BYTES
        )));
    }
    env.push(("SUNDIAL_PARAMETERS".into(), parameters));
    // The Python bootstrap is ~90 lines passed with `-c`: the header names it instead.
    let shown: Vec<&str> = argv
        .iter()
        .map(|word| {
            if word == launch::BOOTSTRAP {
                "<sundial's Python bootstrap>"
            } else {
                word.as_str()
            }
        })
        .collect();
    let header = format!(
        "# sundial: run {} of {} attempt {} at commit {}: {}",
        attempt.run_id,
        d.name,
        attempt.attempt,
        short(&attempt.commit),
        shell_words::join(&shown)
    );
    let mut preamble = vec![header];
    preamble.extend(plan.notes.iter().map(|note| format!("# sundial: {note}")));
    let bootstrapped = plan.argv.iter().any(|word| word == launch::BOOTSTRAP);
    let spec = ProcessSpec {
        argv,
        cwd,
        env,
        log_path: log_path(&ctx.logs_dir, attempt.run_id),
        timeout: d.timeout,
        deadline: None,
        grace: ctx.grace,
        stream_output: d.stream_output.then(|| d.name.clone()),
        stdin: None,
    };
    Ok((spec, preamble, bootstrapped))
}

/// A Python entrypoint started ahead (`prestart_seconds`): the interpreter starts now and
/// imports the module, the bootstrap waits on its standard input, and a launch thread
/// writes the release on the dot; the function is called then. Stopped before that (or the
/// daemon gone), the pipe closes without a release and the function is never called.
async fn prestarted(
    id: i64,
    mut spec: ProcessSpec,
    when: std::time::Instant,
    mut stop: watch::Receiver<Option<StopRequest>>,
    events: &mpsc::UnboundedSender<RunEvent>,
    may_start: impl FnOnce() -> bool + Send + 'static,
) -> Result<Exit, Failure> {
    let (reader, mut release) = std::io::pipe()
        .map_err(|e| Failure::Crashed(format!("cannot make the release pipe: {e}")))?;
    spec.stdin = Some(Arc::new(reader));
    spec.env.push((launch::RELEASE_VAR.into(), "stdin".into()));
    let running = spawn::spawn(&spec).map_err(|e| Failure::Crashed(error_chain(&e)))?;
    // The child has its own copy of the read end; the pipe ends with the writer.
    spec.stdin = None;
    let _ = events.send(RunEvent::Spawned {
        id,
        pid: running.pid,
    });
    let released = timed::at(when, &mut stop, move || {
        use std::io::Write;
        if !may_start() {
            // Dropped unwritten: the bootstrap exits without calling the function.
            return false;
        }
        // A child that already ended (its import failed) cannot read it: its exit says why.
        let _ = release.write_all(b"g");
        true
    })
    .await;
    match released {
        Released::Ran(true, began) => {
            let _ = events.send(RunEvent::Began { id, at: began });
        }
        Released::Ran(false, _) => {
            running.wait(stop).await;
            return Err(Failure::Crashed(NOT_ALIVE.into()));
        }
        // Not to run at all: its deployment was paused or removed before its time.
        Released::Stopped(request @ StopRequest::Withdraw(_)) => {
            return Ok(running.end(Exit::Stopped(request)).await);
        }
        // The release pipe closed unwritten: the bootstrap exits without calling.
        Released::Stopped(_) | Released::Lost => {}
    }
    Ok(running.wait(stop).await)
}

/// Why an attempt of a node that stopped leading before its instant is Crashed.
pub(super) const NOT_ALIVE: &str = "not started: this node lost the database before the run's time (no recent heartbeat); the leader settles it and decides its retry";

/// Why an attempt whose launch thread failed is Crashed.
pub(super) const LAUNCH_LOST: &str = "the thread starting the process failed; whether it started is unknown, and any process of the run is ended";

/// Why an attempt ended before its process could run.
#[derive(Debug)]
pub(super) enum Failure {
    /// Nothing ran: checkout, launch or spawn failed.
    Crashed(String),
    /// The run's own configuration cannot be used now (an unset `{{ $NAME }}`).
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Crashed(message)
    }
}

pub(super) fn render(text: &str) -> Result<String, Failure> {
    template::render_env(text).map_err(|p| {
        Failure::Failed(format!(
            "`{}` cannot be resolved: set it in the daemon's environment (for systemd, in its EnvironmentFile=)",
            p.written()
        ))
    })
}

/// A directory of the run (`working_dir`, a pull step's `directory`) inside the checkout,
/// with its `{{ $NAME }}` placeholders filled in now; one that would leave the checkout
/// fails the attempt.
pub(super) fn in_checkout(
    checkout: &std::path::Path,
    dir: &str,
    what: &str,
) -> Result<PathBuf, Failure> {
    let rendered = render(dir)?;
    match crate::validate::paths::resolve_inside("", &rendered) {
        Some(rel) if rel.is_empty() => Ok(checkout.to_path_buf()),
        Some(rel) => Ok(checkout.join(rel)),
        None => Err(Failure::Failed(format!(
            "the {what} `{rendered}` (from `{dir}`) is outside the checkout; name a directory of the repository"
        ))),
    }
}

fn render_json(value: &Json) -> Result<Json, Failure> {
    Ok(match value {
        Json::String(s) => Json::String(render(s)?),
        Json::Array(items) => Json::Array(items.iter().map(render_json).collect::<Result<_, _>>()?),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v)?)))
                .collect::<Result<_, Failure>>()?,
        ),
        other => other.clone(),
    })
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
        Exit::Stopped(StopRequest::Withdraw(why)) => {
            (RunState::Cancelled, None, Some(why.reason().into()))
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
