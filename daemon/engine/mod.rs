//! The engine: the daemon's one owner of scheduling state and of the clock.
//!
//! One task runs [`run`]'s loop. It sleeps until the earliest due slot (a priority queue,
//! never a per-second poll; at most [`MAX_SLEEP`] so a suspended host or a stepped clock is
//! noticed), wakes on new commits from the syncer and on events from running attempts, and
//! is the only writer of the store. The HTTP API reads the store and the published
//! [`Status`]; it never touches this state.
//!
//! At most once: a slot's run row is committed (`synchronous=FULL`) before its process
//! starts, and the schedule's cursor moves in the same transaction. Nothing vanishes: a
//! due slot that does not run is a Skipped row with its reason (`missed`, `inactive`).
//! Fatal: only a store that cannot be trusted stops the daemon (loudly, after ending its
//! running jobs gracefully): a database deleted, replaced, unwritable or corrupt. A full
//! disk is not fatal: what cannot be recorded waits (a slot is retried every second and
//! follows the catch-up rule once it can be claimed, a run's end is recorded later), the
//! status says so, and everything resumes by itself when space returns. A bad commit, a
//! broken repository or a crashing child is recorded and the loop goes on.
//!
//! Schedule identity: a schedule's slots are keyed by its id (its `slug`, else a digest of
//! its timing and parameters). A schedule whose timing changes under the same id, a new
//! id, and a schedule that left the branch and came back are all planned from the commit
//! that brought them: the time before is never caught up.
//!
//! Waiting runs (queued behind a concurrency limit, or waiting to retry) run the
//! deployment as it is when they start: the newest applied definition and the checkout of
//! that same commit, which the run row records. Nothing starts before the first commit
//! is applied after a start, so recovered retries and queued runs meet their deployment.

pub mod attempt;
mod policy;
mod recover;
pub mod request;
mod retention;
pub mod status;
pub mod sync;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use tokio::sync::{mpsc, watch};

use crate::reconcile::{reconcile, Applied, AppliedFile};
use crate::runner::contain;
use crate::runner::process::StopRequest;
use crate::scheduler::slots::{decide, due_slots, Action};
use crate::scheduler::{ClockWatch, Jump, Key, Timer};
use crate::source::{Checkouts, SourceConfig};
use crate::store::{
    AppliedCommit, FileError, NewRun, RunState, SlotCursor, Store, StoreError, Trigger,
};
use crate::validate::Diagnostic;

use attempt::{RunContext, RunEvent};
pub use request::{CancelError, Lifecycle, NoLifecycle, Request, TriggerError};
use status::{DeploymentView, ScheduleView, Status};
use sync::{SyncMessage, Synced};

/// The longest the loop sleeps without looking at the wall clock.
/// Five seconds: a stepped clock shows in the status within that, for a wake-up that costs
/// microseconds.
pub const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How far ahead of its time a slot is armed: its row committed, its checkout and argv
/// ready, its attempt waiting to spawn on the dot. Keeps the database and process set-up
/// out of the start lateness.
pub const ARM_AHEAD: Duration = Duration::from_millis(25);

pub struct EngineConfig {
    pub source: SourceConfig,
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
    /// SIGTERM → SIGKILL grace for runs (timeouts, cancels, the graceful stop).
    pub grace: Duration,
    pub retention: retention::Retention,
    /// Which files of the commit are manifests.
    pub discovery: crate::manifest::discover::Discovery,
}

pub use retention::Retention;

/// Runs the engine until `shutdown` completes, then stops running processes gracefully
/// and records their end. `requests` carries the API's triggers and cancels and the
/// reload (SIGHUP); `lifecycle` hears about readiness and every loop turn (systemd).
pub async fn run(
    config: EngineConfig,
    status: watch::Sender<Status>,
    shutdown: impl Future<Output = ()>,
    mut requests: mpsc::Receiver<Request>,
    lifecycle: Box<dyn Lifecycle>,
) -> Result<(), StoreError> {
    let db = config.state_dir.join("state.db");
    let store = Store::open(&db)?;
    let logs_dir = config.state_dir.join("logs");
    if store.created() {
        set_aside_old_logs(&logs_dir);
    }
    if let Err(e) = std::fs::create_dir_all(&logs_dir) {
        tracing::error!("cannot create {}: {e}", logs_dir.display());
    }
    // Without an instance id no run could be found again after a crash: like the store,
    // it is part of the state directory sundial cannot work without.
    let instance = contain::instance_id(&config.state_dir).map_err(|e| {
        StoreError::Corrupt(format!(
            "cannot read or create {}: {e}",
            config.state_dir.join("instance").display()
        ))
    })?;
    let ctx = Arc::new(RunContext {
        source: config.source.clone(),
        checkouts: Checkouts::new(config.state_dir.join("checkouts")),
        logs_dir,
        grace: config.grace,
        sweeper: contain::Sweeper::start(instance.clone()),
        instance,
    });
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let mut engine = Engine {
        store,
        ctx,
        applied: Applied::default(),
        timer: Timer::default(),
        fingerprints: HashMap::new(),
        running: HashMap::new(),
        events: events_tx,
        status_tx: status,
        status: Status::default(),
        clock: ClockWatch::new(Utc::now(), Instant::now()),
        lifecycle,
        queues: HashMap::new(),
        retries: BinaryHeap::new(),
        recovered: recover::Recovered::default(),
        retention: config.retention,
        last_retention: None,
        stopping: false,
        ticked_at: Instant::now(),
        deferred_events: Vec::new(),
        deferred_sync: None,
    };
    engine.recover(Utc::now()).await?;
    let (sync_tx, mut sync_rx) = mpsc::channel(4);
    let (force_tx, force_rx) = mpsc::channel(1);
    tokio::spawn(sync::run(
        config.source.clone(),
        config.discovery.clone(),
        db,
        config.poll_interval,
        sync_tx,
        force_rx,
    ));

    tokio::pin!(shutdown);
    let outcome = loop {
        let deadline = engine.deadline(Utc::now());
        let turn = tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            Some(event) = events_rx.recv() => engine.on_event(event, Utc::now()),
            () = tokio::time::sleep_until(deadline) => engine.tick(Utc::now()),
            Some(message) = sync_rx.recv() => {
                let applied = engine.on_sync(message, Utc::now());
                engine.lifecycle.synced(&engine.status);
                applied
            }
            Some(request) = requests.recv() => engine.on_request(request, &force_tx, Utc::now()),
        };
        if let Err(fatal) = engine.settle_turn(turn) {
            break Err(fatal);
        }
        engine.lifecycle.turn(&engine.status);
    };
    if let Err(e) = &outcome {
        tracing::error!(
            "the state database failed ({}); ending the running jobs, then stopping",
            error_chain(e)
        );
    }
    engine.lifecycle.stopping();
    // Running jobs are ended either way; a broken store is still the error to report.
    let stopped = engine.stop(&mut events_rx).await;
    outcome.and(stopped)
}

/// A new database beside the logs of an old one (deleted, or a fresh start on an old
/// state directory): run ids start again at 1, so the old logs move to
/// `logs.before-<time>` rather than mix with new runs' logs.
fn set_aside_old_logs(logs_dir: &std::path::Path) {
    let has_logs = std::fs::read_dir(logs_dir).is_ok_and(|mut d| d.next().is_some());
    if !has_logs {
        return;
    }
    let aside = logs_dir.with_file_name(format!(
        "logs.before-{}",
        Utc::now().format("%Y%m%dT%H%M%S")
    ));
    match std::fs::rename(logs_dir, &aside) {
        Ok(()) => tracing::warn!(
            "the state database is new but {} holds run logs: moved them to {} so no two runs' logs mix",
            logs_dir.display(),
            aside.display()
        ),
        Err(e) => tracing::error!("cannot move the old run logs out of {}: {e}", logs_dir.display()),
    }
}

struct Engine {
    store: Store,
    ctx: Arc<RunContext>,
    applied: Applied,
    timer: Timer,
    /// The timing fingerprint each armed schedule was planned for.
    fingerprints: HashMap<Key, String>,
    /// Attempts in flight: how to stop each, and the commit it runs (its checkout is kept).
    running: HashMap<i64, policy::InFlight>,
    /// Per deployment, `Pending` runs waiting for a place, oldest slot first.
    queues: HashMap<String, Vec<(DateTime<Utc>, i64)>>,
    /// `AwaitingRetry` runs by the time they may start.
    retries: BinaryHeap<Reverse<(DateTime<Utc>, i64)>>,
    /// Rows a dead daemon left, settled once the first commit is applied.
    recovered: recover::Recovered,
    retention: Retention,
    last_retention: Option<Instant>,
    /// Set when the graceful stop began: nothing new starts.
    stopping: bool,
    /// When the last tick ran (the clock watch, log caps and retention run in ticks).
    ticked_at: Instant,
    /// Run ends that could not be recorded (disk full), recorded again every turn.
    deferred_events: Vec<RunEvent>,
    /// A commit that could not be recorded (disk full), applied again every turn.
    deferred_sync: Option<Box<Synced>>,
    events: mpsc::UnboundedSender<RunEvent>,
    status_tx: watch::Sender<Status>,
    status: Status,
    clock: ClockWatch,
    lifecycle: Box<dyn Lifecycle>,
}

impl Engine {
    /// When to wake next: the earliest due slot, but never later than [`MAX_SLEEP`] (or
    /// the lifecycle's own limit, e.g. half the systemd watchdog interval).
    fn deadline(&mut self, now: DateTime<Utc>) -> tokio::time::Instant {
        // The tick's own work (the clock watch, log caps, retention) is due a fixed time
        // after the last tick, however often other events (polls, requests) wake the loop.
        let mut every = MAX_SLEEP;
        if !self.running.is_empty() {
            every = every.min(retention::LOG_CHECK_EVERY);
        }
        let mut cap = every.saturating_sub(self.ticked_at.elapsed());
        if let Some(limit) = self.lifecycle.max_sleep() {
            cap = cap.min(limit);
        }
        // Retries wait for the first applied commit (they need their deployment).
        let retry = self
            .retries
            .peek()
            .filter(|_| self.recovered.is_settled())
            .map(|Reverse((at, _))| *at);
        let armed = self
            .timer
            .earliest()
            .map(|at| at - chrono::Duration::from_std(ARM_AHEAD).unwrap_or_default());
        let earliest = match (armed, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = match earliest {
            Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(cap),
            None => cap,
        };
        tokio::time::Instant::now() + wait
    }

    /// After each turn: a full disk is reported in the status (and cleared once writes
    /// succeed again) and the loop goes on; any other store error is returned (fatal).
    fn settle_turn(&mut self, turn: Result<(), StoreError>) -> Result<(), StoreError> {
        match turn {
            Ok(()) => {
                let waiting = !self.deferred_events.is_empty() || self.deferred_sync.is_some();
                if self.status.store_error.is_some() && !waiting {
                    tracing::info!("the state database is writable again");
                    self.status.store_error = None;
                    self.publish();
                }
                Ok(())
            }
            Err(e) if e.is_disk_full() => {
                if self.status.store_error.is_none() {
                    tracing::error!(
                        "the disk of the state directory is full: {}; slots and run ends wait until it can be written",
                        error_chain(&e)
                    );
                    self.status.store_error = Some(format!(
                        "the disk of {} is full: new slots wait (and follow the catch-up rule once recorded), run ends are recorded when space returns; free some space",
                        self.ctx.logs_dir.with_file_name("state.db").display()
                    ));
                    self.publish();
                }
                Ok(())
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Retries what a full disk held back: run ends, then a commit.
    fn retry_deferred(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for event in std::mem::take(&mut self.deferred_events) {
            self.on_event(event, now)?;
        }
        if let Some(synced) = self.deferred_sync.take() {
            self.on_sync(SyncMessage::Synced(synced), now)?;
        }
        Ok(())
    }

    /// Handles every schedule that is due at `now`.
    fn tick(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.ticked_at = Instant::now();
        self.store.check_file()?;
        self.retry_deferred(now)?;
        match self.clock.observe(now, Instant::now()) {
            Some(Jump::Forward(by)) => tracing::warn!("the wall clock jumped forward by {by:?} (suspend or clock step); slots passed over follow each deployment's catch-up policy"),
            Some(Jump::Backward(by)) => {
                let resume = now + chrono::Duration::from_std(by).unwrap_or_default();
                let warning = format!(
                    "the wall clock was stepped back by {by:?} at {}: slots already handled do not fire again, so schedules resume at about {}",
                    time(Some(now)),
                    time(Some(resume))
                );
                tracing::warn!("{warning}");
                self.status.clock_warning = Some((warning, resume));
                self.publish();
            }
            None => {}
        }
        if self
            .status
            .clock_warning
            .as_ref()
            .is_some_and(|(_, resume)| now >= *resume)
        {
            self.status.clock_warning = None;
            self.publish();
        }
        let horizon = now + chrono::Duration::from_std(ARM_AHEAD).unwrap_or_default();
        let due = self.timer.pop_due(horizon);
        let mut full = None;
        for key in &due {
            match self.handle_due(key, now) {
                Ok(()) => {}
                // Not claimed: tried again in a second, then due or missed by the rule.
                Err(e) if e.is_disk_full() => {
                    self.timer
                        .set(key.clone(), Some(now + chrono::Duration::seconds(1)));
                    full = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = full {
            return Err(e);
        }
        self.due_retries(now)?;
        self.cap_logs();
        self.maybe_prune(now)?;
        // Views change only when a schedule's next fire moved; most wake-ups (log checks,
        // retries, the clock watch) leave them as they were.
        if !due.is_empty() {
            self.publish();
        }
        Ok(())
    }

    /// Settles every slot of `key` between its cursor and `now` (run or recorded), then
    /// arms the timer for its next fire. A schedule seen for the first time, or whose
    /// timing changed since its cursor was planned, is planned from the arm horizon: no
    /// slot before the commit that brought it is due, and no slot already armed under
    /// another identity is claimed twice.
    fn handle_due(&mut self, key: &Key, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some((deployment, commit)) = self.applied.deployment(&key.0) else {
            return Ok(());
        };
        let Some(planned) = deployment.schedules.iter().find(|s| s.id == key.1) else {
            return Ok(());
        };
        let (deployment, commit, planned) =
            (deployment.clone(), commit.to_string(), planned.clone());
        let name = shown(&key.0);
        let horizon = now + chrono::Duration::from_std(ARM_AHEAD).unwrap_or_default();
        let cursor = match self.store.cursor(&key.0, &key.1)? {
            // A cursor from before fingerprints were kept adopts the current timing.
            Some(c) if c.fingerprint == planned.fingerprint || c.fingerprint.is_empty() => {
                c.last_slot
            }
            found => {
                if found.is_some() {
                    tracing::info!(
                        "{name}: schedule {} changed its timing; planned anew from now",
                        key.1
                    );
                }
                self.store
                    .set_cursor(&key.0, &key.1, horizon, &planned.fingerprint)?;
                horizon
            }
        };
        self.fingerprints
            .insert(key.clone(), planned.fingerprint.clone());
        let (due, dropped) = due_slots(&planned.schedule, cursor, horizon);
        let mut parameters: Map<String, Json> = deployment.parameters.clone();
        parameters.extend(planned.parameters.clone());
        let parameters = Json::Object(parameters);
        let inactive = deployment.paused || !planned.active;
        let mut rows = Vec::new();
        if let Some(d) = dropped {
            // Nothing vanishes: slots beyond the per-schedule limit are one summary row.
            tracing::warn!(
                "{name}: {} slots from {} to {} were missed; recorded as one Skipped row",
                d.count,
                time(Some(d.first)),
                time(Some(d.last))
            );
            rows.push(NewRun {
                deployment: key.0.clone(),
                schedule_id: Some(key.1.clone()),
                scheduled_for: Some(d.first),
                trigger: Trigger::Schedule,
                state: RunState::Skipped,
                reason: Some(format!(
                    "missed: {} slots from {} to {}, recorded as this one row",
                    d.count,
                    time(Some(d.first)),
                    time(Some(d.last))
                )),
                attempt: 1,
                commit: commit.clone(),
                parameters: parameters.clone(),
                started_at: None,
                not_before: None,
            });
        }
        let mut admitted = 0;
        for (at, action) in decide(&due, now, deployment.catchup, deployment.late_grace) {
            let (trigger, state, reason, started_at) = match action {
                Action::Skip => (Trigger::Schedule, RunState::Skipped, Some("missed"), None),
                Action::Run { .. } if inactive => {
                    (Trigger::Schedule, RunState::Skipped, Some("inactive"), None)
                }
                Action::Run { catchup } => {
                    let trigger = if catchup {
                        Trigger::Catchup
                    } else {
                        Trigger::Schedule
                    };
                    match self.admission(&deployment, admitted) {
                        policy::Admission::Start => {
                            admitted += 1;
                            (trigger, RunState::Running, None, Some(now))
                        }
                        policy::Admission::Queue => (trigger, RunState::Pending, None, None),
                        policy::Admission::Refuse => {
                            (trigger, RunState::Cancelled, Some("overlap"), None)
                        }
                    }
                }
            };
            rows.push(NewRun {
                deployment: key.0.clone(),
                schedule_id: Some(key.1.clone()),
                scheduled_for: Some(at),
                trigger,
                state,
                reason: reason.map(str::to_string),
                attempt: 1,
                commit: commit.clone(),
                parameters: parameters.clone(),
                started_at,
                not_before: None,
            });
        }
        if let Some(last) = due.last() {
            let cursor = SlotCursor {
                deployment: &key.0,
                schedule_id: &key.1,
                last_slot: *last,
                fingerprint: &planned.fingerprint,
            };
            let ids = self.store.claim_slots(&rows, Some(cursor), now)?;
            for (row, id) in rows.iter().zip(ids) {
                match (id, row.state) {
                    (Some(id), RunState::Running) => self.start(id, &deployment, &commit, row),
                    (Some(id), RunState::Pending) => {
                        tracing::info!("{name}: run {id} waits for a place (concurrency limit)");
                        self.enqueue(&key.0, id, row.scheduled_for.unwrap_or(now));
                    }
                    (Some(_), _) => tracing::info!(
                        "{name}: slot {} recorded Skipped ({})",
                        time(row.scheduled_for),
                        row.reason.as_deref().unwrap_or("")
                    ),
                    (None, _) => {
                        tracing::debug!("{name}: slot {} already handled", time(row.scheduled_for))
                    }
                }
            }
        }
        self.timer.set(
            key.clone(),
            planned.schedule.next_after(horizon).map(|f| f.at),
        );
        Ok(())
    }

    fn on_event(&mut self, event: RunEvent, now: DateTime<Utc>) -> Result<(), StoreError> {
        match event {
            // Informational: lost (not retried) when the disk is full.
            RunEvent::Began { id, at } => ignore_full(self.store.set_started_at(id, at)),
            RunEvent::Spawned { id, pid } => ignore_full(self.store.set_pid(id, pid)),
            RunEvent::Finished {
                id,
                state,
                exit_code,
                ref reason,
            } => {
                // The log is final before the run is reported final. The end is recorded
                // before anything else changes: when the disk is full, the event waits and
                // the run keeps its place until it is.
                self.cap_log(id);
                if let Err(e) = self
                    .store
                    .finish_run(id, state, exit_code, reason.as_deref(), now)
                {
                    if e.is_disk_full() {
                        self.deferred_events.push(event);
                    }
                    return Err(e);
                }
                let flight = self.running.remove(&id);
                let name = flight.as_ref().map(|f| shown(&f.deployment).into_owned());
                let outcome = match (exit_code, reason.as_deref()) {
                    (_, Some(reason)) => format!(" ({reason})"),
                    (Some(code), None) if code != 0 => format!(" (exit code {code})"),
                    _ => String::new(),
                };
                let line = format!(
                    "{}: run {id} {}{outcome}",
                    name.as_deref().unwrap_or("?"),
                    state.as_str()
                );
                // What went wrong is a warning, so `journalctl -p warning` shows it.
                if state.may_retry() {
                    tracing::warn!("{line}");
                } else {
                    tracing::info!("{line}");
                }
                // Stopping: the retry stays owed in the store, decided at the next start.
                if self.stopping {
                    return Ok(());
                }
                let cancelled = flight.as_ref().is_some_and(|f| f.cancel_requested);
                if let Some(ended) = self.store.run(id)? {
                    self.maybe_retry(&ended, cancelled, now)?;
                }
                if let Some(flight) = flight {
                    self.drain_queue(&flight.deployment, now)?;
                }
                Ok(())
            }
        }
    }

    fn on_sync(&mut self, message: SyncMessage, now: DateTime<Utc>) -> Result<(), StoreError> {
        match message {
            SyncMessage::Source(attempt) => {
                self.status.source.record(&attempt, now);
                self.publish();
                Ok(())
            }
            SyncMessage::Synced(synced) => {
                let applied = self.apply(&synced, now);
                if applied.as_ref().is_err_and(StoreError::is_disk_full) {
                    self.deferred_sync = Some(synced);
                }
                applied
            }
        }
    }

    /// Applies a validated commit: reconcile per file against the last-known-good state,
    /// record it, and re-plan the schedules that appeared or disappeared.
    fn apply(&mut self, synced: &Synced, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.applied.files.is_empty() {
            for seed in &synced.seeds {
                if let Some(deployments) = &seed.outcome.deployments {
                    let file = AppliedFile {
                        commit: seed.commit.clone(),
                        deployments: deployments.clone(),
                        held_back: true,
                    };
                    self.applied
                        .files
                        .insert(seed.outcome.repo_path.clone(), file);
                }
            }
        }
        let (next, plan) = reconcile(&self.applied, &synced.head, &synced.outcomes);
        let short = attempt::short(&synced.head).to_string();
        let held = if plan.held_back.is_empty() {
            String::new()
        } else {
            format!(
                "; kept at their last good version: {}",
                plan.held_back.join(", ")
            )
        };
        if self.recovered.is_settled() {
            tracing::info!(
                "applied commit {short} ({}): {}, {}, {}{held}",
                synced.summary,
                listed("added", &plan.added),
                listed("changed", &plan.changed),
                listed("removed", &plan.removed),
            );
        } else {
            // The first commit since the start: everything is loaded, nothing "added".
            let count = plan.added.len() + plan.changed.len();
            tracing::info!(
                "loaded commit {short} ({}): {count} deployment{}{held}",
                synced.summary,
                if count == 1 { "" } else { "s" }
            );
        }
        let findings = |errors: bool| -> Vec<FileError> {
            synced
                .outcomes
                .iter()
                .flat_map(|o| o.diagnostics.iter())
                .filter(|d| d.is_error() == errors)
                .map(file_error)
                .collect()
        };
        let (errors, warnings) = (findings(true), findings(false));
        for e in &errors {
            tracing::error!("{}:{}:{}: {}", e.file, e.line, e.column, e.message);
        }
        for w in &warnings {
            tracing::warn!("{}:{}:{}: {}", w.file, w.line, w.column, w.message);
        }
        let good: Vec<String> = synced
            .outcomes
            .iter()
            .filter(|o| o.is_valid())
            .map(|o| o.repo_path.clone())
            .collect();
        let commit = AppliedCommit {
            sha: synced.head.clone(),
            applied_at: now,
            summary: synced.summary.clone(),
            errors: errors.clone(),
            warnings: warnings.clone(),
        };
        self.store.record_commit(&commit, &good)?;
        for gone in self
            .applied
            .files
            .keys()
            .filter(|p| !synced.outcomes.iter().any(|o| &o.repo_path == *p))
        {
            self.store.forget_file(gone)?;
        }
        self.applied = next;

        let wanted: BTreeSet<Key> = self
            .applied
            .deployments()
            .flat_map(|(d, _)| {
                d.schedules
                    .iter()
                    .map(move |s| (d.name.clone(), s.id.clone()))
            })
            .collect();
        let stale: Vec<Key> = self
            .timer
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            tracing::info!("{}: schedule {} unscheduled", shown(&key.0), key.1);
            self.fingerprints.remove(&key);
            self.timer.set(key, None);
        }
        // A schedule that left the branch forgets its cursor: if it comes back, it is
        // planned from then and does not catch up the time it was gone.
        for (deployment, schedule) in self.store.forget_cursors_except(&wanted)? {
            tracing::debug!(
                "{}: forgot the cursor of schedule {schedule}",
                shown(&deployment)
            );
        }
        self.prepare_checkouts();
        // Runs that already wait go first: recovered retries are decided, queued runs
        // start in slot order, then new slots line up behind them.
        self.settle_recovered(now)?;
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.drain_queue(&name, now)?;
        }
        for key in &wanted {
            let planned_for = self.applied.deployment(&key.0).and_then(|(d, _)| {
                d.schedules
                    .iter()
                    .find(|s| s.id == key.1)
                    .map(|s| s.fingerprint.clone())
            });
            let changed = self.fingerprints.get(key) != planned_for.as_ref();
            if changed || self.timer.next_of(key).is_none() {
                self.handle_due(key, now)?;
            }
        }
        self.due_retries(now)?;
        self.status.ready = true;
        self.status.commit = Some(synced.head.clone());
        self.status.synced_at = Some(now);
        self.status.errors = errors;
        self.status.warnings = warnings;
        self.publish();
        Ok(())
    }

    /// Creates the checkouts of the commits in force ahead of their first run (so a slot
    /// does not wait for one) and removes those nothing needs any more.
    fn prepare_checkouts(&self) {
        let mut keep: std::collections::HashSet<String> =
            self.applied.commits().into_iter().collect();
        keep.extend(self.running.values().map(|f| f.commit.clone()));
        let ctx = Arc::clone(&self.ctx);
        tokio::task::spawn_blocking(move || {
            let repo = match crate::source::Repo::open(&ctx.source) {
                Ok(repo) => repo,
                Err(e) => return tracing::warn!("cannot prepare checkouts: {}", error_chain(&e)),
            };
            for commit in &keep {
                if let Err(e) = ctx.checkouts.ensure(&repo, commit) {
                    tracing::warn!(
                        "cannot check out {}: {}",
                        attempt::short(commit),
                        error_chain(&e)
                    );
                }
            }
            if let Err(e) = ctx.checkouts.prune(&keep) {
                tracing::warn!("cannot prune checkouts: {}", error_chain(&e));
            }
        });
    }

    /// The graceful stop: no new starts; every running process group gets SIGTERM, then
    /// SIGKILL after the grace period; every end is recorded.
    async fn stop(
        mut self,
        events: &mut mpsc::UnboundedReceiver<RunEvent>,
    ) -> Result<(), StoreError> {
        self.stopping = true;
        tracing::info!(
            "stopping: {} running process(es) get SIGTERM, SIGKILL after {:?}",
            self.running.len(),
            self.ctx.grace
        );
        for flight in self.running.values() {
            let _ = flight.stop.send(Some(StopRequest::Shutdown));
        }
        // Each attempt gets the grace for its group, then again for what escaped it.
        let deadline = tokio::time::Instant::now() + self.ctx.grace * 2 + Duration::from_secs(5);
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => self.on_event(event, Utc::now())?,
                Ok(None) | Err(_) => break,
            }
        }
        let left: Vec<i64> = self.running.keys().copied().collect();
        for id in left {
            self.store.finish_run(
                id,
                RunState::Crashed,
                None,
                Some("did not stop within the grace period"),
                Utc::now(),
            )?;
        }
        Ok(())
    }

    fn publish(&mut self) {
        let deployments = self
            .applied
            .files
            .values()
            .flat_map(|f| f.deployments.iter().map(move |d| (d, f)))
            .map(|(d, f)| DeploymentView {
                name: d.name.clone(),
                file: d.file.clone(),
                commit: f.commit.clone(),
                description: d.description.clone(),
                tags: d.tags.clone(),
                paused: d.paused,
                held_back: f.held_back,
                schedules: d
                    .schedules
                    .iter()
                    .map(|s| ScheduleView {
                        id: s.id.clone(),
                        description: s.description.clone(),
                        timezone: s.schedule.timezone().to_string(),
                        active: s.active,
                        next: self.timer.next_of(&(d.name.clone(), s.id.clone())),
                    })
                    .collect(),
            })
            .collect();
        self.status.deployments = deployments;
        self.status_tx.send_replace(self.status.clone());
    }
}

fn file_error(d: &Diagnostic) -> FileError {
    FileError {
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        message: d.message_with_help(),
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(crate::store::time_text)
        .unwrap_or_else(|| "-".into())
}

/// `2 added (a, b)` / `none added`, for the applied-commit line.
fn listed(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("none {what}");
    }
    let names: Vec<_> = names.iter().map(|n| shown(n)).collect();
    format!("{} {what} ({})", names.len(), names.join(", "))
}

/// A store write whose loss is harmless when the disk is full; other errors stay errors.
fn ignore_full(written: Result<(), StoreError>) -> Result<(), StoreError> {
    match written {
        Err(e) if e.is_disk_full() => {
            tracing::debug!("not recorded (disk full): {}", error_chain(&e));
            Ok(())
        }
        other => other,
    }
}

/// A deployment name as it appears in the daemon's log: control characters (a newline in
/// a name could forge log lines) are escaped.
pub fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string().into()
    } else {
        name.into()
    }
}

/// An error with its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
