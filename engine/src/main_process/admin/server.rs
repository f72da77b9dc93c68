//! The admin thread's mio loop: accept, read one request head, wait for the core's [`Reply`],
//! render, write, close. Non-blocking throughout; every connection has a deadline.
//!
//! A connection is `Reading` its head, `Waiting` for the core, `Writing` its answer, then
//! `Lingering`: its write side shut, reading what the client still sends until it closes, so
//! the answer is not cut by a reset from unread bytes.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use weir_schema::metric_rates::Sample;
use weir_schema::prometheus;

use super::page::{self, Sampler};
use super::request::{self, Parsed, MAX_HEAD};
use super::Reply;
use crate::main_process::input::{AdminPage, Input};
use crate::main_process::log;

/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// For a whole request head to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// For the core's answer (it answers within `worker_answer_ms`; this only bounds a bug).
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// For the client to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// For the client to close after the answer.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);

#[derive(Debug)]
enum Phase {
    Reading(Vec<u8>),
    Waiting { page: AdminPage, head_only: bool },
    Writing { out: Vec<u8>, written: usize },
    Lingering,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    phase: Phase,
    deadline: Instant,
}

/// The loop's state.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    inputs: Sender<Input>,
    replies: Receiver<Reply>,
    conns: Slab<Conn>,
    /// Queries sent to the core, by number: the connection waiting for each.
    queries: HashMap<u64, usize>,
    next_query: u64,
    sampler: Sampler,
}

impl Server {
    pub fn new(
        poll: Poll,
        listener: StdListener,
        inputs: Sender<Input>,
        replies: Receiver<Reply>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            inputs,
            replies,
            conns: Slab::new(),
            queries: HashMap::new(),
            next_query: 0,
            sampler: Sampler::default(),
        })
    }

    /// Serves until `stop` is set (the waker wakes the loop to see it).
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(64);
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let next = self.conns.iter().map(|(_, c)| c.deadline).min();
            let timeout = next.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(now).min(Duration::from_secs(1))
            });
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error(&format!("admin endpoint: poll failed: {e}"));
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_replies(),
                    Token(key) => self.drive(key),
                }
            }
            self.expire(Instant::now());
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds, most likely: the next readiness tries again.
                    log::warn(&format!("admin endpoint: accept failed: {e}"));
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                // Best effort on a fresh socket's empty send buffer; closed either way.
                let _ = stream.write(&request::busy());
                continue;
            }
            let entry = self.conns.vacant_entry();
            let registered = self.poll.registry().register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            );
            if registered.is_ok() {
                entry.insert(Conn {
                    stream,
                    phase: Phase::Reading(Vec::new()),
                    deadline: Instant::now() + READ_TIMEOUT,
                });
            }
        }
    }

    /// Moves connection `key` as far as its socket allows.
    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let keep = match &mut conn.phase {
            Phase::Reading(buf) => match read_head(&mut conn.stream, buf) {
                Err(()) => false,
                Ok(Parsed::Partial) => true,
                Ok(Parsed::Answer(out)) => {
                    conn.start_writing(out);
                    conn.write()
                }
                Ok(Parsed::Query { page, head_only }) => {
                    conn.phase = Phase::Waiting { page, head_only };
                    conn.deadline = Instant::now() + WAIT_TIMEOUT;
                    self.next_query += 1;
                    let query = self.next_query;
                    self.queries.insert(query, key);
                    self.inputs.send(Input::Admin { query, page }).is_ok()
                }
            },
            // A client closing early is seen when the answer is written.
            Phase::Waiting { .. } => true,
            Phase::Writing { .. } => conn.write(),
            Phase::Lingering => conn.linger(),
        };
        if !keep {
            self.close(key);
        }
    }

    fn take_replies(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            let Some(key) = self.queries.remove(&reply.query) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let Phase::Waiting { page, head_only } = conn.phase else {
                continue;
            };
            let sample = Sample::new(&reply.metrics);
            let out = match page {
                AdminPage::Metrics => request::answer(
                    "200 OK",
                    prometheus::CONTENT_TYPE,
                    &[],
                    prometheus::render(&reply.metrics, &reply.snapshot.ids).as_bytes(),
                    head_only,
                ),
                AdminPage::Status => {
                    let html = page::render(&reply.snapshot, &self.sampler.interval(&sample));
                    request::answer(
                        "200 OK",
                        "text/html; charset=utf-8",
                        &[("Content-Security-Policy", page::CSP)],
                        html.as_bytes(),
                        head_only,
                    )
                }
            };
            self.sampler.keep(sample);
            conn.start_writing(out);
            if !conn.write() {
                self.close(key);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in late {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.queries.retain(|_, k| *k != key);
        }
    }
}

/// Reads what arrived into `buf` and parses it; `Err` when the client left before a whole
/// head.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Parsed, ()> {
    let mut chunk = [0u8; 2048];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(()),
            Ok(n) => {
                let room = MAX_HEAD.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                let parsed = request::parse(buf);
                if parsed != Parsed::Partial {
                    return Ok(parsed);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Parsed::Partial),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
}

impl Conn {
    fn start_writing(&mut self, out: Vec<u8>) {
        self.phase = Phase::Writing { out, written: 0 };
        self.deadline = Instant::now() + WRITE_TIMEOUT;
    }

    /// Writes what it can; `false` once the connection should close.
    fn write(&mut self) -> bool {
        let Phase::Writing { out, written } = &mut self.phase else {
            return true;
        };
        while *written < out.len() {
            match self.stream.write(&out[*written..]) {
                Ok(0) => return false,
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.phase = Phase::Lingering;
        self.deadline = Instant::now() + LINGER_TIMEOUT;
        self.linger()
    }

    /// Discards what the client still sends; `false` once it closed.
    fn linger(&mut self) -> bool {
        let mut sink = [0u8; 2048];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}
