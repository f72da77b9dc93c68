//! Where a worker's access lines go, written without ever blocking the worker.
//!
//! - stdout and files are written with `write(2)`. stdout is opened anew through
//!   `/proc/self/fd/1` with `O_NONBLOCK`, so a pipe nobody drains gives `EAGAIN` rather than a
//!   stalled worker, without touching the file description the other processes share; a
//!   write to a pipe stops at a line boundary within `PIPE_BUF`, so the workers' lines never
//!   interleave. A file is opened with `O_APPEND` (each worker appends whole lines) and
//!   reopened on SIGUSR1.
//! - `udp://` and `unix:` (datagram) send one line per datagram, `MSG_DONTWAIT`.
//! - `tcp://` is a non-blocking stream of lines, connected (and reconnected after a failure,
//!   once a second) in the background, with a modest send buffer.
//!
//! A target that cannot take a line now keeps it in the worker's buffer (streams) or drops it
//! (datagrams); what is dropped is counted by the caller.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::access_log_config::LogTarget;

/// How long a broken stream or datagram target waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How long a TCP connect to a log collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The kernel's send buffer for a TCP target (it doubles it): enough for a burst, not so much
/// that a collector that stopped reading hides it for long.
const TCP_SEND_BUFFER: usize = 256 * 1024;
/// Writes to a pipe up to this size are atomic (POSIX `PIPE_BUF` on Linux).
const PIPE_BUF: usize = 4096;

/// An open access-log target.
#[derive(Debug)]
pub enum Target {
    /// stdout or a file; `chunk` is the largest write (a line boundary within `PIPE_BUF` for a
    /// pipe, so lines from several workers do not interleave).
    Append {
        file: File,
        chunk: usize,
        path: Option<PathBuf>,
    },
    /// Connected; a refused datagram says only that nobody listened to the last one.
    Udp(UdpSocket),
    Unix(Link<UnixDatagram>, PathBuf),
    Tcp(Link<(Socket, bool)>, SocketAddr),
}

/// A connection-like target: up, or down until a retry time.
#[derive(Debug)]
pub enum Link<T> {
    Up(T, Instant),
    Down { retry_at: Instant },
}

impl Target {
    /// Opens `spec`. Files and stdout must open; sockets connect in the background, and a
    /// collector not there yet only costs dropped lines.
    pub fn open(spec: &LogTarget, now: Instant) -> io::Result<Target> {
        Ok(match spec {
            LogTarget::Stdout => {
                let file = open_stdout()?;
                Target::Append {
                    chunk: chunk_for(&file),
                    file,
                    path: None,
                }
            }
            LogTarget::File(path) => {
                let file = open_append(path)?;
                Target::Append {
                    chunk: chunk_for(&file),
                    file,
                    path: Some(path.clone()),
                }
            }
            LogTarget::Udp(addr) => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .map_err(io::Error::other)?;
                let socket = UdpSocket::bind(bind)?;
                socket.connect(addr)?;
                socket.set_nonblocking(true)?;
                Target::Udp(socket)
            }
            LogTarget::Unix(path) => Target::Unix(connect_unix(path, now), path.clone()),
            LogTarget::Tcp(addr) => Target::Tcp(connect_tcp(*addr, now), *addr),
        })
    }

    /// Whether lines go out as a byte stream (a file, stdout, TCP), where one write takes
    /// many lines at the cost of one, rather than a datagram each.
    pub fn is_stream(&self) -> bool {
        matches!(self, Target::Append { .. } | Target::Tcp(..))
    }

    /// Opens the file again at its path (logrotate renamed it); the old one is kept if the
    /// new one cannot be opened. Other targets have nothing to reopen.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Target::Append {
            file,
            chunk,
            path: Some(path),
        } = self
        {
            *file = open_append(path)?;
            *chunk = chunk_for(file);
        }
        Ok(())
    }

    /// Writes what the target takes now from the front of `buf` (whole lines, each ending in
    /// `\n`) and removes it. Returns how many lines were dropped.
    pub fn flush(&mut self, buf: &mut Vec<u8>, now: Instant) -> u64 {
        match self {
            Target::Append { file, chunk, .. } => match write_stream(file, buf, *chunk) {
                Ok(()) => 0,
                Err(_) => drop_all(buf),
            },
            Target::Udp(socket) => send_lines(buf, |line| socket.send(line)).0,
            Target::Unix(link, path) => {
                if let Link::Down { retry_at } = link {
                    if now < *retry_at {
                        return drop_all(buf);
                    }
                    *link = connect_unix(path, now);
                }
                let Link::Up(socket, _) = link else {
                    return drop_all(buf);
                };
                let (dropped, broken) = send_lines(buf, |line| socket.send(line));
                if broken {
                    // The receiver went away (or was restarted): connect again later.
                    *link = Link::Down {
                        retry_at: now + RETRY,
                    };
                }
                dropped
            }
            Target::Tcp(link, addr) => flush_tcp(link, *addr, buf, now),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// stdout as a description of our own with `O_NONBLOCK` (a pipe, a terminal or a file); a
/// socket cannot be reopened that way, and is used as it is.
fn open_stdout() -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/proc/self/fd/1")
    {
        Ok(file) => Ok(file),
        Err(_) => {
            let fd = nix::unistd::dup(std::io::stdout()).map_err(io::Error::from)?;
            Ok(File::from(fd))
        }
    }
}

fn chunk_for(file: &File) -> usize {
    match file.metadata() {
        Ok(m) if m.file_type().is_fifo() => PIPE_BUF,
        _ => usize::MAX,
    }
}

/// Writes `buf` in chunks ending at line boundaries; stops at `WouldBlock`, keeping the rest.
fn write_stream(out: &mut impl Write, buf: &mut Vec<u8>, chunk: usize) -> io::Result<()> {
    let mut written = 0;
    let result = loop {
        let rest = &buf[written..];
        if rest.is_empty() {
            break Ok(());
        }
        let mut len = rest.len().min(chunk);
        if len < rest.len() {
            // End at the last line boundary within the chunk (a longer line goes whole).
            len = match rest[..len].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            };
        }
        match out.write(&rest[..len]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    buf.drain(..written);
    result
}

/// Sends each line of `buf` as one datagram (without its `\n`) and empties `buf`. A full
/// socket buffer drops the rest of the batch. Returns (lines dropped, whether the receiver
/// is gone).
fn send_lines(buf: &mut Vec<u8>, mut send: impl FnMut(&[u8]) -> io::Result<usize>) -> (u64, bool) {
    let mut dropped = 0;
    let mut broken = false;
    let mut blocked = false;
    for line in buf.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if blocked || broken {
            dropped += 1;
            continue;
        }
        match send(line) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                blocked = true;
                dropped += 1;
            }
            Err(e) => {
                // A UDP port with nobody behind it refuses one datagram; the next may go.
                // (A unix datagram receiver that went away says `ConnectionRefused` too.)
                broken = matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::NotConnected
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionRefused
                );
                dropped += 1;
            }
        }
    }
    buf.clear();
    (dropped, broken)
}

fn drop_all(buf: &mut Vec<u8>) -> u64 {
    let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
    buf.clear();
    lines
}

fn connect_unix(path: &Path, now: Instant) -> Link<UnixDatagram> {
    let socket = UnixDatagram::unbound()
        .and_then(|s| s.connect(path).map(|()| s))
        .and_then(|s| s.set_nonblocking(true).map(|()| s));
    match socket {
        Ok(s) => Link::Up(s, now),
        Err(_) => Link::Down {
            retry_at: now + RETRY,
        },
    }
}

/// Starts a non-blocking connect; the bool says whether it completed.
fn connect_tcp(addr: SocketAddr, now: Instant) -> Link<(Socket, bool)> {
    let started = (|| {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_send_buffer_size(TCP_SEND_BUFFER)?;
        socket.set_tcp_nodelay(true)?;
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => Ok((socket, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((socket, false)),
            Err(e) => Err(e),
        }
    })();
    match started {
        Ok(s) => Link::Up(s, now),
        Err(_) => Link::Down {
            retry_at: now + RETRY,
        },
    }
}

/// Writes to a TCP collector, connecting first if need be. Lines wait in `buf` while it
/// connects (the caller caps `buf`); a broken connection drops what is buffered, since a
/// line half sent on the old connection cannot be finished on the next.
fn flush_tcp(
    link: &mut Link<(Socket, bool)>,
    addr: SocketAddr,
    buf: &mut Vec<u8>,
    now: Instant,
) -> u64 {
    if let Link::Down { retry_at } = link {
        if now < *retry_at {
            return 0;
        }
        *link = connect_tcp(addr, now);
    }
    let Link::Up((socket, connected), since) = link else {
        return 0;
    };
    if !*connected {
        match socket.take_error() {
            Ok(None) if socket.peer_addr().is_ok() => *connected = true,
            Ok(None) if now.saturating_duration_since(*since) < CONNECT_TIMEOUT => return 0,
            _ => {
                *link = Link::Down {
                    retry_at: now + RETRY,
                };
                return 0;
            }
        }
    }
    if buf.is_empty() {
        return 0;
    }
    match write_stream(&mut &*socket, buf, usize::MAX) {
        Ok(()) => 0,
        Err(_) => {
            *link = Link::Down {
                retry_at: now + RETRY,
            };
            drop_all(buf)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A writer that takes `room` bytes, then says `WouldBlock`; records each write's size.
    struct Slow {
        room: usize,
        got: Vec<u8>,
        writes: Vec<usize>,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            self.writes.push(n);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_stream_keeps_the_rest_and_pipe_writes_end_at_line_boundaries() {
        let mut buf = b"aaaa\nbbbbbb\ncc\n".to_vec();
        let mut out = Slow {
            room: usize::MAX,
            got: Vec::new(),
            writes: Vec::new(),
        };
        write_stream(&mut out, &mut buf, 8).unwrap();
        assert!(buf.is_empty());
        // Never more than the chunk, except a line longer than it, and always whole lines.
        assert_eq!(out.writes, [5, 7, 3]);
        let mut buf = b"aaaa\nbbbb\n".to_vec();
        let mut out = Slow {
            room: 7,
            got: Vec::new(),
            writes: Vec::new(),
        };
        write_stream(&mut out, &mut buf, usize::MAX).unwrap();
        assert_eq!(out.got, b"aaaa\nbb");
        assert_eq!(buf, b"bb\n");
    }

    #[test]
    fn datagrams_are_lines_and_a_full_socket_drops_the_rest_of_the_batch() {
        let mut buf = b"one\ntwo\nthree\n".to_vec();
        let mut sent = Vec::new();
        let (dropped, broken) = send_lines(&mut buf, |line| {
            if sent.len() == 1 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            sent.push(line.to_vec());
            Ok(line.len())
        });
        assert_eq!(sent, [b"one".to_vec()]);
        assert_eq!((dropped, broken), (2, false));
        assert!(buf.is_empty());
    }
}
