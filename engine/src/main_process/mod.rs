//! The main process: command socket, authoritative State, worker supervision.
//!
//! One thread, the core ([`core`]), owns everything that changes: the State, the listening
//! sockets, the worker slots, the pending requests and the event log. Every other thread only
//! turns something that happened (a client's frame, a worker's answer, a process exit, a
//! signal) into an [`Input`] on one channel, so the core sees the world in a single order and
//! needs no locks. Answers to clients go out through per-client writer threads.
//!
//! Entry point: [`run`], called by `weir proxy`. Workers are the same binary started as
//! `weir worker` (see [`crate::channel`] for what the two sides promise each other).

mod admin;
mod clients;
mod command_server;
pub mod config;
mod core;
mod dispatch;
mod error;
mod events;
pub mod fd;
mod fd_limit;
mod heap;
mod input;
mod lifecycle;
mod listeners;
mod loading;
mod log;
mod metric_sums;
mod persist;
mod supervisor;
mod tickets;
pub mod upgrade;

use nix::sys::signal::{SigSet, Signal};

pub use command_server::{peer_allowed, SocketError};
pub use config::{Config, ConfigError, LogLevel, Overrides};
pub use error::MainError;
pub use input::Input;
pub use persist::PersistError;

/// The signals the main process handles itself: SIGTERM (soft stop), SIGINT (hard stop),
/// SIGHUP (ignored: the configuration changes through the socket, not by reload), SIGUSR1
/// (passed on to the workers, which reopen their access log file: logrotate's `postrotate`).
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR1);
    set
}

/// Raises the soft fd limit (workers inherit it), sets `max_connections` to what the limit
/// holds if weir.toml left it out, and warns once if the limit is still too low.
fn check_fd_limit(config: &mut Config) {
    let limit = match fd_limit::raise() {
        Ok(raised) => {
            if raised.after > raised.before {
                log::info(&format!(
                    "file descriptor limit raised from {} to {}",
                    raised.before, raised.after
                ));
            }
            raised.after
        }
        Err(e) => {
            log::warn(&format!("cannot raise the file descriptor limit: {e}"));
            match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
                Ok((soft, _)) => soft,
                Err(_) => return,
            }
        }
    };
    let max_connections = match config.max_connections {
        Some(set) => set,
        None => {
            let ceiling = crate::channel::WorkerConfig::default().max_connections;
            let fits = fd_limit::default_max_connections(limit, ceiling);
            if fits < ceiling {
                log::info(&format!(
                    "max_connections: {fits} per worker, what the file descriptor limit \
                     ({limit}) holds at 2 per connection + {}; set max_connections to choose",
                    fd_limit::RESERVE
                ));
            }
            // Set, so an upgrade hands the same value on.
            config.max_connections = Some(fits);
            fits
        }
    };
    let workers = config.worker_count();
    if let Some(warning) =
        fd_limit::shortfall(limit, fd_limit::file_max(), workers, max_connections)
    {
        log::warn(&warning);
    }
}

/// Runs the main process until it is stopped. `handover` is the JSON a previous main process
/// passed on upgrade (`None` for a normal start). Must be called before this process starts
/// any thread: it blocks the handled signals, and threads inherit the mask.
pub fn run(mut config: Config, handover: Option<&str>) -> Result<(), MainError> {
    log::set_level(config.log_level);
    check_fd_limit(&mut config);
    let signals = handled_signals();
    signals.thread_block().map_err(MainError::Signals)?;
    let (inputs, receiver) = std::sync::mpsc::channel();
    let signal_inputs = inputs.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(signal) => {
                    if signal_inputs.send(Input::Signal(signal)).is_err() {
                        return;
                    }
                }
                Err(_) => continue,
            }
        })
        .map_err(MainError::Spawn)?;
    let handover = handover
        .map(upgrade::Handover::from_json)
        .transpose()
        .map_err(MainError::Handover)?;
    let core = core::Core::start(config, handover, inputs)?;
    core.run(&receiver);
    Ok(())
}
