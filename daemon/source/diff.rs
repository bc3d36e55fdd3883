//! What changed between two commits, read without reading what did not: the manifest
//! files of a commit by blob id, the paths two commits' trees differ at, and the
//! first-parent commits between two commits.
//!
//! Contract:
//! - [`Repo::changes`] compares the two trees entry by entry and descends only into
//!   subtrees whose ids differ, so its cost grows with the change, not with the tree. It
//!   lists every path that differs: a file added, removed, or changed in content, kind
//!   (file, directory, symlink, submodule) or mode; a directory added or removed is listed
//!   as every path below it (and the directory itself).
//! - Every object is checked before libgit2 inflates it, as everywhere in [`super`].
//! - [`Repo::manifest_blobs`] lists what [`Repo::snapshot`] reads, without reading it.

use std::collections::HashMap;

use git2::{ObjectType, Oid};

use super::{Repo, SourceError, TreeEntry, MODE_LINK};

/// One path that differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// `/`-separated, relative to the repository root.
    pub path: String,
    /// The regular file at that path in the newer commit, if it is one there.
    pub file: Option<Oid>,
}

/// A tree entry reduced to what a comparison needs.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Item {
    id: Oid,
    mode: i32,
    kind: Option<ObjectType>,
}

impl Item {
    fn is_tree(&self) -> bool {
        self.kind == Some(ObjectType::Tree)
    }

    /// The blob id when this is a regular file (not a symlink).
    fn file(&self) -> Option<Oid> {
        (self.kind == Some(ObjectType::Blob) && self.mode != MODE_LINK).then_some(self.id)
    }
}

impl Repo {
    /// Every regular file of `commit`'s tree for which `is_manifest(path)` holds, with its
    /// blob id, sorted by path. Symlinks, submodules and paths that are not UTF-8 are
    /// skipped (as [`Repo::snapshot`] does).
    pub fn manifest_blobs(
        &self,
        commit: &str,
        is_manifest: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(String, Oid)>, SourceError> {
        let commit = self.find_commit(commit)?;
        let mut files = Vec::new();
        let mut pending = vec![(String::new(), commit.tree_id())];
        while let Some((dir, id)) = pending.pop() {
            for (path, item) in self.items(&dir, id, commit.id())? {
                if item.is_tree() {
                    pending.push((path, item.id));
                } else if let Some(blob) = item.file().filter(|_| is_manifest(&path)) {
                    files.push((path, blob));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// The paths at which the trees of `old` and `new` differ (see the module contract),
    /// in no particular order.
    pub fn changes(&self, old: &str, new: &str) -> Result<Vec<Changed>, SourceError> {
        let (old, new) = (self.find_commit(old)?, self.find_commit(new)?);
        let mut out = Vec::new();
        let mut pending = vec![(String::new(), Some(old.tree_id()), Some(new.tree_id()))];
        while let Some((dir, a, b)) = pending.pop() {
            if a == b {
                continue;
            }
            let before = match a {
                Some(id) => self.items(&dir, id, old.id())?,
                None => Vec::new(),
            };
            let after = match b {
                Some(id) => self.items(&dir, id, new.id())?,
                None => Vec::new(),
            };
            let index = |list: &[(String, Item)]| -> HashMap<String, Item> {
                list.iter().cloned().collect()
            };
            let (was, is) = (index(&before), index(&after));
            for (path, item) in &before {
                if !is.contains_key(path) {
                    changed(&mut out, &mut pending, path, Some(*item), None);
                }
            }
            for (path, item) in &after {
                let was = was.get(path).copied();
                if was != Some(*item) {
                    changed(&mut out, &mut pending, path, was, Some(*item));
                }
            }
        }
        Ok(out)
    }

    /// The commits strictly between `new` and its first-parent ancestor `old`, newest
    /// first; `None` when `old` is not among `new`'s first `limit` first-parent ancestors.
    pub fn commits_between(
        &self,
        old: &str,
        new: &str,
        limit: usize,
    ) -> Result<Option<Vec<String>>, SourceError> {
        let mut commit = self.find_commit(new)?;
        let mut between = Vec::new();
        for _ in 0..limit {
            let Some(parent) = commit.parent_ids().next() else {
                return Ok(None);
            };
            let sha = parent.to_string();
            if sha == old {
                return Ok(Some(between));
            }
            commit = self.find_commit(&sha)?;
            between.push(sha);
        }
        Ok(None)
    }

    /// The blob of the regular file at `path` in `commit`, if there is one.
    pub fn blob_at(&self, commit: &str, path: &str) -> Result<Option<Oid>, SourceError> {
        Ok(match self.lookup(commit, path)? {
            Some((id, TreeEntry::File)) => Some(id),
            _ => None,
        })
    }

    /// A manifest's contents by blob id (only its size when over the limit).
    pub fn read_blob(&self, id: Oid) -> Result<crate::validate::Contents, SourceError> {
        self.contents(id)
    }

    /// The first line of `commit`'s message.
    pub fn summary(&self, commit: &str) -> Result<String, SourceError> {
        let commit = self.find_commit(commit)?;
        Ok(String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned())
    }

    /// The entries of the tree `id` at `dir` (names that are not UTF-8 skipped, with a
    /// warning naming `commit`), each with its full path.
    fn items(&self, dir: &str, id: Oid, commit: Oid) -> Result<Vec<(String, Item)>, SourceError> {
        let tree = self.tree(id)?;
        let mut items = Vec::with_capacity(tree.len());
        for entry in tree.iter() {
            let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
                tracing::warn!(%commit, dir, "skipping a tree entry whose name is not UTF-8");
                continue;
            };
            let path = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            let item = Item {
                id: entry.id(),
                mode: entry.filemode(),
                kind: entry.kind(),
            };
            items.push((path, item));
        }
        Ok(items)
    }
}

/// Records that `path` went from `was` to `is`; a directory on either side is compared
/// below (its every path listed when the other side has none). A directory on both sides
/// is not itself a change.
fn changed(
    out: &mut Vec<Changed>,
    pending: &mut Vec<(String, Option<Oid>, Option<Oid>)>,
    path: &str,
    was: Option<Item>,
    is: Option<Item>,
) {
    let tree = |item: Option<Item>| item.filter(Item::is_tree).map(|i| i.id);
    let (a, b) = (tree(was), tree(is));
    if a.is_some() || b.is_some() {
        pending.push((path.to_string(), a, b));
    }
    if a.is_some() && b.is_some() {
        // A directory on both sides: only what differs below it changed.
        return;
    }
    out.push(Changed {
        path: path.to_string(),
        file: is.and_then(|i| i.file()),
    });
}

#[cfg(test)]
mod tests;
