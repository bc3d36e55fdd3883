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
mod fetch;
pub mod object;
#[cfg(test)]
pub(crate) mod testing;
pub mod watch;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::{ErrorCode, ObjectType, Oid, Repository, RepositoryOpenFlags};

use object::Damage;

use crate::validate::{Contents, SourceFile};

pub use checkout::Checkouts;
pub use fetch::FETCH_TIMEOUT;
pub use watch::watch;

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
        let commit = self.find_commit(commit)?;
        let tree = self.tree(commit.tree_id())?;
        let mut files = Vec::new();
        let mut pending = vec![(String::new(), tree)];
        while let Some((dir, tree)) = pending.pop() {
            for entry in tree.iter() {
                let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
                    tracing::warn!(
                        commit = %commit.id(),
                        dir,
                        "skipping a tree entry whose name is not UTF-8"
                    );
                    continue;
                };
                let path = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                match entry.kind() {
                    Some(ObjectType::Tree) => {
                        let sub = self.tree(entry.id())?;
                        pending.push((path, sub));
                    }
                    Some(ObjectType::Blob)
                        if entry.filemode() != MODE_LINK && is_manifest(&path) =>
                    {
                        files.push(SourceFile {
                            display: path.clone(),
                            repo_path: path,
                            bytes: self.contents(entry.id())?,
                        });
                    }
                    _ => {}
                }
            }
        }
        files.sort_by(|a, b| a.repo_path.cmp(&b.repo_path));
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
        let commit = self.find_commit(commit)?;
        let mut tree = self.tree(commit.tree_id())?;
        let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
        while let Some(name) = parts.next() {
            let Some((id, kind, mode)) = tree
                .get_name(name)
                .map(|entry| (entry.id(), entry.kind(), entry.filemode()))
            else {
                return Ok(None);
            };
            if parts.peek().is_none() {
                let file = kind == Some(ObjectType::Blob) && mode != MODE_LINK;
                return Ok(file.then_some(id));
            }
            if kind != Some(ObjectType::Tree) {
                return Ok(None);
            }
            tree = self.tree(id)?;
        }
        Ok(None)
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
mod tests {
    use super::testing::{config, long_manifest, open, truncate_object, write, Fixture};
    use super::*;
    use crate::manifest::discover::is_default_manifest;

    fn paths(snapshot: &Snapshot) -> Vec<&str> {
        snapshot
            .files
            .iter()
            .map(|f| f.repo_path.as_str())
            .collect()
    }

    #[test]
    fn snapshot_reads_committed_files_only() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(&repo, &[("prefect.yaml", "committed\n")], "first");
        write(&repo, "prefect.yaml", "edited, not committed\n");
        write(&repo, "deployments/untracked.yaml", "untracked\n");
        write(&repo, "deployments/staged.yaml", "staged\n");
        fx.git(&repo, &["add", "deployments/staged.yaml"]);

        let source = open(&repo);
        assert_eq!(source.head().unwrap(), sha);
        let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
        assert_eq!(snapshot.commit, sha);
        assert_eq!(snapshot.summary, "first");
        assert_eq!(paths(&snapshot), ["prefect.yaml"]);
        assert_eq!(snapshot.files[0].bytes.as_bytes(), b"committed\n");
        assert_eq!(snapshot.files[0].display, "prefect.yaml");
        let age = Utc::now() - snapshot.committed_at;
        assert!(
            age.num_seconds().abs() < 600,
            "committed_at {}",
            snapshot.committed_at
        );
    }

    #[test]
    fn later_commits_discovery_and_file_at() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let first = fx.commit(&repo, &[("prefect.yaml", "v1\n")], "first");
        let second = fx.commit(
            &repo,
            &[
                ("prefect.yaml", "v2\n"),
                ("svc/prefect.yaml", "svc\n"),
                ("deployments/a/b.yaml", "nested\n"),
                ("deployments/notes.md", "not a manifest\n"),
                ("other.yaml", "not a manifest\n"),
                (".hidden/prefect.yaml", "hidden\n"),
            ],
            "second\n\nbody",
        );
        let source = open(&repo);
        assert_eq!(source.head().unwrap(), second);
        let snapshot = source.snapshot(&second, &is_default_manifest).unwrap();
        assert_eq!(
            paths(&snapshot),
            ["deployments/a/b.yaml", "prefect.yaml", "svc/prefect.yaml"]
        );
        assert_eq!(snapshot.summary, "second");
        assert_eq!(snapshot.files[1].bytes.as_bytes(), b"v2\n");

        let old = source.snapshot(&first, &is_default_manifest).unwrap();
        assert_eq!(paths(&old), ["prefect.yaml"]);
        assert_eq!(
            source.file_at(&first, "prefect.yaml").unwrap().unwrap(),
            Contents::Bytes(b"v1\n".to_vec())
        );
        assert_eq!(source.file_at(&first, "svc/prefect.yaml").unwrap(), None);
        assert_eq!(source.file_at(&second, "svc").unwrap(), None);
        assert_eq!(
            source
                .file_at(&second, "deployments/a/b.yaml")
                .unwrap()
                .unwrap(),
            Contents::Bytes(b"nested\n".to_vec())
        );
    }

    #[test]
    fn a_file_over_the_size_limit_is_reported_by_size_without_being_read() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(
            &repo,
            &[
                ("prefect.yaml", "0123456789\n"),
                ("deployments/small.yaml", "0123456789"),
            ],
            "first",
        );
        let source = Repo::open(&SourceConfig {
            max_file_size: 10,
            ..config(&repo, "main")
        })
        .unwrap();
        let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
        assert_eq!(paths(&snapshot), ["deployments/small.yaml", "prefect.yaml"]);
        assert_eq!(
            snapshot.files[0].bytes,
            Contents::Bytes(b"0123456789".to_vec())
        );
        let too_large = Contents::TooLarge {
            size: 11,
            limit: 10,
        };
        assert_eq!(snapshot.files[1].bytes, too_large);
        assert_eq!(
            source.file_at(&sha, "prefect.yaml").unwrap(),
            Some(too_large)
        );
    }

    #[test]
    fn symlinks_and_submodules_are_skipped() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        write(&repo, "outside.yaml", "outside\n");
        std::os::unix::fs::symlink("../outside.yaml", repo.join("prefect.yaml")).unwrap();
        let sub = fx.init("sub");
        let sub_sha = fx.commit(&sub, &[("x", "x\n")], "sub");
        let cacheinfo = format!("160000,{sub_sha},deployments/sub.yaml");
        fx.git(&repo, &["update-index", "--add", "--cacheinfo", &cacheinfo]);
        let sha = fx.commit(&repo, &[], "links");
        let source = open(&repo);
        let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
        assert!(snapshot.files.is_empty(), "{:?}", paths(&snapshot));
        assert_eq!(source.file_at(&sha, "prefect.yaml").unwrap(), None);
    }

    #[test]
    fn missing_path_is_missing() {
        let fx = Fixture::new();
        let err = Repo::open(&config(&fx.path("nope"), "main")).unwrap_err();
        assert!(matches!(err, SourceError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("git init"), "{err}");
        // A plain directory is no repository either, and its parents are not searched.
        let repo = fx.init("work");
        std::fs::create_dir(repo.join("sub")).unwrap();
        let err = Repo::open(&config(&repo.join("sub"), "main")).unwrap_err();
        assert!(matches!(err, SourceError::Missing { .. }), "{err:?}");
    }

    #[test]
    fn empty_repo_has_no_branch_and_reopening_later_works() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let source = open(&repo);
        let err = source.head().unwrap_err();
        assert!(
            matches!(err, SourceError::NoBranch { empty: true, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("no commits yet"), "{err}");

        let sha = fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        assert_eq!(open(&repo).head().unwrap(), sha);
    }

    #[test]
    fn wrong_branch_is_no_branch() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        let source = Repo::open(&config(&repo, "release")).unwrap();
        let err = source.head().unwrap_err();
        assert!(
            matches!(&err, SourceError::NoBranch { empty: false, branch, .. } if branch == "release"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "branch `release` does not exist in {}: create it, or pass the right --branch",
                repo.display()
            )
        );
    }

    #[test]
    fn damaged_objects_are_an_error() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        let tree = fx.git(&repo, &["rev-parse", "HEAD^{tree}"]);
        let object = repo.join(".git/objects").join(&tree[..2]).join(&tree[2..]);
        std::fs::remove_file(object).unwrap();
        let source = open(&repo);
        assert_eq!(source.head().unwrap(), sha);
        let err = source.snapshot(&sha, &is_default_manifest).unwrap_err();
        assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("git fsck"), "{err}");
        assert!(source.file_at(&sha, "prefect.yaml").is_err());

        // The commit object itself gone: head() cannot peel the branch to a commit.
        let commit = repo.join(".git/objects").join(&sha[..2]).join(&sha[2..]);
        std::fs::remove_file(commit).unwrap();
        let err = open(&repo).head().unwrap_err();
        assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");
    }

    /// Regression (issue 12.5): with every file descriptor in use, reading the branch was
    /// reported as "the git repository is damaged: run `git fsck`". The reads run in a
    /// child process (this test again, see `testing::in_child`), since using up the
    /// descriptors here would break the tests running beside this one.
    #[test]
    fn reads_out_of_descriptors_say_too_many_open_files() {
        const NAME: &str = "source::tests::reads_out_of_descriptors_say_too_many_open_files";
        if crate::source::testing::is_child(NAME) {
            let repo = std::env::var_os("SUNDIAL_TEST_FD_REPO").unwrap();
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, 256, 256).unwrap();
            let source = open(Path::new(&repo));
            let mut hog = Vec::new();
            while let Ok(file) = std::fs::File::open("/dev/null") {
                hog.push(file);
            }
            let answer = match source.head() {
                Ok(sha) => format!("Ok: {sha}"),
                Err(e @ SourceError::TooManyOpenFiles { .. }) => {
                    format!("TooManyOpenFiles: {}", crate::engine::error_chain(&e))
                }
                Err(e) => format!("{e:?}: {}", crate::engine::error_chain(&e)),
            };
            drop(hog);
            println!("head: {answer}");
            return;
        }
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        let out =
            crate::source::testing::in_child(NAME, &[("SUNDIAL_TEST_FD_REPO", repo.as_os_str())])
                .output()
                .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("head: ").map(|(_, answer)| answer))
            .unwrap_or_else(|| panic!("no answer from the child:\n{stdout}"));
        assert!(line.starts_with("TooManyOpenFiles: "), "{line}");
        assert!(line.contains("too many open files"), "{line}");
        assert!(!line.contains("damaged"), "{line}");
        assert!(
            line.contains("Too many open files"),
            "the cause is kept: {line}"
        );
    }

    #[test]
    fn unknown_or_malformed_commits() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        let source = open(&repo);
        let err = source
            .snapshot(&"1".repeat(40), &is_default_manifest)
            .unwrap_err();
        assert!(matches!(err, SourceError::NoCommit { .. }), "{err:?}");
        let err = source.file_at("abc", "prefect.yaml").unwrap_err();
        assert!(matches!(err, SourceError::BadSha { .. }), "{err:?}");
    }

    #[test]
    fn bare_repository_works() {
        let fx = Fixture::new();
        let work = fx.init("work");
        let sha = fx.commit(&work, &[("deployments/etl.yaml", "x\n")], "first");
        let bare = fx.path("bare.git");
        fx.git(
            fx.dir.path(),
            &["clone", "-q", "--bare", work.to_str().unwrap(), "bare.git"],
        );
        let source = open(&bare);
        assert_eq!(source.git_dir(), bare.canonicalize().unwrap());
        assert_eq!(source.head().unwrap(), sha);
        let snapshot = source.snapshot(&sha, &is_default_manifest).unwrap();
        assert_eq!(paths(&snapshot), ["deployments/etl.yaml"]);
    }

    #[test]
    fn repo_is_send() {
        fn send<T: Send>() {}
        send::<Repo>();
        send::<Snapshot>();
        send::<SourceError>();
    }

    #[test]
    fn git_dir_of_a_work_tree() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let source = open(&repo);
        assert_eq!(source.git_dir(), repo.join(".git").canonicalize().unwrap());
    }

    /// Regression (issue 12.4): a truncated blob at the branch tip made libgit2 loop
    /// forever in `inflate`, so the daemon's read never returned. Bounded here, so a
    /// failing check shows as a time-out instead of a hung test.
    #[test]
    fn a_truncated_tip_blob_is_a_damaged_object_not_a_hang() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(&repo, &[("prefect.yaml", &long_manifest())], "big");
        let blob = fx.git(&repo, &["rev-parse", "HEAD:prefect.yaml"]);
        truncate_object(&repo, &blob);
        let cfg = config(&repo, "main");
        let started = std::time::Instant::now();
        let err = bounded::run_blocking(
            &repo,
            "reading",
            std::time::Duration::from_secs(20),
            move || {
                let source = Repo::open(&cfg)?;
                assert_eq!(source.head()?, sha);
                source.snapshot(&sha, &is_default_manifest)
            },
        )
        .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let SourceError::DamagedObject { object, damage, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(object, &blob);
        assert!(matches!(damage, Damage::Truncated { .. }), "{damage:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "the git repository at {} is damaged: object {blob} ({}) {damage}; run `git \
                 fsck` there and restore the object (e.g. fetch it again from a clone)",
                repo.display(),
                super::testing::loose_object(&repo, &blob).display()
            )
        );
    }

    /// A file's existence is answered from its tree: a damaged file that is only looked
    /// up (a requirements file) does not fail the read, while reading it does.
    #[test]
    fn has_file_reads_trees_only() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(
            &repo,
            &[("prefect.yaml", "x\n"), ("flows/req.txt", &long_manifest())],
            "first",
        );
        let blob = fx.git(&repo, &["rev-parse", "HEAD:flows/req.txt"]);
        truncate_object(&repo, &blob);
        let source = open(&repo);
        assert!(source.has_file(&sha, "flows/req.txt").unwrap());
        assert!(source.has_file(&sha, "/flows//req.txt").unwrap());
        assert!(!source.has_file(&sha, "flows").unwrap());
        assert!(!source.has_file(&sha, "flows/none.txt").unwrap());
        assert!(!source.has_file(&sha, "prefect.yaml/x").unwrap());
        let err = source.file_at(&sha, "flows/req.txt").unwrap_err();
        assert!(matches!(err, SourceError::DamagedObject { .. }), "{err:?}");
    }

    /// Regression (issue 12.6): deleting the only branch said "the repository has no
    /// commits yet" although every commit was still there.
    #[test]
    fn a_deleted_branch_is_missing_not_no_commits_yet() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "x\n")], "first");
        fx.git(&repo, &["update-ref", "-d", "refs/heads/main"]);
        let err = open(&repo).head().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "branch `main` does not exist in {}: create it, or pass the right --branch",
                repo.display()
            )
        );
    }

    /// What the check in `object` works around: the bundled libgit2 never returns from
    /// reading a truncated loose object. When this fails, libgit2 has the fix (libgit2
    /// PR 7346) and the check may go. The read runs in a child process (this test again,
    /// see `testing::in_child`), which is killed: a looping thread cannot be.
    #[test]
    fn the_bundled_libgit2_still_loops_on_a_truncated_object() {
        const NAME: &str = "source::tests::the_bundled_libgit2_still_loops_on_a_truncated_object";
        if crate::source::testing::is_child(NAME) {
            let repo = std::env::var_os("SUNDIAL_TEST_LOOP_REPO").unwrap();
            let blob = std::env::var("SUNDIAL_TEST_LOOP_BLOB").unwrap();
            let git = Repository::open(repo).unwrap();
            let answer = git.find_blob(Oid::from_str(&blob).unwrap()).map(|_| ());
            println!("find_blob returned: {answer:?}");
            return;
        }
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", &long_manifest())], "big");
        let blob = fx.git(&repo, &["rev-parse", "HEAD:prefect.yaml"]);
        truncate_object(&repo, &blob);
        let mut child = crate::source::testing::in_child(
            NAME,
            &[
                ("SUNDIAL_TEST_LOOP_REPO", repo.as_os_str()),
                ("SUNDIAL_TEST_LOOP_BLOB", std::ffi::OsStr::new(&blob)),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut ended = None;
        while std::time::Instant::now() < deadline && ended.is_none() {
            ended = child.try_wait().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        assert!(
            ended.is_none(),
            "libgit2 returned from a truncated object ({ended:?}): {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
