//! Which idle keep-alive connections to close at the connection cap to make room for new
//! clients: the oldest idle ones first, as nginx does (its "reusable" connection queue)
//! before anyone gets a 503.
//!
//! Nothing is kept per request for this: a session notes when it last went idle (one store,
//! on the worker's request count), and only a worker at its cap looks for the oldest idle sessions, in one
//! pass over its sessions, closing a batch of them at once ([`batch`]: nginx's rule), so the
//! pass is paid once per batch of new clients, not once per client.

/// Most idle connections closed by one pass at the cap.
pub const BATCH: usize = 32;

/// How many of `idle` idle connections one pass closes: an eighth of them, at least one and
/// at most [`BATCH`] (nginx's `ngx_drain_connections`).
pub fn batch(idle: usize) -> usize {
    (idle / 8).clamp(1, BATCH)
}

/// Keeps the `n` oldest of `idle` (when each went idle, its session key), oldest first.
pub fn oldest(idle: &mut Vec<(u64, usize)>, n: usize) {
    if idle.len() > n {
        if n == 0 {
            idle.clear();
            return;
        }
        idle.select_nth_unstable(n - 1);
        idle.truncate(n);
    }
    idle.sort_unstable();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_oldest_come_first_and_no_more_than_asked() {
        let at = |s: u64| s * 100;
        let mut idle = vec![
            (at(5), 50),
            (at(1), 10),
            (at(9), 90),
            (at(3), 30),
            (at(7), 70),
        ];
        oldest(&mut idle, 3);
        assert_eq!(idle, vec![(at(1), 10), (at(3), 30), (at(5), 50)]);
        let mut few = vec![(at(2), 2), (at(1), 1)];
        oldest(&mut few, BATCH);
        assert_eq!(few, vec![(at(1), 1), (at(2), 2)]);
        assert_eq!(
            (batch(0), batch(2), batch(80), batch(10_000)),
            (1, 1, 10, BATCH)
        );
        let mut none = vec![(at(1), 1)];
        oldest(&mut none, 0);
        assert!(none.is_empty());
    }
}
