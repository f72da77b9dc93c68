//! Backend health, as a sans-io state machine fed with outcomes and `now`.
//!
//! Two sources feed it. Passive: every connect attempt reports success or failure; a failure
//! marks the backend down at once and starts an exponential backoff (250 ms doubling up to
//! 30 s) during which the balancer skips it; once the backoff has passed the backend may be
//! tried again by one request, and a successful connect brings it back up. Active (optional, a
//! cluster's `health_check`): periodic HTTP GETs; `unhealthy_threshold` consecutive failures
//! take it down and hold it down until `healthy_threshold` consecutive successes.
//! Transitions are returned as [`Transition`]s, which the worker turns into events.

use std::time::{Duration, Instant};

/// The first backoff after a failure; it doubles with each further failure.
pub const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A change of a backend's health that the main process hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up,
}

/// One backend's health.
#[derive(Debug, Clone)]
pub struct Health {
    up: bool,
    /// Consecutive passive failures, which set the backoff.
    failures: u32,
    retry_at: Option<Instant>,
    /// Active checks hold the backend down until they pass, whatever the backoff says.
    held_by_check: bool,
    check_successes: u32,
    check_failures: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            up: true,
            failures: 0,
            retry_at: None,
            held_by_check: false,
            check_successes: 0,
            check_failures: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether a request may be sent to it now: up, or down with its backoff passed (a trial).
    pub fn is_available(&self, now: Instant) -> bool {
        self.up || (!self.held_by_check && self.retry_at.is_none_or(|at| now >= at))
    }

    fn backoff(failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        BASE_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
    }

    pub fn on_connect_failure(&mut self, now: Instant) -> Option<Transition> {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + Self::backoff(self.failures));
        self.set_up(false)
    }

    pub fn on_connect_success(&mut self) -> Option<Transition> {
        self.failures = 0;
        self.retry_at = None;
        if self.held_by_check {
            return None;
        }
        self.set_up(true)
    }

    /// Result of one active check.
    pub fn on_check(
        &mut self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Transition> {
        if ok {
            self.check_failures = 0;
            self.check_successes = self.check_successes.saturating_add(1);
            if !self.up && self.check_successes >= healthy_threshold.max(1) {
                self.held_by_check = false;
                self.failures = 0;
                self.retry_at = None;
                return self.set_up(true);
            }
        } else {
            self.check_successes = 0;
            self.check_failures = self.check_failures.saturating_add(1);
            if self.check_failures >= unhealthy_threshold.max(1) {
                self.held_by_check = true;
                return self.set_up(false);
            }
        }
        None
    }

    /// The cluster dropped its active check: nothing holds the backend down any more but the
    /// passive backoff.
    pub fn clear_checks(&mut self) -> Option<Transition> {
        self.check_successes = 0;
        self.check_failures = 0;
        if !self.held_by_check {
            return None;
        }
        self.held_by_check = false;
        if self.retry_at.is_none() {
            return self.set_up(true);
        }
        None
    }

    fn set_up(&mut self, up: bool) -> Option<Transition> {
        if self.up == up {
            return None;
        }
        self.up = up;
        Some(if up { Transition::Up } else { Transition::Down })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn failure_backs_off_exponentially_and_success_recovers() {
        let t0 = Instant::now();
        let mut h = Health::new();
        assert!(h.is_available(t0));
        assert_eq!(h.on_connect_failure(t0), Some(Transition::Down));
        assert!(!h.is_available(t0 + Duration::from_millis(100)));
        assert!(h.is_available(t0 + BASE_BACKOFF));
        // A second failure doubles the wait, and is not a new transition.
        let t1 = t0 + BASE_BACKOFF;
        assert_eq!(h.on_connect_failure(t1), None);
        assert!(!h.is_available(t1 + BASE_BACKOFF));
        assert!(h.is_available(t1 + BASE_BACKOFF * 2));
        assert_eq!(h.on_connect_success(), Some(Transition::Up));
        assert!(h.is_up());
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(Health::backoff(1), BASE_BACKOFF);
        assert_eq!(Health::backoff(3), BASE_BACKOFF * 4);
        assert_eq!(Health::backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn active_checks_use_thresholds_and_hold_down() {
        let t0 = Instant::now();
        let mut h = Health::new();
        assert_eq!(h.on_check(false, 2, 3), None);
        assert_eq!(h.on_check(false, 2, 3), None);
        assert_eq!(h.on_check(false, 2, 3), Some(Transition::Down));
        // Held down: the passive backoff does not let requests through.
        assert!(!h.is_available(t0 + MAX_BACKOFF * 2));
        assert_eq!(h.on_connect_success(), None);
        assert_eq!(h.on_check(true, 2, 3), None);
        assert_eq!(h.on_check(true, 2, 3), Some(Transition::Up));
        assert!(h.is_available(t0));
        // Dropping the check releases a backend it held down.
        for _ in 0..3 {
            h.on_check(false, 2, 3);
        }
        assert!(!h.is_up());
        assert_eq!(h.clear_checks(), Some(Transition::Up));
    }
}
