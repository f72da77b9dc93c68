//! In-memory connections for unit tests (test builds only): the proxy's end of a connection
//! ([`MemStream`], behind `Transport::Memory` and `BackStream::Memory`) and the test's end
//! ([`Peer`]), with the backends the worker dials ([`Net`]), so the protocols are driven
//! without a socket.
//!
//! A connection behaves as a non-blocking TCP socket does for the code above it: a read takes
//! what the peer has sent, `WouldBlock` when nothing is there, `Ok(0)` after its end of stream
//! and an error after a reset; a write is taken whole unless the test gave the peer a window
//! (a peer that takes only N bytes until it reads), and `WouldBlock` when the window is full.
//! Readiness is edge-triggered as epoll's is: each thing the test does raises an event (bytes
//! or an end of stream: readable; a reset or a refused connect: an error; a connect completing
//! or a full window read: writable), which the test's event loop takes with
//! [`Net::take_events`] and hands on as `event_loop.rs` does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;

use mio::Token;

/// Readiness raised since the event loop last took it, as one epoll event reports it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    pub read_closed: bool,
    pub error: bool,
}

impl Readiness {
    fn any(self) -> bool {
        self.readable || self.writable || self.read_closed || self.error
    }
}

/// Where a connect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    Pending,
    Connected,
    Refused,
}

/// One connection, both ways.
#[derive(Debug)]
struct Wire {
    peer_addr: SocketAddr,
    connect: Connect,
    /// The socket error (`SO_ERROR`), taken once.
    error: Option<io::ErrorKind>,
    /// Peer → proxy.
    inbound: VecDeque<u8>,
    /// Proxy → peer, not yet read by the peer.
    outbound: Vec<u8>,
    /// Most unread bytes the peer takes (`None`: no limit).
    window: Option<usize>,
    /// A write found the window full: reading it makes the proxy's end writable.
    write_blocked: bool,
    /// The peer sent its end of stream.
    peer_fin: bool,
    /// The peer closed for good: the next bytes written to it get a reset back.
    peer_closed: bool,
    /// The proxy sent its end of stream (or dropped its end).
    proxy_fin: bool,
    reset: bool,
    /// Set while the proxy's end is registered.
    token: Option<Token>,
    events: Readiness,
}

impl Wire {
    fn new(peer_addr: SocketAddr, connect: Connect) -> Wire {
        Wire {
            peer_addr,
            connect,
            error: None,
            inbound: VecDeque::new(),
            outbound: Vec::new(),
            window: None,
            write_blocked: false,
            peer_fin: false,
            peer_closed: false,
            proxy_fin: false,
            reset: false,
            token: None,
            events: Readiness::default(),
        }
    }

    fn raise(&mut self, readiness: Readiness) {
        let e = &mut self.events;
        e.readable |= readiness.readable;
        e.writable |= readiness.writable;
        e.read_closed |= readiness.read_closed;
        e.error |= readiness.error;
    }

    /// The peer's reset: unread bytes are gone, reads and writes fail.
    fn reset(&mut self) {
        self.reset = true;
        self.inbound.clear();
        self.raise(Readiness {
            readable: true,
            writable: true,
            read_closed: true,
            error: true,
        });
    }
}

type Shared = Rc<RefCell<Wire>>;

/// The proxy's end of an in-memory connection.
#[derive(Debug)]
pub struct MemStream(Shared);

impl MemStream {
    /// What `register` records: readiness is delivered for this token from now on.
    pub fn register(&mut self, token: Token) {
        self.0.borrow_mut().token = Some(token);
    }

    pub fn deregister(&mut self) {
        self.0.borrow_mut().token = None;
    }

    /// As `TcpStream::peek`: what a read would say, without taking anything.
    pub fn peek(&self, dst: &mut [u8]) -> io::Result<usize> {
        let w = self.0.borrow();
        if let Some(&b) = w.inbound.front() {
            if let Some(d) = dst.first_mut() {
                *d = b;
            }
            return Ok(1.min(dst.len()));
        }
        read_end(&w)
    }

    /// As `TcpStream::take_error`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.0.borrow_mut().error.take().map(io::Error::from))
    }

    /// As `TcpStream::peer_addr`: `NotConnected` until the connect completes.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        let w = self.0.borrow();
        match w.connect {
            Connect::Connected => Ok(w.peer_addr),
            Connect::Pending | Connect::Refused => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// As `shutdown(Shutdown::Write)`.
    pub fn shutdown_write(&mut self) {
        let mut w = self.0.borrow_mut();
        w.proxy_fin = true;
    }
}

/// A read with nothing queued: end of stream, reset, or nothing yet.
fn read_end(w: &Wire) -> io::Result<usize> {
    if w.peer_fin {
        Ok(0)
    } else if w.reset {
        Err(io::ErrorKind::ConnectionReset.into())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Read for MemStream {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        if w.inbound.is_empty() || dst.is_empty() {
            return read_end(&w);
        }
        let n = dst.len().min(w.inbound.len());
        for (d, b) in dst.iter_mut().zip(w.inbound.drain(..n)) {
            *d = b;
        }
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(src)])
    }

    /// Takes as much of every slice, in order, as the window allows, as `writev` does.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        if w.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if w.proxy_fin {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if w.connect != Connect::Connected {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        if w.peer_closed {
            // A closed socket takes the first bytes, and its peer answers them with a reset.
            w.reset();
            return Ok(total);
        }
        let mut room = w
            .window
            .map_or(usize::MAX, |win| win.saturating_sub(w.outbound.len()));
        if room == 0 {
            w.write_blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room);
            w.outbound.extend_from_slice(&b[..take]);
            n += take;
            room -= take;
            if room == 0 {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MemStream {
    /// Closing the socket: the peer reads an end of stream.
    fn drop(&mut self) {
        let mut w = self.0.borrow_mut();
        w.proxy_fin = true;
        w.token = None;
    }
}

/// The test's end of an in-memory connection: a client, or a backend's accepted connection.
#[derive(Debug, Clone)]
pub struct Peer(Shared);

impl Peer {
    /// Bytes to the proxy.
    pub fn send(&self, bytes: &[u8]) {
        let mut w = self.0.borrow_mut();
        assert!(!w.peer_fin && !w.reset, "sending on a closed connection");
        w.inbound.extend(bytes);
        w.raise(Readiness {
            readable: true,
            ..Readiness::default()
        });
    }

    /// Takes what the proxy sent so far (as a read does, it frees window room).
    pub fn take(&self) -> Vec<u8> {
        let mut w = self.0.borrow_mut();
        let got = std::mem::take(&mut w.outbound);
        if std::mem::take(&mut w.write_blocked) {
            w.raise(Readiness {
                writable: true,
                ..Readiness::default()
            });
        }
        got
    }

    /// Takes what the proxy sent, which must end with its end of stream.
    pub fn take_to_close(&self) -> String {
        assert!(self.is_shut(), "the proxy did not close");
        String::from_utf8_lossy(&self.take()).into_owned()
    }

    /// The proxy sent its end of stream (half-closed, or closed).
    pub fn is_shut(&self) -> bool {
        self.0.borrow().proxy_fin
    }

    /// Lets the peer hold at most `bytes` unread (a slow reader); `None` lifts the limit.
    pub fn set_window(&self, bytes: Option<usize>) {
        self.0.borrow_mut().window = bytes;
    }

    /// Sends the peer's end of stream; it still reads (a half-close).
    pub fn shutdown_write(&self) {
        let mut w = self.0.borrow_mut();
        w.peer_fin = true;
        w.raise(Readiness {
            readable: true,
            read_closed: true,
            ..Readiness::default()
        });
    }

    /// Closes the peer's socket: an end of stream, and bytes written to it after that get a
    /// reset back.
    pub fn close(&self) {
        self.shutdown_write();
        self.0.borrow_mut().peer_closed = true;
    }

    /// Resets the connection (a close with `SO_LINGER` 0).
    pub fn reset(&self) {
        self.0.borrow_mut().reset();
    }

    /// Completes a connect the backend held.
    pub fn complete(&self) {
        let mut w = self.0.borrow_mut();
        assert_eq!(w.connect, Connect::Pending, "not connecting");
        w.connect = Connect::Connected;
        w.raise(Readiness {
            writable: true,
            ..Readiness::default()
        });
    }

    /// Refuses a connect the backend held, as a reset answering the SYN does.
    pub fn refuse(&self) {
        let mut w = self.0.borrow_mut();
        assert_eq!(w.connect, Connect::Pending, "not connecting");
        w.connect = Connect::Refused;
        w.error = Some(io::ErrorKind::ConnectionRefused);
        w.raise(Readiness {
            readable: true,
            writable: true,
            read_closed: true,
            error: true,
        });
    }
}

/// What a backend does with a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Connected by the time the worker checks, as a listening loopback socket is.
    Accept,
    /// Refused: the connect is under way, then fails with an error event.
    Refuse,
    /// Under way until the test calls [`Peer::complete`] or [`Peer::refuse`]; a connect left
    /// alone never ends (a SYN nobody answers).
    Hold,
}

#[derive(Debug, Default)]
struct Nodes {
    answers: HashMap<SocketAddr, Answer>,
    /// Connections each backend has been dialed, not yet taken by the test.
    accepted: HashMap<SocketAddr, VecDeque<Peer>>,
    /// Every connection, for readiness.
    wires: Vec<Shared>,
}

/// The in-memory network of a test: its client connections and the backends the worker
/// dials (`Upstream::connect` hands out these instead of sockets once given the net).
#[derive(Debug, Clone, Default)]
pub struct Net(Rc<RefCell<Nodes>>);

impl Net {
    /// A backend at a fresh address answering connects with `answer`. The address is only a
    /// name here: nothing listens on it and nothing is sent to it.
    pub fn backend(&self, answer: Answer) -> TestBackend {
        let mut nodes = self.0.borrow_mut();
        let port = 9000 + u16::try_from(nodes.answers.len()).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        nodes.answers.insert(addr, answer);
        TestBackend {
            net: self.clone(),
            addr,
        }
    }

    /// A client connected to the proxy: the proxy's end and the test's.
    pub fn client(&self, peer_addr: SocketAddr) -> (MemStream, Peer) {
        let wire = Rc::new(RefCell::new(Wire::new(peer_addr, Connect::Connected)));
        self.0.borrow_mut().wires.push(wire.clone());
        (MemStream(wire.clone()), Peer(wire))
    }

    /// A non-blocking connect to the backend at `addr`.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<MemStream> {
        let mut nodes = self.0.borrow_mut();
        let answer = *nodes
            .answers
            .get(&addr)
            .unwrap_or_else(|| panic!("no test backend at {addr}"));
        let wire = Rc::new(RefCell::new(Wire::new(addr, Connect::Pending)));
        let peer = Peer(wire.clone());
        match answer {
            Answer::Accept => peer.complete(),
            Answer::Refuse => peer.refuse(),
            Answer::Hold => {}
        }
        nodes.wires.push(wire.clone());
        nodes.accepted.entry(addr).or_default().push_back(peer);
        Ok(MemStream(wire))
    }

    /// Readiness raised on registered connections since the last call, by token.
    pub fn take_events(&self) -> Vec<(Token, Readiness)> {
        let mut nodes = self.0.borrow_mut();
        // Connections both ends let go of are gone.
        nodes.wires.retain(|w| Rc::strong_count(w) > 1);
        nodes
            .wires
            .iter()
            .filter_map(|wire| {
                let mut w = wire.borrow_mut();
                let token = w.token?;
                let events = std::mem::take(&mut w.events);
                events.any().then_some((token, events))
            })
            .collect()
    }
}

/// A backend the test answers for by hand.
#[derive(Debug)]
pub struct TestBackend {
    net: Net,
    addr: SocketAddr,
}

impl TestBackend {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections the worker opened to this backend that the test has not taken.
    pub fn dialed(&self) -> usize {
        self.net
            .0
            .borrow()
            .accepted
            .get(&self.addr)
            .map_or(0, VecDeque::len)
    }

    /// The next connection the worker opened to this backend.
    pub fn accept(&self) -> Peer {
        self.net
            .0
            .borrow_mut()
            .accepted
            .get_mut(&self.addr)
            .and_then(VecDeque::pop_front)
            .expect("the worker never connected")
    }
}
