//! Moving an exchange's bytes: the request to the backend, the response to the client.
//!
//! Bodies are not copied: they are written from the buffer they were read into, next to the
//! rewritten head, in one `writev`, except a small response body (up to [`COALESCE_MAX`]),
//! copied behind its head so that both leave in one plain `send`, which costs the kernel
//! less than a `writev`.

use std::io::{self, IoSlice, Write};

use super::{Exchange, Sending};
use crate::worker::buffer::Buf;
use crate::worker::context::Context;
use crate::worker::front::FrontIo;

/// Response body bytes up to this many are copied behind the response head; larger bodies go
/// out from their own buffer.
const COALESCE_MAX: usize = 1024;

impl Exchange {
    /// Writes the pending request head and body bytes to the backend.
    pub(super) fn send_request(&mut self, front_in: &mut Option<Buf>, cx: &mut Context) -> Sent {
        if !self.dial.is_connected() || self.sending == Sending::Abandoned {
            return Sent::Nothing;
        }
        let head = self.head_out.as_ref().map_or(&[][..], |h| {
            h.pending().get(self.head_sent..).unwrap_or(&[])
        });
        let body = front_in
            .as_ref()
            .map_or(&[][..], |b| &b.pending()[..self.req_fwd.min(b.len())]);
        if head.is_empty() && body.is_empty() {
            return Sent::Nothing;
        }
        let (head_len, body_len) = (head.len(), body.len());
        let Some(conn) = cx.upstream.conn_mut(self.dial.link().conn) else {
            return Sent::Broken;
        };
        let written = match write_two(&mut conn.stream, head, body) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Sent::Some,
            Err(_) => return Sent::Broken,
        };
        let from_head = written.min(head_len);
        self.head_sent += from_head;
        let from_body = (written - from_head).min(body_len);
        if let Some(buf) = front_in.as_mut() {
            buf.consume(from_body);
        }
        self.req_fwd -= from_body;
        Sent::of(written)
    }

    /// Writes the pending response head and body bytes to the client.
    pub(super) fn send_response(&mut self, io: &mut FrontIo, cx: &mut Context) -> Sent {
        // A small body behind a pending head is copied after it, so that both leave in one
        // plain `send` rather than a `writev`; the bytes keep their order.
        if let (Some(out), Some(buf)) = (self.resp_out.as_mut(), self.resp_in.as_mut()) {
            let ready = self.resp_fwd.min(buf.len());
            if !out.is_empty() && ready > 0 && ready <= COALESCE_MAX {
                let moved = out.push(&buf.pending()[..ready]);
                buf.consume(moved);
                self.resp_fwd -= moved;
            }
        }
        let head = self.resp_out.as_ref().map_or(&[][..], Buf::pending);
        let body = self
            .resp_in
            .as_ref()
            .map_or(&[][..], |b| &b.pending()[..self.resp_fwd.min(b.len())]);
        if head.is_empty() && body.is_empty() {
            return Sent::Nothing;
        }
        let head_len = head.len();
        let written = match write_two(&mut io.transport, head, body) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Sent::Some,
            Err(_) => return Sent::Broken,
        };
        cx.metrics.bytes_out += written as u64;
        let from_head = written.min(head_len);
        if let Some(out) = self.resp_out.as_mut() {
            out.consume(from_head);
        }
        let from_body = written - from_head;
        if let Some(buf) = self.resp_in.as_mut() {
            buf.consume(from_body);
        }
        self.resp_fwd -= from_body.min(self.resp_fwd);
        cx.pool.release_if_empty(&mut self.resp_out);
        cx.pool.release_if_empty(&mut self.resp_in);
        Sent::of(written)
    }
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Some,
    Nothing,
    /// The peer's connection failed.
    Broken,
}

impl Sent {
    pub(super) fn of(written: usize) -> Sent {
        if written > 0 {
            Sent::Some
        } else {
            Sent::Nothing
        }
    }
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
