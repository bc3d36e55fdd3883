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

mod apply;
mod arm;
pub mod attempt;
mod batch;
mod burst;
mod dispatch;
mod due;
mod events;
mod faults;
mod notices;
mod policy;
mod pull;
mod recover;
pub mod request;
mod reread;
mod retention;
mod role;
mod sla;
pub mod status;
pub mod sync;
mod views;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::reconcile::Applied;
use crate::runner::contain;
use crate::runner::process::StopRequest;
use crate::scheduler::{ClockWatch, Key, Timer};
use crate::source::{Checkouts, SourceConfig};
use crate::store::{RunState, StoreError, StoreSpec, StoreWrite};

pub use arm::{arm_lead, ARM_AHEAD, ARM_MOST, ARM_PER_SLOT};
use attempt::{RunContext, RunEvent};
use faults::set_aside_old_logs;
pub use request::{CancelError, Lifecycle, NoLifecycle, Request, ResumeError, TriggerError};
use status::Status;
use sync::Synced;

/// The longest the loop sleeps without looking at the wall clock.
/// Five seconds: a stepped clock shows in the status within that, for a wake-up that costs
/// microseconds.
pub const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How often a node of a cluster ticks, whatever else wakes it: it claims dispatched runs,
/// and the leader settles lost nodes and decides retries owed.
const CLUSTER_TICK: Duration = Duration::from_secs(1);

/// The most run events handled in one loop turn (the rest wait for the next turn, so a
/// burst of ends never holds back a due slot for long).
const EVENTS_PER_TURN: usize = 256;

pub struct EngineConfig {
    pub source: SourceConfig,
    pub state_dir: PathBuf,
    /// Where the store is (`<state-dir>/state.db` unless `--store` says otherwise).
    pub store: StoreSpec,
    pub poll_interval: Duration,
    /// SIGTERM → SIGKILL grace for runs (timeouts, cancels, the graceful stop).
    pub grace: Duration,
    pub retention: retention::Retention,
    /// Which files of the commit are manifests.
    pub discovery: crate::manifest::discover::Discovery,
    /// The dashboard's address as notifications link to it, without a trailing slash.
    pub public_url: String,
    /// This daemon's node in a cluster: set with a PostgreSQL store.
    pub cluster: Option<crate::cluster::ClusterConfig>,
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
    let mut store = config.store.open_writer()?;
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
            "cannot read or create {}: {e}; check that --state-dir is writable by the daemon's user",
            config.state_dir.join("instance").display()
        ))
    })?;
    let (cluster, mut lease_rx, mut notices_rx) =
        match join_cluster(&config, &mut *store, &instance, &logs_dir)? {
            Some((cluster, rx, notices)) => (Some(cluster), Some(rx), Some(notices)),
            None => (None, None, None),
        };
    let ctx = Arc::new(RunContext {
        source: config.source.clone(),
        checkouts: Checkouts::new(config.state_dir.join("checkouts")),
        logs_dir,
        grace: config.grace,
        sweeper: contain::Sweeper::start(instance.clone()),
        instance,
        lease: cluster.as_ref().map(|c| Arc::clone(&c.liveness)),
        node: cluster.as_ref().map(|c| c.config.node.clone()),
    });
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (deliveries_tx, mut deliveries_rx) = mpsc::unbounded_channel();
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
        public_url: config.public_url.trim_end_matches('/').to_string(),
        next_notice: None,
        delivering: Default::default(),
        deliveries: deliveries_tx,
        pauses: HashMap::new(),
        batch: None,
        ended_since_release: 0,
        published: Default::default(),
        cursors_swept: false,
        to_plan: Default::default(),
        cluster,
        store_name: config.store.describe(),
        arm: arm::ArmLead::default(),
        armed_until: None,
        active: Default::default(),
        held: Default::default(),
        logs_checked_at: None,
    };
    for pause in engine.store.pauses()? {
        engine.pauses.insert(pause.deployment.clone(), pause);
    }
    engine.status.notifications = engine.store.outbox_counts()?;
    engine.next_notice = engine.store.next_notice_at()?;
    engine.recover(Utc::now()).await?;
    let (sync_tx, mut sync_rx) = mpsc::channel(4);
    let (force_tx, force_rx) = mpsc::channel(1);
    tokio::spawn(sync::run(
        config.source.clone(),
        config.discovery.clone(),
        config.store.clone(),
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
            Some(event) = events_rx.recv() => {
                // What else has arrived is handled with it (a burst of starts and ends).
                let mut events = vec![event];
                while events.len() < EVENTS_PER_TURN {
                    let Ok(event) = events_rx.try_recv() else { break };
                    events.push(event);
                }
                engine.on_arrived(events, Utc::now())
            }
            () = tokio::time::sleep_until(deadline) => engine.tick(Utc::now()),
            Some(message) = sync_rx.recv() => {
                let applied = engine.on_sync(message, Utc::now());
                engine.lifecycle.synced(&engine.status);
                applied
            }
            Some(request) = requests.recv() => engine.on_request(request, &force_tx, Utc::now()),
            Some(done) = deliveries_rx.recv() => engine.on_delivered(done, Utc::now()),
            Some(()) = lease_changed(&mut lease_rx) => engine.follow_lease(Utc::now()),
            Some(channel) = notice(&mut notices_rx) => engine.on_notice(channel, Utc::now()),
            // Whether a burst's launches are over, while bookkeeping waits for them.
            () = tokio::time::sleep(burst::LOOK_EVERY), if !engine.held.is_empty() => Ok(()),
        };
        // A lapsed lease stops scheduling before anything else; what the turn changed
        // is noticed then (both wait while a burst is launched).
        let turn = turn
            .and_then(|()| engine.follow_lease(Utc::now()))
            .and_then(|()| engine.release_held(Utc::now(), false))
            .and_then(|()| engine.notice(Utc::now()));
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

struct Engine {
    store: Box<dyn StoreWrite>,
    ctx: Arc<RunContext>,
    applied: Applied,
    timer: Timer,
    /// The timing fingerprint each armed schedule was planned for.
    fingerprints: HashMap<Key, Arc<str>>,
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
    /// The dashboard's address, for the links in notifications.
    public_url: String,
    /// When the next waiting delivery is due.
    next_notice: Option<DateTime<Utc>>,
    /// The targets of the deliveries under way (one at a time each).
    delivering: std::collections::HashSet<crate::notify::Target>,
    deliveries: mpsc::UnboundedSender<notices::Delivered>,
    /// Deployments paused at run time (`pause_after_failures`), until resumed.
    pauses: HashMap<String, crate::store::Pause>,
    /// The claims being written as one transaction, when a batch is open.
    batch: Option<batch::Batch>,
    /// Runs ended since the heap's free pages were last given back (after a burst).
    ended_since_release: usize,
    /// What publishing the status keeps between two publications.
    published: views::Published,
    /// This node's side of a cluster (a PostgreSQL store), or `None` alone.
    cluster: Option<role::Cluster>,
    /// How far ahead slots are armed, following how long commits take.
    arm: arm::ArmLead,
    /// The furthest horizon a tick has armed slots up to: a schedule planned anew (a new
    /// identity) starts after it, so a slot claimed ahead under the old one is not
    /// claimed again under the new one.
    armed_until: Option<DateTime<Utc>>,
    /// In a cluster, the leader's count of dispatched or running runs per deployment, on
    /// every node.
    active: dispatch::Active,
    /// What waits while a burst is launched ([`burst`]).
    held: burst::Held,
    /// When the running runs' log sizes were last checked.
    logs_checked_at: Option<Instant>,
    /// The store in words (its file, or its database without the password).
    store_name: String,
    /// Every stored cursor was compared with the schedules in force since the start.
    cursors_swept: bool,
    /// Schedules an applied commit added or changed, until they are planned.
    to_plan: std::collections::BTreeSet<Key>,
    events: mpsc::UnboundedSender<RunEvent>,
    status_tx: watch::Sender<Status>,
    status: Status,
    clock: ClockWatch,
    lifecycle: Box<dyn Lifecycle>,
}

impl Engine {
    /// How far ahead the earliest due slots are armed now ([`arm::ArmLead`]).
    fn arm_lead(&mut self) -> Duration {
        self.arm
            .lead(std::time::Instant::now(), self.timer.earliest_crowd())
    }

    /// When to wake next: the earliest due slot, but never later than [`MAX_SLEEP`] (or
    /// the lifecycle's own limit, e.g. half the systemd watchdog interval).
    fn deadline(&mut self, now: DateTime<Utc>) -> tokio::time::Instant {
        // The tick's own work (the clock watch, log caps, retention) is due a fixed time
        // after the last tick, however often other events (polls, requests) wake the loop.
        let mut every = MAX_SLEEP;
        if !self.running.is_empty() {
            every = every.min(retention::LOG_CHECK_EVERY);
        }
        // In a cluster every node claims, and the leader sweeps, at least once a second
        // (a notification may be lost).
        if self.cluster.is_some() {
            every = every.min(CLUSTER_TICK);
        }
        let mut cap = every.saturating_sub(self.ticked_at.elapsed());
        if let Some(limit) = self.lifecycle.max_sleep() {
            cap = cap.min(limit);
        }
        // A leader wakes when its leadership would lapse, and stops scheduling then.
        if let Some(cluster) = self.cluster.as_ref().filter(|c| c.led.is_some()) {
            cap = cap.min(cluster.liveness.remaining().unwrap_or_default());
        }
        // Retries wait for the first applied commit (they need their deployment).
        let retry = self
            .retries
            .peek()
            .filter(|_| self.recovered.is_settled())
            .map(|Reverse((at, _))| *at);
        let lead = self.arm_lead();
        let armed = self
            .timer
            .earliest()
            .map(|at| at - chrono::Duration::from_std(lead).unwrap_or_default());
        let earliest = [armed, retry, self.next_notice].into_iter().flatten().min();
        let wait = match earliest {
            Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(cap),
            None => cap,
        };
        tokio::time::Instant::now() + wait
    }

    /// The graceful stop: no new starts; every running process group gets SIGTERM, then
    /// SIGKILL after the grace period; every end is recorded.
    async fn stop(
        mut self,
        events: &mut mpsc::UnboundedReceiver<RunEvent>,
    ) -> Result<(), StoreError> {
        self.stopping = true;
        // A standby takes over at once; this node's runs are still its own to end.
        if let Some(cluster) = &self.cluster {
            cluster.keeper.release(Duration::from_secs(2));
            self.store.fence(None);
        }
        tracing::info!(
            "stopping: {} running process(es) get SIGTERM, SIGKILL after {:?}",
            self.running.len(),
            self.ctx.grace
        );
        for flight in self.running.values() {
            let _ = flight.stop.send(Some(StopRequest::Shutdown));
        }
        // Each attempt gets the grace for its group, then again for what escaped it. An
        // end that cannot be recorded does not cut the others' grace short: the next
        // start's recovery settles what was not recorded.
        let deadline = tokio::time::Instant::now() + self.ctx.grace * 2 + Duration::from_secs(5);
        let mut failed: Option<StoreError> = None;
        // What a burst held back comes first, in order.
        if let Err(e) = self.release_held(Utc::now(), true) {
            tracing::error!(
                "stopping: run events were not recorded: {}",
                error_chain(&e)
            );
            failed = Some(e);
        }
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => {
                    let ended = match &event {
                        RunEvent::Finished { id, .. } => Some(*id),
                        _ => None,
                    };
                    if let Err(e) = self.on_event(event, Utc::now()) {
                        tracing::error!(
                            "stopping: a run's end was not recorded: {}",
                            error_chain(&e)
                        );
                        if let Some(id) = ended {
                            self.running.remove(&id);
                        }
                        failed = failed.or(Some(e));
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let left: Vec<i64> = self.running.keys().copied().collect();
        for id in left {
            let recorded = self.store.finish_run(
                id,
                RunState::Crashed,
                None,
                Some("did not stop within the grace period"),
                Utc::now(),
            );
            if let Err(e) = recorded {
                failed = failed.or(Some(e));
            }
        }
        // A store that cannot be reached now is not broken: the stop is clean.
        match failed {
            Some(e) if !e.is_transient() => Err(e),
            _ => Ok(()),
        }
    }
}

/// A node's side of a cluster, with the keeper's view and the other nodes' notifications.
type Joined = (
    role::Cluster,
    watch::Receiver<crate::cluster::LeaseView>,
    mpsc::UnboundedReceiver<&'static str>,
);

/// Joins the cluster when the store is PostgreSQL: registers the node, starts the keeper
/// and the listener.
/// The engine starts standing by; the keeper's first round makes it lead if no other
/// node does.
fn join_cluster(
    config: &EngineConfig,
    store: &mut dyn StoreWrite,
    instance: &str,
    logs_dir: &std::path::Path,
) -> Result<Option<Joined>, StoreError> {
    let (Some(cluster), StoreSpec::Postgres(target)) = (&config.cluster, &config.store) else {
        return Ok(None);
    };
    let lease = crate::store::pg::lease::LeaseStore::new(target);
    let timings = cluster.timings;
    let joining = crate::store::pg::lease::Joining {
        node: cluster.node.clone(),
        instance: instance.to_string(),
        url: cluster.url.clone(),
        capacity: cluster.capacity as i64,
        labels: crate::cluster::labels::text(&cluster.labels),
    };
    let incarnation = match lease.join(&joining, timings.node_lost)? {
        Ok(incarnation) => incarnation,
        Err(seconds) => {
            return Err(StoreError::NodeInUse {
                node: cluster.node.clone(),
                seconds,
            })
        }
    };
    store.join_cluster(&cluster.node);
    let liveness = Arc::new(crate::cluster::Liveness::default());
    let (view_tx, view_rx) = watch::channel(crate::cluster::LeaseView::default());
    let keeper = crate::cluster::Keeper::start(
        lease,
        cluster.node.clone(),
        incarnation,
        timings,
        Arc::clone(&liveness),
        view_tx,
        end_own_runs(instance.to_string(), logs_dir.to_path_buf(), config.grace),
    )
    .map_err(|e| StoreError::Corrupt(format!("cannot start the lease keeper's thread: {e}")))?;
    let (notices_tx, notices_rx) = mpsc::unbounded_channel();
    crate::store::pg::listen::start(Arc::clone(target), notices_tx).map_err(|e| {
        StoreError::Corrupt(format!("cannot start the cluster's listener thread: {e}"))
    })?;
    let labelled = match joining.labels.as_str() {
        "" => String::new(),
        labels => format!(", labelled {labels}"),
    };
    tracing::info!(
        "node {} (incarnation {incarnation}) joined the cluster on {}, running at most {} runs at once{labelled}",
        cluster.node,
        target.what,
        cluster.capacity
    );
    let side = role::Cluster {
        config: cluster.clone(),
        holder: format!("{}/{incarnation}", cluster.node),
        liveness,
        view: view_rx.clone(),
        keeper,
        led: None,
        synced: None,
    };
    Ok(Some((side, view_rx, notices_rx)))
}

/// What a node that lost the database does with its jobs (on the keeper's thread, which
/// needs no engine): SIGTERM to every process of its runs, SIGKILL after the grace (at
/// most 5 s), each run's log saying why. Their ends are recorded when the database
/// answers again, unless the leader settled them as lost first.
fn end_own_runs(
    instance: String,
    logs_dir: PathBuf,
    grace: Duration,
) -> crate::cluster::keeper::OnLost {
    Box::new(move || {
        let processes = contain::scan(&instance);
        for p in &processes {
            let _ = crate::runner::append_log_line(
                &attempt::log_path(&logs_dir, p.run_id),
                "# sundial: this node lost the database: its jobs are ended before the leader settles them as lost and retries them",
            );
        }
        contain::end_blocking(&processes, grace.min(Duration::from_secs(5)));
    })
}

/// The next notification from the other nodes of the cluster; never, alone.
async fn notice(rx: &mut Option<mpsc::UnboundedReceiver<&'static str>>) -> Option<&'static str> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next change of the cluster's view; never, alone.
async fn lease_changed(rx: &mut Option<watch::Receiver<crate::cluster::LeaseView>>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(crate::store::time_text)
        .unwrap_or_else(|| "-".into())
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
