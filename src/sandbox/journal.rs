//! The request journal: the newest [`JOURNAL_CAP`] requests, so a long-running sandbox
//! holds bounded memory however many calls it serves.

use std::collections::VecDeque;

use super::RecordedRequest;

/// How many requests the journal keeps (the oldest are dropped first).
pub const JOURNAL_CAP: usize = 10_000;

/// The newest requests, oldest first.
#[derive(Debug)]
pub(crate) struct Journal<T = RecordedRequest> {
    entries: VecDeque<T>,
    cap: usize,
}

impl<T: Clone> Default for Journal<T> {
    fn default() -> Self {
        Self::with_cap(JOURNAL_CAP)
    }
}

impl<T: Clone> Journal<T> {
    fn with_cap(cap: usize) -> Self {
        Journal {
            entries: VecDeque::new(),
            cap,
        }
    }

    /// Records `entry`, dropping the oldest past the cap.
    pub(crate) fn push(&mut self, entry: T) {
        if self.entries.len() >= self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// The kept requests, in arrival order.
    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_entries() {
        let mut j = Journal::with_cap(3);
        for n in 0..10 {
            j.push(n);
        }
        assert_eq!(j.to_vec(), [7, 8, 9]);
        assert!(Journal::<u8>::default().cap == JOURNAL_CAP);
    }
}
