//! For the tests: a fresh database of its own on the test server
//! (`$SUNDIAL_TEST_POSTGRES`, which `scripts/test.sh` starts with
//! `scripts/pg-cluster.sh`), dropped when the test ends, so tests run in parallel. Its
//! text order is ICU's English, unlike SQLite's byte order, so the tests show a
//! statement that forgets `COLLATE "C"`.
//! Without the variable a PostgreSQL test fails, saying how to get a server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Target;

/// The variable naming the test server: a `postgres://` URL of a superuser.
pub const SERVER_VAR: &str = "SUNDIAL_TEST_POSTGRES";

/// A database made for one test, dropped (with its sessions) on drop.
pub struct TestDatabase {
    server: String,
    name: String,
    /// Its URL, for `--store`.
    pub url: String,
}

/// The test server's URL; panics with the command to run when it is not set.
pub fn server() -> String {
    match std::env::var(SERVER_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "${SERVER_VAR} is unset, and this test needs a PostgreSQL server: run ./scripts/test.sh, \
             or first `eval \"$(scripts/pg-cluster.sh start)\"` (and `scripts/pg-cluster.sh stop \"$PG_CLUSTER_DIR\"` after)"
        ),
    }
}

/// The PEM file of the CA that signed the test server's certificate (`ca.pem` in
/// `$PG_CLUSTER_DIR`, made by `scripts/pg-cluster.sh`).
pub fn server_ca() -> std::path::PathBuf {
    let ca = std::path::PathBuf::from(std::env::var("PG_CLUSTER_DIR").unwrap_or_default())
        .join("ca.pem");
    assert!(
        ca.is_file(),
        "{} is missing: start the test server with scripts/pg-cluster.sh (which makes its CA with openssl)",
        ca.display()
    );
    ca
}

impl TestDatabase {
    pub fn new() -> TestDatabase {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let server = server();
        let name = format!(
            "sundial_t{}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        // Text sorts by the ICU's English rules there, not byte by byte: a statement
        // that relies on the database's order instead of `COLLATE "C"` shows.
        admin(
            &server,
            format!("CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C' TEMPLATE template0"),
        );
        let (base, _) = server
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("${SERVER_VAR} has no database part: {server}"));
        let url = format!("{base}/{name}");
        TestDatabase { server, name, url }
    }

    /// The database as a store target.
    pub fn target(&self) -> Arc<Target> {
        Arc::new(Target::parse(&self.url).unwrap())
    }

    /// Runs SQL in this database (to break or inspect it), on a thread of its own (the
    /// sync client cannot run inside a tokio runtime).
    pub fn execute(&self, sql: &str) {
        let (url, sql) = (self.url.clone(), sql.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client.batch_execute(&sql).unwrap();
        })
        .join()
        .unwrap();
    }
}

impl Default for TestDatabase {
    fn default() -> TestDatabase {
        TestDatabase::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        admin(
            &self.server,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one statement on the server's own database, on a thread of its own.
fn admin(server: &str, sql: String) {
    let server = server.to_string();
    let done = std::thread::spawn(move || -> Result<(), String> {
        let mut client = postgres::Client::connect(&server, postgres::NoTls)
            .map_err(|e| format!("cannot connect to ${SERVER_VAR}: {e}"))?;
        client
            .batch_execute(&sql)
            .map_err(|e| format!("{sql}: {e}"))
    })
    .join()
    .unwrap();
    if let Err(e) = done {
        if !std::thread::panicking() {
            panic!("{e}");
        }
    }
}
