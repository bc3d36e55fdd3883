//! The PostgreSQL store (`--store postgres://…`): the same tables as SQLite (one list of
//! migrations, `super::migrations`), the same times as text, the same answers.
//!
//! Contract:
//! - Every call runs on the connection's own thread and is bounded in time ([`conn`]).
//!   A server that cannot be reached is [`StoreError::Unavailable`], naming the database
//!   without its password ([`Target::what`]).
//! - Each write method is one transaction, or inside a batch one savepoint: on error it
//!   sends `ROLLBACK TO SAVEPOINT` before returning, so it undoes only itself (in
//!   PostgreSQL a failed statement would otherwise abort the whole batch).
//! - Sessions run with `statement_timeout`, `lock_timeout` and
//!   `idle_in_transaction_session_timeout`, so a stuck statement or an abandoned
//!   transaction ends on the server too.
//! - `$SUNDIAL_STORE_MAX_VALUE` limits each text value as it does on SQLite: a longer one
//!   is [`StoreError::TooBig`], a row error.
//! - Fencing, once the writer joined a cluster ([`PgStore::join_cluster`]): every
//!   scheduling write first locks the lease row `FOR SHARE` in its own transaction and
//!   finds it held by this node's (holder, epoch) and unexpired, else writes nothing and is
//!   [`StoreError::Fenced`]. While the transaction holds that lock no other node can take
//!   the lease, so whatever a leader commits was written under a lease it held. Node
//!   writes (a run's progress and end) are not fenced: a node records the end of what it
//!   runs whoever leads, but never over a run the leader settled as `node_lost`.
//!
//! - Connections speak TLS as the URL's `sslmode` and `sslrootcert` say ([`tls`]); the
//!   database and its settings are a [`Target`] (`target.rs`).

mod breaches;
mod conn;
pub mod dispatch;
mod history;
pub mod lease;
mod ledger;
pub mod listen;
mod rows;
mod runs;
mod target;
pub mod testing;
mod tls;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use postgres::Client;

use super::run::{Run, RunState};
use super::traits::delegate;
use super::{StoreError, StoreRead, StoreWrite};
use conn::Conn;
use rows::{count, fit, params, read_run, read_runs, Arg};
use target::describe_error;
pub use target::Target;

/// How long one call may take before the connection is given up: a little more than
/// `statement_timeout`, so the server ends a slow statement first.
const CALL_LIMIT: Duration = Duration::from_secs(6);

/// How much longer a write may take for each row or statement it carries.
const PER_ITEM: Duration = Duration::from_millis(2);

/// How long the migrations at open may take.
const MIGRATE_LIMIT: Duration = Duration::from_secs(60);

/// One connection to the PostgreSQL store: the engine's writer, or an API reader.
pub struct PgStore {
    conn: Conn,
    /// The generation of the connection a batch was begun on, while one is open.
    batch: Cell<Option<u64>>,
    /// Whether this open created the schema.
    created: bool,
    /// The random id the schema was created with, to notice a database made anew.
    store_id: String,
    /// The longest text value stored (`$SUNDIAL_STORE_MAX_VALUE`), if limited.
    max_value: Option<usize>,
    /// The node this writer runs as, once it joined a cluster: its scheduling writes are
    /// fenced, and the runs it starts carry its name.
    node: Option<String>,
    /// The lease this node holds (holder, epoch), while it leads.
    fence: Option<(String, i64)>,
    /// Whether the open batch has checked the fence already (the lock it took lasts until
    /// the batch ends).
    fence_checked: Cell<bool>,
}

/// Which writes are fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Scheduling: only the leader, under its lease.
    Leader,
    /// A run's progress and end: the node that runs it, whoever leads.
    Node,
}

/// Locks the lease row for the rest of the transaction, and finds it held by `holder` at
/// `epoch` and unexpired.
const FENCE: &str = "SELECT 1 FROM sundial_lease WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp() FOR SHARE";

impl PgStore {
    /// Connects, creates the schema or brings it up to date, and warns when the server
    /// does not make commits durable.
    pub fn open(target: &Arc<Target>) -> Result<PgStore, StoreError> {
        let conn = Conn::new(target.clone(), CALL_LIMIT);
        let (created, store_id) =
            conn.call_within(MIGRATE_LIMIT, None, super::migrations::migrate_postgres)?;
        let settings = conn.call(|c| {
            let row = c.query_one(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit')",
                &[],
            )?;
            Ok((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?))
        })?;
        if settings.0 == "off" || settings.1 == "off" {
            tracing::warn!(
                "the PostgreSQL server {} runs with fsync={} and synchronous_commit={}: a crash of the server may lose committed runs, and a slot may then run twice; turn both on",
                target.what,
                settings.0,
                settings.1
            );
        }
        Ok(PgStore {
            conn,
            batch: Cell::new(None),
            created,
            store_id,
            max_value: super::max_value().map(|n| n as usize),
            node: None,
            fence: None,
            fence_checked: Cell::new(false),
        })
    }

    /// Connects a reader of an existing store.
    pub fn open_reader(target: &Arc<Target>) -> Result<PgStore, StoreError> {
        let conn = Conn::new(target.clone(), CALL_LIMIT);
        let store_id = conn.call(read_store_id)?;
        Ok(PgStore {
            conn,
            batch: Cell::new(None),
            created: false,
            store_id,
            max_value: super::max_value().map(|n| n as usize),
            node: None,
            fence: None,
            fence_checked: Cell::new(false),
        })
    }

    /// Sets the longest text value stored, as `$SUNDIAL_STORE_MAX_VALUE` does at open.
    #[cfg(test)]
    pub(crate) fn limit_values(&mut self, limit: Option<usize>) {
        self.max_value = limit;
    }

    /// Runs a read: plain outside a batch; inside one, in a savepoint on the batch's
    /// connection, so a failed read does not abort the batch.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self.batch.get() {
            None => self.conn.call(f),
            Some(_) => self.transact(Writer::Node, 1, f),
        }
    }

    /// Runs a scheduling write as one transaction, or one savepoint inside a batch,
    /// undone alone on error; fenced once the store joined a cluster.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.transact(Writer::Leader, 1, f)
    }

    /// [`PgStore::write`] of `items` statements: the call limit grows by
    /// [`PER_ITEM`] for each (a burst of thousands of rows is not a stuck server).
    fn write_sized<T: Send + 'static>(
        &self,
        items: usize,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.transact(Writer::Leader, items, f)
    }

    /// A node's write of `items` statements (a run's progress or end): never fenced.
    fn node_write<T: Send + 'static>(
        &self,
        items: usize,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.transact(Writer::Node, items, f)
    }

    /// Whether a write of `writer` must check the fence first, and with what: `Err` when
    /// it may not write at all (a clustered node that does not lead).
    fn fence_for(&self, writer: Writer) -> Result<Option<(String, i64)>, StoreError> {
        if writer == Writer::Node || self.node.is_none() || self.fence_checked.get() {
            return Ok(None);
        }
        match &self.fence {
            Some(fence) => Ok(Some(fence.clone())),
            None => Err(StoreError::Fenced { epoch: 0 }),
        }
    }

    fn transact<T: Send + 'static>(
        &self,
        writer: Writer,
        items: usize,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let limit = CALL_LIMIT.saturating_add(PER_ITEM.saturating_mul(items as u32));
        let fence = self.fence_for(writer)?;
        let checks = fence.is_some();
        let batch = self.batch.get();
        let (begin, end, undo) = match batch {
            Some(_) => (
                "SAVEPOINT sundial",
                "RELEASE SAVEPOINT sundial",
                "ROLLBACK TO SAVEPOINT sundial; RELEASE SAVEPOINT sundial",
            ),
            None => ("BEGIN", "COMMIT", "ROLLBACK"),
        };
        let answer = self.conn.call_within(limit, batch, move |c| {
            c.batch_execute(begin)?;
            let fenced = match &fence {
                Some((holder, epoch)) => match c.query_opt(FENCE, &[holder, epoch]) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(StoreError::Fenced { epoch: *epoch }),
                    Err(e) => Err(e.into()),
                },
                None => Ok(()),
            };
            match fenced.and_then(|()| f(c)) {
                Ok(answer) => {
                    c.batch_execute(end)?;
                    Ok(answer)
                }
                Err(e) => {
                    let _ = c.batch_execute(undo);
                    Err(e)
                }
            }
        });
        // Inside a batch the lock lasts until it ends: one check is enough.
        if checks && batch.is_some() && answer.is_ok() {
            self.fence_checked.set(true);
        }
        answer
    }

    fn begin_batch(&mut self) -> Result<(), StoreError> {
        let generation = self.conn.generation()?;
        self.conn.call_within(CALL_LIMIT, Some(generation), |c| {
            Ok(c.batch_execute("BEGIN")?)
        })?;
        self.batch.set(Some(generation));
        self.fence_checked.set(false);
        Ok(())
    }

    fn commit_batch(&mut self) -> Result<(), StoreError> {
        self.fence_checked.set(false);
        let batch = self.batch.take();
        self.conn
            .call_within(CALL_LIMIT, batch, |c| Ok(c.batch_execute("COMMIT")?))
    }

    fn rollback_batch(&mut self) {
        self.fence_checked.set(false);
        if let Some(generation) = self.batch.take() {
            // A lost connection took its transaction with it.
            let _ = self.conn.call_within(CALL_LIMIT, Some(generation), |c| {
                Ok(c.batch_execute("ROLLBACK")?)
            });
        }
    }

    fn created(&self) -> bool {
        self.created
    }

    /// Joins a cluster as `node`: from now on scheduling writes need the lease
    /// ([`PgStore::set_fence`]), and the runs this writer starts carry `node`.
    pub fn join_cluster(&mut self, node: &str) {
        self.node = Some(node.to_string());
    }

    /// The lease this node now holds, or `None` once it lost it.
    pub fn set_fence(&mut self, fence: Option<(String, i64)>) {
        self.fence = fence;
        self.fence_checked.set(false);
    }

    /// What the runs this writer inserts or starts carry: its node, the leader's epoch.
    fn stamp(&self) -> (Option<String>, Option<i64>) {
        (
            self.node.clone(),
            self.fence.as_ref().map(|(_, epoch)| *epoch),
        )
    }

    /// A database dropped and made again (or another one at the same address) has
    /// another store id: [`StoreError::Replaced`], as a deleted SQLite file is.
    fn check_identity(&self) -> Result<(), StoreError> {
        let found = self.read(read_store_id);
        match found {
            Ok(id) if id == self.store_id => Ok(()),
            Ok(_) => Err(StoreError::Replaced {
                path: self.conn.what().to_string(),
            }),
            // The tables are gone: a database dropped and made again, empty.
            Err(StoreError::Pg(e))
                if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) =>
            {
                Err(StoreError::Replaced {
                    path: self.conn.what().to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }
}

fn read_store_id(c: &mut Client) -> Result<String, StoreError> {
    Ok(c.query_one("SELECT store_id FROM sundial_meta", &[])?
        .try_get(0)?)
}

impl StoreRead for PgStore {
    delegate! { PgStore;
        fn run(&self, id: i64) -> Result<Option<Run>, StoreError>;
        fn runs(&self, filter: &super::RunFilter) -> Result<Vec<Run>, StoreError>;
        fn attempts_of(&self, run: &Run) -> Result<Vec<Run>, StoreError>;
        fn retry_pending(&self) -> Result<Vec<Run>, StoreError>;
        fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError>;
        fn last_runs(&self) -> Result<Vec<Run>, StoreError>;
        fn slot_rows(&self, deployment: &str, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<Run>, StoreError>;
        fn first_slots(&self, deployment: &str) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError>;
        fn cursor(&self, deployment: &str, schedule_id: &str) -> Result<Option<super::Cursor>, StoreError>;
        fn last_commit(&self) -> Result<Option<super::AppliedCommit>, StoreError>;
        fn good_files(&self) -> Result<Vec<(String, String)>, StoreError>;
        fn newest_runs(&self, deployments: &[&str]) -> Result<Vec<Run>, StoreError>;
        fn slot_attempts(&self, runs: &[Run]) -> Result<std::collections::HashMap<super::SlotKey, Vec<super::AttemptRef>>, StoreError>;
        fn run_histogram(&self, deployment: Option<&str>, since: chrono::DateTime<chrono::Utc>, width: chrono::Duration, buckets: i64) -> Result<Vec<super::BucketCount>, StoreError>;
        fn run_counts(&self) -> Result<Vec<super::RunCount>, StoreError>;
        fn lateness(&self, bounds: &[f64]) -> Result<super::Lateness, StoreError>;
        fn applied_at(&self, sha: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError>;
        fn marked_runs(&self, limit: usize) -> Result<Vec<(Run, Option<RunState>)>, StoreError>;
        fn health(&self, deployment: &str) -> Result<crate::notify::Health, StoreError>;
        fn pauses(&self) -> Result<Vec<super::Pause>, StoreError>;
        fn due_notices(&self, now: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<super::Notice>, StoreError>;
        fn next_notice_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError>;
        fn next_notice_after(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError>;
        fn outbox_counts(&self) -> Result<super::OutboxCounts, StoreError>;
        fn notices_of(&self, run_id: i64) -> Result<Vec<(crate::notify::Event, bool, Option<String>)>, StoreError>;
        fn has_breach(&self, deployment: &str, sla: &str, subject: &str) -> Result<bool, StoreError>;
        fn breaches(&self, deployment: Option<&str>, limit: usize) -> Result<Vec<super::StoredBreach>, StoreError>;
        fn breach_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError>;
    }
}

impl StoreWrite for PgStore {
    fn created(&self) -> bool {
        PgStore::created(self)
    }

    fn check_identity(&self) -> Result<(), StoreError> {
        PgStore::check_identity(self)
    }

    fn join_cluster(&mut self, node: &str) {
        PgStore::join_cluster(self, node)
    }

    fn fence(&mut self, fence: Option<(String, i64)>) {
        self.set_fence(fence)
    }

    fn settle_lost_nodes(
        &mut self,
        silent_for: std::time::Duration,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        PgStore::settle_lost_nodes(self, silent_for, at)
    }

    fn dispatch_run(&mut self, id: i64, commit: &str) -> Result<bool, StoreError> {
        PgStore::dispatch_run(self, id, commit)
    }

    fn claim_runs(
        &mut self,
        limit: usize,
        offered: &[(String, String)],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        PgStore::claim_runs(self, limit, offered, at)
    }

    fn active_counts(&self) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        PgStore::active_counts(self)
    }

    fn notify(&mut self, channel: &'static str) -> Result<(), StoreError> {
        PgStore::notify(self, channel)
    }

    fn request_run(
        &mut self,
        new: &super::NewRun,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<i64>, StoreError> {
        PgStore::request_run(self, new, at)
    }

    fn requested_runs(&self) -> Result<Vec<Run>, StoreError> {
        PgStore::requested_runs(self)
    }

    fn cancel_waiting(
        &mut self,
        id: i64,
        reason: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        PgStore::cancel_waiting(self, id, reason, at)
    }

    fn ask_cancel(
        &mut self,
        id: i64,
        node: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        PgStore::ask_cancel(self, id, node, at)
    }

    fn cancels_asked(&self, running: &[i64]) -> Result<Vec<i64>, StoreError> {
        PgStore::cancels_asked(self, running)
    }

    delegate! { PgStore;
        fn begin_batch(&mut self) -> Result<(), StoreError>;
        fn commit_batch(&mut self) -> Result<(), StoreError>;
        fn rollback_batch(&mut self) -> ();
        fn insert_run(&mut self, new: &super::NewRun, now: chrono::DateTime<chrono::Utc>) -> Result<Option<i64>, StoreError>;
        fn claim_slots(&mut self, rows: &[super::NewRun], cursor: Option<super::SlotCursor<'_>>, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Option<i64>>, StoreError>;
        fn start_run(&mut self, id: i64, commit: &str, at: chrono::DateTime<chrono::Utc>) -> Result<bool, StoreError>;
        fn record_progress(&mut self, progress: &[super::Progress]) -> Result<(), StoreError>;
        fn insert_retry(&mut self, ended: i64, next: &super::NewRun, now: chrono::DateTime<chrono::Utc>) -> Result<Option<i64>, StoreError>;
        fn retry_decided(&mut self, id: i64) -> Result<(), StoreError>;
        fn finish_run(&mut self, id: i64, state: RunState, exit_code: Option<i32>, reason: Option<&str>, at: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;
        fn mark_pending(&mut self, id: i64) -> Result<(), StoreError>;
        fn prune_runs(&mut self, keep: usize, older_than: chrono::DateTime<chrono::Utc>) -> Result<Vec<i64>, StoreError>;
        fn set_anchor(&mut self, deployment: &str, schedule_id: &str, anchor: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;
        fn set_cursor(&mut self, deployment: &str, schedule_id: &str, at: chrono::DateTime<chrono::Utc>, fingerprint: &str) -> Result<(), StoreError>;
        fn forget_cursors_except(&mut self, keep: &std::collections::BTreeSet<(String, String)>) -> Result<Vec<(String, String)>, StoreError>;
        fn forget_cursors(&mut self, keys: &[(String, String)]) -> Result<Vec<(String, String)>, StoreError>;
        fn record_commit(&mut self, commit: &super::AppliedCommit, good_files: &[String]) -> Result<(), StoreError>;
        fn forget_file(&mut self, path: &str) -> Result<(), StoreError>;
        fn set_health(&mut self, deployment: &str, health: &crate::notify::Health) -> Result<(), StoreError>;
        fn record_noticed(&mut self, noticed: &super::Noticed, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<crate::sla::Breach>, StoreError>;
        fn resume(&mut self, deployment: &str) -> Result<bool, StoreError>;
        fn lease_notice(&mut self, id: i64, until: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;
        fn prune_outbox(&mut self, before: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError>;
        fn notice_delivered(&mut self, id: i64, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;
        fn notice_failed(&mut self, id: i64, error: &str, retry_at: Option<chrono::DateTime<chrono::Utc>>, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;
        fn record_breaches(&mut self, breaches: &[super::NewBreach], now: chrono::DateTime<chrono::Utc>) -> Result<Vec<crate::sla::Breach>, StoreError>;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod same;
