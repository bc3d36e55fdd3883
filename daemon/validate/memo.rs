//! Each question asked once per run: a [`View`] that asks the repository once (a thousand
//! deployments naming one entrypoint cost one look at its file and one read of its text),
//! and [`Recurrences`], each distinct rrule parsed once.
//!
//! Contract: every answer is the one the uncached question gives (the repository's first
//! one: it is taken not to change during a run); only how often it is worked out changes.
//! Pure, like [`super::locate`]: the caching lives in memory for the run (or one thread of
//! it) and is dropped with it.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::schedule::{Anchor, Schedule, ScheduleError, Tz};

use super::locate::{self, Defines, Entry, View};

/// The wrapped view's answers, kept as they are given.
pub struct MemoView<'a> {
    view: &'a dyn View,
    entries: RefCell<HashMap<String, Option<Entry>>>,
    /// Whether the file (first) defines the function (second).
    defines: RefCell<HashMap<(String, String), Defines>>,
}

impl<'a> MemoView<'a> {
    pub fn new(view: &'a dyn View) -> MemoView<'a> {
        MemoView {
            view,
            entries: RefCell::default(),
            defines: RefCell::default(),
        }
    }

    /// Whether the Python file at `path` defines the function `func` ([`locate::defines`]
    /// on its text), or why that cannot be told.
    pub fn defines(&self, path: &str, func: &str) -> Defines {
        let key = (path.to_string(), func.to_string());
        if let Some(verdict) = self.defines.borrow().get(&key) {
            return verdict.clone();
        }
        let verdict = match self.view.read(path) {
            Some(bytes) => locate::defines(&bytes, func),
            None => Defines::CannotTell("the file cannot be read".into()),
        };
        self.defines.borrow_mut().insert(key, verdict.clone());
        verdict
    }
}

impl View for MemoView<'_> {
    fn entry(&self, path: &str) -> Option<Entry> {
        if let Some(entry) = self.entries.borrow().get(path) {
            return *entry;
        }
        let entry = self.view.entry(path);
        self.entries.borrow_mut().insert(path.to_string(), entry);
        entry
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.view.read(path)
    }

    fn for_another_thread(&self) -> Option<Box<dyn View + Send + '_>> {
        self.view.for_another_thread()
    }

    fn origin(&self) -> locate::Origin {
        self.view.origin()
    }
}

/// The rrule schedules parsed so far: a thousand deployments sharing a few rules parse
/// each rule once ([`Schedule::rrule`] costs microseconds: the `rrule` crate's parser).
#[derive(Default)]
pub struct Recurrences {
    parsed: RefCell<HashMap<RecurrenceKey, Result<Schedule, ScheduleError>>>,
}

/// What an rrule schedule is parsed from: its text, zone and anchor.
type RecurrenceKey = (String, Tz, Option<Anchor>);

impl Recurrences {
    /// [`Schedule::rrule`] of the same arguments.
    pub fn schedule(
        &self,
        text: &str,
        tz: Tz,
        anchor: Option<Anchor>,
    ) -> Result<Schedule, ScheduleError> {
        let key = (text.to_string(), tz, anchor);
        if let Some(parsed) = self.parsed.borrow().get(&key) {
            return parsed.clone();
        }
        let parsed = Schedule::rrule(text, tz, anchor);
        self.parsed.borrow_mut().insert(key, parsed.clone());
        parsed
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A one-file repository that counts the questions it is asked.
    struct Counting {
        entries: Cell<usize>,
        reads: Cell<usize>,
    }

    impl View for Counting {
        fn entry(&self, path: &str) -> Option<Entry> {
            self.entries.set(self.entries.get() + 1);
            Some(match path {
                "flows/etl.py" => Entry::File,
                "flows" => Entry::Dir,
                _ => Entry::Missing,
            })
        }
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            self.reads.set(self.reads.get() + 1);
            (path == "flows/etl.py").then(|| b"def daily(x):\n    pass\n".to_vec())
        }
    }

    #[test]
    fn each_question_reaches_the_view_once_with_the_same_answer() {
        let inner = Counting {
            entries: Cell::new(0),
            reads: Cell::new(0),
        };
        let memo = MemoView::new(&inner);
        for _ in 0..3 {
            assert_eq!(memo.entry("flows/etl.py"), Some(Entry::File));
            assert_eq!(memo.entry("flows"), Some(Entry::Dir));
            assert_eq!(memo.entry("nope.py"), Some(Entry::Missing));
            assert_eq!(memo.defines("flows/etl.py", "daily"), Defines::Yes);
            assert_eq!(memo.defines("flows/etl.py", "weekly"), Defines::No);
            assert!(matches!(
                memo.defines("gone.py", "daily"),
                Defines::CannotTell(reason) if reason == "the file cannot be read"
            ));
        }
        assert_eq!(inner.entries.get(), 3);
        assert_eq!(inner.reads.get(), 3);
    }

    #[test]
    fn an_rrule_is_parsed_once_per_text_zone_and_anchor_with_the_same_answer() {
        let memo = Recurrences::default();
        let rule = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0";
        let after = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let next = |s: Result<Schedule, ScheduleError>| s.unwrap().next_after(after).map(|f| f.at);
        for tz in [Tz::UTC, Tz::Europe__Madrid, Tz::UTC] {
            assert_eq!(
                next(memo.schedule(rule, tz, None)),
                next(Schedule::rrule(rule, tz, None))
            );
        }
        assert_ne!(
            next(memo.schedule(rule, Tz::UTC, None)),
            next(memo.schedule(rule, Tz::Europe__Madrid, None)),
            "a zone is part of what was parsed"
        );
        let bad = memo.schedule("FREQ=SOMETIMES", Tz::UTC, None);
        assert_eq!(
            bad.unwrap_err(),
            Schedule::rrule("FREQ=SOMETIMES", Tz::UTC, None).unwrap_err()
        );
        assert_eq!(memo.parsed.borrow().len(), 3);
    }
}
