//! One request/response exchange with a backend, as an explicit state machine.
//!
//! An [`Exchange`] starts once a request head is routed ([`Exchange::start`]) and runs three
//! halves side by side, each with its own state:
//!
//! - the backend link ([`Dial`]): `Connecting → Connected`, with retries on other backends
//!   when a connect fails or times out, and a replay on a fresh connection when a stale pooled
//!   one fails before its first answer byte;
//! - the request ([`Sending`]): the rewritten head, then body bytes, written to the backend
//!   from the buffer they were read into; `Open → Abandoned` if the backend stops taking them
//!   after it started answering;
//! - the response ([`Response`]): `Awaiting → Head (⇄ HeadParked) → Body`, interim `1xx`
//!   heads passing through on the way, or out through [`Outcome::Upgrade`] after a `101`.
//!
//! Both directions move in the same step, so `Expect: 100-continue` and early answers work.
//! Every step ends in a typed [`Outcome`]; an error is a [`Refusal`] (one of our answers)
//! while nothing of a response reached the client, and a close after.
//!
//! Buffers: the exchange holds the rewritten request head (`head_out`, kept until the
//! backend starts answering so a request on a stale pooled connection can be replayed), the
//! backend's bytes (`resp_in`) and the rewritten response head (`resp_out`); client bytes stay
//! in the session's buffer. Bodies are not copied: they are written next to their head in one
//! `writev`, except a small response body, copied behind its head so that both leave in one
//! plain `send` (see [`send`]).

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::answers::{redirect_location, Status};
use super::body::BodyFramer;
use super::head_scan::HeadScan;
use super::parser::{Framing, RequestHead};
use super::path::routing_path;
use super::writer::{write_request_head, ClientInfo};
use crate::worker::buffer::Buf;
use crate::worker::context::Context;
use crate::worker::dial::{Dial, DialState, Dialed, Reuse};
use crate::worker::front::FrontIo;
use crate::worker::request_id::RequestId;
use crate::worker::router::normalize_host;

mod accounting;
mod refusal;
mod response;
mod send;

use accounting::count_answer;
pub use refusal::Refusal;

use send::{send_request, send_response, Sent};

/// How a step of an exchange ended, for its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Something moved: step again.
    Progress,
    /// Nothing to do until readiness or a timer.
    Blocked,
    /// The response went out whole: the exchange is over ([`Exchange::finish`]).
    Done,
    /// A `101` went to the client: the session becomes a pipe ([`Exchange::into_pipe_parts`]).
    Upgrade,
    /// Nothing of a response reached the client: answer this instead.
    Refuse(Refusal),
    /// The client cannot be told more than the close: a response started and broke, or the
    /// client left.
    Close,
}

impl Outcome {
    fn progress(moved: bool) -> Outcome {
        if moved {
            Outcome::Progress
        } else {
            Outcome::Blocked
        }
    }
}

/// Whether a request may be sent again on a fresh connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Idempotent and bodiless.
    Safe,
    Unsafe,
}

/// Whether request bytes still go to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Open,
    /// Writing to the backend failed after it started answering: nothing more is sent, and
    /// its connection is not pooled.
    Abandoned,
}

/// The response, as far as it came.
#[derive(Debug)]
enum Response {
    /// Not a byte from the backend yet: a request on a stale pooled connection can still be
    /// replayed.
    Awaiting,
    /// The backend started answering; no final head went to the client (interim ones may
    /// have). The scan says how far the head at the front of `resp_in` was looked at, so a
    /// head trickling in is parsed in linear work, as a request head is.
    Head(HeadScan),
    /// A whole head waits in `resp_in` for a buffer to be rewritten into. Its bytes were read
    /// already, so no readiness will come for them: the next step parses it again.
    HeadParked,
    /// A final head went to the client; its body follows.
    Body(BodyState),
}

/// Whether a side keeps its connection after this exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Keep,
    Close,
}

/// Whether the backend closed its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendEnd {
    Open,
    Closed,
}

#[derive(Debug)]
struct BodyState {
    framer: BodyFramer,
    backend: BackendEnd,
    /// Whether the backend connection can go back to the pool (the backend keeps it, and no
    /// stray byte followed the answer).
    backend_conn: Keep,
    /// Whether the client connection stays open for another request.
    client_conn: Keep,
}

/// What the request said about itself, fixed for the whole exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Head,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Http10,
    Http11,
}

/// One request/response exchange with a backend.
#[derive(Debug)]
pub struct Exchange {
    dial: Dial,
    response_timeout: Duration,
    // ---- the request
    head_out: Option<Buf>,
    head_sent: usize,
    replay: Replay,
    req: BodyFramer,
    /// Client bytes at the front of the session's buffer that belong to this request's body.
    req_fwd: usize,
    max_body: Option<u64>,
    sending: Sending,
    // ---- the response
    response: Response,
    resp_in: Option<Buf>,
    resp_out: Option<Buf>,
    /// Bytes at the front of `resp_in` that belong to the response body, ready to go.
    resp_fwd: usize,
    // ---- what the client asked for
    method: Method,
    version: Version,
    client_wants: Keep,
    /// The protocols an upgrade request offered (`None`: not an upgrade request).
    upgrade: Option<Box<[u8]>>,
    /// The route's `Strict-Transport-Security` value, put on the final response head.
    hsts: Option<Rc<str>>,
    // ---- what is counted (metrics)
    /// The cluster it was routed to (its slab key).
    cluster: usize,
    /// When it was routed: the start of its total latency.
    started: Instant,
    /// When its head first went to the current backend connection: the start of the time to
    /// the backend's first byte.
    sent_at: Instant,
    // ---- what the access line reports (`started`, above, too)
    connected_at: Option<Instant>,
    first_byte_at: Option<Instant>,
    /// The final (or `101`) status forwarded to the client.
    status: Option<u16>,
    /// Request body bytes taken from the client.
    bytes_in: u64,
    /// Response bytes written to the client.
    bytes_out: u64,
    // ---- the listener's limits
    /// When the whole request body must be in (`request_body_timeout`).
    body_by: Option<Instant>,
    /// While response bytes wait for the client: by when it must have taken them, or a
    /// buffer's worth of them (`send_timeout`).
    drain: Option<Drain>,
    /// The session's deadline a limit brought forward, as (the limit, the deadline it
    /// replaced), given back once that limit no longer runs.
    clamped: Option<(Instant, Instant)>,
}

/// A slow reader's clock: armed when response bytes start waiting for the client, re-armed
/// each time it took a buffer's worth (or everything), so the least rate it must keep is a
/// buffer per `send_timeout` (16 KiB a minute by default): nothing a real client notices, and
/// a client reading a few bytes at a time to hold the connection open is closed.
#[derive(Debug, Clone, Copy)]
struct Drain {
    by: Instant,
    taken: usize,
}

impl Exchange {
    /// Routes a request, checks its limits, writes the head for the backend and starts
    /// connecting; or refuses it, or redirects it when its route says `redirect_https`.
    /// Touches nothing of the session, so the head may borrow its buffer.
    /// `last`: the connection's last request (`max_requests_per_connection`), answered with
    /// `Connection: close`.
    pub fn start(
        head: &RequestHead<'_, '_>,
        id: RequestId,
        last: bool,
        io: &FrontIo,
        cx: &mut Context,
    ) -> Result<Box<Exchange>, Refusal> {
        cx.metrics.http_requests += 1;
        let keep_alive = head.keep_alive && !last;
        let keep_404 = keep_alive && head.framing == Framing::Empty && !cx.stopping;
        let not_found = || Refusal {
            status: Status::NotFound,
            keep_alive: keep_404,
            custom: io.info.answer_404.clone(),
            // Set for every refusal of `start` by its caller.
            head_only: false,
            location: None,
            hsts: None,
            cause: None,
        };
        let mut host_buf = [0u8; 256];
        let Some(raw) = head.host else {
            return Err(not_found());
        };
        let host = normalize_host(raw, &mut host_buf).ok_or(Refusal::close(Status::BadRequest))?;
        // Routed on the normalised path; forwarded as received.
        let path = routing_path(head.path);
        let (cluster, options) = cx
            .router
            .lookup(io.info.address, host, &path)
            .ok_or_else(not_found)?;
        let (redirect, hsts) = (options.redirect_https, options.hsts.clone());
        let started = cx.now;
        if let Some(stats) = cx.upstream.cluster_stats(cluster) {
            stats.requests += 1;
        }
        let routed = if redirect {
            // Kept alive like a 404: a request body would be read as the next head.
            Err(Refusal {
                status: Status::MovedPermanently,
                location: Some(
                    redirect_location(host, head.target, (head.path, head.empty_path_query)).into(),
                ),
                custom: None,
                ..not_found()
            })
        } else {
            Exchange::start_routed(head, id, keep_alive, io, cx, cluster, hsts)
        };
        if let Err(refusal) = &routed {
            count_answer(cx, cluster, refusal.status.code(), started);
        }
        routed
    }

    /// [`Exchange::start`] once the request is routed to `cluster`.
    fn start_routed(
        head: &RequestHead<'_, '_>,
        id: RequestId,
        keep_alive: bool,
        io: &FrontIo,
        cx: &mut Context,
        cluster: usize,
        hsts: Option<Rc<str>>,
    ) -> Result<Box<Exchange>, Refusal> {
        if let (Some(max), Framing::Length(n)) = (io.info.max_request_body, head.framing) {
            if n > max {
                return Err(Refusal::close(Status::PayloadTooLarge).with_hsts(&hsts));
            }
        }
        let Some(mut head_out) = cx.pool.get() else {
            return Err(Refusal::close(Status::Unavailable).with_hsts(&hsts));
        };
        let client = ClientInfo {
            peer: io.peer,
            proto: io.info.protocol.as_str(),
            port: io.info.port,
            underscores: io.info.underscores,
            request_id: io.info.request_id_header.as_deref().map(|name| (name, id)),
        };
        if write_request_head(&mut head_out, head, client).is_err() {
            cx.pool.put(head_out);
            return Err(Refusal::close(Status::HeadTooLarge).with_hsts(&hsts));
        }
        let dial = match Dial::start(cluster, Reuse::Pooled, io, cx) {
            Ok(dial) => dial,
            Err(no) => {
                cx.pool.put(head_out);
                return Err(Refusal::no_backend(no, io).with_hsts(&hsts));
            }
        };
        let (_, response_timeout) = cx.upstream.cluster_timeouts(cluster);
        let dial_connected = dial.is_connected();
        Ok(Box::new(Exchange {
            dial,
            response_timeout: response_timeout.unwrap_or(cx.config.response_timeout),
            head_out: Some(head_out),
            head_sent: 0,
            replay: if head.is_idempotent() && head.framing == Framing::Empty {
                Replay::Safe
            } else {
                Replay::Unsafe
            },
            req: BodyFramer::new(head.framing),
            req_fwd: 0,
            max_body: io.info.max_request_body,
            sending: Sending::Open,
            response: Response::Awaiting,
            resp_in: None,
            resp_out: None,
            resp_fwd: 0,
            method: if head.is_head() {
                Method::Head
            } else {
                Method::Other
            },
            version: if head.minor == 0 {
                Version::Http10
            } else {
                Version::Http11
            },
            client_wants: if keep_alive { Keep::Keep } else { Keep::Close },
            upgrade: head.upgrade.map(Box::from),
            hsts,
            cluster,
            started: cx.now,
            sent_at: cx.now,
            connected_at: dial_connected.then_some(cx.now),
            first_byte_at: None,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            body_by: None,
            drain: None,
            clamped: None,
        }))
    }

    /// Takes the body bytes that came with the head (`early`, at the front of the session's
    /// buffer) and arms the deadline of the first state. `Err`: refuse the request.
    pub fn begin(&mut self, early: &mut Buf, io: &mut FrontIo, now: Instant) -> Result<(), Status> {
        // A pooled connection is connected already: no connect timeout to watch.
        io.deadline.at = now
            + if self.dial.is_connected() {
                self.response_timeout
            } else {
                self.dial.connect_timeout()
            };
        if !self.req.is_done() {
            self.body_by = io.info.request_body_timeout.map(|t| now + t);
            self.clamp_deadline(io);
        }
        match self.req.advance_in_place(early.pending_mut()) {
            Err(_) => Err(Status::BadRequest),
            Ok(_) if self.body_too_large() => Err(Status::PayloadTooLarge),
            Ok(advanced) => {
                early.drop_tail(advanced.removed);
                self.req_fwd = advanced.ready;
                self.bytes_in += advanced.ready as u64;
                Ok(())
            }
        }
    }

    fn body_too_large(&self) -> bool {
        self.max_body.is_some_and(|max| self.req.data_bytes() > max)
    }

    /// Whether the request is a `HEAD` (its answers carry no body).
    pub fn is_head(&self) -> bool {
        self.method == Method::Head
    }

    /// The route's `Strict-Transport-Security` value, for our own answers to this request.
    pub fn hsts(&self) -> Option<&Rc<str>> {
        self.hsts.as_ref()
    }

    fn request_sent(&self) -> bool {
        self.head_out
            .as_ref()
            .is_none_or(|h| self.head_sent >= h.len())
            && self.req.is_done()
            && self.req_fwd == 0
    }

    /// Whether a final response head went to the client (after that, errors can only close).
    fn forwarded(&self) -> bool {
        matches!(self.response, Response::Body(_))
    }

    /// Gives back the rewritten request head once it can no longer be needed: sent whole,
    /// and either not replayable or answered (a replayable request on a pooled connection is
    /// kept until its first answer byte, since a stale pooled connection fails exactly there).
    fn release_sent_head(&mut self, cx: &mut Context) {
        if self
            .head_out
            .as_ref()
            .is_some_and(|h| self.head_sent >= h.len())
            && (self.replay == Replay::Unsafe || !matches!(self.response, Response::Awaiting))
        {
            cx.pool.release(&mut self.head_out);
        }
    }

    /// Ends the exchange with one of our answers if the client has not had a response head
    /// yet; otherwise all we can do is close.
    fn fail(&self, status: Status) -> Outcome {
        if self.forwarded() {
            Outcome::Close
        } else {
            Outcome::Refuse(Refusal::close(status))
        }
    }

    // ---- the states, step by step ---------------------------------------------------------

    /// Makes what progress it can; `front_in` is the session's client buffer.
    pub fn step(
        &mut self,
        front_in: &mut Option<Buf>,
        io: &mut FrontIo,
        cx: &mut Context,
    ) -> Outcome {
        let outcome = self.step_halves(front_in, io, cx);
        self.clamp_deadline(io);
        outcome
    }

    /// The session's deadline, brought forward to the listener's limits that run now: the
    /// whole body's deadline while it comes, a slow reader's while bytes wait for it. A
    /// deadline brought forward by a limit that has ended since is first given back (unless
    /// a step set another meanwhile), so it never fires for a limit no longer running.
    fn clamp_deadline(&mut self, io: &mut FrontIo) {
        if let Some((limit, replaced)) = self.clamped.take() {
            if io.deadline.at == limit {
                io.deadline.at = replaced;
            }
        }
        let body = self.body_by.filter(|_| !self.req.is_done());
        let drain = self.drain.map(|d| d.by);
        let limit = match (body, drain) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit.filter(|limit| *limit < io.deadline.at) {
            self.clamped = Some((limit, io.deadline.at));
            io.deadline.at = limit;
        }
    }

    /// Runs or stops a slow reader's clock after a write to the client of `wrote` bytes.
    fn watch_drain(&mut self, wrote: usize, io: &FrontIo, cx: &Context) {
        let waiting = self.resp_fwd > 0 || self.resp_out.as_ref().is_some_and(|b| !b.is_empty());
        self.drain = match self.drain {
            _ if !waiting => None,
            None => Some(Drain {
                by: cx.now + io.info.send_timeout,
                taken: 0,
            }),
            Some(d) if d.taken + wrote >= cx.pool.buffer_size() => Some(Drain {
                by: cx.now + io.info.send_timeout,
                taken: 0,
            }),
            Some(d) => Some(Drain {
                taken: d.taken + wrote,
                ..d
            }),
        };
    }

    fn step_halves(
        &mut self,
        front_in: &mut Option<Buf>,
        io: &mut FrontIo,
        cx: &mut Context,
    ) -> Outcome {
        let mut progress = false;

        // Connecting.
        if self.dial.state() == DialState::Connecting {
            match self.dial.poll(io, cx) {
                Dialed::Pending => return Outcome::Blocked,
                Dialed::Connected => {
                    io.deadline.at = cx.now + self.response_timeout;
                    progress = true;
                }
                Dialed::Retrying => return self.retried(io, cx),
                Dialed::Failed(no) => return Outcome::Refuse(Refusal::no_backend(no, io)),
            }
        }

        if self.connected_at.is_none() && self.dial.is_connected() {
            self.connected_at = Some(cx.now);
        }

        // Client → backend: the rewritten head, then body bytes, in one writev.
        let head_unsent = self.head_sent == 0;
        match self.send_request(front_in, cx) {
            Sent::Wrote(_) => {
                if head_unsent {
                    self.sent_at = cx.now;
                }
                progress = true;
            }
            Sent::Nothing => {}
            Sent::Broken => {
                if matches!(self.response, Response::Awaiting) {
                    return self.replay_or(Status::BadGateway, io, cx);
                }
                self.sending = Sending::Abandoned;
            }
        }
        self.release_sent_head(cx);

        // More request body from the client. Once the body is complete the client is not read
        // any more: bytes of a pipelined request wait in the kernel (or in `front_in`) until
        // this exchange is over, which keeps answers in request order.
        if !self.req.is_done() && self.sending == Sending::Open && io.readable {
            if front_in.is_none() {
                *front_in = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            if let Some(buf) = front_in.as_mut().filter(|b| !b.is_full()) {
                match buf.read_some(&mut io.transport) {
                    Ok((0, _)) => return Outcome::Close,
                    Ok((n, filled)) => {
                        if !filled && !io.read_closed {
                            io.readable = false;
                        }
                        cx.metrics.bytes_in += n as u64;
                        match self
                            .req
                            .advance_in_place(&mut buf.pending_mut()[self.req_fwd..])
                        {
                            Ok(advanced) => {
                                buf.drop_tail(advanced.removed);
                                self.req_fwd += advanced.ready;
                                self.bytes_in += advanced.ready as u64;
                            }
                            Err(_) => return self.fail(Status::BadRequest),
                        }
                        if self.body_too_large() {
                            return self.fail(Status::PayloadTooLarge);
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Outcome::Close,
                }
            }
        }

        // The client is not read once its request is whole, so a client that went away while
        // the backend thinks would be noticed only at the response timeout, its backend
        // connection and buffers held for nobody. A reset is seen as a read-closed event with
        // a socket error. A FIN alone is not taken for leaving: clients half-close after
        // their request and still read the answer (`nc -N`, scripts), as HAProxy assumes by
        // default; a client that closed for good is found when the answer is written.
        if io.read_closed && self.req.is_done() && !self.forwarded() && io.transport.reset_by_peer()
        {
            cx.metrics.client_aborts += 1;
            return Outcome::Close;
        }

        // Backend → proxy.
        match self.read_response(io, cx) {
            Outcome::Progress => progress = true,
            Outcome::Blocked => {}
            other => return other,
        }

        // Proxy → client: the rewritten head, then body bytes, in one writev.
        match send_response(
            &mut io.transport,
            &mut self.resp_out,
            &mut self.resp_in,
            &mut self.resp_fwd,
        ) {
            Sent::Wrote(n) => {
                cx.metrics.bytes_out += n as u64;
                self.bytes_out += n as u64;
                cx.pool.release_if_empty(&mut self.resp_out);
                cx.pool.release_if_empty(&mut self.resp_in);
                self.watch_drain(n, io, cx);
                progress = true;
            }
            Sent::Nothing => self.watch_drain(0, io, cx),
            Sent::Broken => return Outcome::Close,
        }

        if self.response_done() {
            return Outcome::Done;
        }
        if progress && self.dial.is_connected() {
            io.deadline.at = cx.now + self.response_timeout;
        }
        Outcome::progress(progress)
    }

    fn response_done(&self) -> bool {
        let Response::Body(body) = &self.response else {
            return false;
        };
        (body.framer.is_done() || (body.backend == BackendEnd::Closed && body.framer.until_close()))
            && self.resp_fwd == 0
            && self.resp_out.as_ref().is_none_or(Buf::is_empty)
    }

    /// The session's deadline passed: a connect that took too long is a failed one; a
    /// backend that has not answered gets a 504; a response under way can only be cut.
    pub fn on_timeout(&mut self, io: &mut FrontIo, cx: &mut Context) -> Outcome {
        if self.body_by.is_some_and(|by| by <= cx.now) && !self.req.is_done() {
            cx.metrics.body_timeouts += 1;
            return self.fail(Status::RequestTimeout);
        }
        if self.drain.is_some_and(|d| d.by <= cx.now) {
            cx.metrics.slow_reads += 1;
            return Outcome::Close;
        }
        // A limit that ended since it brought the deadline forward: the exchange's own
        // deadline may be later.
        self.clamp_deadline(io);
        if io.deadline.at > cx.now {
            return Outcome::Blocked;
        }
        let outcome = self.on_response_timeout(io, cx);
        self.clamp_deadline(io);
        outcome
    }

    fn on_response_timeout(&mut self, io: &mut FrontIo, cx: &mut Context) -> Outcome {
        match self.dial.state() {
            DialState::Connecting => cx.metrics.timeouts.connect += 1,
            DialState::Connected => cx.metrics.timeouts.response += 1,
            DialState::Gone => {}
        }
        match self.dial.state() {
            DialState::Connecting => match self.dial.retry(io, cx) {
                Dialed::Failed(no) => Outcome::Refuse(Refusal::no_backend(no, io)),
                _ => self.retried(io, cx),
            },
            DialState::Connected if !self.forwarded() => {
                Outcome::Refuse(Refusal::close(Status::GatewayTimeout))
            }
            DialState::Connected | DialState::Gone => Outcome::Close,
        }
    }

    /// After a retry started: the request goes out whole on the new connection, which a
    /// pooled one is at once (no connect timeout to watch then).
    fn retried(&mut self, io: &mut FrontIo, cx: &mut Context) -> Outcome {
        self.head_sent = 0;
        if self.dial.is_connected() {
            io.deadline.at = cx.now + self.response_timeout;
        }
        Outcome::Progress
    }

    /// The backend failed before answering anything: replay the request on a fresh
    /// connection if it came from the idle pool and is safe to repeat, else answer `status`.
    fn replay_or(&mut self, status: Status, io: &mut FrontIo, cx: &mut Context) -> Outcome {
        if !(self.dial.link().reused && self.replay == Replay::Safe && self.head_out.is_some()) {
            return self.fail(status);
        }
        self.response = Response::Awaiting;
        if let Some(buf) = self.resp_in.as_mut() {
            buf.consume(buf.len());
        }
        match self.dial.replay_fresh(io, cx) {
            Dialed::Failed(no) => Outcome::Refuse(Refusal::no_backend(no, io)),
            _ => self.retried(io, cx),
        }
    }

    /// Writes the pending request head and body bytes to the backend, once connected and
    /// while it takes them.
    fn send_request(&mut self, front_in: &mut Option<Buf>, cx: &mut Context) -> Sent {
        if !self.dial.is_connected() || self.sending == Sending::Abandoned {
            return Sent::Nothing;
        }
        let Some(conn) = cx.upstream.conn_mut(self.dial.link().conn) else {
            return Sent::Broken;
        };
        send_request(
            &mut conn.stream,
            self.head_out.as_ref(),
            &mut self.head_sent,
            front_in,
            &mut self.req_fwd,
        )
    }

    // ---- the ends ----------------------------------------------------------------------

    /// After [`Outcome::Done`]: gives everything back, the backend connection to the pool
    /// when it is in a known state. Returns whether the client connection must close.
    // By reference: the exchange is boxed, and taking it by value would copy all of it out of
    // its box once per request (~60 instructions of memcpy) only to drop it.
    pub fn finish(&mut self, cx: &mut Context) -> Keep {
        let request_done = self.request_sent() && self.sending == Sending::Open;
        let (backend_conn, client_conn, backend) = match &self.response {
            Response::Body(b) => (b.backend_conn, b.client_conn, b.backend),
            _ => (Keep::Close, Keep::Close, BackendEnd::Closed),
        };
        // A backend connection goes back to the pool only in a known state: both messages
        // complete, the backend keeps it, and no stray byte follows the answer.
        let reusable = request_done
            && backend_conn == Keep::Keep
            && backend == BackendEnd::Open
            && self.resp_in.as_ref().is_none_or(Buf::is_empty);
        self.record_latency(cx);
        self.end(reusable, cx);
        if client_conn == Keep::Close || !request_done || cx.stopping {
            Keep::Close
        } else {
            Keep::Keep
        }
    }

    /// Gives back the exchange's buffers and its backend link: pooled when `reusable`.
    pub fn end(&mut self, reusable: bool, cx: &mut Context) {
        cx.pool.release(&mut self.head_out);
        cx.pool.release(&mut self.resp_in);
        cx.pool.release(&mut self.resp_out);
        self.dial.release(reusable, cx);
    }

    /// After [`Outcome::Upgrade`]: the backend link and the bytes for the client (the `101`
    /// head, with the backend's first bytes appended by [`Exchange::read_response`]).
    pub fn into_pipe_parts(self) -> (Dial, Option<Buf>) {
        (self.dial, self.resp_out)
    }
}

/// The states of an exchange's halves, named for tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct States {
    pub link: DialState,
    pub request: &'static str,
    pub response: &'static str,
}

#[cfg(test)]
impl Exchange {
    pub fn states(&self) -> States {
        States {
            link: self.dial.state(),
            request: match self.sending {
                Sending::Open => "open",
                Sending::Abandoned => "abandoned",
            },
            response: match self.response {
                Response::Awaiting => "awaiting",
                Response::Head(_) => "head",
                Response::HeadParked => "head parked",
                Response::Body(_) => "body",
            },
        }
    }
}
