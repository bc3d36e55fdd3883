//! Where the store is ([`StoreSpec`]): the SQLite file in the state directory (the
//! default) or a PostgreSQL database (`--store postgres://…`). The daemon's one writer
//! and every reader are opened from it.

use std::path::PathBuf;
use std::sync::Arc;

use super::pg::{PgStore, Target};
use super::{SqliteStore, StoreError, StoreRead, StoreWrite};

/// Where the store is.
#[derive(Debug, Clone)]
pub enum StoreSpec {
    /// The SQLite database file (`<state-dir>/state.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Arc<Target>),
}

impl StoreSpec {
    /// Opens the writer, creating the store or bringing its schema up to date.
    pub fn open_writer(&self) -> Result<Box<dyn StoreWrite>, StoreError> {
        match self {
            StoreSpec::Sqlite(path) => Ok(Box::new(SqliteStore::open(path)?)),
            StoreSpec::Postgres(target) => Ok(Box::new(PgStore::open(target)?)),
        }
    }

    /// Opens a reader of an existing store.
    pub fn open_reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        match self {
            StoreSpec::Sqlite(path) => Ok(Box::new(SqliteStore::open_read_only(path)?)),
            StoreSpec::Postgres(target) => Ok(Box::new(PgStore::open_reader(target)?)),
        }
    }

    /// The store in words, for messages: the file's path, or the database's URL without
    /// its password.
    pub fn describe(&self) -> String {
        match self {
            StoreSpec::Sqlite(path) => path.display().to_string(),
            StoreSpec::Postgres(target) => target.what.clone(),
        }
    }

    /// The store `--store` names: `None` (unset or empty) is the SQLite file in the state
    /// directory; `postgres://` or `postgresql://` a PostgreSQL database. The error says
    /// what to give, and never repeats a password.
    pub fn from_flag(
        value: Option<&str>,
        state_dir: &std::path::Path,
    ) -> Result<StoreSpec, String> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Ok(StoreSpec::Sqlite(state_dir.join("state.db")));
        }
        if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
            let scheme = value
                .split_once("://")
                .map_or("a path", |(scheme, _)| scheme);
            return Err(format!(
                "--store: `{scheme}` is not a store sundial knows; give postgres://USER@HOST:PORT/DATABASE, or leave --store unset for SQLite in --state-dir"
            ));
        }
        let target = Target::parse(value).map_err(|e| format!("--store: {e}"))?;
        Ok(StoreSpec::Postgres(Arc::new(target)))
    }
}
