//! Reconcile: the pure step from "what the new commit says" to "what should be scheduled",
//! file by file against the last-known-good state.
//!
//! Rules (DESIGN.md "Last-known-good", "Removal"):
//! - a file that validates at the new commit replaces its previous version;
//! - a file that fails keeps its previous good version (its deployments stay scheduled);
//!   a new file that fails adds nothing;
//! - a file that is gone from the commit takes its deployments with it (history stays);
//! - a deployment name claimed by two files (possible when one of them is held back) is
//!   kept for the file first in path order, and the other is reported.
//!
//! No I/O and no clock: the daemon's shell reads git and the store and calls [`reconcile`].

use std::collections::{BTreeMap, BTreeSet};

use crate::validate::{Deployment, FileOutcome};

/// What is scheduled: per manifest file, the version in force.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The newest commit seen and applied (bad files held at their last good version).
    pub commit: Option<String>,
    files: BTreeMap<String, AppliedFile>,
    /// Where each deployment is: (file, position), so a lookup by name does not walk
    /// every file (the engine looks one up for each due slot).
    by_name: std::collections::HashMap<String, (String, usize)>,
}

/// The version of one file that is in force.
#[derive(Debug, Clone)]
pub struct AppliedFile {
    /// The commit this version comes from; its runs execute in that commit's checkout.
    pub commit: String,
    pub deployments: Vec<Deployment>,
    /// True when the file fails at the newest commit and this is its last good version.
    pub held_back: bool,
    /// Its top-level `notifications:`, if it has them.
    pub notifications: Option<Vec<crate::notify::Notification>>,
}

impl Applied {
    fn new(commit: Option<String>, files: BTreeMap<String, AppliedFile>) -> Applied {
        let mut applied = Applied {
            commit,
            files,
            by_name: Default::default(),
        };
        applied.reindex();
        applied
    }

    fn reindex(&mut self) {
        self.by_name.clear();
        for (path, file) in &self.files {
            for (i, d) in file.deployments.iter().enumerate() {
                self.by_name
                    .entry(d.name.clone())
                    .or_insert_with(|| (path.clone(), i));
            }
        }
    }

    /// The version of each manifest file in force, by path.
    pub fn files(&self) -> &BTreeMap<String, AppliedFile> {
        &self.files
    }

    /// Puts a file's last good version in force before any commit is applied (at
    /// start-up, for files that fail at the branch's head).
    pub fn seed(&mut self, path: String, file: AppliedFile) {
        self.files.insert(path, file);
        self.reindex();
    }

    /// Who is told about `deployment`'s runs: its own list, else its file's top-level
    /// one, else the repository's default, the root `prefect.yaml`'s top-level list.
    pub fn notifications_of<'a>(
        &'a self,
        deployment: &'a Deployment,
    ) -> &'a [crate::notify::Notification] {
        if !deployment.notifications_unset {
            return &deployment.notifications;
        }
        ["prefect.yaml", "prefect.yml"]
            .iter()
            .find_map(|root| self.files.get(*root)?.notifications.as_deref())
            .unwrap_or_default()
    }

    /// Every deployment in force with the commit it runs from, in file order.
    pub fn deployments(&self) -> impl Iterator<Item = (&Deployment, &str)> {
        self.files
            .values()
            .flat_map(|f| f.deployments.iter().map(move |d| (d, f.commit.as_str())))
    }

    pub fn deployment(&self, name: &str) -> Option<(&Deployment, &str)> {
        let (path, i) = self.by_name.get(name)?;
        let file = self.files.get(path)?;
        Some((file.deployments.get(*i)?, file.commit.as_str()))
    }

    /// The commits whose checkouts runs may still need.
    pub fn commits(&self) -> BTreeSet<String> {
        self.files.values().map(|f| f.commit.clone()).collect()
    }
}

/// What changed, by deployment name (for the log and the tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Files held at their last good version.
    pub held_back: Vec<String>,
    /// Deployment names dropped because an earlier file already has them.
    pub conflicts: Vec<String>,
}

/// The new state after applying `outcomes` (every manifest file of `commit`, validated).
pub fn reconcile(previous: &Applied, commit: &str, outcomes: &[FileOutcome]) -> (Applied, Plan) {
    let mut files = BTreeMap::new();
    let mut plan = Plan::default();
    for outcome in outcomes {
        let path = outcome.repo_path.clone();
        match (&outcome.deployments, previous.files.get(&path)) {
            (Some(deployments), _) => {
                files.insert(
                    path,
                    AppliedFile {
                        commit: commit.to_string(),
                        deployments: deployments.clone(),
                        held_back: false,
                        notifications: outcome.notifications.clone(),
                    },
                );
            }
            (None, Some(old)) => {
                plan.held_back.push(path.clone());
                let mut kept = old.clone();
                kept.held_back = true;
                files.insert(path, kept);
            }
            (None, None) => {}
        }
    }
    let mut seen = BTreeSet::new();
    for file in files.values_mut() {
        file.deployments.retain(|d| {
            let fresh = seen.insert(d.name.clone());
            if !fresh {
                plan.conflicts.push(d.name.clone());
            }
            fresh
        });
    }
    let next = Applied::new(Some(commit.to_string()), files);
    let before: BTreeMap<&str, String> = previous
        .deployments()
        .map(|(d, _)| (d.name.as_str(), fingerprint(d)))
        .collect();
    let after: BTreeMap<&str, String> = next
        .deployments()
        .map(|(d, _)| (d.name.as_str(), fingerprint(d)))
        .collect();
    for (name, print) in &after {
        match before.get(name) {
            None => plan.added.push(name.to_string()),
            Some(old) if old != print => plan.changed.push(name.to_string()),
            Some(_) => {}
        }
    }
    plan.removed = before
        .keys()
        .filter(|n| !after.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    (next, plan)
}

/// What a deployment means, for change detection. Its commit is not part of it: a commit
/// that only touches flow code changes which checkout runs use, not the schedule.
fn fingerprint(d: &Deployment) -> String {
    format!("{d:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate, SourceFile};

    fn outcomes(files: &[(&str, &str)]) -> Vec<FileOutcome> {
        let sources: Vec<SourceFile> = files
            .iter()
            .map(|(path, text)| SourceFile {
                display: path.to_string(),
                repo_path: path.to_string(),
                bytes: text.as_bytes().to_vec().into(),
            })
            .collect();
        validate(&sources).files
    }

    fn names(applied: &Applied) -> Vec<(String, String)> {
        applied
            .deployments()
            .map(|(d, c)| (d.name.clone(), c.to_string()))
            .collect()
    }

    const A1: &str =
        "deployments:\n  - name: a\n    entrypoint: f.py:run\n    schedules: [{interval: 60}]\n";
    const A2: &str =
        "deployments:\n  - name: a\n    entrypoint: f.py:run\n    schedules: [{interval: 120}]\n";
    const BAD: &str = "deployments:\n  - name: a\n    retries: -1\n";
    const B1: &str = "deployments:\n  - name: b\n    entrypoint: f.py:run\n";

    #[test]
    fn a_bad_file_keeps_its_last_good_version() {
        let (first, plan) = reconcile(
            &Applied::default(),
            "c1",
            &outcomes(&[("deployments/a.yaml", A1), ("deployments/b.yaml", B1)]),
        );
        assert_eq!(plan.added, ["a", "b"]);
        let (second, plan) = reconcile(
            &first,
            "c2",
            &outcomes(&[("deployments/a.yaml", BAD), ("deployments/b.yaml", B1)]),
        );
        assert_eq!(plan.held_back, ["deployments/a.yaml"]);
        assert!(plan.changed.is_empty() && plan.removed.is_empty());
        assert_eq!(
            names(&second),
            [("a".into(), "c1".into()), ("b".into(), "c2".into())]
        );
        assert_eq!(second.commit.as_deref(), Some("c2"));
        let (third, plan) = reconcile(
            &second,
            "c3",
            &outcomes(&[("deployments/a.yaml", A2), ("deployments/b.yaml", B1)]),
        );
        assert_eq!(plan.changed, ["a"]);
        assert_eq!(
            names(&third),
            [("a".into(), "c3".into()), ("b".into(), "c3".into())]
        );
    }

    #[test]
    fn a_deleted_file_or_deployment_is_unscheduled() {
        let (first, _) = reconcile(
            &Applied::default(),
            "c1",
            &outcomes(&[("deployments/a.yaml", A1), ("deployments/b.yaml", B1)]),
        );
        let (second, plan) = reconcile(&first, "c2", &outcomes(&[("deployments/b.yaml", B1)]));
        assert_eq!(plan.removed, ["a"]);
        assert_eq!(names(&second), [("b".into(), "c2".into())]);
    }

    #[test]
    fn a_new_bad_file_adds_nothing() {
        let (applied, plan) = reconcile(
            &Applied::default(),
            "c1",
            &outcomes(&[("deployments/a.yaml", BAD)]),
        );
        assert!(applied.files.is_empty());
        assert!(plan.added.is_empty());
    }

    #[test]
    fn a_name_claimed_twice_is_kept_once() {
        let (first, _) = reconcile(
            &Applied::default(),
            "c1",
            &outcomes(&[("deployments/a.yaml", A1)]),
        );
        // a.yaml turns bad (held back with `a`), and b.yaml now also declares `a`.
        let bad_without_a = "deployments:\n  - name: z\n    retries: -1\n";
        let (second, plan) = reconcile(
            &first,
            "c2",
            &outcomes(&[
                ("deployments/a.yaml", bad_without_a),
                ("deployments/b.yaml", A2),
            ]),
        );
        assert_eq!(plan.conflicts, ["a"]);
        assert_eq!(names(&second), [("a".into(), "c1".into())]);
    }
}
