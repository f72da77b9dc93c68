//! The client side of a session: its byte stream ([`Transport`]), the settings of the
//! listener it came from ([`ListenerInfo`]) and what the event loop tracks for it
//! ([`FrontIo`]).
//!
//! [`Transport`] is the one seam through which the HTTP and pipe code read and write client
//! bytes: plain TCP, or TLS ([`TlsStream`], which decrypts on read and encrypts on write), so
//! nothing above the seam knows which. It is an enum, not a trait object:
//! dispatch is a match the compiler sees through, with no allocation and no indirect call.
//!
//! Its contract: a short read (`Ok(n)` with `n` below the room given) means the transport has
//! nothing more to give right now, as the edge-triggered code assumes of a plain socket;
//! `Ok(0)` is end of stream. A write returns how many plaintext bytes were accepted, and
//! `Err(WouldBlock)` when none could be. Bytes accepted but not yet on the socket
//! ([`Transport::has_pending_output`]) are pushed by [`Transport::flush_output`] on the
//! socket's next writable event, and a session never closes cleanly before they are out.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use weir_schema::{Listener, Protocol as ListenerProtocol};

#[cfg(test)]
use super::memory::MemStream;
use super::per_ip::IpSlot;
use super::timer::Deadline;
use super::tls::TlsStream;
use crate::channel::WorkerConfig;

/// The byte stream to a client. An https session's transport is `Plain` while its
/// ClientHello is read (nothing is read through the seam then), and `Tls` from then on. Test
/// builds add an in-memory stream, so sessions are unit-tested without sockets.
#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    /// Boxed: a rustls connection is over a kilobyte, an idle plain session's entry is small.
    Tls(Box<TlsStream>),
    #[cfg(test)]
    Memory(MemStream),
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(dst),
            Transport::Tls(s) => s.read(dst),
            #[cfg(test)]
            Transport::Memory(m) => m.read(dst),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(src),
            Transport::Tls(s) => s.write(src),
            #[cfg(test)]
            Transport::Memory(m) => m.write(src),
        }
    }

    /// Forwarded, not left to the default (which would write only the first slice).
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(s) => s.write_vectored(bufs),
            #[cfg(test)]
            Transport::Memory(m) => m.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_output()
    }
}

/// Registration is the socket's (the in-memory stream only records its token).
impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.register(registry, token, interests),
            Transport::Tls(s) => s.socket_mut().register(registry, token, interests),
            #[cfg(test)]
            Transport::Memory(m) => {
                m.register(token);
                Ok(())
            }
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.reregister(registry, token, interests),
            Transport::Tls(s) => s.socket_mut().reregister(registry, token, interests),
            #[cfg(test)]
            Transport::Memory(m) => {
                m.register(token);
                Ok(())
            }
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.deregister(registry),
            Transport::Tls(s) => s.socket_mut().deregister(registry),
            #[cfg(test)]
            Transport::Memory(m) => {
                m.deregister();
                Ok(())
            }
        }
    }
}

impl Transport {
    /// Ends what we send (a half-close); what the client still sends can be read.
    pub fn shutdown_write(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Transport::Tls(s) => s.shutdown_write(),
            #[cfg(test)]
            Transport::Memory(m) => m.shutdown_write(),
        }
    }

    /// Whether a client whose side closed reset the connection (its socket has an error), as
    /// opposed to half-closing it.
    pub fn reset_by_peer(&self) -> bool {
        let peeked = match self {
            Transport::Plain(s) => s.peek(&mut [0u8; 1]),
            Transport::Tls(s) => return s.reset_by_peer(),
            #[cfg(test)]
            Transport::Memory(m) => m.peek(&mut [0u8; 1]),
        };
        match peeked {
            Ok(_) => false,
            Err(e) => {
                e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted
            }
        }
    }

    /// Bytes accepted by `write` but not yet on the socket (never, for plain TCP), or a TLS
    /// half-close not yet made.
    #[inline]
    pub fn has_pending_output(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(s) => s.has_pending_output(),
            #[cfg(test)]
            Transport::Memory(_) => false,
        }
    }

    /// Pushes pending output to the socket; `Err(WouldBlock)` while the socket is full.
    #[inline]
    pub fn flush_output(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(s) => s.flush_output(),
            #[cfg(test)]
            Transport::Memory(_) => Ok(()),
        }
    }
}

/// Requests served on a connection when its listener sets no `max_requests_per_connection`
/// (nginx's `keepalive_requests`).
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
/// Time a client has to take the response bytes waiting for it when its listener sets no
/// `send_timeout` (nginx's `send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a listener does with request fields whose names hold `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underscores {
    /// Dropped, as nginx drops them by default.
    Drop,
    /// Kept, but for names that spell a framing, routing or forwarding field.
    Keep,
}

/// A listener's settings as sessions use them.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// The listener's address, which routes are keyed by.
    pub address: SocketAddr,
    pub protocol: ListenerProtocol,
    pub port: u16,
    pub front_timeout: Duration,
    pub tunnel_timeout: Duration,
    pub request_timeout: Duration,
    pub max_request_body: Option<u64>,
    /// The listener's own bodies for the 404 and 503 answers.
    pub answer_404: Option<Rc<str>>,
    pub answer_503: Option<Rc<str>>,
    pub underscores: Underscores,
    pub max_connections_per_ip: Option<u32>,
    pub max_requests_per_connection: u32,
    pub request_body_timeout: Option<Duration>,
    pub send_timeout: Duration,
    /// The field the backend gets the request's id in, if the listener sets one.
    pub request_id_header: Option<Rc<str>>,
}

impl ListenerInfo {
    /// The listener's settings, with the worker's defaults where it sets none.
    pub fn new(listener: &Listener, defaults: &WorkerConfig) -> ListenerInfo {
        let s = &listener.settings;
        ListenerInfo {
            address: listener.address,
            protocol: listener.protocol,
            port: listener.address.port(),
            front_timeout: s.front_timeout.unwrap_or(defaults.front_timeout),
            tunnel_timeout: s.tunnel_timeout.unwrap_or(defaults.tunnel_timeout),
            request_timeout: s.request_timeout.unwrap_or(defaults.request_timeout),
            max_request_body: s.max_request_body,
            answer_404: s.answer_404.as_deref().map(Rc::from),
            answer_503: s.answer_503.as_deref().map(Rc::from),
            underscores: if s.allow_underscores_in_headers {
                Underscores::Keep
            } else {
                Underscores::Drop
            },
            max_connections_per_ip: s.max_connections_per_ip,
            max_requests_per_connection: s
                .max_requests_per_connection
                .unwrap_or(DEFAULT_MAX_REQUESTS_PER_CONNECTION),
            request_body_timeout: s.request_body_timeout,
            send_timeout: s.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT),
            request_id_header: s.request_id_header.as_deref().map(Rc::from),
        }
    }
}

/// The client side of a session.
#[derive(Debug)]
pub struct FrontIo {
    pub key: usize,
    pub serial: u64,
    pub transport: Transport,
    pub peer: SocketAddr,
    /// The settings of the listener it came from; an `UpdateListener` swaps in the new ones,
    /// which apply from the next request on.
    pub info: Rc<ListenerInfo>,
    /// Readiness seen since the last `WouldBlock` (edge-triggered).
    pub readable: bool,
    /// The peer closed its side (or the socket failed): keep reading until 0 or an error.
    pub read_closed: bool,
    /// Listed in the context's `buffer_waiters`, to be driven again once a buffer is free.
    pub waiting_for_buffer: bool,
    pub deadline: Deadline,
    /// Its place in the listener's connections per address, when the listener limits them.
    pub ip_slot: Option<Box<IpSlot>>,
}

impl FrontIo {
    /// (client, listener): the addresses an access line shows.
    pub fn peers(&self) -> (SocketAddr, SocketAddr) {
        (self.peer, self.info.address)
    }
}
