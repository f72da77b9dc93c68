//! The TLS session-ticket keys every worker shares, made and rotated here.
//!
//! Workers must encrypt tickets under the same key for a ticket one worker issued to resume on
//! another, and on a worker restarted since. So the keys are made once at start, given to each
//! worker before its state replay (`set_ticket_keys`, a channel-only request), and rotated every
//! [`ROTATE_EVERY`]: the new key issues tickets, the one before it still decrypts them (a
//! ticket's lifetime is no longer than a rotation period), and the key before that is
//! forgotten, which bounds what a stolen key could decrypt.

use std::time::{Duration, Instant};

use weir_schema::proto;

use crate::worker::tls::{TicketKey, TicketKeyError, TicketKeys};

/// How long a key issues tickets.
pub const ROTATE_EVERY: Duration = Duration::from_secs(12 * 3600);

/// The current keys and when they rotate next.
#[derive(Debug)]
pub struct TicketRotation {
    keys: TicketKeys,
    next: Instant,
    every: Duration,
}

impl TicketRotation {
    /// Fresh keys, rotating every `every` from `now`.
    pub fn start(now: Instant, every: Duration) -> Result<TicketRotation, TicketKeyError> {
        let mut keys = TicketKeys::new(TicketKey::generate()?);
        // A ticket outlives its key's issuing period by at most one period, while it is the
        // previous key.
        keys.lifetime = keys.lifetime.min(every);
        Ok(TicketRotation {
            keys,
            next: now + every,
            every,
        })
    }

    /// The keys as workers receive them.
    pub fn wire(&self) -> proto::TicketKeys {
        self.keys.to_wire()
    }

    /// Rotates if due; returns the new keys to send then.
    pub fn rotate_if_due(
        &mut self,
        now: Instant,
    ) -> Option<Result<proto::TicketKeys, TicketKeyError>> {
        if now < self.next {
            return None;
        }
        self.next = now + self.every;
        Some(TicketKey::generate().map(|next| {
            self.keys = self.keys.rotated(next);
            self.keys.to_wire()
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_key_and_forgets_the_one_before() {
        let t0 = Instant::now();
        let every = Duration::from_secs(60);
        let mut rotation = TicketRotation::start(t0, every).unwrap();
        let first = rotation.wire();
        assert!(rotation.rotate_if_due(t0 + every / 2).is_none());
        let second = rotation.rotate_if_due(t0 + every).unwrap().unwrap();
        assert_ne!(second.current, first.current);
        assert_eq!(second.previous, first.current);
        assert!(rotation.rotate_if_due(t0 + every + every / 2).is_none());
        let third = rotation.rotate_if_due(t0 + every * 2).unwrap().unwrap();
        assert_eq!(third.previous, second.current);
        assert_ne!(third.previous, first.current);
        assert_eq!(third.lifetime_ms, 60_000);
    }
}
