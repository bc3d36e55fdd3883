//! Running under systemd: `Type=notify` readiness, the watchdog, reload and stop
//! notifications ([`Service`], a [`Lifecycle`] the engine calls), and log lines journald
//! understands ([`journal`]). Everything here is optional: without `$NOTIFY_SOCKET`
//! [`lifecycle`] is a no-op and the logs stay human.
//!
//! Contract, as `systemd/sundial.service` relies on it:
//! - `READY=1` after the first sync the engine handled: normally the first commit applied
//!   (`/readyz` is 200 by then). If the repository cannot be read at start, `READY=1` still
//!   comes once the engine has loaded its state and reported the error (`STATUS=` says it,
//!   `/readyz` stays 503): the daemon is up, serves its API and retries at each poll, and
//!   systemd would otherwise kill and restart it after `TimeoutStartSec` for nothing.
//! - `STATUS=` is one line (commit, deployments, next fire, errors), sent when it changes.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, only from the engine loop's turns (a loop
//!   that hangs stops pinging); [`Lifecycle::max_sleep`] keeps the loop turning that often.
//!   `WATCHDOG_PID` naming another process disables it.
//! - SIGHUP: `RELOADING=1` with `MONOTONIC_USEC=`, then `READY=1` when the forced re-sync
//!   is handled. SIGTERM: `STOPPING=1`.
//! - A failure to notify is logged once and never stops the daemon.
//!
//! Non-goals: socket activation, `sd_notify` file descriptor passing, `NOTIFY_SOCKET`
//! forms other than a path or an `@abstract` name.

pub mod journal;
pub mod notify;
mod service;

pub use service::{status_line, Service};

use crate::engine::{Lifecycle, NoLifecycle};

/// The lifecycle for this process: [`Service`] when `$NOTIFY_SOCKET` is set, else none.
pub fn lifecycle() -> Box<dyn Lifecycle> {
    match notify::Notifier::from_env() {
        Ok(Some(notifier)) => {
            let watchdog = notify::watchdog_interval_from_env();
            tracing::debug!(
                "notifying systemd at {} (watchdog every {watchdog:?})",
                notifier.name()
            );
            Box::new(Service::new(notifier, watchdog))
        }
        Ok(None) => Box::new(NoLifecycle),
        Err(e) => {
            tracing::warn!("cannot notify systemd: {e}; running without notifications");
            Box::new(NoLifecycle)
        }
    }
}
