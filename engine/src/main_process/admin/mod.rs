//! The admin HTTP endpoint of the main process: `GET /metrics` (Prometheus text exposition)
//! and `GET /` (a read-only status page), on a loopback address from `weir.toml`
//! (`[metrics] prometheus`).
//!
//! It has no authentication, so the config refuses any address but a loopback one. It stays out
//! of the workers' data path: one thread of the main process runs a small mio loop of its own
//! ([`server`]) that accepts, reads one request head (httparse), and asks the core for the
//! workers' metrics with an [`Input::Admin`]; the core asks the workers exactly as for
//! `weir metrics` and hands the summed answer back with a snapshot of the state ([`Reply`]),
//! waking the loop, which renders and writes the answer and closes the connection. Nothing it
//! does changes the state. Bounded: at most [`server::MAX_CONNECTIONS`] connections, a request
//! head of at most 8 KiB, a read deadline, `Connection: close`.

mod page;
mod request;
mod server;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use weir_schema::prometheus::Ids;
use weir_schema::{proto, BackendKey, ClusterId, Protocol, State};

use super::input::Input;
use super::log;

/// What the status page shows of the state, taken by the core when the metrics are in.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    pub fingerprint: String,
    /// Live workers, for "up on 1/2".
    pub workers: usize,
    pub listeners: Vec<ListenerRow>,
    pub clusters: Vec<ClusterRow>,
    pub certificates: Vec<CertificateRow>,
    /// The last change applied (its description) and when.
    pub last_change: Option<(String, SystemTime)>,
    /// To split metric names at the ids they carry.
    pub ids: Ids,
}

#[derive(Debug, Clone)]
pub struct ListenerRow {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: Protocol,
    pub frontends: usize,
}

#[derive(Debug, Clone)]
pub struct ClusterRow {
    pub id: ClusterId,
    pub backends: Vec<BackendRow>,
}

#[derive(Debug, Clone)]
pub struct BackendRow {
    pub key: BackendKey,
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
}

#[derive(Debug, Clone)]
pub struct CertificateRow {
    pub name: String,
    pub dns_names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

impl Snapshot {
    pub fn of(state: &State, workers: usize, last_change: Option<(String, SystemTime)>) -> Self {
        let listeners = state
            .listeners
            .values()
            .map(|l| ListenerRow {
                name: l.name.clone(),
                address: l.address,
                protocol: l.protocol,
                frontends: state
                    .frontends
                    .keys()
                    .filter(|f| f.listener == l.address)
                    .count(),
            })
            .collect();
        let clusters = state
            .clusters
            .keys()
            .map(|id| ClusterRow {
                id: id.clone(),
                backends: state
                    .backends_of(id)
                    .map(|b| BackendRow {
                        key: b.key.clone(),
                        address: b.address,
                        weight: b.weight,
                        backup: b.backup,
                    })
                    .collect(),
            })
            .collect();
        let certificates = state
            .certificates
            .values()
            .map(|c| CertificateRow {
                name: c.name.clone(),
                dns_names: c.dns_names.clone(),
                not_after: c.not_after,
            })
            .collect();
        Snapshot {
            version: state.version,
            fingerprint: state.fingerprint().to_hex(),
            workers,
            listeners,
            clusters,
            certificates,
            last_change,
            ids: Ids::of(state),
        }
    }
}

/// The core's answer to an [`Input::Admin`].
#[derive(Debug)]
pub struct Reply {
    pub query: u64,
    pub metrics: proto::Metrics,
    pub snapshot: Snapshot,
}

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the admin endpoint (`[metrics] prometheus`) on {address}: {error}")]
pub struct AdminError {
    pub address: SocketAddr,
    pub error: io::Error,
}

/// The core's handle on the admin thread; dropping it stops the thread and closes the socket.
#[derive(Debug)]
pub struct Admin {
    replies: Sender<Reply>,
    waker: Arc<mio::Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long a new main process (`weir upgrade`) waits for the old one to let go of the port.
const TAKE_OVER_FOR: Duration = Duration::from_secs(60);

impl Admin {
    /// Binds `address` now (a start fails on an address in use) and starts serving. With
    /// `take_over`, the address may still be the previous main process's (an upgrade): the
    /// thread binds it as soon as that one lets go.
    pub fn start(
        address: SocketAddr,
        inputs: Sender<Input>,
        take_over: bool,
    ) -> Result<Admin, AdminError> {
        let failed = |error| AdminError { address, error };
        let listener = match TcpListener::bind(address) {
            Ok(listener) => Some(listener),
            Err(e) if take_over && e.kind() == io::ErrorKind::AddrInUse => None,
            Err(e) => return Err(failed(e)),
        };
        let poll = mio::Poll::new().map_err(failed)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), server::WAKER).map_err(failed)?);
        let (replies, queue) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("admin-http".into())
            .spawn(move || {
                let Some(listener) = listener.or_else(|| take_over_port(address, &flag)) else {
                    return;
                };
                match server::Server::new(poll, listener, inputs, queue) {
                    Ok(mut server) => server.run(&flag),
                    Err(e) => log::error(&format!("admin endpoint on {address}: {e}")),
                }
            })
            .map_err(failed)?;
        log::info(&format!(
            "admin endpoint on http://{address}/ (status page) and /metrics"
        ));
        Ok(Admin {
            replies,
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Hands the core's answer to the admin thread.
    pub fn reply(&self, reply: Reply) {
        if self.replies.send(reply).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Binds `address` once the previous main process has closed it, polling every 100 ms.
fn take_over_port(address: SocketAddr, stop: &AtomicBool) -> Option<TcpListener> {
    let deadline = std::time::Instant::now() + TAKE_OVER_FOR;
    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        match TcpListener::bind(address) {
            Ok(listener) => return Some(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                log::error(&format!("admin endpoint: cannot bind {address}: {e}"));
                return None;
            }
        }
    }
    log::error(&format!(
        "admin endpoint: {address} stayed in use; not serving it"
    ));
    None
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
