//! Runs spread over the nodes of a cluster (a PostgreSQL store).
//!
//! - **The leader dispatches**: a run it admits to start is written `Scheduled` with no
//!   node (a slot's row with its cursor, a trigger's row, a waiting run's row), instead of
//!   `Running` here. Admission stays the leader's alone, and it counts what is dispatched
//!   or running on *every* node ([`Engine::in_flight`] reads [`Engine::active`], refreshed
//!   from the store every tick and every wake, and raised at once by each dispatch), so a
//!   concurrency limit holds across nodes: the count may be high for a moment (a run ended
//!   elsewhere, not yet seen), never low.
//! - **Every node claims** (the leader too): as many dispatched runs as it has room for
//!   (`--capacity`), of the deployments at the commits it has applied, with `FOR UPDATE
//!   SKIP LOCKED`, so each row is claimed by one node; only the deployments whose
//!   `node_labels` it carries (`--label`). The claim is committed before the
//!   process starts, on the dot of its slot, and only while the node's heartbeat is
//!   recent. It claims when told (`sundial_ready`, sent as the leader's dispatch commits),
//!   every tick (at most a second apart in a cluster), and when a run of its own ends.
//! - **A cancel** of a run another node runs is asked through the store (the row's
//!   `cancel_asked`, and `sundial_cancel` in the same transaction), by any node; the node
//!   that runs it stops it when told, or at its next tick, and records it `Cancelled`. A
//!   lost node's run whose cancel was asked is settled `Cancelled`, not retried.
//! - **A run's end** is recorded by the node that ran it, which tells the leader
//!   (`sundial_wake`): the leader then drains the queues and decides the retries owed.
//! - **A manual run asked of another node** is written there `Pending` with no epoch,
//!   with a `sundial_wake` in the same transaction; the leader queues it (in the order
//!   asked) and admits it as any waiting run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::runner::process::StopRequest;
use crate::store::pg::dispatch::{CANCEL, READY, WAKE};
use crate::store::{RunState, StoreError};

use super::{policy, Engine};

/// The most runs a node claims in one statement (more are claimed in turn).
const CLAIM_BATCH: usize = 64;

/// A dispatched run no node claimed within this long after its slot is recorded missed
/// when a new leader takes over (every node was down, or none had room).
pub(super) const STALE_DISPATCH: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl Engine {
    /// Whether admitted runs go to whichever node claims them (a cluster), rather than
    /// start here.
    pub(super) fn dispatches(&self) -> bool {
        self.cluster.is_some()
    }

    /// A run of `deployment` was dispatched (its row written `Scheduled`): it counts
    /// against the limit at once; once its row is committed the nodes are told, and this
    /// node claims what it has room for.
    pub(super) fn dispatched(
        &mut self,
        deployment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        *self.active.entry(deployment.to_string()).or_default() += 1;
        match &mut self.batch {
            // Told when the batch commits (`batch.rs`).
            Some(batch) => {
                batch.dispatched = true;
                Ok(())
            }
            None => {
                self.store.notify(READY)?;
                self.claim(now)
            }
        }
    }

    /// What dispatched or running runs each deployment has on every node, as the store
    /// says now.
    pub(super) fn refresh_active(&mut self) -> Result<(), StoreError> {
        if self.dispatches() && self.leads() {
            self.active = self.store.active_counts()?;
        }
        Ok(())
    }

    /// Claims the dispatched runs this node has room for, and starts each (on the dot of
    /// its slot).
    pub(super) fn claim(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        if self.stopping || !cluster.liveness.alive() {
            return Ok(());
        }
        let capacity = cluster.config.capacity;
        // What this node may run: the deployments it has applied, at their commits,
        // whose `node_labels` it carries.
        let labels = &cluster.config.labels;
        let offered: Vec<(String, String)> = self
            .applied
            .deployments()
            .filter(|(d, _)| crate::cluster::labels::satisfies(labels, &d.node_labels))
            .map(|(d, commit)| (d.name.clone(), commit.to_string()))
            .collect();
        loop {
            let room = capacity.saturating_sub(self.running.len()).min(CLAIM_BATCH);
            if room == 0 {
                return Ok(());
            }
            let claimed = self.store.claim_runs(room, &offered, now)?;
            let count = claimed.len();
            for run in claimed {
                match self.applied.shared(&run.deployment) {
                    Some((deployment, commit)) if commit == run.commit => {
                        let deployment = deployment.clone();
                        let row = policy::row_of(&run, &run.commit);
                        self.start(run.id, &deployment, &run.commit, &row, run.epoch);
                    }
                    // Offered in this same turn, so never; recorded, not lost.
                    _ => {
                        tracing::error!(
                            "run {} was claimed without its deployment at {}",
                            run.id,
                            run.commit
                        );
                        self.store.finish_run(
                            run.id,
                            RunState::Crashed,
                            None,
                            Some("claimed by a node without its deployment at that commit"),
                            now,
                        )?;
                    }
                }
            }
            if count < room {
                return Ok(());
            }
        }
    }

    /// A notification from the other nodes: claim what was dispatched, stop the runs
    /// whose cancel was asked, or (the leader) look at the queues and the retries owed.
    pub(super) fn on_notice(
        &mut self,
        channel: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match channel {
            READY => self.claim(now),
            WAKE => self.leader_wake(now),
            CANCEL => self.take_cancels(),
            _ => Ok(()),
        }
    }

    /// A node's look at the store each tick: the cancels asked of it, then the runs it
    /// has room for.
    pub(super) fn node_turn(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.take_cancels()?;
        self.claim(now)
    }

    /// The cancels other nodes asked of this one: each of its runs asked is stopped as a
    /// cancel here stops it (SIGTERM to its group, SIGKILL after the grace) and recorded
    /// `Cancelled`.
    pub(super) fn take_cancels(&mut self) -> Result<(), StoreError> {
        if !self.dispatches() || self.running.is_empty() {
            return Ok(());
        }
        let running: Vec<i64> = self.running.keys().copied().collect();
        for id in self.store.cancels_asked(&running)? {
            let Some(flight) = self.running.get_mut(&id) else {
                continue;
            };
            if !flight.cancel_requested {
                flight.cancel_requested = true;
                let _ = flight.stop.send(Some(StopRequest::Cancel));
                tracing::info!("run {id}: cancelled, as asked through another node");
            }
        }
        Ok(())
    }

    /// The leader's look after a run ended somewhere: the counts, the queues, the retries.
    pub(super) fn leader_wake(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if !self.dispatches() || !self.leads() || !self.recovered.is_settled() {
            return Ok(());
        }
        self.refresh_active()?;
        self.sweep_cluster(now)?;
        // Manual runs asked of other nodes join their queues, in the order asked.
        for run in self.store.requested_runs()? {
            self.enqueue(&run.deployment, run.id, run.created_at);
        }
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.drain_queue(&name, now)?;
        }
        Ok(())
    }

    /// Runs ended here: the leader is told (its queues and retries).
    pub(super) fn tell_ended(&mut self) -> Result<(), StoreError> {
        if self.dispatches() {
            self.store.notify(WAKE)?;
        }
        Ok(())
    }
}

/// Counts of dispatched or running runs by deployment.
pub(super) type Active = HashMap<String, usize>;
