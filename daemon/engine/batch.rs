//! Batches of claims. A burst of due slots (a tick with many schedules due at once, or an
//! apply that plans many new schedules) is written as one transaction: one `fsync`
//! instead of one per schedule. The promise does not change: a run's process starts only
//! after its row is durable, so the batch's processes are spawned after its commit (they
//! take their place in the running set at once, so concurrency limits count them), and
//! its queued runs join their queues then. A batch that fails is rolled back whole and
//! nothing it started or queued remains.

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::runner::process::StopRequest;
use crate::store::StoreError;

use super::attempt::Attempt;
use super::Engine;

/// What a batch does once it is committed.
#[derive(Default)]
pub(super) struct Batch {
    pub spawns: Vec<(Attempt, watch::Receiver<Option<StopRequest>>)>,
    /// (deployment, run id, slot): `Pending` runs to queue.
    pub queued: Vec<(String, i64, DateTime<Utc>)>,
    /// Runs were dispatched to the cluster's nodes: they are told as the batch commits,
    /// and this node claims its share after.
    pub dispatched: bool,
}

impl Engine {
    /// Runs `work` as one batch: commit, then spawn and queue what it claimed; on an
    /// error, roll back and forget what it started. Inside a batch, `work` just runs.
    pub(super) fn batched<T>(
        &mut self,
        work: impl FnOnce(&mut Engine) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.batch.is_some() {
            return work(self);
        }
        self.store.begin_batch()?;
        self.batch = Some(Batch::default());
        let result = work(self).and_then(|value| {
            if self.batch.as_ref().is_some_and(|b| b.dispatched) {
                self.store.notify(crate::store::pg::dispatch::READY)?;
            }
            let committing = std::time::Instant::now();
            self.store.commit_batch()?;
            // How long a commit of claims takes now decides how far ahead slots are armed.
            let ended = std::time::Instant::now();
            self.arm.observe(ended, ended - committing);
            Ok(value)
        });
        let batch = self.batch.take().unwrap_or_default();
        match result {
            Ok(value) => {
                for (attempt, stop_rx) in batch.spawns {
                    self.spawn(attempt, stop_rx);
                }
                for (deployment, id, order) in batch.queued {
                    self.enqueue(&deployment, id, order);
                }
                if batch.dispatched {
                    self.claim(Utc::now())?;
                }
                Ok(value)
            }
            Err(e) => {
                self.store.rollback_batch();
                for (attempt, _) in &batch.spawns {
                    self.running.remove(&attempt.run_id);
                }
                Err(e)
            }
        }
    }
}
