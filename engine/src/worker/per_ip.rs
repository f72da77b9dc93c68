//! Connections per client address, for a listener's `max_connections_per_ip`.
//!
//! A listener with the limit keeps a [`PerIp`] table; each connection it accepts holds an
//! [`IpSlot`], which gives its count back when dropped, so every way a session ends (closed,
//! refused mid-handshake, torn down at exit) gives it back without anyone having to remember.
//! The table only holds addresses with a connection open. Counts are per worker: the kernel
//! spreads one address's connections over the workers, so a proxy of N workers lets one
//! address hold up to N times the limit (nginx's `limit_conn` shares its counts between workers
//! in shared memory; Weir's workers share nothing).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

/// Open connections by client address, for one listener of one worker.
#[derive(Debug, Clone, Default)]
pub struct PerIp {
    counts: Rc<RefCell<HashMap<IpAddr, u32>>>,
}

impl PerIp {
    pub fn new() -> PerIp {
        PerIp::default()
    }

    /// A slot for one more connection from `ip`, or `None` if it holds `max` already.
    pub fn take(&self, ip: IpAddr, max: u32) -> Option<IpSlot> {
        let mut counts = self.counts.borrow_mut();
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.counts.borrow().get(&ip).copied().unwrap_or(0)
    }
}

/// One connection's place in its listener's [`PerIp`] table, given back when dropped.
#[derive(Debug)]
pub struct IpSlot {
    counts: Rc<RefCell<HashMap<IpAddr, u32>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.borrow_mut();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_given_back_on_drop() {
        let table = PerIp::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.take(a, 2).unwrap();
        let second = table.take(a, 2).unwrap();
        assert!(table.take(a, 2).is_none(), "one over the limit");
        let other = table.take(b, 2).unwrap();
        assert_eq!((table.count(a), table.count(b)), (2, 1));
        drop(first);
        assert_eq!(table.count(a), 1);
        let again = table.take(a, 2).unwrap();
        drop((second, again, other));
        assert_eq!((table.count(a), table.count(b)), (0, 0));
        assert!(table.counts.borrow().is_empty(), "no address left behind");
    }
}
