//! The database `--store` names: how to connect to it (its URL's settings, TLS, the
//! session's time limits) and how to name it in messages, never with its password.

use std::sync::Arc;
use std::time::Duration;

use postgres::Client;

use super::conn::Conn;
use super::{tls, StoreError, CALL_LIMIT};

/// A PostgreSQL database to connect to, from `--store`.
pub struct Target {
    config: postgres::Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` say ([`tls`]).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Whether a plain connection after a failed TLS handshake (`prefer`) was logged.
    fell_back: std::sync::atomic::AtomicBool,
    /// The database in words, without the password: `postgres://user@host:port/db`.
    pub what: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// The session settings every connection gets.
const SESSION: &str = "-c statement_timeout=5s -c lock_timeout=2s -c idle_in_transaction_session_timeout=5s -c TimeZone=UTC";

impl Target {
    /// Parses a `postgres://` or `postgresql://` URL. The error says what is wrong and
    /// what to give, without the password.
    pub fn parse(url: &str) -> Result<Target, String> {
        let params = tls::take_params(url)?;
        let mut config: postgres::Config = params.url.parse().map_err(|e| {
            format!("not a PostgreSQL URL sundial can use ({e}); give postgres://USER@HOST:PORT/DATABASE")
        })?;
        let tls = tls::connector(params.verify, params.root.as_ref())?;
        let options = match config.get_options() {
            Some(own) if !own.is_empty() => format!("{own} {SESSION}"),
            _ => SESSION.to_string(),
        };
        config
            .options(&options)
            .connect_timeout(Duration::from_secs(3))
            .tcp_user_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("sundial");
        }
        let what = describe(&config);
        Ok(Target {
            config,
            tls,
            what,
            fell_back: Default::default(),
        })
    }

    /// A new connection to the database. Under `sslmode=prefer` (the default), a TLS
    /// handshake that fails (an old server's protocol or key, a URL with no host name to
    /// check) is followed by a plain connection, as libpq does, said once in the log.
    pub(super) fn connect(&self) -> Result<Client, postgres::Error> {
        use postgres::config::SslMode;
        let failed = match self.config.connect(self.tls.clone()) {
            Err(e)
                if self.config.get_ssl_mode() == SslMode::Prefer
                    && e.to_string().contains("TLS") =>
            {
                e
            }
            answer => return answer,
        };
        let mut plain = self.config.clone();
        plain.ssl_mode(SslMode::Disable);
        let Ok(client) = plain.connect(postgres::NoTls) else {
            return Err(failed);
        };
        if !self
            .fell_back
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "{}: TLS failed ({}), so sundial connects without it (sslmode=prefer); say sslmode=disable to mean it, or sslmode=require to refuse it",
                self.what,
                describe_error(&failed)
            );
        }
        Ok(client)
    }
}

impl Target {
    /// Connects once and asks the server a trivial question: at start, so that an
    /// unreachable server is an error before anything else starts.
    pub fn probe(self: &Arc<Target>) -> Result<(), StoreError> {
        let conn = Conn::new(self.clone(), CALL_LIMIT);
        conn.call(|c| Ok(c.simple_query("SELECT 1").map(drop)?))
    }
}

/// `postgres://user@host:port/db`, never with the password.
fn describe(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// A postgres error in words: the server's message, or the client's.
pub(super) fn describe_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => crate::engine::error_chain(e),
    }
}
