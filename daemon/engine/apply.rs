//! Applying a validated commit: reconcile per file against the last-known-good state,
//! record it, forget what left the branch, settle what waits, re-plan the schedules that
//! appeared or changed, prepare checkouts, and publish the status views.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::reconcile::{reconcile, AppliedFile};
use crate::runner::process::Withdrawal;
use crate::scheduler::Key;
use crate::store::{AppliedCommit, FileError, StoreError};
use crate::validate::Diagnostic;

use super::sync::{SyncMessage, Synced};
use super::{attempt, error_chain, shown, Engine};

/// How many deployments a commit adds, changes or removes before the memory its apply
/// freed is given back ([`crate::memory::release`]), as after the first commit.
const RELEASE_AFTER: usize = 1_000;

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
            SyncMessage::Synced(synced) if !self.leads() => {
                self.follow(synced, now);
                Ok(())
            }
            SyncMessage::Synced(synced) => {
                let applied = self.apply(&synced, now);
                if applied.as_ref().is_err_and(StoreError::is_transient) {
                    self.deferred_sync = Some(synced);
                } else if let Some(cluster) = &mut self.cluster {
                    // Kept: a later promotion plans from it again.
                    cluster.synced = Some(synced);
                }
                applied
            }
        }
    }

    /// Applies a validated commit: reconcile per file against the last-known-good state,
    /// record it, and re-plan the schedules that appeared or disappeared.
    pub(super) fn apply(&mut self, synced: &Synced, now: DateTime<Utc>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let first = !self.recovered.is_settled();
        self.seed(synced);
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
        let (errors, warnings) = (findings(synced, true), findings(synced, false));
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
        let present: HashSet<&str> = synced
            .outcomes
            .iter()
            .map(|o| o.repo_path.as_str())
            .collect();
        for gone in self
            .applied
            .files()
            .keys()
            .filter(|p| !present.contains(p.as_str()))
        {
            self.store.forget_file(gone)?;
        }
        self.applied = next;
        self.published.stale = true;
        // Slots armed (or runs pre-started) for what this commit removes or pauses, or whose
        // schedule it changes, do not begin.
        for name in &plan.removed {
            self.withdraw(name, Withdrawal::Removed);
        }
        for name in &plan.changed {
            match self.applied.deployment(name) {
                Some((d, _)) if d.paused => self.withdraw(name, Withdrawal::Paused),
                Some((d, _)) => self.withdraw_changed_slots(d),
                None => {}
            }
        }
        // What this commit may make due: the schedules of the deployments it added or
        // changed (kept until they are planned, should that fail).
        for name in plan.added.iter().chain(&plan.changed) {
            if let Some((d, _)) = self.applied.deployment(name) {
                let keys = d
                    .schedules
                    .iter()
                    .map(|s| Key::new((d.name.clone(), s.id.clone())));
                self.to_plan.extend(keys);
            }
        }
        for key in &plan.unscheduled {
            if self.timer.next_of(key).is_some() {
                tracing::info!("{}: schedule {} unscheduled", shown(&key.0), key.1);
            }
            self.fingerprints.remove(key);
            self.timer.forget(key);
        }
        // A commit that changes a paused deployment is its fix: it runs again.
        for name in &plan.changed {
            if self.pauses.contains_key(name) {
                self.resume(name, "resumed: a new commit changed it")?;
            }
        }
        // A schedule that left the branch forgets its cursor: if it comes back, it is
        // planned from then and does not catch up the time it was gone. The first commit
        // since the start (or after a failed sweep) compares every cursor stored; later
        // ones forget what this commit unscheduled.
        let forgotten = if self.cursors_swept {
            self.store.forget_cursors(&plan.unscheduled)
        } else {
            let wanted: BTreeSet<(String, String)> = self.applied.schedule_keys().collect();
            self.store.forget_cursors_except(&wanted)
        };
        self.cursors_swept = forgotten.is_ok();
        for (deployment, schedule) in forgotten? {
            tracing::debug!(
                "{}: forgot the cursor of schedule {schedule}",
                shown(&deployment)
            );
        }
        // Loading a commit, or a large change, leaves freed memory and start-up pages
        // resident: given back once its checkouts are prepared too.
        let large = plan.added.len() + plan.changed.len() + plan.removed.len() >= RELEASE_AFTER;
        self.prepare_checkouts(first || large);
        // Runs that already wait go first: recovered retries are decided, queued runs
        // start in slot order, then new slots line up behind them.
        self.settle_recovered(now)?;
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.drain_queue(&name, now)?;
        }
        // The schedules that appeared or changed, and those without a next fire, are
        // planned in one transaction, from the arm horizon.
        // Never before a horizon the ticks have armed up to: a slot the old identity of a
        // schedule claimed ahead (however far the lead was then) is not the new one's.
        let horizon = (now + chrono::Duration::from_std(super::ARM_AHEAD).unwrap_or_default())
            .max(self.armed_until.unwrap_or(now));
        let mut plan_now: Vec<Key> = self
            .to_plan
            .iter()
            .chain(self.timer.unarmed())
            .filter(|key| {
                self.applied
                    .deployment(&key.0)
                    .and_then(|(d, _)| d.schedules.iter().find(|s| s.id == key.1))
                    .is_some_and(|s| {
                        self.fingerprints.get(*key) != Some(&s.fingerprint)
                            || self.timer.next_of(key).is_none()
                    })
            })
            .cloned()
            .collect();
        plan_now.sort();
        plan_now.dedup();
        self.batched(|engine| {
            for key in &plan_now {
                engine.handle_due(key, now, horizon)?;
            }
            Ok(())
        })?;
        self.to_plan.clear();
        self.due_retries(now)?;
        self.show_commit(synced, errors, warnings, now);
        tracing::debug!("applied commit {short} in {:?}", started.elapsed());
        Ok(())
    }

    /// Publishes `synced` as the commit in force, with its findings.
    fn show_commit(
        &mut self,
        synced: &Synced,
        errors: Vec<FileError>,
        warnings: Vec<FileError>,
        now: DateTime<Utc>,
    ) {
        self.status.ready = true;
        self.status.commit = Some(synced.head.clone());
        self.status.synced_at = Some(now);
        self.status.errors = errors;
        self.status.warnings = warnings;
        self.publish();
    }

    /// Before the first commit since the start, the files' last-known-good versions
    /// (a file that fails now keeps running as it was).
    fn seed(&mut self, synced: &Synced) {
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
    }

    /// A standby follows a commit in memory only: the deployments, their findings and
    /// checkouts, for the API and for a quick takeover; the leader records it. The commit
    /// is kept and applied for real if this node comes to lead.
    fn follow(&mut self, synced: Box<Synced>, now: DateTime<Utc>) {
        self.seed(&synced);
        let (next, _) = reconcile(&self.applied, &synced.head, &synced.outcomes);
        self.applied = next;
        self.published.stale = true;
        self.prepare_checkouts(false);
        tracing::info!(
            "following commit {} ({}) as a standby",
            attempt::short(&synced.head),
            synced.summary
        );
        self.show_commit(
            &synced,
            findings(&synced, true),
            findings(&synced, false),
            now,
        );
        if let Some(cluster) = &mut self.cluster {
            cluster.synced = Some(synced);
        }
    }

    /// Creates the checkouts of the commits in force ahead of their first run (so a slot
    /// does not wait for one) and removes those nothing needs any more; then, when
    /// `release`, gives back the memory the apply freed ([`crate::memory::release`]).
    pub(super) fn prepare_checkouts(&self, release: bool) {
        let mut keep: HashSet<String> = self.applied.commits().into_iter().collect();
        keep.extend(self.running.values().map(|f| f.commit.clone()));
        let ctx = Arc::clone(&self.ctx);
        tokio::task::spawn_blocking(move || {
            prepare(&ctx, &keep);
            if release {
                crate::memory::release();
            }
        });
    }
}

/// Ensures the checkouts of the commits in `keep` and prunes the others.
fn prepare(ctx: &attempt::RunContext, keep: &HashSet<String>) {
    let repo = match crate::source::Repo::open(&ctx.source) {
        Ok(repo) => repo,
        Err(e) => return tracing::warn!("cannot prepare checkouts: {}", error_chain(&e)),
    };
    for commit in keep {
        if let Err(e) = ctx.checkouts.ensure(&repo, commit) {
            tracing::warn!(
                "cannot check out {}: {}",
                attempt::short(commit),
                error_chain(&e)
            );
        }
    }
    if let Err(e) = ctx.checkouts.prune(keep) {
        tracing::warn!("cannot prune checkouts: {}", error_chain(&e));
    }
}

/// The errors (or the warnings) of a synced commit's files.
fn findings(synced: &Synced, errors: bool) -> Vec<FileError> {
    synced
        .outcomes
        .iter()
        .flat_map(|o| o.diagnostics.iter())
        .filter(|d| d.is_error() == errors)
        .map(file_error)
        .collect()
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
