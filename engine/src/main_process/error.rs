//! Why the main process could not start (once running, it does not fail: it reports).

use std::io;
use std::path::PathBuf;

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
