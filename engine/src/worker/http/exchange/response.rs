//! The backend's answer: read into the exchange's buffer, its head parsed, checked and
//! rewritten for the client (interim heads passed on, a `101` only if the client offered that
//! protocol, framing the client can read), then its body counted through as it streams. A head
//! arriving in pieces is parsed only when its new bytes may finish or break it ([`HeadScan`]),
//! so a backend trickling a large head costs linear work, not a parse per read.

use super::super::head_scan::HeadScan;
use super::super::parser::{header_slots, parse_response, upgrade_accepted, Framing};
use super::super::writer::{write_response_head, Added, ClientConnection};
use super::*;

impl Exchange {
    /// Reads from the backend and handles a response head when one is complete.
    pub(super) fn read_response(&mut self, io: &mut FrontIo, cx: &mut Context) -> Outcome {
        if matches!(self.response, Response::HeadParked) {
            // A whole head: a fresh scan parses it at once.
            self.response = Response::Head(HeadScan::default());
            return self.parse_response_head(io, cx);
        }
        if !self.dial.is_connected()
            || matches!(&self.response, Response::Body(b) if b.backend == BackendEnd::Closed)
        {
            return Outcome::Blocked;
        }
        let Some(conn) = cx.upstream.conn_mut(self.dial.link().conn) else {
            return self.fail(Status::BadGateway);
        };
        if !conn.readable {
            return Outcome::Blocked;
        }
        if self.resp_in.is_none() {
            self.resp_in = cx.buffer_waiters.get(&mut cx.pool, io);
        }
        let Some(buf) = self.resp_in.as_mut() else {
            // Pool exhausted: driven again once a buffer is back.
            return Outcome::Blocked;
        };
        if buf.is_full() {
            if !self.forwarded() {
                return self.fail(Status::BadGateway);
            }
            return Outcome::Blocked;
        }
        match buf.read_some(&mut conn.stream) {
            Ok((0, _)) => match &mut self.response {
                Response::Awaiting => self.replay_or(Status::BadGateway, io, cx),
                Response::Head(_) | Response::HeadParked => self.fail(Status::BadGateway),
                Response::Body(body) => {
                    body.backend = BackendEnd::Closed;
                    if body.framer.until_close() {
                        Outcome::Progress
                    } else {
                        // Truncated body: the client can only learn it from the close.
                        Outcome::Close
                    }
                }
            },
            Ok((_, filled)) => {
                if !filled && !conn.read_closed {
                    conn.readable = false;
                }
                match &mut self.response {
                    Response::Body(body) => {
                        match body
                            .framer
                            .advance_in_place(&mut buf.pending_mut()[self.resp_fwd..])
                        {
                            Ok(advanced) => {
                                buf.drop_tail(advanced.removed);
                                self.resp_fwd += advanced.ready;
                                if body.framer.is_done() && buf.len() > self.resp_fwd {
                                    // Bytes after the end of the response: not reusable.
                                    body.backend_conn = Keep::Close;
                                }
                                Outcome::Progress
                            }
                            Err(_) => Outcome::Close,
                        }
                    }
                    Response::Awaiting | Response::Head(_) | Response::HeadParked => {
                        if self.first_byte_at.is_none() {
                            self.first_byte_at = Some(cx.now);
                        }
                        if matches!(self.response, Response::Awaiting) {
                            self.record_first_byte(cx);
                            self.response = Response::Head(HeadScan::default());
                        }
                        self.parse_response_head(io, cx)
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                Outcome::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Outcome::Progress,
            Err(_) => match self.response {
                Response::Awaiting => self.replay_or(Status::BadGateway, io, cx),
                _ => self.fail(Status::BadGateway),
            },
        }
    }

    /// Parses the response heads in `resp_in`: interim ones pass through, a final one is
    /// rewritten into `resp_out` and the body state begins.
    fn parse_response_head(&mut self, io: &mut FrontIo, cx: &mut Context) -> Outcome {
        // The backend answered, so the request can no longer be replayed: its head's buffer
        // can be the one the answer needs.
        self.release_sent_head(cx);
        loop {
            let request_sent = self.request_sent();
            let (forwarded, is_head) = (self.forwarded(), self.is_head());
            let http10 = self.version == Version::Http10;
            let Some(buf) = self.resp_in.as_mut() else {
                return Outcome::Progress;
            };
            if forwarded || buf.is_empty() {
                return Outcome::Progress;
            }
            let Response::Head(scan) = &mut self.response else {
                return Outcome::Progress;
            };
            // Parsed when the new bytes may finish or break the head; a full buffer gets its
            // answer (a 502) at once.
            if !scan.should_parse(buf.pending()) && !buf.is_full() {
                return Outcome::Progress;
            }
            let mut headers = header_slots();
            let res = match parse_response(buf.pending(), &mut headers, is_head) {
                Ok(Some(res)) => res,
                Ok(None) if !buf.is_full() => {
                    scan.incomplete(buf.len());
                    return Outcome::Progress;
                }
                Ok(None) | Err(_) => return self.fail(Status::BadGateway),
            };
            if self.resp_out.is_none() {
                self.resp_out = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            let Some(out) = self.resp_out.as_mut() else {
                // Parked, not refused: the request is at the backend already, and its answer
                // goes on as soon as a buffer comes back.
                self.response = Response::HeadParked;
                return Outcome::Blocked;
            };
            let code = res.code;
            let len = res.raw.len();
            if code == 101 {
                let offered = self
                    .upgrade
                    .as_deref()
                    .is_some_and(|offer| upgrade_accepted(offer, res.upgrade));
                if !offered
                    || write_response_head(
                        out,
                        &res,
                        ClientConnection::Upgrade,
                        Added::date(cx.date.field()),
                    )
                    .is_err()
                {
                    return self.fail(Status::BadGateway);
                }
                buf.consume(len);
                // The backend's first bytes after the 101 go to the client behind the head.
                let n = out.push(buf.pending());
                if n < buf.len() {
                    return self.fail(Status::BadGateway);
                }
                buf.consume(n);
                self.count_backend_status(101, cx);
                self.status = Some(101);
                cx.metrics.websocket_upgrades += 1;
                // The exchange ends at its 101: that is its latency. The tunnel after it is
                // a session, not a request, and its lifetime is never a latency sample.
                self.record_latency(cx);
                cx.pool.release(&mut self.resp_in);
                cx.pool.release(&mut self.head_out);
                return Outcome::Upgrade;
            }
            if (100..200).contains(&code) {
                // Interim answers (100 Continue, 103 Early Hints) go through, except to
                // HTTP/1.0 clients, which do not know them.
                if !http10
                    && write_response_head(
                        out,
                        &res,
                        ClientConnection::KeepAlive { http10: false },
                        Added::date(cx.date.field()),
                    )
                    .is_err()
                {
                    return self.fail(Status::BadGateway);
                }
                buf.consume(len);
                // The next head starts where this one ended: looked at afresh.
                scan.reset();
                self.count_backend_status(code, cx);
                continue;
            }
            // An HTTP/1.0 request went out as HTTP/1.0, so a chunked answer is the backend's
            // fault (RFC 9112 6.1), and its client could not read one.
            if http10 && res.framing == Framing::Chunked {
                return self.fail(Status::BadGateway);
            }
            // The client connection cannot be kept when: it asked so; we are stopping; the body
            // ends with the backend's close (the client needs our close to see its end); or
            // the backend answered before the whole request was sent (the rest of the request
            // would be read as a new one).
            let client_conn = if self.client_wants == Keep::Close
                || cx.stopping
                || res.framing == Framing::UntilClose
                || !request_sent
            {
                Keep::Close
            } else {
                Keep::Keep
            };
            let connection = match client_conn {
                Keep::Close => ClientConnection::Close,
                Keep::Keep => ClientConnection::KeepAlive { http10 },
            };
            // Nothing else waits for the client: no interim head is left half sent.
            let alone = out.is_empty();
            let fields = Added {
                date: cx.date.field(),
                hsts: self.hsts.as_deref(),
            };
            if write_response_head(out, &res, connection, fields).is_err() {
                return self.fail(Status::BadGateway);
            }
            let mut body = BodyState {
                framer: BodyFramer::new(res.framing),
                backend: BackendEnd::Open,
                backend_conn: if res.keep_alive {
                    Keep::Keep
                } else {
                    Keep::Close
                },
                client_conn,
            };
            buf.consume(len);
            match body.framer.advance_in_place(buf.pending_mut()) {
                Ok(advanced) => {
                    buf.drop_tail(advanced.removed);
                    let m = advanced.ready;
                    self.resp_fwd = m;
                    if body.framer.is_done() && buf.len() > m {
                        body.backend_conn = Keep::Close;
                    }
                }
                // The body broke before any of this answer left: a clean 502 can still take
                // its place. Otherwise only the close tells the client.
                Err(_) if alone => return self.fail(Status::BadGateway),
                Err(_) => return Outcome::Close,
            }
            self.response = Response::Body(body);
            self.count_backend_status(code, cx);
            self.status = Some(code);
            return Outcome::Progress;
        }
    }
}
