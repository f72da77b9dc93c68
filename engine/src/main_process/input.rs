//! What the core reacts to, and the ids it knows its senders by.
//!
//! Every thread of the main process other than the core (command clients' readers, workers'
//! readers and waiters, the signal thread, the upgrade watcher) only turns what happened into
//! an [`Input`] on the core's one channel. This module depends on no other module of the main
//! process, so each of them can send inputs without an import loop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::sys::signal::Signal;
use weir_schema::wire::WireError;
use weir_schema::{proto, Request};

/// A connected command client.
pub type ClientId = u64;

/// Whether a command client is waiting for something, shared by its reader thread (which
/// closes an idle client) and the core (which answers it): a client with a request under way
/// (a long drain) or subscribed to events is quiet, not idle.
#[derive(Debug, Default)]
pub struct Activity {
    pending: AtomicUsize,
    subscribed: AtomicBool,
}

impl Activity {
    /// The reader read a request that will get a final answer (it has an id).
    pub fn request_read(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// The core sent a request's final answer.
    pub fn answered(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn subscribed(&self) {
        self.subscribed.store(true, Ordering::SeqCst);
    }

    /// Waiting for an answer or for events.
    pub fn busy(&self) -> bool {
        self.pending.load(Ordering::SeqCst) > 0 || self.subscribed.load(Ordering::SeqCst)
    }
}

/// One worker process: its slot and which start of that slot it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerKey {
    pub slot: u32,
    pub generation: u64,
}

/// What an admin HTTP request asks for (see `admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPage {
    /// `GET /metrics`: the Prometheus exposition.
    Metrics,
    /// `GET /`: the status page.
    Status,
}

/// Everything the core reacts to.
#[derive(Debug)]
pub enum Input {
    ClientConnected {
        client: ClientId,
        answers: Sender<proto::Response>,
        writer: JoinHandle<()>,
        activity: Arc<Activity>,
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
    /// An admin HTTP request needs the workers' metrics; `query` is the admin thread's number
    /// for it, carried back with the answer.
    Admin {
        query: u64,
        page: AdminPage,
    },
}
