//! A real `sundial daemon` on a temporary state directory and a real git repository,
//! reached over real HTTP on 127.0.0.1; killed with its whole process group on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{git, sundial};

/// Polls `cond` until it holds or `within` passes; panics with `what` on timeout.
#[track_caller]
pub fn wait_until<T>(within: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = cond() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// An RFC 3339 instant `secs` from now: as an `anchor_date`, it makes an hourly interval
/// fire once, soon.
pub fn soon(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Waits until the wall clock has passed `instant` (the condition *is* time passing).
pub fn wait_for_wall_time(instant: chrono::DateTime<chrono::Utc>) {
    wait_until(Duration::from_secs(120), "the wall clock", || {
        (chrono::Utc::now() >= instant).then_some(())
    });
}

/// A git repository made with the git CLI.
pub struct GitRepo {
    dir: tempfile::TempDir,
}

impl GitRepo {
    #[track_caller]
    pub fn new() -> GitRepo {
        let repo = GitRepo {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        super::git_ok(repo.path(), &["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes files into the work tree without committing them.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Writes (or, with `None`, deletes) exactly these files and commits them, nothing
    /// else of the work tree; returns the commit's sha.
    #[track_caller]
    pub fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (rel, text) in files {
            match text {
                Some(text) => {
                    self.write(rel, text);
                    super::git_ok(self.path(), &["add", rel]);
                }
                None => super::git_ok(self.path(), &["rm", "-q", rel]),
            }
        }
        super::git_ok(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        let out = git(self.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub url: String,
    pub state_dir: PathBuf,
    listen: String,
    repo: PathBuf,
    extra: Vec<String>,
    _state: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts the daemon on `repo` with a fresh state directory and waits until ready.
    #[track_caller]
    pub fn start(repo: &Path) -> Daemon {
        Daemon::start_with(repo, &[])
    }

    /// Like [`Daemon::start`], with extra command-line flags.
    #[track_caller]
    pub fn start_with(repo: &Path, extra: &[&str]) -> Daemon {
        let state = tempfile::tempdir().expect("a state directory");
        let state_dir = state.path().to_path_buf();
        let mut daemon = Daemon::spawn(repo, &state_dir, None, extra);
        daemon._state = Some(state);
        daemon.wait_ready();
        daemon
    }

    fn spawn(repo: &Path, state_dir: &Path, listen: Option<String>, extra: &[&str]) -> Daemon {
        let listen = listen.unwrap_or_else(|| {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().to_string()
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join("daemon.log"))
            .unwrap();
        let child = sundial()
            .args(["daemon", "--repo"])
            .arg(repo)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", &listen, "--poll-interval", "1", "--grace", "2"])
            .args(extra)
            .env("SUNDIAL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the daemon");
        Daemon {
            child: Some(child),
            url: format!("http://{listen}"),
            state_dir: state_dir.to_path_buf(),
            listen,
            repo: repo.to_path_buf(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            _state: None,
        }
    }

    /// The daemon's process id (it leads its own process group).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    #[track_caller]
    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(30), "the daemon to be ready", || {
            (self.get("/readyz").0 == 200).then_some(())
        });
    }

    /// Kills the daemon with SIGKILL (its children keep running, as after a crash).
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts the daemon again on the same state directory and address.
    #[track_caller]
    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut next = Daemon::spawn(
            &self.repo,
            &self.state_dir,
            Some(self.listen.clone()),
            &extra,
        );
        self.child = next.child.take();
        self.wait_ready();
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = wait_until(Duration::from_secs(30), "the daemon to exit", || {
            child.try_wait().unwrap()
        });
        status.code()
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        match agent.get(&format!("{}{path}", self.url)).call() {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// The API token the daemon created in its state directory.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("token"))
            .expect("the daemon's token")
            .trim()
            .to_string()
    }

    /// POST `body` (sent as is; empty for none) with `Authorization: Bearer <token>` when
    /// a token is given: (status, body).
    pub fn post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let mut request = agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        match request.send(body) {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    /// GET `path`: (status, the `Link` header, body).
    pub fn get_with_link(&self, path: &str) -> (u16, Option<String>, String) {
        let response = ureq::get(&format!("{}{path}", self.url)).call();
        match response {
            Ok(mut response) => (
                response.status().as_u16(),
                response
                    .headers()
                    .get("link")
                    .map(|v| v.to_str().unwrap().to_string()),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    #[track_caller]
    pub fn json(&self, path: &str) -> Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Runs of a deployment, oldest first.
    pub fn runs(&self, deployment: &str) -> Vec<Value> {
        let mut runs = self
            .json(&format!("/api/runs?deployment={deployment}&limit=1000"))
            .as_array()
            .unwrap()
            .clone();
        runs.reverse();
        runs
    }

    /// Every run of a deployment read straight from the store, oldest first.
    pub fn stored_runs(&self, deployment: &str) -> Vec<sundial::store::Run> {
        let store =
            sundial::store::Store::open_read_only(&self.state_dir.join("state.db")).unwrap();
        let filter = sundial::store::RunFilter {
            deployment: Some(deployment.into()),
            limit: 100_000,
            ..Default::default()
        };
        let mut runs = store.runs(&filter).unwrap();
        runs.reverse();
        runs
    }

    /// Waits up to `within` for the first run of `deployment` that has ended.
    #[track_caller]
    pub fn ended_run(&self, deployment: &str, within: Duration) -> sundial::store::Run {
        wait_until(within, &format!("a run of {deployment} to end"), || {
            self.stored_runs(deployment)
                .into_iter()
                .find(|r| r.state.is_final())
        })
    }

    /// A run's log file ("" when it has none).
    pub fn run_log(&self, id: i64) -> String {
        std::fs::read_to_string(self.state_dir.join("logs").join(format!("{id}.log")))
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
        }
    }
}
