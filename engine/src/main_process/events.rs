//! The event log: a bounded ring of recent events with increasing sequence numbers, so a
//! subscriber that reconnects can resume from the last sequence it saw and miss nothing that is
//! still retained.

use std::collections::VecDeque;

use weir_schema::proto;

/// Events kept for subscribers that resume.
pub const DEFAULT_CAPACITY: usize = 1024;

/// The ring of retained events.
#[derive(Debug)]
pub struct EventLog {
    ring: VecDeque<proto::Event>,
    capacity: usize,
    next_sequence: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            ring: VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY)),
            capacity: capacity.max(1),
            next_sequence: 1,
        }
    }

    /// Gives `event` the next sequence number, retains it and returns it as stored.
    pub fn push(&mut self, mut event: proto::Event) -> proto::Event {
        event.sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(event.clone());
        event
    }

    /// The retained events after `sequence`, oldest first, and whether some events after it
    /// were already dropped from the ring (the subscriber missed them).
    pub fn since(&self, sequence: u64) -> (Vec<proto::Event>, bool) {
        let oldest = self.ring.front().map_or(self.next_sequence, |e| e.sequence);
        let gap = sequence.saturating_add(1) < oldest;
        let events = self
            .ring
            .iter()
            .filter(|e| e.sequence > sequence)
            .cloned()
            .collect();
        (events, gap)
    }

    /// The sequence the last event got (0 before any).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }
}

/// An event of `kind` with nothing else filled in.
pub fn event(kind: proto::EventKind) -> proto::Event {
    proto::Event {
        kind: kind as i32,
        ..proto::Event::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sequences_increase_and_resume_skips_seen_events() {
        let mut log = EventLog::new(4);
        for _ in 0..3 {
            log.push(event(proto::EventKind::StateChanged));
        }
        let (events, gap) = log.since(1);
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(!gap);
        assert_eq!(log.last_sequence(), 3);
    }

    #[test]
    fn the_ring_is_bounded_and_reports_gaps() {
        let mut log = EventLog::new(2);
        for _ in 0..5 {
            log.push(event(proto::EventKind::StateChanged));
        }
        let (events, gap) = log.since(1);
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [4, 5]
        );
        assert!(gap);
        let (events, gap) = log.since(3);
        assert_eq!(events.len(), 2);
        assert!(!gap);
    }
}
