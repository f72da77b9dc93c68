//! A request's id: one number a worker gives each request (and TCP session) it serves, the
//! access log's `request_id` and, on listeners with a `request_id_header`, the field the
//! backend gets, so one request can be followed from the log to the application's own.
//!
//! An id is a random high half, drawn once per worker, over a counter: unique across a
//! worker's requests until the counter wraps (4 billion requests), and across workers and
//! restarts with the odds of two 32-bit draws colliding. It is spelt as 16 lowercase hex
//! digits everywhere.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// One request's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub u64);

impl RequestId {
    /// Sixteen lowercase hex digits, computed eight at a time in a `u64`'s bytes rather than
    /// looked up one by one (this runs for every logged or forwarded request).
    pub fn hex(self) -> [u8; 16] {
        let mut digits = [0u8; 16];
        digits[..8].copy_from_slice(&hex8((self.0 >> 32) as u32));
        digits[8..].copy_from_slice(&hex8(self.0 as u32));
        digits
    }
}

/// Eight lowercase hex digits of `n`.
fn hex8(n: u32) -> [u8; 8] {
    // Spread the nibbles into bytes, most significant first in big-endian order.
    let mut x = u64::from(n);
    x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // 1 in each byte whose nibble is 10 or more: adding 6 carries into bit 4.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    // '0' + nibble, plus ('a' - '0' - 10) for the letters.
    (x + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
}

/// A worker's source of ids.
#[derive(Debug)]
pub struct RequestIds {
    base: u64,
    next: u32,
}

impl RequestIds {
    /// A source whose high half is drawn from the OS's randomness.
    pub fn new() -> RequestIds {
        RequestIds::with_base(SmallRng::from_os_rng().next_u32())
    }

    fn with_base(high: u32) -> RequestIds {
        RequestIds {
            base: u64::from(high) << 32,
            next: 0,
        }
    }

    /// The next request's id.
    #[inline]
    pub fn next_id(&mut self) -> RequestId {
        self.next = self.next.wrapping_add(1);
        RequestId(self.base | u64::from(self.next))
    }
}

impl Default for RequestIds {
    fn default() -> RequestIds {
        RequestIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_lowercase_hex_digits() {
        let mut n: u64 = 0;
        for i in 0..2_000u64 {
            // Every nibble value in every position, and both ends.
            n = n.rotate_left(7) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for v in [n, 0, u64::MAX, 0x0123_4567_89ab_cdef, 0xa0b0_c0d0_e0f0_9080] {
                assert_eq!(RequestId(v).hex(), format!("{v:016x}").as_bytes(), "{v:x}");
            }
        }
    }

    #[test]
    fn ids_count_up_under_the_workers_high_half() {
        let mut ids = RequestIds::with_base(0xc0ff_ee00);
        assert_eq!(ids.next_id(), RequestId(0xc0ff_ee00_0000_0001));
        assert_eq!(ids.next_id(), RequestId(0xc0ff_ee00_0000_0002));
        ids.next = u32::MAX;
        // The counter wraps inside its half: the worker's half never changes.
        assert_eq!(ids.next_id(), RequestId(0xc0ff_ee00_0000_0000));
    }
}
