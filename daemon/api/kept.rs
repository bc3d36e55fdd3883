//! Pages of `GET /api/runs` kept by the connection that read them, and answered again
//! while the store has not changed: a dashboard, a `watch` and a monitoring probe ask for
//! the same newest page again and again, and between two runs' events it is the same.
//!
//! Contract:
//! - A page is kept with the store's version *as read on the same connection before the
//!   page was read* ([`StoreRead::data_version`](crate::store::StoreRead::data_version):
//!   SQLite's `PRAGMA data_version`, which changes when any connection, of this process
//!   or another, commits). It is answered again only while that connection reads the same
//!   version, so a page is never older than the last commit before the request: a change
//!   committed while it was being read changes the version and the page is read anew.
//! - A store that cannot tell its version (PostgreSQL, where other nodes write) keeps
//!   nothing.
//! - At most [`Kept::PAGES`] pages per connection, each at most [`Kept::MAX_BODY`] bytes
//!   (a page of 1,000 runs is read each time): with [`Readers::MAX`](super::readers::Readers::MAX)
//!   connections, at most 2 MiB in all.
//! - The key is the page's canonical query (filter, limit and cursor), so two spellings of
//!   the same query share a page and different queries never do.

use std::collections::VecDeque;

use axum::body::Bytes;

/// The pages one connection keeps, the most recently answered first.
#[derive(Default)]
pub struct Kept {
    pages: VecDeque<Page>,
}

/// An answer: the JSON body, and the last run's id when the page is full (for `Link`).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub body: Bytes,
    pub last: Option<i64>,
}

struct Page {
    key: String,
    version: i64,
    answer: Answer,
}

impl Kept {
    /// Pages kept per connection.
    pub const PAGES: usize = 4;
    /// The largest body kept (50 runs are about 25 KiB).
    pub const MAX_BODY: usize = 64 * 1024;

    /// The page kept for `key` if it was read at `version`. A page of another version is
    /// dropped: it can never be answered again.
    pub fn get(&mut self, key: &str, version: i64) -> Option<Answer> {
        let at = self.pages.iter().position(|p| p.key == key)?;
        let page = self.pages.remove(at)?;
        if page.version != version {
            return None;
        }
        let answer = page.answer.clone();
        self.pages.push_front(page);
        Some(answer)
    }

    /// Keeps `answer` for `key`, read at `version` (the version read before the page).
    pub fn put(&mut self, key: String, version: i64, answer: Answer) {
        if answer.body.len() > Kept::MAX_BODY {
            return;
        }
        self.pages.retain(|p| p.key != key);
        self.pages.truncate(Kept::PAGES - 1);
        self.pages.push_front(Page {
            key,
            version,
            answer,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            body: Bytes::copy_from_slice(text.as_bytes()),
            last: Some(7),
        }
    }

    #[test]
    fn a_page_is_answered_only_at_the_version_it_was_read_at() {
        let mut kept = Kept::default();
        kept.put("a".into(), 3, answer("[1]"));
        assert_eq!(kept.get("a", 3), Some(answer("[1]")));
        assert_eq!(kept.get("b", 3), None);
        assert_eq!(kept.get("a", 4), None);
        // Dropped once seen stale, even if the version came back.
        assert_eq!(kept.get("a", 3), None);
    }

    #[test]
    fn at_most_a_few_small_pages_are_kept_the_least_recent_go_first() {
        let mut kept = Kept::default();
        for key in ["a", "b", "c", "d"] {
            kept.put(key.into(), 1, answer(key));
        }
        assert!(kept.get("a", 1).is_some());
        kept.put("e".into(), 1, answer("e"));
        assert_eq!(kept.pages.len(), Kept::PAGES);
        assert!(
            kept.get("b", 1).is_none(),
            "b was the least recently answered"
        );
        for key in ["a", "c", "d", "e"] {
            assert!(kept.get(key, 1).is_some(), "{key}");
        }
        kept.put("a".into(), 2, answer("a2"));
        assert_eq!(kept.pages.len(), Kept::PAGES);
        assert_eq!(kept.get("a", 2), Some(answer("a2")));
        let big = "x".repeat(Kept::MAX_BODY + 1);
        kept.put("big".into(), 2, answer(&big));
        assert!(kept.get("big", 2).is_none());
    }
}
