//! What the core reacts to, and the ids it knows its senders by.
//!
//! Every thread of the main process other than the core (command clients' readers, workers'
//! readers and waiters, the signal thread, the upgrade watcher) only turns what happened into
//! an [`Input`] on the core's one channel. This module depends on no other module of the main
//! process, so each of them can send inputs without an import loop.

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use nix::sys::signal::Signal;
use weir_schema::wire::WireError;
use weir_schema::{proto, Request};

/// A connected command client.
pub type ClientId = u64;

/// One worker process: its slot and which start of that slot it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerKey {
    pub slot: u32,
    pub generation: u64,
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
        /// Boxed: a request (a listener with all its settings, say) is several times the size
        /// of every other input.
        request: Result<Box<Request>, WireError>,
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
