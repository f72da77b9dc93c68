//! The HTTP/1.1 state machine of one client connection.
//!
//! A connection handles one request at a time: [`Phase::Head`] reads and checks a request
//! head, [`Phase::Exchange`] streams the request to a backend and the response back (both
//! directions at once, so `Expect: 100-continue` and early answers work), then the connection
//! returns to `Head` — where bytes of a pipelined request may already wait in the buffer — or
//! closes. [`Phase::Answer`] writes one of the proxy's own answers and [`Phase::Linger`] reads
//! and drops what the client still sends after a closing answer, so that closing does not
//! reset the connection under the answer.
//!
//! Buffers: `front_in` holds client bytes while any are pending; an [`Exchange`] holds the
//! rewritten request head (`head_out`, kept until the backend starts answering so a request on
//! a stale pooled connection can be replayed), the backend's bytes (`resp_in`) and the
//! rewritten response head (`resp_out`). Bodies are not copied: they are written from the
//! buffer they were read into, next to the rewritten head, in one `writev` — except a small
//! response body (up to `COALESCE_MAX`), copied behind its head so that both leave in one
//! plain `send`, which costs the kernel less than a `writev`.

use std::io::{self, IoSlice, Write};
use std::rc::Rc;
use std::time::Duration;

use super::answers::{Answer, Status};
use super::body::BodyFramer;
use super::parser::{
    header_slots, parse_request, parse_response, upgrade_accepted, write_request_head,
    write_response_head, ClientConnection, ClientInfo, Framing, HeadError, RequestHead,
};
use super::path::routing_path;
use crate::worker::buffer::Buf;
use crate::worker::context::Context;
use crate::worker::front::FrontIo;
use crate::worker::router::normalize_host;
use crate::worker::upstream::{Attempt, Link, NoBackend};

/// How long a closing connection keeps reading (and dropping) client bytes.
const LINGER: Duration = Duration::from_secs(2);
/// Response body bytes up to this many are copied behind the response head (see
/// [`send_response`]); larger bodies go out from their own buffer.
const COALESCE_MAX: usize = 1024;

/// What one step of the state machine did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Progress,
    Blocked,
    Close,
    Upgrade,
}

/// What driving decided, for the session owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    Wait,
    Close,
    /// A `101` was forwarded: the session becomes a byte pipe ([`HttpSession::into_pipe_parts`]).
    Upgrade,
}

#[derive(Debug)]
enum Phase {
    Head,
    Exchange(Box<Exchange>),
    Answer {
        bytes: Vec<u8>,
        written: usize,
        close: bool,
    },
    /// A closing answer is written: the transport's own pending output goes out, then our
    /// side of the connection is shut.
    Closing,
    Linger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resp {
    AwaitHead,
    Body,
}

/// One request/response exchange with a backend.
#[derive(Debug)]
struct Exchange {
    attempt: Attempt,
    link: Link,
    connected: bool,
    /// Connect to a fresh connection only (replaying after a stale pooled one failed).
    fresh_only: bool,
    head_out: Option<Buf>,
    head_sent: usize,
    /// Idempotent and bodiless: may be replayed on a fresh connection.
    replayable: bool,
    req: BodyFramer,
    /// Client bytes at the front of `front_in` that belong to this request's body.
    req_fwd: usize,
    max_body: Option<u64>,
    /// Writing to the backend failed after it started answering: stop sending.
    req_abandoned: bool,
    resp_in: Option<Buf>,
    resp_out: Option<Buf>,
    resp: Resp,
    resp_body: BodyFramer,
    resp_fwd: usize,
    /// The backend sent at least one byte.
    resp_started: bool,
    /// A response head waits in `resp_in` for a buffer to be rewritten into.
    head_parked: bool,
    /// A final response head went to the client (after that, errors can only close).
    resp_forwarded: bool,
    backend_eof: bool,
    backend_keep_alive: bool,
    is_head: bool,
    /// The protocols an upgrade request offered (`None`: not an upgrade request).
    upgrade: Option<Box<[u8]>>,
    client_keep_alive: bool,
    client_http10: bool,
    close_client: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Exchange {
    fn request_sent(&self) -> bool {
        self.head_out
            .as_ref()
            .is_none_or(|h| self.head_sent >= h.len())
            && self.req.is_done()
            && self.req_fwd == 0
    }

    /// Gives back the rewritten request head once it can no longer be needed: sent whole,
    /// and either not replayable or answered (a replayable request on a pooled connection is
    /// kept until its first answer byte, since a stale pooled connection fails exactly there).
    fn release_sent_head(&mut self, cx: &mut Context) {
        if self
            .head_out
            .as_ref()
            .is_some_and(|h| self.head_sent >= h.len())
            && (!self.replayable || self.resp_started)
        {
            cx.pool.release(&mut self.head_out);
        }
    }
}

/// Why a request was answered by the proxy itself.
#[derive(Debug)]
struct Refusal {
    status: Status,
    keep_alive: bool,
    /// The listener's own body for this answer.
    custom: Option<Rc<str>>,
    /// The refused request was `HEAD` (known once its head parsed): no body in the answer.
    head_only: bool,
}

impl Refusal {
    fn close(status: Status) -> Refusal {
        Refusal {
            status,
            keep_alive: false,
            custom: None,
            head_only: false,
        }
    }
}

/// The HTTP side of a session.
#[derive(Debug)]
pub struct HttpSession {
    phase: Phase,
    front_in: Option<Buf>,
    /// Requests completed on this connection.
    served: u64,
}

impl Default for HttpSession {
    fn default() -> Self {
        HttpSession::new()
    }
}

impl HttpSession {
    pub fn new() -> HttpSession {
        HttpSession {
            phase: Phase::Head,
            front_in: None,
            served: 0,
        }
    }

    /// Makes every step possible until the session must wait or is done.
    pub fn drive(&mut self, io: &mut FrontIo, cx: &mut Context) -> Drive {
        loop {
            let step = match &mut self.phase {
                Phase::Head => self.step_head(io, cx),
                Phase::Exchange(_) => self.step_exchange(io, cx),
                Phase::Answer { .. } => self.step_answer(io, cx),
                Phase::Closing => self.step_closing(io),
                Phase::Linger => step_linger(io),
            };
            match step {
                Step::Progress => continue,
                Step::Blocked => return Drive::Wait,
                Step::Close => return Drive::Close,
                Step::Upgrade => return Drive::Upgrade,
            }
        }
    }

    /// The session's deadline passed.
    pub fn on_timeout(&mut self, io: &mut FrontIo, cx: &mut Context) -> Drive {
        match &mut self.phase {
            Phase::Head => {
                let started = self.front_in.as_ref().is_some_and(|b| !b.is_empty());
                if started || self.served == 0 {
                    self.answer(Refusal::close(Status::RequestTimeout), io, cx);
                    self.drive(io, cx)
                } else {
                    Drive::Close
                }
            }
            Phase::Exchange(ex) => {
                if !ex.connected {
                    match self.connect_failed(io, cx) {
                        Ok(()) => self.drive(io, cx),
                        Err(refusal) => {
                            self.answer(refusal, io, cx);
                            self.drive(io, cx)
                        }
                    }
                } else if !ex.resp_forwarded {
                    self.answer(Refusal::close(Status::GatewayTimeout), io, cx);
                    self.drive(io, cx)
                } else {
                    Drive::Close
                }
            }
            Phase::Answer { .. } | Phase::Closing | Phase::Linger => Drive::Close,
        }
    }

    /// Gives back every buffer and backend connection (the session is closing).
    pub fn teardown(&mut self, cx: &mut Context) {
        self.end_exchange(cx, false);
        cx.pool.release(&mut self.front_in);
    }

    /// After [`Drive::Upgrade`]: the backend link and the bytes each way (client bytes for the
    /// backend, then the `101` head and any backend bytes for the client).
    pub fn into_pipe_parts(mut self) -> Option<(Link, Option<Buf>, Option<Buf>)> {
        let Phase::Exchange(ex) = std::mem::replace(&mut self.phase, Phase::Linger) else {
            return None;
        };
        let ex = *ex;
        // `resp_out` holds the 101 head, with the backend's first bytes appended by
        // `read_response`.
        Some((ex.link, self.front_in.take(), ex.resp_out))
    }

    // ---- reading a request head ---------------------------------------------------------

    fn step_head(&mut self, io: &mut FrontIo, cx: &mut Context) -> Step {
        if let Some(step) = self.try_head(io, cx) {
            return step;
        }
        if !io.readable {
            cx.pool.release_if_empty(&mut self.front_in);
            // Stopping closes idle keep-alive connections, once a read found nothing waiting.
            // A connection that has not had its first request yet gets it served (with
            // `Connection: close`): its client has sent it, or is about to.
            if cx.stopping && self.served > 0 && self.front_in.is_none() {
                return Step::Close;
            }
            return Step::Blocked;
        }
        if self.front_in.is_none() {
            match cx.pool.get() {
                Some(buf) => self.front_in = Some(buf),
                None => {
                    self.answer(Refusal::close(Status::Unavailable), io, cx);
                    return Step::Progress;
                }
            }
        }
        let Some(buf) = self.front_in.as_mut() else {
            return Step::Close;
        };
        let was_empty = buf.is_empty();
        match buf.read_some(&mut io.transport) {
            Ok((0, _)) => Step::Close,
            Ok((n, filled)) => {
                if !filled && !io.read_closed {
                    io.readable = false;
                }
                cx.metrics.bytes_in += n as u64;
                if was_empty {
                    io.deadline.at = cx.now + io.info.request_timeout;
                }
                Step::Progress
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable = false;
                cx.pool.release_if_empty(&mut self.front_in);
                Step::Blocked
            }
            Err(_) => Step::Close,
        }
    }

    /// Parses the buffered request head, if a whole one is there, and starts its exchange
    /// (or answers it). `None`: more bytes are needed.
    fn try_head(&mut self, io: &mut FrontIo, cx: &mut Context) -> Option<Step> {
        let mut buf = self.front_in.take()?;
        if buf.is_empty() {
            self.front_in = Some(buf);
            return None;
        }
        let mut headers = header_slots();
        let (len, started) = match parse_request(buf.pending(), &mut headers) {
            Ok(Some(head)) => (
                head.raw.len(),
                begin(&head, io, cx).map_err(|refusal| Refusal {
                    head_only: head.is_head(),
                    ..refusal
                }),
            ),
            Ok(None) if !buf.is_full() => {
                self.front_in = Some(buf);
                return None;
            }
            // A full buffer without even the end of the request line is a target too long
            // for us (414, as nginx and HAProxy answer); otherwise the fields are (431).
            Ok(None) if !buf.pending().contains(&b'\n') => {
                (0, Err(Refusal::close(Status::UriTooLong)))
            }
            Ok(None) | Err(HeadError::TooManyHeaders) => {
                (0, Err(Refusal::close(Status::HeadTooLarge)))
            }
            Err(HeadError::VersionNotSupported) => {
                (0, Err(Refusal::close(Status::VersionNotSupported)))
            }
            Err(HeadError::UnsupportedCoding) => (0, Err(Refusal::close(Status::NotImplemented))),
            Err(HeadError::Malformed(_)) => (0, Err(Refusal::close(Status::BadRequest))),
        };
        let mut ex = match started {
            Ok(ex) => ex,
            Err(refusal) => {
                // A kept connection must not see this head again; a closing one drops it all.
                if refusal.keep_alive {
                    buf.consume(len);
                }
                self.front_in = Some(buf);
                self.answer(refusal, io, cx);
                return Some(Step::Progress);
            }
        };
        buf.consume(len);
        // Body bytes that arrived with the head.
        let early = ex.req.advance(buf.pending());
        self.front_in = Some(buf);
        // Nothing more to read for now: the buffer goes back while the backend answers (one
        // is taken again when body bytes or a pipelined request arrive), so an exchange in
        // flight holds only the buffers it fills.
        cx.pool.release_if_empty(&mut self.front_in);
        let refused = match early {
            Err(_) => Some(Status::BadRequest),
            Ok(_) if ex.max_body.is_some_and(|max| ex.req.data_bytes() > max) => {
                Some(Status::PayloadTooLarge)
            }
            Ok(n) => {
                ex.req_fwd = n;
                None
            }
        };
        // A pooled connection is connected already: no connect timeout to watch.
        io.deadline.at = cx.now
            + if ex.connected {
                ex.response_timeout
            } else {
                ex.connect_timeout
            };
        self.phase = Phase::Exchange(ex);
        if let Some(status) = refused {
            self.answer(Refusal::close(status), io, cx);
        }
        Some(Step::Progress)
    }

    // ---- the proxy's own answers ----------------------------------------------------------

    fn answer(&mut self, refusal: Refusal, io: &mut FrontIo, cx: &mut Context) {
        let head_only =
            refusal.head_only || matches!(&self.phase, Phase::Exchange(ex) if ex.is_head);
        self.end_exchange(cx, false);
        let close = !refusal.keep_alive || cx.stopping;
        if close {
            cx.pool.release(&mut self.front_in);
        }
        cx.metrics.count_status(refusal.status.code());
        let bytes = Answer {
            status: refusal.status,
            custom_body: refusal.custom.as_deref(),
            close,
            head_only,
        }
        .render(&cx.date);
        io.deadline.at = cx.now + io.info.front_timeout;
        self.phase = Phase::Answer {
            bytes,
            written: 0,
            close,
        };
    }

    fn step_answer(&mut self, io: &mut FrontIo, cx: &mut Context) -> Step {
        let Phase::Answer {
            bytes,
            written,
            close,
        } = &mut self.phase
        else {
            return Step::Close;
        };
        let rest = bytes.get(*written..).unwrap_or_default();
        if !rest.is_empty() {
            return match io.transport.write(rest) {
                Ok(n) => {
                    *written += n;
                    cx.metrics.bytes_out += n as u64;
                    Step::Progress
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Progress,
                Err(_) => Step::Close,
            };
        }
        if *close {
            io.deadline.at = cx.now + LINGER;
            self.phase = Phase::Closing;
        } else {
            self.served += 1;
            self.phase = Phase::Head;
            io.deadline.at = cx.now + io.info.front_timeout;
        }
        Step::Progress
    }

    /// Flushes what the transport still holds, then half-closes and lingers.
    fn step_closing(&mut self, io: &mut FrontIo) -> Step {
        if io.transport.has_pending_output() {
            match io.transport.flush_output() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Progress,
                Err(_) => return Step::Close,
            }
        }
        io.transport.shutdown_write();
        self.phase = Phase::Linger;
        Step::Progress
    }

    // ---- the exchange with a backend ----------------------------------------------------

    fn step_exchange(&mut self, io: &mut FrontIo, cx: &mut Context) -> Step {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Step::Close;
        };
        let mut progress = false;

        // Connecting.
        if !ex.connected {
            match cx.upstream.check_connect(ex.link) {
                None => return Step::Blocked,
                Some(Ok(())) => {
                    ex.connected = true;
                    cx.upstream.record_success(ex.link.backend);
                    io.deadline.at = cx.now + ex.response_timeout;
                    progress = true;
                }
                Some(Err(_)) => {
                    return match self.connect_failed(io, cx) {
                        Ok(()) => Step::Progress,
                        Err(refusal) => {
                            self.answer(refusal, io, cx);
                            Step::Progress
                        }
                    };
                }
            }
        }

        // Client → backend: the rewritten head, then body bytes, in one writev.
        match send_request(ex, &mut self.front_in, cx) {
            Ok(p) => progress |= p,
            Err(()) => {
                if !ex.resp_started {
                    return self.replay_or(Status::BadGateway, io, cx);
                }
                ex.req_abandoned = true;
            }
        }
        ex.release_sent_head(cx);

        // More request body from the client. Once the body is complete the client is not read
        // any more: bytes of a pipelined request wait in the kernel (or in `front_in`) until
        // this exchange is over, which keeps answers in request order.
        if !ex.req.is_done() && !ex.req_abandoned && io.readable {
            if self.front_in.is_none() {
                self.front_in = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            if let Some(buf) = self.front_in.as_mut().filter(|b| !b.is_full()) {
                match buf.read_some(&mut io.transport) {
                    Ok((0, _)) => return Step::Close,
                    Ok((n, filled)) => {
                        if !filled && !io.read_closed {
                            io.readable = false;
                        }
                        cx.metrics.bytes_in += n as u64;
                        match ex.req.advance(&buf.pending()[ex.req_fwd..]) {
                            Ok(m) => ex.req_fwd += m,
                            Err(_) => return self.fail(Status::BadRequest, io, cx),
                        }
                        if ex.max_body.is_some_and(|max| ex.req.data_bytes() > max) {
                            return self.fail(Status::PayloadTooLarge, io, cx);
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Step::Close,
                }
            }
        }

        // The client is not read once its request is whole, so a client that went away while
        // the backend thinks would be noticed only at the response timeout, its backend
        // connection and buffers held for nobody. A reset is seen as a read-closed event with
        // a socket error. A FIN alone is not taken for leaving: clients half-close after
        // their request and still read the answer (`nc -N`, scripts), as HAProxy assumes by
        // default; a client that closed for good is found when the answer is written.
        if io.read_closed && ex.req.is_done() && !ex.resp_forwarded && io.transport.reset_by_peer()
        {
            cx.metrics.client_aborts += 1;
            return Step::Close;
        }

        // Backend → proxy.
        match self.read_response(io, cx) {
            Ok(Step::Progress) => progress = true,
            Ok(Step::Upgrade) => return Step::Upgrade,
            Ok(_) => {}
            Err(step) => return step,
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return Step::Progress;
        };

        // Proxy → client: the rewritten head, then body bytes, in one writev.
        match send_response(ex, io, cx) {
            Ok(p) => progress |= p,
            Err(()) => return Step::Close,
        }

        // Done?
        let resp_done = ex.resp == Resp::Body
            && (ex.resp_body.is_done() || (ex.backend_eof && ex.resp_body.until_close()))
            && ex.resp_fwd == 0
            && ex.resp_out.as_ref().is_none_or(Buf::is_empty);
        if resp_done {
            return self.finish_exchange(io, cx);
        }
        if progress {
            if ex.connected {
                io.deadline.at = cx.now + ex.response_timeout;
            }
            Step::Progress
        } else {
            Step::Blocked
        }
    }

    /// Reads from the backend and handles a response head when one is complete.
    /// `Err(step)` ends the step with that result.
    fn read_response(&mut self, io: &mut FrontIo, cx: &mut Context) -> Result<Step, Step> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(Step::Blocked);
        };
        if ex.head_parked {
            // Its bytes were read already: no readiness will come for them.
            ex.head_parked = false;
            return self.parse_response_head(io, cx);
        }
        if !ex.connected || ex.backend_eof {
            return Ok(Step::Blocked);
        }
        let Some(conn) = cx.upstream.conn_mut(ex.link.conn) else {
            return Err(self.fail(Status::BadGateway, io, cx));
        };
        if !conn.readable {
            return Ok(Step::Blocked);
        }
        if ex.resp_in.is_none() {
            ex.resp_in = cx.buffer_waiters.get(&mut cx.pool, io);
        }
        let Some(buf) = ex.resp_in.as_mut() else {
            // Pool exhausted: driven again once a buffer is back.
            return Ok(Step::Blocked);
        };
        if buf.is_full() {
            if ex.resp == Resp::AwaitHead {
                return Err(self.fail(Status::BadGateway, io, cx));
            }
            return Ok(Step::Blocked);
        }
        match buf.read_some(&mut conn.stream) {
            Ok((0, _)) => {
                ex.backend_eof = true;
                if ex.resp == Resp::AwaitHead {
                    if ex.resp_started {
                        return Err(self.fail(Status::BadGateway, io, cx));
                    }
                    return Err(self.replay_or(Status::BadGateway, io, cx));
                }
                if !ex.resp_body.until_close() {
                    // Truncated body: the client can only learn it from the close.
                    return Err(Step::Close);
                }
                Ok(Step::Progress)
            }
            Ok((_, filled)) => {
                if !filled && !conn.read_closed {
                    conn.readable = false;
                }
                ex.resp_started = true;
                if ex.resp == Resp::Body {
                    return match ex.resp_body.advance(&buf.pending()[ex.resp_fwd..]) {
                        Ok(m) => {
                            ex.resp_fwd += m;
                            if ex.resp_body.is_done() && buf.len() > ex.resp_fwd {
                                // Bytes after the end of the response: not reusable.
                                ex.backend_keep_alive = false;
                            }
                            Ok(Step::Progress)
                        }
                        Err(_) => Err(Step::Close),
                    };
                }
                self.parse_response_head(io, cx)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                Ok(Step::Blocked)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Progress),
            Err(_) => {
                ex.backend_eof = true;
                if ex.resp == Resp::AwaitHead && !ex.resp_started {
                    return Err(self.replay_or(Status::BadGateway, io, cx));
                }
                if ex.resp_forwarded {
                    return Err(Step::Close);
                }
                Err(self.fail(Status::BadGateway, io, cx))
            }
        }
    }

    fn parse_response_head(&mut self, io: &mut FrontIo, cx: &mut Context) -> Result<Step, Step> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(Step::Blocked);
        };
        // The backend answered, so the request can no longer be replayed: its head's buffer
        // can be the one the answer needs.
        ex.release_sent_head(cx);
        loop {
            let request_sent = ex.request_sent();
            let Some(buf) = ex.resp_in.as_mut() else {
                return Ok(Step::Progress);
            };
            if ex.resp != Resp::AwaitHead || buf.is_empty() {
                return Ok(Step::Progress);
            }
            let mut headers = header_slots();
            let res = match parse_response(buf.pending(), &mut headers, ex.is_head) {
                Ok(Some(res)) => res,
                Ok(None) if !buf.is_full() => return Ok(Step::Progress),
                Ok(None) | Err(_) => return Err(self.fail(Status::BadGateway, io, cx)),
            };
            if ex.resp_out.is_none() {
                ex.resp_out = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            let Some(out) = ex.resp_out.as_mut() else {
                // Parked, not refused: the request is at the backend already, and its answer
                // goes on as soon as a buffer comes back.
                ex.head_parked = true;
                return Ok(Step::Blocked);
            };
            let code = res.code;
            let len = res.raw.len();
            if code == 101 {
                let offered = ex
                    .upgrade
                    .as_deref()
                    .is_some_and(|offer| upgrade_accepted(offer, res.upgrade));
                if !offered {
                    return Err(self.fail(Status::BadGateway, io, cx));
                }
                if write_response_head(out, &res, ClientConnection::Upgrade, cx.date.field())
                    .is_err()
                {
                    return Err(self.fail(Status::BadGateway, io, cx));
                }
                buf.consume(len);
                // The backend's first bytes after the 101 go to the client behind the head.
                let n = out.push(buf.pending());
                if n < buf.len() {
                    return Err(self.fail(Status::BadGateway, io, cx));
                }
                buf.consume(n);
                cx.metrics.count_status(101);
                cx.metrics.websocket_upgrades += 1;
                cx.pool.release(&mut ex.resp_in);
                cx.pool.release(&mut ex.head_out);
                return Ok(Step::Upgrade);
            }
            if (100..200).contains(&code) {
                // Interim answers (100 Continue, 103 Early Hints) go through, except to
                // HTTP/1.0 clients, which do not know them.
                if !ex.client_http10
                    && write_response_head(
                        out,
                        &res,
                        ClientConnection::KeepAlive { http10: false },
                        cx.date.field(),
                    )
                    .is_err()
                {
                    return Err(self.fail(Status::BadGateway, io, cx));
                }
                buf.consume(len);
                cx.metrics.count_status(code);
                continue;
            }
            // An HTTP/1.0 request went out as HTTP/1.0, so a chunked answer is the backend's
            // fault (RFC 9112 6.1), and its client could not read one.
            if ex.client_http10 && res.framing == Framing::Chunked {
                return Err(self.fail(Status::BadGateway, io, cx));
            }
            // The client connection cannot be kept when: it asked so; we are stopping; the body
            // ends with the backend's close (the client needs our close to see its end); or
            // the backend answered before the whole request was sent (the rest of the request
            // would be read as a new one).
            ex.close_client = !ex.client_keep_alive
                || cx.stopping
                || res.framing == Framing::UntilClose
                || !request_sent;
            let connection = if ex.close_client {
                ClientConnection::Close
            } else {
                ClientConnection::KeepAlive {
                    http10: ex.client_http10,
                }
            };
            // Nothing else waits for the client: no interim head is left half sent.
            let alone = out.is_empty();
            if write_response_head(out, &res, connection, cx.date.field()).is_err() {
                return Err(self.fail(Status::BadGateway, io, cx));
            }
            ex.backend_keep_alive = res.keep_alive;
            ex.resp_body = BodyFramer::new(res.framing);
            buf.consume(len);
            ex.resp = Resp::Body;
            match ex.resp_body.advance(buf.pending()) {
                Ok(m) => {
                    ex.resp_fwd = m;
                    if ex.resp_body.is_done() && buf.len() > m {
                        ex.backend_keep_alive = false;
                    }
                }
                // The body broke before any of this answer left: a clean 502 can still take
                // its place. Otherwise only the close tells the client.
                Err(_) if alone => return Err(self.fail(Status::BadGateway, io, cx)),
                Err(_) => return Err(Step::Close),
            }
            ex.resp_forwarded = true;
            cx.metrics.count_status(code);
            return Ok(Step::Progress);
        }
    }

    fn finish_exchange(&mut self, io: &mut FrontIo, cx: &mut Context) -> Step {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Step::Close;
        };
        let request_done = ex.request_sent() && !ex.req_abandoned;
        // A backend connection goes back to the pool only in a known state: both messages
        // complete, the backend keeps it, and no stray byte follows the answer.
        let reusable = request_done
            && ex.backend_keep_alive
            && !ex.backend_eof
            && ex.resp_in.as_ref().is_none_or(Buf::is_empty);
        let close = ex.close_client || !request_done || cx.stopping;
        self.end_exchange(cx, reusable);
        self.served += 1;
        if close {
            cx.pool.release(&mut self.front_in);
            io.deadline.at = cx.now + LINGER;
            self.phase = Phase::Closing;
        } else {
            self.phase = Phase::Head;
            let pending = self.front_in.as_ref().is_some_and(|b| !b.is_empty());
            io.deadline.at = cx.now
                + if pending {
                    io.info.request_timeout
                } else {
                    io.info.front_timeout
                };
            cx.pool.release_if_empty(&mut self.front_in);
        }
        Step::Progress
    }

    /// Ends the current exchange, if any: the backend connection is pooled when `reusable`,
    /// else closed; its buffers go back.
    fn end_exchange(&mut self, cx: &mut Context, reusable: bool) {
        if let Some(link) = self.drop_exchange(cx) {
            cx.upstream.release(link, reusable, cx.now, &cx.registry);
        }
    }

    /// Drops the current exchange, if any, giving its buffers back; returns its backend link,
    /// which the caller releases unless the upstream already has.
    fn drop_exchange(&mut self, cx: &mut Context) -> Option<Link> {
        let Phase::Exchange(ex) = std::mem::replace(&mut self.phase, Phase::Head) else {
            return None;
        };
        let mut ex = *ex;
        cx.pool.release(&mut ex.head_out);
        cx.pool.release(&mut ex.resp_in);
        cx.pool.release(&mut ex.resp_out);
        Some(ex.link)
    }

    /// Ends the exchange with one of our answers if the client has not had a response head
    /// yet; otherwise all we can do is close.
    fn fail(&mut self, status: Status, io: &mut FrontIo, cx: &mut Context) -> Step {
        if let Phase::Exchange(ex) = &self.phase {
            if ex.resp_forwarded {
                return Step::Close;
            }
        }
        self.answer(Refusal::close(status), io, cx);
        Step::Progress
    }

    /// The backend failed before answering anything: replay the request on a fresh
    /// connection if it came from the idle pool and is safe to repeat, else answer `status`.
    fn replay_or(&mut self, status: Status, io: &mut FrontIo, cx: &mut Context) -> Step {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Step::Close;
        };
        if !(ex.link.reused && ex.replayable && ex.head_out.is_some()) {
            return self.fail(status, io, cx);
        }
        cx.upstream.release(ex.link, false, cx.now, &cx.registry);
        cx.metrics.retries += 1;
        ex.attempt.forget(ex.link.backend);
        ex.fresh_only = true;
        ex.head_sent = 0;
        ex.backend_eof = false;
        ex.resp_started = false;
        if let Some(buf) = ex.resp_in.as_mut() {
            buf.consume(buf.len());
        }
        match cx.upstream.connect(
            &mut ex.attempt,
            io.key,
            true,
            cx.config.max_connect_attempts,
            cx.now,
            &cx.registry,
        ) {
            Ok(link) => {
                ex.link = link;
                ex.connected = false;
                io.deadline.at = cx.now + ex.connect_timeout;
                Step::Progress
            }
            Err(no) => {
                // The link is already released; do not release it twice.
                self.drop_exchange(cx);
                self.answer(no_backend(no, io), io, cx);
                Step::Progress
            }
        }
    }

    /// The connect in progress failed (refused, or timed out): mark the backend, try another.
    fn connect_failed(&mut self, io: &mut FrontIo, cx: &mut Context) -> Result<(), Refusal> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(());
        };
        cx.upstream.record_failure(ex.link.backend, cx.now);
        ex.attempt.failures += 1;
        cx.upstream.release(ex.link, false, cx.now, &cx.registry);
        match cx.upstream.connect(
            &mut ex.attempt,
            io.key,
            ex.fresh_only,
            cx.config.max_connect_attempts,
            cx.now,
            &cx.registry,
        ) {
            Ok(link) => {
                cx.metrics.retries += 1;
                ex.link = link;
                ex.connected = link.reused;
                ex.head_sent = 0;
                io.deadline.at = cx.now
                    + if link.reused {
                        ex.response_timeout
                    } else {
                        ex.connect_timeout
                    };
                Ok(())
            }
            Err(no) => {
                // As above: the link is already released.
                self.drop_exchange(cx);
                Err(no_backend(no, io))
            }
        }
    }
}

fn no_backend(no: NoBackend, io: &FrontIo) -> Refusal {
    match no {
        NoBackend::NoneHealthy => Refusal {
            status: Status::Unavailable,
            keep_alive: false,
            custom: io.info.answer_503.clone(),
            head_only: false,
        },
        NoBackend::ConnectFailed => Refusal::close(Status::BadGateway),
    }
}

/// Reads and drops what a client sends after a closing answer, until it closes or the
/// linger deadline passes.
fn step_linger(io: &mut FrontIo) -> Step {
    let mut scratch = [0u8; 4096];
    loop {
        match io::Read::read(&mut io.transport, &mut scratch) {
            Ok(0) => return Step::Close,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable = false;
                return Step::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close,
        }
    }
}

/// Routes a request, checks its limits, writes the head for the backend and starts
/// connecting. Touches nothing of the session, so the head may borrow its buffer.
fn begin(
    head: &RequestHead<'_, '_>,
    io: &FrontIo,
    cx: &mut Context,
) -> Result<Box<Exchange>, Refusal> {
    cx.metrics.http_requests += 1;
    let keep_404 = head.keep_alive && head.framing == Framing::Empty && !cx.stopping;
    let not_found = || Refusal {
        status: Status::NotFound,
        keep_alive: keep_404,
        custom: io.info.answer_404.clone(),
        // Set for every refusal of `begin` by its caller.
        head_only: false,
    };
    let mut host_buf = [0u8; 256];
    let cluster = match head.host {
        Some(raw) => {
            let host =
                normalize_host(raw, &mut host_buf).ok_or(Refusal::close(Status::BadRequest))?;
            // Routed on the normalised path; forwarded as received.
            let path = routing_path(head.path);
            cx.router
                .lookup(io.info.address, host, &path)
                .ok_or_else(not_found)?
        }
        None => return Err(not_found()),
    };
    if let (Some(max), Framing::Length(n)) = (io.info.max_request_body, head.framing) {
        if n > max {
            return Err(Refusal::close(Status::PayloadTooLarge));
        }
    }
    let mut head_out = cx.pool.get().ok_or(Refusal::close(Status::Unavailable))?;
    let client = ClientInfo {
        peer: io.peer,
        proto: "http",
        port: io.info.port,
    };
    if write_request_head(&mut head_out, head, client).is_err() {
        cx.pool.put(head_out);
        return Err(Refusal::close(Status::HeadTooLarge));
    }
    let (connect_timeout, response_timeout) = cx.upstream.cluster_timeouts(cluster);
    let mut attempt = Attempt::new(cluster);
    let link = match cx.upstream.connect(
        &mut attempt,
        io.key,
        false,
        cx.config.max_connect_attempts,
        cx.now,
        &cx.registry,
    ) {
        Ok(link) => link,
        Err(no) => {
            cx.pool.put(head_out);
            return Err(no_backend(no, io));
        }
    };
    Ok(Box::new(Exchange {
        attempt,
        link,
        connected: link.reused,
        fresh_only: false,
        head_out: Some(head_out),
        head_sent: 0,
        replayable: head.is_idempotent() && head.framing == Framing::Empty,
        req: BodyFramer::new(head.framing),
        req_fwd: 0,
        max_body: io.info.max_request_body,
        req_abandoned: false,
        resp_in: None,
        resp_out: None,
        resp: Resp::AwaitHead,
        resp_body: BodyFramer::new(Framing::Empty),
        resp_fwd: 0,
        resp_started: false,
        head_parked: false,
        resp_forwarded: false,
        backend_eof: false,
        backend_keep_alive: false,
        is_head: head.is_head(),
        upgrade: head.upgrade.map(Box::from),
        client_keep_alive: head.keep_alive,
        client_http10: head.minor == 0,
        close_client: false,
        connect_timeout: connect_timeout.unwrap_or(cx.config.connect_timeout),
        response_timeout: response_timeout.unwrap_or(cx.config.response_timeout),
    }))
}

/// Writes the pending request head and body bytes to the backend. `Err` if the backend
/// connection failed.
fn send_request(
    ex: &mut Exchange,
    front_in: &mut Option<Buf>,
    cx: &mut Context,
) -> Result<bool, ()> {
    if !ex.connected || ex.req_abandoned {
        return Ok(false);
    }
    let head = ex
        .head_out
        .as_ref()
        .map_or(&[][..], |h| h.pending().get(ex.head_sent..).unwrap_or(&[]));
    let body = front_in
        .as_ref()
        .map_or(&[][..], |b| &b.pending()[..ex.req_fwd.min(b.len())]);
    if head.is_empty() && body.is_empty() {
        return Ok(false);
    }
    let (head_len, body_len) = (head.len(), body.len());
    let Some(conn) = cx.upstream.conn_mut(ex.link.conn) else {
        return Err(());
    };
    let written = match write_two(&mut conn.stream, head, body) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
        Err(_) => return Err(()),
    };
    let from_head = written.min(head_len);
    ex.head_sent += from_head;
    let from_body = (written - from_head).min(body_len);
    if let Some(buf) = front_in.as_mut() {
        buf.consume(from_body);
    }
    ex.req_fwd -= from_body;
    Ok(written > 0)
}

/// Writes the pending response head and body bytes to the client. `Err` if the client is gone.
fn send_response(ex: &mut Exchange, io: &mut FrontIo, cx: &mut Context) -> Result<bool, ()> {
    // A small body behind a pending head is copied after it, so that both leave in one plain
    // `send` rather than a `writev`; the bytes keep their order.
    if let (Some(out), Some(buf)) = (ex.resp_out.as_mut(), ex.resp_in.as_mut()) {
        let ready = ex.resp_fwd.min(buf.len());
        if !out.is_empty() && ready > 0 && ready <= COALESCE_MAX {
            let moved = out.push(&buf.pending()[..ready]);
            buf.consume(moved);
            ex.resp_fwd -= moved;
        }
    }
    let head = ex.resp_out.as_ref().map_or(&[][..], Buf::pending);
    let body = ex
        .resp_in
        .as_ref()
        .map_or(&[][..], |b| &b.pending()[..ex.resp_fwd.min(b.len())]);
    if head.is_empty() && body.is_empty() {
        return Ok(false);
    }
    let head_len = head.len();
    let written = match write_two(&mut io.transport, head, body) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
        Err(_) => return Err(()),
    };
    cx.metrics.bytes_out += written as u64;
    let from_head = written.min(head_len);
    if let Some(out) = ex.resp_out.as_mut() {
        out.consume(from_head);
    }
    let from_body = written - from_head;
    if let Some(buf) = ex.resp_in.as_mut() {
        buf.consume(from_body);
    }
    ex.resp_fwd -= from_body.min(ex.resp_fwd);
    cx.pool.release_if_empty(&mut ex.resp_out);
    cx.pool.release_if_empty(&mut ex.resp_in);
    Ok(written > 0)
}

/// Writes `first` then `second` in one system call: a `writev` when both have bytes, else a
/// plain `send` (the kernel's cheaper path, and the usual case for a bodiless request).
fn write_two(stream: &mut impl Write, first: &[u8], second: &[u8]) -> io::Result<usize> {
    match (first.is_empty(), second.is_empty()) {
        (_, true) => stream.write(first),
        (true, false) => stream.write(second),
        (false, false) => stream.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]),
    }
}
