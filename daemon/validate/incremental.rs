//! Validating a commit again after a small change, without checking every file again.
//!
//! A file's verdict depends on three things: its own bytes; what it asks of the
//! repository's tree (entrypoints, requirements files, directories: see [`super::locate`]);
//! and the deployment names the files before it (in path order) declare, for the
//! duplicate-name error. [`check`] validates one file as [`super::validate_in`] does and
//! records the last two; a caller that knows the bytes are the same asks
//! [`Checked::still_holds`] whether the rest is too, and then reuses the verdict instead of
//! checking the file again.
//!
//! Contract:
//! - `still_holds` is true only when checking the same bytes again, after the same earlier
//!   files, in the tree where only the paths of [`Changes`] differ, would give the very
//!   same outcome (diagnostics, deployments, notifications).
//! - A path the verdict asked about "changed" when that path, a directory above it or
//!   anything below it changed; a verdict that got "cannot tell" from the tree (a read
//!   that failed) never holds again.
//! - [`Checked::declare`] then claims the file's names, exactly as checking it would.
//!
//! Nothing else in a file's verdict depends on other files: the repository's default
//! notifications (the root `prefect.yaml`'s) are applied when a run is notified, not here.
//! Pure: no git, no clock; the daemon's syncer decides which paths changed.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use super::locate::{Entry, View};
use super::{check_file, FileOutcome, SourceFile};

/// The deployment names declared so far, each with where it was first declared.
#[derive(Debug, Default)]
pub struct Names {
    first: HashMap<String, (String, usize)>,
    /// The claims made while recording (by [`check`]).
    log: Option<Vec<Claim>>,
}

/// One name claimed by a file: its line, and what the names declared before answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    name: String,
    line: usize,
    earlier: Option<(String, usize)>,
}

impl Names {
    /// Claims `name` for `file` at `line`: where it was declared first when that was
    /// earlier (a duplicate), else `None`, and the name is `file`'s from now on.
    pub(super) fn claim(
        &mut self,
        name: &str,
        file: &str,
        line: usize,
    ) -> Option<&(String, usize)> {
        let earlier = self.first.get(name).cloned();
        if let Some(log) = self.log.as_mut() {
            log.push(Claim {
                name: name.to_string(),
                line,
                earlier: earlier.clone(),
            });
        }
        if earlier.is_none() {
            self.first
                .insert(name.to_string(), (file.to_string(), line));
        }
        self.first.get(name).filter(|_| earlier.is_some())
    }
}

/// A file's verdict with what it depended on besides its bytes.
#[derive(Debug)]
pub struct Checked {
    pub outcome: FileOutcome,
    /// The tree paths the checks asked about.
    asked: Vec<String>,
    /// Some question got "cannot tell" (a failed read): the verdict is not reused.
    uncertain: bool,
    claims: Vec<Claim>,
}

/// Validates `file` after the files that declared `names` (as [`super::validate_in`]
/// does), recording what the verdict depends on.
pub fn check(file: &SourceFile, names: &mut Names, view: &dyn View) -> Checked {
    let recording = Recording {
        view,
        asked: RefCell::default(),
        uncertain: RefCell::new(false),
    };
    names.log = Some(Vec::new());
    let outcome = check_file(
        file,
        names,
        &super::Shared::new(&recording, super::parallel::threads()),
    );
    let claims = names.log.take().unwrap_or_default();
    Checked {
        outcome,
        asked: recording.asked.into_inner(),
        uncertain: recording.uncertain.into_inner(),
        claims,
    }
}

impl Checked {
    /// Whether the verdict holds for the same bytes after the files that declared
    /// `names`, in a tree where only `changes` differ (see the module docs).
    pub fn still_holds(&self, names: &Names, changes: &Changes) -> bool {
        if self.uncertain || self.asked.iter().any(|path| changes.touch(path)) {
            return false;
        }
        // The names replayed: what the earlier files answer, then this file's own claims.
        let mut own: HashMap<&str, (&str, usize)> = HashMap::new();
        for claim in &self.claims {
            let answer = match names.first.get(&claim.name) {
                Some((file, line)) => Some((file.as_str(), *line)),
                None => own.get(claim.name.as_str()).copied(),
            };
            let expected = claim.earlier.as_ref().map(|(f, l)| (f.as_str(), *l));
            if answer != expected {
                return false;
            }
            if answer.is_none() {
                own.insert(&claim.name, (&self.outcome.file, claim.line));
            }
        }
        true
    }

    /// Claims the file's names, as checking it again would.
    pub fn declare(&self, names: &mut Names) {
        for claim in &self.claims {
            names.claim(&claim.name, &self.outcome.file, claim.line);
        }
    }
}

/// The paths of the tree that differ between two commits: files added, removed or
/// changed (also in kind or mode), each as its full `/`-separated path.
#[derive(Debug, Default)]
pub struct Changes {
    paths: HashSet<String>,
    /// Every directory above a changed path.
    dirs: HashSet<String>,
}

impl Changes {
    pub fn new(paths: impl IntoIterator<Item = String>) -> Changes {
        let mut changes = Changes::default();
        for path in paths {
            let mut dir = path.as_str();
            while let Some(i) = dir.rfind('/') {
                dir = &dir[..i];
                if !changes.dirs.insert(dir.to_string()) {
                    break;
                }
            }
            changes.paths.insert(path);
        }
        changes
    }

    /// Whether `path` changed itself.
    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    /// Whether what the tree answers about `path` may differ: it changed, something
    /// below it changed (it is a directory that gained or lost files), or a path above
    /// it changed (a file that became a directory, or the reverse).
    pub fn touch(&self, path: &str) -> bool {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return !self.paths.is_empty();
        }
        if self.paths.contains(path) || self.dirs.contains(path) {
            return true;
        }
        let mut above = path;
        while let Some(i) = above.rfind('/') {
            above = &above[..i];
            if self.paths.contains(above) {
                return true;
            }
        }
        false
    }
}

/// A view that notes every path asked of it.
struct Recording<'a> {
    view: &'a dyn View,
    asked: RefCell<Vec<String>>,
    uncertain: RefCell<bool>,
}

impl Recording<'_> {
    fn note<T>(&self, path: &str, answer: Option<T>) -> Option<T> {
        self.asked.borrow_mut().push(path.to_string());
        if answer.is_none() {
            *self.uncertain.borrow_mut() = true;
        }
        answer
    }
}

impl View for Recording<'_> {
    fn entry(&self, path: &str) -> Option<Entry> {
        self.note(path, self.view.entry(path))
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.note(path, self.view.read(path))
    }
}

#[cfg(test)]
mod tests;
