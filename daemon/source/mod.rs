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
//!   do; nothing here panics on bad repository contents. Opening is cheap, so a caller
//!   whose open failed simply calls [`Repo::open`] again on its next attempt.
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

pub mod checkout;
mod fetch;
#[cfg(test)]
pub(crate) mod testing;
pub mod watch;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::{ErrorCode, ObjectType, Oid, Repository, RepositoryOpenFlags};

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
            Err(source) => {
                return Err(SourceError::Corrupt {
                    repo: path.clone(),
                    source,
                })
            }
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
        let commit = reference.peel_to_commit().map_err(|e| self.corrupt(e))?;
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
        let tree = commit.tree().map_err(|e| self.corrupt(e))?;
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
                        let sub = self
                            .git
                            .find_tree(entry.id())
                            .map_err(|e| self.corrupt(e))?;
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
        let commit = self.find_commit(commit)?;
        let tree = commit.tree().map_err(|e| self.corrupt(e))?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.corrupt(e)),
        };
        if entry.kind() != Some(ObjectType::Blob) || entry.filemode() == MODE_LINK {
            return Ok(None);
        }
        self.contents(entry.id()).map(Some)
    }

    /// A blob's bytes, or only its size (read from the object's header, without inflating
    /// it) when that is over [`SourceConfig::max_file_size`].
    fn contents(&self, blob: Oid) -> Result<Contents, SourceError> {
        let odb = self.git.odb().map_err(|e| self.corrupt(e))?;
        let (size, _) = odb.read_header(blob).map_err(|e| self.corrupt(e))?;
        Contents::read_within(size as u64, self.config.max_file_size, || {
            let blob = self.git.find_blob(blob).map_err(|e| self.corrupt(e))?;
            Ok(blob.content().to_vec())
        })
    }

    fn find_commit(&self, sha: &str) -> Result<git2::Commit<'_>, SourceError> {
        let oid = parse_sha(sha)?;
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
        // "No commits" means no refs at all; HEAD alone may name any unborn branch.
        let empty = self
            .git
            .references()
            .map(|mut refs| refs.next().is_none())
            .unwrap_or(false);
        SourceError::NoBranch {
            branch: self.config.branch.clone(),
            repo: self.config.repo.clone(),
            remote: self.config.remote.clone(),
            empty,
        }
    }

    fn corrupt(&self, source: git2::Error) -> SourceError {
        SourceError::Corrupt {
            repo: self.config.repo.clone(),
            source,
        }
    }
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
    use super::testing::{config, open, write, Fixture};
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
}
