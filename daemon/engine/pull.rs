//! Pull steps (DESIGN.md "Pull steps"): an attempt whose deployment has them waits for its
//! instant, runs each step as a process of the attempt (logged to the run's log, with the
//! run's environment and what is left of its time limit), then starts its main process.
//! A failing step fails the attempt; the node must still lead when the steps are done.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::runner::process::{Exit, StopRequest};
use crate::runner::spawn::{self, ProcessSpec};
use crate::runner::timed::{self, Released};
use crate::validate::desired::PullStep;

use super::attempt::{
    in_checkout, render, Attempt, Failure, RunContext, RunEvent, LAUNCH_LOST, NOT_ALIVE,
};
use super::error_chain;

/// Pull steps first: the wait ends on the dot, then each step, then the main process.
#[allow(clippy::too_many_arguments)]
pub(super) async fn with_pull_steps(
    ctx: &Arc<RunContext>,
    attempt: &Attempt,
    checkout: &std::path::Path,
    spec: ProcessSpec,
    when: std::time::Instant,
    mut stop: watch::Receiver<Option<StopRequest>>,
    events: &mpsc::UnboundedSender<RunEvent>,
    may_start: impl Fn() -> bool + Clone + Send + 'static,
) -> Result<Exit, Failure> {
    let still_leads = may_start.clone();
    let began = match timed::at(when, &mut stop, may_start).await {
        Released::Ran(false, _) => return Err(Failure::Crashed(NOT_ALIVE.into())),
        Released::Ran(true, began) => began,
        Released::Stopped(request) => return Ok(Exit::Stopped(request)),
        Released::Lost => return Err(Failure::Crashed(LAUNCH_LOST.into())),
    };
    let _ = events.send(RunEvent::Began {
        id: attempt.run_id,
        at: began,
    });
    for (i, step) in attempt.deployment.pull.iter().enumerate() {
        let exit = pull_step(ctx, attempt, checkout, &spec, (i, step), &stop, events).await?;
        if exit != Exit::Code(0) {
            let _ = spawn::append_log_line(
                &spec.log_path,
                &format!(
                    "# sundial: pull step {} failed ({exit:?}); the attempt fails",
                    i + 1
                ),
            );
            return Ok(exit);
        }
    }
    // The pull steps took their time: the node must still lead to start the main process.
    if !still_leads() {
        return Err(Failure::Crashed(NOT_ALIVE.into()));
    }
    let running = spawn::spawn(&spec).map_err(|e| Failure::Crashed(error_chain(&e)))?;
    let _ = events.send(RunEvent::Spawned {
        id: attempt.run_id,
        pid: running.pid,
    });
    Ok(running.wait(stop).await)
}

/// One process of a pull step: argv, directory, extra environment.
type StepCommand = (Vec<String>, PathBuf, Vec<(String, String)>);

/// Performs one pull step (DESIGN.md "Pull steps") as a process of the attempt, logged to
/// the run's log, with the run's environment and what is left of its time limit.
async fn pull_step(
    ctx: &Arc<RunContext>,
    attempt: &Attempt,
    checkout: &std::path::Path,
    main: &ProcessSpec,
    (index, step): (usize, &PullStep),
    stop: &watch::Receiver<Option<StopRequest>>,
    events: &mpsc::UnboundedSender<RunEvent>,
) -> Result<Exit, Failure> {
    let d = &attempt.deployment;
    let lines: Vec<StepCommand> = match step {
        PullStep::PipInstall {
            requirements,
            directory,
        } => {
            let python = d
                .python
                .clone()
                .unwrap_or_else(|| crate::runner::launch::DEFAULT_PYTHON.to_string());
            let argv = vec![
                python,
                "-m".into(),
                "pip".into(),
                "install".into(),
                "-r".into(),
                checkout.join(requirements).display().to_string(),
            ];
            let dir = in_checkout(checkout, directory, "pull step directory")?;
            vec![(argv, dir, Vec::new())]
        }
        PullStep::Script {
            lines,
            directory,
            env,
        } => {
            let mut rendered_env = Vec::new();
            for (k, v) in env {
                rendered_env.push((k.clone(), render(v)?));
            }
            let mut out = Vec::new();
            for line in lines {
                let argv = line
                    .iter()
                    .map(|w| render(w))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((
                    argv,
                    in_checkout(checkout, directory, "pull step directory")?,
                    rendered_env.clone(),
                ));
            }
            out
        }
    };
    for (argv, cwd, extra_env) in lines {
        let _ = spawn::append_log_line(
            &main.log_path,
            &format!(
                "# sundial: pull step {}: {}",
                index + 1,
                shell_words::join(&argv)
            ),
        );
        let mut env = main.env.clone();
        env.extend(extra_env);
        let spec = ProcessSpec {
            argv,
            cwd,
            env,
            log_path: main.log_path.clone(),
            timeout: main.timeout,
            deadline: main.deadline,
            grace: ctx.grace,
            stream_output: main.stream_output.clone(),
            stdin: None,
        };
        let running = spawn::spawn(&spec).map_err(|e| {
            Failure::Failed(format!(
                "pull step {} cannot start: {}",
                index + 1,
                error_chain(&e)
            ))
        })?;
        let _ = events.send(RunEvent::Spawned {
            id: attempt.run_id,
            pid: running.pid,
        });
        let exit = running.wait(stop.clone()).await;
        if exit != Exit::Code(0) {
            return Ok(exit);
        }
    }
    Ok(Exit::Code(0))
}
