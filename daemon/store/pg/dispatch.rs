//! Runs spread over the nodes of a cluster: the leader *dispatches* a run (its row
//! `Scheduled`, no node), and any node *claims* it with `FOR UPDATE SKIP LOCKED` before
//! it starts it, so each row is claimed by one node, and its claim is committed before
//! its process starts. The leader counts what is dispatched or running per deployment
//! across every node, which is how a concurrency limit holds across nodes.
//!
//! Wake-ups travel as notifications: `sundial_ready` (runs were dispatched: claim them),
//! `sundial_wake` (a run ended somewhere: the leader drains queues and decides
//! retries) and `sundial_cancel` (a cancel was asked of the node that runs a run). Sent inside a transaction, a notification is delivered when it commits.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::super::run::{Run, COLUMNS};
use super::super::{time_text, StoreError};
use super::{read_runs, PgStore};

/// Runs were dispatched: nodes with room claim them.
pub const READY: &str = "sundial_ready";
/// A run ended, or a waiting run appeared: the leader looks at its queues and retries.
pub const WAKE: &str = "sundial_wake";
/// A cancel was asked of a run on another node: each node looks for its own.
pub const CANCEL: &str = "sundial_cancel";
/// The reason a manual run asked of a standby carries until the leader dispatches it.
pub const ASKED: &str = "asked of the leader";

impl PgStore {
    /// Makes a waiting run (`Pending`, `AwaitingRetry`, `Scheduled`) claimable at the
    /// commit it will run; false when it no longer waits. A leader's write.
    pub(super) fn dispatch_run(&mut self, id: i64, commit: &str) -> Result<bool, StoreError> {
        let (commit, epoch) = (commit.to_string(), self.stamp().1);
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE runs SET state = 'Scheduled', node = NULL, commit_sha = $2, epoch = $3,
                        reason = NULLIF(reason, $4)
                 WHERE id = $1 AND state IN ('Scheduled', 'Pending', 'AwaitingRetry') AND ended_at IS NULL",
                &[&id, &commit, &epoch, &ASKED],
            )?;
            Ok(changed == 1)
        })
    }

    /// Claims up to `limit` dispatched runs for this node, oldest slot first, among those
    /// of the (deployment, commit) pairs `offered` (what this node has applied): they are
    /// `Running` on this node once this returns. A node's write.
    pub(super) fn claim_runs(
        &mut self,
        limit: usize,
        offered: &[(String, String)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        let Some(node) = self.node.clone() else {
            return Ok(Vec::new());
        };
        if limit == 0 || offered.is_empty() {
            return Ok(Vec::new());
        }
        let (names, commits): (Vec<String>, Vec<String>) = offered.iter().cloned().unzip();
        let (at, limit) = (time_text(at), limit as i64);
        self.node_write(1, move |c| {
            let rows = c.query(
                &format!(
                    "UPDATE runs SET state = 'Running', node = $1, started_at = $2, notice_due = true
                     WHERE id IN (
                         SELECT id FROM runs
                          WHERE state = 'Scheduled' AND node IS NULL AND ended_at IS NULL
                            AND (deployment, commit_sha) IN (SELECT * FROM unnest($3::text[], $4::text[]))
                          ORDER BY COALESCE(scheduled_for, created_at), id
                          LIMIT $5
                          FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&node, &at, &names, &commits, &limit],
            )?;
            let mut runs = read_runs(rows)?;
            runs.sort_by_key(|r| (r.scheduled_for.unwrap_or(r.created_at), r.id));
            Ok(runs)
        })
    }

    /// How many runs of each deployment are dispatched or running, on every node.
    pub(super) fn active_counts(&self) -> Result<HashMap<String, usize>, StoreError> {
        self.read(|c| {
            let mut counts = HashMap::new();
            for row in c.query(
                "SELECT deployment, count(*) FROM runs WHERE state IN ('Scheduled', 'Running') AND ended_at IS NULL GROUP BY deployment",
                &[],
            )? {
                let n: i64 = row.try_get(1)?;
                counts.insert(row.try_get(0)?, n.max(0) as usize);
            }
            Ok(counts)
        })
    }

    /// A manual run asked of a node that does not lead: written `Pending` with no epoch,
    /// with a wake-up for the leader in the same transaction; the leader admits it. A
    /// node's write.
    pub(super) fn request_run(
        &mut self,
        new: &super::super::NewRun,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let (new, at, limit) = (new.clone(), time_text(at), self.max_value);
        self.node_write(1, move |c| {
            let id =
                super::runs::insert_rows(c, std::slice::from_ref(&new), &at, limit, &(None, None))?
                    [0];
            c.execute("SELECT pg_notify($1, '')", &[&WAKE])?;
            Ok(id)
        })
    }

    /// Manual runs asked of other nodes that no leader has taken in yet (`Pending`, no
    /// epoch), oldest first.
    pub(super) fn requested_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.read(|c| {
            read_runs(c.query(
                &format!("SELECT {COLUMNS} FROM runs WHERE state = 'Pending' AND epoch IS NULL AND ended_at IS NULL ORDER BY id"),
                &[],
            )?)
        })
    }

    /// Sends `channel`'s notification, delivered when the current transaction commits.
    pub(super) fn notify(&mut self, channel: &'static str) -> Result<(), StoreError> {
        self.node_write(1, move |c| {
            c.execute("SELECT pg_notify($1, '')", &[&channel])?;
            Ok(())
        })
    }

    /// Asks `node`, which runs run `id`, to cancel it: the time is kept in the row and
    /// `node` is told in the same transaction; false when the run no longer runs there.
    /// A node's write (any node may ask).
    pub(super) fn ask_cancel(
        &mut self,
        id: i64,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (node, at) = (node.to_string(), time_text(at));
        self.node_write(1, move |c| {
            let changed = c.execute(
                "UPDATE runs SET cancel_asked = COALESCE(cancel_asked, $3)
                 WHERE id = $1 AND node = $2 AND state = 'Running' AND ended_at IS NULL",
                &[&id, &node, &at],
            )?;
            if changed == 1 {
                c.execute("SELECT pg_notify($1, '')", &[&CANCEL])?;
            }
            Ok(changed == 1)
        })
    }

    /// Of `running` (the runs whose processes this node runs), those another node asked
    /// to cancel, whatever their rows say now: a run the leader settled while this node
    /// was cut off or stopped is still this node's to end.
    pub(super) fn cancels_asked(&self, running: &[i64]) -> Result<Vec<i64>, StoreError> {
        let Some(node) = self.node.clone() else {
            return Ok(Vec::new());
        };
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let running = running.to_vec();
        self.read(move |c| {
            c.query(
                "SELECT id FROM runs WHERE id = ANY($2) AND node = $1 AND cancel_asked IS NOT NULL ORDER BY id",
                &[&node, &running],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })
    }

    /// Cancels a run that waits (`Scheduled`, `Pending`, `AwaitingRetry`) and no node has
    /// claimed; false when it no longer waits (a node claimed it meanwhile).
    pub(super) fn cancel_waiting(
        &mut self,
        id: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (reason, at) = (reason.to_string(), time_text(at));
        self.node_write(1, move |c| {
            let changed = c.execute(
                "UPDATE runs SET state = 'Cancelled', reason = $2, ended_at = $3, notice_due = true
                 WHERE id = $1 AND state IN ('Scheduled', 'Pending', 'AwaitingRetry') AND node IS NULL AND ended_at IS NULL",
                &[&id, &reason, &at],
            )?;
            Ok(changed == 1)
        })
    }
}
