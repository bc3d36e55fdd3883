//! SLA breaches on PostgreSQL: the statements of `store/breaches.rs`.

use chrono::{DateTime, Utc};
use postgres::Client;

use crate::sla::Breach;

use super::super::{parse_time, time_text, NewBreach, StoreError, StoredBreach};
use super::ledger::insert_notice;
use super::{count, fit, PgStore};

/// Records a breach unless its subject is recorded; its notices only when it is new.
pub(super) fn insert_breach(
    c: &mut Client,
    new: &NewBreach,
    now: &str,
    limit: Option<usize>,
) -> Result<bool, StoreError> {
    let b = &new.breach;
    fit(limit, &b.detail)?;
    let added = c.execute(
        "INSERT INTO breaches (deployment, sla, kind, severity, subject, run_id, at, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        &[
            &new.deployment,
            &b.sla,
            &b.kind,
            &b.severity,
            &b.subject,
            &b.run_id,
            &now,
            &b.detail,
        ],
    )? == 1;
    if added {
        for notice in &new.notices {
            insert_notice(c, notice, now, limit)?;
        }
    }
    Ok(added)
}

impl PgStore {
    pub(super) fn record_breaches(
        &mut self,
        breaches: &[NewBreach],
        now: DateTime<Utc>,
    ) -> Result<Vec<Breach>, StoreError> {
        let (breaches, now, limit) = (breaches.to_vec(), time_text(now), self.max_value);
        self.write(move |c| {
            let mut new = Vec::new();
            for b in &breaches {
                if insert_breach(c, b, &now, limit)? {
                    new.push(b.breach.clone());
                }
            }
            Ok(new)
        })
    }

    pub(super) fn has_breach(
        &self,
        deployment: &str,
        sla: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        let args = [deployment.to_string(), sla.to_string(), subject.to_string()];
        self.read(move |c| {
            Ok(c.query_one(
                "SELECT EXISTS (SELECT 1 FROM breaches WHERE deployment = $1 AND sla = $2 AND subject = $3)",
                &[&args[0], &args[1], &args[2]],
            )?
            .try_get(0)?)
        })
    }

    pub(super) fn breaches(
        &self,
        deployment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredBreach>, StoreError> {
        let (deployment, limit) = (
            deployment.map(str::to_string),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.read(move |c| {
            c.query(
                "SELECT id, deployment, sla, kind, severity, subject, run_id, at, detail FROM breaches
                 WHERE CAST($1 AS TEXT) IS NULL OR deployment = $1 ORDER BY id DESC LIMIT $2",
                &[&deployment, &limit],
            )?
            .iter()
            .map(|r| {
                Ok(StoredBreach {
                    id: r.try_get(0)?,
                    deployment: r.try_get(1)?,
                    sla: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    severity: r.try_get(4)?,
                    subject: r.try_get(5)?,
                    run_id: r.try_get(6)?,
                    at: parse_time(r.try_get(7)?)?,
                    detail: r.try_get(8)?,
                })
            })
            .collect()
        })
    }

    pub(super) fn breach_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT deployment, sla, COUNT(*) FROM breaches GROUP BY deployment, sla",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, count(r, 2)?)))
            .collect()
        })
    }
}
