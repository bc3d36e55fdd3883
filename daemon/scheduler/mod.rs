//! The scheduler's pure parts: the timer (the next fire of every schedule in a priority
//! queue), the rule deciding which due slots run ([`slots`]), and the detection of
//! wall-clock jumps ([`ClockWatch`]). The engine owns the clock and the loop; these types
//! take `now` as an argument, so tests use any instant.

pub mod slots;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A schedule of a deployment: (deployment name, schedule id), shared: the timer's queue,
/// its maps and the engine's each hold a pointer to one copy, not a copy of both names
/// (10,000 schedules kept about 3 MiB of copies). Maps keyed by it are looked up with a
/// plain `&(String, String)` too.
pub type Key = Arc<(String, String)>;

/// The next fire time of every schedule, ordered by when it is to be armed (its fire time,
/// less the lead it asked for). Replacing a schedule's time leaves a stale heap entry
/// behind; it is recognised and dropped when it surfaces.
#[derive(Debug, Default)]
pub struct Timer {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, Key)>>,
    /// Each schedule's (fire time, arm time).
    next: HashMap<Key, (DateTime<Utc>, DateTime<Utc>)>,
    /// How many schedules are armed at each pending instant.
    crowds: BTreeMap<DateTime<Utc>, usize>,
    /// The schedules whose next fire was set, cleared or popped since [`Timer::touched`].
    touched: HashSet<Key>,
    /// The schedules known to the timer without a next fire (cleared, or popped as due
    /// and not set again), until set or forgotten.
    unarmed: HashSet<Key>,
}

impl Timer {
    /// Sets (or clears, with `None`) when `key` fires next.
    pub fn set(&mut self, key: Key, at: Option<DateTime<Utc>>) {
        self.set_ahead(key, at, chrono::Duration::zero());
    }

    /// Sets when `key` fires next, to be armed `lead` before that (a process started
    /// ahead of its slot).
    pub fn set_ahead(&mut self, key: Key, at: Option<DateTime<Utc>>, lead: chrono::Duration) {
        if !self.touched.contains(&key) {
            self.touched.insert(key.clone());
        }
        let old = match at {
            Some(at) => {
                self.unarmed.remove(&key);
                let arm = at - lead;
                *self.crowds.entry(arm).or_default() += 1;
                let old = self.next.insert(key.clone(), (at, arm));
                self.heap.push(Reverse((arm, key)));
                old
            }
            None => {
                let old = self.next.remove(&key);
                self.unarmed.insert(key);
                old
            }
        };
        if let Some((_, arm)) = old {
            self.leave(arm);
        }
    }

    /// One schedule less is armed at `at`.
    fn leave(&mut self, at: DateTime<Utc>) {
        if let Some(n) = self.crowds.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.crowds.remove(&at);
            }
        }
    }

    /// How many schedules are armed at the earliest pending instant (a burst due at once).
    pub fn earliest_crowd(&self) -> usize {
        self.crowds.values().next().copied().unwrap_or(0)
    }

    /// Forgets `key` altogether (its schedule left): no next fire, not unarmed either.
    pub fn forget(&mut self, key: &(String, String)) {
        let known = match self.next.remove_entry(key) {
            Some((known, (_, arm))) => {
                self.leave(arm);
                self.unarmed.remove(key);
                Some(known)
            }
            None => self.unarmed.take(key),
        };
        self.touched
            .insert(known.unwrap_or_else(|| Arc::new(key.clone())));
    }

    /// The schedules without a next fire that were not forgotten.
    pub fn unarmed(&self) -> impl Iterator<Item = &Key> {
        self.unarmed.iter()
    }

    /// The schedules whose next fire may have changed since the last call.
    pub fn touched(&mut self) -> HashSet<Key> {
        std::mem::take(&mut self.touched)
    }

    /// When `key` fires next.
    pub fn next_of(&self, key: &(String, String)) -> Option<DateTime<Utc>> {
        self.next.get(key).map(|(at, _)| *at)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.next.keys()
    }

    /// The earliest pending arm time.
    pub fn earliest(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if self.next.get(key).map(|(_, arm)| arm) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every schedule to be armed by `now` (arm time ≤ now), earliest
    /// first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<Key> {
        let mut due = Vec::new();
        while let Some(at) = self.earliest() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.heap.pop() {
                if let Some((_, arm)) = self.next.remove(&key) {
                    self.leave(arm);
                }
                self.touched.insert(key.clone());
                self.unarmed.insert(key.clone());
                due.push(key);
            }
        }
        due
    }
}

/// Notices the wall clock moving differently from the monotonic clock: a suspend/resume,
/// or an NTP or manual step. Slots passed over that way are handled like downtime.
#[derive(Debug, Clone, Copy)]
pub struct ClockWatch {
    wall: DateTime<Utc>,
    mono: Instant,
}

/// How far the wall clock jumped beyond what the monotonic clock saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jump {
    Forward(Duration),
    Backward(Duration),
}

/// Differences below this are timer jitter, not jumps.
const JUMP_THRESHOLD: Duration = Duration::from_secs(2);

impl ClockWatch {
    pub fn new(wall: DateTime<Utc>, mono: Instant) -> ClockWatch {
        ClockWatch { wall, mono }
    }

    /// Records an observation of both clocks; returns the jump since the last one, if any.
    pub fn observe(&mut self, wall: DateTime<Utc>, mono: Instant) -> Option<Jump> {
        let mono_elapsed = mono.saturating_duration_since(self.mono);
        let wall_elapsed = wall - self.wall;
        self.wall = wall;
        self.mono = mono;
        let mono_elapsed = chrono::Duration::from_std(mono_elapsed).ok()?;
        let drift = wall_elapsed - mono_elapsed;
        let threshold = chrono::Duration::from_std(JUMP_THRESHOLD).ok()?;
        if drift > threshold {
            drift.to_std().ok().map(Jump::Forward)
        } else if drift < -threshold {
            (-drift).to_std().ok().map(Jump::Backward)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn key(d: &str) -> Key {
        Arc::new((d.to_string(), "s".to_string()))
    }

    #[test]
    fn the_timer_yields_due_keys_in_order_and_forgets_replaced_times() {
        let mut timer = Timer::default();
        timer.set(key("b"), Some(t(20)));
        timer.set(key("a"), Some(t(10)));
        timer.set(key("c"), Some(t(30)));
        timer.set(key("c"), Some(t(5))); // replaced: the t(30) entry is stale
        timer.set(key("b"), None);
        assert_eq!(timer.earliest(), Some(t(5)));
        assert_eq!(timer.pop_due(t(15)), vec![key("c"), key("a")]);
        assert_eq!(timer.earliest(), None);
        assert_eq!(timer.pop_due(t(100)), Vec::<Key>::new());
    }

    #[test]
    fn the_timer_counts_the_schedules_due_at_its_earliest_instant() {
        let mut timer = Timer::default();
        assert_eq!(timer.earliest_crowd(), 0);
        for d in ["a", "b", "c"] {
            timer.set(key(d), Some(t(60)));
        }
        timer.set(key("d"), Some(t(120)));
        assert_eq!(timer.earliest_crowd(), 3);
        timer.set(key("c"), Some(t(120))); // moved: one less at t(60)
        timer.set(key("b"), None);
        assert_eq!(timer.earliest_crowd(), 1);
        assert_eq!(timer.pop_due(t(60)), vec![key("a")]);
        assert_eq!(timer.earliest_crowd(), 2);
        timer.pop_due(t(120));
        assert_eq!(timer.earliest_crowd(), 0);
    }

    #[test]
    fn a_schedule_with_a_lead_is_armed_that_much_earlier_and_keeps_its_fire_time() {
        let mut timer = Timer::default();
        timer.set(key("a"), Some(t(10)));
        timer.set_ahead(key("b"), Some(t(12)), chrono::Duration::seconds(5));
        assert_eq!(timer.earliest(), Some(t(7)));
        assert_eq!(timer.next_of(&key("b")), Some(t(12)));
        assert_eq!(timer.pop_due(t(8)), vec![key("b")]);
        assert_eq!(timer.earliest(), Some(t(10)));
    }

    #[test]
    fn jumps_are_told_apart_from_jitter() {
        let start = Instant::now();
        let mut watch = ClockWatch::new(t(0), start);
        assert_eq!(
            watch.observe(t(10), start + Duration::from_millis(9_500)),
            None
        );
        assert_eq!(
            watch.observe(t(3_610), start + Duration::from_secs(20)),
            Some(Jump::Forward(Duration::from_millis(3_589_500)))
        );
        assert_eq!(
            watch.observe(t(3_600), start + Duration::from_secs(30)),
            Some(Jump::Backward(Duration::from_secs(20)))
        );
    }
}
