//! Whether this node leads, now: shared by the keeper (which grants and loses it), the
//! engine (which schedules only while it holds) and the launch threads (which spawn only
//! while it holds). Atomics only, so a check costs nothing and never waits.
//!
//! Time is `CLOCK_BOOTTIME`: it keeps counting while the host is suspended and while this
//! process is stopped (SIGSTOP), so a leader that wakes from either finds its leadership
//! over at once, before it starts anything.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds of `CLOCK_BOOTTIME`.
pub fn boottime_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// This node's leadership (the epoch it holds and until when) and its life (until when
/// its last heartbeat keeps it alive), by `CLOCK_BOOTTIME`.
#[derive(Debug, Default)]
pub struct Liveness {
    epoch: AtomicI64,
    valid_until: AtomicU64,
    alive_until: AtomicU64,
}

impl Liveness {
    /// The epoch this node leads at, if it leads now.
    pub fn leads(&self) -> Option<i64> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        (epoch > 0 && boottime_ns() < self.valid_until.load(Ordering::SeqCst)).then_some(epoch)
    }

    /// How long the leadership lasts from now without another renew, while it lasts.
    pub fn remaining(&self) -> Option<Duration> {
        self.leads()?;
        let left = self
            .valid_until
            .load(Ordering::SeqCst)
            .saturating_sub(boottime_ns());
        Some(Duration::from_nanos(left))
    }

    /// Leads at `epoch` until `valid_until` (`CLOCK_BOOTTIME` ns).
    pub fn grant(&self, epoch: i64, valid_until: u64) {
        // The deadline first: a reader that sees the new epoch sees its deadline too.
        self.valid_until.store(valid_until, Ordering::SeqCst);
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// Leads no more.
    pub fn lose(&self) {
        self.epoch.store(0, Ordering::SeqCst);
        self.valid_until.store(0, Ordering::SeqCst);
    }

    /// A heartbeat succeeded: the node counts as alive until `until` (`CLOCK_BOOTTIME` ns).
    pub fn beat(&self, until: u64) {
        self.alive_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Whether the node's heartbeat is recent enough for it to start a run: the leader
    /// settles the runs of a node silent for longer as lost, and retries them elsewhere.
    pub fn alive(&self) -> bool {
        boottime_ns() < self.alive_until.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_lasts_until_its_deadline_and_not_after() {
        let live = Liveness::default();
        assert_eq!(live.leads(), None);
        let now = boottime_ns();
        live.grant(3, now + 60_000_000_000);
        assert_eq!(live.leads(), Some(3));
        assert!(live.remaining().unwrap() > Duration::from_secs(59));
        // A deadline already past: not leading, whatever the epoch.
        live.grant(4, now.saturating_sub(1));
        assert_eq!(live.leads(), None);
        assert_eq!(live.remaining(), None);
        live.grant(5, now + 60_000_000_000);
        live.lose();
        assert_eq!(live.leads(), None);
    }

    #[test]
    fn a_node_is_alive_until_its_heartbeat_is_too_old() {
        let live = Liveness::default();
        assert!(!live.alive());
        let now = boottime_ns();
        live.beat(now + 60_000_000_000);
        assert!(live.alive());
        // An older beat's deadline never shortens a newer one's.
        live.beat(now.saturating_sub(1));
        assert!(live.alive());
    }
}
