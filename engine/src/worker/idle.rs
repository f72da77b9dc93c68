//! Idle keep-alive connections, oldest first: the ones closed at the connection cap to make
//! room for a new client, as nginx does (its "reusable" connection queue) before anyone gets a
//! 503.
//!
//! A session marks itself idle each time it waits for its next request with nothing held,
//! and unmarks when bytes come. The queue is lazy: an entry whose session since left idleness
//! (its mark changed) is skipped when met, and the queue is compacted when stale entries
//! outnumber live ones, so it stays within a constant factor of the idle sessions.

use std::collections::VecDeque;

/// Who an entry is for, and the mark it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleEntry {
    pub key: usize,
    pub serial: u64,
    pub mark: u32,
}

/// The idle sessions of one worker, oldest first.
#[derive(Debug, Default)]
pub struct IdleQueue {
    queue: VecDeque<IdleEntry>,
    next_mark: u32,
    /// Sessions marked idle now.
    idle: usize,
}

impl IdleQueue {
    pub fn new() -> IdleQueue {
        IdleQueue::default()
    }

    /// Sessions marked idle now.
    pub fn len(&self) -> usize {
        self.idle
    }

    pub fn is_empty(&self) -> bool {
        self.idle == 0
    }

    /// Marks session `key` idle (its `mark`, 0 when not idle, is set); nothing if it is already.
    pub fn mark(&mut self, key: usize, serial: u64, mark: &mut u32) {
        if *mark != 0 {
            return;
        }
        // Marks wrap after 2^32 - 1 (0 is "not idle"); an entry that old is long compacted
        // away, so no stale entry can be taken for a session's current mark.
        self.next_mark = self.next_mark.checked_add(1).unwrap_or(1);
        *mark = self.next_mark;
        self.idle += 1;
        self.queue.push_back(IdleEntry {
            key,
            serial,
            mark: *mark,
        });
    }

    /// Session with `mark` is no longer idle (or is gone).
    pub fn unmark(&mut self, mark: &mut u32) {
        if *mark != 0 {
            *mark = 0;
            self.idle -= 1;
        }
    }

    /// The oldest entry still idle, taken off the queue; `current` says whether an entry's
    /// session still holds that mark.
    pub fn pop_oldest(&mut self, current: impl Fn(&IdleEntry) -> bool) -> Option<IdleEntry> {
        while let Some(entry) = self.queue.pop_front() {
            if current(&entry) {
                return Some(entry);
            }
        }
        None
    }

    /// Drops stale entries once they outnumber the live ones.
    pub fn compact(&mut self, current: impl Fn(&IdleEntry) -> bool) {
        if self.queue.len() > 2 * self.idle + 64 {
            self.queue.retain(current);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_oldest_still_idle_comes_first_and_stale_entries_are_skipped() {
        let mut q = IdleQueue::new();
        let mut marks = [0u32; 3];
        for (key, mark) in marks.iter_mut().enumerate() {
            q.mark(key, 1, mark);
        }
        // Marking again changes nothing: it keeps its place.
        q.mark(0, 1, &mut marks[0]);
        assert_eq!(q.len(), 3);
        // Session 0 gets a request, then goes idle again: now it is the newest.
        q.unmark(&mut marks[0]);
        q.mark(0, 1, &mut marks[0]);
        let current = |m: &[u32; 3]| {
            let m = *m;
            move |e: &IdleEntry| m[e.key] == e.mark
        };
        let first = q.pop_oldest(current(&marks)).unwrap();
        assert_eq!(first.key, 1);
        q.unmark(&mut marks[1]);
        assert_eq!(q.pop_oldest(current(&marks)).unwrap().key, 2);
        q.unmark(&mut marks[2]);
        assert_eq!(q.pop_oldest(current(&marks)).unwrap().key, 0);
        q.unmark(&mut marks[0]);
        assert!(q.pop_oldest(current(&marks)).is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn stale_entries_are_compacted_away() {
        let mut q = IdleQueue::new();
        let mut mark = 0;
        for _ in 0..1000 {
            q.mark(7, 1, &mut mark);
            q.unmark(&mut mark);
        }
        q.mark(7, 1, &mut mark);
        let live = mark;
        q.compact(|e| e.mark == live);
        assert_eq!(q.queue.len(), 1);
    }
}
