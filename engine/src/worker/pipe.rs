//! A byte pipe between a client and a backend: TCP listeners, and WebSocket (or any
//! `Upgrade`) after a `101 Switching Protocols`.
//!
//! Each direction has its own buffer, taken when bytes arrive and given back when drained, so
//! an idle pipe holds no buffer. An end of stream from one side is passed on as a half-close
//! (`shutdown(Write)`) once its bytes are written; the pipe ends when both sides have closed
//! and both buffers are empty, on any error, or after the listener's `tunnel_timeout` without
//! a byte either way (not its keep-alive `front_timeout`: a WebSocket may be quiet for long).

use std::io;
use std::time::Instant;

use crate::worker::access_log::{LineKey, Outcome as LogOutcome};
use crate::worker::buffer::Buf;
use crate::worker::context::{Context, Next};
use crate::worker::dial::{Dial, Dialed, Reuse};
use crate::worker::front::FrontIo;
use crate::worker::http::session::PipeParts;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The sending side may still send.
    Open,
    /// It sent its end of stream; the half-close is not passed on yet.
    Ended,
    /// Its end of stream was passed on (`shutdown(Write)` on the other side).
    Shut,
}

/// Bytes both ways between a client and a backend.
#[derive(Debug)]
pub struct Pipe {
    dial: Dial,
    /// Client → backend.
    up: Option<Buf>,
    /// Backend → client.
    down: Option<Buf>,
    /// The client's sending side.
    client: Flow,
    /// The backend's sending side.
    backend: Flow,
    /// The access line written when the pipe ends (`None` with the log off), and what it
    /// reports: bytes counted here, timings from `started` (a TCP session) or from the
    /// upgrade request's exchange (WebSocket).
    line: LineKey,
    outcome: LogOutcome,
    started: Instant,
}

impl Pipe {
    /// A pipe for a new client of a TCP listener routed to `cluster`; `None` if no backend
    /// could be had (the caller closes the client).
    pub fn connect(cluster: usize, io: &mut FrontIo, cx: &mut Context) -> Option<Pipe> {
        let mut line = LineKey::default();
        let id = cx.request_ids.next_id();
        cx.access_log.start(&mut line, id, io.peers(), cx.now, None);
        let dial = match Dial::start(cluster, Reuse::FreshOnly, io, cx) {
            Ok(dial) => dial,
            Err(_) => {
                // Logged all the same: a TCP client turned away is worth a line.
                let outcome = LogOutcome {
                    cluster: Some(cluster),
                    ..LogOutcome::default()
                };
                cx.access_log.finish(line, &outcome, &cx.upstream, cx.now);
                cx.access_log.recycle(&mut line);
                return None;
            }
        };
        io.deadline.at = cx.now + dial.connect_timeout();
        cx.metrics.tcp_sessions += 1;
        Some(Pipe {
            dial,
            up: None,
            down: None,
            client: Flow::Open,
            backend: Flow::Open,
            line,
            outcome: LogOutcome::default(),
            started: cx.now,
        })
    }

    /// The pipe an upgraded HTTP session becomes: `up` holds client bytes already read,
    /// `down` the `101` head and any backend bytes that followed it.
    pub fn upgraded(parts: PipeParts, now: Instant) -> Pipe {
        Pipe {
            dial: parts.dial,
            up: parts.up,
            down: parts.down,
            client: Flow::Open,
            backend: Flow::Open,
            line: parts.line,
            outcome: parts.outcome,
            started: now,
        }
    }

    pub fn drive(&mut self, io: &mut FrontIo, cx: &mut Context) -> Next {
        while !self.dial.is_connected() {
            match self.dial.poll(io, cx) {
                Dialed::Pending => return Next::Wait,
                Dialed::Connected => {
                    // From now on the deadline is the idle one, not the connect one.
                    io.deadline.at = cx.now + io.info.tunnel_timeout;
                    if self.outcome.connect.is_none() {
                        self.outcome.connect = Some(cx.now.saturating_duration_since(self.started));
                    }
                }
                Dialed::Retrying => {}
                Dialed::Failed(_) => return Next::Close,
            }
        }
        loop {
            let mut progress = false;
            match self.pump(io, cx) {
                Pumped::Progress => progress = true,
                Pumped::Idle => {}
                Pumped::Broken => return Next::Close,
            }
            cx.pool.release_if_empty(&mut self.up);
            cx.pool.release_if_empty(&mut self.down);
            if self.client != Flow::Open
                && self.backend != Flow::Open
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
    fn pump(&mut self, io: &mut FrontIo, cx: &mut Context) -> Pumped {
        let mut progress = false;
        let Some(conn) = cx.upstream.conn_mut(self.dial.link().conn) else {
            return Pumped::Broken;
        };

        // Client → up.
        if self.client == Flow::Open && io.readable {
            if self.up.is_none() {
                self.up = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            if let Some(buf) = self.up.as_mut().filter(|b| !b.is_full()) {
                match buf.read_from(&mut io.transport) {
                    Ok(0) => {
                        self.client = Flow::Ended;
                        progress = true;
                    }
                    Ok(n) => {
                        cx.metrics.bytes_in += n as u64;
                        self.outcome.bytes_in += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Pumped::Broken,
                }
            }
        }
        // Up → backend.
        if let Some(buf) = self.up.as_mut().filter(|b| !b.is_empty()) {
            match buf.write_to(&mut conn.stream, usize::MAX) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Pumped::Broken,
            }
        }
        if self.client == Flow::Ended && self.up.as_ref().is_none_or(Buf::is_empty) {
            conn.stream.shutdown_write();
            self.client = Flow::Shut;
        }
        // Backend → down.
        if self.backend == Flow::Open && conn.readable {
            if self.down.is_none() {
                self.down = cx.buffer_waiters.get(&mut cx.pool, io);
            }
            if let Some(buf) = self.down.as_mut().filter(|b| !b.is_full()) {
                match buf.read_from(&mut conn.stream) {
                    Ok(0) => {
                        self.backend = Flow::Ended;
                        progress = true;
                    }
                    Ok(_) => {
                        if self.outcome.backend_time.is_none() {
                            let since = cx.now.saturating_duration_since(self.started);
                            self.outcome.backend_time = Some(since);
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Pumped::Broken,
                }
            }
        }
        // Down → client.
        if let Some(buf) = self.down.as_mut().filter(|b| !b.is_empty()) {
            match buf.write_to(&mut io.transport, usize::MAX) {
                Ok(n) => {
                    cx.metrics.bytes_out += n as u64;
                    self.outcome.bytes_out += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Pumped::Broken,
            }
        }
        if self.backend == Flow::Ended
            && self.down.as_ref().is_none_or(Buf::is_empty)
            && !io.transport.has_pending_output()
        {
            io.transport.shutdown_write();
            self.backend = Flow::Shut;
        }
        if progress {
            Pumped::Progress
        } else {
            Pumped::Idle
        }
    }

    /// The deadline passed: a connect that took too long is a failed connect; otherwise the
    /// pipe was idle too long.
    pub fn on_timeout(&mut self, io: &mut FrontIo, cx: &mut Context) -> Next {
        if self.dial.is_connected() {
            // Quiet past the tunnel timeout.
            cx.metrics.timeouts.idle += 1;
            return Next::Close;
        }
        cx.metrics.timeouts.connect += 1;
        match self.dial.retry(io, cx) {
            Dialed::Failed(_) => Next::Close,
            _ => self.drive(io, cx),
        }
    }

    pub fn teardown(&mut self, cx: &mut Context) {
        if self.line.is_some() {
            // Named before the link is let go.
            let (cluster, backend) = self.dial.keys();
            self.outcome.cluster = Some(cluster);
            self.outcome.backend = backend;
            let line = self.line;
            cx.access_log
                .finish(line, &self.outcome, &cx.upstream, cx.now);
            cx.access_log.recycle(&mut self.line);
        }
        self.dial.release(false, cx);
        cx.pool.release(&mut self.up);
        cx.pool.release(&mut self.down);
    }
}

/// What one round of a pipe's reads and writes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    Progress,
    Idle,
    /// A socket failed, or the backend connection is gone.
    Broken,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use std::net::SocketAddr;

    use weir_schema::Protocol;

    use super::*;
    use crate::channel::WorkerConfig;
    use crate::worker::dial::DialState;
    use crate::worker::rig::{Answer, Net, Rig, TestBackend, TURNS};

    fn rig(net: &Net, backends: &[SocketAddr]) -> (Rig, Option<Pipe>) {
        let mut rig = Rig::new(net, backends, Protocol::Tcp, WorkerConfig::default());
        let cluster = rig.cx.router.lookup_tcp(rig.io.info.address).unwrap();
        let pipe = Pipe::connect(cluster, &mut rig.io, &mut rig.cx);
        (rig, pipe)
    }

    /// Turns the loop until the pipe is connected (bounded).
    fn until_connected(rig: &mut Rig, pipe: &mut Pipe) {
        until(rig, pipe, "connected", |_, pipe| pipe.dial.is_connected());
    }

    /// Turns the loop until `done` (bounded); the pipe must keep waiting meanwhile.
    fn until(rig: &mut Rig, pipe: &mut Pipe, what: &str, done: impl Fn(&Rig, &Pipe) -> bool) {
        for _ in 0..TURNS {
            if done(rig, pipe) {
                return;
            }
            rig.deliver();
            assert_eq!(pipe.drive(&mut rig.io, &mut rig.cx), Next::Wait, "{what}");
        }
        panic!("never reached {what}");
    }

    /// Bytes both ways, then each side's half-close passed on, then the pipe ends.
    fn carries_bytes_and_half_closes(rig: &mut Rig, pipe: &mut Pipe, backend: &TestBackend) {
        let b = backend.accept();
        rig.client.send(b"ping");
        until(rig, pipe, "ping forwarded", |r, _| {
            r.cx.metrics.bytes_in == 4
        });
        assert_eq!(b.take(), b"ping");
        b.send(b"pong");
        until(rig, pipe, "pong forwarded", |r, _| {
            r.cx.metrics.bytes_out == 4
        });
        assert_eq!(rig.client.take(), b"pong");

        // The client's end of stream reaches the backend as a half-close, and the pipe goes
        // on the other way.
        rig.client.shutdown_write();
        until(rig, pipe, "the half-close passed on", |_, _| b.is_shut());
        assert!(!rig.client.is_shut());
        b.send(b"late");
        until(rig, pipe, "late forwarded", |r, _| {
            r.cx.metrics.bytes_out == 8
        });
        assert_eq!(rig.client.take(), b"late");

        b.shutdown_write();
        let mut ended = false;
        for _ in 0..TURNS {
            rig.deliver();
            if pipe.drive(&mut rig.io, &mut rig.cx) == Next::Close {
                ended = true;
                break;
            }
        }
        assert!(ended, "the pipe never ended");
        assert!(rig.client.is_shut());
        pipe.teardown(&mut rig.cx);
    }

    #[test]
    fn a_pipe_retries_a_refused_connect_on_the_next_backend() {
        let net = Net::default();
        let dead = net.backend(Answer::Refuse);
        let live = net.backend(Answer::Accept);
        let (mut rig, pipe) = rig(&net, &[dead.addr(), live.addr()]);
        let mut pipe = pipe.unwrap();
        until_connected(&mut rig, &mut pipe);
        assert_eq!(rig.cx.metrics.retries, 1);
        assert_eq!(rig.cx.upstream.stats().connect_errors, 1);
        // Connected: the deadline is the idle one now.
        assert_eq!(rig.io.deadline.at, rig.cx.now + rig.io.info.tunnel_timeout);
        carries_bytes_and_half_closes(&mut rig, &mut pipe, &live);
    }

    #[test]
    fn a_pipe_connect_timeout_is_retried_on_the_next_backend() {
        let net = Net::default();
        let stuck = net.backend(Answer::Hold);
        let live = net.backend(Answer::Accept);
        let (mut rig, pipe) = rig(&net, &[stuck.addr(), live.addr()]);
        let mut pipe = pipe.unwrap();
        rig.deliver();
        assert_eq!(pipe.drive(&mut rig.io, &mut rig.cx), Next::Wait);
        assert_eq!(pipe.dial.state(), DialState::Connecting);
        assert_eq!(
            rig.io.deadline.at,
            rig.cx.now + rig.cx.config.connect_timeout
        );
        rig.jump_to_deadline();
        assert_eq!(pipe.on_timeout(&mut rig.io, &mut rig.cx), Next::Wait);
        assert_eq!(rig.cx.metrics.retries, 1);
        until_connected(&mut rig, &mut pipe);
        carries_bytes_and_half_closes(&mut rig, &mut pipe, &live);
    }

    #[test]
    fn a_pipe_connect_held_then_completed_carries_bytes() {
        let net = Net::default();
        let slow = net.backend(Answer::Hold);
        let (mut rig, pipe) = rig(&net, &[slow.addr()]);
        let mut pipe = pipe.unwrap();
        let b = slow.accept();
        for _ in 0..3 {
            rig.deliver();
            assert_eq!(pipe.drive(&mut rig.io, &mut rig.cx), Next::Wait);
            assert_eq!(pipe.dial.state(), DialState::Connecting);
        }
        b.complete();
        until_connected(&mut rig, &mut pipe);
        assert_eq!(rig.cx.metrics.retries, 0);
        rig.client.send(b"ping");
        until(&mut rig, &mut pipe, "ping forwarded", |r, _| {
            r.cx.metrics.bytes_in == 4
        });
        assert_eq!(b.take(), b"ping");
    }

    #[test]
    fn a_pipe_with_no_backend_left_closes() {
        let net = Net::default();
        let stuck = net.backend(Answer::Hold);
        let other = net.backend(Answer::Hold);
        let (mut rig, pipe) = rig(&net, &[stuck.addr(), other.addr()]);
        let mut pipe = pipe.unwrap();
        rig.jump_to_deadline();
        // The retry is a new connect, with a connect timeout of its own.
        assert_eq!(pipe.on_timeout(&mut rig.io, &mut rig.cx), Next::Wait);
        assert_eq!(pipe.dial.state(), DialState::Connecting);
        assert_eq!(
            rig.io.deadline.at,
            rig.cx.now + rig.cx.config.connect_timeout
        );
        rig.jump_to_deadline();
        assert_eq!(pipe.on_timeout(&mut rig.io, &mut rig.cx), Next::Close);
        assert_eq!(pipe.dial.state(), DialState::Gone);
        // Its link went back already: tearing down gives back nothing twice.
        pipe.teardown(&mut rig.cx);
    }

    #[test]
    fn a_connected_pipe_closes_at_its_idle_timeout() {
        let net = Net::default();
        let live = net.backend(Answer::Accept);
        let (mut rig, pipe) = rig(&net, &[live.addr()]);
        let mut pipe = pipe.unwrap();
        until_connected(&mut rig, &mut pipe);
        rig.jump_to_deadline();
        assert_eq!(pipe.on_timeout(&mut rig.io, &mut rig.cx), Next::Close);
    }
}
