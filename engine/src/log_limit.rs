//! A token bucket for error-log lines about single connections, so that a flood of bad
//! clients cannot fill the disk through stderr (nginx's and HAProxy's error logs have the
//! same weakness; systemd's journal rate-limits per service for the same reason).
//!
//! A bucket holds at most `burst` lines and refills at `per_second` lines a second. A line
//! that finds the bucket empty is suppressed and counted; the next line written is preceded
//! by one saying how many were suppressed ([`Admit::Write`]'s `suppressed`), so the count is
//! never lost, only delayed.

use std::time::Instant;

/// Whether a line may be written now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it, after a "suppressed N messages" line when `suppressed > 0`.
    Write { suppressed: u64 },
    /// Drop it (counted).
    Suppress,
}

/// Lines a second, with bursts.
#[derive(Debug, Clone)]
pub struct LogLimit {
    /// Tokens in thousandths of a line, so that refills need no floating point.
    milli_tokens: u64,
    burst: u64,
    per_second: u64,
    last: Instant,
    suppressed: u64,
}

impl LogLimit {
    /// A full bucket of `burst` lines, refilled at `per_second` lines a second.
    pub fn new(burst: u32, per_second: u32, now: Instant) -> LogLimit {
        LogLimit {
            milli_tokens: u64::from(burst) * 1000,
            burst: u64::from(burst),
            per_second: u64::from(per_second),
            last: now,
            suppressed: 0,
        }
    }

    /// Takes a token for a line at `now`, if there is one.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(self.per_second);
        if refill > 0 {
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(refill)
                .min(self.burst * 1000);
            self.last = now;
        }
        if self.milli_tokens < 1000 {
            self.suppressed += 1;
            return Admit::Suppress;
        }
        self.milli_tokens -= 1000;
        Admit::Write {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }

    /// Lines suppressed since the last one written.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_lines_are_suppressed_and_counted() {
        let start = Instant::now();
        let mut limit = LogLimit::new(10, 5, start);
        let written = (0..100)
            .filter(|_| matches!(limit.admit(start), Admit::Write { .. }))
            .count();
        assert_eq!(written, 10);
        assert_eq!(limit.suppressed(), 90);
        // 200 ms bring one token back; the line it admits reports the 90.
        assert_eq!(
            limit.admit(start + Duration::from_millis(200)),
            Admit::Write { suppressed: 90 }
        );
        assert_eq!(
            limit.admit(start + Duration::from_millis(200)),
            Admit::Suppress
        );
    }

    #[test]
    fn the_rate_holds_over_time_and_the_bucket_never_overfills() {
        let start = Instant::now();
        let mut limit = LogLimit::new(10, 5, start);
        // A line every millisecond for 10 s: the burst, then 5 a second.
        let written = (0..10_000u64)
            .filter(|&ms| {
                matches!(
                    limit.admit(start + Duration::from_millis(ms)),
                    Admit::Write { .. }
                )
            })
            .count();
        assert!((58..=61).contains(&written), "{written} lines written");
        // A long quiet time refills only up to the burst.
        let later = start + Duration::from_secs(3600);
        let burst = (0..100)
            .filter(|_| matches!(limit.admit(later), Admit::Write { .. }))
            .count();
        assert_eq!(burst, 10);
    }
}
