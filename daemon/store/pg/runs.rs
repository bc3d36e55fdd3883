//! Run rows on PostgreSQL: the statements of `store/runs.rs` and `store/slots.rs`, with
//! PostgreSQL's spelling (`$n` arguments, `RETURNING id`, booleans, aliased subqueries).

use chrono::{DateTime, Utc};
use postgres::Client;

use super::super::run::{
    NewRun, Progress, Run, RunFilter, RunState, SlotCursor, COLUMNS, RUN_TIME,
};
use super::super::{parse_time, time_text, StoreError};
use super::{fit, params, read_runs, Arg, PgStore};

const INSERT: &str = "INSERT INTO runs (deployment, schedule_id, scheduled_for, trigger, state, reason, attempt, commit_sha, parameters, created_at, ended_at, started_at, not_before, notice_due, retry_of, node, epoch)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
     ON CONFLICT DO NOTHING RETURNING id";

/// The reason of a run settled because its node went silent.
pub const NODE_LOST: &str = "node_lost";

/// What a written run carries in a cluster: the writer's node (on a row that starts
/// `Running`) and the leader's epoch.
type Stamp = (Option<String>, Option<i64>);

/// Inserts each row with one prepared statement; `None` for a slot's attempt that has a
/// row already.
pub(super) fn insert_rows(
    c: &mut Client,
    rows: &[NewRun],
    now: &str,
    limit: Option<usize>,
    stamp: &Stamp,
) -> Result<Vec<Option<i64>>, StoreError> {
    let stmt = c.prepare(INSERT)?;
    let mut ids = Vec::with_capacity(rows.len());
    for new in rows {
        let parameters = new.parameters.to_string();
        fit(limit, &parameters)?;
        fit(limit, &new.deployment)?;
        if let Some(reason) = &new.reason {
            fit(limit, reason)?;
        }
        let ended = new.state.is_final().then_some(now);
        // A row that waits (queued, retrying) has nothing to say yet.
        let notice_due = !matches!(
            new.state,
            RunState::Pending | RunState::Scheduled | RunState::AwaitingRetry
        );
        let node = stamp.0.as_ref().filter(|_| new.state == RunState::Running);
        let row = c.query_opt(
            &stmt,
            &[
                &new.deployment,
                &new.schedule_id,
                &new.scheduled_for.map(time_text),
                &new.trigger.as_str(),
                &new.state.as_str(),
                &new.reason,
                &i64::from(new.attempt),
                &new.commit,
                &parameters,
                &now,
                &ended,
                &new.started_at.map(time_text),
                &new.not_before.map(time_text),
                &notice_due,
                &new.retry_of,
                &node,
                &stamp.1,
            ],
        )?;
        ids.push(row.map(|r| r.try_get(0)).transpose()?);
    }
    Ok(ids)
}

/// Moves a cursor forward (never back); a changed definition forgets the anchor.
pub(super) fn set_cursor(
    c: &mut Client,
    deployment: &str,
    schedule_id: &str,
    at: &str,
    fingerprint: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO cursors (deployment, schedule_id, last_slot, fingerprint) VALUES ($1, $2, $3, $4)
         ON CONFLICT (deployment, schedule_id) DO UPDATE SET
             last_slot = CASE WHEN excluded.last_slot > cursors.last_slot THEN excluded.last_slot ELSE cursors.last_slot END,
             fingerprint = excluded.fingerprint,
             anchor = CASE WHEN cursors.fingerprint = excluded.fingerprint THEN cursors.anchor END",
        &[&deployment, &schedule_id, &at, &fingerprint],
    )?;
    Ok(())
}

impl PgStore {
    pub(super) fn insert_run(
        &mut self,
        new: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let (new, now, limit, stamp) = (new.clone(), time_text(now), self.max_value, self.stamp());
        self.write(move |c| Ok(insert_rows(c, std::slice::from_ref(&new), &now, limit, &stamp)?[0]))
    }

    pub(super) fn claim_slots(
        &mut self,
        rows: &[NewRun],
        cursor: Option<SlotCursor<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let (rows, now, limit, stamp) =
            (rows.to_vec(), time_text(now), self.max_value, self.stamp());
        let cursor = cursor.map(|c| {
            (
                c.deployment.to_string(),
                c.schedule_id.to_string(),
                time_text(c.last_slot),
                c.fingerprint.to_string(),
            )
        });
        self.write_sized(rows.len(), move |c| {
            let ids = insert_rows(c, &rows, &now, limit, &stamp)?;
            if let Some((deployment, schedule_id, at, fingerprint)) = cursor {
                set_cursor(c, &deployment, &schedule_id, &at, &fingerprint)?;
            }
            Ok(ids)
        })
    }

    pub(super) fn start_run(
        &mut self,
        id: i64,
        commit: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (commit, at, (node, epoch)) = (commit.to_string(), time_text(at), self.stamp());
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE runs SET state = 'Running', started_at = $2, commit_sha = $3, notice_due = true, node = $4, epoch = $5 WHERE id = $1 AND state IN ('Scheduled', 'Pending', 'AwaitingRetry')",
                &[&id, &at, &commit, &node, &epoch],
            )?;
            Ok(changed == 1)
        })
    }

    pub(super) fn record_progress(&mut self, progress: &[Progress]) -> Result<(), StoreError> {
        let progress = progress.to_vec();
        self.node_write(progress.len(), move |c| {
            let began = c.prepare("UPDATE runs SET started_at = $2 WHERE id = $1")?;
            let spawned = c.prepare("UPDATE runs SET pid = $2 WHERE id = $1")?;
            for step in progress {
                match step {
                    Progress::Began(id, at) => c.execute(&began, &[&id, &time_text(at)])?,
                    Progress::Spawned(id, pid) => c.execute(&spawned, &[&id, &i64::from(pid)])?,
                };
            }
            Ok(())
        })
    }

    pub(super) fn insert_retry(
        &mut self,
        ended: i64,
        next: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let (next, now, limit, stamp) =
            (next.clone(), time_text(now), self.max_value, self.stamp());
        self.write(move |c| {
            let id = insert_rows(c, std::slice::from_ref(&next), &now, limit, &stamp)?[0];
            c.execute(
                "UPDATE runs SET retry_pending = false, notice_due = false WHERE id = $1",
                &[&ended],
            )?;
            Ok(id)
        })
    }

    pub(super) fn retry_decided(&mut self, id: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET retry_pending = false, notice_due = true WHERE id = $1",
                &[&id],
            )?;
            Ok(())
        })
    }

    pub(super) fn retry_pending(&self) -> Result<Vec<Run>, StoreError> {
        self.read(|c| {
            read_runs(c.query(
                &format!("SELECT {COLUMNS} FROM runs WHERE retry_pending = true ORDER BY id"),
                &[],
            )?)
        })
    }

    pub(super) fn finish_run(
        &mut self,
        id: i64,
        state: RunState,
        exit_code: Option<i32>,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ended = state.is_final().then(|| time_text(at));
        let reason = reason.map(str::to_string);
        if let Some(reason) = &reason {
            fit(self.max_value, reason)?;
        }
        // An end is recorded once: a run already ended (settled as lost with its node, or
        // cancelled while it waited, or recorded before) keeps that end, and its retry
        // is not owed twice; nor at all once a cancel was asked of its node.
        self.node_write(1, move |c| {
            c.execute(
                "UPDATE runs SET state = $2, exit_code = $3, reason = CASE WHEN started_at IS NULL THEN COALESCE($4, reason) ELSE $4 END, ended_at = $5, retry_pending = $6 AND cancel_asked IS NULL, notice_due = true
                 WHERE id = $1 AND ended_at IS NULL",
                &[&id, &state.as_str(), &exit_code.map(i64::from), &reason, &ended, &state.may_retry()],
            )?;
            Ok(())
        })
    }

    /// Settles `Crashed` (reason [`NODE_LOST`], its retry owed) every run still
    /// `Running` on another node whose heartbeat the server has not seen for
    /// `silent_for`, or that never joined; returns their ids. A run whose cancel was
    /// asked is settled `Cancelled` instead, with no retry. A leader's write, fenced.
    pub(super) fn settle_lost_nodes(
        &mut self,
        silent_for: std::time::Duration,
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let (me, at, secs) = (self.node.clone(), time_text(at), silent_for.as_secs_f64());
        self.write(move |c| {
            let rows = c.query(
                "UPDATE runs SET state = CASE WHEN cancel_asked IS NULL THEN 'Crashed' ELSE 'Cancelled' END,
                        reason = CASE WHEN cancel_asked IS NULL THEN $3 ELSE 'cancelled' END,
                        ended_at = $2, retry_pending = cancel_asked IS NULL, notice_due = true
                 WHERE state = 'Running' AND node IS NOT NULL AND node IS DISTINCT FROM $1
                   AND NOT EXISTS (SELECT 1 FROM sundial_nodes n WHERE n.name = runs.node
                                     AND n.heartbeat_at > clock_timestamp() - make_interval(secs => $4))
                 RETURNING id",
                &[&me, &at, &NODE_LOST, &secs],
            )?;
            let mut ids: Vec<i64> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
            ids.sort_unstable();
            Ok(ids)
        })
    }

    pub(super) fn run(&self, id: i64) -> Result<Option<Run>, StoreError> {
        self.read(move |c| {
            let row = c.query_opt(&format!("SELECT {COLUMNS} FROM runs WHERE id = $1"), &[&id])?;
            row.as_ref().map(super::read_run).transpose()
        })
    }

    pub(super) fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let mut terms = Vec::new();
        let mut args = Vec::new();
        let mut term = |text: String, arg: Arg| {
            args.push(arg);
            terms.push(text.replace('?', &format!("${}", args.len())));
        };
        if let Some(d) = &filter.deployment {
            term("deployment = ?".into(), Arg::Text(Some(d.clone())));
        }
        if let Some(s) = filter.state {
            term("state = ?".into(), Arg::Text(Some(s.as_str().into())));
        }
        if let Some(t) = filter.trigger {
            term("trigger = ?".into(), Arg::Text(Some(t.as_str().into())));
        }
        if let Some(since) = filter.since {
            term(
                format!("{RUN_TIME} >= ?"),
                Arg::Text(Some(time_text(since))),
            );
        }
        if let Some(until) = filter.until {
            term(format!("{RUN_TIME} < ?"), Arg::Text(Some(time_text(until))));
        }
        if let Some(before) = filter.before {
            term("id < ?".into(), Arg::Int(Some(before)));
        }
        let condition = if terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", terms.join(" AND "))
        };
        let limit = match i64::try_from(filter.limit) {
            Ok(n) => n.to_string(),
            Err(_) => "ALL".into(),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE id IN
                (SELECT id FROM runs {condition} ORDER BY id DESC LIMIT {limit})
             ORDER BY id DESC"
        );
        self.read(move |c| read_runs(c.query(&sql, &params(&args))?))
    }

    pub(super) fn attempts_of(&self, run: &Run) -> Result<Vec<Run>, StoreError> {
        let (Some(schedule_id), Some(at)) = (run.schedule_id.clone(), run.scheduled_for) else {
            return Ok(vec![run.clone()]);
        };
        let (deployment, at) = (run.deployment.clone(), time_text(at));
        self.read(move |c| {
            read_runs(c.query(
                &format!("SELECT {COLUMNS} FROM runs WHERE deployment = $1 AND schedule_id = $2 AND scheduled_for = $3 ORDER BY attempt"),
                &[&deployment, &schedule_id, &at],
            )?)
        })
    }

    pub(super) fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.read(|c| {
            read_runs(c.query(
                &format!("SELECT {COLUMNS} FROM runs WHERE state IN ('Scheduled', 'Pending', 'Running', 'AwaitingRetry') ORDER BY id"),
                &[],
            )?)
        })
    }

    pub(super) fn mark_pending(&mut self, id: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET state = 'Pending' WHERE id = $1 AND state IN ('Scheduled', 'AwaitingRetry')",
                &[&id],
            )?;
            Ok(())
        })
    }

    pub(super) fn prune_runs(
        &mut self,
        keep: usize,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let (keep, older_than) = (keep as i64, time_text(older_than));
        self.write(move |c| {
            let ids: Vec<i64> = c
                .query(
                    "SELECT id FROM (
                        SELECT id, state, ended_at,
                               ROW_NUMBER() OVER (PARTITION BY deployment ORDER BY id DESC) AS rank
                        FROM runs) AS ranked
                     WHERE state IN ('Completed', 'Failed', 'TimedOut', 'Crashed', 'Cancelled', 'Skipped')
                       AND (rank > $1 OR ended_at < $2)
                     ORDER BY id",
                    &[&keep, &older_than],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            for chunk in ids.chunks(500) {
                c.execute("DELETE FROM runs WHERE id = ANY($1)", &[&chunk])?;
            }
            Ok(ids)
        })
    }

    pub(super) fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.read(|c| {
            read_runs(c.query(
                &format!("SELECT {COLUMNS} FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY deployment)"),
                &[],
            )?)
        })
    }

    pub(super) fn slot_rows(
        &self,
        deployment: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let (deployment, from, to, limit) = (
            deployment.to_string(),
            time_text(from),
            time_text(to),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        let sql = format!(
            "SELECT * FROM (SELECT {COLUMNS} FROM runs
                WHERE deployment = $1 AND schedule_id IS NOT NULL AND scheduled_for >= $2 AND scheduled_for <= $3
                ORDER BY scheduled_for, attempt LIMIT $4) AS range
             UNION ALL
             SELECT * FROM (SELECT {COLUMNS} FROM runs
                WHERE deployment = $1 AND schedule_id IS NOT NULL AND scheduled_for < $2
                  AND state = 'Skipped' AND reason LIKE 'missed: %'
                ORDER BY scheduled_for DESC LIMIT 20) AS missed"
        );
        self.read(move |c| read_runs(c.query(&sql, &[&deployment, &from, &to, &limit])?))
    }

    pub(super) fn first_slots(
        &self,
        deployment: &str,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let deployment = deployment.to_string();
        self.read(move |c| {
            let rows = c.query(
                "SELECT schedule_id, MIN(scheduled_for) FROM runs
                 WHERE deployment = $1 AND schedule_id IS NOT NULL GROUP BY schedule_id",
                &[&deployment],
            )?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, parse_time(r.try_get(1)?)?)))
                .collect()
        })
    }
}
