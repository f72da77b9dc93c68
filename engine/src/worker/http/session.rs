//! The HTTP/1.1 state machine of one client connection.
//!
//! A connection handles one request at a time: [`Phase::Head`] reads and checks a request
//! head, [`Phase::Exchange`] runs its [`Exchange`] with a backend (see [`super::exchange`]),
//! then the connection returns to `Head` — where bytes of a pipelined request may already wait
//! in the buffer — or closes. [`Phase::Answer`] writes one of the proxy's own answers;
//! [`Phase::Closing`] then flushes what the transport still holds and half-closes, and
//! [`Phase::Linger`] reads and drops what the client still sends, so that closing does not
//! reset the connection under the answer.
//!
//! The session holds one buffer of its own, `front_in`, while client bytes are pending: the
//! request head being read, body bytes on their way to the backend, or a pipelined request
//! waiting for its turn.

use std::io::{self, Write};
use std::time::Duration;

use super::answers::{Answer, RouteFields, Status};
use super::exchange::{Exchange, Keep, Outcome, Refusal};
use super::head_scan::HeadScan;
use super::parser::{header_slots, parse_request, HeadError};
use crate::worker::access_log::{LineKey, Outcome as LogOutcome};
use crate::worker::buffer::Buf;
use crate::worker::context::Context;
use crate::worker::dial::Dial;
use crate::worker::front::FrontIo;
use weir_schema::metric_names::ServerError;

/// The status logged for a request whose client left before any answer (nginx's 499).
const CLIENT_CLOSED: u16 = 499;

/// What an upgraded session hands to the pipe it becomes.
#[derive(Debug)]
pub struct PipeParts {
    pub dial: Dial,
    /// Client bytes read already, for the backend.
    pub up: Option<Buf>,
    /// The `101` head and any backend bytes after it, for the client.
    pub down: Option<Buf>,
    /// The upgrade request's access line, written when the pipe ends.
    pub line: LineKey,
    pub outcome: LogOutcome,
}

/// How long a closing connection keeps reading (and dropping) client bytes.
const LINGER: Duration = Duration::from_secs(2);

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

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    Head,
    Exchange(Box<Exchange>),
    Answer {
        bytes: Vec<u8>,
        written: usize,
        then: Keep,
    },
    /// A closing answer is written: the transport's own pending output goes out, then our
    /// side of the connection is shut.
    Closing,
    Linger,
}

/// The HTTP side of a session.
#[derive(Debug)]
pub struct HttpSession {
    phase: Phase,
    front_in: Option<Buf>,
    /// How far the head at the start of `front_in` has been looked at.
    scan: HeadScan,
    /// Requests completed on this connection.
    /// Requests answered on the connection (a u32, saturating: it sits beside the 4-byte `log`
    /// key in one word, which keeps an idle session within its size bound).
    served: u32,
    /// The current request's access line, kept (closed) between requests for the next one.
    log: LineKey,
    /// When the connection last finished a request, on the worker's request count (a clock
    /// that only moves forward, enough to tell which idle connection is the oldest, and 8
    /// bytes where an `Instant` takes 16); 0 before its first. The oldest idle connections
    /// are closed first at the connection cap.
    idle_since: u64,
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
            scan: HeadScan::default(),
            served: 0,
            log: LineKey::default(),
            idle_since: 0,
        }
    }

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
                    cx.metrics.timeouts.request += 1;
                    self.answer(Refusal::close(Status::RequestTimeout), io, cx);
                    self.drive(io, cx)
                } else {
                    cx.metrics.timeouts.idle += 1;
                    Drive::Close
                }
            }
            Phase::Exchange(ex) => {
                let outcome = ex.on_timeout(io, cx);
                match self.on_outcome(outcome, io, cx) {
                    Step::Close => Drive::Close,
                    _ => self.drive(io, cx),
                }
            }
            Phase::Answer { .. } | Phase::Closing | Phase::Linger => Drive::Close,
        }
    }

    /// Since when (on the worker's request count) the connection waits for its next request
    /// holding nothing, if it does: an idle keep-alive connection, the first kind to close
    /// when the worker runs out of connections.
    pub fn idle_since(&self) -> Option<u64> {
        (matches!(self.phase, Phase::Head) && self.front_in.is_none() && self.idle_since > 0)
            .then_some(self.idle_since)
    }

    /// Gives back every buffer and backend connection (the session is closing). A request
    /// still at a backend is logged first: with the status forwarded, or `499` (nginx's
    /// "client closed request") when the client left before any answer.
    pub fn teardown(&mut self, cx: &mut Context) {
        if let Phase::Exchange(ex) = &self.phase {
            let mut outcome = ex.outcome();
            outcome.status = outcome.status.or(Some(CLIENT_CLOSED));
            self.finish_line(cx, &outcome);
        }
        self.end_exchange(cx);
        cx.pool.release(&mut self.front_in);
        cx.access_log.recycle(&mut self.log);
    }

    /// After [`Drive::Upgrade`]: the backend link, the bytes each way (client bytes for the
    /// backend, then the `101` head and any backend bytes for the client), and the access
    /// line, which the pipe writes when it ends.
    pub fn into_pipe_parts(mut self) -> Option<PipeParts> {
        let Phase::Exchange(ex) = std::mem::replace(&mut self.phase, Phase::Linger) else {
            return None;
        };
        let outcome = ex.outcome();
        let (dial, down) = ex.into_pipe_parts();
        Some(PipeParts {
            dial,
            up: self.front_in.take(),
            down,
            line: std::mem::take(&mut self.log),
            outcome,
        })
    }

    /// Writes the current request's access line, if one is open.
    fn finish_line(&mut self, cx: &mut Context, outcome: &LogOutcome) {
        cx.access_log
            .finish(self.log, outcome, &cx.upstream, cx.now);
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
        // A head arriving in small pieces is parsed only when its new bytes may finish or
        // break it (linear work in all); a full buffer gets its answer (414/431) at once.
        if !self.scan.should_parse(buf.pending()) && !buf.is_full() {
            self.front_in = Some(buf);
            return None;
        }
        let mut headers = header_slots();
        // The listener's `max_requests_per_connection`th request is answered with a close.
        let last = self.served.saturating_add(1) >= io.info.max_requests_per_connection;
        let (len, started) = match parse_request(buf.pending(), &mut headers) {
            Ok(Some(head)) => {
                let id = cx.request_ids.next_id();
                if cx.access_log.is_on() {
                    let logged = (head.method, head.host, head.path, head.raw.len());
                    cx.access_log
                        .start(&mut self.log, id, io.peers(), cx.now, Some(logged));
                }
                (
                    head.raw.len(),
                    Exchange::start(&head, id, last, io, cx).map_err(|refusal| Refusal {
                        head_only: head.is_head(),
                        ..refusal
                    }),
                )
            }
            Ok(None) if !buf.is_full() => {
                self.scan.incomplete(buf.len());
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
        self.scan.reset();
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
        let begun = ex.begin(&mut buf, io, cx.now);
        self.front_in = Some(buf);
        // Nothing more to read for now: the buffer goes back while the backend answers (one
        // is taken again when body bytes or a pipelined request arrive), so an exchange in
        // flight holds only the buffers it fills.
        cx.pool.release_if_empty(&mut self.front_in);
        self.phase = Phase::Exchange(ex);
        if let Err(status) = begun {
            self.answer(Refusal::close(status), io, cx);
        }
        Some(Step::Progress)
    }

    // ---- the proxy's own answers ----------------------------------------------------------

    fn answer(&mut self, refusal: Refusal, io: &mut FrontIo, cx: &mut Context) {
        let head_only =
            refusal.head_only || matches!(&self.phase, Phase::Exchange(ex) if ex.is_head());
        // An answer given during an exchange is on its route: it carries the route's HSTS.
        let hsts = match &self.phase {
            Phase::Exchange(ex) if refusal.hsts.is_none() => ex.hsts().cloned(),
            _ => refusal.hsts,
        };
        let code = refusal.status.code();
        if let Phase::Exchange(ex) = &self.phase {
            ex.count_answer(code, cx);
        }
        if let Some(cause) = refusal.cause.or(ServerError::of_own_answer(code)) {
            cx.metrics.count_server_error(cause);
        }
        let close = !refusal.keep_alive || cx.stopping;
        let bytes = Answer {
            status: refusal.status,
            custom_body: refusal.custom.as_deref(),
            close,
            head_only,
        }
        .render_on(
            &cx.date,
            RouteFields {
                location: refusal.location.as_deref(),
                hsts: hsts.as_deref(),
            },
        );
        if cx.access_log.is_on() {
            // Logged before the exchange lets its backend go, whose name the line shows.
            let mut outcome = match &self.phase {
                Phase::Exchange(ex) => ex.outcome(),
                _ => LogOutcome::default(),
            };
            outcome.status = Some(refusal.status.code());
            outcome.bytes_out += bytes.len() as u64;
            if !cx.access_log.is_open(self.log) {
                // No request head was read (400, 408, ...): a line without method or path.
                let id = cx.request_ids.next_id();
                cx.access_log
                    .start(&mut self.log, id, io.peers(), cx.now, None);
            }
            self.finish_line(cx, &outcome);
        }
        self.end_exchange(cx);
        if close {
            cx.pool.release(&mut self.front_in);
        }
        cx.metrics.count_status(code);
        io.deadline.at = cx.now + io.info.front_timeout;
        self.phase = Phase::Answer {
            bytes,
            written: 0,
            then: if close { Keep::Close } else { Keep::Keep },
        };
    }

    fn step_answer(&mut self, io: &mut FrontIo, cx: &mut Context) -> Step {
        let Phase::Answer {
            bytes,
            written,
            then,
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
        match then {
            Keep::Close => {
                io.deadline.at = cx.now + LINGER;
                self.phase = Phase::Closing;
            }
            Keep::Keep => {
                self.served = self.served.saturating_add(1);
                self.idle_since = cx.metrics.http_requests.max(1);
                self.phase = Phase::Head;
                io.deadline.at = cx.now + io.info.front_timeout;
            }
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
        let outcome = ex.step(&mut self.front_in, io, cx);
        self.on_outcome(outcome, io, cx)
    }

    fn on_outcome(&mut self, outcome: Outcome, io: &mut FrontIo, cx: &mut Context) -> Step {
        match outcome {
            Outcome::Progress => Step::Progress,
            Outcome::Blocked => Step::Blocked,
            Outcome::Done => self.finish_exchange(io, cx),
            Outcome::Upgrade => Step::Upgrade,
            Outcome::Refuse(refusal) => {
                self.answer(refusal, io, cx);
                Step::Progress
            }
            Outcome::Close => Step::Close,
        }
    }

    fn finish_exchange(&mut self, io: &mut FrontIo, cx: &mut Context) -> Step {
        let Phase::Exchange(mut ex) = std::mem::replace(&mut self.phase, Phase::Head) else {
            return Step::Close;
        };
        if cx.access_log.is_on() {
            self.finish_line(cx, &ex.outcome());
        }
        let client = ex.finish(cx);
        self.served = self.served.saturating_add(1);
        self.idle_since = cx.metrics.http_requests.max(1);
        match client {
            Keep::Close => {
                cx.pool.release(&mut self.front_in);
                io.deadline.at = cx.now + LINGER;
                self.phase = Phase::Closing;
            }
            Keep::Keep => {
                let pending = self.front_in.as_ref().is_some_and(|b| !b.is_empty());
                io.deadline.at = cx.now
                    + if pending {
                        io.info.request_timeout
                    } else {
                        io.info.front_timeout
                    };
                cx.pool.release_if_empty(&mut self.front_in);
            }
        }
        Step::Progress
    }

    /// Ends the current exchange, if any, without pooling its backend connection.
    fn end_exchange(&mut self, cx: &mut Context) {
        if let Phase::Exchange(mut ex) = std::mem::replace(&mut self.phase, Phase::Head) {
            ex.end(false, cx);
        }
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

#[cfg(test)]
impl HttpSession {
    /// The phase, named for tests.
    fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Head => "head",
            Phase::Exchange(_) => "exchange",
            Phase::Answer { .. } => "answer",
            Phase::Closing => "closing",
            Phase::Linger => "linger",
        }
    }

    fn exchange(&self) -> Option<&Exchange> {
        match &self.phase {
            Phase::Exchange(ex) => Some(ex),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
