//! The syncer's memory of the last commit it validated, so that the next commit costs what
//! it changed, not what the repository holds.
//!
//! Contract: [`validate_commit`] gives the same outcomes as validating every manifest of
//! the commit (`validate::validate_in` over its tree, then the interval anchors) would.
//! With a [`Memory`] of an earlier commit it reads only the trees that differ
//! ([`Repo::changes`]), and checks again only the files whose bytes changed, or whose
//! verdict depended on something that did (`validate::incremental`: a path of the tree
//! it asked about, a deployment name an earlier file declares). A file with an interval
//! anchored at its introducing commit is also checked again unless the new commit
//! descends from the remembered one by first parents with the file unchanged all the way
//! and the remembered walk through history was not cut short by its bounds: only then
//! would a walk from the new commit end at the same commit.
//!
//! Without a memory (the first read, or after a read was abandoned) every file is read
//! and checked. The memory holds verdicts, not file contents; the deployments are shared
//! with the engine (`Arc`).

use std::collections::BTreeMap;

use git2::Oid;

use crate::manifest::discover::Discovery;
use crate::source::{Repo, SourceError};
use crate::validate::incremental::{self, Changes, Checked, Names};
use crate::validate::{FileOutcome, SourceFile};

/// How far back [`validate_commit`] looks for the remembered commit among the new one's
/// first parents before it checks the anchored files again.
const BETWEEN_LIMIT: usize = 100;

/// The verdicts of the last commit validated.
#[derive(Debug)]
pub struct Memory {
    head: String,
    files: BTreeMap<String, Remembered>,
}

#[derive(Debug)]
struct Remembered {
    blob: Oid,
    checked: Checked,
    /// Some schedule is anchored at the commit that introduced it.
    anchored: bool,
    /// Some walk through history for an anchor stopped at a bound (or failed).
    cut: bool,
}

impl Remembered {
    fn outcome(&self) -> &FileOutcome {
        &self.checked.outcome
    }
}

/// The outcome of every manifest file of `head`, in path order, and the memory to pass to
/// the next call.
pub fn validate_commit(
    repo: &Repo,
    discovery: &Discovery,
    head: &str,
    memory: Option<Memory>,
) -> Result<(Vec<FileOutcome>, Memory), SourceError> {
    let started = std::time::Instant::now();
    let is_manifest = |path: &str| discovery.is_manifest(path);
    // The remembered commit may be gone (a rewritten branch, garbage-collected): then
    // everything is read again.
    let memory = memory.and_then(|m| match repo.changes(&m.head, head) {
        Ok(changed) => Some((m, changed)),
        Err(e) => {
            tracing::debug!(
                "reading every manifest again: the changes since {} cannot be read: {}",
                super::attempt::short(&m.head),
                super::error_chain(&e)
            );
            None
        }
    });
    let (mut old, changes, manifests) = match memory {
        Some((memory, changed)) => {
            let mut manifests: BTreeMap<String, Oid> = memory
                .files
                .iter()
                .map(|(path, r)| (path.clone(), r.blob))
                .collect();
            for c in &changed {
                match c.file.filter(|_| is_manifest(&c.path)) {
                    Some(blob) => manifests.insert(c.path.clone(), blob),
                    None => manifests.remove(&c.path),
                };
            }
            let changes = Changes::new(changed.into_iter().map(|c| c.path));
            let old = Some((memory.head, memory.files));
            (old, changes, manifests.into_iter().collect())
        }
        None => (
            None,
            Changes::default(),
            repo.manifest_blobs(head, &is_manifest)?,
        ),
    };
    // The first-parent commits from the remembered one to `head`, once asked for.
    let mut between: Option<Option<Vec<String>>> = None;
    let view = repo.view(head);
    let mut names = Names::default();
    let mut files = BTreeMap::new();
    let mut checked_again = 0;
    for (path, blob) in manifests {
        let kept = match old.as_mut() {
            Some((old_head, remembered)) => match remembered.remove(&path) {
                Some(r) if r.blob == blob && r.checked.still_holds(&names, &changes) => {
                    let holds = !r.anchored
                        || (!r.cut
                            && anchors_hold(repo, old_head, head, &path, blob, &mut between)?);
                    holds.then_some(r)
                }
                _ => None,
            },
            None => None,
        };
        let r = match kept {
            Some(r) => {
                r.checked.declare(&mut names);
                r
            }
            None => {
                checked_again += 1;
                let file = SourceFile {
                    display: path.clone(),
                    repo_path: path.clone(),
                    bytes: repo.read_blob(blob)?,
                };
                let mut checked = incremental::check(&file, &mut names, &view);
                let anchored = has_anchors(&checked.outcome);
                let cut = super::sync::anchor_intervals(repo, head, &mut checked.outcome);
                Remembered {
                    blob,
                    checked,
                    anchored,
                    cut,
                }
            }
        };
        files.insert(path, r);
    }
    let outcomes = files.values().map(|r| r.outcome().clone()).collect();
    tracing::debug!(
        "validated commit {}: {checked_again} of {} manifest files checked, in {:?}",
        super::attempt::short(head),
        files.len(),
        started.elapsed()
    );
    let memory = Memory {
        head: head.to_string(),
        files,
    };
    Ok((outcomes, memory))
}

/// Whether any schedule of the file is anchored at its introducing commit.
fn has_anchors(outcome: &FileOutcome) -> bool {
    outcome
        .deployments
        .iter()
        .flat_map(|ds| ds.iter())
        .flat_map(|d| &d.schedules)
        .any(|s| s.anchored_at_commit)
}

/// Whether the walk for `path`'s anchors from `head` would end where the one from `old`
/// did: `old` is a first-parent ancestor of `head` and every commit between has the
/// file at the same `blob` (the caller knows `head` and `old` do).
fn anchors_hold(
    repo: &Repo,
    old: &str,
    head: &str,
    path: &str,
    blob: Oid,
    between: &mut Option<Option<Vec<String>>>,
) -> Result<bool, SourceError> {
    if between.is_none() {
        *between = Some(repo.commits_between(old, head, BETWEEN_LIMIT)?);
    }
    let Some(Some(commits)) = between.as_ref() else {
        return Ok(false);
    };
    for commit in commits {
        if repo.blob_at(commit, path)? != Some(blob) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
