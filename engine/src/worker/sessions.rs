//! Sessions and their tokens.
//!
//! A session owns one client connection (its "front") and, through a [`Link`], at most one
//! backend connection at a time. Sessions sit in a `Slab`; mio tokens encode what a readiness
//! event is for in their two low bits, so dispatch is a shift and a match:
//! a front socket is `key << 2 | 0`, a backend connection `conn << 2 | 1` (its
//! [`BackConn::owner`](super::upstream::BackConn) names the session), a listener `key << 2 | 2`,
//! and the rest (the main-process channel, health probes) `n << 2 | 3`.
//!
//! [`Link`]: super::upstream::Link

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpStream;
use weir_schema::{Listener, Protocol as ListenerProtocol};

use crate::channel::WorkerConfig;

use super::http::session::HttpSession;
use super::pipe::Pipe;
use super::timer::Deadline;

const TAG_BITS: usize = 2;
const TAG_MASK: usize = 0b11;

/// What a mio token designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Front(usize),
    Back(usize),
    Listener(usize),
    /// 0 is the channel; n ≥ 1 is health probe n − 1.
    Other(usize),
}

pub fn token_front(key: usize) -> usize {
    key << TAG_BITS
}

pub fn token_back(conn: usize) -> usize {
    (conn << TAG_BITS) | 1
}

pub fn token_listener(key: usize) -> usize {
    (key << TAG_BITS) | 2
}

pub fn token_other(n: usize) -> usize {
    (n << TAG_BITS) | 3
}

pub fn decode_token(token: usize) -> TokenKind {
    let key = token >> TAG_BITS;
    match token & TAG_MASK {
        0 => TokenKind::Front(key),
        1 => TokenKind::Back(key),
        2 => TokenKind::Listener(key),
        _ => TokenKind::Other(key),
    }
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
        }
    }
}

/// The client side of a session.
#[derive(Debug)]
pub struct FrontIo {
    pub key: usize,
    pub serial: u64,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// The settings of the listener it came from; an `UpdateListener` swaps in the new ones,
    /// which apply from the next request on.
    pub info: Rc<ListenerInfo>,
    /// Readiness seen since the last `WouldBlock` (edge-triggered).
    pub readable: bool,
    /// The peer closed its side (or the socket failed): keep reading until 0 or an error.
    pub read_closed: bool,
    /// Listed in [`Context::buffer_waiters`](super::context::Context::buffer_waiters).
    pub waiting_for_buffer: bool,
    pub deadline: Deadline,
}

/// Place-holder for TLS, which a later issue adds: it cannot be built, so https connections
/// are closed at accept until then.
#[derive(Debug)]
pub enum TlsPending {}

/// What a session speaks; it upgrades in place (`TlsHandshake → Http → Pipe`).
#[derive(Debug)]
pub enum Protocol {
    /// Where rustls will terminate HTTPS before handing the session to `Http`.
    #[allow(dead_code)] // Uninhabited until TLS lands.
    TlsHandshake(TlsPending),
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

/// What driving a session decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Waiting for readiness or a timer.
    Wait,
    /// Done: tear it down.
    Close,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in [0usize, 1, 7, 1 << 40] {
            assert_eq!(decode_token(token_front(key)), TokenKind::Front(key));
            assert_eq!(decode_token(token_back(key)), TokenKind::Back(key));
            assert_eq!(decode_token(token_listener(key)), TokenKind::Listener(key));
            assert_eq!(decode_token(token_other(key)), TokenKind::Other(key));
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle keep-alive connection costs its slab entry and nothing else (no buffer): keep
    /// that entry small. The bound leaves room, it is not the measured size.
    #[test]
    fn an_idle_session_is_small() {
        let size = std::mem::size_of::<slab::Slab<Session>>();
        assert!(size > 0);
        let entry = std::mem::size_of::<Session>();
        assert!(entry <= 200, "Session is {entry} bytes");
    }
}
