//! Scheduler state and the notification ledger on PostgreSQL: the statements of
//! `store/state.rs` and `store/notices.rs`. Lists that SQLite orders by text are ordered
//! `COLLATE "C"` here, byte by byte as SQLite does.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use postgres::Client;

use crate::notify::{Event, Health, Target};
use crate::sla::Breach;

use super::super::{
    parse_time, time_text, AppliedCommit, Cursor, NewNotice, Notice, Noticed, OutboxCounts, Pause,
    Run, RunState, StoreError,
};
use super::{count, fit, PgStore};

fn write_health(c: &mut Client, deployment: &str, h: &Health) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO health (deployment, failing, failures_in_a_row, last_success, watch_since) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (deployment) DO UPDATE SET failing = excluded.failing, failures_in_a_row = excluded.failures_in_a_row,
             last_success = excluded.last_success, watch_since = excluded.watch_since",
        &[
            &deployment,
            &h.failing,
            &i64::from(h.failures_in_a_row),
            &h.last_success.map(time_text),
            &h.watch_since.map(time_text),
        ],
    )?;
    Ok(())
}

pub(super) fn insert_notice(
    c: &mut Client,
    notice: &NewNotice,
    now: &str,
    limit: Option<usize>,
) -> Result<(), StoreError> {
    let json =
        |v: Result<String, serde_json::Error>| v.map_err(|e| StoreError::Corrupt(e.to_string()));
    let target = json(serde_json::to_string(&notice.target))?;
    let payload = json(serde_json::to_string(&notice.payload))?;
    fit(limit, &target)?;
    fit(limit, &payload)?;
    c.execute(
        "INSERT INTO outbox (deployment, run_id, event, target, payload, created_at, next_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[
            &notice.payload.deployment,
            &notice.payload.run_id,
            &notice.payload.event.as_str(),
            &target,
            &payload,
            &now,
        ],
    )?;
    Ok(())
}

pub(super) fn opt_time(text: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(parse_time).transpose()
}

impl PgStore {
    pub(super) fn cursor(
        &self,
        deployment: &str,
        schedule_id: &str,
    ) -> Result<Option<Cursor>, StoreError> {
        let (deployment, schedule_id) = (deployment.to_string(), schedule_id.to_string());
        self.read(move |c| {
            let row = c.query_opt(
                "SELECT last_slot, fingerprint, anchor FROM cursors WHERE deployment = $1 AND schedule_id = $2",
                &[&deployment, &schedule_id],
            )?;
            row.map(|r| {
                Ok(Cursor {
                    last_slot: parse_time(r.try_get(0)?)?,
                    fingerprint: r.try_get(1)?,
                    anchor: opt_time(r.try_get(2)?)?,
                })
            })
            .transpose()
        })
    }

    pub(super) fn set_anchor(
        &mut self,
        deployment: &str,
        schedule_id: &str,
        anchor: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (deployment, schedule_id, anchor) = (
            deployment.to_string(),
            schedule_id.to_string(),
            time_text(anchor),
        );
        self.write(move |c| {
            c.execute(
                "UPDATE cursors SET anchor = $3 WHERE deployment = $1 AND schedule_id = $2",
                &[&deployment, &schedule_id, &anchor],
            )?;
            Ok(())
        })
    }

    pub(super) fn set_cursor(
        &mut self,
        deployment: &str,
        schedule_id: &str,
        at: DateTime<Utc>,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        let (deployment, schedule_id, at, fingerprint) = (
            deployment.to_string(),
            schedule_id.to_string(),
            time_text(at),
            fingerprint.to_string(),
        );
        self.write(move |c| {
            super::runs::set_cursor(c, &deployment, &schedule_id, &at, &fingerprint)
        })
    }

    pub(super) fn forget_cursors_except(
        &mut self,
        keep: &BTreeSet<(String, String)>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let keep = keep.clone();
        self.write(move |c| {
            let all: Vec<(String, String)> = c
                .query("SELECT deployment, schedule_id FROM cursors", &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, StoreError>>()?;
            let gone: Vec<(String, String)> =
                all.into_iter().filter(|k| !keep.contains(k)).collect();
            for (deployment, schedule_id) in &gone {
                c.execute(
                    "DELETE FROM cursors WHERE deployment = $1 AND schedule_id = $2",
                    &[deployment, schedule_id],
                )?;
            }
            Ok(gone)
        })
    }

    pub(super) fn forget_cursors(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.write(move |c| {
            let mut gone = Vec::new();
            for (deployment, schedule_id) in keys {
                let deleted = c.execute(
                    "DELETE FROM cursors WHERE deployment = $1 AND schedule_id = $2",
                    &[&deployment, &schedule_id],
                )?;
                if deleted > 0 {
                    gone.push((deployment, schedule_id));
                }
            }
            Ok(gone)
        })
    }

    pub(super) fn record_commit(
        &mut self,
        commit: &AppliedCommit,
        good_files: &[String],
    ) -> Result<(), StoreError> {
        let errors = serde_json::to_string(&commit.errors).unwrap_or_default();
        let warnings = serde_json::to_string(&commit.warnings).unwrap_or_default();
        for text in [&commit.summary, &errors, &warnings] {
            fit(self.max_value, text)?;
        }
        let (sha, applied_at, summary) = (
            commit.sha.clone(),
            time_text(commit.applied_at),
            commit.summary.clone(),
        );
        let good_files = good_files.to_vec();
        self.write(move |c| {
            c.execute(
                "INSERT INTO commits (sha, applied_at, summary, errors, warnings) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (sha) DO UPDATE SET applied_at = excluded.applied_at, errors = excluded.errors, warnings = excluded.warnings",
                &[&sha, &applied_at, &summary, &errors, &warnings],
            )?;
            let stmt = c.prepare(
                "INSERT INTO good_files (path, commit_sha) VALUES ($1, $2)
                 ON CONFLICT (path) DO UPDATE SET commit_sha = excluded.commit_sha",
            )?;
            for path in &good_files {
                c.execute(&stmt, &[path, &sha])?;
            }
            Ok(())
        })
    }

    pub(super) fn last_commit(&self) -> Result<Option<AppliedCommit>, StoreError> {
        self.read(|c| {
            let Some(r) = c.query_opt(
                "SELECT sha, applied_at, summary, errors, warnings FROM commits ORDER BY applied_at DESC, seq DESC LIMIT 1",
                &[],
            )?
            else {
                return Ok(None);
            };
            let list = |text: &str| {
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("commit findings: {e}")))
            };
            Ok(Some(AppliedCommit {
                sha: r.try_get(0)?,
                applied_at: parse_time(r.try_get(1)?)?,
                summary: r.try_get(2)?,
                errors: list(r.try_get(3)?)?,
                warnings: list(r.try_get(4)?)?,
            }))
        })
    }

    pub(super) fn good_files(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT path, commit_sha FROM good_files ORDER BY path COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    pub(super) fn forget_file(&mut self, path: &str) -> Result<(), StoreError> {
        let path = path.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM good_files WHERE path = $1", &[&path])?;
            Ok(())
        })
    }

    pub(super) fn marked_runs(
        &self,
        limit: usize,
    ) -> Result<Vec<(Run, Option<RunState>)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let sql = format!(
                "SELECT {}, noticed FROM runs WHERE notice_due = true ORDER BY id LIMIT $1",
                super::super::run::COLUMNS
            );
            c.query(&sql, &[&limit])?
                .iter()
                .map(|r| {
                    let noticed: Option<&str> = r.try_get(super::super::run::COLUMN_COUNT)?;
                    Ok((super::read_run(r)?, noticed.and_then(RunState::parse)))
                })
                .collect()
        })
    }

    pub(super) fn health(&self, deployment: &str) -> Result<Health, StoreError> {
        let deployment = deployment.to_string();
        self.read(move |c| {
            let Some(r) = c.query_opt(
                "SELECT failing, failures_in_a_row, last_success, watch_since FROM health WHERE deployment = $1",
                &[&deployment],
            )?
            else {
                return Ok(Health::default());
            };
            let failures: i64 = r.try_get(1)?;
            Ok(Health {
                failing: r.try_get(0)?,
                failures_in_a_row: u32::try_from(failures)
                    .map_err(|_| StoreError::Corrupt(format!("failures in a row {failures}")))?,
                last_success: opt_time(r.try_get(2)?)?,
                watch_since: opt_time(r.try_get(3)?)?,
            })
        })
    }

    pub(super) fn set_health(
        &mut self,
        deployment: &str,
        health: &Health,
    ) -> Result<(), StoreError> {
        let (deployment, health) = (deployment.to_string(), *health);
        self.write(move |c| write_health(c, &deployment, &health))
    }

    pub(super) fn record_noticed(
        &mut self,
        noticed: &Noticed,
        now: DateTime<Utc>,
    ) -> Result<Vec<Breach>, StoreError> {
        let (noticed, now, limit) = (noticed.clone(), time_text(now), self.max_value);
        let items = noticed.runs.len()
            + noticed.health.len()
            + noticed.breaches.len()
            + noticed.pauses.len()
            + noticed.outbox.len();
        self.write_sized(items, move |c| {
            let mut new = Vec::new();
            let mark = c.prepare("UPDATE runs SET notice_due = false, noticed = $2 WHERE id = $1")?;
            for (id, state) in &noticed.runs {
                c.execute(&mark, &[id, &state.as_str()])?;
            }
            for (deployment, h) in &noticed.health {
                write_health(c, deployment, h)?;
            }
            for breach in &noticed.breaches {
                if super::breaches::insert_breach(c, breach, &now, limit)? {
                    new.push(breach.breach.clone());
                }
            }
            for (deployment, note) in &noticed.pauses {
                c.execute(
                    "INSERT INTO pauses (deployment, since, note) VALUES ($1, $2, $3) ON CONFLICT (deployment) DO NOTHING",
                    &[deployment, &now, note],
                )?;
            }
            for notice in &noticed.outbox {
                insert_notice(c, notice, &now, limit)?;
            }
            Ok(new)
        })
    }

    pub(super) fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT deployment, since, note FROM pauses ORDER BY deployment COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(Pause {
                    deployment: r.try_get(0)?,
                    since: parse_time(r.try_get(1)?)?,
                    note: r.try_get(2)?,
                })
            })
            .collect()
        })
    }

    pub(super) fn resume(&mut self, deployment: &str) -> Result<bool, StoreError> {
        let deployment = deployment.to_string();
        self.write(move |c| {
            let gone = c.execute("DELETE FROM pauses WHERE deployment = $1", &[&deployment])?;
            c.execute(
                "UPDATE health SET failures_in_a_row = 0 WHERE deployment = $1",
                &[&deployment],
            )?;
            Ok(gone == 1)
        })
    }

    pub(super) fn due_notices(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notice>, StoreError> {
        let (now, limit) = (time_text(now), i64::try_from(limit).unwrap_or(i64::MAX));
        self.read(move |c| {
            let rows = c.query(
                "SELECT id, target, payload, attempts, created_at FROM outbox
                 WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= $1
                 ORDER BY next_at, id LIMIT $2",
                &[&now, &limit],
            )?;
            let mut due = Vec::new();
            for r in &rows {
                let id: i64 = r.try_get(0)?;
                let corrupt =
                    |e: serde_json::Error| StoreError::Corrupt(format!("outbox row {id}: {e}"));
                due.push(Notice {
                    id,
                    target: serde_json::from_str(r.try_get(1)?).map_err(corrupt)?,
                    payload: serde_json::from_str(r.try_get(2)?).map_err(corrupt)?,
                    attempts: count(r, 3)? as u32,
                    created_at: parse_time(r.try_get(4)?)?,
                });
            }
            Ok(due)
        })
    }

    pub(super) fn next_notice_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|c| {
            let r = c.query_one(
                "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL",
                &[],
            )?;
            opt_time(r.try_get(0)?)
        })
    }

    pub(super) fn lease_notice(&mut self, id: i64, until: DateTime<Utc>) -> Result<(), StoreError> {
        let until = time_text(until);
        self.write(move |c| {
            c.execute(
                "UPDATE outbox SET next_at = $2 WHERE id = $1",
                &[&id, &until],
            )?;
            Ok(())
        })
    }

    pub(super) fn prune_outbox(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let cut = time_text(before);
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM outbox WHERE delivered_at < $1 OR gave_up_at < $1",
                &[&cut],
            )? as usize)
        })
    }

    pub(super) fn next_notice_after(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = time_text(now);
        self.read(move |c| {
            let r = c.query_one(
                "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at > $1",
                &[&now],
            )?;
            opt_time(r.try_get(0)?)
        })
    }

    pub(super) fn notice_delivered(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = time_text(now);
        self.write(move |c| {
            c.execute(
                "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1 WHERE id = $1",
                &[&id, &now],
            )?;
            Ok(())
        })
    }

    pub(super) fn notice_failed(
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
        let error = error.to_string();
        fit(self.max_value, &error)?;
        self.write(move |c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_at = COALESCE($3, next_at), gave_up_at = $4 WHERE id = $1",
                &[&id, &error, &next, &gave_up],
            )?;
            Ok(())
        })
    }

    pub(super) fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.read(|c| {
            let r = c.query_one(
                "SELECT COUNT(CASE WHEN delivered_at IS NOT NULL THEN 1 END),
                        COUNT(CASE WHEN delivered_at IS NULL AND gave_up_at IS NULL THEN 1 END),
                        COUNT(CASE WHEN delivered_at IS NULL AND gave_up_at IS NULL AND attempts > 0 THEN 1 END),
                        COUNT(CASE WHEN gave_up_at IS NOT NULL THEN 1 END)
                 FROM outbox",
                &[],
            )?;
            let mut counts = OutboxCounts {
                delivered: count(&r, 0)?,
                waiting: count(&r, 1)?,
                failing: count(&r, 2)?,
                given_up: count(&r, 3)?,
                last_error: None,
            };
            let last = c.query_opt(
                "SELECT target, last_error, COALESCE(gave_up_at, next_at) FROM outbox
                 WHERE delivered_at IS NULL AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
                &[],
            )?;
            if let Some(r) = last {
                let target: String = r.try_get(0)?;
                let target = serde_json::from_str::<Target>(&target)
                    .map(|t| t.describe())
                    .unwrap_or(target);
                counts.last_error = Some((target, r.try_get(1)?, parse_time(r.try_get(2)?)?));
            }
            Ok(counts)
        })
    }

    pub(super) fn notices_of(
        &self,
        run_id: i64,
    ) -> Result<Vec<(Event, bool, Option<String>)>, StoreError> {
        self.read(move |c| {
            c.query(
                "SELECT event, delivered_at IS NOT NULL, last_error FROM outbox WHERE run_id = $1 ORDER BY id",
                &[&run_id],
            )?
            .iter()
            .map(|r| {
                let event: &str = r.try_get(0)?;
                let event = Event::parse(event)
                    .ok_or_else(|| StoreError::Corrupt(format!("event {event:?}")))?;
                Ok((event, r.try_get(1)?, r.try_get(2)?))
            })
            .collect()
        })
    }
}
