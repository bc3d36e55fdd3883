//! The API's read-only connections to the state database ([`Readers`]) and the one way
//! handlers read through them ([`read`], [`read_with`]).
//!
//! Contract:
//! - A read runs on tokio's blocking pool, never on the async thread the engine shares.
//! - At most [`Readers::MAX`] connections are open at once, however many HTTP connections
//!   the server holds (each holds three descriptors: the database, its WAL and shared
//!   memory); more reads wait for one.
//! - A connection is kept for the next read after a read that succeeded, up to
//!   [`Readers::MAX`] of them: under steady load no read opens a connection (an open
//!   re-reads the schema, and its statements are prepared again). One whose read failed
//!   is closed.

use std::sync::Arc;

use super::ApiError;
use crate::store::{StoreError, StoreRead, StoreSpec};

/// Read-only connections to the state database, reused across requests.
#[derive(Clone)]
pub struct Readers {
    spec: StoreSpec,
    idle: Arc<std::sync::Mutex<Vec<Box<dyn StoreRead>>>>,
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

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn StoreRead>>> {
        // A panic while holding the lock leaves only a list of connections behind.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        #[cfg(test)]
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.spec.open_reader()
    }
}

/// Runs a read on a read-only connection, off the async threads.
pub(super) async fn read<T: Send + 'static>(
    db: Readers,
    f: impl FnOnce(&dyn StoreRead) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    read_with(db, move |store| f(store).map_err(ApiError::from)).await
}

/// [`read`] for a handler that also builds its answer (its JSON text) on the blocking
/// thread: the API's async thread (its own, beside the engine's) then only sends the bytes.
pub(super) async fn read_with<T: Send + 'static>(
    db: Readers,
    f: impl FnOnce(&dyn StoreRead) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let busy = db.busy.clone().acquire_owned().await;
    tokio::task::spawn_blocking(move || {
        let _busy = busy;
        let store = match db.idle().pop() {
            Some(store) => store,
            None => db.open()?,
        };
        let answer = f(&*store);
        if answer.is_ok() {
            db.idle().push(store);
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
        let failed = read_with(db.clone(), |_| -> Result<(), ApiError> {
            Err(ApiError::Internal("no".into()))
        });
        assert!(failed.await.is_err());
        assert_eq!(db.idle().len(), 0);
        read(db.clone(), |store| store.run(1)).await.unwrap();
        assert_eq!(db.idle().len(), 1);
    }
}
