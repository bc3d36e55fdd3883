//! [`Service`]: the engine's [`Lifecycle`] under systemd, and the one-line `STATUS=`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::engine::status::Status;
use crate::engine::Lifecycle;

use super::notify::{monotonic_usec, Notifier};

/// Tells systemd how the engine goes (see the module contract in `systemd/mod.rs`).
pub struct Service {
    notifier: Notifier,
    watchdog: Option<Watchdog>,
    /// `READY=1` was sent (and no reload is pending).
    ready: bool,
    /// `RELOADING=1` was sent; the next handled sync answers it with `READY=1`.
    reloading: bool,
    /// The last `STATUS=` sent.
    status: String,
    /// A send failed and was logged; later failures stay quiet.
    warned: bool,
}

struct Watchdog {
    interval: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// A ping is due when nine tenths of the interval passed: the loop wakes at the
    /// interval, but another event just before it may as well send the ping.
    fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.duration_since(last) >= self.interval * 9 / 10)
    }
}

impl Service {
    /// `watchdog`: how often to ping (half `WATCHDOG_USEC`), or `None` without a watchdog.
    pub fn new(notifier: Notifier, watchdog: Option<Duration>) -> Service {
        Service {
            notifier,
            watchdog: watchdog.map(|interval| Watchdog {
                interval,
                last: None,
            }),
            ready: false,
            reloading: false,
            status: String::new(),
            warned: false,
        }
    }

    fn send(&mut self, message: &str) {
        if let Err(e) = self.notifier.send(message) {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "cannot notify systemd at {}: {e} (further failures are not logged)",
                    self.notifier.name()
                );
            }
        }
    }

    fn ping_watchdog(&mut self) {
        let now = Instant::now();
        if self.watchdog.as_ref().is_some_and(|w| w.due(now)) {
            self.send("WATCHDOG=1");
            if let Some(w) = self.watchdog.as_mut() {
                w.last = Some(now);
            }
        }
    }

    /// Sends `STATUS=` when the line changed.
    fn update_status(&mut self, status: &Status) {
        let line = status_line(status, Utc::now());
        if line != self.status {
            self.send(&format!("STATUS={line}"));
            self.status = line;
        }
    }
}

impl Lifecycle for Service {
    fn turn(&mut self, status: &Status) {
        self.ping_watchdog();
        if !self.reloading {
            self.update_status(status);
        }
    }

    fn synced(&mut self, status: &Status) {
        if self.ready && !self.reloading {
            return self.update_status(status);
        }
        let line = status_line(status, Utc::now());
        self.send(&format!("READY=1\nSTATUS={line}"));
        self.status = line;
        self.ready = true;
        self.reloading = false;
    }

    fn reloading(&mut self) {
        // Before the first READY=1 systemd is still waiting for start-up; that READY
        // answers the reload too.
        if !self.ready {
            return;
        }
        self.reloading = true;
        self.status = "reloading: re-reading the repository".into();
        let message = format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}",
            monotonic_usec(),
            self.status
        );
        self.send(&message);
    }

    fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping: ending running jobs");
        // The loop no longer turns while running jobs get their grace period; keep the
        // watchdog fed from a thread until the process exits. A stop that hangs is
        // ended by systemd's TimeoutStopSec, which is longer than the grace.
        let Some(interval) = self.watchdog.as_ref().map(|w| w.interval) else {
            return;
        };
        self.send("WATCHDOG=1");
        if let Ok(socket) = self.notifier.try_clone() {
            std::thread::spawn(move || loop {
                std::thread::sleep(interval);
                let _ = socket.send("WATCHDOG=1");
            });
        }
    }

    fn max_sleep(&self) -> Option<Duration> {
        let w = self.watchdog.as_ref()?;
        let left = match w.last {
            Some(last) => w.interval.saturating_sub(last.elapsed()),
            None => Duration::ZERO,
        };
        Some(left.max(Duration::from_millis(1)))
    }
}

/// The one-line `STATUS=`: what `systemctl status sundial` shows under the unit, e.g.
/// `commit abc1234, 12 deployments, next: etl at 09:00 America/Chicago, 0 errors`, then
/// `; source error: ...` while fetching or reading the repository fails.
/// The next fire is shown in its schedule's timezone, with the date unless it is within
/// a day of `now`, and with seconds only when they are not zero.
pub fn status_line(status: &Status, now: DateTime<Utc>) -> String {
    // The one condition that stops every schedule from being recorded comes first.
    if let Some(store_error) = &status.store_error {
        return format!("STATE DATABASE: {}", one_line(store_error, 200));
    }
    let errors = plural(status.errors.len(), "error");
    let source = status.source.error.as_ref().map(|(_, e)| e.as_str());
    let Some(commit) = status.commit.as_deref().filter(|_| status.ready) else {
        return match source {
            Some(e) => format!("no commit applied yet: {}", one_line(e, 200)),
            None => "starting: reading the repository".into(),
        };
    };
    let source = source
        .map(|e| format!("; source error: {}", one_line(e, 160)))
        .unwrap_or_default();
    let short = commit.get(..7).unwrap_or(commit);
    let deployments = plural(status.deployments.len(), "deployment");
    let next = status
        .deployments
        .iter()
        .filter(|d| !d.deployment().paused)
        .flat_map(|d| {
            d.schedules()
                .filter(|s| s.active)
                .filter_map(move |s| s.next.map(|at| (at, d.name(), s.timezone())))
        })
        .min();
    let next = match next {
        Some((at, name, tz)) => format!("{name} at {}", local_time(at, tz, now)),
        None => "nothing scheduled".into(),
    };
    let clock = match &status.clock_warning {
        Some((_, resume)) => format!(
            ", clock stepped back: schedules resume at {}",
            resume.format("%H:%M:%S UTC")
        ),
        None => String::new(),
    };
    let outbox = &status.notifications;
    let notices = match (outbox.failing, outbox.given_up) {
        (0, 0) => String::new(),
        (failing, given_up) => format!(", notifications failing: {failing}, given up: {given_up}"),
    };
    let role = match &status.cluster {
        Some(c) => format!("{}, ", c.role_text()),
        None => String::new(),
    };
    format!("{role}commit {short}, {deployments}, next: {next}, {errors}{source}{clock}{notices}")
}

fn local_time(at: DateTime<Utc>, tz: &str, now: DateTime<Utc>) -> String {
    let date = if at - now >= chrono::Duration::days(1) {
        "%Y-%m-%d "
    } else {
        ""
    };
    let time = if at.timestamp() % 60 == 0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    let format = format!("{date}{time}");
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => format!("{} {tz}", at.with_timezone(&zone).format(&format)),
        Err(_) => format!("{} UTC", at.format(&format)),
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The first line of `text`, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::status::{planned, DeploymentView, SourceErrorKind};
    use crate::runner::launch::test_deployment;
    use crate::schedule::Schedule;
    use crate::store::FileError;
    use crate::validate::desired::Launch;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn deployment(name: &str, paused: bool, schedules: &[(&str, Option<&str>)]) -> DeploymentView {
        let mut d = test_deployment(Launch::Command(vec!["true".into()]));
        d.name = name.into();
        d.paused = paused;
        d.schedules = schedules
            .iter()
            .map(|(tz, _)| {
                let tz = tz.parse().expect("a time zone");
                planned("s", Schedule::cron("0 9 * * *", tz, true).unwrap())
            })
            .collect();
        let nexts: Vec<_> = schedules.iter().map(|(_, next)| next.map(at)).collect();
        DeploymentView::alone(d, "abc1234def", &nexts)
    }

    fn error(message: &str) -> FileError {
        FileError {
            file: "repo".into(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    #[test]
    fn the_status_line_names_the_commit_and_the_next_fire_in_its_timezone() {
        let status = Status {
            ready: true,
            commit: Some("abc1234def5678".into()),
            deployments: vec![
                deployment(
                    "etl",
                    false,
                    &[("America/Chicago", Some("2026-03-02T15:00:00Z"))],
                ),
                deployment("paused", true, &[("UTC", Some("2026-03-02T12:00:00Z"))]),
                deployment("later", false, &[("UTC", Some("2026-03-02T16:00:00Z"))]),
            ]
            .into(),
            ..Status::default()
        };
        assert_eq!(
            status_line(&status, at("2026-03-02T10:00:00Z")),
            "commit abc1234, 3 deployments, next: etl at 09:00 America/Chicago, 0 errors"
        );
        assert_eq!(
            status_line(&status, at("2026-02-27T10:00:00Z")),
            "commit abc1234, 3 deployments, next: etl at 2026-03-02 09:00 America/Chicago, 0 errors"
        );
    }

    #[test]
    fn the_status_line_shows_seconds_nothing_scheduled_and_counts() {
        let mut status = Status {
            ready: true,
            commit: Some("abc1234def5678".into()),
            deployments: vec![deployment(
                "tick",
                false,
                &[("UTC", Some("2026-03-02T10:00:05Z"))],
            )]
            .into(),
            errors: vec![error("bad")],
            ..Status::default()
        };
        assert_eq!(
            status_line(&status, at("2026-03-02T10:00:00Z")),
            "commit abc1234, 1 deployment, next: tick at 10:00:05 UTC, 1 error"
        );
        status.deployments.clear();
        assert_eq!(
            status_line(&status, at("2026-03-02T10:00:00Z")),
            "commit abc1234, 0 deployments, next: nothing scheduled, 1 error"
        );
    }

    #[test]
    fn a_full_disk_and_a_clock_stepped_back_show_in_the_status_line() {
        let mut status = Status {
            ready: true,
            commit: Some("abc1234def5678".into()),
            clock_warning: Some(("stepped back".into(), at("2026-03-02T11:00:00Z"))),
            ..Status::default()
        };
        assert_eq!(
            status_line(&status, at("2026-03-02T10:00:00Z")),
            "commit abc1234, 0 deployments, next: nothing scheduled, 0 errors, clock stepped back: schedules resume at 11:00:00 UTC"
        );
        status.store_error = Some("the disk of /var/lib/sundial/state.db is full".into());
        assert_eq!(
            status_line(&status, at("2026-03-02T10:00:00Z")),
            "STATE DATABASE: the disk of /var/lib/sundial/state.db is full"
        );
    }

    #[test]
    fn before_the_first_commit_the_status_line_says_why() {
        let mut status = Status::default();
        assert_eq!(
            status_line(&status, Utc::now()),
            "starting: reading the repository"
        );
        status.source.error = Some((
            SourceErrorKind::Read,
            "cannot open /srv/repo: not found\nhint: clone it".into(),
        ));
        assert_eq!(
            status_line(&status, Utc::now()),
            "no commit applied yet: cannot open /srv/repo: not found"
        );
    }

    #[test]
    fn a_source_error_is_in_the_status_line_while_it_lasts() {
        let mut status = Status {
            ready: true,
            commit: Some("abc1234def".into()),
            ..Status::default()
        };
        status.source.error = Some((
            SourceErrorKind::Fetch,
            "`git fetch` from remote `origin` failed: fatal: no such remote".into(),
        ));
        assert_eq!(
            status_line(&status, Utc::now()),
            "commit abc1234, 0 deployments, next: nothing scheduled, 0 errors; source error: \
             `git fetch` from remote `origin` failed: fatal: no such remote"
        );
        status.source.error = None;
        assert_eq!(
            status_line(&status, Utc::now()),
            "commit abc1234, 0 deployments, next: nothing scheduled, 0 errors"
        );
    }
}
