//! What others ask of the engine, over a channel (the engine owns its state; nobody
//! shares it): manual triggers and cancels from the HTTP API, and reloads (SIGHUP). And
//! the [`Lifecycle`] hooks through which a service manager (systemd) hears how it goes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use tokio::sync::{mpsc, oneshot};

use crate::runner::process::StopRequest;
use crate::store::{NewRun, Run, RunState, StoreError, Trigger};

use super::policy::Admission;
use super::status::Status;
use super::{error_chain, Engine};

/// A request to the engine; each carries where to send its answer.
#[derive(Debug)]
pub enum Request {
    /// Run a deployment now with these parameter overrides (merged over its defaults).
    Trigger {
        deployment: String,
        parameters: Map<String, Json>,
        reply: oneshot::Sender<Result<Run, TriggerError>>,
    },
    /// Cancel a run: end its process group if it runs, or settle it if it waits.
    Cancel {
        run: i64,
        reply: oneshot::Sender<Result<Run, CancelError>>,
    },
    /// A deployment as the engine plans it, for explaining its slots.
    Planned {
        deployment: String,
        reply: oneshot::Sender<Option<Planned>>,
    },
    /// End a deployment's pause after failures.
    Resume {
        deployment: String,
        reply: oneshot::Sender<Result<(), ResumeError>>,
    },
    /// Re-read the repository now (SIGHUP).
    Reload,
}

/// A deployment as the engine plans it: its definition with each interval's kept anchor,
/// the error that holds its file back (if it does), and its pause after failures.
#[derive(Debug, Clone)]
pub struct Planned {
    pub deployment: crate::validate::desired::Deployment,
    pub held_back: Option<String>,
    pub pause: Option<crate::store::Pause>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("no deployment named `{0}`")]
    UnknownDeployment(String),
    #[error("`{0}` is not paused after failures (a `paused: true` in git is resumed by a commit)")]
    NotPaused(String),
    #[error("the state database failed")]
    Store(#[from] StoreError),
    /// The answer sent when the store failed: nothing was done. A broken store stops the
    /// daemon; one that cannot be reached for now is reported in `/api/status`.
    #[error("the daemon's state database cannot be written now, so nothing was done; see /api/status (store_error)")]
    Unavailable,
    /// This node of a cluster does not lead: the leader (named) takes this request.
    #[error("this node stands by in a cluster, it does not schedule; {0}")]
    Standby(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no deployment named `{0}`")]
    UnknownDeployment(String),
    /// Every way the merged parameters fail `parameter_openapi_schema`.
    #[error("the parameters do not match the deployment's parameter schema: {}", .0.join("; "))]
    Parameters(Vec<String>),
    /// The merged parameters (defaults and overrides) are too large to hand to a run.
    #[error("the parameters, merged with the deployment's defaults, are {0} bytes as JSON, over the limit of {max}: they reach the run in the SUNDIAL_PARAMETERS environment variable, which Linux limits to 128 KiB; pass large inputs another way (e.g. a path or URL as a parameter)", max = crate::runner::launch::MAX_PARAMETERS_BYTES)]
    TooLarge(usize),
    /// The state database refused the run's row (a value over its limit): nothing was
    /// recorded or started, and the daemon goes on.
    #[error("the state database refused this run's row ({0}); nothing was started: make the parameters smaller")]
    Unstorable(String),
    #[error("the state database failed")]
    Store(#[from] StoreError),
    /// The answer sent when the store failed: nothing was done. A broken store stops the
    /// daemon; one that cannot be reached for now is reported in `/api/status`.
    #[error("the daemon's state database cannot be written now, so nothing was done; see /api/status (store_error)")]
    Unavailable,
    /// This node of a cluster does not lead: the leader (named) takes this request.
    #[error("this node stands by in a cluster, it does not schedule; {0}")]
    Standby(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no run {0}")]
    UnknownRun(i64),
    #[error("run {0} already ended ({state})", state = .1.as_str())]
    AlreadyEnded(i64, RunState),
    #[error("the state database failed")]
    Store(#[from] StoreError),
    /// The answer sent when the store failed: nothing was done. A broken store stops the
    /// daemon; one that cannot be reached for now is reported in `/api/status`.
    #[error("the daemon's state database cannot be written now, so nothing was done; see /api/status (store_error)")]
    Unavailable,
}

/// How a service manager follows the engine. Every method has a do-nothing default.
pub trait Lifecycle: Send {
    /// After every turn of the engine loop: a loop that stops turning stops calling this,
    /// which is what a watchdog wants to notice.
    fn turn(&mut self, _status: &Status) {}
    /// After each sync the engine handled (applied, unchanged or failed).
    fn synced(&mut self, _status: &Status) {}
    /// A reload (SIGHUP) was asked for; `synced` follows when it is done.
    fn reloading(&mut self) {}
    /// The graceful stop begins.
    fn stopping(&mut self) {}
    /// The longest the loop may sleep between turns (e.g. half the watchdog interval).
    fn max_sleep(&self) -> Option<Duration> {
        None
    }
}

/// No service manager.
pub struct NoLifecycle;

impl Lifecycle for NoLifecycle {}

impl Engine {
    pub(super) fn on_request(
        &mut self,
        request: Request,
        force_sync: &mpsc::Sender<()>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match request {
            // A node that does not lead writes the request for the leader to admit.
            Request::Trigger {
                deployment,
                parameters,
                reply,
            } if !self.leads() => match self.request(&deployment, parameters, now) {
                Err(TriggerError::Store(e)) if e.is_row_error() => {
                    let _ = reply.send(Err(TriggerError::Unstorable(error_chain(&e))));
                }
                Err(TriggerError::Store(e)) => {
                    let _ = reply.send(Err(TriggerError::Unavailable));
                    return Err(e);
                }
                answer => {
                    let _ = reply.send(answer);
                }
            },
            Request::Resume { reply, .. } if !self.leads() => {
                let _ = reply.send(Err(ResumeError::Standby(self.leader_hint())));
            }
            Request::Trigger {
                deployment,
                parameters,
                reply,
            } => match self.trigger(&deployment, parameters, now) {
                Err(TriggerError::Store(e)) if e.is_row_error() => {
                    let _ = reply.send(Err(TriggerError::Unstorable(error_chain(&e))));
                }
                Err(TriggerError::Store(e)) if e.is_fenced() => {
                    let _ = reply.send(Err(TriggerError::Standby(self.leader_hint())));
                    return Err(e);
                }
                Err(TriggerError::Store(e)) => {
                    let _ = reply.send(Err(TriggerError::Unavailable));
                    return Err(e);
                }
                answer => {
                    let _ = reply.send(answer);
                }
            },
            Request::Cancel { run, reply } => match self.cancel(run, now) {
                Err(CancelError::Store(e)) => {
                    let _ = reply.send(Err(CancelError::Unavailable));
                    return Err(e);
                }
                answer => {
                    let _ = reply.send(answer);
                }
            },
            Request::Planned { deployment, reply } => {
                let planned = self.planned(&deployment)?;
                let _ = reply.send(planned);
            }
            Request::Resume { deployment, reply } => {
                let answer = if self.applied.deployment(&deployment).is_none() {
                    Err(ResumeError::UnknownDeployment(deployment))
                } else if !self.pauses.contains_key(&deployment) {
                    Err(ResumeError::NotPaused(deployment))
                } else {
                    match self.resume(&deployment, "resumed by request") {
                        Ok(()) => Ok(()),
                        Err(e) if e.is_transient() => Err(ResumeError::Store(e)),
                        Err(e) => {
                            let _ = reply.send(Err(ResumeError::Unavailable));
                            return Err(e);
                        }
                    }
                };
                let _ = reply.send(answer);
            }
            Request::Reload => {
                self.lifecycle.reloading();
                let _ = force_sync.try_send(());
            }
        }
        Ok(())
    }

    /// `name` as its slots are planned: anchors kept with the cursors applied.
    fn planned(&self, name: &str) -> Result<Option<Planned>, StoreError> {
        let Some((deployment, _)) = self.applied.deployment(name) else {
            return Ok(None);
        };
        let mut deployment = deployment.clone();
        for s in deployment
            .schedules
            .iter_mut()
            .filter(|s| s.anchored_at_commit)
        {
            let kept = self
                .store
                .cursor(name, &s.id)?
                .filter(|c| *c.fingerprint == *s.fingerprint)
                .and_then(|c| c.anchor);
            if let Some(anchor) = kept.or(s.introduced_at) {
                s.schedule = s.schedule.anchored_at(anchor);
            }
        }
        let held_back = self
            .applied
            .files()
            .get(&deployment.file)
            .filter(|f| f.held_back)
            .and_then(|_| {
                self.status
                    .errors
                    .iter()
                    .find(|e| e.file == deployment.file)
            })
            .map(|e| format!("{}:{}:{}: {}", e.file, e.line, e.column, e.message));
        Ok(Some(Planned {
            held_back,
            pause: self.pauses.get(name).cloned(),
            deployment,
        }))
    }

    /// A manual run asked of a node of a cluster that does not lead: checked as
    /// [`Engine::trigger`] checks it, written `Pending` for the leader, which admits it
    /// (usually within milliseconds: the write wakes it).
    fn request(
        &mut self,
        name: &str,
        overrides: Map<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<Run, TriggerError> {
        if self.cluster.is_none() {
            return Err(TriggerError::Standby(self.leader_hint()));
        }
        let (_, mut row) = self.manual_row(name, overrides, now)?;
        row.state = RunState::Pending;
        row.started_at = None;
        row.reason = Some(crate::store::pg::dispatch::ASKED.to_string());
        let id = self
            .store
            .request_run(&row, now)?
            .ok_or_else(|| StoreError::Corrupt("a manual run was not inserted".into()))?;
        let run = self
            .store
            .run(id)?
            .ok_or_else(|| StoreError::Corrupt(format!("run {id} vanished")))?;
        Ok(run)
    }

    /// A manual run's row: defaults then the trigger's overrides, checked against the
    /// parameter schema (every error reported), to run at the commit in force.
    fn manual_row(
        &self,
        name: &str,
        overrides: Map<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<(crate::reconcile::SharedDeployment, NewRun), TriggerError> {
        let Some((deployment, commit)) = self.applied.shared(name) else {
            return Err(TriggerError::UnknownDeployment(name.to_string()));
        };
        let (deployment, commit) = (deployment.clone(), commit.to_string());
        let mut merged = deployment.parameters.clone();
        merged.extend(overrides);
        let parameters = Json::Object(merged);
        let size = parameters.to_string().len();
        if size > crate::runner::launch::MAX_PARAMETERS_BYTES {
            return Err(TriggerError::TooLarge(size));
        }
        if let Some(schema) = &deployment.parameter_schema {
            let errors = parameter_errors(schema, &parameters);
            if !errors.is_empty() {
                return Err(TriggerError::Parameters(errors));
            }
        }
        let row = NewRun {
            deployment: deployment.name.clone(),
            schedule_id: None,
            scheduled_for: None,
            trigger: Trigger::Manual,
            state: RunState::Running,
            reason: None,
            attempt: 1,
            commit: commit.clone(),
            parameters,
            started_at: Some(now),
            not_before: None,
            retry_of: None,
        };
        Ok((deployment, row))
    }

    /// A manual run: its row ([`Engine::manual_row`]) recorded, then started (or
    /// dispatched, queued, refused by its concurrency limit).
    fn trigger(
        &mut self,
        name: &str,
        overrides: Map<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<Run, TriggerError> {
        let (deployment, mut row) = self.manual_row(name, overrides, now)?;
        let commit = row.commit.clone();
        let admission = self.admission(&deployment, 0);
        match admission {
            Admission::Start if self.dispatches() => {
                row.state = RunState::Scheduled;
                row.started_at = None;
            }
            Admission::Start => {}
            Admission::Queue => {
                row.state = RunState::Pending;
                row.started_at = None;
            }
            Admission::Refuse => {
                row.state = RunState::Cancelled;
                row.started_at = None;
                row.reason = Some("overlap".into());
            }
        }
        let id = self
            .store
            .insert_run(&row, now)?
            .ok_or_else(|| StoreError::Corrupt("a manual run was not inserted".into()))?;
        match admission {
            Admission::Start if self.dispatches() => self.dispatched(&deployment.name, now)?,
            Admission::Start => self.start(id, &deployment, &commit, &row, None),
            Admission::Queue => self.enqueue(&deployment.name, id, now),
            Admission::Refuse => {}
        }
        let run = self
            .store
            .run(id)?
            .ok_or_else(|| StoreError::Corrupt(format!("run {id} vanished")))?;
        Ok(run)
    }

    fn cancel(&mut self, id: i64, now: DateTime<Utc>) -> Result<Run, CancelError> {
        let run = self.store.run(id)?.ok_or(CancelError::UnknownRun(id))?;
        if let Some(flight) = self.running.get_mut(&id) {
            flight.cancel_requested = true;
            let _ = flight.stop.send(Some(StopRequest::Cancel));
            return Ok(run);
        }
        if run.state.is_final() {
            return Err(CancelError::AlreadyEnded(id, run.state));
        }
        if let (RunState::Running, Some(_)) = (run.state, &run.node) {
            return self.cancel_elsewhere(run, now);
        }
        if !self.store.cancel_waiting(id, "cancelled", now)? {
            // A node claimed it meanwhile: it runs there now.
            let now_is = self.store.run(id)?.unwrap_or(run);
            return match (now_is.state, &now_is.node) {
                (RunState::Running, Some(_)) => self.cancel_elsewhere(now_is, now),
                (state, _) => Err(CancelError::AlreadyEnded(id, state)),
            };
        }
        Ok(self.store.run(id)?.unwrap_or(run))
    }

    /// A run whose process another node runs: that node is asked to cancel it (it stops
    /// the process as a cancel here would, and records it `Cancelled`).
    fn cancel_elsewhere(&mut self, run: Run, now: DateTime<Utc>) -> Result<Run, CancelError> {
        let node = run.node.clone().unwrap_or_default();
        if self.store.ask_cancel(run.id, &node, now)? {
            tracing::info!(
                "run {}: its cancel was handed to node {node}, which runs it",
                run.id
            );
            return Ok(run);
        }
        let now_is = self.store.run(run.id)?.unwrap_or(run);
        Err(CancelError::AlreadyEnded(now_is.id, now_is.state))
    }
}

/// Every error of `parameters` against `schema`, as "`path`: message" lines.
pub fn parameter_errors(schema: &Json, parameters: &Json) -> Vec<String> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator
            .iter_errors(parameters)
            .map(|e| {
                let path = e.instance_path().as_str().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("`{}`: {e}", &path[1..])
                }
            })
            .collect(),
        Err(e) => vec![format!("the parameter schema is invalid: {e}")],
    }
}
