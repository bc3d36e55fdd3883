//! Checkouts of commits for runs: `<state-dir>/checkouts/<sha>/`.
//!
//! Contract:
//! - A checkout holds the commit's full tree, written from git objects (never from, and
//!   never touching, the repository's own working directory). Files keep their executable
//!   bit; a submodule becomes an empty directory, as after a plain `git clone`.
//! - A symlink is recreated only if it can only ever resolve inside the checkout: its
//!   target is relative, has no `..` after a normal component, and does not climb above
//!   the root. Anything else (absolute targets, escapes) is skipped with a warning, as are
//!   entry names git itself refuses (`.`, `..`, `.git`, names with `/`).
//! - One checkout per commit, shared by every run of it. Creation is atomic against a
//!   crashing process: the tree is written to `<root>/.tmp-<sha>-<pid>-<n>` and renamed
//!   into place, so the final name never holds half a tree; when two callers race, one
//!   rename wins and both get the same directory. (Files are not fsynced: after a power
//!   loss, delete the checkouts directory.)
//! - [`Checkouts::prune`] removes checkouts not in the keep set and `.tmp-` leftovers of
//!   other (dead) processes. The caller must keep every sha a run may still use.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use git2::{ObjectType, Tree};

use super::{bounded, parse_sha, Repo, SourceError};

/// Distinguishes temporary directories of concurrent `ensure` calls in one process.
static NEXT_TMP: AtomicUsize = AtomicUsize::new(0);

const TMP_PREFIX: &str = ".tmp-";

/// The checkouts directory, `<state-dir>/checkouts`.
#[derive(Debug, Clone)]
pub struct Checkouts {
    root: PathBuf,
}

impl Checkouts {
    pub fn new(root: PathBuf) -> Checkouts {
        Checkouts { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<sha>` holding the commit's tree, created on first use and reused after.
    /// Errors: [`SourceError::BadSha`], [`SourceError::NoCommit`], [`SourceError::Corrupt`],
    /// [`SourceError::DamagedObject`], [`SourceError::Io`] (the temporary directory is
    /// removed on every error).
    ///
    /// The tree is written on a thread of its own (with `repo` opened again there) that
    /// the caller stops waiting for after ten times the read time limit
    /// ([`SourceError::TimedOut`]); should that thread end later, its checkout is as good
    /// as any.
    pub fn ensure(&self, repo: &Repo, sha: &str) -> Result<PathBuf, SourceError> {
        let oid = parse_sha(sha)?;
        let sha = oid.to_string();
        let target = self.root.join(&sha);
        if target.is_dir() {
            return Ok(target);
        }
        let (checkouts, config) = (self.clone(), repo.config().clone());
        let limit = bounded::read_timeout() * 10;
        let path = config.repo.clone();
        bounded::run_blocking(&path, "checking out from", limit, move || {
            let repo = Repo::open(&config)?;
            checkouts.write(&repo, &sha, target)
        })
    }

    /// Writes the checkout of `sha` at `target`, through a temporary directory.
    fn write(&self, repo: &Repo, sha: &str, target: PathBuf) -> Result<PathBuf, SourceError> {
        let commit = repo.find_commit(sha)?;
        let tree = repo.tree(commit.tree_id())?;
        fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{sha}-{}-{n}", std::process::id()));
        let written = fs::create_dir(&tmp)
            .map_err(io("create", &tmp))
            .and_then(|()| write_tree(repo, &tree, &tmp, 0));
        let result = written.and_then(|()| match fs::rename(&tmp, &target) {
            Ok(()) => Ok(()),
            // Another caller renamed its copy into place first: use that one.
            Err(_) if target.is_dir() => Ok(()),
            Err(e) => Err(io("rename into place", &target)(e)),
        });
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| target)
    }

    /// Removes every checkout whose sha is not in `keep`, and `.tmp-` directories left by
    /// other processes; returns how many directories it removed. Entries that are not
    /// checkouts are left alone; a missing root is nothing to prune.
    pub fn prune(&self, keep: &HashSet<String>) -> Result<usize, SourceError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("read", &self.root)(e)),
        };
        let me = std::process::id().to_string();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(io("read", &self.root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stale = match name.strip_prefix(TMP_PREFIX) {
                // `<sha>-<pid>-<n>`: only this process can still be writing its own.
                Some(rest) => rest.split('-').nth(1).is_some_and(|pid| pid != me),
                None => parse_sha(name).is_ok() && !keep.contains(name),
            };
            if stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io("remove", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io {
        action,
        path,
        source,
    }
}

/// Writes `tree` into the existing directory `dir`, which lies `depth` levels below the
/// checkout root.
fn write_tree(repo: &Repo, tree: &Tree<'_>, dir: &Path, depth: usize) -> Result<(), SourceError> {
    for entry in tree.iter() {
        let name = entry.name_bytes();
        if matches!(name, b"" | b"." | b".." | b".git") || name.contains(&b'/') {
            tracing::warn!(dir = %dir.display(), name = %String::from_utf8_lossy(name), "skipping a tree entry with a name git refuses");
            continue;
        }
        let path = dir.join(OsStr::from_bytes(name));
        let mode = entry.filemode();
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let sub = repo.tree(entry.id())?;
                fs::create_dir(&path).map_err(io("create", &path))?;
                write_tree(repo, &sub, &path, depth + 1)?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo.blob(entry.id())?;
                if mode == super::MODE_LINK {
                    let target = Path::new(OsStr::from_bytes(blob.content()));
                    if link_stays_inside(target, depth) {
                        std::os::unix::fs::symlink(target, &path)
                            .map_err(io("create the symlink", &path))?;
                    } else {
                        tracing::warn!(link = %path.display(), target = %target.display(), "skipping a symlink that could point outside the checkout");
                    }
                    continue;
                }
                let perm = if mode == 0o100755 { 0o755 } else { 0o644 };
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(perm)
                    .open(&path)
                    .map_err(io("create", &path))?;
                file.write_all(blob.content()).map_err(io("write", &path))?;
            }
            // A submodule: an empty directory, as `git clone` leaves it.
            Some(ObjectType::Commit) => fs::create_dir(&path).map_err(io("create", &path))?,
            _ => {}
        }
    }
    Ok(())
}

/// Whether a symlink target, relative to a link `depth` directories below the root, can
/// only resolve inside the root. Leading `..` walk up real directories of the checkout;
/// a `..` after a normal component could walk up out of another symlink's target, so it
/// is refused even when it looks harmless.
fn link_stays_inside(target: &Path, depth: usize) -> bool {
    let mut ups = 0;
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if !descended => ups += 1,
            Component::Normal(_) => descended = true,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    ups <= depth && !target.as_os_str().is_empty()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::testing::{open, write, Fixture};
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn checkout_holds_the_commit_not_the_work_tree() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let first = fx.commit(
            &repo,
            &[("prefect.yaml", "v1\n"), ("flows/etl.py", "print(1)\n")],
            "first",
        );
        write(&repo, "run.sh", "#!/bin/sh\necho hi\n");
        fs::set_permissions(repo.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let second = fx.commit(&repo, &[("prefect.yaml", "v2\n")], "second");
        write(&repo, "prefect.yaml", "uncommitted\n");
        write(&repo, "untracked.txt", "untracked\n");

        let checkouts = Checkouts::new(fx.path("state/checkouts"));
        let source = open(&repo);
        let dir = checkouts.ensure(&source, &second).unwrap();
        assert_eq!(dir, fx.path("state/checkouts").join(&second));
        assert_eq!(names(&dir), ["flows", "prefect.yaml", "run.sh"]);
        assert_eq!(read(&dir.join("prefect.yaml")), "v2\n");
        assert_eq!(read(&dir.join("flows/etl.py")), "print(1)\n");
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode();
        assert_ne!(mode("run.sh") & 0o111, 0, "executable bit kept");
        assert_eq!(mode("prefect.yaml") & 0o111, 0);

        let old = checkouts.ensure(&source, &first).unwrap();
        assert_eq!(read(&old.join("prefect.yaml")), "v1\n");
        assert!(!old.join("run.sh").exists());
        // The repository's own work tree is untouched.
        assert_eq!(read(&repo.join("prefect.yaml")), "uncommitted\n");
        assert_eq!(names(&fx.path("state/checkouts")), {
            let mut v = vec![first.clone(), second.clone()];
            v.sort();
            v
        });
    }

    #[test]
    fn existing_checkout_is_reused() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let sha = fx.commit(&repo, &[("prefect.yaml", "v1\n")], "first");
        let checkouts = Checkouts::new(fx.path("checkouts"));
        let source = open(&repo);
        let dir = checkouts.ensure(&source, &sha).unwrap();
        fs::write(dir.join("marker"), "x").unwrap();
        assert_eq!(checkouts.ensure(&source, &sha).unwrap(), dir);
        assert!(dir.join("marker").exists(), "not rewritten");
    }

    #[test]
    fn symlinks_inside_are_kept_and_escaping_ones_skipped() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        write(&repo, "lib/util.py", "x = 1\n");
        let links = [
            ("inside", "lib/util.py"),
            ("lib/up", "../lib/util.py"),
            ("lib/dot", "./util.py"),
            ("absolute", "/etc/passwd"),
            ("escape", "../outside"),
            ("lib/escape", "../../outside"),
            ("sneaky", "lib/up/../.."),
        ];
        for (link, target) in links {
            std::os::unix::fs::symlink(target, repo.join(link)).unwrap();
        }
        let sha = fx.commit(&repo, &[], "links");
        let dir = Checkouts::new(fx.path("checkouts"))
            .ensure(&open(&repo), &sha)
            .unwrap();
        assert_eq!(read(&dir.join("inside")), "x = 1\n");
        assert_eq!(read(&dir.join("lib/up")), "x = 1\n");
        assert_eq!(read(&dir.join("lib/dot")), "x = 1\n");
        for skipped in ["absolute", "escape", "lib/escape", "sneaky"] {
            assert!(
                fs::symlink_metadata(dir.join(skipped)).is_err(),
                "{skipped} should be skipped"
            );
        }
    }

    #[test]
    fn concurrent_ensure_shares_one_checkout() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let files: Vec<(String, String)> = (0..200)
            .map(|i| (format!("deployments/f{i}.yaml"), format!("n: {i}\n")))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let sha = fx.commit(&repo, &refs, "many");
        let checkouts = Checkouts::new(fx.path("checkouts"));
        let barrier = std::sync::Barrier::new(4);
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let source = open(&repo);
                        barrier.wait();
                        checkouts.ensure(&source, &sha).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(dirs.iter().all(|d| *d == dirs[0]));
        assert_eq!(names(&fx.path("checkouts")), vec![sha]);
        assert_eq!(names(&dirs[0].join("deployments")).len(), 200);
    }

    #[test]
    fn prune_removes_others_and_stale_tmp_dirs() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        let a = fx.commit(&repo, &[("prefect.yaml", "a\n")], "a");
        let b = fx.commit(&repo, &[("prefect.yaml", "b\n")], "b");
        let c = fx.commit(&repo, &[("prefect.yaml", "c\n")], "c");
        let root = fx.path("checkouts");
        let checkouts = Checkouts::new(root.clone());
        assert_eq!(checkouts.prune(&HashSet::new()).unwrap(), 0, "no root yet");
        let source = open(&repo);
        for sha in [&a, &b, &c] {
            checkouts.ensure(&source, sha).unwrap();
        }
        let dead = root.join(format!(".tmp-{a}-999999999-0"));
        let mine = root.join(format!(".tmp-{a}-{}-77", std::process::id()));
        fs::create_dir(&dead).unwrap();
        fs::create_dir(&mine).unwrap();
        fs::create_dir(root.join("not-a-checkout")).unwrap();

        let keep: HashSet<String> = [b.clone()].into();
        assert_eq!(checkouts.prune(&keep).unwrap(), 3);
        let mut expected = vec![
            b.clone(),
            mine.file_name().unwrap().to_string_lossy().into_owned(),
            "not-a-checkout".to_string(),
        ];
        expected.sort();
        assert_eq!(names(&root), expected);
        assert_eq!(read(&root.join(&b).join("prefect.yaml")), "b\n");
    }

    #[test]
    fn bad_sha_is_refused_before_touching_disk() {
        let fx = Fixture::new();
        let repo = fx.init("work");
        fx.commit(&repo, &[("prefect.yaml", "a\n")], "a");
        let checkouts = Checkouts::new(fx.path("checkouts"));
        let err = checkouts.ensure(&open(&repo), "../../etc").unwrap_err();
        assert!(matches!(err, SourceError::BadSha { .. }), "{err:?}");
        let err = checkouts.ensure(&open(&repo), &"2".repeat(40)).unwrap_err();
        assert!(matches!(err, SourceError::NoCommit { .. }), "{err:?}");
        assert!(!fx.path("checkouts").exists());
    }

    #[test]
    fn link_rules() {
        assert!(link_stays_inside(Path::new("a/b"), 0));
        assert!(link_stays_inside(Path::new("../a"), 1));
        assert!(!link_stays_inside(Path::new("../a"), 0));
        assert!(!link_stays_inside(Path::new("a/../b"), 3));
        assert!(!link_stays_inside(Path::new("/a"), 3));
        assert!(!link_stays_inside(Path::new(""), 0));
    }
}
