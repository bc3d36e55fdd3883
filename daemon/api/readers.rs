//! The API's read-only connections to the state database ([`Readers`]) and the ways
//! handlers read through them ([`read`], and [`read_page`] with [`kept_answer`] for pages
//! of runs).
//!
//! Contract:
//! - A read runs on tokio's blocking pool, never on the async thread the engine shares.
//! - At most [`Readers::MAX`] connections are open at once, however many HTTP connections
//!   the server holds (each holds three descriptors: the database, its WAL and shared
//!   memory); more reads wait for one.
//! - A connection is kept for the next read after a read that succeeded, up to
//!   [`Readers::MAX`] of them: under steady load no read opens a connection (an open
//!   re-reads the schema, and its statements are prepared again). One whose read failed
//!   is closed; when it failed because the server had ended its session while it was
//!   kept (PostgreSQL restarted, an administrator), the read is made again once on a new
//!   connection, so the first reads after an outage answer.
//! - Each kept connection keeps the pages of runs it read ([`Kept`]). [`kept_answer`]
//!   answers one again on the API's own async thread, without the hand-off to the blocking
//!   pool: it takes an idle connection only when one is idle and a read may start at once,
//!   and asks it one thing, the store's version (for SQLite a read of the WAL index in
//!   shared memory, microseconds; it could wait only while another connection recovers
//!   the WAL after a crash, which the daemon's own writer does before the API starts).

use std::sync::Arc;

use super::kept::{Answer, Kept};
use super::ApiError;
use crate::store::{StoreError, StoreRead, StoreSpec};

/// A kept connection and the pages it read.
struct Reader {
    store: Box<dyn StoreRead>,
    kept: Kept,
}

impl Reader {
    /// The store's version now, and the page kept for `key` if it was read at it.
    fn kept_page(&mut self, key: &str) -> Result<(Option<i64>, Option<Answer>), StoreError> {
        let version = self.store.data_version()?;
        Ok((version, version.and_then(|v| self.kept.get(key, v))))
    }
}

/// Read-only connections to the state database, reused across requests.
#[derive(Clone)]
pub struct Readers {
    spec: StoreSpec,
    idle: Arc<std::sync::Mutex<Vec<Reader>>>,
    busy: Arc<tokio::sync::Semaphore>,
    /// How many connections were opened, for the tests.
    #[cfg(test)]
    opened: Arc<std::sync::atomic::AtomicUsize>,
}

impl Readers {
    /// The most connections open at once, and kept between reads.
    pub const MAX: usize = 8;

    pub fn new(spec: StoreSpec) -> Readers {
        Readers {
            spec,
            idle: Arc::default(),
            busy: Arc::new(tokio::sync::Semaphore::new(Readers::MAX)),
            #[cfg(test)]
            opened: Arc::default(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Reader>> {
        // A panic while holding the lock leaves only a list of connections behind.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> Result<Reader, StoreError> {
        #[cfg(test)]
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Reader {
            store: self.spec.open_reader()?,
            kept: Kept::default(),
        })
    }
}

/// The page kept for `key` by an idle connection, if the store has not changed since it
/// was read there; on the calling (async) thread. `None`: read it with [`read_page`].
pub(super) fn kept_answer(db: &Readers, key: &str) -> Option<Answer> {
    let _busy = db.busy.clone().try_acquire_owned().ok()?;
    let mut reader = db.idle().pop()?;
    // A connection that failed is closed, as after any failed read; the page is read anew.
    let (_, answer) = reader.kept_page(key).ok()?;
    db.idle().push(reader);
    answer
}

/// Reads the page `key` with `f` off the async threads, and keeps it on the connection
/// with the store's version read before it (see [`Kept`]).
pub(super) async fn read_page(
    db: Readers,
    key: String,
    f: impl Fn(&dyn StoreRead) -> Result<Answer, ApiError> + Send + 'static,
) -> Result<Answer, ApiError> {
    read_on(db, move |reader| {
        let (version, kept) = reader.kept_page(&key)?;
        if let Some(answer) = kept {
            return Ok(answer);
        }
        let answer = f(&*reader.store)?;
        if let Some(version) = version {
            reader.kept.put(key.clone(), version, answer.clone());
        }
        Ok(answer)
    })
    .await
}

/// Runs a read on a read-only connection, off the async threads.
pub(super) async fn read<T: Send + 'static>(
    db: Readers,
    f: impl Fn(&dyn StoreRead) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    read_on(db, move |reader| f(&*reader.store).map_err(ApiError::from)).await
}

/// Runs `f` on a kept (or newly opened) connection on the blocking pool; the connection
/// is kept again if `f` succeeded. A kept connection the server ended meanwhile is
/// replaced and `f` run again on the new one (a read may be made twice).
async fn read_on<T: Send + 'static>(
    db: Readers,
    f: impl Fn(&mut Reader) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let busy = db.busy.clone().acquire_owned().await;
    tokio::task::spawn_blocking(move || {
        let _busy = busy;
        let (mut reader, kept) = match db.idle().pop() {
            Some(reader) => (reader, true),
            None => (db.open()?, false),
        };
        let mut answer = f(&mut reader);
        if kept && answer.as_ref().is_err_and(ApiError::connection_broke) {
            reader = db.open()?;
            answer = f(&mut reader);
        }
        if answer.is_ok() {
            db.idle().push(reader);
        }
        answer
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::sync::atomic::Ordering;

    /// Reads as many at once as there may be, again and again: the connections of the
    /// first round serve every later one.
    #[tokio::test]
    async fn connections_are_kept_for_the_next_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let db = Readers::new(StoreSpec::Sqlite(path));
        // Each read waits inside until as many are inside as may be.
        let together = Arc::new(std::sync::Barrier::new(Readers::MAX));
        for _ in 0..5 {
            let reads: Vec<_> = (0..Readers::MAX * 2)
                .map(|_| {
                    let (db, together) = (db.clone(), together.clone());
                    tokio::spawn(read(db, move |store| {
                        together.wait();
                        store.run(1)
                    }))
                })
                .collect();
            for r in reads {
                assert_eq!(r.await.unwrap().unwrap(), None);
            }
        }
        let opened = db.opened.load(Ordering::Relaxed);
        assert!(opened <= Readers::MAX, "{opened} connections were opened");
        assert!(db.idle().len() <= Readers::MAX);
    }

    #[tokio::test]
    async fn a_connection_whose_read_failed_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let db = Readers::new(StoreSpec::Sqlite(path));
        let failed = read_on(db.clone(), |_| -> Result<(), ApiError> {
            Err(ApiError::Internal("no".into()))
        });
        assert!(failed.await.is_err());
        assert_eq!(db.idle().len(), 0);
        read(db.clone(), |store| store.run(1)).await.unwrap();
        assert_eq!(db.idle().len(), 1);
    }

    fn new_run(deployment: &str) -> crate::store::NewRun {
        use crate::store::{NewRun, RunState, Trigger};
        NewRun {
            deployment: deployment.into(),
            schedule_id: None,
            scheduled_for: None,
            trigger: Trigger::Manual,
            state: RunState::Scheduled,
            reason: None,
            attempt: 1,
            commit: "abc".into(),
            parameters: serde_json::json!({}),
            started_at: None,
            not_before: None,
            retry_of: None,
        }
    }

    /// The page of runs as `GET /api/runs` reads it: ids and states, newest first.
    async fn page(db: &Readers) -> (bool, String) {
        let key = "/api/runs?limit=50".to_string();
        if let Some(kept) = kept_answer(db, &key) {
            return (true, String::from_utf8(kept.body.to_vec()).unwrap());
        }
        let answer = read_page(db.clone(), key, |store| {
            let filter = crate::store::RunFilter {
                limit: 50,
                ..Default::default()
            };
            let runs = store.runs(&filter)?;
            let text: Vec<String> = runs
                .iter()
                .map(|r| format!("{}:{}", r.id, r.state.as_str()))
                .collect();
            Ok(Answer {
                body: text.join(",").into(),
                last: None,
            })
        })
        .await
        .unwrap();
        (false, String::from_utf8(answer.body.to_vec()).unwrap())
    }

    /// A page is answered again while nothing was committed, and read anew after each
    /// commit of the daemon's own writer, whichever change it was.
    #[tokio::test]
    async fn a_kept_page_is_answered_until_the_store_changes() {
        use crate::store::RunState;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut writer = Store::open(&path).unwrap();
        let db = Readers::new(StoreSpec::Sqlite(path));
        let now = chrono::Utc::now();
        let id = writer.claim_slots(&[new_run("a")], None, now).unwrap()[0].unwrap();

        let first = format!("{id}:Scheduled");
        assert_eq!(page(&db).await, (false, first.clone()));
        assert_eq!(page(&db).await, (true, first.clone()));
        assert_eq!(page(&db).await, (true, first));

        writer
            .finish_run(id, RunState::Completed, Some(0), None, now)
            .unwrap();
        let ended = format!("{id}:Completed");
        assert_eq!(
            page(&db).await,
            (false, ended.clone()),
            "read anew after an end"
        );
        assert_eq!(page(&db).await, (true, ended.clone()));

        let second = writer.claim_slots(&[new_run("b")], None, now).unwrap()[0].unwrap();
        assert_eq!(
            page(&db).await,
            (false, format!("{second}:Scheduled,{ended}"))
        );
    }

    /// A connection kept from before the server ended its session (a restart, an
    /// administrator) is replaced at the next read, which answers: the first reads after
    /// an outage are not errors. Both ways a read is made: a page and a plain read.
    #[tokio::test]
    async fn a_kept_connection_the_server_ended_is_replaced_and_the_read_answers() {
        let database = crate::store::pg::testing::TestDatabase::new();
        let spec = StoreSpec::Postgres(database.target());
        let mut writer = tokio::task::spawn_blocking({
            let spec = spec.clone();
            move || spec.open_writer().unwrap()
        })
        .await
        .unwrap();
        let now = chrono::Utc::now();
        let id = tokio::task::spawn_blocking(move || {
            let id = writer.claim_slots(&[new_run("a")], None, now).unwrap()[0].unwrap();
            drop(writer);
            id
        })
        .await
        .unwrap();
        let db = Readers::new(spec);
        let end_sessions = || {
            database.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
        };
        let run = read(db.clone(), move |store| store.run(id)).await;
        assert_eq!(run.unwrap().map(|r| r.id), Some(id));
        assert_eq!(db.idle().len(), 1);
        end_sessions();
        assert_eq!(page(&db).await, (false, format!("{id}:Scheduled")));
        assert_eq!(
            db.opened.load(Ordering::Relaxed),
            2,
            "the ended connection replaced"
        );
        end_sessions();
        let run = read(db.clone(), move |store| store.run(id)).await;
        assert_eq!(run.unwrap().map(|r| r.id), Some(id));
        assert_eq!(
            db.opened.load(Ordering::Relaxed),
            3,
            "the ended connection replaced"
        );
        assert_eq!(db.idle().len(), 1);
    }
}
