//! The TLS session-ticket keys every worker shares, made and rotated here.
//!
//! Workers must encrypt tickets under the same key for a ticket one worker issued to resume on
//! another, and on a worker restarted since. So the keys are made once at start, given to each
//! worker before its state replay (`set_ticket_keys`, a channel-only request), and rotated every
//! [`ROTATE_EVERY`]: the new key issues tickets, the one before it still decrypts them (a
//! ticket's lifetime is no longer than a rotation period), and the key before that is
//! forgotten, which bounds what a stolen key could decrypt.
//!
//! A `weir upgrade` hands the keys to the new main process ([`TicketRotation::handed_over`],
//! [`TicketRotation::resume`]) with the time left until the next rotation: tickets issued
//! before the upgrade still resume after it, and upgrading often never keeps a key issuing
//! tickets for longer than [`ROTATE_EVERY`].

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

    /// Takes over the keys a previous main process handed over, rotating `rotate_in` from
    /// `now` as it would have.
    pub fn resume(
        keys: &proto::TicketKeys,
        now: Instant,
        rotate_in: Duration,
        every: Duration,
    ) -> Result<TicketRotation, TicketKeyError> {
        Ok(TicketRotation {
            keys: TicketKeys::from_wire(keys)?,
            next: now + rotate_in.min(every),
            every,
        })
    }

    /// The keys as workers receive them.
    pub fn wire(&self) -> proto::TicketKeys {
        self.keys.to_wire()
    }

    /// What a new main process needs to go on where this one stops: the keys, and how long
    /// until they rotate (from `now`).
    pub fn handed_over(&self, now: Instant) -> (proto::TicketKeys, Duration) {
        (
            self.keys.to_wire(),
            self.next.saturating_duration_since(now),
        )
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

    #[test]
    fn a_successor_keeps_the_keys_and_the_rotation_time() {
        let t0 = Instant::now();
        let every = Duration::from_secs(60);
        let mut old = TicketRotation::start(t0, every).unwrap();
        let rotated = old.rotate_if_due(t0 + every).unwrap().unwrap();
        // Handed over 20 s into the second period: 40 s are left.
        let (keys, left) = old.handed_over(t0 + every + Duration::from_secs(20));
        assert_eq!(keys, rotated);
        assert_eq!(left, Duration::from_secs(40));
        let t1 = t0 + Duration::from_secs(500);
        let mut new = TicketRotation::resume(&keys, t1, left, every).unwrap();
        assert_eq!(new.wire(), rotated);
        assert!(new.rotate_if_due(t1 + Duration::from_secs(39)).is_none());
        let next = new.rotate_if_due(t1 + left).unwrap().unwrap();
        assert_eq!(next.previous, rotated.current);
        // A time left longer than a period (a successor with a shorter period) is cut to one.
        let mut short = TicketRotation::resume(&keys, t1, every * 10, every).unwrap();
        assert!(short.rotate_if_due(t1 + every).is_some());
        let bad = proto::TicketKeys::default();
        assert!(TicketRotation::resume(&bad, t1, left, every).is_err());
    }
}
