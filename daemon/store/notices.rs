//! The notification ledger: run rows marked for noticing, each deployment's recent
//! outcomes ([`Health`]), and the outbox of deliveries. Everything a pass derives is
//! written in one transaction with the clearing of the marks it read, so each event is
//! put in the outbox exactly once; the outbox keeps a delivery until it succeeds or is
//! given up, so it is delivered at least once.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;

use crate::notify::{Event, Health, Payload, Target};

use super::run::{read_row, COLUMNS};
use super::{parse_time, time_text, Run, RunState, Store, StoreError};

/// A delivery to make.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    pub target: Target,
    pub payload: Payload,
}

/// A delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub id: i64,
    pub target: Target,
    pub payload: Payload,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// How the outbox stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxCounts {
    pub delivered: u64,
    /// Waiting, never tried or after failed tries.
    pub waiting: u64,
    /// Waiting after at least one failed try.
    pub failing: u64,
    pub given_up: u64,
    /// The newest failure still waiting or given up: target, error, when.
    pub last_error: Option<(String, String, DateTime<Utc>)>,
}

/// What one pass read and derived, to record at once.
#[derive(Debug, Default, Clone)]
pub struct Noticed {
    /// Each run read, with the state its events were derived for.
    pub runs: Vec<(i64, RunState)>,
    pub health: Vec<(String, Health)>,
    pub outbox: Vec<NewNotice>,
    /// Deployments to pause, with the note that says why.
    pub pauses: Vec<(String, String)>,
    /// SLA breaches found, each with its notices (put in the outbox only if the breach
    /// is new).
    pub breaches: Vec<super::NewBreach>,
}

/// A deployment paused at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub deployment: String,
    pub since: DateTime<Utc>,
    pub note: String,
}

impl Store {
    /// Up to `limit` marked runs, oldest first, with the state last noticed.
    pub fn marked_runs(&self, limit: usize) -> Result<Vec<(Run, Option<RunState>)>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, noticed FROM runs WHERE notice_due = 1 ORDER BY id LIMIT ?1"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([limit as i64], |row| {
            let noticed: Option<String> = row.get(super::run::COLUMN_COUNT)?;
            Ok(read_row(row)?.map(|run| (run, noticed.as_deref().and_then(RunState::parse))))
        })?;
        rows.map(|r| r?).collect()
    }

    /// A deployment's recent outcomes (all clear when none are recorded).
    pub fn health(&self, deployment: &str) -> Result<Health, StoreError> {
        let found = self
            .conn
            .query_row(
                "SELECT failing, failures_in_a_row, last_success, watch_since FROM health WHERE deployment = ?1",
                [deployment],
                |r| {
                    Ok((
                        r.get::<_, bool>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((failing, failures_in_a_row, last_success, watch_since)) = found else {
            return Ok(Health::default());
        };
        Ok(Health {
            failing,
            failures_in_a_row,
            last_success: last_success.as_deref().map(parse_time).transpose()?,
            watch_since: watch_since.as_deref().map(parse_time).transpose()?,
        })
    }

    /// Stores a deployment's health.
    pub fn set_health(&mut self, deployment: &str, health: &Health) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        write_health(&tx, deployment, health)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a pass: clears the marks of the runs read (unless the row changed since,
    /// which cannot happen while the engine is the only writer), stores the health and
    /// fills the outbox, in one transaction. Returns the breaches that were new.
    pub fn record_noticed(
        &mut self,
        noticed: &Noticed,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::sla::Breach>, StoreError> {
        let mut new = Vec::new();
        let tx = self.conn.savepoint()?;
        for (id, state) in &noticed.runs {
            tx.execute(
                "UPDATE runs SET notice_due = 0, noticed = ?2 WHERE id = ?1",
                (id, state.as_str()),
            )?;
        }
        for (deployment, h) in &noticed.health {
            write_health(&tx, deployment, h)?;
        }
        for breach in &noticed.breaches {
            if super::breaches::insert(&tx, breach, now)? {
                new.push(breach.breach.clone());
            }
        }
        for (deployment, note) in &noticed.pauses {
            tx.execute(
                "INSERT INTO pauses (deployment, since, note) VALUES (?1, ?2, ?3) ON CONFLICT (deployment) DO NOTHING",
                (deployment, time_text(now), note),
            )?;
        }
        for notice in &noticed.outbox {
            insert_notice(&tx, notice, now)?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Every deployment paused at run time.
    pub fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT deployment, since, note FROM pauses ORDER BY deployment")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (deployment, since, note) = row?;
            out.push(Pause {
                deployment,
                since: parse_time(&since)?,
                note,
            });
        }
        Ok(out)
    }

    /// Ends a deployment's pause, and starts its count of failures in a row again (it
    /// stays failing, so its next success is a recovery). False if it was not paused.
    pub fn resume(&mut self, deployment: &str) -> Result<bool, StoreError> {
        let tx = self.conn.savepoint()?;
        let gone = tx.execute("DELETE FROM pauses WHERE deployment = ?1", [deployment])?;
        tx.execute(
            "UPDATE health SET failures_in_a_row = 0 WHERE deployment = ?1",
            [deployment],
        )?;
        tx.commit()?;
        Ok(gone == 1)
    }

    /// Deliveries due at `now`, oldest first, at most `limit`.
    pub fn due_notices(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Notice>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, target, payload, attempts, created_at FROM outbox
             WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= ?1
             ORDER BY next_at, id LIMIT ?2",
        )?;
        let rows = stmt.query_map((time_text(now), limit as i64), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut due = Vec::new();
        for row in rows {
            let (id, target, payload, attempts, created_at) = row?;
            let corrupt =
                |e: serde_json::Error| StoreError::Corrupt(format!("outbox row {id}: {e}"));
            due.push(Notice {
                id,
                target: serde_json::from_str(&target).map_err(corrupt)?,
                payload: serde_json::from_str(&payload).map_err(corrupt)?,
                attempts,
                created_at: parse_time(&created_at)?,
            });
        }
        Ok(due)
    }

    /// When the next waiting delivery is due.
    pub fn next_notice_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> = self.conn.query_row(
            "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        next.as_deref().map(parse_time).transpose()
    }

    /// Moves a delivery's next try to `until` while it is under way (a daemon that dies
    /// meanwhile tries it again then).
    pub fn lease_notice(&mut self, id: i64, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET next_at = ?2 WHERE id = ?1",
            (id, time_text(until)),
        )?;
        Ok(())
    }

    /// Deletes deliveries that ended (delivered or given up) before `before`.
    pub fn prune_outbox(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let cut = time_text(before);
        Ok(self.conn.execute(
            "DELETE FROM outbox WHERE delivered_at < ?1 OR gave_up_at < ?1",
            [cut],
        )?)
    }

    /// When the next waiting delivery falls due after `now` (what is due already waits
    /// for a place or its target).
    pub fn next_notice_after(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> = self.conn.query_row(
            "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at > ?1",
            [time_text(now)],
            |r| r.get(0),
        )?;
        next.as_deref().map(parse_time).transpose()
    }

    pub fn notice_delivered(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            (id, time_text(now)),
        )?;
        Ok(())
    }

    /// Records a failed try: tried again at `retry_at`, or given up when that is `None`.
    pub fn notice_failed(
        &mut self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (next, gave_up) = match retry_at {
            Some(at) => (Some(time_text(at)), None),
            None => (None, Some(time_text(now))),
        };
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_at = COALESCE(?3, next_at), gave_up_at = ?4 WHERE id = ?1",
            (id, error, next, gave_up),
        )?;
        Ok(())
    }

    /// The outbox at a glance, for the status, `/metrics` and the dashboard.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let mut counts = self.conn.query_row(
            "SELECT COALESCE(SUM(delivered_at IS NOT NULL), 0),
                    COALESCE(SUM(delivered_at IS NULL AND gave_up_at IS NULL), 0),
                    COALESCE(SUM(delivered_at IS NULL AND gave_up_at IS NULL AND attempts > 0), 0),
                    COALESCE(SUM(gave_up_at IS NOT NULL), 0)
             FROM outbox",
            [],
            |r| {
                Ok(OutboxCounts {
                    delivered: r.get::<_, i64>(0)? as u64,
                    waiting: r.get::<_, i64>(1)? as u64,
                    failing: r.get::<_, i64>(2)? as u64,
                    given_up: r.get::<_, i64>(3)? as u64,
                    last_error: None,
                })
            },
        )?;
        let last: Option<(String, String, String)> = self
            .conn
            .query_row(
                "SELECT target, last_error, COALESCE(gave_up_at, next_at) FROM outbox
                 WHERE delivered_at IS NULL AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((target, error, at)) = last {
            let target = serde_json::from_str::<Target>(&target)
                .map(|t| t.describe())
                .unwrap_or(target);
            counts.last_error = Some((target, error, parse_time(&at)?));
        }
        Ok(counts)
    }

    /// The deliveries of a run (for tests and the run's page): event, delivered?, error.
    pub fn notices_of(
        &self,
        run_id: i64,
    ) -> Result<Vec<(Event, bool, Option<String>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event, delivered_at IS NOT NULL, last_error FROM outbox WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (event, delivered, error) = row?;
            let event = Event::parse(&event)
                .ok_or_else(|| StoreError::Corrupt(format!("event {event:?}")))?;
            out.push((event, delivered, error));
        }
        Ok(out)
    }
}

fn write_health(tx: &rusqlite::Connection, deployment: &str, h: &Health) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO health (deployment, failing, failures_in_a_row, last_success, watch_since) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (deployment) DO UPDATE SET failing = excluded.failing, failures_in_a_row = excluded.failures_in_a_row,
             last_success = excluded.last_success, watch_since = excluded.watch_since",
        (
            deployment,
            h.failing,
            h.failures_in_a_row,
            h.last_success.map(time_text),
            h.watch_since.map(time_text),
        ),
    )?;
    Ok(())
}

/// Puts one delivery in the outbox, due now.
pub(super) fn insert_notice(
    tx: &rusqlite::Connection,
    notice: &NewNotice,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json =
        |v: Result<String, serde_json::Error>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
    tx.execute(
        "INSERT INTO outbox (deployment, run_id, event, target, payload, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        (
            &notice.payload.deployment,
            notice.payload.run_id,
            notice.payload.event.as_str(),
            json(serde_json::to_string(&notice.target))?,
            json(serde_json::to_string(&notice.payload))?,
            time_text(now),
        ),
    )?;
    Ok(())
}
