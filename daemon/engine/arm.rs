//! How far ahead of its time a slot is armed: its row committed, its checkout and argv
//! ready, its start handed to a launch thread that releases it on the dot. The lead keeps
//! the database (a commit waits for `fsync`) and process set-up out of the start
//! lateness, so it must cover them as they are *now*: a disk that stalls for 200 ms on
//! `fsync` would make every slot armed 100 ms ahead start late.
//!
//! Contract: the lead is [`ARM_AHEAD`], or twice the slowest of the last
//! [`ArmLead::WINDOW`] commits of claimed slots if that is more, plus [`ARM_PER_SLOT`] for
//! each slot due at the same instant, never more than [`ARM_MOST`]. Pure: it is told how
//! long commits took, and reads no clock.

use std::collections::VecDeque;
use std::time::Duration;

/// The least a slot is armed ahead.
pub const ARM_AHEAD: Duration = Duration::from_millis(100);

/// How much earlier a burst is armed for each slot due at the same instant: claiming and
/// preparing one slot (its row, its log file, its argv and environment) costs the engine
/// up to about this much on a busy 2-core machine (measured with `perf` on a burst of
/// 3,000), so 10,000 slots due at one minute boundary are armed 4.1 s ahead and all of
/// them are ready when it comes.
pub const ARM_PER_SLOT: Duration = Duration::from_micros(400);

/// The most a burst is armed ahead (the longest a claimed row waits for its process).
pub const ARM_MOST: Duration = Duration::from_secs(5);

/// How far ahead of its time a burst of `crowd` slots due at one instant is armed, when
/// commits take no time worth counting.
pub fn arm_lead(crowd: usize) -> Duration {
    lead_from(ARM_AHEAD, crowd)
}

fn lead_from(base: Duration, crowd: usize) -> Duration {
    let per_slot = ARM_PER_SLOT.saturating_mul(u32::try_from(crowd).unwrap_or(u32::MAX));
    base.saturating_add(per_slot).min(ARM_MOST)
}

/// The lead, following how long the store's commits of claimed slots take.
#[derive(Debug, Default)]
pub struct ArmLead {
    /// The newest commit times, oldest first.
    recent: VecDeque<Duration>,
}

impl ArmLead {
    /// How many commits the lead remembers: a stall raises the lead at once, and it comes
    /// back down after this many quick commits.
    pub const WINDOW: usize = 32;

    /// A commit of claimed slots took `took`.
    pub fn observe(&mut self, took: Duration) {
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
    }

    /// How far ahead a burst of `crowd` slots due at one instant is armed now.
    pub fn lead(&self, crowd: usize) -> Duration {
        let slowest = self.recent.iter().max().copied().unwrap_or_default();
        lead_from(ARM_AHEAD.max(slowest.saturating_mul(2)), crowd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slow_commit_raises_the_lead_until_enough_quick_ones_follow() {
        let mut arm = ArmLead::default();
        assert_eq!(arm.lead(1), ARM_AHEAD + ARM_PER_SLOT);
        for _ in 0..10 {
            arm.observe(3 * MS);
        }
        assert_eq!(
            arm.lead(1),
            ARM_AHEAD + ARM_PER_SLOT,
            "quick commits keep the base"
        );
        arm.observe(200 * MS);
        assert_eq!(arm.lead(1), 400 * MS + ARM_PER_SLOT, "twice the stall");
        for _ in 0..ArmLead::WINDOW - 1 {
            arm.observe(3 * MS);
        }
        assert_eq!(arm.lead(1), 400 * MS + ARM_PER_SLOT, "still in the window");
        arm.observe(3 * MS);
        assert_eq!(
            arm.lead(1),
            ARM_AHEAD + ARM_PER_SLOT,
            "the stall left the window"
        );
    }

    #[test]
    fn the_lead_never_passes_the_most() {
        let mut arm = ArmLead::default();
        arm.observe(Duration::from_secs(4));
        assert_eq!(arm.lead(0), ARM_MOST);
        assert_eq!(arm_lead(1_000_000), ARM_MOST);
        assert_eq!(arm_lead(10_000), ARM_AHEAD + 4 * Duration::from_secs(1));
    }
}
