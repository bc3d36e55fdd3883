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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use crate::validate::{Deployment, FileOutcome};

/// What is scheduled: per manifest file, the version in force.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The newest commit seen and applied (bad files held at their last good version).
    pub commit: Option<String>,
    files: BTreeMap<String, AppliedFile>,
    /// Where each deployment is, so a lookup by name does not walk every file (the
    /// engine looks one up for each due slot).
    by_name: HashSet<Place>,
}

/// One deployment in force, shared with its file's version (an `Arc` and a place, not a
/// copy): what an attempt and a status view hold.
#[derive(Clone)]
pub struct SharedDeployment {
    file: Arc<Vec<Deployment>>,
    index: usize,
}

impl SharedDeployment {
    /// `file[index]`; `None` when there is no such place.
    pub fn new(file: &Arc<Vec<Deployment>>, index: usize) -> Option<SharedDeployment> {
        (index < file.len()).then(|| SharedDeployment {
            file: Arc::clone(file),
            index,
        })
    }

    /// Whether it is the very deployment `file[index]` (not an equal copy).
    pub fn is(&self, file: &Arc<Vec<Deployment>>, index: usize) -> bool {
        Arc::ptr_eq(&self.file, file) && self.index == index
    }
}

impl std::ops::Deref for SharedDeployment {
    type Target = Deployment;
    fn deref(&self) -> &Deployment {
        &self.file[self.index]
    }
}

impl std::fmt::Debug for SharedDeployment {
    /// The deployment, not its whole file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Where a deployment is (its file's path and its place there), found by its name without
/// a copy of the name: it hashes and compares as the deployment's name, read through the
/// file's shared deployments. (A map from a copied name used 80 bytes more for each of
/// 10,000 deployments.)
#[derive(Clone)]
struct Place {
    path: Arc<str>,
    deployment: SharedDeployment,
}

impl Place {
    fn name(&self) -> &str {
        &self.deployment.name
    }
}

impl PartialEq for Place {
    fn eq(&self, other: &Place) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Place {}

impl std::hash::Hash for Place {
    /// As the name's own hash, so a `&str` finds it ([`std::borrow::Borrow`]).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl std::borrow::Borrow<str> for Place {
    fn borrow(&self) -> &str {
        self.name()
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {}[{}]",
            self.name(),
            self.path,
            self.deployment.index
        )
    }
}

/// The version of one file that is in force.
#[derive(Debug, Clone)]
pub struct AppliedFile {
    /// The commit this version comes from; its runs execute in that commit's checkout.
    pub commit: String,
    /// Shared with the validation that produced them (and its memory in the syncer).
    pub deployments: Arc<Vec<Deployment>>,
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
        self.by_name
            .reserve(self.files.values().map(|f| f.deployments.len()).sum());
        for (path, file) in &self.files {
            let path: Arc<str> = path.as_str().into();
            for i in 0..file.deployments.len() {
                // The first file in path order keeps a name two files claim: a set
                // keeps the element it has.
                self.by_name.insert(Place {
                    path: Arc::clone(&path),
                    deployment: SharedDeployment {
                        file: Arc::clone(&file.deployments),
                        index: i,
                    },
                });
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
        let (file, i) = self.place(name)?;
        Some((file.deployments.get(i)?, file.commit.as_str()))
    }

    /// The file of deployment `name` and its place there.
    fn place(&self, name: &str) -> Option<(&AppliedFile, usize)> {
        let place = self.by_name.get(name)?;
        Some((self.files.get(&*place.path)?, place.deployment.index))
    }

    /// The deployment `name` shared (not copied), with the commit it runs from.
    pub fn shared(&self, name: &str) -> Option<(SharedDeployment, &str)> {
        let (file, i) = self.place(name)?;
        Some((
            SharedDeployment::new(&file.deployments, i)?,
            file.commit.as_str(),
        ))
    }

    /// Whether schedule `key` (deployment name, schedule id) is in force.
    pub fn has_schedule(&self, key: &(String, String)) -> bool {
        self.deployment(&key.0)
            .is_some_and(|(d, _)| d.schedules.iter().any(|s| s.id == key.1))
    }

    /// Every schedule in force, as (deployment name, schedule id).
    pub fn schedule_keys(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.deployments()
            .flat_map(|(d, _)| d.schedules.iter().map(|s| (d.name.clone(), s.id.clone())))
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
    /// The schedules in force before and not after, as (deployment name, schedule id),
    /// sorted.
    pub unscheduled: Vec<(String, String)>,
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
    // A name already claimed (by an earlier file, or earlier in a held-back file) is
    // dropped; only the files that lose one are copied.
    let mut drops: Vec<(String, Vec<usize>)> = Vec::new();
    {
        let mut seen: HashSet<&str> = HashSet::new();
        for (path, file) in &files {
            let mut here = Vec::new();
            for (i, d) in file.deployments.iter().enumerate() {
                if !seen.insert(d.name.as_str()) {
                    here.push(i);
                    plan.conflicts.push(d.name.clone());
                }
            }
            if !here.is_empty() {
                drops.push((path.clone(), here));
            }
        }
    }
    for (path, here) in drops {
        if let Some(file) = files.get_mut(&path) {
            let mut i = 0;
            Arc::make_mut(&mut file.deployments).retain(|_| {
                i += 1;
                !here.contains(&(i - 1))
            });
        }
    }
    let next = Applied::new(Some(commit.to_string()), files);
    // Only the files whose deployments are not the very same as before can differ.
    let differs = |a: &Applied, b: &Applied| -> Vec<String> {
        a.files
            .iter()
            .filter(|(path, f)| {
                b.files
                    .get(*path)
                    .is_none_or(|g| !Arc::ptr_eq(&f.deployments, &g.deployments))
            })
            .flat_map(|(_, f)| f.deployments.iter().map(|d| d.name.clone()))
            .collect()
    };
    let added_or_changed: BTreeSet<String> = differs(&next, previous).into_iter().collect();
    let maybe_removed: BTreeSet<String> = differs(previous, &next).into_iter().collect();
    for name in added_or_changed.iter() {
        match (previous.deployment(name), next.deployment(name)) {
            (None, _) => plan.added.push(name.clone()),
            (Some((old, _)), Some((new, _))) if !same(old, new) => plan.changed.push(name.clone()),
            _ => {}
        }
    }
    for name in added_or_changed.iter().chain(&maybe_removed) {
        if let Some((old, _)) = previous.deployment(name) {
            for s in &old.schedules {
                let key = (name.clone(), s.id.clone());
                if !next.has_schedule(&key) {
                    plan.unscheduled.push(key);
                }
            }
        }
    }
    plan.unscheduled.sort();
    plan.unscheduled.dedup();
    plan.removed = maybe_removed
        .into_iter()
        .filter(|n| next.deployment(n).is_none())
        .collect();
    (next, plan)
}

/// Whether two deployments mean the same, for change detection. Their commit is not part
/// of it: a commit that only touches flow code changes which checkout runs use, not the
/// schedule.
fn same(a: &Deployment, b: &Deployment) -> bool {
    std::ptr::eq(a, b) || format!("{a:?}") == format!("{b:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::outcomes_of as outcomes;

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

    /// A deployment is found by its name in its file, at that file's commit (a file held
    /// back at an older one too).
    #[test]
    fn a_lookup_by_name_finds_the_file_and_commit_in_force() {
        let (first, _) = reconcile(
            &Applied::default(),
            "c1",
            &outcomes(&[("deployments/a.yaml", A1)]),
        );
        let (second, _) = reconcile(
            &first,
            "c2",
            &outcomes(&[("deployments/a.yaml", BAD), ("deployments/b.yaml", B1)]),
        );
        let (a, commit) = second.deployment("a").expect("a is in force");
        assert_eq!((a.file.as_str(), commit), ("deployments/a.yaml", "c1"));
        let (shared, commit) = second.shared("b").expect("b is in force");
        assert_eq!(
            ((*shared).file.as_str(), commit),
            ("deployments/b.yaml", "c2")
        );
        assert!(second.deployment("c").is_none());
    }

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
    fn only_files_that_differ_are_compared_and_their_schedules_unscheduled() {
        let two = "deployments:\n  - name: c\n    entrypoint: f.py:run\n    schedules: [{interval: 60}, {cron: '0 9 * * *'}]\n";
        let one = "deployments:\n  - name: c\n    entrypoint: f.py:run\n    schedules: [{interval: 60}]\n";
        let first_outcomes = outcomes(&[("deployments/a.yaml", A1), ("deployments/c.yaml", two)]);
        let (first, _) = reconcile(&Applied::default(), "c1", &first_outcomes);
        // The same validated file (shared, as the syncer's memory gives it) is not
        // compared again; the one that lost a schedule is.
        let mut second_outcomes = outcomes(&[("deployments/c.yaml", one)]);
        second_outcomes.insert(0, first_outcomes[0].clone());
        let (second, plan) = reconcile(&first, "c2", &second_outcomes);
        assert!(Arc::ptr_eq(
            &first.files["deployments/a.yaml"].deployments,
            &second.files["deployments/a.yaml"].deployments
        ));
        assert_eq!(plan.changed, ["c"]);
        assert!(plan.added.is_empty() && plan.removed.is_empty());
        let cron = first.deployment("c").unwrap().0.schedules[1].id.clone();
        assert_eq!(plan.unscheduled, [("c".to_string(), cron)]);
        // A deployment that moves to another file is neither added nor removed.
        let (third, plan) = reconcile(
            &second,
            "c3",
            &outcomes(&[("deployments/a.yaml", one), ("deployments/b.yaml", A1)]),
        );
        assert!(plan.added.is_empty() && plan.removed.is_empty());
        // Which file it comes from is part of what a deployment is.
        assert_eq!(plan.changed, ["a", "c"]);
        assert!(plan.unscheduled.is_empty());
        assert_eq!(names(&third).len(), 2);
        let (_, plan) = reconcile(&third, "c4", &outcomes(&[("deployments/b.yaml", A1)]));
        assert_eq!(plan.removed, ["c"]);
        assert_eq!(plan.unscheduled.len(), 1);
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
