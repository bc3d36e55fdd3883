//! Where the store is ([`StoreSpec`]): the SQLite file in the state directory (the
//! default) or a PostgreSQL database (`--store postgres://…`). The daemon's one writer
//! and every reader are opened from it.

use std::path::PathBuf;

use super::{SqliteStore, StoreError, StoreRead, StoreWrite};

/// Where the store is.
#[derive(Debug, Clone)]
pub enum StoreSpec {
    /// The SQLite database file (`<state-dir>/state.db`).
    Sqlite(PathBuf),
}

impl StoreSpec {
    /// Opens the writer, creating the store or bringing its schema up to date.
    pub fn open_writer(&self) -> Result<Box<dyn StoreWrite>, StoreError> {
        match self {
            StoreSpec::Sqlite(path) => Ok(Box::new(SqliteStore::open(path)?)),
        }
    }

    /// Opens a reader of an existing store.
    pub fn open_reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        match self {
            StoreSpec::Sqlite(path) => Ok(Box::new(SqliteStore::open_read_only(path)?)),
        }
    }

    /// The store in words, for messages: the file's path.
    pub fn describe(&self) -> String {
        match self {
            StoreSpec::Sqlite(path) => path.display().to_string(),
        }
    }
}
