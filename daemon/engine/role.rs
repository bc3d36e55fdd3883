//! The engine's role in a cluster (a PostgreSQL store): it leads (schedules) while its
//! node holds the lease, and stands by otherwise. Alone (SQLite) it always leads.
//!
//! - **Standing by**, the engine follows the repository as the leader does (so its API,
//!   dashboard and checkouts are current) but writes nothing of scheduling: no commit
//!   record, no cursor, no slot, no retry decision, no notification. Runs it still has
//!   (from a time it led) go on, and their ends are recorded: those are its node's.
//! - **Promotion** (the keeper took the lease): the store's fence is set to the new epoch,
//!   runs of nodes silent for `node_lost` are settled `Crashed` (`node_lost`) with their
//!   retries owed, the waiting runs are taken over (queues, retry timers), and the newest
//!   commit is applied as at a start: every schedule is planned from its stored cursor,
//!   so the gap since the last leader's slots follows each deployment's catch-up rule.
//! - **Demotion** (the lease lapsed or was taken, or a write came back fenced): the fence
//!   is cleared and everything planned is forgotten (the timer, the queues, the retry
//!   timers); a slot already armed does not start, because its launch checks that the
//!   node still leads at the instant of the spawn.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::cluster::{ClusterConfig, Keeper, LeaseView, Liveness};
use crate::reconcile::Applied;
use crate::scheduler::Timer;
use crate::store::StoreError;

use super::sync::Synced;
use super::Engine;

/// The engine's side of a cluster.
pub(super) struct Cluster {
    pub config: ClusterConfig,
    /// `node/incarnation`: who holds the lease when this node does.
    pub holder: String,
    pub liveness: Arc<Liveness>,
    /// The keeper's last view of the cluster.
    pub view: watch::Receiver<LeaseView>,
    pub keeper: Keeper,
    /// The epoch the engine leads at (its store's fence), while it does.
    pub led: Option<i64>,
    /// The newest commit synced (applied, or followed while standing by): applied again
    /// at each promotion, so that every schedule is planned anew.
    pub synced: Option<Box<Synced>>,
}

impl Engine {
    /// Whether the engine schedules now: alone always; in a cluster, while it leads and
    /// its leadership has not lapsed (checked at once, so a leader that wakes from a
    /// stop or a suspend schedules nothing before it demotes).
    pub(super) fn leads(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.led.is_some() && c.liveness.leads() == c.led)
    }

    /// Follows the keeper: promotes when the node leads at an epoch the engine does not
    /// act on yet, demotes when it no longer leads, and shows the cluster in the status.
    pub(super) fn follow_lease(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let (holds, led) = (cluster.liveness.leads(), cluster.led);
        if holds != led {
            if led.is_some() {
                self.demote("its lease lapsed or was taken over");
            }
            if let Some(epoch) = holds {
                self.promote(epoch, now)?;
            }
        }
        self.show_cluster();
        Ok(())
    }

    /// Becomes the leader at `epoch`.
    fn promote(&mut self, epoch: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(cluster) = &mut self.cluster else {
            return Ok(());
        };
        cluster.led = Some(epoch);
        let (holder, lost_after) = (cluster.holder.clone(), cluster.config.timings.node_lost);
        // The newest commit: one that could not be recorded yet, else the one in force.
        let synced = self.deferred_sync.take().or(cluster.synced.take());
        tracing::info!("this node leads the cluster now (epoch {epoch}): it schedules");
        self.store.fence(Some((holder, epoch)));
        // What runs where is counted before anything is admitted: a limit holds across
        // the takeover.
        let taken_over = self
            .reload_ledger()
            .and_then(|()| self.refresh_active())
            .and_then(|()| self.settle_lost_nodes(lost_after, now))
            .and_then(|()| self.settle_unfinished(&BTreeSet::new(), now))
            .and_then(|()| match &synced {
                // The commit in force, applied as at a start: everything is planned from
                // the stored cursors.
                Some(synced) => {
                    self.applied = Applied::default();
                    self.apply(synced, now)
                }
                None => Ok(()),
            });
        // The commit stays kept (a later promotion plans from it again), unless a newer
        // one came meanwhile.
        if let Some(cluster) = &mut self.cluster {
            cluster.synced = cluster.synced.take().or(synced);
        }
        if let Err(e) = taken_over {
            // Standing by again: the next turn tries again while the node holds the lease.
            self.demote(&format!("taking over failed: {}", super::error_chain(&e)));
            return Err(e);
        }
        self.publish();
        Ok(())
    }

    /// What the previous leader may have changed in the store since this node last read
    /// it: the pauses after failures, the notification outbox.
    fn reload_ledger(&mut self) -> Result<(), StoreError> {
        self.pauses = self
            .store
            .pauses()?
            .into_iter()
            .map(|p| (p.deployment.clone(), p))
            .collect();
        self.status.notifications = self.store.outbox_counts()?;
        self.next_notice = self.store.next_notice_at()?;
        Ok(())
    }

    /// Stops scheduling: forgets what was planned; running jobs go on.
    pub(super) fn demote(&mut self, why: &str) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some(epoch) = cluster.led.take() else {
            return;
        };
        tracing::warn!(
            "this node stands by now (it led at epoch {epoch}; {why}): it schedules nothing, its {} running job(s) go on",
            self.running.len()
        );
        // Over for good at this epoch: the keeper takes the lease again only at a new one.
        cluster.liveness.lose();
        self.store.fence(None);
        self.timer = Timer::default();
        self.fingerprints.clear();
        self.to_plan.clear();
        self.queues.clear();
        self.retries.clear();
        self.recovered = super::recover::Recovered::default();
        self.cursors_swept = false;
        self.next_notice = None;
        self.published.stale = true;
        self.publish();
    }

    /// Settles the runs of nodes that went silent: `Crashed` (`node_lost`), their retry
    /// decisions owed (made at once).
    pub(super) fn settle_lost_nodes(
        &mut self,
        silent_for: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let lost = self.store.settle_lost_nodes(silent_for, now)?;
        if lost.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            "{} run(s) of nodes silent for {silent_for:?} settled Crashed (node_lost), or Cancelled where a cancel was asked: {lost:?}",
            lost.len()
        );
        if self.recovered.is_settled() {
            for id in lost {
                if let Some(run) = self.store.run(id)? {
                    self.maybe_retry(&run, false, now)?;
                }
            }
        }
        Ok(())
    }

    /// The leader's regular sweep in a cluster: runs of lost nodes, and the retry
    /// decisions that runs ending on other nodes left owed.
    pub(super) fn sweep_cluster(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        if cluster.led.is_none() || !self.recovered.is_settled() {
            return Ok(());
        }
        self.settle_lost_nodes(cluster.config.timings.node_lost, now)?;
        for run in self.store.retry_pending()? {
            if !self.running.contains_key(&run.id) {
                self.maybe_retry(&run, false, now)?;
            }
        }
        Ok(())
    }

    /// Who takes a request this standby cannot: the leader, with its address.
    pub(super) fn leader_hint(&self) -> String {
        let Some(cluster) = &self.cluster else {
            return String::new();
        };
        let view = cluster.view.borrow();
        match view.leader.as_ref().filter(|l| l.live) {
            Some(leader) => {
                let url = view
                    .nodes
                    .iter()
                    .find(|(n, _)| n.name == leader.node())
                    .and_then(|(n, _)| n.url.clone())
                    .map(|url| format!(" at {url}"))
                    .unwrap_or_default();
                format!(
                    "node {} leads (epoch {}){url}: send this request to it",
                    leader.node(),
                    leader.epoch
                )
            }
            None => "no node leads right now (a takeover is under way): try again in a few seconds"
                .into(),
        }
    }

    /// Puts the cluster into the status: this node's role, who leads, the nodes.
    pub(super) fn show_cluster(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let shown = super::status::ClusterStatus::new(
            &cluster.config.node,
            cluster.led,
            &cluster.view.borrow(),
        );
        if self.status.cluster.as_ref() != Some(&shown) {
            self.status.cluster = Some(shown);
            self.publish();
        }
    }
}
