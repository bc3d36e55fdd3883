//! How far ahead of its time a slot is armed: its row committed, its checkout and argv
//! ready, its start handed to a launch thread that releases it on the dot. The lead keeps
//! the database (a commit waits for `fsync`) and process set-up out of the start
//! lateness, so it must cover them as they are *now*: a disk that stalls for 200 ms on
//! `fsync` would make every slot armed 100 ms ahead start late.
//!
//! Contract: the lead is [`ARM_AHEAD`], or twice the slowest commit of claims (a tick's
//! due slots, an apply's planning: `engine/batch.rs`) of the last [`ArmLead::MEMORY`] if
//! that is more, plus [`ARM_PER_SLOT`] for each slot due at the
//! same instant, never more than [`ARM_MOST`]. Pure: it is told when commits ended and how
//! long they took, and what time it is; it reads no clock.
//!
//! Why minutes, not the last few commits: a virtual disk stalls for a few hundred
//! milliseconds every few minutes. A lead that forgot a stall after the next quick commits
//! was back at 100 ms when the next stall came, and that slot started late (measured:
//! 1 slot in 100 late by 40 to 400 ms, each one a commit that waited for `fsync`). Once a
//! disk has stalled, slots are armed ahead of the stall it showed until it has been quick
//! for [`ArmLead::MEMORY`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

/// The lead, following how long the store's commits of claims take.
#[derive(Debug, Default)]
pub struct ArmLead {
    /// Commits of the last [`ArmLead::MEMORY`] (when each ended, how long it took) that
    /// no later commit took as long as: the slowest is in front, and the queue stays short
    /// (a commit drops every quicker one before it).
    slowest: VecDeque<(Instant, Duration)>,
}

impl ArmLead {
    /// How long a slow commit keeps the lead up: a stall raises it at once, and it comes
    /// back down after this long without one.
    pub const MEMORY: Duration = Duration::from_secs(15 * 60);

    /// A commit of claims that ended at `at` took `took`.
    pub fn observe(&mut self, at: Instant, took: Duration) {
        while self.slowest.back().is_some_and(|(_, t)| *t <= took) {
            self.slowest.pop_back();
        }
        self.slowest.push_back((at, took));
    }

    /// How far ahead a burst of `crowd` slots due at one instant is armed at `now`; the
    /// commits older than [`ArmLead::MEMORY`] are forgotten here.
    pub fn lead(&mut self, now: Instant, crowd: usize) -> Duration {
        while self
            .slowest
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > Self::MEMORY)
        {
            self.slowest.pop_front();
        }
        let slowest = self.slowest.front().map_or(Duration::ZERO, |(_, t)| *t);
        lead_from(ARM_AHEAD.max(slowest.saturating_mul(2)), crowd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slow_commit_raises_the_lead_until_it_is_older_than_the_memory() {
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut arm = ArmLead::default();
        assert_eq!(arm.lead(t0, 1), ARM_AHEAD + ARM_PER_SLOT);
        for i in 0..10 {
            arm.observe(t0 + i * sec, 3 * MS);
        }
        assert_eq!(
            arm.lead(t0 + 10 * sec, 1),
            ARM_AHEAD + ARM_PER_SLOT,
            "quick commits keep the base"
        );
        let stall = t0 + 11 * sec;
        arm.observe(stall, 200 * MS);
        assert_eq!(
            arm.lead(stall, 1),
            400 * MS + ARM_PER_SLOT,
            "twice the stall"
        );
        // A thousand quick commits after it, a second apart: the stall is remembered.
        for i in 1..=1000 {
            arm.observe(stall + i * sec, 3 * MS);
        }
        assert_eq!(
            arm.lead(stall + ArmLead::MEMORY, 1),
            400 * MS + ARM_PER_SLOT,
            "still remembered"
        );
        // A smaller stall later outlives the first one.
        arm.observe(stall + 600 * sec, 120 * MS);
        assert_eq!(
            arm.lead(stall + ArmLead::MEMORY + sec, 1),
            240 * MS + ARM_PER_SLOT,
            "the first stall is forgotten, the second is not"
        );
        assert_eq!(
            arm.lead(stall + 600 * sec + ArmLead::MEMORY + sec, 1),
            ARM_AHEAD + ARM_PER_SLOT,
            "both forgotten"
        );
        assert!(
            arm.slowest.len() <= 3,
            "quicker commits are not kept: {}",
            arm.slowest.len()
        );
    }

    #[test]
    fn the_lead_never_passes_the_most() {
        let mut arm = ArmLead::default();
        let now = Instant::now();
        arm.observe(now, Duration::from_secs(4));
        assert_eq!(arm.lead(now, 0), ARM_MOST);
        assert_eq!(arm_lead(1_000_000), ARM_MOST);
        assert_eq!(arm_lead(10_000), ARM_AHEAD + 4 * Duration::from_secs(1));
    }
}
