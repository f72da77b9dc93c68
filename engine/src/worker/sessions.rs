//! Sessions: one client connection each and the protocol it speaks.
//!
//! A session owns its client side ([`FrontIo`]) and, through its protocol, at most one backend
//! connection at a time. Sessions sit in a `Slab`; their tokens are in [`super::token`].

use super::front::FrontIo;
use super::handshake::Handshake;
use super::http::session::HttpSession;
use super::pipe::Pipe;

/// What a session speaks; it upgrades in place (`TlsHandshake → Http → Pipe`).
#[derive(Debug)]
pub enum Protocol {
    /// An https connection until its handshake completes; then `Http` over the `Tls`
    /// transport.
    TlsHandshake(Handshake),
    Http(HttpSession),
    /// Bytes both ways: TCP listeners, and WebSocket after a `101`.
    Pipe(Box<Pipe>),
}

/// One client connection and what it is doing.
#[derive(Debug)]
pub struct Session {
    pub io: FrontIo,
    pub protocol: Protocol,
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle keep-alive connection costs its slab entry and nothing else (no buffer): keep
    /// that entry small. The bound is the measured size (the limits of issue 17 added 16
    /// bytes: the per-address slot of `max_connections_per_ip`, boxed so a listener without
    /// the limit pays only the pointer, and the idle stamp the connection cap closes by; the
    /// incremental head scan of issue 17 added 24, where the head's bytes already looked at
    /// are; the access log's line key shares a word with the served count).
    #[test]
    fn an_idle_session_is_small() {
        let size = std::mem::size_of::<slab::Slab<Session>>();
        assert!(size > 0);
        let entry = std::mem::size_of::<Session>();
        assert!(entry <= 248, "Session is {entry} bytes");
    }
}
