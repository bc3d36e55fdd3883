//! The keeper: a thread that keeps this node's lease and heartbeat, whatever the engine
//! is doing (a long store call, a burst of spawns).
//!
//! Each round, every [`Timings::renew`] (±20 %): take or renew the lease, heartbeat this
//! node, read who leads and which nodes are alive; then publish [`Liveness`] (for the
//! engine and the launch threads) and a [`LeaseView`] (for the engine's wake-up and the
//! status). A renew that fails leaves the leadership to lapse by itself at its deadline.
//! Once it has lapsed, this node can only take the lease again after it expired on the
//! server, at a new epoch.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::pg::lease::{Leader, LeaseStore, NodeRow};

use super::liveness::{boottime_ns, Liveness};
use super::Timings;

/// What the engine and the status see of the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseView {
    /// The epoch this node leads at, if it does.
    pub leads: Option<i64>,
    /// Who holds the lease, as last read.
    pub leader: Option<Leader>,
    /// Every node, and whether it is alive (heartbeat within `node_lost`).
    pub nodes: Vec<(NodeRow, bool)>,
    /// Why the last round failed, while it does.
    pub error: Option<String>,
}

impl LeaseView {
    /// Whether two views differ in what the engine acts on or shows (not in heartbeat
    /// ages, which change every round).
    fn differs(&self, other: &LeaseView) -> bool {
        fn shape(v: &LeaseView) -> Vec<(NodeRow, bool)> {
            v.nodes
                .iter()
                .map(|(n, alive)| {
                    let n = NodeRow {
                        heartbeat_age: 0.0,
                        ..n.clone()
                    };
                    (n, *alive)
                })
                .collect()
        }
        self.leads != other.leads
            || self.leader != other.leader
            || self.error != other.error
            || shape(self) != shape(other)
    }
}

enum Command {
    /// Give the lease up and never take it again; keep heartbeating (the node's runs are
    /// still being ended). The thread ends when the [`Keeper`] is dropped.
    Release(mpsc::Sender<()>),
}

/// The keeper thread's handle.
pub struct Keeper {
    commands: mpsc::Sender<Command>,
}

/// What the keeper does when this node has gone without a heartbeat for
/// [`Timings::stop_own_runs_after`]: end the node's own jobs (once per loss), so that a
/// retry the leader starts elsewhere never runs beside them.
pub type OnLost = Box<dyn FnMut() + Send>;

impl Keeper {
    /// Starts keeping the lease as `node`'s `incarnation`.
    pub fn start(
        store: LeaseStore,
        node: String,
        incarnation: i64,
        timings: Timings,
        liveness: Arc<Liveness>,
        view: watch::Sender<LeaseView>,
        on_lost: OnLost,
    ) -> std::io::Result<Keeper> {
        let (commands, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("sundial-keeper".into())
            .spawn(move || {
                let holder = format!("{node}/{incarnation}");
                let mut keeper = Round {
                    store,
                    node,
                    incarnation,
                    holder,
                    held: 0,
                    timings,
                    liveness,
                    view,
                    jitter: RandomState::new(),
                    rounds: 0,
                    released: false,
                    heartbeat_at: Arc::new(AtomicU64::new(boottime_ns())),
                };
                watch_heartbeat(
                    Arc::clone(&keeper.heartbeat_at),
                    keeper.timings.stop_own_runs_after(),
                    on_lost,
                );
                loop {
                    keeper.round();
                    match inbox.recv_timeout(keeper.pause()) {
                        Ok(Command::Release(done)) => {
                            keeper.release();
                            let _ = done.send(());
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Keeper { commands })
    }

    /// Gives the lease up (if held) for good, waiting at most `limit`.
    pub fn release(&self, limit: Duration) {
        let (done, wait) = mpsc::channel();
        if self.commands.send(Command::Release(done)).is_ok() {
            let _ = wait.recv_timeout(limit);
        }
    }
}

/// The keeper thread's state.
struct Round {
    store: LeaseStore,
    node: String,
    incarnation: i64,
    holder: String,
    /// The epoch this node holds, 0 when none.
    held: i64,
    timings: Timings,
    liveness: Arc<Liveness>,
    view: watch::Sender<LeaseView>,
    jitter: RandomState,
    rounds: u64,
    /// The lease was given up (a graceful stop): it is not taken again.
    released: bool,
    /// When the last successful heartbeat was sent (`CLOCK_BOOTTIME` ns).
    heartbeat_at: Arc<AtomicU64>,
}

/// Runs `on_lost` once per loss, when no heartbeat succeeded for `after`: on a thread of
/// its own, so that a round stuck in a call to an unreachable server does not delay it.
fn watch_heartbeat(heartbeat_at: Arc<AtomicU64>, after: Duration, mut on_lost: OnLost) {
    let watch = move || {
        let mut lost = false;
        loop {
            let last = heartbeat_at.load(Ordering::SeqCst);
            let silent = Duration::from_nanos(boottime_ns().saturating_sub(last));
            if silent <= after {
                lost = false;
            } else if !lost {
                lost = true;
                tracing::error!(
                    "this node has had no heartbeat for {silent:?}: it ends its own jobs before the leader settles them as lost (node_lost) and retries them elsewhere"
                );
                on_lost();
            }
            // The keeper is gone (its handle dropped): nothing to watch.
            if Arc::strong_count(&heartbeat_at) == 1 {
                return;
            }
            std::thread::sleep(WATCH_EVERY);
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("sundial-watch".into())
        .spawn(watch)
    {
        tracing::error!("cannot start the heartbeat watch: {e}; a node cut off from the database does not end its jobs by itself");
    }
}

/// How often the heartbeat watch looks.
const WATCH_EVERY: Duration = Duration::from_millis(100);

impl Round {
    fn round(&mut self) {
        self.rounds += 1;
        // A leadership that lapsed (no renew in time) is over for good: come back only
        // at a new epoch.
        if self.held != 0 && self.liveness.leads() != Some(self.held) {
            tracing::warn!(
                "this node stopped leading (epoch {}): no renew of its lease within {:?}",
                self.held,
                self.timings.demote_after
            );
            self.liveness.lose();
            // Nobody need wait for it to expire on the server.
            let _ = self.store.release(&self.holder, self.held);
            self.held = 0;
        }
        let sent = boottime_ns();
        let mut error = None;
        let taken = if self.released {
            Ok(None)
        } else {
            self.store
                .take_or_renew(&self.holder, self.held, self.timings.lease)
        };
        match taken {
            // A renew answered after this node's leadership lapsed (a slow answer, or the
            // engine stood down): that epoch is over; give the lease up for the next taker.
            Ok(Some(epoch)) if self.held != 0 && self.liveness.leads() != Some(epoch) => {
                tracing::warn!("this node stopped leading (epoch {epoch}) during a renew");
                let _ = self.store.release(&self.holder, epoch);
                self.held = 0;
            }
            Ok(Some(epoch)) => {
                let until = sent + self.timings.demote_after.as_nanos() as u64;
                self.liveness.grant(epoch, until);
                if epoch != self.held {
                    tracing::info!("this node ({}) leads now, at epoch {epoch}", self.node);
                }
                self.held = epoch;
            }
            Ok(None) => {
                if self.held != 0 {
                    tracing::warn!(
                        "this node lost the lease (epoch {}) to another node",
                        self.held
                    );
                    self.held = 0;
                    self.liveness.lose();
                }
            }
            Err(e) => error = Some(crate::engine::error_chain(&e)),
        }
        let beat = boottime_ns();
        match self.store.heartbeat(&self.node, self.incarnation) {
            Ok(true) => {
                self.heartbeat_at.store(beat, Ordering::SeqCst);
                let alive_for = self.timings.stop_own_runs_after().as_nanos() as u64;
                self.liveness.beat(beat + alive_for);
            }
            Ok(false) => {
                error = error.or(Some(format!(
                    "another daemon took over the node name {}; give each daemon its own --node",
                    self.node
                )))
            }
            Err(e) => error = error.or(Some(crate::engine::error_chain(&e))),
        }
        let mut next = LeaseView {
            leads: self.liveness.leads(),
            error,
            ..LeaseView::default()
        };
        match self.store.cluster() {
            Ok((leader, nodes)) => {
                let lost = self.timings.node_lost.as_secs_f64();
                next.leader = leader;
                next.nodes = nodes
                    .into_iter()
                    .map(|n| {
                        let alive = n.heartbeat_age < lost;
                        (n, alive)
                    })
                    .collect();
            }
            Err(e) => {
                next.error = next.error.or(Some(crate::engine::error_chain(&e)));
                // What was known of the others stays shown until it can be read again.
                let last = self.view.borrow();
                next.leader = last.leader.clone();
                next.nodes = last.nodes.clone();
            }
        }
        if next.error.is_some() && self.view.borrow().error.is_none() {
            tracing::error!(
                "cannot keep this node's lease and heartbeat: {}",
                next.error.as_deref().unwrap_or_default()
            );
        }
        self.view.send_if_modified(|shown| {
            let changed = shown.differs(&next);
            *shown = next;
            changed
        });
    }

    /// The pause before the next round: the renew interval, ±20 %.
    fn pause(&self) -> Duration {
        let spread = self.jitter.hash_one(self.rounds) % 401;
        let factor = 0.8 + spread as f64 / 1000.0;
        self.timings.renew.mul_f64(factor)
    }

    fn release(&mut self) {
        self.released = true;
        if self.held == 0 {
            return;
        }
        self.liveness.lose();
        match self.store.release(&self.holder, self.held) {
            Ok(()) => tracing::info!("released the lease (epoch {})", self.held),
            Err(e) => tracing::warn!(
                "could not release the lease (epoch {}): {}; a standby takes over when it expires",
                self.held,
                crate::engine::error_chain(&e)
            ),
        }
        self.held = 0;
    }
}
