//! What every store offers, whatever holds the data: [`StoreRead`] (the API, the syncer
//! and the tests read through it) and [`StoreWrite`] (the engine, the one writer). Both
//! are synchronous and object-safe: the engine holds a `Box<dyn StoreWrite>`, readers a
//! `Box<dyn StoreRead>`, and the methods of a `dyn` store are called as on the concrete
//! one, without importing the traits.
//!
//! Contract, for every implementation:
//! - Each write method is atomic. Inside a batch ([`StoreWrite::begin_batch`]) it is a
//!   savepoint: when it fails it undoes only itself, and the batch goes on (the engine
//!   retries a refused row shortened, in the same batch).
//! - A slot's row is unique on (deployment, schedule, scheduled_for, attempt): an insert
//!   of a slot that has its row already writes nothing and returns `None`.
//! - Times are stored as RFC 3339 UTC text with milliseconds ([`super::time_text`]), so
//!   they sort as time in both stores.
//!
//! [`SqliteStore`] implements both by calling its own methods, unchanged; the PostgreSQL
//! store is `store::pg`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::notify::{Event, Health};
use crate::sla::Breach;

use super::{
    AppliedCommit, AttemptRef, BucketCount, Cursor, Lateness, NewBreach, NewRun, Notice, Noticed,
    OutboxCounts, Pause, Progress, Run, RunCount, RunFilter, RunState, SlotCursor, SlotKey,
    SqliteStore, StoreError, StoredBreach,
};

type R<T> = Result<T, StoreError>;

/// The reads of the store. See the methods of [`SqliteStore`] of the same names for what
/// each returns.
pub trait StoreRead: Send {
    fn run(&self, id: i64) -> R<Option<Run>>;
    fn runs(&self, filter: &RunFilter) -> R<Vec<Run>>;
    /// The page [`StoreRead::runs`] reads, written into `out` as the JSON array of
    /// `GET /api/runs`, when this store writes it straight from its rows: how many runs and
    /// the last id. `None` (the default): the caller builds it from `runs`.
    fn runs_json(&self, _filter: &RunFilter, _out: &mut String) -> R<Option<(usize, Option<i64>)>> {
        Ok(None)
    }
    /// A number that changes whenever any connection (of this process or another)
    /// commits a change to the store, as read on this connection: two equal readings
    /// mean nothing was committed between them, so what was read between them is still
    /// what a read would find. `None` (the default): this store cannot tell (PostgreSQL,
    /// where other nodes write), and nothing read from it may be answered again.
    fn data_version(&self) -> R<Option<i64>> {
        Ok(None)
    }
    fn attempts_of(&self, run: &Run) -> R<Vec<Run>>;
    fn retry_pending(&self) -> R<Vec<Run>>;
    fn unfinished_runs(&self) -> R<Vec<Run>>;
    fn last_runs(&self) -> R<Vec<Run>>;
    fn slot_rows(
        &self,
        deployment: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> R<Vec<Run>>;
    fn first_slots(&self, deployment: &str) -> R<Vec<(String, DateTime<Utc>)>>;
    fn cursor(&self, deployment: &str, schedule_id: &str) -> R<Option<Cursor>>;
    fn last_commit(&self) -> R<Option<AppliedCommit>>;
    fn good_files(&self) -> R<Vec<(String, String)>>;
    fn newest_runs(&self, deployments: &[&str]) -> R<Vec<Run>>;
    fn slot_attempts(&self, runs: &[Run]) -> R<HashMap<SlotKey, Vec<AttemptRef>>>;
    fn run_histogram(
        &self,
        deployment: Option<&str>,
        since: DateTime<Utc>,
        width: chrono::Duration,
        buckets: i64,
    ) -> R<Vec<BucketCount>>;
    fn run_counts(&self) -> R<Vec<RunCount>>;
    fn lateness(&self, bounds: &[f64]) -> R<Lateness>;
    fn applied_at(&self, sha: &str) -> R<Option<DateTime<Utc>>>;
    fn marked_runs(&self, limit: usize) -> R<Vec<(Run, Option<RunState>)>>;
    fn health(&self, deployment: &str) -> R<Health>;
    fn pauses(&self) -> R<Vec<Pause>>;
    fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> R<Vec<Notice>>;
    fn next_notice_at(&self) -> R<Option<DateTime<Utc>>>;
    fn next_notice_after(&self, now: DateTime<Utc>) -> R<Option<DateTime<Utc>>>;
    fn outbox_counts(&self) -> R<OutboxCounts>;
    fn notices_of(&self, run_id: i64) -> R<Vec<(Event, bool, Option<String>)>>;
    fn has_breach(&self, deployment: &str, sla: &str, subject: &str) -> R<bool>;
    fn breaches(&self, deployment: Option<&str>, limit: usize) -> R<Vec<StoredBreach>>;
    fn breach_counts(&self) -> R<Vec<(String, String, u64)>>;
}

/// The engine's writes, its batches, and what it asks of the store itself.
pub trait StoreWrite: StoreRead {
    /// Opens a batch: every write until [`StoreWrite::commit_batch`] is one transaction.
    /// Nothing may act on a write of the batch (start a process) before it is committed.
    fn begin_batch(&mut self) -> R<()>;
    fn commit_batch(&mut self) -> R<()>;
    /// Undoes the open batch, if any.
    fn rollback_batch(&mut self);
    /// Whether this open created the store (its schema was new).
    fn created(&self) -> bool;
    /// Gives back the memory of the connection's caches (after a burst, whose thousands of
    /// rows filled them). Nothing observable changes: pages are read again when needed.
    fn release_memory(&mut self) {}
    /// Checks that the store is still the one opened: a database file deleted or
    /// replaced, or a PostgreSQL database dropped and made again, is
    /// [`StoreError::Replaced`].
    fn check_identity(&self) -> R<()>;
    /// Joins a cluster as `node` (PostgreSQL): from then on the scheduling writes need
    /// the lease ([`StoreWrite::fence`]; without it they are [`StoreError::Fenced`] and
    /// write nothing), and the runs this writer starts carry `node`. SQLite has no
    /// cluster: nothing changes.
    fn join_cluster(&mut self, _node: &str) {}
    /// The lease this node holds now, (holder, epoch), or `None`: every scheduling write
    /// checks it against the store's lease in its own transaction.
    fn fence(&mut self, _fence: Option<(String, i64)>) {}
    /// Settles `Crashed` (reason `node_lost`, retry owed) the runs still `Running` on
    /// other nodes silent for `silent_for` by the store's clock; returns their ids. A
    /// store without nodes has none.
    fn settle_lost_nodes(
        &mut self,
        _silent_for: std::time::Duration,
        _at: DateTime<Utc>,
    ) -> R<Vec<i64>> {
        Ok(Vec::new())
    }
    /// Makes a waiting run claimable by any node, at `commit` (a cluster's leader); false
    /// when it no longer waits. A store without a cluster has nothing to dispatch to.
    fn dispatch_run(&mut self, _id: i64, _commit: &str) -> R<bool> {
        Err(StoreError::Corrupt(
            "a run was dispatched on a store without a cluster".into(),
        ))
    }
    /// Claims up to `limit` dispatched runs of the (deployment, commit) pairs `offered`
    /// for this node, oldest first; they are `Running` on it once this returns.
    fn claim_runs(
        &mut self,
        _limit: usize,
        _offered: &[(String, String)],
        _at: DateTime<Utc>,
    ) -> R<Vec<Run>> {
        Ok(Vec::new())
    }
    /// How many runs of each deployment are dispatched or running, on every node.
    fn active_counts(&self) -> R<HashMap<String, usize>> {
        Ok(HashMap::new())
    }
    /// Tells the other nodes (`store::pg::dispatch::READY`, `WAKE`) when the current
    /// transaction commits. Alone, nobody listens.
    fn notify(&mut self, _channel: &'static str) -> R<()> {
        Ok(())
    }
    /// Writes a manual run asked of a node that does not lead (`Pending`, no epoch) and
    /// wakes the leader, which admits it. Alone, every node leads.
    fn request_run(&mut self, _new: &NewRun, _at: DateTime<Utc>) -> R<Option<i64>> {
        Err(StoreError::Corrupt(
            "a run was requested of a store without a cluster".into(),
        ))
    }
    /// Manual runs asked of other nodes that no leader has taken in yet, oldest first.
    fn requested_runs(&self) -> R<Vec<Run>> {
        Ok(Vec::new())
    }
    /// Asks `node`, which runs run `id`, to cancel it (and tells it); false when the run
    /// no longer runs there. Alone, every run is this daemon's own.
    fn ask_cancel(&mut self, _id: i64, _node: &str, _at: DateTime<Utc>) -> R<bool> {
        Ok(false)
    }
    /// Of `running` (the runs this node runs), those another node asked to cancel.
    fn cancels_asked(&self, _running: &[i64]) -> R<Vec<i64>> {
        Ok(Vec::new())
    }
    /// Cancels a run that waits (and, in a cluster, no node has claimed); false when it
    /// no longer waits.
    fn cancel_waiting(&mut self, id: i64, reason: &str, at: DateTime<Utc>) -> R<bool>;

    fn insert_run(&mut self, new: &NewRun, now: DateTime<Utc>) -> R<Option<i64>>;
    fn claim_slots(
        &mut self,
        rows: &[NewRun],
        cursor: Option<SlotCursor<'_>>,
        now: DateTime<Utc>,
    ) -> R<Vec<Option<i64>>>;
    fn start_run(&mut self, id: i64, commit: &str, at: DateTime<Utc>) -> R<bool>;
    fn record_progress(&mut self, progress: &[Progress]) -> R<()>;
    fn insert_retry(&mut self, ended: i64, next: &NewRun, now: DateTime<Utc>) -> R<Option<i64>>;
    fn retry_decided(&mut self, id: i64) -> R<()>;
    fn finish_run(
        &mut self,
        id: i64,
        state: RunState,
        exit_code: Option<i32>,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> R<()>;
    fn mark_pending(&mut self, id: i64) -> R<()>;
    fn prune_runs(&mut self, keep: usize, older_than: DateTime<Utc>) -> R<Vec<i64>>;
    fn set_anchor(&mut self, deployment: &str, schedule_id: &str, anchor: DateTime<Utc>) -> R<()>;
    fn set_cursor(
        &mut self,
        deployment: &str,
        schedule_id: &str,
        at: DateTime<Utc>,
        fingerprint: &str,
    ) -> R<()>;
    fn forget_cursors_except(
        &mut self,
        keep: &BTreeSet<(String, String)>,
    ) -> R<Vec<(String, String)>>;
    fn forget_cursors(&mut self, keys: &[(String, String)]) -> R<Vec<(String, String)>>;
    fn record_commit(&mut self, commit: &AppliedCommit, good_files: &[String]) -> R<()>;
    fn forget_file(&mut self, path: &str) -> R<()>;
    fn set_health(&mut self, deployment: &str, health: &Health) -> R<()>;
    fn record_noticed(&mut self, noticed: &Noticed, now: DateTime<Utc>) -> R<Vec<Breach>>;
    fn resume(&mut self, deployment: &str) -> R<bool>;
    fn lease_notice(&mut self, id: i64, until: DateTime<Utc>) -> R<()>;
    fn prune_outbox(&mut self, before: DateTime<Utc>) -> R<usize>;
    fn notice_delivered(&mut self, id: i64, now: DateTime<Utc>) -> R<()>;
    fn notice_failed(
        &mut self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> R<()>;
    fn record_breaches(&mut self, breaches: &[NewBreach], now: DateTime<Utc>) -> R<Vec<Breach>>;
}

/// Trait methods that call the store's own method of the same name (an inherent method
/// is found first, so this never calls itself).
macro_rules! delegate {
    ($store:ty; $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            <$store>::$name(self $(, $arg)*)
        })*
    };
    ($store:ty; $(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&mut self $(, $arg: $ty)*) -> $ret {
            <$store>::$name(self $(, $arg)*)
        })*
    };
}
pub(super) use delegate;

impl StoreRead for SqliteStore {
    fn runs_json(&self, filter: &RunFilter, out: &mut String) -> R<Option<(usize, Option<i64>)>> {
        SqliteStore::runs_json(self, filter, out).map(Some)
    }

    fn data_version(&self) -> R<Option<i64>> {
        SqliteStore::data_version(self).map(Some)
    }

    delegate! { SqliteStore;
        fn run(&self, id: i64) -> R<Option<Run>>;
        fn runs(&self, filter: &RunFilter) -> R<Vec<Run>>;
        fn attempts_of(&self, run: &Run) -> R<Vec<Run>>;
        fn retry_pending(&self) -> R<Vec<Run>>;
        fn unfinished_runs(&self) -> R<Vec<Run>>;
        fn last_runs(&self) -> R<Vec<Run>>;
        fn slot_rows(&self, deployment: &str, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> R<Vec<Run>>;
        fn first_slots(&self, deployment: &str) -> R<Vec<(String, DateTime<Utc>)>>;
        fn cursor(&self, deployment: &str, schedule_id: &str) -> R<Option<Cursor>>;
        fn last_commit(&self) -> R<Option<AppliedCommit>>;
        fn good_files(&self) -> R<Vec<(String, String)>>;
        fn newest_runs(&self, deployments: &[&str]) -> R<Vec<Run>>;
        fn slot_attempts(&self, runs: &[Run]) -> R<HashMap<SlotKey, Vec<AttemptRef>>>;
        fn run_histogram(&self, deployment: Option<&str>, since: DateTime<Utc>, width: chrono::Duration, buckets: i64) -> R<Vec<BucketCount>>;
        fn run_counts(&self) -> R<Vec<RunCount>>;
        fn lateness(&self, bounds: &[f64]) -> R<Lateness>;
        fn applied_at(&self, sha: &str) -> R<Option<DateTime<Utc>>>;
        fn marked_runs(&self, limit: usize) -> R<Vec<(Run, Option<RunState>)>>;
        fn health(&self, deployment: &str) -> R<Health>;
        fn pauses(&self) -> R<Vec<Pause>>;
        fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> R<Vec<Notice>>;
        fn next_notice_at(&self) -> R<Option<DateTime<Utc>>>;
        fn next_notice_after(&self, now: DateTime<Utc>) -> R<Option<DateTime<Utc>>>;
        fn outbox_counts(&self) -> R<OutboxCounts>;
        fn notices_of(&self, run_id: i64) -> R<Vec<(Event, bool, Option<String>)>>;
        fn has_breach(&self, deployment: &str, sla: &str, subject: &str) -> R<bool>;
        fn breaches(&self, deployment: Option<&str>, limit: usize) -> R<Vec<StoredBreach>>;
        fn breach_counts(&self) -> R<Vec<(String, String, u64)>>;
    }
}

impl StoreWrite for SqliteStore {
    fn check_identity(&self) -> R<()> {
        self.check_file()
    }

    fn release_memory(&mut self) {
        SqliteStore::release_memory(self)
    }

    fn created(&self) -> bool {
        SqliteStore::created(self)
    }

    delegate! { SqliteStore;
        fn begin_batch(&mut self) -> R<()>;
        fn commit_batch(&mut self) -> R<()>;
        fn rollback_batch(&mut self) -> ();
        fn insert_run(&mut self, new: &NewRun, now: DateTime<Utc>) -> R<Option<i64>>;
        fn claim_slots(&mut self, rows: &[NewRun], cursor: Option<SlotCursor<'_>>, now: DateTime<Utc>) -> R<Vec<Option<i64>>>;
        fn start_run(&mut self, id: i64, commit: &str, at: DateTime<Utc>) -> R<bool>;
        fn record_progress(&mut self, progress: &[Progress]) -> R<()>;
        fn insert_retry(&mut self, ended: i64, next: &NewRun, now: DateTime<Utc>) -> R<Option<i64>>;
        fn retry_decided(&mut self, id: i64) -> R<()>;
        fn finish_run(&mut self, id: i64, state: RunState, exit_code: Option<i32>, reason: Option<&str>, at: DateTime<Utc>) -> R<()>;
        fn mark_pending(&mut self, id: i64) -> R<()>;
        fn cancel_waiting(&mut self, id: i64, reason: &str, at: DateTime<Utc>) -> R<bool>;
        fn prune_runs(&mut self, keep: usize, older_than: DateTime<Utc>) -> R<Vec<i64>>;
        fn set_anchor(&mut self, deployment: &str, schedule_id: &str, anchor: DateTime<Utc>) -> R<()>;
        fn set_cursor(&mut self, deployment: &str, schedule_id: &str, at: DateTime<Utc>, fingerprint: &str) -> R<()>;
        fn forget_cursors_except(&mut self, keep: &BTreeSet<(String, String)>) -> R<Vec<(String, String)>>;
        fn forget_cursors(&mut self, keys: &[(String, String)]) -> R<Vec<(String, String)>>;
        fn record_commit(&mut self, commit: &AppliedCommit, good_files: &[String]) -> R<()>;
        fn forget_file(&mut self, path: &str) -> R<()>;
        fn set_health(&mut self, deployment: &str, health: &Health) -> R<()>;
        fn record_noticed(&mut self, noticed: &Noticed, now: DateTime<Utc>) -> R<Vec<Breach>>;
        fn resume(&mut self, deployment: &str) -> R<bool>;
        fn lease_notice(&mut self, id: i64, until: DateTime<Utc>) -> R<()>;
        fn prune_outbox(&mut self, before: DateTime<Utc>) -> R<usize>;
        fn notice_delivered(&mut self, id: i64, now: DateTime<Utc>) -> R<()>;
        fn notice_failed(&mut self, id: i64, error: &str, retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> R<()>;
        fn record_breaches(&mut self, breaches: &[NewBreach], now: DateTime<Utc>) -> R<Vec<Breach>>;
    }
}
