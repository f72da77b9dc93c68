//! The worker's access log: one line per HTTP request, one per TCP or WebSocket session when
//! it ends, written by the worker itself (no hop through the main process).
//!
//! A line is formatted in pieces as its data becomes known ([`format`]), into a [`Line`], a
//! scratch area in the log's own table that a session names by a 4-byte [`LineKey`], keeps
//! across its requests and gives back when it closes: the client and listener addresses once
//! per connection, the host, method and path when a request head is read (they live in a
//! buffer that is reused before the answer ends, so they are escaped out of it at once). When
//! the request finishes ([`AccessLog::finish`]) the time, that middle and the rest go into the
//! worker's reused buffer. A file, stdout or TCP target gets the buffer in batches
//! ([`AccessLog::flush`]): once [`BATCH`] bytes wait, or at the worker's tick (every 100 ms),
//! as nginx's `buffer=` and `flush=` do, so a busy worker makes one `write(2)` per few hundred
//! lines rather than one per loop turn. Datagram targets send a line per datagram anyway and
//! get theirs every turn. In the common case a request allocates nothing for its log line.
//!
//! **Invariant: the data path never blocks on a log target.** Every target is non-blocking
//! ([`target`]); lines a target cannot take wait in the buffer up to [`MAX_BUFFERED`] bytes,
//! and past that they are dropped and counted (`access_log.dropped`).

mod format;
mod target;

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use format::{write_finished, write_head, write_peers, Clock, Tail};
#[cfg(test)]
use format::{write_line, Record};
use target::Target;

use super::request_id::RequestId;
use super::upstream::Upstream;
use crate::access_log_config::{AccessLogConfig, LogFormat};
use crate::log_limit::{Admit, LogLimit};

/// Most bytes of lines waiting for a slow target; past it, new lines are dropped.
pub const MAX_BUFFERED: usize = 256 * 1024;
/// Bytes of lines that make a stream target's write worth it before the tick. Under the
/// buffer's starting capacity, so batching never grows it; far under [`MAX_BUFFERED`], so a
/// batch waiting for the tick never drops a line.
pub const BATCH: usize = 32 * 1024;
/// A session's line in the log's table (`None`: it has none, or the log is off).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineKey(Option<NonZeroU32>);

impl LineKey {
    pub fn is_some(self) -> bool {
        self.0.is_some()
    }

    fn index(self) -> Option<usize> {
        self.0.map(|k| k.get() as usize - 1)
    }
}

/// What a request keeps for its log line until it finishes.
#[derive(Debug, Default)]
pub struct Line {
    /// The line's middle, in the log's format: the client and listener fields
    /// (`..peers_len`, kept for the connection's next request), then the request's host,
    /// method and path.
    text: Vec<u8>,
    /// The addresses `text` starts with.
    peers: Option<(SocketAddr, SocketAddr)>,
    peers_len: usize,
    /// Whether a request is open and not logged yet.
    pub open: bool,
    pub started: Option<Instant>,
    pub request_id: u64,
    /// The request head's bytes, counted into `bytes_in`.
    pub head_bytes: u64,
}

impl Line {
    /// Starts the line of a new request (or session) of the connection between `peers`
    /// (client, listener): `head` is (method, host, path, head length) when a request head
    /// was read.
    fn start(
        &mut self,
        format: LogFormat,
        id: u64,
        now: Instant,
        peers: (SocketAddr, SocketAddr),
        head: Option<(&str, Option<&[u8]>, &str, usize)>,
    ) {
        if self.peers == Some(peers) {
            self.text.truncate(self.peers_len);
        } else {
            self.text.clear();
            write_peers(&mut self.text, format, peers.0, peers.1);
            self.peers_len = self.text.len();
            self.peers = Some(peers);
        }
        self.open = true;
        self.started = Some(now);
        self.request_id = id;
        match head {
            Some((method, host, path, len)) => {
                let (method, path) = (Some(method.as_bytes()), Some(path.as_bytes()));
                write_head(&mut self.text, format, host, method, path);
                self.head_bytes = len as u64;
            }
            None => {
                write_head(&mut self.text, format, None, None, None);
                self.head_bytes = 0;
            }
        }
    }
}

/// What a finished exchange or pipe adds to its line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub status: Option<u16>,
    /// Bytes from the client besides the request head.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Slab keys, resolved to names when the line is written.
    pub cluster: Option<usize>,
    pub backend: Option<usize>,
    pub connect: Option<Duration>,
    pub backend_time: Option<Duration>,
}

/// A worker's access log; off when `weir.toml` has no `[access_log]`.
#[derive(Debug, Default)]
pub struct AccessLog {
    on: Option<Box<Writer>>,
    /// Lines dropped because the target could not take them.
    pub dropped: u64,
}

#[derive(Debug)]
struct Writer {
    format: LogFormat,
    clock: Clock,
    target: Target,
    buf: Vec<u8>,
    /// Set by SIGUSR1.
    reopen: Arc<AtomicBool>,
    worker: u32,
    /// Every line sessions have held; a freed one keeps its allocation for the next session.
    lines: Vec<Line>,
    /// Indexes of `lines` no session holds.
    free: Vec<u32>,
    errors: LogLimit,
}

impl AccessLog {
    /// The log `config` asks for (`None`: off). SIGUSR1 is handled (and unblocked) either way,
    /// so the main process's logrotate signal never kills a worker.
    pub fn new(
        config: Option<&AccessLogConfig>,
        worker: u32,
        now: Instant,
        wall: SystemTime,
    ) -> io::Result<AccessLog> {
        let reopen = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&reopen))?;
        let mut usr1 = nix::sys::signal::SigSet::empty();
        usr1.add(nix::sys::signal::Signal::SIGUSR1);
        usr1.thread_unblock().map_err(io::Error::from)?;
        let Some(config) = config else {
            return Ok(AccessLog::default());
        };
        Ok(AccessLog {
            on: Some(Box::new(Writer {
                format: config.format,
                clock: Clock::new(wall),
                target: Target::open(&config.target, now)?,
                buf: Vec::with_capacity(64 * 1024),
                reopen,
                worker,
                lines: Vec::new(),
                free: Vec::new(),
                errors: LogLimit::new(5, 1, now),
            })),
            dropped: 0,
        })
    }

    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// Opens the line of request (or session) `id` of the connection between `peers`
    /// (client, listener): in the session's own slot `key` when it has one, else in a free
    /// one. Nothing when the log is off.
    pub fn start(
        &mut self,
        key: &mut LineKey,
        id: RequestId,
        peers: (SocketAddr, SocketAddr),
        now: Instant,
        head: Option<(&str, Option<&[u8]>, &str, usize)>,
    ) {
        let Some(w) = self.on.as_mut() else {
            return;
        };
        let index = match key.index() {
            Some(i) => i,
            None => {
                let i = match w.free.pop() {
                    Some(i) => i as usize,
                    None => {
                        w.lines.push(Line::default());
                        w.lines.len() - 1
                    }
                };
                // Cannot overflow: there are fewer lines than sessions.
                *key = LineKey(u32::try_from(i + 1).ok().and_then(NonZeroU32::new));
                i
            }
        };
        if let Some(line) = w.lines.get_mut(index) {
            line.start(w.format, id.0, now, peers, head);
        }
    }

    /// Whether `key`'s request is open (started, not logged yet).
    pub fn is_open(&self, key: LineKey) -> bool {
        self.line(key).is_some_and(|l| l.open)
    }

    fn line(&self, key: LineKey) -> Option<&Line> {
        self.on.as_ref()?.lines.get(key.index()?)
    }

    /// Gives a closing session's line back for another session.
    pub fn recycle(&mut self, key: &mut LineKey) {
        if let (Some(w), Some(i)) = (self.on.as_mut(), key.index()) {
            if let Some(line) = w.lines.get_mut(i) {
                line.open = false;
                // A rare huge request head does not pin its copy for good.
                if line.text.capacity() > 4096 {
                    line.text = Vec::new();
                    line.peers = None;
                }
                w.free.push(i as u32);
            }
        }
        *key = LineKey::default();
    }

    /// Writes the line of `key`'s request, finished with `outcome`, if it is open.
    pub fn finish(&mut self, key: LineKey, outcome: &Outcome, upstream: &Upstream, now: Instant) {
        let Some(w) = self.on.as_mut() else {
            return;
        };
        let Some(line) = key.index().and_then(|i| w.lines.get_mut(i)) else {
            return;
        };
        if !line.open {
            return;
        }
        line.open = false;
        if w.buf.len() >= MAX_BUFFERED {
            self.dropped += 1;
            return;
        }
        let (cluster, backend) = upstream.names(outcome.cluster, outcome.backend);
        let tail = Tail {
            status: outcome.status,
            bytes_in: line.head_bytes + outcome.bytes_in,
            bytes_out: outcome.bytes_out,
            cluster,
            backend,
            duration: line
                .started
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s)),
            connect: outcome.connect,
            backend_time: outcome.backend_time,
            request_id: line.request_id,
        };
        write_finished(&mut w.buf, w.format, &w.clock, &line.text, &tail);
    }

    /// Formats a whole `record` into the buffer, or drops it when a slow target left the
    /// buffer full: the tests' way to fill the buffer without a session.
    #[cfg(test)]
    pub fn log(&mut self, record: &Record<'_>) {
        let Some(w) = self.on.as_mut() else {
            return;
        };
        if w.buf.len() >= MAX_BUFFERED {
            self.dropped += 1;
            return;
        }
        write_line(&mut w.buf, w.format, &w.clock, record);
    }

    /// The wall clock of this loop turn, for the lines' `time`.
    #[inline]
    pub fn set_clock(&mut self, wall: SystemTime) {
        if let Some(w) = self.on.as_mut() {
            w.clock.update(wall);
        }
    }

    /// Called every loop turn: reopens the file if SIGUSR1 came, then hands the buffered
    /// lines to the target when they are due: `due` (the worker's tick, or its end), a
    /// [`BATCH`] waiting, or a datagram target, which takes them every turn.
    pub fn flush(&mut self, now: Instant, due: bool) {
        let Some(w) = self.on.as_mut() else {
            return;
        };
        if w.reopen.swap(false, Ordering::Relaxed) {
            if let Err(e) = w.target.reopen() {
                w.error(now, &e);
            }
        }
        if w.buf.is_empty() || !(due || w.buf.len() >= BATCH || !w.target.is_stream()) {
            return;
        }
        let dropped = w.target.flush(&mut w.buf, now);
        self.dropped += dropped;
    }
}

impl Writer {
    /// A failure of the target itself, on stderr at most once a second (bursts of 5).
    fn error(&mut self, now: Instant, e: &io::Error) {
        if let Admit::Write { suppressed } = self.errors.admit(now) {
            let pid = std::process::id();
            if suppressed > 0 {
                eprintln!(
                    "weir[worker {} {pid}] warn: suppressed {suppressed} messages",
                    self.worker
                );
            }
            eprintln!(
                "weir[worker {} {pid}] error: access log cannot be reopened: {e}",
                self.worker
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::access_log_config::LogTarget;
    use std::net::UdpSocket;

    fn record() -> Record<'static> {
        Record {
            client: "127.0.0.1:40000".parse().unwrap(),
            listener: "127.0.0.1:8080".parse().unwrap(),
            host: Some(b"shop.test"),
            method: Some(b"GET"),
            path: Some(b"/"),
            tail: Tail {
                status: Some(200),
                bytes_in: 40,
                bytes_out: 120,
                cluster: Some("shop"),
                backend: Some("blue"),
                duration: Duration::from_micros(1_500),
                connect: Some(Duration::ZERO),
                backend_time: Some(Duration::from_micros(1_000)),
                request_id: 1,
            },
        }
    }

    fn open(target: LogTarget) -> AccessLog {
        let config = AccessLogConfig {
            target,
            format: LogFormat::Json,
        };
        AccessLog::new(Some(&config), 1, Instant::now(), SystemTime::now()).unwrap()
    }

    fn buffered(log: &AccessLog) -> usize {
        log.on.as_ref().map_or(0, |w| w.buf.len())
    }

    /// A busy worker writes a file once per batch or tick, not once per loop turn, and no
    /// line waits past the tick.
    #[test]
    fn a_file_gets_its_lines_at_the_tick_or_once_a_batch_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut log = open(LogTarget::File(path.clone()));
        let now = Instant::now();
        let written = || std::fs::read(&path).unwrap();

        log.log(&record());
        log.flush(now, false);
        assert!(written().is_empty(), "a line went out before the tick");
        log.flush(now, true);
        let one = written();
        assert_eq!(one.iter().filter(|&&b| b == b'\n').count(), 1);

        // Under the batch size, turns go by without a write; at it, the batch goes at once.
        while buffered(&log) + one.len() < BATCH {
            log.log(&record());
            log.flush(now, false);
            assert_eq!(written().len(), one.len());
        }
        log.log(&record());
        let batch = buffered(&log);
        assert!(batch >= BATCH);
        log.flush(now, false);
        assert_eq!(written().len(), one.len() + batch);
        assert_eq!(buffered(&log), 0);
    }

    /// Datagram targets send a line per datagram whatever the batching: theirs go every turn.
    #[test]
    fn a_datagram_target_gets_its_lines_every_turn() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut log = open(LogTarget::Udp(collector.local_addr().unwrap()));
        log.log(&record());
        log.flush(Instant::now(), false);
        let mut datagram = [0u8; 2048];
        let n = collector.recv(&mut datagram).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&datagram[..n]).unwrap();
        assert_eq!(line["cluster"], "shop");
    }
}
