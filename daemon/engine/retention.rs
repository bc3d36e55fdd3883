//! Retention: run rows and log files stay within limits, so a year of a per-minute job
//! does not fill the disk. Finished runs beyond the newest `keep_runs` of a deployment, or
//! that ended more than `keep_days` ago, are deleted with their logs (hourly and at start);
//! a run's log is capped at `log_max_bytes`, keeping its tail, checked every second while
//! it runs and once when it ends. The cap rewrites the file in place; the child keeps
//! appending (its descriptor is opened for append), and what it writes during the
//! rewrite's instant may be lost, which the note at the top of the kept tail says.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::StoreError;

use super::attempt::log_path;
use super::Engine;

/// How often logs of running runs are measured.
pub const LOG_CHECK_EVERY: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished runs kept per deployment.
    pub keep_runs: usize,
    /// Finished runs older than this are deleted.
    pub keep_for: Duration,
    /// Largest log file of one run; beyond it the tail is kept.
    pub log_max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_runs: 1000,
            keep_for: Duration::from_secs(90 * 86_400),
            log_max_bytes: 16 << 20,
        }
    }
}

impl Engine {
    pub(super) fn maybe_prune(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self
            .last_retention
            .is_some_and(|at| at.elapsed() < PRUNE_EVERY)
        {
            return Ok(());
        }
        self.last_retention = Some(Instant::now());
        let cut = now
            - chrono::Duration::from_std(self.retention.keep_for)
                .unwrap_or_else(|_| chrono::Duration::days(36_500));
        let deleted = self.store.prune_runs(self.retention.keep_runs, cut)?;
        self.store.prune_outbox(cut)?;
        for id in &deleted {
            let _ = std::fs::remove_file(log_path(&self.ctx.logs_dir, *id));
        }
        if !deleted.is_empty() {
            tracing::info!(
                "retention: deleted {} finished run(s) and their logs",
                deleted.len()
            );
        }
        Ok(())
    }

    /// Caps the running runs' logs: once a [`LOG_CHECK_EVERY`] at most, however often
    /// the engine ticks, and not while a burst is launched (10,000 runs are 10,000 stats).
    pub(super) fn cap_logs(&mut self) {
        let now = Instant::now();
        if self
            .logs_checked_at
            .is_some_and(|at| now.saturating_duration_since(at) < LOG_CHECK_EVERY)
            || self.holding()
        {
            return;
        }
        self.logs_checked_at = Some(now);
        for id in self.running.keys() {
            self.cap_log(*id);
        }
    }

    pub(super) fn cap_log(&self, id: i64) {
        let path = log_path(&self.ctx.logs_dir, id);
        match cap_file(&path, self.retention.log_max_bytes) {
            Ok(Some(dropped)) => tracing::debug!("run {id}: log capped, {dropped} bytes dropped"),
            Ok(None) => {}
            Err(e) => tracing::warn!("run {id}: cannot cap its log {}: {e}", path.display()),
        }
    }
}

/// Shrinks `path` to about half of `max` when it is larger, keeping whole lines of its
/// tail under a note; returns how many bytes were dropped.
pub fn cap_file(path: &Path, max: u64) -> io::Result<Option<u64>> {
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(None);
    }
    let keep = max / 2;
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    file.seek(SeekFrom::Start(len - keep))?;
    let mut tail = Vec::with_capacity(keep as usize);
    file.read_to_end(&mut tail)?;
    if let Some(newline) = tail.iter().position(|b| *b == b'\n') {
        tail.drain(..=newline);
    }
    let dropped = len - tail.len() as u64;
    file.set_len(0)?;
    let mut append = OpenOptions::new().append(true).open(path)?;
    append.write_all(
        format!("# sundial: log capped at {max} bytes; {dropped} earlier bytes dropped\n")
            .as_bytes(),
    )?;
    append.write_all(&tail)?;
    Ok(Some(dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_log_keeps_its_last_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(cap_file(&path, 100_000).unwrap(), None);
        let dropped = cap_file(&path, 200).unwrap().unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.starts_with("# sundial: log capped at 200 bytes;"));
        assert!(after.ends_with("line 999\n"));
        assert!(after.lines().nth(1).unwrap().starts_with("line "));
        assert!(after.len() < 200);
        assert_eq!(
            dropped as usize,
            text.len() - (after.len() - after.lines().next().unwrap().len() - 1)
        );
    }
}
