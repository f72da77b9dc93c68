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

mod command_server;
pub mod config;
mod core;
mod dispatch;
mod events;
pub mod fd;
mod heap;
mod listeners;
mod persist;
mod supervisor;
pub mod upgrade;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use nix::sys::signal::{SigSet, Signal};
use weir_schema::wire::WireError;
use weir_schema::{proto, Request};

pub use command_server::{peer_allowed, SocketError};
pub use config::{Config, ConfigError, LogLevel, Overrides};
pub use persist::PersistError;

use dispatch::{ClientId, WorkerKey};

/// Why the main process could not start (once running, it does not fail: it reports).
#[derive(Debug, thiserror::Error)]
pub enum MainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("desired state {path}:\n{errors}")]
    Desired { path: PathBuf, errors: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("cannot start a worker: {0}")]
    Spawn(io::Error),
    #[error("cannot set up signal handling: {0}")]
    Signals(nix::Error),
    #[error("bad upgrade hand-over: {0}")]
    Handover(String),
}

/// Everything the core reacts to.
#[derive(Debug)]
pub enum Input {
    ClientConnected {
        client: ClientId,
        answers: Sender<proto::Response>,
        writer: JoinHandle<()>,
    },
    ClientRequest {
        client: ClientId,
        id: String,
        request: Result<Request, WireError>,
    },
    ClientGone {
        client: ClientId,
    },
    Worker {
        key: WorkerKey,
        response: proto::Response,
    },
    WorkerChannelClosed {
        key: WorkerKey,
    },
    WorkerExited {
        key: WorkerKey,
        status: String,
    },
    Signal(Signal),
    /// The new main process of an upgrade has its workers serving.
    UpgradeReady {
        pid: u32,
    },
    UpgradeFailed {
        reason: String,
    },
}

static LOG_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

fn log_at(level: LogLevel, message: &str) {
    if level as u8 <= LOG_LEVEL.load(Ordering::Relaxed) {
        let tag = match level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        };
        eprintln!("weir[main {}] {tag}: {message}", std::process::id());
    }
}

pub(crate) fn log_error(message: &str) {
    log_at(LogLevel::Error, message);
}
pub(crate) fn log_warn(message: &str) {
    log_at(LogLevel::Warn, message);
}
pub(crate) fn log_info(message: &str) {
    log_at(LogLevel::Info, message);
}

/// The signals the main process handles itself: SIGTERM (soft stop), SIGINT (hard stop),
/// SIGHUP (ignored: the configuration changes through the socket, not by reload).
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

/// Runs the main process until it is stopped. `handover` is the JSON a previous main process
/// passed on upgrade (`None` for a normal start). Must be called before this process starts
/// any thread: it blocks the handled signals, and threads inherit the mask.
pub fn run(config: Config, handover: Option<&str>) -> Result<(), MainError> {
    LOG_LEVEL.store(config.log_level as u8, Ordering::Relaxed);
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
    let core = core::Core::start(config, handover, inputs, receiver)?;
    core.run();
    Ok(())
}
