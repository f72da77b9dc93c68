//! Why the main process could not start (once running, it does not fail: it reports).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::admin::AdminError;
use super::command_server::SocketError;
use super::config::ConfigError;
use super::persist::PersistError;

/// Why the main process could not start.
#[derive(Debug, thiserror::Error)]
pub enum MainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("desired state {path}:\n{errors}")]
    Desired { path: PathBuf, errors: String },
    /// A listener of the state at start cannot listen. `error` is part of the message and not
    /// a `source`, so a report that prints the chain of causes says it once.
    #[error("{}", listen_failure(name, address, origin.as_deref(), error))]
    Listen {
        name: String,
        address: SocketAddr,
        /// Where it was defined (a desired file and line, or the saved state).
        origin: Option<String>,
        error: io::Error,
    },
    #[error("cannot start a worker: {0}")]
    Spawn(io::Error),
    #[error("cannot set up signal handling: {0}")]
    Signals(nix::Error),
    #[error("bad upgrade hand-over: {0}")]
    Handover(String),
}

/// Why listener `name` cannot listen on `address`, and where it was defined when known.
pub fn listen_failure(
    name: &str,
    address: &SocketAddr,
    origin: Option<&str>,
    error: &io::Error,
) -> String {
    let origin = origin.map(|o| format!(" ({o})")).unwrap_or_default();
    format!("listener {name:?} cannot listen on {address}{origin}: {error}")
}
