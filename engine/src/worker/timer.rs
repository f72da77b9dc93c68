//! Deadlines as a binary heap with lazy cancellation.
//!
//! A session does not cancel or move its timer: it stores its current deadline and re-arms
//! only when the new deadline is earlier than the one already in the heap. When an entry pops,
//! the owner compares it with its current deadline: passed means the timeout fires, later means
//! it re-arms, and an owner that is gone (a different serial) is ignored. Refreshing a
//! deadline on every read is therefore one store, not a heap operation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a timer entry wakes: a slab key plus the serial of the owner it was armed for, so an
/// entry left behind by a finished session never touches the one reusing its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub key: usize,
    pub serial: u64,
}

/// A min-heap of (deadline, owner).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    pub fn push(&mut self, at: Instant, owner: TimerKey) {
        self.heap.push(Reverse((at, owner)));
    }

    /// The earliest deadline, to bound the next poll.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops one entry whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, k))| k),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The deadline bookkeeping an owner keeps next to its state.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When the owner's current timeout fires.
    pub at: Instant,
    /// The earliest entry this owner has in the heap, if any.
    armed: Option<Instant>,
}

impl Deadline {
    pub fn new(at: Instant) -> Deadline {
        Deadline { at, armed: None }
    }

    /// Pushes a heap entry if the current deadline is earlier than any already armed.
    #[inline]
    pub fn arm(&mut self, timers: &mut Timers, owner: TimerKey) {
        if self.armed.is_none_or(|armed| self.at < armed) {
            timers.push(self.at, owner);
            self.armed = Some(self.at);
        }
    }

    /// Called when the owner's heap entry popped: true if the timeout is due now; otherwise
    /// the entry is re-armed at the (later) current deadline.
    pub fn on_pop(&mut self, now: Instant, timers: &mut Timers, owner: TimerKey) -> bool {
        self.armed = None;
        if self.at <= now {
            true
        } else {
            self.arm(timers, owner);
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::time::Duration;

    fn owner(key: usize) -> TimerKey {
        TimerKey { key, serial: 1 }
    }

    #[test]
    fn pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.push(t0 + Duration::from_millis(30), owner(3));
        timers.push(t0 + Duration::from_millis(10), owner(1));
        timers.push(t0 + Duration::from_millis(20), owner(2));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(timers.pop_due(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(timers.pop_due(now), Some(owner(1)));
        assert_eq!(timers.pop_due(now), Some(owner(2)));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn counts_what_is_armed() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        assert!(timers.is_empty());
        assert_eq!((timers.len(), timers.next_deadline()), (0, None));
        for key in 0..3 {
            timers.push(t0, owner(key));
        }
        assert!(!timers.is_empty());
        assert_eq!(timers.len(), 3);
        while timers.pop_due(t0).is_some() {}
        assert!(timers.is_empty());
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn an_entry_is_due_at_its_deadline() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.push(t0, owner(1));
        assert_eq!(timers.pop_due(t0), Some(owner(1)));
        let mut d = Deadline::new(t0);
        assert!(d.on_pop(t0, &mut timers, owner(1)));
        assert!(timers.is_empty(), "a due timeout is not re-armed");
    }

    #[test]
    fn rearming_the_same_deadline_costs_no_entry() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut d = Deadline::new(t0 + Duration::from_secs(1));
        d.arm(&mut timers, owner(7));
        d.arm(&mut timers, owner(7));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn later_deadline_rearms_lazily_and_earlier_pushes() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut d = Deadline::new(t0 + Duration::from_secs(1));
        d.arm(&mut timers, owner(7));
        // Moving the deadline later costs no heap entry.
        d.at = t0 + Duration::from_secs(5);
        d.arm(&mut timers, owner(7));
        assert_eq!(timers.len(), 1);
        // The first entry pops at 1 s: not due, re-armed at 5 s.
        let at1 = t0 + Duration::from_secs(1);
        assert_eq!(timers.pop_due(at1), Some(owner(7)));
        assert!(!d.on_pop(at1, &mut timers, owner(7)));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(5)));
        // Moving it earlier pushes a new entry.
        d.at = t0 + Duration::from_secs(2);
        d.arm(&mut timers, owner(7));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(2)));
        let at2 = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(at2), Some(owner(7)));
        assert!(d.on_pop(at2, &mut timers, owner(7)));
    }
}
