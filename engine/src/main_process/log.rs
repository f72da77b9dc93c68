//! The main process's log lines on stderr, filtered by the configured level.

use std::sync::atomic::{AtomicU8, Ordering};

use super::config::LogLevel;

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
