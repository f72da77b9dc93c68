//! The worker's event loop: one thread, one mio `Poll` (edge-triggered), every socket of the
//! worker registered in it. Each turn reads the clock once, dispatches readiness by token,
//! fires due timers (sessions', then idle pooled backend connections'), and flushes what the
//! main process must hear.
//!
//! Invariants: nothing here blocks (every socket is non-blocking, readiness is only a hint and
//! every operation stops at `WouldBlock`); unknown or stale tokens are ignored; a session's
//! timer is re-armed after every drive, lazily ([`super::timer`]).

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use weir_schema::Protocol as ListenerProtocol;

use super::context::{Context, Next};
use super::control::{Control, Directive};
use super::error::WorkerError;
use super::front::{FrontIo, Transport};
use super::handshake::{self, FailureLog, Handshake, Shaken};
use super::http::session::{Drive, HttpSession};
use super::idle;
use super::listeners::{Accepted, Listeners};
use super::pipe::Pipe;
use super::probe::Probes;
use super::sessions::{Protocol, Session};
use super::statsd::Statsd;
use super::timer::{Deadline, TimerKey, Timers};
use super::tls::TlsStream;
use super::token::{decode_token, token_front, TokenKind};

/// How often the worker looks at health checks and drain deadlines.
const TICK: Duration = Duration::from_millis(100);

/// Everything one worker holds.
#[derive(Debug)]
pub struct Worker {
    poll: Poll,
    cx: Context,
    sessions: Slab<Session>,
    listeners: Listeners,
    timers: Timers,
    control: Control,
    probes: Probes,
    next_serial: u64,
    next_tick: Instant,
    tls_failures: FailureLog,
    statsd: Option<Statsd>,
}

impl Worker {
    pub fn new(poll: Poll, cx: Context, control: Control, statsd: Option<Statsd>) -> Worker {
        let now = cx.now;
        Worker {
            poll,
            cx,
            sessions: Slab::new(),
            listeners: Listeners::new(),
            timers: Timers::new(),
            control,
            probes: Probes::new(),
            next_serial: 1,
            next_tick: now + TICK,
            tls_failures: FailureLog::new(now),
            statsd,
        }
    }

    /// Runs until told to stop or the main process goes away.
    pub fn run(&mut self) -> Result<(), WorkerError> {
        let end = self.serve();
        // The last lines, best effort.
        self.cx.access_log.flush(Instant::now(), true);
        end
    }

    fn serve(&mut self) -> Result<(), WorkerError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let next = [
                self.timers.next_deadline(),
                self.cx.upstream.next_idle_deadline(),
            ]
            .into_iter()
            .flatten()
            .fold(self.next_tick, Instant::min);
            let timeout = next.saturating_duration_since(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WorkerError::Poll(e)),
            }
            self.cx.now = Instant::now();
            let wall = SystemTime::now();
            self.cx.date.update(wall);
            self.cx.access_log.set_clock(wall);
            for event in events.iter() {
                let closed = event.is_read_closed() || event.is_error();
                let readable = event.is_readable() || closed;
                match decode_token(event.token().0) {
                    TokenKind::Front(key) => {
                        if let Some(s) = self.sessions.get_mut(key) {
                            s.io.readable |= readable;
                            s.io.read_closed |= closed;
                            // Output a transport holds back goes out as the socket drains;
                            // a failed flush is found by the next write.
                            if event.is_writable() && s.io.transport.has_pending_output() {
                                let _ = s.io.transport.flush_output();
                            }
                            self.drive(key);
                        }
                    }
                    TokenKind::Back(conn) => {
                        let owner = match self.cx.upstream.conn_mut(conn) {
                            Some(c) => {
                                c.readable |= readable;
                                c.read_closed |= closed;
                                c.writable_seen |= event.is_writable();
                                c.owner
                            }
                            None => continue,
                        };
                        match owner {
                            Some(key) => self.drive(key),
                            None => self.cx.upstream.on_idle_event(conn, &self.cx.registry),
                        }
                    }
                    TokenKind::Listener(key) => self.accept(key),
                    TokenKind::Other(0) => {
                        if self.control_readable()? {
                            return Ok(());
                        }
                    }
                    TokenKind::Other(n) => self.probes.on_event(n - 1, &mut self.cx),
                }
            }
            self.fire_timers();
            self.wake_buffer_waiters();
            self.cx.upstream.expire_idle(self.cx.now, &self.cx.registry);
            let ticked = self.cx.now >= self.next_tick;
            if ticked {
                self.next_tick = self.cx.now + TICK;
                self.tick();
            }
            if self.after_turn(ticked)? {
                return Ok(());
            }
        }
    }

    fn control_readable(&mut self) -> Result<bool, WorkerError> {
        match self.control.read_requests()? {
            Some(requests) => {
                for request in requests {
                    let live = self.sessions.len();
                    let directive =
                        self.control
                            .handle(request, &mut self.cx, &mut self.listeners, live)?;
                    match directive {
                        Directive::Continue => {}
                        Directive::Exit => return Ok(true),
                        Directive::SoftStop => self.begin_soft_stop(),
                        Directive::ListenerUpdated { old, new } => {
                            // Open connections take the new settings too, from their next
                            // request on (a request under way keeps the body limit it started
                            // with). One walk here rather than a lookup per request keeps the
                            // request path as it is.
                            for (_, session) in self.sessions.iter_mut() {
                                if Rc::ptr_eq(&session.io.info, &old) {
                                    session.io.info = new.clone();
                                }
                            }
                        }
                    }
                }
                if !self.cx.stopping {
                    self.listeners
                        .start_accepting(&self.cx.registry, &self.cx.router);
                }
                Ok(false)
            }
            // The main process is gone: nothing to serve for.
            None => Ok(true),
        }
    }

    /// Access lines (batched until the tick, see `access_log`), notices, soft-stop
    /// completion, channel flush. `Ok(true)`: exit now.
    fn after_turn(&mut self, ticked: bool) -> Result<bool, WorkerError> {
        self.cx
            .access_log
            .flush(self.cx.now, ticked || self.cx.stopping);
        self.cx.metrics.access_log_dropped = self.cx.access_log.dropped;
        self.control.flush_notices(&mut self.cx.upstream);
        if self.cx.stopping && self.sessions.is_empty() {
            self.control.finish_soft_stop();
            self.control.flush_blocking()?;
            return Ok(true);
        }
        self.control.flush()?;
        Ok(false)
    }

    // ---- accepting ------------------------------------------------------------------------

    /// Accepts what listener `key` has queued. At the connection cap, the oldest idle
    /// keep-alive connections are closed to make room (a batch at a time, as nginx does);
    /// only when none is idle is a new client refused.
    fn accept(&mut self, key: usize) {
        if self.sessions.len() >= self.cx.config.max_connections && !self.cx.stopping {
            self.close_oldest_idle();
        }
        while let Some(accepted) = self
            .listeners
            .accept(key, &mut self.cx, self.sessions.len())
        {
            self.open_session(accepted);
        }
    }

    /// Closes the longest idle keep-alive connections, a batch of [`idle::batch`].
    fn close_oldest_idle(&mut self) {
        let mut idle: Vec<(u64, usize)> = self
            .sessions
            .iter()
            .filter_map(|(key, s)| match &s.protocol {
                Protocol::Http(http) => http.idle_since().map(|since| (since, key)),
                _ => None,
            })
            .collect();
        let n = idle::batch(idle.len());
        idle::oldest(&mut idle, n);
        for (_, key) in idle {
            self.cx.metrics.connections_idle_closed += 1;
            self.close(key);
        }
    }

    fn open_session(&mut self, accepted: Accepted) {
        let Accepted {
            mut stream,
            peer,
            info,
            ip_slot,
        } = accepted;
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        if self
            .cx
            .registry
            .register(
                &mut stream,
                Token(token_front(key)),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut io = FrontIo {
            key,
            serial,
            transport: Transport::Plain(stream),
            peer,
            deadline: Deadline::new(self.cx.now + info.request_timeout),
            info,
            readable: false,
            read_closed: false,
            waiting_for_buffer: false,
            ip_slot,
        };
        let protocol = if io.info.protocol == ListenerProtocol::Tcp {
            let pipe = self
                .cx
                .router
                .lookup_tcp(io.info.address)
                .and_then(|cluster| Pipe::connect(cluster, &mut io, &mut self.cx));
            match pipe {
                Some(pipe) => Protocol::Pipe(Box::new(pipe)),
                None => {
                    let _ = self.cx.registry.deregister(&mut io.transport);
                    return;
                }
            }
        } else if io.info.protocol == ListenerProtocol::Https {
            Protocol::TlsHandshake(Handshake::new())
        } else {
            Protocol::Http(HttpSession::new())
        };
        entry.insert(Session { io, protocol });
        self.arm(key);
    }

    // ---- driving sessions -----------------------------------------------------------------

    /// Lets a session make progress after readiness (or a timeout), then re-arms its timer or
    /// closes it.
    fn drive(&mut self, key: usize) {
        self.step(key, false);
    }

    fn step(&mut self, key: usize, timed_out: bool) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let cx = &mut self.cx;
        let next = match &mut session.protocol {
            Protocol::TlsHandshake(shake) => {
                if timed_out {
                    shake.on_timeout(&mut session.io, cx, &mut self.tls_failures);
                    Next::Close
                } else {
                    let tls = self.control.tls_listener(session.io.info.address);
                    match shake.drive(&mut session.io, cx, tls, &mut self.tls_failures) {
                        Shaken::Wait => Next::Wait,
                        Shaken::Close => Next::Close,
                        Shaken::Hello(conn) => return self.start_tls(key, *conn),
                        Shaken::Done => {
                            // Records read with the client's last flight may hold a request
                            // already, and no readiness event will come for them.
                            session.protocol = Protocol::Http(HttpSession::new());
                            session.io.readable = true;
                            return self.step(key, false);
                        }
                    }
                }
            }
            Protocol::Http(http) => {
                let drive = if timed_out {
                    http.on_timeout(&mut session.io, cx)
                } else {
                    http.drive(&mut session.io, cx)
                };
                match drive {
                    Drive::Wait => Next::Wait,
                    Drive::Close => Next::Close,
                    Drive::Upgrade => {
                        let http = std::mem::replace(
                            &mut session.protocol,
                            Protocol::Http(HttpSession::new()),
                        );
                        let Protocol::Http(http) = http else {
                            return;
                        };
                        match http.into_pipe_parts() {
                            Some(parts) => {
                                let mut pipe = Box::new(Pipe::upgraded(parts, cx.now));
                                session.io.deadline.at = cx.now + session.io.info.tunnel_timeout;
                                let next = pipe.drive(&mut session.io, cx);
                                session.protocol = Protocol::Pipe(pipe);
                                next
                            }
                            None => Next::Close,
                        }
                    }
                }
            }
            Protocol::Pipe(pipe) => {
                if timed_out {
                    pipe.on_timeout(&mut session.io, cx)
                } else {
                    pipe.drive(&mut session.io, cx)
                }
            }
        };
        match next {
            Next::Wait => self.arm(key),
            Next::Close => self.close(key),
        }
    }

    /// Moves an https session's socket into a [`TlsStream`] once its ClientHello is read, and
    /// goes on with the handshake. The session leaves the slab for the move and comes back
    /// under the same key (the slab reuses the key just freed); were it ever another, the
    /// socket is registered again under the new one.
    fn start_tls(&mut self, key: usize, conn: rustls::ServerConnection) {
        let Session { mut io, protocol } = self.sessions.remove(key);
        let Transport::Plain(tcp) = io.transport else {
            // Only a `Plain` transport reads a ClientHello.
            let _ = self.cx.registry.deregister(&mut io.transport);
            return;
        };
        let stream = match TlsStream::start(tcp, conn) {
            Ok(stream) => stream,
            Err(mut refused) => {
                let _ = self.cx.registry.deregister(&mut refused.tcp);
                handshake::refused(io.peer, &mut self.cx, &mut self.tls_failures, refused.why);
                return;
            }
        };
        io.transport = Transport::Tls(Box::new(stream));
        let entry = self.sessions.vacant_entry();
        let new_key = entry.key();
        if new_key != key {
            io.key = new_key;
            let both = Interest::READABLE | Interest::WRITABLE;
            let transport = &mut io.transport;
            if self
                .cx
                .registry
                .reregister(transport, Token(token_front(new_key)), both)
                .is_err()
            {
                let _ = self.cx.registry.deregister(transport);
                return;
            }
        }
        // The client's next flight may be in already: read it now.
        io.readable = true;
        entry.insert(Session { io, protocol });
        self.step(new_key, false);
    }

    /// Drives the sessions that stopped for want of a buffer, while buffers are free. Ends: a
    /// session lists itself again only when the pool refused it, that is when none is free.
    fn wake_buffer_waiters(&mut self) {
        while self.cx.pool.has_free() && !self.cx.buffer_waiters.is_empty() {
            for (key, serial) in self.cx.buffer_waiters.take() {
                let Some(session) = self.sessions.get_mut(key) else {
                    continue;
                };
                if session.io.serial == serial {
                    session.io.waiting_for_buffer = false;
                    self.drive(key);
                }
            }
        }
    }

    fn arm(&mut self, key: usize) {
        if let Some(session) = self.sessions.get_mut(key) {
            let owner = TimerKey {
                key,
                serial: session.io.serial,
            };
            session.io.deadline.arm(&mut self.timers, owner);
        }
    }

    fn close(&mut self, key: usize) {
        if !self.sessions.contains(key) {
            return;
        }
        let mut session = self.sessions.remove(key);
        match &mut session.protocol {
            Protocol::TlsHandshake(_) => {}
            Protocol::Http(http) => http.teardown(&mut self.cx),
            Protocol::Pipe(pipe) => pipe.teardown(&mut self.cx),
        }
        let _ = self.cx.registry.deregister(&mut session.io.transport);
    }

    fn fire_timers(&mut self) {
        let now = self.cx.now;
        while let Some(owner) = self.timers.pop_due(now) {
            let Some(session) = self.sessions.get_mut(owner.key) else {
                continue;
            };
            if session.io.serial != owner.serial {
                continue;
            }
            if session.io.deadline.on_pop(now, &mut self.timers, owner) {
                self.step(owner.key, true);
            }
        }
    }

    /// Periodic work: active health checks, drain deadlines, listeners paused for want of fds,
    /// statsd.
    fn tick(&mut self) {
        if !self.cx.stopping {
            self.listeners
                .resume_paused(self.cx.now, &self.cx.registry, &self.cx.router);
        }
        self.probes.start_due(&mut self.cx);
        self.probes.expire(&mut self.cx);
        self.control.expire_drains(self.cx.now);
        let now = self.cx.now;
        if let Some(statsd) = self.statsd.as_mut() {
            if statsd.due(now) {
                let report = self.control.metrics(&self.cx, self.sessions.len());
                self.cx.metrics.statsd_dropped += statsd.flush(&report);
            }
        }
    }

    /// Soft stop: stop accepting, close idle keep-alive connections; the rest finish.
    fn begin_soft_stop(&mut self) {
        self.cx.stopping = true;
        self.listeners.remove_all(&self.cx.registry);
        // Idle HTTP sessions close on their next drive; drive them all now, each reading
        // first so that a request already in its socket is served rather than reset.
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(session) = self.sessions.get_mut(key) {
                session.io.readable = true;
            }
            self.drive(key);
        }
    }
}
