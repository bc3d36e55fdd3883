//! While a burst is being launched, the engine's bookkeeping waits.
//!
//! A burst of slots due at one instant is spawned by the launch threads
//! (`runner/timed.rs`) on a machine whose cores it needs whole: each millisecond the
//! engine spends recording the burst's starts and ends, or noticing them, is one the
//! launch threads wait for a core (measured on 2 cores: 10,000 slots due at once, the
//! launch threads were runnable but waiting 41 % of the time). So while a launch is due
//! ([`timed::launching`]: the launch queue holds a job due within 20 ms, or overdue), the run events
//! that arrive are kept in memory in the order they came, the notice pass waits, and so
//! does the check of the running runs' log sizes (a stat per run).
//! All are done once the queue has drained, and after [`MOST_HELD`] at the latest.
//!
//! Contract: events are handled in the order they arrived, as they would have been, and
//! none is lost: the graceful stop handles what is held before it waits for the rest. What
//! waits is bookkeeping only (a run's `started_at`, pid and end in the store, what follows
//! an end, notifications), at most [`MOST_HELD`]; no process waits for it. Pure decision
//! ([`Held::holds`]); the engine asks the launch queue and the clock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::runner::timed;
use crate::store::StoreError;

use super::attempt::RunEvent;
use super::Engine;

/// The longest bookkeeping waits for a burst.
///
/// Long enough to cover a whole burst of 10,000 on 2 cores (7 to 9 s), so its starts and
/// ends are written once its spawns are done rather than while they compete for a core:
/// in paired quick runs of that burst the last child started at 1.24 to 1.58× the serial
/// floor with 2 s, 1.01 to 1.31× with 10 s (docs/performance.md). It bounds how stale the
/// store's view of a run can be while launches keep coming.
const MOST_HELD: Duration = Duration::from_secs(10);
/// How often the engine looks whether the launches are over, while it holds something.
pub(super) const LOOK_EVERY: Duration = timed::LOOK_EVERY;

/// What waits for the launches to be over.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// Run events, in the order they arrived.
    events: Vec<RunEvent>,
    /// A notice pass was put off.
    notice: bool,
    /// When the first of them was put off.
    since: Option<Instant>,
}

impl Held {
    /// Whether anything waits.
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && !self.notice
    }

    /// Whether bookkeeping waits at `now`, with a launch due (`launching`) or not: while
    /// launching, until the first thing held has waited [`MOST_HELD`].
    fn holds(&self, launching: bool, now: Instant) -> bool {
        launching
            && self
                .since
                .is_none_or(|since| now.saturating_duration_since(since) < MOST_HELD)
    }

    fn hold(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }
}

impl Engine {
    /// Whether bookkeeping waits now.
    pub(super) fn holding(&self) -> bool {
        self.held.holds(timed::launching(), Instant::now())
    }

    /// Run events that arrived: handled now, or kept while a burst is launched.
    pub(super) fn on_arrived(
        &mut self,
        events: Vec<RunEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.holding() {
            self.held.hold(Instant::now());
            self.held.events.extend(events);
            return Ok(());
        }
        let mut all = std::mem::take(&mut self.held.events);
        all.extend(events);
        self.on_events(all, now)
    }

    /// Whether the notice pass waits now; if so it is remembered for later.
    pub(super) fn notice_waits(&mut self) -> bool {
        if self.holding() {
            self.held.hold(Instant::now());
            self.held.notice = true;
            return true;
        }
        self.held.notice = false;
        false
    }

    /// After a turn: hands over the events held, once the launches are over (the notice
    /// pass that follows every turn then runs too). Everything held, at once, when the
    /// daemon stops (`force`).
    pub(super) fn release_held(
        &mut self,
        now: DateTime<Utc>,
        force: bool,
    ) -> Result<(), StoreError> {
        if self.held.is_empty() || (!force && self.holding()) {
            return Ok(());
        }
        self.held.since = None;
        let events = std::mem::take(&mut self.held.events);
        if events.is_empty() {
            return Ok(());
        }
        self.on_events(events, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_waits_while_launching_and_never_longer_than_the_most() {
        let t0 = Instant::now();
        let mut held = Held::default();
        assert!(!held.holds(false, t0), "nothing is launched: no wait");
        assert!(held.holds(true, t0), "a launch is due: wait");
        held.hold(t0);
        held.hold(t0 + Duration::from_millis(500));
        assert!(held.holds(true, t0 + MOST_HELD - Duration::from_millis(1)));
        assert!(
            !held.holds(true, t0 + MOST_HELD),
            "held since the first, not the last: no longer than the most"
        );
        assert!(!held.holds(false, t0 + Duration::from_millis(1)));
    }
}
