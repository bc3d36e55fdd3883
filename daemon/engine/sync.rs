//! The syncer: a task that reads the branch's newest commit whenever the repository may
//! have changed (notify on the git directory, plus a poll as a safety net), validates its
//! manifests with the same code path as `sundial validate`, and hands the result to the
//! engine. Reading git and validating happen here, off the engine's loop, so a large commit
//! never delays a due slot.
//!
//! Every attempt (a fetch when a remote is configured, then the read) ends with a
//! [`SyncMessage::Source`] saying how it went, after the [`SyncMessage::Synced`] it may
//! have produced: the engine's status shows the newest attempt, so an error clears at the
//! first read that succeeds, whether or not the head moved. A repository that is missing,
//! empty, damaged or lacks the branch, and a fetch that fails, are reported that way and
//! tried again at the next notification or poll: never a crash.
//!
//! Bounded: git work runs on threads this task walks away from
//! ([`crate::source::bounded`]): a read past the time limit (`$SUNDIAL_GIT_TIMEOUT`, 30 s)
//! is reported as timed out and abandoned, and no new read starts while it is still stuck.
//! Neither the engine nor the daemon's stop ever waits for git.
//!
//! At a start, before anything is applied: if the branch cannot be read, the commit the
//! store applied last is read instead and applied as it was (with its files' last good
//! versions), so the daemon is ready and runs its last good state while the error shows.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::manifest::discover::Discovery;
use crate::source::bounded::{self, Reads};
use crate::source::{watch, Repo, SourceConfig, SourceError, FETCH_TIMEOUT};
use crate::store::StoreSpec;
use crate::validate::{self, FileOutcome, SourceFile};

use super::error_chain;
use super::reread::{validate_commit, Memory};
use super::status::SourceErrorKind;

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

/// How one attempt to read the source went; each error is the message to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The `git fetch` of the configured remote; `None` without a remote.
    pub fetch: Option<Result<(), String>>,
    /// Reading the branch.
    pub read: Result<(), String>,
}

impl Attempt {
    /// What went wrong, as status shows it: a failed fetch first (it is the cause when
    /// the fetched branch cannot be read either), else a failed read.
    pub fn problem(&self) -> Option<(SourceErrorKind, String)> {
        match (&self.fetch, &self.read) {
            (Some(Err(fetch)), Ok(())) => Some((SourceErrorKind::Fetch, fetch.clone())),
            (Some(Err(fetch)), Err(read)) => Some((
                SourceErrorKind::Fetch,
                format!("{fetch}; reading the branch as fetched before failed too: {read}"),
            )),
            (_, Err(read)) => Some((SourceErrorKind::Read, read.clone())),
            (_, Ok(())) => None,
        }
    }
}

#[derive(Debug)]
pub enum SyncMessage {
    /// A commit to apply.
    Synced(Box<Synced>),
    /// How the newest attempt went: sent after every attempt, after its `Synced` if any
    /// (so a forced re-sync is answered once its commit is applied).
    Source(Attempt),
}

/// How long the fetch may take before the syncer walks away: `git fetch` is killed at
/// [`FETCH_TIMEOUT`] already; this covers the rest.
const FETCH_LIMIT: Duration = FETCH_TIMEOUT.saturating_add(Duration::from_secs(30));

/// Runs until the engine goes away. `force` asks for an immediate re-sync (SIGHUP).
pub async fn run(
    config: SourceConfig,
    discovery: Discovery,
    state_db: StoreSpec,
    poll: Duration,
    tx: mpsc::Sender<SyncMessage>,
    mut force: mpsc::Receiver<()>,
) {
    let limit = bounded::read_timeout();
    let (mut fetches, mut reads, mut fallbacks) = (Reads::new(), Reads::new(), Reads::new());
    let mut last_head: Option<String> = None;
    // The verdicts of the last commit read, so the next read checks only what changed.
    let mut memory: Option<Memory> = None;
    // The problems last logged, so that a lasting one is logged once.
    let mut logged: Option<String> = None;
    let mut fallback_logged: Option<String> = None;
    let mut watcher: Option<mpsc::Receiver<()>> = None;
    loop {
        let mut attempt = Attempt {
            fetch: None,
            read: Ok(()),
        };
        if config.remote.is_some() {
            let cfg = config.clone();
            // A repository that cannot be opened is the read's error to report.
            let fetched = fetches
                .run(&config.repo, "fetching into", FETCH_LIMIT, move || {
                    let Ok(repo) = Repo::open(&cfg) else {
                        return Ok(false);
                    };
                    repo.fetch().map(|()| true)
                })
                .await;
            attempt.fetch = match fetched {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(error_chain(&e))),
            };
        }
        let (discovery_now, cfg, db, seen, mut remembered) = (
            discovery.clone(),
            config.clone(),
            state_db.clone(),
            last_head.clone(),
            memory.take(),
        );
        // A read that is abandoned takes the memory with it: the next one reads everything.
        let read = reads
            .run(&config.repo, "reading", limit, move || {
                let repo = Repo::open(&cfg)?;
                let read = read_head(&repo, &discovery_now, &db, seen.as_deref(), &mut remembered);
                Ok((repo.git_dir(), read, remembered))
            })
            .await
            .and_then(|(git_dir, read, remembered)| {
                memory = remembered;
                // Watch the repository's git directory (as `Repo` finds it) once it can be
                // opened; until then, the poll alone retries.
                if watcher.is_none() {
                    watcher = Some(watch(&git_dir, poll));
                }
                read
            });
        let mut synced = None;
        match read {
            Ok(read) => synced = read,
            Err(e) => {
                attempt.read = Err(error_chain(&e));
                if last_head.is_none() {
                    let fallback =
                        last_applied(&mut fallbacks, &config, &discovery, &state_db, limit).await;
                    match fallback {
                        Ok(found) => synced = found,
                        Err(e) if fallback_logged.as_ref() != Some(&e) => {
                            tracing::warn!("the last applied commit cannot be read either: {e}");
                            fallback_logged = Some(e);
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        let problem = attempt.problem().map(|(_, message)| message);
        if problem != logged {
            match &problem {
                Some(message) => tracing::error!("cannot sync: {message}"),
                None => tracing::info!("the repository can be read again"),
            }
            logged = problem;
        }
        if let Some(synced) = synced {
            last_head = Some(synced.head.clone());
            if tx
                .send(SyncMessage::Synced(Box::new(synced)))
                .await
                .is_err()
            {
                return;
            }
        }
        if tx.send(SyncMessage::Source(attempt)).await.is_err() {
            return;
        }
        tokio::select! {
            _ = async {
                match watcher.as_mut() {
                    Some(changes) => { changes.recv().await; }
                    None => tokio::time::sleep(poll).await,
                }
            } => {}
            Some(()) = force.recv() => {}
            () = tx.closed() => return,
        }
    }
}

/// At a start whose branch cannot be read: the commit the store applied last, read and
/// validated again (with seeds); `None` when the store has none. Errors: why it cannot be
/// read.
async fn last_applied(
    reads: &mut Reads,
    config: &SourceConfig,
    discovery: &Discovery,
    state_db: &StoreSpec,
    limit: Duration,
) -> Result<Option<Synced>, String> {
    let (cfg, discovery, db) = (config.clone(), discovery.clone(), state_db.clone());
    let read = reads
        .run(&config.repo, "reading", limit, move || {
            let Some(sha) = db
                .open_reader()
                .ok()
                .and_then(|store| store.last_commit().ok().flatten())
                .map(|commit| commit.sha)
            else {
                return Ok(None);
            };
            let repo = Repo::open(&cfg)?;
            read_commit(&repo, &discovery, &db, sha, true, &mut None).map(Some)
        })
        .await;
    let found = read.map_err(|e| error_chain(&e))?;
    if let Some(synced) = &found {
        tracing::warn!(
            "the branch cannot be read; running commit {}, the last one applied, until it can",
            super::attempt::short(&synced.head)
        );
    }
    Ok(found)
}

/// One read of the branch: `None` when its head is still `seen`.
fn read_head(
    repo: &Repo,
    discovery: &Discovery,
    state_db: &StoreSpec,
    seen: Option<&str>,
    memory: &mut Option<Memory>,
) -> Result<Option<Synced>, SourceError> {
    let head = repo.head()?;
    if seen == Some(head.as_str()) {
        return Ok(None);
    }
    read_commit(repo, discovery, state_db, head, seen.is_none(), memory).map(Some)
}

/// Reads and validates `head` (checking again only what changed since `memory`'s commit,
/// which it then remembers); `first` (nothing applied since the start) adds the seeds.
fn read_commit(
    repo: &Repo,
    discovery: &Discovery,
    state_db: &StoreSpec,
    head: String,
    first: bool,
    memory: &mut Option<Memory>,
) -> Result<Synced, SourceError> {
    let summary = repo.summary(&head)?;
    let (outcomes, remembered) = validate_commit(repo, discovery, &head, memory.take())?;
    *memory = Some(remembered);
    let seeds = if first {
        seeds(repo, state_db, &head, &outcomes)
    } else {
        Vec::new()
    };
    Ok(Synced {
        head,
        summary,
        outcomes,
        seeds,
    })
}

/// After a restart, the engine has no last-known-good versions in memory; read them back
/// from git at the commit the store remembers for each file that now fails.
fn seeds(repo: &Repo, state_db: &StoreSpec, head: &str, outcomes: &[FileOutcome]) -> Vec<Seed> {
    let Ok(store) = state_db.open_reader() else {
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
        let mut validation =
            validate::validate_in(std::slice::from_ref(&file), &repo.view(&commit));
        if let Some(mut outcome) = validation.files.pop().filter(FileOutcome::is_valid) {
            let _ = anchor_intervals(repo, &commit, &mut outcome);
            seeds.push(Seed { commit, outcome });
        }
    }
    seeds
}

/// Anchors each interval of `outcome` that has no `anchor_date` at the time of the commit
/// that introduced it: the oldest commit of the unbroken first-parent run, back from
/// `commit`, in which the file declares that deployment with that schedule (same identity
/// and timing). The same history gives the same answer to every daemon and after a
/// restart; the engine keeps the first anchor it plans with in the cursor. A history that
/// cannot be read leaves the schedule to the engine's fallback (the time it is planned).
/// True when a walk stopped at a bound of [`Repo::introduced_within`] or failed.
pub(super) fn anchor_intervals(repo: &Repo, commit: &str, outcome: &mut FileOutcome) -> bool {
    let mut cut = false;
    let Some(deployments) = outcome.deployments.as_mut() else {
        return cut;
    };
    let path = outcome.repo_path.clone();
    if !deployments
        .iter()
        .any(|d| d.schedules.iter().any(|s| s.anchored_at_commit))
    {
        return cut;
    }
    for deployment in std::sync::Arc::make_mut(deployments).iter_mut() {
        for planned in deployment.schedules.iter_mut() {
            if !planned.anchored_at_commit {
                continue;
            }
            let (name, id, fingerprint) = (&deployment.name, &planned.id, &planned.fingerprint);
            let mut present = |bytes: &[u8]| {
                let file = SourceFile {
                    display: path.clone(),
                    repo_path: path.clone(),
                    bytes: bytes.to_vec().into(),
                };
                validate::validate(std::slice::from_ref(&file))
                    .files
                    .iter()
                    .filter_map(|f| f.deployments.as_ref())
                    .flat_map(|d| d.iter())
                    .filter(|d| &d.name == name)
                    .flat_map(|d| &d.schedules)
                    .any(|s| &s.id == id && &s.fingerprint == fingerprint)
            };
            match repo.introduced_within(commit, &path, &mut present) {
                Ok((found, bounded)) => {
                    cut |= bounded;
                    if let Some((_, at)) = found {
                        planned.introduced_at = Some(at);
                        planned.schedule = planned.schedule.anchored_at(at);
                    }
                }
                Err(e) => {
                    cut = true;
                    tracing::warn!(
                        "{path}: cannot read the history of the file to anchor schedule {id}: {}",
                        super::error_chain(&e)
                    );
                }
            }
        }
    }
    cut
}
