//! The syncer: a task that reads the branch's newest commit whenever the repository may
//! have changed (notify on the git directory, plus a poll as a safety net), validates its
//! manifests with the same code path as `sundial validate`, and hands the result to the
//! engine. Reading git and validating happen here, off the engine's loop, so a large commit
//! never delays a due slot.
//!
//! A repository that is missing, empty, corrupt or lacks the branch is reported to the
//! engine (status and logs) and tried again at the next notification or poll: never a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::manifest::discover::Discovery;
use crate::source::{watch, Repo, SourceConfig};
use crate::store::Store;
use crate::validate::{self, FileOutcome, SourceFile};

use super::error_chain;

/// A commit read and validated.
#[derive(Debug)]
pub struct Synced {
    pub head: String,
    pub summary: String,
    pub outcomes: Vec<FileOutcome>,
    /// At start-up: the last good versions of files that fail at `head`, validated alone.
    pub seeds: Vec<Seed>,
}

/// A file's last-known-good version, read back from git after a restart.
#[derive(Debug)]
pub struct Seed {
    pub commit: String,
    pub outcome: FileOutcome,
}

#[derive(Debug)]
pub enum SyncMessage {
    Synced(Box<Synced>),
    /// A forced re-sync (SIGHUP) found the head already applied.
    Unchanged,
    /// The source could not be read; the message says why and what to do.
    Failed(String),
}

/// Runs until the engine goes away. `force` asks for an immediate re-sync (SIGHUP).
pub async fn run(
    config: SourceConfig,
    discovery: Discovery,
    state_db: PathBuf,
    poll: Duration,
    tx: mpsc::Sender<SyncMessage>,
    mut force: mpsc::Receiver<()>,
) {
    let mut last_head: Option<String> = None;
    let mut last_error: Option<String> = None;
    let mut forced = false;
    let mut watcher: Option<mpsc::Receiver<()>> = None;
    loop {
        let discovery = discovery.clone();
        let (cfg, db, seen, first) = (
            config.clone(),
            state_db.clone(),
            last_head.clone(),
            last_head.is_none(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            let repo = Repo::open(&cfg).map_err(|e| error_chain(&e))?;
            let git_dir = repo.git_dir();
            let read = read_head(&repo, &discovery, &db, seen.as_deref(), first)?;
            Ok::<_, String>((git_dir, read))
        })
        .await;
        // Watch the repository's git directory (as `Repo` finds it) once it can be opened;
        // until then, the poll alone retries.
        if let (None, Ok(Ok((git_dir, _)))) = (&watcher, &outcome) {
            watcher = Some(watch(git_dir, poll));
        }
        let message = match outcome.map(|r| r.map(|(_, read)| read)) {
            Ok(Ok(Some(synced))) => {
                last_head = Some(synced.head.clone());
                last_error = None;
                Some(SyncMessage::Synced(Box::new(synced)))
            }
            Ok(Ok(None)) if forced => Some(SyncMessage::Unchanged),
            Ok(Ok(None)) => None,
            Ok(Err(e)) if !forced && last_error.as_deref() == Some(e.as_str()) => None,
            Ok(Err(e)) => {
                last_error = Some(e.clone());
                Some(SyncMessage::Failed(e))
            }
            Err(panic) => Some(SyncMessage::Failed(format!(
                "reading the repository failed unexpectedly: {panic}"
            ))),
        };
        forced = false;
        if let Some(message) = message {
            if tx.send(message).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = async {
                match watcher.as_mut() {
                    Some(changes) => { changes.recv().await; }
                    None => tokio::time::sleep(poll).await,
                }
            } => {}
            Some(()) = force.recv() => forced = true,
            () = tx.closed() => return,
        }
    }
}

/// One read of the branch: `None` when its head is still `seen`.
fn read_head(
    repo: &Repo,
    discovery: &Discovery,
    state_db: &Path,
    seen: Option<&str>,
    first: bool,
) -> Result<Option<Synced>, String> {
    if repo.config().remote.is_some() {
        if let Err(e) = repo.fetch() {
            tracing::warn!("{}", error_chain(&e));
        }
    }
    let head = repo.head().map_err(|e| error_chain(&e))?;
    if seen == Some(head.as_str()) {
        return Ok(None);
    }
    let snapshot = repo
        .snapshot(&head, &|path| discovery.is_manifest(path))
        .map_err(|e| error_chain(&e))?;
    let exists = |path: &str| repo.file_at(&head, path).ok().map(|found| found.is_some());
    let validation = validate::validate_in(&snapshot.files, &exists);
    let seeds = if first {
        seeds(repo, state_db, &head, &validation.files)
    } else {
        Vec::new()
    };
    Ok(Some(Synced {
        head,
        summary: snapshot.summary,
        outcomes: validation.files,
        seeds,
    }))
}

/// After a restart, the engine has no last-known-good versions in memory; read them back
/// from git at the commit the store remembers for each file that now fails.
fn seeds(repo: &Repo, state_db: &Path, head: &str, outcomes: &[FileOutcome]) -> Vec<Seed> {
    let Ok(store) = Store::open_read_only(state_db) else {
        return Vec::new();
    };
    let Ok(good) = store.good_files() else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    for (path, commit) in good {
        let failing = outcomes
            .iter()
            .any(|o| o.repo_path == path && !o.is_valid());
        if !failing || commit == head {
            continue;
        }
        let Ok(Some(bytes)) = repo.file_at(&commit, &path) else {
            continue;
        };
        let file = SourceFile {
            display: path.clone(),
            repo_path: path.clone(),
            bytes,
        };
        let mut validation = validate::validate(std::slice::from_ref(&file));
        if let Some(outcome) = validation.files.pop().filter(FileOutcome::is_valid) {
            seeds.push(Seed { commit, outcome });
        }
    }
    seeds
}
