//! Requests as domain types: what a client asks of a proxy, once decoded and checked.
//!
//! The prost types in [`crate::proto`] stay at the wire edge; [`crate::wire`] converts them to
//! and from these types exactly once, so the rest of Weir never sees a half-filled message.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cert::Certificate;
use crate::model::{Backend, BackendKey, Cluster, ClusterId, Fingerprint, Frontend, Listener};

/// A change to the routing state. Every change is a diff: it names one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddListener(Listener),
    UpdateListener(Listener),
    RemoveListener(SocketAddr),
    AddCluster(Cluster),
    UpdateCluster(Cluster),
    RemoveCluster(ClusterId),
    AddBackend(Backend),
    UpdateBackend(Backend),
    RemoveBackend {
        key: BackendKey,
        /// How long the proxy waits for live connections to finish; `None` uses its default.
        drain_timeout: Option<Duration>,
    },
    AddCertificate(Box<Certificate>),
    ReplaceCertificate {
        old: Fingerprint,
        new: Box<Certificate>,
    },
    RemoveCertificate(Fingerprint),
    AddFrontend(Frontend),
    /// Sets the owner of an existing frontend: the one thing about a frontend that is not
    /// its identity. It keeps its place in the add order, so routing does not change.
    UpdateFrontend(Frontend),
    RemoveFrontend(Frontend),
}

impl Change {
    /// A short verb-and-resource label, used in logs, plans and errors.
    pub fn describe(&self) -> String {
        match self {
            Change::AddListener(l) => format!("add listener {}", l.address),
            Change::UpdateListener(l) => format!("update listener {}", l.address),
            Change::RemoveListener(a) => format!("remove listener {a}"),
            Change::AddCluster(c) => format!("add cluster {}", c.id),
            Change::UpdateCluster(c) => format!("update cluster {}", c.id),
            Change::RemoveCluster(id) => format!("remove cluster {id}"),
            Change::AddBackend(b) => format!("add backend {}", b.key),
            Change::UpdateBackend(b) => format!("update backend {}", b.key),
            Change::RemoveBackend { key, .. } => format!("remove backend {key}"),
            Change::AddCertificate(c) => format!("add certificate {}", c.fingerprint),
            Change::ReplaceCertificate { old, new } => {
                format!("replace certificate {old} with {}", new.fingerprint)
            }
            Change::RemoveCertificate(fp) => format!("remove certificate {fp}"),
            Change::AddFrontend(f) => format!("add frontend {f}"),
            Change::UpdateFrontend(f) => format!("update frontend {f}"),
            Change::RemoveFrontend(f) => format!("remove frontend {f}"),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Everything a client may ask.
// A command is built once per request and moved a handful of times; boxing the change would
// cost an allocation per request and touch every match on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Change(Change),
    QueryState,
    QueryMetrics,
    Status,
    SaveState(PathBuf),
    LoadState(PathBuf),
    SoftStop,
    HardStop,
    UpgradeMain,
    UpgradeWorker(u32),
    /// Stream events; with `Some(seq)`, first replay the retained events after `seq`.
    SubscribeEvents {
        from_sequence: Option<u64>,
    },
}

/// Whether certificates' private keys go into a state answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrivateKeys {
    /// Certificates without their keys: what a query gets unless it asks.
    #[default]
    Redacted,
    /// Keys included: a tool that must re-add a certificate (a rollback) asks for this.
    Included,
}

/// A request: an id the answers repeat, an optional expected state version, and a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    /// The request fails unless the state is at exactly this version (optimistic concurrency).
    pub expected_version: Option<u64>,
    pub command: Command,
    /// For [`Command::QueryState`]: whether the answer carries private keys (the wire's
    /// `QueryState.include_private_keys`). Other commands ignore it. It sits here rather than
    /// in the command so that code matching `Command::QueryState` keeps working.
    pub private_keys: PrivateKeys,
}

impl Request {
    pub fn new(id: impl Into<String>, command: Command) -> Request {
        Request {
            id: id.into(),
            expected_version: None,
            command,
            private_keys: PrivateKeys::Redacted,
        }
    }

    /// A `QueryState` whose answer includes private keys.
    pub fn query_state_with_keys(id: impl Into<String>) -> Request {
        Request {
            private_keys: PrivateKeys::Included,
            ..Request::new(id, Command::QueryState)
        }
    }

    pub fn change(id: impl Into<String>, change: Change) -> Request {
        Request::new(id, Command::Change(change))
    }
}
