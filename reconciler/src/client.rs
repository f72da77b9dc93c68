//! A blocking client of the command socket: what the CLI, the reconciler and any third-party
//! tool need to talk to a running proxy.

use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_schema::framing::{encode_frame, read_frame, write_frame, FrameError, DEFAULT_MAX_FRAME};
use weir_schema::proto::{self, response::Content, ResponseStatus};
use weir_schema::{Command, Request, State, StateError};

/// Why talking to the proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the command socket {path}: {error} (is `weir proxy` running? see --socket)")]
    Connect { path: PathBuf, error: io::Error },
    #[error("cannot connect to the command socket {path}: it is not a socket but a {kind} (see --socket)")]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error(
        "refusing the command socket {path}: it is served by a process of uid {server}, not by \
         this user (uid {own}) or root; another user may have put it there (see --socket)"
    )]
    ForeignServer {
        path: PathBuf,
        server: u32,
        own: u32,
    },
    #[error("cannot check who serves the command socket {path}: {error}")]
    PeerUnknown { path: PathBuf, error: nix::Error },
    #[error("command socket: {0}")]
    Frame(#[from] FrameError),
    #[error("the proxy closed the command socket before answering")]
    Closed,
    #[error("the proxy refused the connection: {0}")]
    Refused(String),
    #[error("the proxy refused the request: {0}")]
    Failure(String),
    #[error("the proxy answered without the expected content")]
    UnexpectedAnswer,
    #[error("the proxy's state does not decode: {0}")]
    BadState(#[from] StateError),
}

/// One connection to a proxy's command socket.
///
/// Both directions are buffered: a pipelining caller queues many requests and flushes them
/// with one write ([`Client::queue`], [`Client::flush`]), and answers are read in large
/// chunks rather than a syscall per length prefix. Reading flushes what is queued first, so a
/// caller can never wait for the answer to a request that was not sent.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    next_id: u64,
    prefix: String,
    path: PathBuf,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let (reader, writer) = open(path)?;
        Ok(Client {
            reader,
            writer,
            next_id: 0,
            prefix: format!("cli-{}", std::process::id()),
            path: path.to_owned(),
        })
    }

    /// The socket this client connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a fresh connection to the same socket (after the old one was lost), keeping the
    /// request-id sequence so ids stay unique.
    pub fn reconnect(&mut self) -> Result<(), ClientError> {
        let (reader, writer) = open(&self.path)?;
        self.reader = reader;
        self.writer = writer;
        Ok(())
    }

    /// Whether the proxy has closed this connection (or sent something unasked, which only a
    /// closing proxy does to a client that follows no events): an idle client is closed after
    /// the proxy's `command_idle_ms`, and a caller that keeps one open reconnects rather than
    /// fail its next request.
    pub fn peer_closed(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Bounds how long one read may wait; `None` waits forever (drains can be long).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
    }

    /// A fresh request id, unique on this connection.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.prefix, self.next_id)
    }

    /// Sends one request without waiting for its answer.
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        write_frame(&mut self.writer, &proto::Request::from(request))
            .map_err(|e| self.refusal().unwrap_or(e.into()))
    }

    /// Queues one request without sending it yet; [`Client::flush`] (or the next
    /// [`Client::recv`]) sends everything queued at once.
    pub fn queue(&mut self, request: &Request) -> Result<(), ClientError> {
        self.writer
            .write_all(&encode_frame(&proto::Request::from(request)))
            .map_err(FrameError::Io)?;
        Ok(())
    }

    /// Sends every queued request.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.writer.flush().map_err(FrameError::Io)?;
        Ok(())
    }

    /// Reads the next answer of any request (or an event, on a subscription), after sending
    /// whatever is still queued.
    pub fn recv(&mut self) -> Result<proto::Response, ClientError> {
        if let Err(e) = self.flush() {
            return Err(self.refusal().unwrap_or(e));
        }
        let answer = read_frame(&mut self.reader, DEFAULT_MAX_FRAME)?.ok_or(ClientError::Closed)?;
        refused(&answer).map_or(Ok(answer), Err)
    }

    /// Whether the proxy, having closed the connection, left word of why: a FAILURE with no
    /// request id (too many clients). Read without waiting: it is in the socket or not at all.
    fn refusal(&mut self) -> Option<ClientError> {
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true).ok()?;
        let read = read_frame::<proto::Response, _>(&mut self.reader, DEFAULT_MAX_FRAME);
        let _ = self.reader.get_ref().set_nonblocking(false);
        refused(&read.ok()??)
    }

    /// Sends `request` and waits for its final answer, handing every `PROCESSING` answer (and
    /// any other message that arrives meanwhile) to `on_progress`. A `FAILURE` is returned as
    /// the final answer, not as an error, so callers can read its message and state version.
    pub fn call_with(
        &mut self,
        request: &Request,
        mut on_progress: impl FnMut(&proto::Response),
    ) -> Result<proto::Response, ClientError> {
        self.send(request)?;
        loop {
            let answer = self.recv()?;
            if answer.id == request.id && answer.is_final() {
                return Ok(answer);
            }
            on_progress(&answer);
        }
    }

    /// Sends a command with a fresh id and waits for its final answer; a `FAILURE` becomes
    /// [`ClientError::Failure`].
    pub fn call(&mut self, command: Command) -> Result<proto::Response, ClientError> {
        let request = Request::new(self.next_id(), command);
        self.call_request(&request)
    }

    /// Sends `request` and waits for its final answer; a `FAILURE` is an error.
    fn call_request(&mut self, request: &Request) -> Result<proto::Response, ClientError> {
        let answer = self.call_with(request, |_| {})?;
        if answer.status() == ResponseStatus::Failure {
            return Err(ClientError::Failure(answer.message));
        }
        Ok(answer)
    }

    /// The proxy's whole state, certificates without their private keys.
    pub fn query_state(&mut self) -> Result<State, ClientError> {
        let request = Request::new(self.next_id(), Command::QueryState);
        self.state_answer(&request)
    }

    /// The proxy's whole state with the certificates' private keys: what undoing the removal
    /// or replacement of a certificate needs, and nothing else should ask for.
    pub fn query_state_with_keys(&mut self) -> Result<State, ClientError> {
        let request = Request::query_state_with_keys(self.next_id());
        self.state_answer(&request)
    }

    fn state_answer(&mut self, request: &Request) -> Result<State, ClientError> {
        match self.call_request(request)?.content {
            Some(Content::State(snapshot)) => Ok(State::from_snapshot(&snapshot)?),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// Workers, pids, uptime, connections, state version.
    pub fn status(&mut self) -> Result<proto::ProxyStatus, ClientError> {
        match self.call(Command::Status)?.content {
            Some(Content::StatusReport(status)) => Ok(status),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// Counters summed over every worker.
    pub fn metrics(&mut self) -> Result<proto::Metrics, ClientError> {
        match self.call(Command::QueryMetrics)?.content {
            Some(Content::Metrics(metrics)) => Ok(metrics),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }
}

/// The proxy's refusal of the connection itself (an answer to no request), if `answer` is one.
fn refused(answer: &proto::Response) -> Option<ClientError> {
    (answer.id.is_empty() && answer.status() == ResponseStatus::Failure)
        .then(|| ClientError::Refused(answer.message.clone()))
}

/// Connects to `path` and splits the stream into its buffered halves.
fn open(path: &Path) -> Result<(BufReader<UnixStream>, BufWriter<UnixStream>), ClientError> {
    let connect_error = |error| ClientError::Connect {
        path: path.to_owned(),
        error,
    };
    let stream = UnixStream::connect(path).map_err(|error| {
        // connect(2) says "Connection refused" for a regular file: name what is there instead.
        match not_a_socket(path) {
            Some(kind) => ClientError::NotASocket {
                path: path.to_owned(),
                kind,
            },
            None => connect_error(error),
        }
    })?;
    check_server(&stream, path)?;
    let writer = stream.try_clone().map_err(connect_error)?;
    Ok((
        BufReader::with_capacity(64 * 1024, stream),
        BufWriter::with_capacity(64 * 1024, writer),
    ))
}

/// Refuses a socket served by another user (root excepted) before a byte is sent: a request
/// may carry what only this user should say, and an answer read from an impostor is not the
/// proxy's. The kernel gives the uid that opened the listening socket (SO_PEERCRED).
fn check_server(stream: &UnixStream, path: &Path) -> Result<(), ClientError> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let server = getsockopt(stream, PeerCredentials)
        .map_err(|error| ClientError::PeerUnknown {
            path: path.to_owned(),
            error,
        })?
        .uid();
    let own = nix::unistd::geteuid().as_raw();
    if weir_schema::paths::peer_allowed(server, own) {
        Ok(())
    } else {
        Err(ClientError::ForeignServer {
            path: path.to_owned(),
            server,
            own,
        })
    }
}

/// What is at `path` when it exists but is not a socket.
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path).ok()?.file_type();
    if kind.is_socket() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_file() {
        Some("regular file")
    } else {
        Some("file of another kind")
    }
}
