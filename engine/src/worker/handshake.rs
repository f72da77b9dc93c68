//! An https session before it speaks HTTP: its TLS handshake, and the log of failed ones.
//!
//! The session reads the ClientHello while its transport is still the plain socket
//! ([`Handshake::Hello`]); once a certificate is chosen the event loop moves the socket into a
//! [`TlsStream`] (the `Tls` transport) and the rest of the handshake runs there
//! ([`Handshake::Keys`]). When it completes the session becomes `Http` in place. The whole
//! handshake is bounded by the listener's request timeout, set when the connection was
//! accepted and kept until the first request is read.
//!
//! Failures (unknown name, refused version, garbage, the client leaving, the timeout) are
//! counted and logged with the client's address, rate-limited per worker by a token bucket
//! ([`crate::log_limit`]: bursts of [`LOG_BURST`], then [`LOG_LINES_PER_SECOND`] a second);
//! a "suppressed N messages" line comes before the next line written.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use rustls::ServerConnection;

use super::context::Context;
use super::front::{FrontIo, Transport};
use super::tls::{Hello, HelloReader, ListenerTls, Refusal};
use crate::log_limit::{Admit, LogLimit};

/// Handshake failure lines a worker writes per second at most, after a burst.
pub const LOG_LINES_PER_SECOND: u32 = 5;
/// Handshake failure lines a worker writes at once before the rate applies.
pub const LOG_BURST: u32 = 10;

/// Where an https session's handshake is.
#[derive(Debug)]
pub enum Handshake {
    /// Reading the ClientHello from the plain transport.
    Hello(Box<HelloReader>),
    /// A certificate was chosen; the handshake goes on in the `Tls` transport.
    Keys,
}

/// What driving a handshake decided.
#[derive(Debug)]
pub enum Shaken {
    Wait,
    /// Failed (counted and logged): close the session.
    Close,
    /// The ClientHello was read and a certificate chosen: move the socket into a `TlsStream`
    /// with this connection, then drive again.
    Hello(Box<ServerConnection>),
    /// Complete: the session speaks HTTP from now on.
    Done,
}

impl Handshake {
    pub fn new() -> Handshake {
        Handshake::Hello(Box::default())
    }

    /// Moves the handshake on; `tls` is the listener's configuration (`None`: the listener
    /// is gone, and so is the session).
    pub fn drive(
        &mut self,
        io: &mut FrontIo,
        cx: &mut Context,
        tls: Option<&ListenerTls>,
        log: &mut FailureLog,
    ) -> Shaken {
        match self {
            Handshake::Hello(reader) => {
                let (Some(tls), Transport::Plain(tcp)) = (tls, &mut io.transport) else {
                    return Shaken::Close;
                };
                io.readable = false;
                match reader.advance(tcp, tls) {
                    Hello::Pending => Shaken::Wait,
                    Hello::Ready(conn) => {
                        *self = Handshake::Keys;
                        Shaken::Hello(conn)
                    }
                    Hello::Refused(why) => {
                        let _ = tcp.shutdown(Shutdown::Write);
                        fail(io.peer, cx, log, &Why::Refused(why))
                    }
                    // Not counted nor logged: probes would drown the real failures.
                    Hello::Closed => Shaken::Close,
                }
            }
            Handshake::Keys => {
                let Transport::Tls(stream) = &mut io.transport else {
                    return Shaken::Close;
                };
                io.readable = false;
                match stream.handshake() {
                    Ok(false) => Shaken::Wait,
                    Ok(true) => {
                        cx.metrics.tls_handshakes += 1;
                        Shaken::Done
                    }
                    Err(e) => fail(io.peer, cx, log, &Why::Io(e)),
                }
            }
        }
    }

    /// The request timeout passed before the handshake completed.
    pub fn on_timeout(&mut self, io: &mut FrontIo, cx: &mut Context, log: &mut FailureLog) {
        cx.metrics.timeouts.request += 1;
        fail(io.peer, cx, log, &Why::TimedOut);
    }
}

impl Default for Handshake {
    fn default() -> Self {
        Handshake::new()
    }
}

/// Why a handshake failed, for the log line.
enum Why {
    Refused(Refusal),
    Io(io::Error),
    TimedOut,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Refused(Refusal::UnrecognizedName) => {
                f.write_str("no certificate for the requested name (unrecognized_name)")
            }
            Why::Refused(Refusal::Handshake(e)) => write!(f, "{e}"),
            Why::Refused(Refusal::Io(e)) | Why::Io(e) => match e.kind() {
                io::ErrorKind::UnexpectedEof => f.write_str("the client closed the connection"),
                _ => write!(f, "{e}"),
            },
            Why::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The handshake of `peer` failed after its ClientHello was read, as its socket moved into
/// the `Tls` transport.
pub fn refused(peer: SocketAddr, cx: &mut Context, log: &mut FailureLog, why: Refusal) {
    fail(peer, cx, log, &Why::Refused(why));
}

fn fail(peer: SocketAddr, cx: &mut Context, log: &mut FailureLog, why: &Why) -> Shaken {
    cx.metrics.tls_handshake_failures += 1;
    log.write(cx.now, cx.config.id, peer, why);
    Shaken::Close
}

/// Rate-limited handshake failure lines on stderr.
#[derive(Debug)]
pub struct FailureLog {
    limit: LogLimit,
}

impl FailureLog {
    pub fn new(now: Instant) -> FailureLog {
        FailureLog {
            limit: LogLimit::new(LOG_BURST, LOG_LINES_PER_SECOND, now),
        }
    }

    /// The lines to write for a failure at `now` (a "suppressed" line first when lines were
    /// dropped), or nothing when the bucket is empty.
    fn lines(
        &mut self,
        now: Instant,
        worker: u32,
        peer: SocketAddr,
        why: &dyn fmt::Display,
    ) -> Option<String> {
        let Admit::Write { suppressed } = self.limit.admit(now) else {
            return None;
        };
        let pid = std::process::id();
        let mut lines = String::new();
        if suppressed > 0 {
            lines = format!("weir[worker {worker} {pid}] warn: suppressed {suppressed} messages\n");
        }
        lines.push_str(&format!(
            "weir[worker {worker} {pid}] warn: TLS handshake from {peer} failed: {why}"
        ));
        Some(lines)
    }

    fn write(&mut self, now: Instant, worker: u32, peer: SocketAddr, why: &dyn fmt::Display) {
        if let Some(lines) = self.lines(now, worker, peer, why) {
            eprintln!("{lines}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failure_lines_are_rate_limited_and_say_how_many_were_suppressed() {
        let start = Instant::now();
        let mut log = FailureLog::new(start);
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let written = (0..20)
            .filter_map(|_| log.lines(start, 0, peer, &"bad"))
            .count();
        assert_eq!(written, LOG_BURST as usize);
        let next = log
            .lines(start + Duration::from_secs(1), 0, peer, &"bad")
            .unwrap();
        assert!(next.contains("127.0.0.1:4000"), "{next}");
        assert!(next.contains("suppressed 10 messages\n"), "{next}");
        let after = log
            .lines(start + Duration::from_secs(1), 0, peer, &"bad")
            .unwrap();
        assert!(!after.contains("suppressed"), "{after}");
    }
}
