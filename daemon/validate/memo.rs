//! A [`View`] that asks the repository each question once per run: a thousand deployments
//! naming one entrypoint cost one look at its file and one read of its text.
//!
//! Contract: every answer is the wrapped view's answer to the same question (its first
//! one: the repository is taken not to change during a run); only how often the wrapped
//! view is asked changes. Pure, like [`super::locate`]: the caching lives in memory for
//! the run and is dropped with it.

use std::cell::RefCell;
use std::collections::HashMap;

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
}
