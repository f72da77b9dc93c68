//! A byte pipe between a client and a backend: TCP listeners, and WebSocket (or any
//! `Upgrade`) after a `101 Switching Protocols`.
//!
//! Each direction has its own buffer, taken when bytes arrive and given back when drained, so
//! an idle pipe holds no buffer. An end of stream from one side is passed on as a half-close
//! (`shutdown(Write)`) once its bytes are written; the pipe ends when both sides have closed
//! and both buffers are empty, on any error, or after the listener's `tunnel_timeout` without
//! a byte either way (not its keep-alive `front_timeout`: a WebSocket may be quiet for long).

use std::io;
use std::net::Shutdown;

use crate::worker::buffer::Buf;
use crate::worker::context::{Context, Next};
use crate::worker::front::FrontIo;
use crate::worker::upstream::{Attempt, Link};

/// Bytes both ways between a client and a backend.
#[derive(Debug)]
pub struct Pipe {
    link: Link,
    /// Set while connecting (TCP listeners), for retries on another backend.
    attempt: Option<Attempt>,
    connected: bool,
    /// Client → backend.
    up: Option<Buf>,
    /// Backend → client.
    down: Option<Buf>,
    front_eof: bool,
    back_eof: bool,
    up_shut: bool,
    down_shut: bool,
    /// The backend link was given back (a failed connect with no retry left).
    released: bool,
}

impl Pipe {
    /// A pipe for a new client of a TCP listener routed to `cluster`; `None` if no backend
    /// could be had (the caller closes the client).
    pub fn connect(cluster: usize, io: &mut FrontIo, cx: &mut Context) -> Option<Pipe> {
        let mut attempt = Attempt::new(cluster);
        let link = cx
            .upstream
            .connect(
                &mut attempt,
                io.key,
                true,
                cx.config.max_connect_attempts,
                cx.now,
                &cx.registry,
            )
            .ok()?;
        let (connect_timeout, _) = cx.upstream.cluster_timeouts(cluster);
        io.deadline.at = cx.now + connect_timeout.unwrap_or(cx.config.connect_timeout);
        cx.metrics.tcp_sessions += 1;
        Some(Pipe {
            link,
            attempt: Some(attempt),
            connected: false,
            up: None,
            down: None,
            front_eof: false,
            back_eof: false,
            up_shut: false,
            down_shut: false,
            released: false,
        })
    }

    /// The pipe an upgraded HTTP session becomes: `up` holds client bytes already read,
    /// `down` the `101` head and any backend bytes that followed it.
    pub fn upgraded(link: Link, up: Option<Buf>, down: Option<Buf>) -> Pipe {
        Pipe {
            link,
            attempt: None,
            connected: true,
            up,
            down,
            front_eof: false,
            back_eof: false,
            up_shut: false,
            down_shut: false,
            released: false,
        }
    }

    pub fn drive(&mut self, io: &mut FrontIo, cx: &mut Context) -> Next {
        if !self.connected {
            match cx.upstream.check_connect(self.link) {
                None => return Next::Wait,
                Some(Ok(())) => {
                    self.connected = true;
                    cx.upstream.record_success(self.link.backend);
                    // From now on the deadline is the idle one, not the connect one.
                    io.deadline.at = cx.now + io.info.tunnel_timeout;
                }
                Some(Err(_)) => return self.connect_failed(io, cx),
            }
        }
        loop {
            let mut progress = false;
            match self.pump(io, cx) {
                Ok(p) => progress |= p,
                Err(()) => return Next::Close,
            }
            cx.pool.release_if_empty(&mut self.up);
            cx.pool.release_if_empty(&mut self.down);
            if self.front_eof
                && self.back_eof
                && self.up.is_none()
                && self.down.is_none()
                && !io.transport.has_pending_output()
            {
                return Next::Close;
            }
            if !progress {
                return Next::Wait;
            }
            io.deadline.at = cx.now + io.info.tunnel_timeout;
        }
    }

    /// One round of reads and writes both ways.
    fn pump(&mut self, io: &mut FrontIo, cx: &mut Context) -> Result<bool, ()> {
        let mut progress = false;
        let conn = cx.upstream.conn_mut(self.link.conn).ok_or(())?;

        // Client → up.
        if !self.front_eof && io.readable {
            if self.up.is_none() {
                self.up = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            if let Some(buf) = self.up.as_mut().filter(|b| !b.is_full()) {
                match buf.read_from(&mut io.transport) {
                    Ok(0) => {
                        self.front_eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        cx.metrics.bytes_in += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Err(()),
                }
            }
        }
        // Up → backend.
        if let Some(buf) = self.up.as_mut().filter(|b| !b.is_empty()) {
            match buf.write_to(&mut conn.stream, usize::MAX) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(()),
            }
        }
        if self.front_eof && !self.up_shut && self.up.as_ref().is_none_or(Buf::is_empty) {
            let _ = conn.stream.shutdown(Shutdown::Write);
            self.up_shut = true;
        }
        // Backend → down.
        if !self.back_eof && conn.readable {
            if self.down.is_none() {
                self.down = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            if let Some(buf) = self.down.as_mut().filter(|b| !b.is_full()) {
                match buf.read_from(&mut conn.stream) {
                    Ok(0) => {
                        self.back_eof = true;
                        progress = true;
                    }
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Err(()),
                }
            }
        }
        // Down → client.
        if let Some(buf) = self.down.as_mut().filter(|b| !b.is_empty()) {
            match buf.write_to(&mut io.transport, usize::MAX) {
                Ok(n) => {
                    cx.metrics.bytes_out += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(()),
            }
        }
        if self.back_eof
            && !self.down_shut
            && self.down.as_ref().is_none_or(Buf::is_empty)
            && !io.transport.has_pending_output()
        {
            io.transport.shutdown_write();
            self.down_shut = true;
        }
        Ok(progress)
    }

    fn connect_failed(&mut self, io: &mut FrontIo, cx: &mut Context) -> Next {
        cx.upstream.record_failure(self.link.backend, cx.now);
        cx.upstream.release(self.link, false, cx.now, &cx.registry);
        let Some(attempt) = self.attempt.as_mut() else {
            self.released = true;
            return Next::Close;
        };
        attempt.failures += 1;
        match cx.upstream.connect(
            attempt,
            io.key,
            true,
            cx.config.max_connect_attempts,
            cx.now,
            &cx.registry,
        ) {
            Ok(link) => {
                cx.metrics.retries += 1;
                self.link = link;
                let (connect_timeout, _) = cx.upstream.cluster_timeouts(attempt.cluster);
                io.deadline.at = cx.now + connect_timeout.unwrap_or(cx.config.connect_timeout);
                self.drive(io, cx)
            }
            Err(_) => {
                self.attempt = None;
                self.released = true;
                Next::Close
            }
        }
    }

    /// The deadline passed: a connect that took too long is a failed connect; otherwise the
    /// pipe was idle too long.
    pub fn on_timeout(&mut self, io: &mut FrontIo, cx: &mut Context) -> Next {
        if !self.connected {
            return self.connect_failed(io, cx);
        }
        Next::Close
    }

    pub fn teardown(&mut self, cx: &mut Context) {
        if !self.released {
            self.released = true;
            cx.upstream.release(self.link, false, cx.now, &cx.registry);
        }
        cx.pool.release(&mut self.up);
        cx.pool.release(&mut self.down);
    }
}
