//! SLA breaches: each recorded once per (deployment, SLA, subject), with the notices it
//! sends put in the outbox in the same transaction only when the breach is new.

use chrono::{DateTime, Utc};

use crate::sla::Breach;

use super::notices::insert_notice;
use super::{parse_time, time_text, NewNotice, Store, StoreError};

/// A breach to record, with what it tells.
#[derive(Debug, Clone)]
pub struct NewBreach {
    pub deployment: String,
    pub breach: Breach,
    pub notices: Vec<NewNotice>,
}

/// A recorded breach.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBreach {
    pub id: i64,
    pub deployment: String,
    pub sla: String,
    pub kind: String,
    pub severity: String,
    pub subject: String,
    pub run_id: Option<i64>,
    pub at: DateTime<Utc>,
    pub detail: String,
}

/// Records `new` unless its subject is already recorded; true when it was new.
pub(super) fn insert(
    tx: &rusqlite::Connection,
    new: &NewBreach,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let b = &new.breach;
    let added = tx.execute(
        "INSERT INTO breaches (deployment, sla, kind, severity, subject, run_id, at, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        (
            &new.deployment,
            &b.sla,
            b.kind,
            &b.severity,
            &b.subject,
            b.run_id,
            time_text(now),
            &b.detail,
        ),
    )? == 1;
    if added {
        for notice in &new.notices {
            insert_notice(tx, notice, now)?;
        }
    }
    Ok(added)
}

impl Store {
    /// Records breaches found outside a notice pass; returns those that were new.
    pub fn record_breaches(
        &mut self,
        breaches: &[NewBreach],
        now: DateTime<Utc>,
    ) -> Result<Vec<Breach>, StoreError> {
        let tx = self.conn.savepoint()?;
        let mut new = Vec::new();
        for b in breaches {
            if insert(&tx, b, now)? {
                new.push(b.breach.clone());
            }
        }
        tx.commit()?;
        Ok(new)
    }

    /// Whether a breach of this subject is recorded (to skip building its notices).
    pub fn has_breach(
        &self,
        deployment: &str,
        sla: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM breaches WHERE deployment = ?1 AND sla = ?2 AND subject = ?3)",
            (deployment, sla, subject),
            |r| r.get(0),
        )?)
    }

    /// Breaches, newest first, of one deployment or all, at most `limit`.
    pub fn breaches(
        &self,
        deployment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredBreach>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, deployment, sla, kind, severity, subject, run_id, at, detail FROM breaches
             WHERE ?1 IS NULL OR deployment = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map((deployment, limit as i64), |r| {
            Ok((
                StoredBreach {
                    id: r.get(0)?,
                    deployment: r.get(1)?,
                    sla: r.get(2)?,
                    kind: r.get(3)?,
                    severity: r.get(4)?,
                    subject: r.get(5)?,
                    run_id: r.get(6)?,
                    at: DateTime::<Utc>::MIN_UTC,
                    detail: r.get(8)?,
                },
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut b, at) = row?;
            b.at = parse_time(&at)?;
            out.push(b);
        }
        Ok(out)
    }

    /// How many breaches each (deployment, SLA) has, for `/metrics`.
    pub fn breach_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT deployment, sla, COUNT(*) FROM breaches GROUP BY deployment, sla",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
