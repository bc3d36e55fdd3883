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

/// A manifest of one deployment: `command`, one schedule (`schedule` is its first line;
/// more lines indented by 8), and `extra` deployment keys (indented by 4).
pub fn manifest(name: &str, command: &str, schedule: &str, extra: &str) -> String {
    format!("deployments:\n  - name: {name}\n    work_pool:\n      job_variables:\n        command: {command}\n    schedules:\n      - {schedule}\n{extra}")
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
        self.commit_at(files, message, None)
    }

    /// [`GitRepo::commit`] with the commit's time (author and committer) set to `at`.
    #[track_caller]
    pub fn commit_at(
        &self,
        files: &[(&str, Option<&str>)],
        message: &str,
        at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> String {
        for (rel, text) in files {
            match text {
                Some(text) => {
                    self.write(rel, text);
                    super::git_ok(self.path(), &["add", rel]);
                }
                None => super::git_ok(self.path(), &["rm", "-q", rel]),
            }
        }
        let mut commit = git(self.path());
        commit.args(["commit", "-q", "--allow-empty", "-m", message]);
        if let Some(at) = at {
            let date = at.to_rfc3339();
            commit
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date);
        }
        let out = commit.output().expect("run git commit");
        assert!(
            out.status.success(),
            "git commit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = git(self.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// How to start a daemon, beyond its repository.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Extra command-line flags.
    pub extra: Vec<String>,
    /// The (soft, hard) open-file limit (`RLIMIT_NOFILE`) it starts with, as
    /// `prlimit --nofile=SOFT:HARD` would set it.
    pub open_files: Option<(u64, u64)>,
    /// Leave the state directory (`state/` in a temporary directory) for the daemon to
    /// create.
    pub fresh_state_dir: bool,
    /// Extra environment variables, e.g. `SUNDIAL_GIT_TIMEOUT`.
    pub env: Vec<(String, String)>,
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub url: String,
    pub state_dir: PathBuf,
    listen: String,
    repo: PathBuf,
    setup: Setup,
    log_path: PathBuf,
    _state: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts the daemon on `repo` with a fresh state directory and waits until ready.
    #[track_caller]
    pub fn start(repo: &Path) -> Daemon {
        Daemon::launch(repo, Setup::default())
    }

    /// Like [`Daemon::start`], with extra command-line flags.
    #[track_caller]
    pub fn start_with(repo: &Path, extra: &[&str]) -> Daemon {
        Daemon::launch(
            repo,
            Setup {
                extra: extra.iter().map(|a| a.to_string()).collect(),
                ..Setup::default()
            },
        )
    }

    /// Starts the daemon on `repo` with `extra` flags without waiting until it is ready
    /// (a repository that is not there yet); it answers HTTP once this returns.
    #[track_caller]
    pub fn start_unready(repo: &Path, extra: &[&str]) -> Daemon {
        let state = tempfile::tempdir().expect("a state directory");
        let setup = Setup {
            extra: extra.iter().map(|a| a.to_string()).collect(),
            ..Setup::default()
        };
        let mut daemon = Daemon::spawn(
            repo,
            state.path(),
            state.path().join("daemon.log"),
            None,
            setup,
        );
        daemon._state = Some(state);
        daemon
    }

    /// Starts the daemon on `repo` with its state in `state_dir` (kept by the caller, e.g.
    /// on a disk the test mounted) and waits until ready.
    #[track_caller]
    pub fn launch_in(repo: &Path, state_dir: &Path, setup: Setup) -> Daemon {
        std::fs::create_dir_all(state_dir).unwrap();
        let log = state_dir.with_extension("log");
        let daemon = Daemon::spawn(repo, state_dir, log, None, setup);
        daemon.wait_ready();
        daemon
    }

    /// Waits up to `within` for the daemon to exit by itself; returns its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = wait_until(within, "the daemon to exit", || child.try_wait().unwrap());
        status.code()
    }

    /// The daemon's exit status if it has exited by itself, without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().expect("started").try_wait().unwrap()
    }

    /// Starts the daemon on `repo` as `setup` says and waits until ready.
    #[track_caller]
    pub fn launch(repo: &Path, setup: Setup) -> Daemon {
        let state = tempfile::tempdir().expect("a state directory");
        let (state_dir, log_path) = if setup.fresh_state_dir {
            (state.path().join("state"), state.path().join("daemon.log"))
        } else {
            (state.path().to_path_buf(), state.path().join("daemon.log"))
        };
        let mut daemon = Daemon::spawn(repo, &state_dir, log_path, None, setup);
        daemon._state = Some(state);
        daemon.wait_ready();
        daemon
    }

    /// Starts the daemon. Without `listen` it binds port 0 itself (no port is handed over
    /// from a closed socket, which another process could take meanwhile) and the address
    /// is read from the `url` file it writes.
    fn spawn(
        repo: &Path,
        state_dir: &Path,
        log_path: PathBuf,
        listen: Option<String>,
        setup: Setup,
    ) -> Daemon {
        let fixed = listen.is_some();
        let listen = listen.unwrap_or_else(|| "127.0.0.1:0".to_string());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = sundial();
        // Nothing of the caller's environment configures the daemon under test.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("SUNDIAL_") || name == "NOTIFY_SOCKET" || name == "JOURNAL_STREAM" {
                command.env_remove(&*name);
            }
        }
        if !fixed {
            let _ = std::fs::remove_file(state_dir.join("url"));
        }
        if let Some((soft, hard)) = setup.open_files {
            // SAFETY: setrlimit is a single system call, safe between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        soft,
                        hard,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = command
            .args(["daemon", "--repo"])
            .arg(repo)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", &listen, "--poll-interval", "1", "--grace", "2"])
            .args(&setup.extra)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .env("SUNDIAL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the daemon");
        // Killed on drop from here on, even if waiting for its address fails.
        let mut daemon = Daemon {
            child: Some(child),
            url: format!("http://{listen}"),
            state_dir: state_dir.to_path_buf(),
            listen,
            repo: repo.to_path_buf(),
            setup,
            log_path,
            _state: None,
        };
        if !fixed {
            let url = wait_until(Duration::from_secs(30), "the daemon's url file", || {
                let text = std::fs::read_to_string(state_dir.join("url")).ok()?;
                let url = text.trim();
                (url.starts_with("http://") && url.rsplit(':').next()? != "0")
                    .then(|| url.to_string())
            });
            daemon.listen = url.trim_start_matches("http://").to_string();
            daemon.url = url;
        }
        daemon
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
        self.restart_unready();
        self.wait_ready();
    }

    /// Starts the daemon again like [`Daemon::restart`], without waiting until it is
    /// ready (for a start that cannot apply a commit).
    pub fn restart_unready(&mut self) {
        let mut next = Daemon::spawn(
            &self.repo,
            &self.state_dir,
            self.log_path.clone(),
            Some(self.listen.clone()),
            self.setup.clone(),
        );
        self.child = next.child.take();
    }

    /// Starts the daemon again with other extra flags (kept for later restarts).
    #[track_caller]
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.setup.extra = extra.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    /// Sends SIGINT (Ctrl-C) and returns the exit code.
    pub fn interrupt(&mut self) -> Option<i32> {
        self.stop_with(nix::sys::signal::Signal::SIGINT)
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
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
            // No answer: status 0, and the error (refused, timed out) as the body.
            Err(e) => (0, format!("no answer: {e}")),
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

    /// Waits until `deployment`'s runs (read from the store, oldest first) satisfy `cond`;
    /// returns them then. On time-out the panic shows the runs and the end of the log.
    #[track_caller]
    pub fn runs_when(
        &self,
        deployment: &str,
        within: Duration,
        what: &str,
        cond: impl Fn(&[sundial::store::Run]) -> bool,
    ) -> Vec<sundial::store::Run> {
        let deadline = Instant::now() + within;
        loop {
            let runs = self.stored_runs(deployment);
            if cond(&runs) {
                return runs;
            }
            if Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "timed out after {within:?} waiting for {what}\nruns: {runs:#?}\nlog tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until `deployment` has a Completed run; returns its runs then.
    #[track_caller]
    pub fn completed(&self, deployment: &str) -> Vec<sundial::store::Run> {
        self.runs_when(
            deployment,
            Duration::from_secs(30),
            "a completed run",
            |runs| {
                runs.iter()
                    .any(|r| r.state == sundial::store::RunState::Completed)
            },
        )
    }

    /// Waits until the daemon has applied commit `sha`.
    #[track_caller]
    pub fn wait_applied(&self, sha: &str) {
        wait_until(Duration::from_secs(20), "the commit applied", || {
            (self.json("/api/status")["commit"] == sha).then_some(())
        });
    }

    /// A run's log file ("" when it has none).
    pub fn run_log(&self, id: i64) -> String {
        std::fs::read_to_string(self.state_dir.join("logs").join(format!("{id}.log")))
            .unwrap_or_default()
    }

    /// The address it listens on (`127.0.0.1:PORT`).
    pub fn listen(&self) -> &str {
        &self.listen
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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

/// The slots of `runs` (from `/api/runs`), in the order given.
pub fn slots_of(runs: &[Value]) -> Vec<chrono::DateTime<chrono::Utc>> {
    runs.iter()
        .map(|r| r["scheduled_for"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// At most once and nothing lost: no slot has two rows, and every second from the first
/// slot to the last has one (run, or recorded).
#[track_caller]
pub fn assert_each_second_once(slots: &[chrono::DateTime<chrono::Utc>]) {
    let unique: std::collections::BTreeSet<_> = slots.iter().collect();
    assert_eq!(unique.len(), slots.len(), "a slot has two rows: {slots:?}");
    let (first, last) = (*unique.first().unwrap(), *unique.last().unwrap());
    assert_eq!(
        unique.len() as i64,
        (*last - *first).num_seconds() + 1,
        "a slot vanished: {slots:?}"
    );
}
