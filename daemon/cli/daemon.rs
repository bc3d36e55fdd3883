//! `sundial daemon`: start-up (state directory, token, logging, listener), then the engine
//! and the HTTP API until SIGTERM or SIGINT; SIGHUP forces a re-sync. Exit 0 after a
//! clean stop; a start-up problem is an error naming the flag (exit 2).
//!
//! Under systemd (`$NOTIFY_SOCKET`) the engine's lifecycle notifies it (see
//! `crate::systemd`), and when stderr is the journal the log lines carry syslog
//! priorities instead of timestamps.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::api::{self, ApiState};
use crate::engine::{self, status::Status, EngineConfig, Request};
use crate::source::SourceConfig;
use crate::systemd;

#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The git repository whose committed manifests are deployed (a path; see --remote).
    #[arg(long, env = "SUNDIAL_REPO", value_name = "PATH")]
    pub repo: PathBuf,
    /// The branch to deploy (default: the branch the repository's HEAD points at).
    #[arg(long, env = "SUNDIAL_BRANCH", value_name = "B")]
    pub branch: Option<String>,
    /// Fetch this remote on every poll and deploy its branch (`refs/remotes/<remote>/<branch>`).
    #[arg(long, env = "SUNDIAL_REMOTE", value_name = "NAME")]
    pub remote: Option<String>,
    /// Where the database, run logs, checkouts and the API token live.
    #[arg(
        long,
        env = "SUNDIAL_STATE_DIR",
        value_name = "D",
        default_value = ".sundial"
    )]
    pub state_dir: PathBuf,
    /// Where run history and schedule state are kept. Unset: the SQLite file `state.db` in
    /// --state-dir. `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`: that PostgreSQL
    /// database, shared by every daemon of a cluster (one leads, the others stand by).
    /// The password is never logged.
    #[arg(
        long,
        env = "SUNDIAL_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// This daemon's name in a cluster (with a PostgreSQL --store), unique among its
    /// nodes. Default: the host's name.
    #[arg(long, env = "SUNDIAL_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// In a cluster: the most runs this node runs at once (0: it runs none, it only
    /// schedules when it leads). Default: four per core.
    #[arg(long, env = "SUNDIAL_CAPACITY", value_name = "N")]
    pub capacity: Option<usize>,
    /// In a cluster: a label `KEY=VALUE` this node carries (repeatable; the variable
    /// takes several separated by commas). A deployment whose job variable `node_labels`
    /// asks for labels runs only on the nodes that carry them all.
    #[arg(long = "label", env = "SUNDIAL_LABELS", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Address of the HTTP API and dashboard.
    #[arg(
        long,
        env = "SUNDIAL_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:4280"
    )]
    pub listen: SocketAddr,
    /// Seconds between safety-net polls of the repository (new commits are noticed at once).
    #[arg(
        long,
        env = "SUNDIAL_POLL_INTERVAL",
        value_name = "S",
        default_value_t = 30.0
    )]
    pub poll_interval: f64,
    /// Seconds a process gets between SIGTERM and SIGKILL (stop, cancel, timeout).
    #[arg(long, env = "SUNDIAL_GRACE", value_name = "S", default_value_t = 30.0)]
    pub grace: f64,
    #[command(flatten)]
    pub manifests: super::ManifestGlobs,
    #[command(flatten)]
    pub max_file_size: super::MaxFileSize,
    /// Finished runs kept per deployment (older ones are deleted with their logs).
    #[arg(
        long,
        env = "SUNDIAL_KEEP_RUNS",
        value_name = "N",
        default_value_t = 1000
    )]
    pub keep_runs: usize,
    /// Finished runs older than this many days are deleted with their logs.
    #[arg(
        long,
        env = "SUNDIAL_KEEP_DAYS",
        value_name = "D",
        default_value_t = 90.0
    )]
    pub keep_days: f64,
    /// Largest log of one run in bytes; beyond it only the tail is kept.
    #[arg(long, env = "SUNDIAL_LOG_MAX_BYTES", value_name = "BYTES", default_value_t = 16 << 20)]
    pub log_max_bytes: u64,
    /// Log lines: `human` or `json` (one object a line). Unset: human, or journald's
    /// priority-prefixed lines when stderr is the journal (`$JOURNAL_STREAM`).
    #[arg(long, env = "SUNDIAL_LOG_FORMAT", value_name = "F")]
    pub log_format: Option<LogFormat>,
    /// A name the API also answers to in `Host:` (besides the listen address, localhost
    /// and loopback addresses), optionally with `:PORT`; repeat for more. Others are
    /// refused with 421, against DNS rebinding.
    #[arg(
        long = "allow-host",
        env = "SUNDIAL_ALLOW_HOSTS",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,
    /// Most HTTP connections served at once; more are answered 503 and closed at once.
    /// Default: a quarter of the open-file limit, between 16 and 1024.
    #[arg(long, env = "SUNDIAL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// The dashboard's address as people reach it (e.g. behind a proxy), for the links in
    /// notifications. Default: `http://` and the address the API listens on.
    #[arg(long, env = "SUNDIAL_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn run(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    // Every path the daemon hands to a job (its checkout, entrypoint, log) is absolute,
    // whatever directory the daemon was started from: jobs run in their checkout.
    let mut args = args.clone();
    args.repo = std::path::absolute(&args.repo)
        .with_context(|| format!("--repo: cannot resolve `{}`", args.repo.display()))?;
    args.state_dir = std::path::absolute(&args.state_dir)
        .with_context(|| format!("--state-dir: cannot resolve `{}`", args.state_dir.display()))?;
    let args = &args;
    let poll = seconds(args.poll_interval, "--poll-interval")?;
    let grace = seconds(args.grace, "--grace")?;
    let hosts = api::AllowedHosts::new(args.listen, &args.allow_hosts)?;
    if args.max_connections == Some(0) {
        bail!("--max-connections 0: give at least 1");
    }
    crate::memory::tune();
    let open_files = raise_open_file_limit();
    create_state_dir(&args.state_dir)?;
    // Held until the daemon exits: nothing below runs beside another daemon's state.
    let _lock = super::state_lock::lock(&args.state_dir)?;
    ensure_token(&args.state_dir)?;
    let store = crate::store::StoreSpec::from_flag(args.store.as_deref(), &args.state_dir)
        .map_err(anyhow::Error::msg)?;
    let clustered = matches!(store, crate::store::StoreSpec::Postgres(_));
    if let Some(node) = &args.node {
        crate::cluster::check_node_name(node, clustered).map_err(anyhow::Error::msg)?;
    }
    if args.capacity.is_some() && !clustered {
        bail!("--capacity: the runs a node takes are for a cluster, which needs a PostgreSQL --store; leave --capacity unset with SQLite");
    }
    let labels = crate::cluster::labels::parse_flags(&args.labels).map_err(anyhow::Error::msg)?;
    if !labels.is_empty() && !clustered {
        bail!("--label: labels choose among the nodes of a cluster, which needs a PostgreSQL --store; leave --label unset with SQLite (one daemon runs every deployment)");
    }
    if let crate::store::StoreSpec::Postgres(target) = &store {
        target
            .probe()
            .map_err(|e| anyhow::anyhow!("--store: {}", crate::engine::error_chain(&e)))?;
    }
    init_logging(args.log_format);
    warn_if_shared(&args.state_dir);
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| api::serve::max_connections_for(open_files.soft));
    tracing::info!(
        "open files: at most {} ({}); the API serves at most {max_connections} connections at once",
        open_files.soft,
        open_files.describe()
    );
    let branch = match &args.branch {
        Some(b) => b.clone(),
        None => current_branch(&args.repo).unwrap_or_else(|| "main".into()),
    };
    let source = SourceConfig {
        repo: args.repo.clone(),
        branch,
        remote: args.remote.clone(),
        max_file_size: args.max_file_size.bytes,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let limits = api::serve::Limits::new(max_connections);
    let served = runtime.block_on(serve(args, store, source, poll, grace, limits, hosts));
    // A blocking task stuck in git (a checkout of a damaged repository) must not hold the
    // exit: the stop has already ended the jobs and recorded them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    args: &DaemonArgs,
    store: crate::store::StoreSpec,
    source: SourceConfig,
    poll: Duration,
    grace: Duration,
    limits: api::serve::Limits,
    hosts: api::AllowedHosts,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "--listen {}: cannot listen there (in use? another sundial?)",
                args.listen
            )
        })?;
    let listening = listener.local_addr().unwrap_or(args.listen);
    // The store's description never holds a password.
    let runs_in = match &store {
        crate::store::StoreSpec::Sqlite(_) => String::new(),
        crate::store::StoreSpec::Postgres(target) => format!(", runs in {}", target.what),
    };
    tracing::info!(
        "sundial {} watching {} branch {} (state in {}{runs_in}, API on http://{listening})",
        env!("CARGO_PKG_VERSION"),
        source.repo.display(),
        source.branch,
        args.state_dir.display(),
    );
    let hosts = hosts.listening_on(listening);
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (requests_tx, requests_rx) = mpsc::channel(64);
    let api_state = ApiState {
        status: status_rx,
        requests: requests_tx.clone(),
        db: crate::api::Readers::new(store.clone()),
        logs_dir: args.state_dir.join("logs"),
        token: api::read_token(&args.state_dir)
            .with_context(|| {
                format!(
                    "--state-dir: cannot read the token in `{}`",
                    args.state_dir.display()
                )
            })?
            .into(),
        hosts: hosts.into(),
    };
    if let Err(e) = api::write_url_file(&args.state_dir, listening) {
        tracing::warn!(
            "cannot write {}: {e}; the CLI needs --url to find this daemon",
            args.state_dir.join("url").display()
        );
    }
    let (stop_api_tx, stop_api_rx) = watch::channel(false);
    // The API has a thread of its own: the engine's work never holds its answers back.
    let listener = listener
        .into_std()
        .context("cannot hand the listening socket to the API's thread")?;
    let server = api::serve::spawn(listener, api::router(api_state), limits, stop_api_rx)
        .context("cannot start the API's thread")?;

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the repository");
            if requests_tx.send(Request::Reload).await.is_err() {
                return;
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    };
    let store_text = store.clone();
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{listening}"));
    let cluster = match &store {
        crate::store::StoreSpec::Sqlite(_) => None,
        crate::store::StoreSpec::Postgres(_) => Some(crate::cluster::ClusterConfig {
            node: args
                .node
                .clone()
                .unwrap_or_else(crate::cluster::default_node_name),
            timings: crate::cluster::Timings::from_env(),
            url: public_url.clone(),
            capacity: args
                .capacity
                .unwrap_or_else(crate::cluster::default_capacity),
            // Checked in `run`, before the runtime started.
            labels: crate::cluster::labels::parse_flags(&args.labels)
                .map_err(anyhow::Error::msg)?,
        }),
    };
    let config = EngineConfig {
        source,
        state_dir: args.state_dir.clone(),
        store,
        poll_interval: poll,
        grace,
        discovery: args.manifests.discovery()?,
        public_url,
        cluster,
        retention: engine::Retention {
            keep_runs: args.keep_runs.max(1),
            keep_for: seconds(args.keep_days * 86_400.0, "--keep-days")?,
            log_max_bytes: args.log_max_bytes.max(4096),
        },
    };
    let outcome = engine::run(
        config,
        status_tx,
        shutdown,
        requests_rx,
        systemd::lifecycle(),
    )
    .await;
    // A fetch runs in a process group of its own, which nothing else ends.
    crate::source::stop_fetches();
    let _ = stop_api_tx.send(true);
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    let what = store_text.describe();
    // A name taken by another node is this daemon's setting, not a broken store.
    if let Err(e @ crate::store::StoreError::NodeInUse { .. }) = outcome {
        return Err(e.into());
    }
    outcome.with_context(|| match store_text {
        crate::store::StoreSpec::Sqlite(_) => format!(
            "the state database {what} failed, and sundial cannot keep its promises without it; check the disk space and permissions of --state-dir, then start it again"
        ),
        crate::store::StoreSpec::Postgres(_) => format!(
            "the PostgreSQL store {what} failed, and sundial cannot keep its promises without it; check that the server runs and that --store is right, then start sundial again"
        ),
    })?;
    tracing::info!("stopped");
    Ok(())
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !value.is_finite() || value <= 0.0 {
        bail!("{flag} {value}: give a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

/// The open-file limit (`RLIMIT_NOFILE`) after [`raise_open_file_limit`].
struct OpenFiles {
    soft: u64,
    /// The soft limit the daemon was started with, when it was raised.
    raised_from: Option<u64>,
    /// Why raising it failed, if it did.
    failed: Option<nix::Error>,
}

impl OpenFiles {
    fn describe(&self) -> String {
        match (self.raised_from, self.failed) {
            (Some(from), _) => format!("raised from {from} to the hard limit"),
            (None, Some(e)) => format!("could not raise it to the hard limit: {e}"),
            (None, None) => "the hard limit".into(),
        }
    }
}

/// Raises the soft open-file limit to the hard one: systemd starts services with a soft
/// limit of 1024, which the HTTP connections, runs, the store and git share. Never fails:
/// the limit in force is what the connection cap is sized from.
fn raise_open_file_limit() -> OpenFiles {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            return OpenFiles {
                soft: 1024,
                raised_from: None,
                failed: Some(e),
            }
        }
    };
    if soft >= hard {
        return OpenFiles {
            soft,
            raised_from: None,
            failed: None,
        };
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => OpenFiles {
            soft: hard,
            raised_from: Some(soft),
            failed: None,
        },
        Err(e) => OpenFiles {
            soft,
            raised_from: None,
            failed: Some(e),
        },
    }
}

/// The branch HEAD points at, when HEAD is a branch.
fn current_branch(repo: &Path) -> Option<String> {
    let repo = git2::Repository::open(repo).ok()?;
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok()??;
    target.strip_prefix("refs/heads/").map(str::to_string)
}

/// Creates the state directory, and any missing parent, with mode 0700: it holds the
/// token, the parameters and logs of every run. An existing directory keeps its mode.
fn create_state_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("--state-dir: cannot create `{}`", dir.display()))
}

/// Warns when others may read the state directory (one made before sundial created it
/// private, or by hand): its database and logs hold run parameters and output.
fn warn_if_shared(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the state directory {} has mode {mode:o}: other users may read run parameters and logs; `chmod 700` it",
                dir.display()
            );
        }
    }
}

/// Creates `<state-dir>/token` (mode 0600) on first start; mutating API calls need it.
fn ensure_token(state_dir: &Path) -> anyhow::Result<()> {
    let path = state_dir.join("token");
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the API token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("--state-dir: cannot create `{}`", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
    Ok(())
}

/// Logs to stderr, filtered by `$SUNDIAL_LOG` (default `info`): the chosen format, else
/// journald's format when stderr is the journal, else human lines (coloured on a terminal).
fn init_logging(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUNDIAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        Some(LogFormat::Json) => builder.json().try_init(),
        Some(LogFormat::Human) => builder.try_init(),
        None if systemd::journal::stderr_is_journal() => builder
            .event_format(systemd::journal::JournalFormat)
            .try_init(),
        None => builder.try_init(),
    };
}
