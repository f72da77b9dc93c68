//! Why a worker stops other than by being told to.

use std::io;

/// Why a worker stopped other than by being told to.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("event loop: {0}")]
    Poll(io::Error),
    #[error("channel to the main process: {0}")]
    Channel(io::Error),
    #[error("channel to the main process: {0}")]
    Frame(#[from] weir_schema::framing::FrameError),
    #[error("access log: {0}")]
    AccessLog(io::Error),
    #[error("statsd socket: {0}")]
    Statsd(io::Error),
    #[error("AddListener came without its listening socket")]
    MissingFd,
}
