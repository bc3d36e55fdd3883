//! runner: turns a validated deployment into a supervised local process.
//!
//! - [`launch`] decides what to execute: the argv and directory for a [`Deployment`] in a
//!   checkout of its commit. No shell, ever: a `command` is argv, a Python entrypoint runs
//!   through a small bootstrap that reads `SUNDIAL_PARAMETERS`.
//! - [`spawn`] is the one spawn recipe (own process group, env on top of the daemon's,
//!   output straight to the run's log file), prepared ahead and started at the instant.
//! - [`process`] supervises what was started (timeout, cancel and shutdown by SIGTERM to
//!   the group, grace, SIGKILL), ending in an [`Exit`] that says why.
//! - [`timed`] releases a start at its instant from a thread of its own, so the daemon's
//!   async thread (store commits, applies, the API) never makes a start late.
//! - [`contain`] finds a run's processes by the marker in their environment, wherever
//!   they went (a `setsid` escape, or what a dead daemon left).
//!
//! Run rows, retries and concurrency are the orchestration's, built on these two.
//!
//! [`Deployment`]: crate::validate::desired::Deployment

pub mod contain;
pub mod launch;
pub mod process;
pub mod spawn;
pub mod timed;

pub use launch::{argv, working_dir, LaunchError};
pub use process::{kill_group, process_group_alive, Exit, Running, StopRequest, Withdrawal};
pub use spawn::{append_log_line, prepare, spawn, Prepared, ProcessSpec, SpawnError};

#[cfg(test)]
mod tests;
