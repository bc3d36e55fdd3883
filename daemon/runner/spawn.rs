//! The one spawn recipe, in two steps: [`prepare`] does ahead of time all that can be
//! done ahead, and [`Prepared::start`] only spawns.
//!
//! Every run process of sundial starts here and nowhere else:
//! - the argv as given (no shell), in `cwd`, with stdin `/dev/null`;
//! - the daemon's environment plus the caller's variables, in the caller's order (job
//!   `env` first, then `SUNDIAL_*`, so ours win);
//! - in a process group of its own (pgid = pid), so a stop reaches every descendant that
//!   stayed in the group;
//! - stdout and stderr appended straight to the run's log file, with no pipe through the
//!   daemon; only `stream_output` adds pipes, and then each chunk is written to the file
//!   as it arrives (never held in memory) and each line also goes to the daemon's log.
//!
//! Why two steps: a start on the dot is released by a launch thread (`timed`) at the
//! instant, and what that thread does between its wake and the spawn is lateness
//! (measured: 0.15 to 0.25 ms for opening the log, checking the directory and building
//! the command). [`prepare`] opens the log and writes its preamble (the attempt's header),
//! checks the directory and builds the command when the slot is armed; at the instant,
//! [`Prepared::start`] is the spawn. A prepared start holds its log open (two descriptors,
//! for the child's stdout and stderr) until it starts or is dropped: at most
//! [`MOST_HELD_LOGS`] are held at once (a burst of 10,000 slots armed ahead would hold
//! 20,000, and each spawn copies them all), and past that the log is opened again at the
//! instant. [`spawn`] is both steps
//! at once.
//!
//! A failure (missing program, not executable, bad directory) is a [`SpawnError`] whose
//! message names the program and directory; the same message is appended to the log file
//! so `sundial logs` shows why nothing ran. A directory that was there when prepared and
//! is gone at the instant is named as the directory, not as a missing program.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use super::process::{forward, Running};

/// Everything [`spawn`] needs; the caller has already resolved argv, directory and env.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added on top of the daemon's inherited environment, in order (job env first, then
    /// SUNDIAL_* — the caller orders them); a later entry wins over an earlier one.
    pub env: Vec<(String, String)>,
    /// Created (parent directories too) and opened for append; stdout and stderr both go
    /// straight to this file.
    pub log_path: PathBuf,
    /// The attempt's time limit (`timeout_seconds`), for messages; `None` runs until the
    /// process exits or is stopped.
    pub timeout: Option<Duration>,
    /// When that limit runs out: it bounds the whole attempt (pull steps and the main
    /// process together), so each process gets what is left, not the full limit.
    pub deadline: Option<Instant>,
    /// SIGTERM to the group, wait this long, then SIGKILL.
    pub grace: Duration,
    /// When `Some(label)`: also forward each output line to the daemon's log (`info!`,
    /// with the label), while still writing the file.
    pub stream_output: Option<String>,
    /// The process's standard input: this pipe's read end (a pre-started run waits on it
    /// for its release), else `/dev/null`.
    pub stdin: Option<Arc<std::io::PipeReader>>,
}

/// Why a process could not be started. Each message names what failed; [`prepare`] and
/// [`Prepared::start`] also append it to the log file (except when the log file itself
/// cannot be opened).
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("nothing to run: the argv is empty")]
    EmptyArgv,
    #[error("cannot open the run log {}: {cause}", path.display())]
    Log { path: PathBuf, cause: io::Error },
    #[error("cannot start `{program}`: working directory {} {}", cwd.display(), describe_dir(cause))]
    WorkingDir {
        program: String,
        cwd: PathBuf,
        cause: io::Error,
    },
    #[error("cannot start `{program}` in {}: {}", cwd.display(), describe_program(cause))]
    Program {
        program: String,
        cwd: PathBuf,
        cause: io::Error,
    },
}

/// How many prepared starts may hold their run log open at once. Few: every descriptor
/// the daemon holds is copied into each child it spawns and closed there at `exec`
/// (measured in a burst of 10,000: 512 held descriptors made `dup_fd` and
/// `do_close_on_exec` the launch threads' largest costs).
pub const MOST_HELD_LOGS: usize = 16;

/// How many prepared starts hold their run log open now.
static HELD_LOGS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MOST_HELD_LOGS`]; given back when dropped.
#[derive(Debug)]
struct Held(());

impl Held {
    fn take() -> Option<Held> {
        HELD_LOGS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MOST_HELD_LOGS).then_some(n + 1)
            })
            .ok()
            .map(|_| Held(()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD_LOGS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the child's output goes, as far as it was settled when prepared.
#[derive(Debug)]
enum Output {
    /// Stdout and stderr are set on the command, to the log.
    Set,
    /// Piped (`stream_output`): the log is copied for the pumps at the start.
    Piped(File),
    /// The log is not held (past [`MOST_HELD_LOGS`]): it is opened again at the start.
    Later,
}

/// Points the command's output at the open `log`: straight to it, or through pipes
/// whose pumps copy to it (`streamed`).
fn direct(command: &mut Command, log: File, streamed: bool) -> io::Result<Output> {
    if streamed {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        return Ok(Output::Piped(log));
    }
    command
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    Ok(Output::Set)
}

/// A process ready to start: its log open, its directory checked, its command built.
#[derive(Debug)]
pub struct Prepared {
    command: Command,
    program: String,
    cwd: PathBuf,
    output: Output,
    /// Counts the log held open, while it is.
    _held: Option<Held>,
    log_path: PathBuf,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    grace: Duration,
    stream_output: Option<String>,
}

/// Starts the process as the module docs describe. Must be called inside a tokio runtime.
///
/// Errors when the argv is empty, the log file cannot be opened, the working directory is
/// missing, or the program cannot be executed; the message is also appended to the log.
pub fn spawn(spec: &ProcessSpec) -> Result<Running, SpawnError> {
    prepare(spec, &[])?.start()
}

/// Everything of [`spawn`] but the spawn: opens the run log, appends `preamble` to it
/// (one line each; a line that cannot be written is skipped, as the output would be on a
/// full disk), checks the working directory and builds the command. Needs no runtime.
///
/// Errors as [`spawn`] does, and appends the message to the log likewise.
pub fn prepare(spec: &ProcessSpec, preamble: &[String]) -> Result<Prepared, SpawnError> {
    noted(&spec.log_path, build(spec, preamble))
}

impl Prepared {
    /// Spawns the prepared process. Must be called inside a tokio runtime.
    pub fn start(self) -> Result<Running, SpawnError> {
        let log_path = self.log_path.clone();
        noted(&log_path, self.launch())
    }

    fn launch(mut self) -> Result<Running, SpawnError> {
        if let Output::Later = self.output {
            let log_error = |cause| SpawnError::Log {
                path: self.log_path.clone(),
                cause,
            };
            let log = open_log(&self.log_path).map_err(log_error)?;
            self.output =
                direct(&mut self.command, log, self.stream_output.is_some()).map_err(log_error)?;
        }
        let mut child = self.command.spawn().map_err(|cause| {
            // Checked when prepared; gone since, it is what failed (not the program).
            match check_dir(&self.program, &self.cwd) {
                Err(gone) => gone,
                Ok(()) => SpawnError::Program {
                    program: self.program.clone(),
                    cwd: self.cwd.clone(),
                    cause,
                },
            }
        })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let mut pumps = Vec::new();
        if let (Some(label), Output::Piped(log)) = (&self.stream_output, &self.output) {
            // A failed clone only loses the file copy of that stream; the process already runs.
            let copy = || log.try_clone().ok();
            if let Some(out) = child.stdout.take() {
                pumps.push(tokio::spawn(forward(out, copy(), label.clone(), "stdout")));
            }
            if let Some(err) = child.stderr.take() {
                pumps.push(tokio::spawn(forward(err, copy(), label.clone(), "stderr")));
            }
        }
        tracing::debug!(pid, program = %self.program, cwd = %self.cwd.display(), "process started");
        Ok(Running {
            pid,
            child,
            pumps,
            log_path: self.log_path,
            deadline: self.deadline,
            timeout: self.timeout,
            grace: self.grace,
        })
    }
}

fn build(spec: &ProcessSpec, preamble: &[String]) -> Result<Prepared, SpawnError> {
    let log_error = |cause| SpawnError::Log {
        path: spec.log_path.clone(),
        cause,
    };
    let mut log = open_log(&spec.log_path).map_err(log_error)?;
    if let Err(e) = write_lines(&mut log, preamble) {
        tracing::warn!(log = %spec.log_path.display(), error = %e, "cannot write to the run log");
    }
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(SpawnError::EmptyArgv);
    };
    // Checked first so that "not found" at the spawn can only mean the program.
    check_dir(program, &spec.cwd)?;

    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .kill_on_drop(false);
    match &spec.stdin {
        Some(pipe) => command.stdin(Stdio::from(pipe.try_clone().map_err(|cause| {
            SpawnError::Program {
                program: program.clone(),
                cwd: spec.cwd.clone(),
                cause,
            }
        })?)),
        None => command.stdin(Stdio::null()),
    };
    // Held open only while few are; else closed here and opened again at the start.
    let held = Held::take();
    let output = match held {
        Some(_) => direct(&mut command, log, spec.stream_output.is_some()).map_err(log_error)?,
        None => Output::Later,
    };
    Ok(Prepared {
        command,
        program: program.clone(),
        cwd: spec.cwd.clone(),
        output,
        _held: held,
        log_path: spec.log_path.clone(),
        timeout: spec.timeout,
        deadline: spec.deadline,
        grace: spec.grace,
        stream_output: spec.stream_output.clone(),
    })
}

/// Appends a failure's message to the run log (unless the log is what failed).
fn noted<T>(log_path: &Path, result: Result<T, SpawnError>) -> Result<T, SpawnError> {
    if let Err(err) = &result {
        if !matches!(err, SpawnError::Log { .. }) {
            if let Err(e) = append_log_line(log_path, &format!("# sundial: {err}")) {
                tracing::warn!(log = %log_path.display(), error = %e, "cannot write the spawn failure to the run log");
            }
        }
    }
    result
}

/// The working directory is a directory, or the error that names it.
fn check_dir(program: &str, cwd: &Path) -> Result<(), SpawnError> {
    let cause = match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => io::ErrorKind::NotADirectory.into(),
        Err(cause) => cause,
    };
    Err(SpawnError::WorkingDir {
        program: program.to_string(),
        cwd: cwd.to_path_buf(),
        cause,
    })
}

/// Appends one line (a newline is added) to a log file, creating it and its parent
/// directories. The orchestrator writes its own lines in a run's log with it.
pub fn append_log_line(path: &Path, line: &str) -> io::Result<()> {
    append_log_lines(path, &[line])
}

/// Appends lines (a newline after each) to a log file with one open, creating it and its
/// parent directories.
pub fn append_log_lines(path: &Path, lines: &[impl AsRef<str>]) -> io::Result<()> {
    write_lines(&mut open_log(path)?, lines)
}

fn write_lines(file: &mut File, lines: &[impl AsRef<str>]) -> io::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    file.write_all(text.as_bytes())
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Mode 0600: a run's output may hold secrets.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn describe_program(cause: &io::Error) -> String {
    match cause.kind() {
        io::ErrorKind::NotFound => "no such program (or its #! interpreter is missing)".into(),
        io::ErrorKind::PermissionDenied => "permission denied (is it executable?)".into(),
        _ => cause.to_string(),
    }
}

fn describe_dir(cause: &io::Error) -> String {
    match cause.kind() {
        io::ErrorKind::NotFound => "does not exist".into(),
        io::ErrorKind::NotADirectory => "is not a directory".into(),
        _ => format!("cannot be used: {cause}"),
    }
}
