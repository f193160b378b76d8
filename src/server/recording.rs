//! A bounded, ordered record of what agents reported: the embedded server
//! keeps the newest `limit` entries and counts the ones it dropped, so a
//! long-running server does not grow with every call.

use std::collections::VecDeque;

/// Default number of entries each recording keeps (per kind of record).
pub const DEFAULT_RECORD_LIMIT: usize = 10_000;

/// The newest `limit` entries, oldest first, and how many older ones were dropped.
#[derive(Debug)]
pub(crate) struct Recording<T> {
    items: VecDeque<T>,
    limit: usize,
    dropped: u64,
}

impl<T> Default for Recording<T> {
    fn default() -> Self {
        Recording::new(DEFAULT_RECORD_LIMIT)
    }
}

impl<T> Recording<T> {
    pub(crate) fn new(limit: usize) -> Self {
        Recording {
            items: VecDeque::new(),
            limit,
            dropped: 0,
        }
    }

    /// Appends `item`, dropping the oldest entries past the limit.
    pub(crate) fn push(&mut self, item: T) {
        self.items.push_back(item);
        self.trim();
    }

    /// Changes the limit; entries past a lower limit are dropped (and counted) at once.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.trim();
    }

    fn trim(&mut self) {
        while self.items.len() > self.limit {
            self.items.pop_front();
            self.dropped += 1;
        }
        // Give memory back after a burst (or a lowered limit): a VecDeque
        // never shrinks by itself.
        if self.items.capacity() > 64 && self.items.capacity() > 4 * self.items.len().max(self.limit.min(1 << 16)) {
            self.items.shrink_to(self.items.len().max(16));
        }
    }

    /// Entries dropped so far to stay within the limit.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept entries, oldest first, cloned.
    pub(crate) fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.items.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_and_counts_the_dropped_ones() {
        let mut r = Recording::new(3);
        for i in 0..10 {
            r.push(i);
        }
        assert_eq!(r.to_vec(), [7, 8, 9]);
        assert_eq!(r.dropped(), 7);
        r.set_limit(1);
        assert_eq!(r.to_vec(), [9]);
        assert_eq!(r.dropped(), 9);
        r.set_limit(0);
        r.push(10);
        assert!(r.to_vec().is_empty());
        assert_eq!(r.dropped(), 11);
    }

    #[test]
    fn memory_is_given_back_after_a_lowered_limit() {
        let mut r = Recording::new(100_000);
        for i in 0..100_000 {
            r.push(i);
        }
        r.set_limit(10);
        assert!(r.items.capacity() < 1_000, "capacity {}", r.items.capacity());
    }
}
