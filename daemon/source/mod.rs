//! The git source: what is **committed** on one branch, read with git2.
//!
//! Contract:
//! - Only commits are read, never a working directory: an uncommitted edit, a staged
//!   file or an untracked file never reaches a [`Snapshot`], so it never deploys.
//! - The branch is `refs/heads/<branch>`, or `refs/remotes/<remote>/<branch>` when a
//!   remote is configured; [`Repo::fetch`] updates that ref with the `git` CLI, so the
//!   daemon user's ssh keys, credential helpers and `insteadOf` rules apply.
//! - Normal and bare repositories both work. A repository that is missing, empty, lacks
//!   the branch or is damaged yields a typed [`SourceError`] whose message says what to
//!   do; nothing here panics on bad repository contents. A read that fails because the
//!   process is out of file descriptors is [`SourceError::TooManyOpenFiles`], never
//!   "damaged": the repository is fine and the next read may succeed. Opening is cheap, so a caller
//!   whose open failed simply calls [`Repo::open`] again on its next attempt.
//! - Every object is checked before libgit2 inflates it ([`object`]): a truncated loose
//!   object, on which the bundled libgit2 would loop forever, is
//!   [`SourceError::DamagedObject`] naming the object and its file. Reads that hang anyway
//!   (a hung file system, another libgit2 bug) are for the caller to bound: see
//!   [`bounded`], which the daemon runs every read through.
//! - Inside a tree only blobs count: symlinks and submodules are skipped when reading
//!   manifests, and nothing outside the tree is ever followed. A file larger than
//!   [`SourceConfig::max_file_size`] is never read: its size comes from the object header,
//!   and it reaches validation as [`Contents::TooLarge`], which reports it. Every other
//!   limit on content belongs to validation.
//! - [`Repo`] is `Send` but not `Sync` (git2's handles are not): use one per thread, e.g.
//!   inside `tokio::task::spawn_blocking`.
//!
//! Non-goals: pushing, merging, or any write to the repository other than the fetched
//! remote-tracking ref. `watch` notices that the branch may have moved; `checkout`
//! materializes commits for runs.

pub mod bounded;
pub mod checkout;
pub mod diff;
mod fetch;
pub mod object;
#[cfg(test)]
pub(crate) mod testing;
pub mod watch;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::{ErrorCode, ObjectType, Oid, Repository, RepositoryOpenFlags};

pub use diff::Changed;

use object::Damage;

use crate::validate::locate::{Entry, View};
use crate::validate::{Contents, SourceFile};

pub use checkout::Checkouts;
pub use fetch::{stop_fetches, FETCH_TIMEOUT};
pub use watch::watch;

/// What [`Repo::introduced`] finds: a commit and its time.
pub type Introduced = Option<(String, DateTime<Utc>)>;

/// How many commits [`Repo::introduced`] walks back at most.
pub const HISTORY_COMMITS: usize = 2_000;
/// How many versions of the file [`Repo::introduced`] reads at most.
pub const HISTORY_READS: usize = 100;

/// What a tree path is, for [`Repo::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TreeEntry {
    File,
    Dir,
}

/// A commit's tree seen through `validate::locate`'s [`View`].
pub struct CommitView<'a> {
    repo: &'a Repo,
    commit: &'a str,
}

impl View for CommitView<'_> {
    fn entry(&self, path: &str) -> Option<Entry> {
        match self.repo.lookup(self.commit, path).ok()? {
            Some((_, TreeEntry::File)) => Some(Entry::File),
            Some((_, TreeEntry::Dir)) => Some(Entry::Dir),
            None => Some(Entry::Missing),
        }
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.repo.file_at(self.commit, path).ok()?? {
            Contents::Bytes(bytes) => Some(bytes),
            Contents::TooLarge { .. } => None,
        }
    }
}

/// Git's file mode of a symbolic link tree entry.
const MODE_LINK: i32 = 0o120000;

/// Where to read: a repository path, a branch, and optionally a remote to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub repo: PathBuf,
    pub branch: String,
    /// The name of a configured remote (e.g. `origin`), not a URL.
    pub remote: Option<String>,
    /// Files larger than this many bytes are not read (`--max-file-size`).
    pub max_file_size: u64,
}

/// Why the source could not be read. Messages say what to do; the underlying git or I/O
/// error is available from `source()`, never repeated in the message.
#[derive(thiserror::Error, Debug)]
pub enum SourceError {
    #[error("no git repository at {}: create it with `git init` or fix --repo", path.display())]
    Missing { path: PathBuf },
    #[error("{}", no_branch_message(branch, repo, remote.as_deref(), *empty))]
    NoBranch {
        branch: String,
        repo: PathBuf,
        /// The remote whose tracking branch was looked for, if one is configured.
        remote: Option<String>,
        /// The repository has no commits (no refs) at all.
        empty: bool,
    },
    #[error(
        "git refuses the repository at {}: it is owned by another user; run the daemon as \
         its owner or add the path to `safe.directory` in the daemon user's git config",
        path.display()
    )]
    NotOwned { path: PathBuf },
    #[error("the git repository at {} is damaged: run `git fsck` there", repo.display())]
    Corrupt {
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error(
        "the git repository at {} is damaged: object {object} ({}) {damage}; run `git fsck` \
         there and restore the object (e.g. fetch it again from a clone)",
        repo.display(),
        path.display()
    )]
    DamagedObject {
        repo: PathBuf,
        object: String,
        path: PathBuf,
        damage: Damage,
    },
    #[error(
        "{what} the git repository at {} timed out after {seconds} s; check it with \
         `git fsck` there (a damaged object can make a read loop forever)",
        repo.display()
    )]
    TimedOut {
        repo: PathBuf,
        /// What was being done, e.g. "reading".
        what: &'static str,
        seconds: f64,
    },
    #[error(
        "earlier reads of the git repository at {} timed out and have still not ended \
         ({count} of them), so no new read starts until one does; check it with `git fsck` \
         there, and restart the daemon if this lasts",
        repo.display()
    )]
    Stuck { repo: PathBuf, count: usize },
    #[error(
        "reading the git repository at {} failed unexpectedly (a bug in sundial or libgit2)",
        repo.display()
    )]
    Panicked { repo: PathBuf },
    #[error(
        "cannot read the git repository at {}: the daemon has too many open files (its \
         open-file limit is used up); the next poll tries again; raise the limit \
         (LimitNOFILE= of the unit, `ulimit -n`) if this lasts",
        repo.display()
    )]
    TooManyOpenFiles {
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error(
        "commit {commit} is not in {}: was the branch rewritten and the commit \
         garbage-collected?",
        repo.display()
    )]
    NoCommit { commit: String, repo: PathBuf },
    #[error("`{sha}` is not a full commit id (40 hexadecimal digits)")]
    BadSha { sha: String },
    #[error(
        "`git fetch` from remote `{remote}` failed: {detail}; check the remote's URL and the \
         credentials of the daemon's user"
    )]
    Fetch { remote: String, detail: String },
    #[error("git operation failed")]
    Git(#[from] git2::Error),
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn no_branch_message(branch: &str, repo: &Path, remote: Option<&str>, empty: bool) -> String {
    let repo = repo.display();
    match (remote, empty) {
        (None, true) => format!(
            "the repository at {repo} has no commits yet: commit a manifest to branch `{branch}`"
        ),
        (Some(remote), true) => format!(
            "the repository at {repo} has no commits yet: nothing has been fetched from \
             remote `{remote}`; check that it has a branch `{branch}`"
        ),
        (None, false) => format!(
            "branch `{branch}` does not exist in {repo}: create it, or pass the right --branch"
        ),
        (Some(remote), false) => format!(
            "branch `{remote}/{branch}` does not exist in {repo}: check that remote `{remote}` \
             has a branch `{branch}` and that it has been fetched"
        ),
    }
}

/// The manifest files of one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Full sha.
    pub commit: String,
    pub committed_at: DateTime<Utc>,
    /// The first line of the commit message.
    pub summary: String,
    /// Sorted by `repo_path`.
    pub files: Vec<SourceFile>,
}

/// An open repository and the branch to read from it.
pub struct Repo {
    git: Repository,
    config: SourceConfig,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("config", &self.config)
            .finish()
    }
}

impl Repo {
    /// Opens `config.repo` itself (a work tree holding `.git`, or a bare repository);
    /// parent directories are never searched. Errors: [`SourceError::Missing`],
    /// [`SourceError::NotOwned`], [`SourceError::Corrupt`].
    pub fn open(config: &SourceConfig) -> Result<Repo, SourceError> {
        let path = &config.repo;
        let opened = Repository::open_ext(
            path,
            RepositoryOpenFlags::NO_SEARCH,
            std::iter::empty::<&std::ffi::OsStr>(),
        );
        let git = match opened {
            Ok(git) => git,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(SourceError::Missing { path: path.clone() })
            }
            Err(e) if e.code() == ErrorCode::Owner => {
                return Err(SourceError::NotOwned { path: path.clone() })
            }
            Err(source) => return Err(unreadable(path, source)),
        };
        Ok(Repo {
            git,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The directory holding the repository's refs and `HEAD`: `<repo>/.git` for a normal
    /// repository, the repository itself for a bare one (for a linked worktree, the
    /// common directory, where branch refs live).
    pub fn git_dir(&self) -> PathBuf {
        self.git.commondir().to_path_buf()
    }

    /// The ref read for the branch: `refs/remotes/<remote>/<branch>` if a remote is set,
    /// else `refs/heads/<branch>`.
    pub fn reference(&self) -> String {
        match &self.config.remote {
            Some(remote) => format!("refs/remotes/{remote}/{}", self.config.branch),
            None => format!("refs/heads/{}", self.config.branch),
        }
    }

    /// The branch's head commit sha. Errors: [`SourceError::NoBranch`] (also for a
    /// repository without commits), [`SourceError::Corrupt`].
    pub fn head(&self) -> Result<String, SourceError> {
        let reference = match self.git.find_reference(&self.reference()) {
            Ok(r) => r,
            Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidSpec) => {
                return Err(self.no_branch())
            }
            Err(e) => return Err(self.corrupt(e)),
        };
        let resolved = reference.resolve().map_err(|e| self.corrupt(e))?;
        if let Some(target) = resolved.target() {
            self.check(target)?;
        }
        let commit = resolved.peel_to_commit().map_err(|e| self.corrupt(e))?;
        Ok(commit.id().to_string())
    }

    /// Every file of `commit`'s tree for which `is_manifest(path)` holds (paths are
    /// `/`-separated and relative), sorted by path. Symlinks, submodules and paths that
    /// are not UTF-8 are skipped.
    pub fn snapshot(
        &self,
        commit: &str,
        is_manifest: &dyn Fn(&str) -> bool,
    ) -> Result<Snapshot, SourceError> {
        let blobs = self.manifest_blobs(commit, is_manifest)?;
        let commit = self.find_commit(commit)?;
        let mut files = Vec::with_capacity(blobs.len());
        for (path, blob) in blobs {
            files.push(SourceFile {
                display: path.clone(),
                repo_path: path,
                bytes: self.contents(blob)?,
            });
        }
        let time = commit.time();
        Ok(Snapshot {
            commit: commit.id().to_string(),
            committed_at: DateTime::from_timestamp(time.seconds(), 0).unwrap_or_default(),
            summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default())
                .into_owned(),
            files,
        })
    }

    /// The contents of the file at `path` (`/`-separated, relative) in `commit`, or `None`
    /// when the commit has no such file (or it is a directory, symlink or submodule); only
    /// its size when it is larger than the configured limit.
    pub fn file_at(&self, commit: &str, path: &str) -> Result<Option<Contents>, SourceError> {
        match self.file_entry(commit, path)? {
            Some(id) => self.contents(id).map(Some),
            None => Ok(None),
        }
    }

    /// A blob's bytes, or only its size (read from the object's header, without inflating
    /// it) when that is over [`SourceConfig::max_file_size`]. The object is checked first.
    fn contents(&self, blob: Oid) -> Result<Contents, SourceError> {
        self.check(blob)?;
        let odb = self.git.odb().map_err(|e| self.corrupt(e))?;
        let (size, _) = odb.read_header(blob).map_err(|e| self.corrupt(e))?;
        Contents::read_within(size as u64, self.config.max_file_size, || {
            Ok(self.blob(blob)?.content().to_vec())
        })
    }

    /// Whether `commit` has a file at `path` (as [`Repo::file_at`] would find it), without
    /// reading the file itself.
    pub fn has_file(&self, commit: &str, path: &str) -> Result<bool, SourceError> {
        Ok(self.file_entry(commit, path)?.is_some())
    }

    /// The blob id of the file at `path` in `commit`, walking the trees one checked
    /// object at a time.
    fn file_entry(&self, commit: &str, path: &str) -> Result<Option<Oid>, SourceError> {
        Ok(match self.lookup(commit, path)? {
            Some((id, TreeEntry::File)) => Some(id),
            _ => None,
        })
    }

    /// What `path` is in `commit`: a file (a blob that is not a symlink), a directory, or
    /// nothing (also for a symlink or submodule), with its object id.
    fn lookup(&self, commit: &str, path: &str) -> Result<Option<(Oid, TreeEntry)>, SourceError> {
        let commit = self.find_commit(commit)?;
        let mut tree = self.tree(commit.tree_id())?;
        let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
        if parts.peek().is_none() {
            return Ok(Some((tree.id(), TreeEntry::Dir)));
        }
        while let Some(name) = parts.next() {
            let Some((id, kind, mode)) = tree
                .get_name(name)
                .map(|entry| (entry.id(), entry.kind(), entry.filemode()))
            else {
                return Ok(None);
            };
            if parts.peek().is_none() {
                return Ok(match kind {
                    Some(ObjectType::Blob) if mode != MODE_LINK => Some((id, TreeEntry::File)),
                    Some(ObjectType::Tree) => Some((id, TreeEntry::Dir)),
                    _ => None,
                });
            }
            if kind != Some(ObjectType::Tree) {
                return Ok(None);
            }
            tree = self.tree(id)?;
        }
        Ok(None)
    }

    /// Where what `present` looks for in the file at `path` came in: walking `head`'s
    /// first-parent history (newest first) while the file is there and `present` holds
    /// for its bytes, the oldest commit of that unbroken run, with its commit time. The
    /// file is read only where its blob changed. Bounded: at most [`HISTORY_COMMITS`]
    /// commits and [`HISTORY_READS`] reads, after which the oldest commit examined is the
    /// answer. `None` when `present` does not hold at `head` itself.
    pub fn introduced(
        &self,
        head: &str,
        path: &str,
        present: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Introduced, SourceError> {
        Ok(self.introduced_within(head, path, present)?.0)
    }

    /// [`Repo::introduced`], and whether the walk stopped at one of its bounds (so that a
    /// walk from a newer commit may end elsewhere).
    pub fn introduced_within(
        &self,
        head: &str,
        path: &str,
        present: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(Introduced, bool), SourceError> {
        let mut commit = self.find_commit(head)?;
        let mut found = None;
        let mut last: Option<(Oid, bool)> = None;
        let mut reads = 0;
        for _ in 0..HISTORY_COMMITS {
            let sha = commit.id().to_string();
            let holds = match self.file_entry(&sha, path)? {
                None => false,
                Some(id) => match last {
                    Some((seen, holds)) if seen == id => holds,
                    _ if reads >= HISTORY_READS => return Ok((found, true)),
                    _ => {
                        reads += 1;
                        let holds = match self.contents(id)? {
                            Contents::Bytes(bytes) => present(&bytes),
                            Contents::TooLarge { .. } => false,
                        };
                        last = Some((id, holds));
                        holds
                    }
                },
            };
            if !holds {
                return Ok((found, false));
            }
            let time = DateTime::from_timestamp(commit.time().seconds(), 0).unwrap_or_default();
            found = Some((sha, time));
            let Some(parent) = commit.parent_ids().next() else {
                return Ok((found, false));
            };
            commit = self.find_commit(&parent.to_string())?;
        }
        Ok((found, true))
    }

    /// `commit`'s tree as a [`View`] for `validate::locate`: a read that fails "cannot
    /// tell", and a file over the size limit cannot be read.
    pub fn view<'a>(&'a self, commit: &'a str) -> CommitView<'a> {
        CommitView { repo: self, commit }
    }

    /// Checks object `id` before libgit2 inflates it (see [`object`]).
    pub(crate) fn check(&self, id: Oid) -> Result<(), SourceError> {
        let objects = self.git.commondir().join("objects");
        object::check_loose(&objects, id).map_err(|(path, damage)| SourceError::DamagedObject {
            repo: self.config.repo.clone(),
            object: id.to_string(),
            path,
            damage,
        })
    }

    pub(crate) fn tree(&self, id: Oid) -> Result<git2::Tree<'_>, SourceError> {
        self.check(id)?;
        self.git.find_tree(id).map_err(|e| self.corrupt(e))
    }

    pub(crate) fn blob(&self, id: Oid) -> Result<git2::Blob<'_>, SourceError> {
        self.check(id)?;
        self.git.find_blob(id).map_err(|e| self.corrupt(e))
    }

    fn find_commit(&self, sha: &str) -> Result<git2::Commit<'_>, SourceError> {
        let oid = parse_sha(sha)?;
        self.check(oid)?;
        match self.git.find_commit(oid) {
            Ok(commit) => Ok(commit),
            Err(e) if e.code() == ErrorCode::NotFound => Err(SourceError::NoCommit {
                commit: sha.to_string(),
                repo: self.config.repo.clone(),
            }),
            Err(e) => Err(self.corrupt(e)),
        }
    }

    fn no_branch(&self) -> SourceError {
        // "No commits" means no refs and no objects at all; HEAD alone may name any unborn
        // branch, and a repository whose only branch was deleted still holds its commits.
        let no_refs = self
            .git
            .references()
            .map(|mut refs| refs.next().is_none())
            .unwrap_or(false);
        let empty = no_refs && !self.has_objects();
        SourceError::NoBranch {
            branch: self.config.branch.clone(),
            repo: self.config.repo.clone(),
            remote: self.config.remote.clone(),
            empty,
        }
    }

    /// Whether the object database holds anything (stops at the first object).
    fn has_objects(&self) -> bool {
        let Ok(odb) = self.git.odb() else {
            return true;
        };
        let mut any = false;
        let _ = odb.foreach(|_| {
            any = true;
            false
        });
        any
    }

    fn corrupt(&self, source: git2::Error) -> SourceError {
        unreadable(&self.config.repo, source)
    }
}

/// A git2 error that is not one of the expected answers (not found, not owned): the
/// process being out of file descriptors, or else damage.
fn unreadable(repo: &Path, source: git2::Error) -> SourceError {
    if is_out_of_descriptors(&source) {
        SourceError::TooManyOpenFiles {
            repo: repo.to_path_buf(),
            source,
        }
    } else {
        SourceError::Corrupt {
            repo: repo.to_path_buf(),
            source,
        }
    }
}

/// libgit2 reports a failed `open`/`mmap` as an OS-class error whose message ends with
/// `strerror(errno)`; EMFILE (this process) and ENFILE (the whole system) are the
/// descriptor shortages.
fn is_out_of_descriptors(e: &git2::Error) -> bool {
    use nix::errno::Errno;
    e.class() == git2::ErrorClass::Os
        && [Errno::EMFILE, Errno::ENFILE]
            .iter()
            .any(|errno| e.message().contains(errno.desc()))
}

/// Parses a full sha (40 hex digits); short or padded forms are refused so that a sha is
/// always one commit and safe as a directory name.
pub(crate) fn parse_sha(sha: &str) -> Result<Oid, SourceError> {
    let bad = || SourceError::BadSha {
        sha: sha.to_string(),
    };
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Oid::from_str(sha).map_err(|_| bad())
}

#[cfg(test)]
mod tests;
