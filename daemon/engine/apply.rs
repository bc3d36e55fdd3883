//! Applying a validated commit: reconcile per file against the last-known-good state,
//! record it, forget what left the branch, settle what waits, re-plan the schedules that
//! appeared or changed, prepare checkouts, and publish the status views.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::reconcile::{reconcile, AppliedFile};
use crate::scheduler::Key;
use crate::store::{AppliedCommit, FileError, StoreError};
use crate::validate::Diagnostic;

use super::status::{DeploymentView, ScheduleView};
use super::sync::{SyncMessage, Synced};
use super::{attempt, error_chain, shown, Engine};

impl Engine {
    pub(super) fn on_sync(
        &mut self,
        message: SyncMessage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match message {
            SyncMessage::Source(attempt) => {
                self.status.source.record(&attempt, now);
                self.publish();
                Ok(())
            }
            SyncMessage::Synced(synced) => {
                let applied = self.apply(&synced, now);
                if applied.as_ref().is_err_and(StoreError::is_disk_full) {
                    self.deferred_sync = Some(synced);
                }
                applied
            }
        }
    }

    /// Applies a validated commit: reconcile per file against the last-known-good state,
    /// record it, and re-plan the schedules that appeared or disappeared.
    pub(super) fn apply(&mut self, synced: &Synced, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.applied.files().is_empty() {
            for seed in &synced.seeds {
                if let Some(deployments) = &seed.outcome.deployments {
                    let file = AppliedFile {
                        commit: seed.commit.clone(),
                        deployments: deployments.clone(),
                        held_back: true,
                        notifications: seed.outcome.notifications.clone(),
                    };
                    self.applied.seed(seed.outcome.repo_path.clone(), file);
                }
            }
        }
        let (next, plan) = reconcile(&self.applied, &synced.head, &synced.outcomes);
        let short = attempt::short(&synced.head).to_string();
        let held = if plan.held_back.is_empty() {
            String::new()
        } else {
            format!(
                "; kept at their last good version: {}",
                plan.held_back.join(", ")
            )
        };
        if self.recovered.is_settled() {
            tracing::info!(
                "applied commit {short} ({}): {}, {}, {}{held}",
                synced.summary,
                listed("added", &plan.added),
                listed("changed", &plan.changed),
                listed("removed", &plan.removed),
            );
        } else {
            // The first commit since the start: everything is loaded, nothing "added".
            let count = plan.added.len() + plan.changed.len();
            tracing::info!(
                "loaded commit {short} ({}): {count} deployment{}{held}",
                synced.summary,
                if count == 1 { "" } else { "s" }
            );
        }
        let findings = |errors: bool| -> Vec<FileError> {
            synced
                .outcomes
                .iter()
                .flat_map(|o| o.diagnostics.iter())
                .filter(|d| d.is_error() == errors)
                .map(file_error)
                .collect()
        };
        let (errors, warnings) = (findings(true), findings(false));
        for e in &errors {
            tracing::error!("{}:{}:{}: {}", e.file, e.line, e.column, e.message);
        }
        for w in &warnings {
            tracing::warn!("{}:{}:{}: {}", w.file, w.line, w.column, w.message);
        }
        let good: Vec<String> = synced
            .outcomes
            .iter()
            .filter(|o| o.is_valid())
            .map(|o| o.repo_path.clone())
            .collect();
        let commit = AppliedCommit {
            sha: synced.head.clone(),
            applied_at: now,
            summary: synced.summary.clone(),
            errors: errors.clone(),
            warnings: warnings.clone(),
        };
        match self.store.record_commit(&commit, &good) {
            Err(e) if e.is_row_error() => {
                tracing::error!(
                    "the findings of commit {short} are too large to record ({}); recorded as one line per file",
                    error_chain(&e)
                );
                self.store.record_commit(&compacted(&commit), &good)?;
            }
            recorded => recorded?,
        }
        for gone in self
            .applied
            .files()
            .keys()
            .filter(|p| !synced.outcomes.iter().any(|o| &o.repo_path == *p))
        {
            self.store.forget_file(gone)?;
        }
        self.applied = next;
        // A commit that changes a paused deployment is its fix: it runs again.
        for name in &plan.changed {
            if self.pauses.contains_key(name) {
                self.resume(name, "resumed: a new commit changed it")?;
            }
        }

        let wanted: BTreeSet<Key> = self
            .applied
            .deployments()
            .flat_map(|(d, _)| {
                d.schedules
                    .iter()
                    .map(move |s| (d.name.clone(), s.id.clone()))
            })
            .collect();
        let stale: Vec<Key> = self
            .timer
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            tracing::info!("{}: schedule {} unscheduled", shown(&key.0), key.1);
            self.fingerprints.remove(&key);
            self.timer.set(key, None);
        }
        // A schedule that left the branch forgets its cursor: if it comes back, it is
        // planned from then and does not catch up the time it was gone.
        for (deployment, schedule) in self.store.forget_cursors_except(&wanted)? {
            tracing::debug!(
                "{}: forgot the cursor of schedule {schedule}",
                shown(&deployment)
            );
        }
        self.prepare_checkouts();
        // Runs that already wait go first: recovered retries are decided, queued runs
        // start in slot order, then new slots line up behind them.
        self.settle_recovered(now)?;
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.drain_queue(&name, now)?;
        }
        // The schedules that appeared or changed are planned in one transaction, from the
        // arm horizon.
        let horizon = now + chrono::Duration::from_std(super::ARM_AHEAD).unwrap_or_default();
        self.batched(|engine| {
            for key in &wanted {
                let planned_for = engine.applied.deployment(&key.0).and_then(|(d, _)| {
                    d.schedules
                        .iter()
                        .find(|s| s.id == key.1)
                        .map(|s| s.fingerprint.clone())
                });
                let changed = engine.fingerprints.get(key) != planned_for.as_ref();
                if changed || engine.timer.next_of(key).is_none() {
                    engine.handle_due(key, now, horizon)?;
                }
            }
            Ok(())
        })?;
        self.due_retries(now)?;
        self.status.ready = true;
        self.status.commit = Some(synced.head.clone());
        self.status.synced_at = Some(now);
        self.status.errors = errors;
        self.status.warnings = warnings;
        self.publish();
        Ok(())
    }

    /// Creates the checkouts of the commits in force ahead of their first run (so a slot
    /// does not wait for one) and removes those nothing needs any more.
    pub(super) fn prepare_checkouts(&self) {
        let mut keep: std::collections::HashSet<String> =
            self.applied.commits().into_iter().collect();
        keep.extend(self.running.values().map(|f| f.commit.clone()));
        let ctx = Arc::clone(&self.ctx);
        tokio::task::spawn_blocking(move || {
            let repo = match crate::source::Repo::open(&ctx.source) {
                Ok(repo) => repo,
                Err(e) => return tracing::warn!("cannot prepare checkouts: {}", error_chain(&e)),
            };
            for commit in &keep {
                if let Err(e) = ctx.checkouts.ensure(&repo, commit) {
                    tracing::warn!(
                        "cannot check out {}: {}",
                        attempt::short(commit),
                        error_chain(&e)
                    );
                }
            }
            if let Err(e) = ctx.checkouts.prune(&keep) {
                tracing::warn!("cannot prune checkouts: {}", error_chain(&e));
            }
        });
    }

    pub(super) fn publish(&mut self) {
        let deployments = self
            .applied
            .files()
            .values()
            .flat_map(|f| f.deployments.iter().map(move |d| (d, f)))
            .map(|(d, f)| DeploymentView {
                name: d.name.clone(),
                file: d.file.clone(),
                commit: f.commit.clone(),
                description: d.description.clone(),
                tags: d.tags.clone(),
                paused: d.paused,
                paused_after_failures: self.pauses.get(&d.name).cloned(),
                held_back: f.held_back,
                parameters: d.parameters.clone(),
                parameter_schema: d.parameter_schema.clone(),
                timeout: d.timeout,
                retries: d.retries,
                schedules: d
                    .schedules
                    .iter()
                    .map(|s| ScheduleView {
                        id: s.id.clone(),
                        description: s.description.clone(),
                        schedule: s.schedule.clone(),
                        timezone: s.schedule.timezone().to_string(),
                        active: s.active,
                        next: self.timer.next_of(&(d.name.clone(), s.id.clone())),
                    })
                    .collect(),
            })
            .collect();
        self.status.deployments = deployments;
        self.status_tx.send_replace(self.status.clone());
    }
}

pub(super) fn file_error(d: &Diagnostic) -> FileError {
    FileError {
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        message: d.message_with_help(),
    }
}

/// A commit record small enough to store: its summary cut short and, per file, one line
/// that counts its errors and warnings and says how to list them.
fn compacted(commit: &AppliedCommit) -> AppliedCommit {
    let per_file = |findings: &[FileError], what: &str| -> Vec<FileError> {
        let mut counts: std::collections::BTreeMap<&str, (usize, &FileError)> =
            std::collections::BTreeMap::new();
        for f in findings {
            counts.entry(&f.file).or_insert((0, f)).0 += 1;
        }
        counts
            .into_values()
            .map(|(count, first)| FileError {
                file: first.file.clone(),
                line: first.line,
                column: first.column,
                message: format!(
                    "{count} {what} here (the list is too large to record); run `sundial validate {}` to see them",
                    first.file
                ),
            })
            .collect()
    };
    AppliedCommit {
        summary: commit.summary.chars().take(200).collect(),
        errors: per_file(&commit.errors, "errors"),
        warnings: per_file(&commit.warnings, "warnings"),
        ..commit.clone()
    }
}

/// `2 added (a, b)` / `none added`, for the applied-commit line.
pub(super) fn listed(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("none {what}");
    }
    let names: Vec<_> = names.iter().map(|n| shown(n)).collect();
    format!("{} {what} ({})", names.len(), names.join(", "))
}
