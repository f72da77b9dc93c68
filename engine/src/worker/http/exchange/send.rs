//! Moving an exchange's bytes: a head and the body bytes behind it, to the backend or to the
//! client, in one system call.
//!
//! Bodies are not copied: they are written from the buffer they were read into, next to the
//! rewritten head, in one `writev`; except a small response body (up to [`COALESCE_MAX`]),
//! copied behind its head so that both leave in one plain `send`, which costs the kernel
//! less than a `writev`. Nothing here knows sockets: any `Write` will do.

use std::io::{self, IoSlice, Write};

use crate::worker::buffer::Buf;

/// Response body bytes up to this many are copied behind the response head; larger bodies go
/// out from their own buffer.
pub const COALESCE_MAX: usize = 1024;

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Bytes left (0 after an interrupted call, which is worth another try).
    Wrote(usize),
    /// Nothing to send, or the peer takes nothing now (`WouldBlock`).
    Nothing,
    /// The peer's connection failed.
    Broken,
}

/// The unsent part of a request head, then the first `*body_ready` bytes of `body`. On a
/// write, `head_sent` and `body_ready` advance and the body bytes are consumed.
// Inlined into its one caller on the hot path: left to itself the compiler stopped doing so
// when the backend stream became an enum, at a cost of ~160 instructions a request.
#[inline]
pub fn send_request(
    to: &mut impl Write,
    head: Option<&Buf>,
    head_sent: &mut usize,
    body: &mut Option<Buf>,
    body_ready: &mut usize,
) -> Sent {
    let head_bytes = head.map_or(&[][..], |h| h.pending().get(*head_sent..).unwrap_or(&[]));
    let body_bytes = body
        .as_ref()
        .map_or(&[][..], |b| &b.pending()[..(*body_ready).min(b.len())]);
    let (head_len, body_len) = (head_bytes.len(), body_bytes.len());
    let written = match write_two(to, head_bytes, body_bytes) {
        Some(Ok(n)) => n,
        None => return Sent::Nothing,
        Some(Err(e)) => return failed(&e),
    };
    let from_head = written.min(head_len);
    *head_sent += from_head;
    let from_body = (written - from_head).min(body_len);
    if let Some(buf) = body.as_mut() {
        buf.consume(from_body);
    }
    *body_ready -= from_body;
    Sent::Wrote(written)
}

/// A response head (consumed as it leaves), then the first `*body_ready` bytes of `body`.
#[inline]
pub fn send_response(
    to: &mut impl Write,
    head: &mut Option<Buf>,
    body: &mut Option<Buf>,
    body_ready: &mut usize,
) -> Sent {
    // A small body behind a pending head is copied after it, so that both leave in one plain
    // `send` rather than a `writev`; the bytes keep their order.
    if let (Some(out), Some(buf)) = (head.as_mut(), body.as_mut()) {
        let ready = (*body_ready).min(buf.len());
        if !out.is_empty() && ready > 0 && ready <= COALESCE_MAX {
            let moved = out.push(&buf.pending()[..ready]);
            buf.consume(moved);
            *body_ready -= moved;
        }
    }
    let head_bytes = head.as_ref().map_or(&[][..], Buf::pending);
    let body_bytes = body
        .as_ref()
        .map_or(&[][..], |b| &b.pending()[..(*body_ready).min(b.len())]);
    let head_len = head_bytes.len();
    let written = match write_two(to, head_bytes, body_bytes) {
        Some(Ok(n)) => n,
        None => return Sent::Nothing,
        Some(Err(e)) => return failed(&e),
    };
    let from_head = written.min(head_len);
    if let Some(out) = head.as_mut() {
        out.consume(from_head);
    }
    let from_body = written - from_head;
    if let Some(buf) = body.as_mut() {
        buf.consume(from_body);
    }
    *body_ready -= from_body.min(*body_ready);
    Sent::Wrote(written)
}

fn failed(e: &io::Error) -> Sent {
    match e.kind() {
        io::ErrorKind::WouldBlock => Sent::Nothing,
        io::ErrorKind::Interrupted => Sent::Wrote(0),
        _ => Sent::Broken,
    }
}

/// Writes `first` then `second` in one system call: a `writev` when both have bytes, else a
/// plain `send` (the kernel's cheaper path, and the usual case for a bodiless request).
/// `None` when both are empty (no call at all).
// Inlined into its callers on the hot path, as it was before the exchange grew past the
// compiler's own inlining threshold (~70 instructions a request).
#[inline]
fn write_two(to: &mut impl Write, first: &[u8], second: &[u8]) -> Option<io::Result<usize>> {
    Some(match (first.is_empty(), second.is_empty()) {
        (true, true) => return None,
        (_, true) => to.write(first),
        (true, false) => to.write(second),
        (false, false) => to.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::worker::buffer::BufferPool;

    /// A peer that records each call and takes at most `room` bytes per call.
    #[derive(Default)]
    struct Peer {
        calls: Vec<Vec<u8>>,
        vectored: usize,
        room: usize,
    }

    impl Write for Peer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room);
            self.calls.push(b[..n].to_vec());
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.vectored += 1;
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.write(&all)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn buf(pool: &mut BufferPool, bytes: &[u8]) -> Option<Buf> {
        let mut b = pool.get().unwrap();
        b.push(bytes);
        Some(b)
    }

    #[test]
    fn a_small_response_body_leaves_with_its_head_in_one_plain_write() {
        let mut pool = BufferPool::new(4096, 4);
        let (mut head, mut body) = (buf(&mut pool, b"HEAD\r\n\r\n"), buf(&mut pool, b"bodyNEXT"));
        let mut ready = 4;
        let mut peer = Peer {
            room: usize::MAX,
            ..Peer::default()
        };
        let sent = send_response(&mut peer, &mut head, &mut body, &mut ready);
        assert_eq!(sent, Sent::Wrote(12));
        assert_eq!(peer.calls, vec![b"HEAD\r\n\r\nbody".to_vec()]);
        assert_eq!(peer.vectored, 0);
        // Bytes past the body's end stay for the next message.
        assert_eq!(body.unwrap().pending(), b"NEXT");
        assert_eq!(ready, 0);
    }

    #[test]
    fn a_large_response_body_goes_out_from_its_own_buffer_next_to_its_head() {
        let mut pool = BufferPool::new(4096, 4);
        let large = vec![b'x'; COALESCE_MAX + 1];
        let (mut head, mut body) = (buf(&mut pool, b"HEAD\r\n\r\n"), buf(&mut pool, &large));
        let mut ready = large.len();
        let mut peer = Peer {
            room: 10,
            ..Peer::default()
        };
        // A short write takes the head first, then the body, in order.
        assert_eq!(
            send_response(&mut peer, &mut head, &mut body, &mut ready),
            Sent::Wrote(10)
        );
        assert_eq!(peer.vectored, 1);
        assert!(head.as_ref().unwrap().is_empty());
        assert_eq!(ready, large.len() - 2);
        assert_eq!(body.as_ref().unwrap().len(), large.len() - 2);
    }

    #[test]
    fn a_request_head_resumes_where_it_stopped_and_its_body_follows() {
        let mut pool = BufferPool::new(4096, 4);
        let head = buf(&mut pool, b"GET / HTTP/1.1\r\n\r\n");
        let mut body = buf(&mut pool, b"abcPIPELINED");
        let (mut sent, mut ready) = (4, 3);
        let mut peer = Peer {
            room: usize::MAX,
            ..Peer::default()
        };
        let out = send_request(&mut peer, head.as_ref(), &mut sent, &mut body, &mut ready);
        assert_eq!(out, Sent::Wrote(17));
        assert_eq!(peer.calls, vec![b"/ HTTP/1.1\r\n\r\nabc".to_vec()]);
        assert_eq!((sent, ready), (18, 0));
        // A pipelined request behind the body is not sent with it.
        assert_eq!(body.unwrap().pending(), b"PIPELINED");
        // Nothing left: no call at all.
        let mut none = None;
        let mut zero = 0;
        assert_eq!(
            send_request(&mut peer, head.as_ref(), &mut sent, &mut none, &mut zero),
            Sent::Nothing
        );
        assert_eq!(peer.calls.len(), 1);
    }
}
