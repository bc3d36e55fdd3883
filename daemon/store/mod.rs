//! The store: SQLite (bundled, WAL, `synchronous=FULL`) holding run history, schedule
//! cursors, applied commits and each manifest file's last-known-good commit.
//!
//! Contract: a run row is committed before its process starts (persist before acting), and
//! the unique index on (deployment, schedule, scheduled_for, attempt) is what makes a slot
//! fire at most once across restarts, re-syncs and edits. A broken store is the one fatal
//! error of the daemon (ripgrep's `errored()` decision, written down): without it sundial
//! could neither promise at-most-once nor record what it did. A row the database refuses
//! ([`StoreError::is_row_error`]: a value over its length limit) is not a broken store:
//! the engine fails that run or shortens that record and goes on.
//!
//! Times are stored as RFC 3339 UTC text with milliseconds, which sorts as time.

mod breaches;
mod history;
mod migrations;
mod notices;
pub mod pg;
mod run;
mod run_json;
mod runs;
mod slots;
mod spec;
mod state;
mod stats;
mod traits;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

pub use breaches::{NewBreach, StoredBreach};
pub use history::{AttemptRef, BucketCount, SlotKey};
pub use notices::{NewNotice, Notice, Noticed, OutboxCounts, Pause};
pub use run::{
    NewRun, Progress, Run, RunFilter, RunState, SlotCursor, Trigger, PAUSED_AFTER_FAILURES,
};
pub use spec::StoreSpec;
pub use state::{AppliedCommit, Cursor, FileError};
pub use stats::{Lateness, RunCount};
pub use traits::{StoreRead, StoreWrite};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}; check that the state directory is writable")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the state database {path}; check that the state directory is writable")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state database was written by a newer sundial (schema {found}, this one knows {known}); upgrade sundial or use another --state-dir")]
    TooNew { found: i64, known: i64 },
    #[error("state database error")]
    Sql(#[from] rusqlite::Error),
    #[error("a stored value could not be read: {0}")]
    Corrupt(String),
    /// The file the daemon opened is no longer at its path (deleted, or replaced).
    #[error("the state database {path} was deleted or replaced while the daemon ran; what it recorded since is lost to the new file, so the daemon stops instead of writing there")]
    Replaced { path: String },
    #[error("PostgreSQL store error")]
    Pg(#[from] postgres::Error),
    /// The PostgreSQL server could not be reached or did not answer in time. `what` is
    /// the database without its password.
    #[error("cannot reach the PostgreSQL database {what} ({detail}); check that the server runs and accepts this connection, and that --store is right")]
    Unavailable { what: String, detail: String },
    /// A text value longer than `$SUNDIAL_STORE_MAX_VALUE` (PostgreSQL; SQLite says
    /// `SQLITE_TOOBIG`).
    #[error("a value of {bytes} bytes is over the store's limit of {limit} bytes ($SUNDIAL_STORE_MAX_VALUE)")]
    TooBig { bytes: usize, limit: usize },
    /// A scheduling write of a node that does not hold the cluster's lease (PostgreSQL):
    /// nothing of it was written.
    /// Another daemon runs as this node name (PostgreSQL clusters).
    #[error("the node name {node} is in use by another daemon of this cluster (its last heartbeat was {seconds:.0} s ago); give each daemon its own --node (or $SUNDIAL_NODE)")]
    NodeInUse { node: String, seconds: f64 },
    #[error("this node does not lead the cluster (its lease, epoch {epoch}, was lost or taken over); it schedules nothing until it leads again")]
    Fenced { epoch: i64 },
}

impl StoreError {
    /// Whether the disk is full: a write failed for want of space, which frees up again.
    /// Every other store error means the store cannot be trusted (fatal).
    pub fn is_disk_full(&self) -> bool {
        match self {
            // SQLite reports ENOSPC on its files as SQLITE_FULL.
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            // PostgreSQL's disk_full: its disk, which frees up again as well.
            StoreError::Pg(e) => e.code() == Some(&postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }

    /// Whether the error is about one row, not the store: a value too large to store
    /// (`SQLITE_TOOBIG`, past `$SUNDIAL_STORE_MAX_VALUE` or SQLite's own limit) or one that
    /// could not be converted. The engine fails that run (or shortens that record) with
    /// the reason and goes on; the store itself is fine.
    pub fn is_row_error(&self) -> bool {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::TooBig
            }
            StoreError::Sql(rusqlite::Error::ToSqlConversionFailure(_)) => true,
            StoreError::TooBig { .. } => true,
            // A value over a limit, too long for its column, or text PostgreSQL refuses
            // (a NUL byte, which SQLite stores).
            StoreError::Pg(e) => {
                use postgres::error::SqlState;
                [
                    SqlState::PROGRAM_LIMIT_EXCEEDED,
                    SqlState::STRING_DATA_RIGHT_TRUNCATION,
                    SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                    SqlState::UNTRANSLATABLE_CHARACTER,
                ]
                .iter()
                .any(|code| e.code() == Some(code))
            }
            _ => false,
        }
    }

    /// Whether the error passes by itself: a full disk, or a PostgreSQL server that cannot
    /// be reached for now. What could not be written waits and is written again.
    pub fn is_transient(&self) -> bool {
        self.is_disk_full() || self.is_unavailable()
    }

    /// Whether a write's outcome is unknown: no answer came (a cut network, a server that
    /// went away, a session it ended), so it may have been committed. A server's refusal
    /// (a deadlock, a lock or statement time-out, a serialization failure) rolled the
    /// transaction back: its outcome is known, and it is simply tried again.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Pg(e) => connection_lost(e),
            _ => false,
        }
    }

    /// Whether a scheduling write was refused because this node does not hold the lease.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }

    /// Whether the connection this error came on was ended (by the server, a restart, an
    /// administrator, or the network): a new connection may succeed at once. Never true of
    /// SQLite.
    pub fn connection_broke(&self) -> bool {
        matches!(self, StoreError::Pg(e) if connection_lost(e))
    }

    /// Whether the PostgreSQL server could not be reached, or ended a statement that may
    /// succeed when tried again (a restart, a timeout, a lock or serialization conflict).
    /// Never true of SQLite. The engine waits it out like a full disk
    /// ([`StoreError::is_transient`]), and its lease lapses meanwhile.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Pg(e) => {
                use postgres::error::SqlState;
                connection_lost(e)
                    || e.code().is_some_and(|code| {
                        [
                            SqlState::TOO_MANY_CONNECTIONS,
                            SqlState::QUERY_CANCELED,
                            SqlState::LOCK_NOT_AVAILABLE,
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                        ]
                        .contains(code)
                    })
            }
            _ => false,
        }
    }
}

/// Whether a PostgreSQL error says the connection itself was lost: closed, an I/O error,
/// a connection failure (class 08), or a session the server ended: any FATAL error (a
/// shutdown, a restart, a session idle in its transaction past the server's limit while
/// this node was stopped) ends the session it comes on.
pub(in crate::store) fn connection_lost(e: &postgres::Error) -> bool {
    use postgres::error::{Severity, SqlState};
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.as_db_error().is_some_and(|db| {
            matches!(
                db.parsed_severity(),
                Some(Severity::Fatal | Severity::Panic)
            )
        })
        || e.code().is_some_and(|code| {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        })
}

/// The largest text the writer stores in one value, in bytes: `$SUNDIAL_STORE_MAX_VALUE`
/// when set to a positive number, else SQLite's own limit (about 1 GB). Lowering it bounds
/// what one row may hold (and is how the tests reach a value that is too large).
fn max_value() -> Option<i32> {
    std::env::var("SUNDIAL_STORE_MAX_VALUE")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| *n > 0)
}

/// How many prepared statements a read-only connection keeps.
const READ_STATEMENTS: usize = 64;

/// One connection to the state database. The daemon's writer and each API reader hold
/// their own; WAL lets readers run while the writer commits.
pub struct SqliteStore {
    conn: Connection,
    /// The database file as opened (path, device, inode), to notice it being replaced.
    file: Option<(std::path::PathBuf, u64, u64)>,
    /// Whether this open created the schema (a new, empty database).
    created: bool,
}

/// The SQLite store, by its older name.
pub type Store = SqliteStore;

impl Store {
    /// Opens (creating if needed, mode 0600) the database at `path` and brings its schema
    /// up to date. SQLite gives its `-wal` and `-shm` files the database file's mode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private(path).map_err(|source| StoreError::Create {
            path: path.display().to_string(),
            source,
        })?;
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        if let Some(max) = max_value() {
            conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, max)?;
        }
        let mut conn = conn;
        let created = migrations::migrate(&mut conn)?;
        let file = std::fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (path.to_path_buf(), m.dev(), m.ino())
        });
        Ok(Store {
            conn,
            file,
            created,
        })
    }

    /// Opens a batch: every write until [`Store::commit_batch`] is one transaction, so a
    /// burst of due slots costs one `fsync`, not one per schedule (the store's own
    /// transactions become savepoints inside it). Nothing may act on a write of the batch
    /// (start a process) before it is committed.
    pub fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the batch [`Store::begin_batch`] opened.
    pub fn commit_batch(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Undoes the open batch, if SQLite has not already (it may after a full disk).
    pub fn rollback_batch(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Whether this open created the database (its schema was new).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Checks that the file opened is still the one at its path: a database deleted or
    /// replaced under a running daemon is [`StoreError::Replaced`].
    pub fn check_file(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let Some((path, dev, ino)) = &self.file else {
            return Ok(());
        };
        match std::fs::metadata(path) {
            Ok(m) if m.dev() == *dev && m.ino() == *ino => Ok(()),
            _ => Err(StoreError::Replaced {
                path: path.display().to_string(),
            }),
        }
    }

    /// Opens an existing database for reading only (the HTTP API and the CLI).
    /// SQLite's `PRAGMA data_version` on this connection: it changes when another
    /// connection commits (see [`StoreRead::data_version`](traits::StoreRead::data_version)).
    pub fn data_version(&self) -> Result<i64, StoreError> {
        let mut stmt = self.conn.prepare_cached("PRAGMA data_version")?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// `PRAGMA shrink_memory`: the page cache's unused pages are freed (see
    /// [`StoreWrite::release_memory`](traits::StoreWrite::release_memory)). Best effort: a
    /// failure changes nothing and is not reported.
    pub fn release_memory(&mut self) {
        let _ = self.conn.execute_batch("PRAGMA shrink_memory");
    }

    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        // NO_MUTEX as `Connection::open` does: a connection is used by one thread at a time
        // (it is not `Sync`), so SQLite need not lock it on every call.
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // The API keeps its connections (see `api::readers`): room for the statements of
        // every page, whose texts differ by filter and limit.
        conn.set_prepared_statement_cache_capacity(READ_STATEMENTS);
        Ok(Store {
            conn,
            file: None,
            created: false,
        })
    }
}

/// Creates an empty file at `path` with mode 0600 unless something is there already.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// The stored text form of an instant.
pub fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("time {text:?}: {e}")))
}

#[cfg(test)]
mod tests;
