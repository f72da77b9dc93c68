//! Test support shared by the engine's in-process worker tests (`engine/tests/`) and the
//! end-to-end tests of the `weir` binary (`tests/`): tiny real backends, a raw HTTP/1.1 client,
//! and waiting by polling. What only one of them needs stays with it (`TestWorker` in
//! `engine/tests/support/`, `Proxy` and the command client in `tests/util/`).
//!
//! - [`backend`]: an HTTP/1.1 backend that answers its name or whatever a [`Handler`] writes,
//!   and records what it [`Seen`].
//! - [`echo`]: TCP and WebSocket echo origins for the byte-pipe tests.
//! - [`client`]: a client that writes raw bytes and reads one [`Answer`] at a time, so tests
//!   can send what no well-behaved client library would.
//! - this module: [`wait_until`], [`closed_by_peer`] and [`refuses`], and addresses from the
//!   OS: free ([`free_port`], [`free_addr`]), refusing ([`dead_addr`]) or hanging
//!   ([`StuckListener`]).
//!
//! Everything listens on and connects to 127.0.0.1 with ports the OS picks, so tests run in
//! parallel without a port registry and nothing is reachable from outside the machine.
//! Setup failures panic rather than return errors: a test that cannot bind a socket has
//! nothing better to report.
//!
//! This crate is a dev-dependency only; `.ci/check-deps` keeps it out of the normal and build
//! edges of every product crate.

pub mod backend;
pub mod client;
pub mod echo;
mod wire;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

pub use backend::{Backend, Handler, Seen};
pub use client::{
    connect, http_get, http_raw, read_answer, read_answer_to_head, send_and_read_to_end, Answer,
};
pub use echo::{tcp_echo, websocket_echo};

/// Polls `check` every 10 ms until it holds or `timeout` passes, and says whether it held.
///
/// Tests wait for a condition this way rather than sleeping a guessed time: a sleep is either
/// too short on a loaded CI machine or wastes time everywhere else.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the peer closed `stream`: a read returns end of stream (or a reset, the other way
/// a peer closes). Bytes, a timeout or any other error are not a close: "nothing arrived in
/// time" must not pass for "closed". Set a read timeout on the stream first, or this may
/// block for as long as the peer keeps it open.
pub fn closed_by_peer(stream: &mut impl Read) -> Result<(), String> {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("got {n} bytes: {}", buf[..n].escape_ascii())),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(format!("not closed: {e}")),
    }
}

/// Whether a connect to `addr` is refused: nothing listens there. A timeout or any other
/// failure is not a refusal.
pub fn refuses(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// A port on 127.0.0.1 that was free a moment ago: the OS picked it for a listener that was
/// closed at once. For a listener the proxy opens itself, where a test cannot hand over a
/// bound socket; something else could take the port in between, which tests accept.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ask the OS for a free port")
}

/// An address on 127.0.0.1 for a listener the test is about to open (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// An address nothing listens on, for a backend that refuses connections; a [`Backend`]
/// started there later with [`Backend::start_at`] brings it back.
pub fn dead_addr() -> SocketAddr {
    free_addr()
}

/// A listener that never accepts, with its accept queue full: the kernel drops further SYNs,
/// so a connect to [`StuckListener::addr`] hangs until the connector gives up. A backend for
/// connect timeouts; it stays stuck while the value lives.
#[derive(Debug)]
pub struct StuckListener {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl StuckListener {
    pub fn start() -> StuckListener {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind stuck listener");
        let backlog = nix::sys::socket::Backlog::new(0).expect("backlog");
        nix::sys::socket::listen(&listener, backlog).expect("listen");
        let addr = listener.local_addr().expect("stuck addr");
        // A backlog of 0 still queues a connection or two: fill the queue. The connects that
        // time out are the ones that found it full.
        let queued = (0..4)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
            .collect();
        StuckListener {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}
