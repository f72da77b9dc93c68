//! The TLS byte stream to a client, with the same contract as a plain socket.
//!
//! A connection starts as a [`TlsAccept`]: it reads the ClientHello, and only then picks the
//! certificate, so that a client the listener has no certificate for (no SNI and no default,
//! an unknown name) is refused with an `unrecognized_name` alert — rustls' own resolver path
//! could only say `access_denied`. Once a certificate is found the connection becomes a
//! [`TlsStream`]; the rest of the handshake happens inside its reads and writes, invisibly to
//! the session above, which just sees no plaintext yet (`WouldBlock`).
//!
//! [`TlsStream`] keeps the client transport seam's contract (`front.rs`): a read keeps
//! decrypting records until the socket says `WouldBlock` or `dst` is full, so a short read
//! means nothing more is available now; `Ok(0)` is end of stream (`close_notify`, or the
//! client closing its side without one); a write accepts plaintext only while nothing older is
//! still waiting for the socket, and at most one record's worth ([`WRITE_CHUNK`]), so about one
//! record of ciphertext is ever held per connection; `shutdown_write` queues `close_notify` and half-closes the socket once that is
//! flushed.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::server::Acceptor;
use rustls::ServerConnection;

use super::config::ListenerTls;

/// Plaintext taken per write: one full TLS record. With the rule that nothing is taken while
/// older output waits, this bounds the ciphertext a connection holds to about one record.
pub const WRITE_CHUNK: usize = 16 * 1024;

/// rustls' limit on a connection's buffered plaintext and unsent records: one chunk and the
/// handshake's own flights, so a slow reader never makes a connection hold more.
pub const BUFFER_LIMIT: usize = 2 * WRITE_CHUNK;

/// A fatal `unrecognized_name` alert record, sent before any key exists (RFC 8446 6, 6.2).
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Why a connection was refused before its handshake could go on.
#[derive(Debug)]
pub enum Refusal {
    /// No certificate for the name the client asked (or for no name): `unrecognized_name`.
    UnrecognizedName,
    /// The ClientHello was refused (not TLS, TLS 1.0/1.1 only, no common suite...); rustls'
    /// alert was sent.
    Handshake(rustls::Error),
    /// The client closed or reset the connection first.
    Io(io::Error),
}

/// A connection refused: its socket (alert sent, write side shut) for the caller to close.
#[derive(Debug)]
pub struct Refused {
    pub tcp: TcpStream,
    pub why: Refusal,
}

/// What reading the start of a handshake led to.
#[derive(Debug)]
pub enum Accepting {
    /// The ClientHello is not whole yet: call [`TlsAccept::advance`] on the next readable event.
    Pending(Box<TlsAccept>),
    /// A certificate was found; the handshake goes on inside the stream. Its first flight may
    /// still be waiting for the socket (`has_pending_output`).
    Ready(Box<TlsStream>),
    Refused(Refused),
}

/// A connection whose ClientHello is still arriving.
pub struct TlsAccept {
    tcp: TcpStream,
    hello: HelloReader,
}

impl std::fmt::Debug for TlsAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAccept")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl TlsAccept {
    /// Boxed: a rustls connection under construction is over a kilobyte, and the session
    /// enum that holds it should not be.
    pub fn new(tcp: TcpStream) -> Box<TlsAccept> {
        Box::new(TlsAccept {
            tcp,
            hello: HelloReader::new(),
        })
    }

    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Reads what has arrived; once the ClientHello is whole, picks its certificate from the
    /// listener's current tables.
    pub fn advance(mut self: Box<Self>, listener: &ListenerTls) -> Accepting {
        match self.hello.advance(&mut self.tcp, listener) {
            Hello::Pending => Accepting::Pending(self),
            Hello::Refused(why) => Accepting::Refused(self.refuse(why)),
            Hello::Closed => {
                Accepting::Refused(self.refuse(Refusal::Io(io::ErrorKind::UnexpectedEof.into())))
            }
            Hello::Ready(conn) => match TlsStream::start(self.tcp, *conn) {
                Ok(stream) => Accepting::Ready(Box::new(stream)),
                Err(refused) => Accepting::Refused(refused),
            },
        }
    }

    fn refuse(self: Box<Self>, why: Refusal) -> Refused {
        let _ = self.tcp.shutdown(Shutdown::Write);
        Refused { tcp: self.tcp, why }
    }
}

/// What reading a ClientHello from a socket the caller keeps led to.
#[derive(Debug)]
pub enum Hello {
    /// Not whole yet: call [`HelloReader::advance`] again on the next readable event.
    Pending,
    /// A certificate was found: [`TlsStream::start`] goes on with the handshake.
    Ready(Box<ServerConnection>),
    /// Refused; the alert (if any) was written. The caller shuts the socket.
    Refused(Refusal),
    /// The client closed before sending a byte: a port probe (a load balancer's TCP health
    /// check, a readiness wait), not a failed handshake.
    Closed,
}

/// The ClientHello reader of [`TlsAccept`], for a caller that keeps the socket itself (a
/// worker session, whose socket stays in its transport until the stream takes it).
pub struct HelloReader {
    acceptor: Acceptor,
    /// Some byte of the ClientHello arrived.
    started: bool,
}

impl std::fmt::Debug for HelloReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloReader").finish_non_exhaustive()
    }
}

impl Default for HelloReader {
    fn default() -> Self {
        HelloReader::new()
    }
}

impl HelloReader {
    pub fn new() -> HelloReader {
        HelloReader {
            acceptor: Acceptor::default(),
            started: false,
        }
    }

    /// Reads what has arrived on `tcp`; once the ClientHello is whole, picks its certificate
    /// from the listener's current tables.
    pub fn advance(&mut self, tcp: &mut TcpStream, listener: &ListenerTls) -> Hello {
        loop {
            match self.acceptor.read_tls(tcp) {
                Ok(0) if !self.started => return Hello::Closed,
                Ok(0) => return Hello::Refused(Refusal::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => self.started = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Hello::Refused(Refusal::Io(e)),
            }
        }
        let accepted = match self.acceptor.accept() {
            Ok(None) => return Hello::Pending,
            Ok(Some(accepted)) => accepted,
            Err((e, mut alert)) => {
                let _ = alert.write(tcp);
                return Hello::Refused(Refusal::Handshake(e));
            }
        };
        if listener
            .resolver
            .choose(accepted.client_hello().server_name())
            .is_none()
        {
            let _ = tcp.write(&UNRECOGNIZED_NAME_ALERT);
            return Hello::Refused(Refusal::UnrecognizedName);
        }
        match accepted.into_connection(listener.config.clone()) {
            Ok(mut conn) => {
                // Bound what rustls may hold for this connection: plaintext written before the
                // handshake ends, and records not yet on the socket. `TlsStream` takes one
                // record at a time, so more is never needed.
                conn.set_buffer_limit(Some(BUFFER_LIMIT));
                Hello::Ready(Box::new(conn))
            }
            Err((e, mut alert)) => {
                let _ = alert.write(tcp);
                Hello::Refused(Refusal::Handshake(e))
            }
        }
    }
}

/// A client connection over TLS, past its ClientHello.
pub struct TlsStream {
    pub tcp: TcpStream,
    pub conn: ServerConnection,
    /// `shutdown_write` was asked while output was still waiting: the socket's write side is
    /// shut once it is flushed.
    shutdown_pending: bool,
    /// The socket failed with a reset.
    reset: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

impl TlsStream {
    pub fn new(tcp: TcpStream, conn: ServerConnection) -> TlsStream {
        TlsStream {
            tcp,
            conn,
            shutdown_pending: false,
            reset: false,
        }
    }

    /// Goes on with a handshake whose ClientHello was read: processes records that came with
    /// it and sends the first flight (what does not fit waits for `flush_output`).
    pub fn start(mut tcp: TcpStream, mut conn: ServerConnection) -> Result<TlsStream, Refused> {
        // Records that came with the ClientHello are buffered, not yet processed: do it now,
        // since no readiness event will come for bytes already read.
        if let Err(e) = conn.process_new_packets() {
            while conn.wants_write() && matches!(conn.write_tls(&mut tcp), Ok(n) if n > 0) {}
            let _ = tcp.shutdown(Shutdown::Write);
            return Err(Refused {
                tcp,
                why: Refusal::Handshake(e),
            });
        }
        let mut stream = TlsStream::new(tcp, conn);
        match stream.flush_output() {
            Ok(()) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(stream),
            Err(e) => Err(Refused {
                tcp: stream.tcp,
                why: Refusal::Io(e),
            }),
        }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Moves the handshake on without reading plaintext: `Ok(true)` once it is complete,
    /// `Ok(false)` while it waits for the client, an error if it failed or the client left.
    /// Application data that came with the client's last flight stays buffered for `read`.
    pub fn handshake(&mut self) -> io::Result<bool> {
        while self.conn.is_handshaking() {
            match self.flush_output() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            match self.read_records() {
                Ok(true) => {}
                Ok(false) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        // Our last flight and the session tickets go now; the rest waits for writable.
        match self.flush_output() {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Sends `close_notify`, then half-closes the socket once everything before it is out.
    pub fn shutdown_write(&mut self) {
        self.conn.send_close_notify();
        self.shutdown_pending = true;
        let _ = self.flush_output();
    }

    /// The client reset the connection, as opposed to closing its side.
    pub fn reset_by_peer(&self) -> bool {
        if self.reset {
            return true;
        }
        match self.tcp.peek(&mut [0u8; 1]) {
            Ok(_) => false,
            Err(e) => {
                e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted
            }
        }
    }

    /// Records (handshake messages, alerts, data) not yet on the socket, or a half-close not
    /// yet made.
    pub fn has_pending_output(&self) -> bool {
        self.conn.wants_write() || self.shutdown_pending
    }

    /// Pushes pending records to the socket; `Err(WouldBlock)` while it is full.
    pub fn flush_output(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.reset |= is_reset(&e);
                    return Err(e);
                }
            }
        }
        if self.shutdown_pending {
            self.shutdown_pending = false;
            // Not connected any more is as good as shut.
            let _ = self.tcp.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Reads records from the socket into rustls: `Ok(false)` at end of stream, `Ok(true)` if
    /// anything was read, `Err(WouldBlock)` if nothing was there.
    fn read_records(&mut self) -> io::Result<bool> {
        loop {
            match self.conn.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(false),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.reset |= is_reset(&e);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.conn.process_new_packets() {
            // rustls queued an alert for it: try to get it out before the session closes.
            let _ = self.flush_output();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(true)
    }
}

impl Read for TlsStream {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            match self.conn.reader().read(&mut dst[filled..]) {
                // A close_notify: nothing more will come.
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == dst.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client closed the socket without close_notify: the end of the stream,
                // as a half-close is for a plain socket (HTTP framing catches a cut body).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            let more = match self.read_records() {
                Ok(more) => more,
                // Hand over what was decrypted; a socket error shows again on the next read
                // (and a reset is remembered for `reset_by_peer`).
                Err(e) if filled > 0 && e.kind() != io::ErrorKind::InvalidData => {
                    return Ok(filled)
                }
                Err(e) => return Err(e),
            };
            // Reading may have produced records to send (the rest of the handshake, session
            // tickets, a key update): send what fits, the rest waits for `flush_output`.
            match self.flush_output() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if !more {
                // End of the socket: hand over what was decrypted, then Ok(0).
                return match self.conn.reader().read(&mut dst[filled..]) {
                    Ok(n) => Ok(filled + n),
                    Err(_) => Ok(filled),
                };
            }
        }
    }
}

impl TlsStream {
    /// Accepts plaintext only when nothing older is waiting, then pushes what it can.
    fn accept_plaintext(
        &mut self,
        put: impl FnOnce(&mut ServerConnection) -> io::Result<usize>,
    ) -> io::Result<usize> {
        match self.flush_output() {
            Ok(()) => {}
            Err(e) => return Err(e),
        }
        let n = put(&mut self.conn)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.flush_output() {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            // The bytes were taken; the failure shows on the next write or flush.
            Err(_) => Ok(n),
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let buf = &buf[..buf.len().min(WRITE_CHUNK)];
        self.accept_plaintext(|conn| conn.writer().write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total <= WRITE_CHUNK {
            return self.accept_plaintext(|conn| conn.writer().write_vectored(bufs));
        }
        // Over one record: a short write of the first buffer (the caller writes the rest).
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.write(first)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_output()
    }
}
