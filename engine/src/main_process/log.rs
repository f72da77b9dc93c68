//! The main process's log lines on stderr, filtered by the configured level. Lines about one
//! connection ([`connection_warn`]) go through a token bucket, so that a flood of bad clients
//! cannot fill the disk.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::config::LogLevel;
use crate::log_limit::{Admit, LogLimit};

/// Per-connection lines: bursts of 10, then 5 a second.
static CONNECTION_LINES: Mutex<Option<LogLimit>> = Mutex::new(None);

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Sets the level for the rest of the process's life (once, at start).
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

fn at(level: LogLevel, message: &str) {
    if level as u8 <= LEVEL.load(Ordering::Relaxed) {
        let tag = match level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        };
        eprintln!("weir[main {}] {tag}: {message}", std::process::id());
    }
}

pub fn error(message: &str) {
    at(LogLevel::Error, message);
}

pub fn warn(message: &str) {
    at(LogLevel::Warn, message);
}

pub fn info(message: &str) {
    at(LogLevel::Info, message);
}

/// A warning about one connection, rate-limited; a "suppressed N messages" line comes before
/// the next one written after some were dropped.
pub fn connection_warn(message: &str) {
    let now = Instant::now();
    let admit = match CONNECTION_LINES.lock() {
        Ok(mut limit) => limit
            .get_or_insert_with(|| LogLimit::new(10, 5, now))
            .admit(now),
        // A thread panicked while holding it: log rather than lose the line.
        Err(_) => Admit::Write { suppressed: 0 },
    };
    if let Admit::Write { suppressed } = admit {
        if suppressed > 0 {
            warn(&format!("suppressed {suppressed} messages"));
        }
        warn(message);
    }
}
