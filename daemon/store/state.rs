//! Scheduler state that must survive a restart: each schedule's cursor (the latest slot
//! already handled), the commits applied with their diagnostics, and the commit at which
//! each manifest file was last valid (its last-known-good version).

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;

use super::{parse_time, time_text, Store, StoreError};

/// A validation finding kept with its commit, shown by `/api/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A commit the daemon applied, with the findings of its validation.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedCommit {
    pub sha: String,
    pub applied_at: DateTime<Utc>,
    pub summary: String,
    pub errors: Vec<FileError>,
    pub warnings: Vec<FileError>,
}

/// A schedule's cursor: the latest slot handled, the fingerprint of the definition it was
/// planned for and, for an interval without `anchor_date`, the anchor it was planned with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub last_slot: DateTime<Utc>,
    pub fingerprint: String,
    pub anchor: Option<DateTime<Utc>>,
}

pub(super) fn set_cursor(
    tx: &rusqlite::Connection,
    deployment: &str,
    schedule_id: &str,
    at: DateTime<Utc>,
    fingerprint: &str,
) -> Result<(), StoreError> {
    // A cursor only moves forward: re-handling an old slot never rewinds it. A changed
    // definition forgets the anchor it was planned with (the right side reads old values).
    tx.prepare_cached(
        "INSERT INTO cursors (deployment, schedule_id, last_slot, fingerprint) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (deployment, schedule_id) DO UPDATE SET last_slot = MAX(last_slot, excluded.last_slot), fingerprint = excluded.fingerprint,
             anchor = CASE WHEN fingerprint = excluded.fingerprint THEN anchor END",
    )?
    .execute((deployment, schedule_id, time_text(at), fingerprint))?;
    Ok(())
}

impl Store {
    /// The cursor of a schedule: the latest slot already handled (run or recorded).
    pub fn cursor(
        &self,
        deployment: &str,
        schedule_id: &str,
    ) -> Result<Option<Cursor>, StoreError> {
        let row: Option<(String, String, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT last_slot, fingerprint, anchor FROM cursors WHERE deployment = ?1 AND schedule_id = ?2",
            )?
            .query_row((deployment, schedule_id), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        row.map(|(at, fingerprint, anchor)| {
            Ok(Cursor {
                last_slot: parse_time(&at)?,
                fingerprint,
                anchor: anchor.as_deref().map(parse_time).transpose()?,
            })
        })
        .transpose()
    }

    /// Records the anchor a schedule is planned with (an interval without `anchor_date`),
    /// on its existing cursor; kept until the schedule's definition changes or it leaves.
    pub fn set_anchor(
        &mut self,
        deployment: &str,
        schedule_id: &str,
        anchor: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE cursors SET anchor = ?3 WHERE deployment = ?1 AND schedule_id = ?2",
            (deployment, schedule_id, time_text(anchor)),
        )?;
        Ok(())
    }

    /// Plans a schedule anew from `at`: the cursor moves there (never back) and remembers
    /// the definition's fingerprint.
    pub fn set_cursor(
        &mut self,
        deployment: &str,
        schedule_id: &str,
        at: DateTime<Utc>,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        set_cursor(&tx, deployment, schedule_id, at, fingerprint)?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets the cursor of every schedule not in `keep` (deployment, schedule id): a
    /// schedule that left the branch and comes back later is planned from then, and does
    /// not catch up the time it was gone.
    pub fn forget_cursors_except(
        &mut self,
        keep: &std::collections::BTreeSet<(String, String)>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.conn.savepoint()?;
        let all: Vec<(String, String)> = {
            let mut stmt = tx.prepare("SELECT deployment, schedule_id FROM cursors")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let gone: Vec<(String, String)> = all.into_iter().filter(|k| !keep.contains(k)).collect();
        for (deployment, schedule_id) in &gone {
            tx.execute(
                "DELETE FROM cursors WHERE deployment = ?1 AND schedule_id = ?2",
                (deployment, schedule_id),
            )?;
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Forgets the cursors of these schedules (deployment, schedule id); returns those
    /// that had one.
    pub fn forget_cursors(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.conn.savepoint()?;
        let mut gone = Vec::new();
        for (deployment, schedule_id) in keys {
            let deleted = tx.execute(
                "DELETE FROM cursors WHERE deployment = ?1 AND schedule_id = ?2",
                (deployment, schedule_id),
            )?;
            if deleted > 0 {
                gone.push((deployment.clone(), schedule_id.clone()));
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Records an applied commit and, per file, the commit at which it is now known good.
    pub fn record_commit(
        &mut self,
        commit: &AppliedCommit,
        good_files: &[String],
    ) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT INTO commits (sha, applied_at, summary, errors, warnings) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sha) DO UPDATE SET applied_at = excluded.applied_at, errors = excluded.errors, warnings = excluded.warnings",
            (
                &commit.sha,
                time_text(commit.applied_at),
                &commit.summary,
                serde_json::to_string(&commit.errors).unwrap_or_default(),
                serde_json::to_string(&commit.warnings).unwrap_or_default(),
            ),
        )?;
        for path in good_files {
            tx.execute(
                "INSERT INTO good_files (path, commit_sha) VALUES (?1, ?2)
                 ON CONFLICT (path) DO UPDATE SET commit_sha = excluded.commit_sha",
                (path, &commit.sha),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The most recently applied commit.
    pub fn last_commit(&self) -> Result<Option<AppliedCommit>, StoreError> {
        let row: Option<(String, String, String, String, String)> = self
            .conn
            .query_row(
                "SELECT sha, applied_at, summary, errors, warnings FROM commits ORDER BY applied_at DESC, rowid DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((sha, applied_at, summary, errors, warnings)) = row else {
            return Ok(None);
        };
        let list = |text: &str| {
            serde_json::from_str(text)
                .map_err(|e| StoreError::Corrupt(format!("commit findings: {e}")))
        };
        Ok(Some(AppliedCommit {
            sha,
            applied_at: parse_time(&applied_at)?,
            summary,
            errors: list(&errors)?,
            warnings: list(&warnings)?,
        }))
    }

    /// Each file's last-known-good commit.
    pub fn good_files(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, commit_sha FROM good_files ORDER BY path")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a file that no longer exists in the branch.
    pub fn forget_file(&mut self, path: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM good_files WHERE path = ?1", [path])?;
        Ok(())
    }
}
