//! The command socket: a unix socket (mode 0600) that many clients use at once.
//!
//! Its directory must be this user's own: owned by the proxy's uid, mode 0700 (nothing for
//! group or others) and not a symbolic link. A directory someone else made (say `/tmp/weir-alice`
//! created by another user before Alice's first start) is refused with its name rather than
//! used: whoever owns it could swap the socket for one of their own. Weir creates a missing
//! directory 0700.
//!
//! Clients are bounded: past `max_command_clients` a new one gets a FAILURE that says so and is
//! closed; one connected and silent for `timeouts.command_idle_ms` (no request under way, not
//! subscribed to events) is closed, as is one that stops halfway through a frame that long.
//!
//! Each client gets a reader thread (frames in, decoded once at the edge, handed to the core)
//! and a writer thread (answers out, batched per wake-up). Only the core owns the state, so
//! requests from every client are applied in the order they arrive. A peer of another uid is
//! refused (root may connect); a garbled frame closes only that client's connection.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use weir_schema::framing::{encode_frame, read_frame, FrameError, DEFAULT_MAX_FRAME};
use weir_schema::{proto, Request};

use super::config::ClientLimits;
use super::input::{Activity, ClientId, Input};
use super::log;

/// A client that does not read its answers for this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the accept thread checks whether it should stop (upgrade hand-over).
const ACCEPT_POLL: u16 = 50;

/// Why the command socket could not be opened.
///
/// The io error is in the message, not a `source`, so a chain of causes says it once.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the command socket's directory {path}: {error}")]
    Directory { path: PathBuf, error: io::Error },
    #[error(
        "refusing the command socket's directory {path}: {why}; it must be a directory of this \
         user's (uid {uid}) with mode 0700, not a symbolic link (or pass --socket elsewhere)"
    )]
    UnsafeDirectory {
        path: PathBuf,
        why: String,
        uid: u32,
    },
    #[error("another proxy is already serving the command socket {0}")]
    InUse(PathBuf),
    #[error("cannot bind the command socket {path}: {error}")]
    Bind { path: PathBuf, error: io::Error },
}

pub use weir_schema::paths::peer_allowed;

/// Creates the socket at `path`: its directory (0700) if missing, else checked (see the module
/// docs); a stale socket file removed, a live one refused, the socket itself mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let uid = nix::unistd::geteuid().as_raw();
    if fs::symlink_metadata(dir).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| SocketError::Directory {
                path: dir.to_owned(),
                error,
            })?;
    }
    // Checked even when just made: another user may have won a race to make it first.
    check_directory(dir, uid)?;
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_owned()));
        }
        // Nothing listens: a previous proxy died without cleaning up.
        let _ = fs::remove_file(path);
    }
    let bind_error = |error| SocketError::Bind {
        path: path.to_owned(),
        error,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Refuses a socket directory that is not this user's private one (see the module docs).
pub fn check_directory(dir: &Path, uid: u32) -> Result<(), SocketError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| SocketError::UnsafeDirectory {
        path: dir.to_owned(),
        why,
        uid,
    };
    let meta = fs::symlink_metadata(dir).map_err(|error| SocketError::Directory {
        path: dir.to_owned(),
        error,
    })?;
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(refuse(format!("it belongs to uid {}", meta.uid())));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {mode:04o}, open to group or others"
        )));
    }
    Ok(())
}

/// The running accept thread; stopping it leaves the socket open (for a new main process).
#[derive(Debug)]
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Stops accepting; connections that arrive meanwhile wait in the backlog.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts accepting clients on `listener` (a dup of it; the caller keeps the original).
/// `live` counts the connected clients (it outlives an acceptor stopped and started again).
pub fn serve(
    listener: &UnixListener,
    inputs: Sender<Input>,
    limits: ClientLimits,
    live: Arc<AtomicUsize>,
) -> io::Result<Acceptor> {
    let listener = listener.try_clone()?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let own_uid = nix::unistd::geteuid().as_raw();
    let thread = std::thread::Builder::new()
        .name("command-accept".into())
        .spawn(move || {
            let accept = Accept {
                inputs,
                own_uid,
                limits,
                live,
            };
            accept.run(&listener, &flag);
        })?;
    Ok(Acceptor {
        stop,
        thread: Some(thread),
    })
}

/// What the accept thread works with.
struct Accept {
    inputs: Sender<Input>,
    own_uid: u32,
    limits: ClientLimits,
    live: Arc<AtomicUsize>,
}

impl Accept {
    fn run(&self, listener: &UnixListener, stop: &AtomicBool) {
        static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);
        while !stop.load(Ordering::SeqCst) {
            let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(ACCEPT_POLL)).unwrap_or(0) == 0 {
                continue;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::connection_warn(&format!("command socket: accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let uid = getsockopt(&stream, PeerCredentials).map(|c| c.uid());
            match uid {
                Ok(uid) if peer_allowed(uid, self.own_uid) => {}
                Ok(uid) => {
                    log::connection_warn(&format!("command socket: refused a client of uid {uid}"));
                    continue;
                }
                Err(e) => {
                    log::connection_warn(&format!("command socket: no peer credentials ({e})"));
                    continue;
                }
            }
            if self.live.load(Ordering::SeqCst) >= self.limits.max {
                self.refuse_over_cap(stream);
                continue;
            }
            let client = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.start_client(client, stream) {
                log::connection_warn(&format!("command socket: cannot serve a client: {e}"));
            }
        }
    }

    /// Tells a client past the cap why it is closed: a FAILURE with no request id, written
    /// without blocking (a fresh socket has room for it), then the close.
    fn refuse_over_cap(&self, stream: UnixStream) {
        let max = self.limits.max;
        log::warn(&format!(
            "command socket: refused a client: {max} already connected (max_command_clients)"
        ));
        let answer = proto::Response::failure(
            "",
            format!(
                "too many command clients: {max} are connected (max_command_clients); \
                 try again later"
            ),
            0,
        );
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write_all(&encode_frame(&answer));
    }

    fn start_client(&self, client: ClientId, stream: UnixStream) -> io::Result<()> {
        // Counted from here; the reader thread's guard uncounts it when it ends (or is never
        // started).
        let seat = Seat::take(&self.live);
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
        // A client that stops halfway through a frame is as idle as a silent one.
        stream.set_read_timeout(Some(self.limits.idle))?;
        let writer_stream = stream.try_clone()?;
        let (answers, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name(format!("client-{client}-writer"))
            .spawn(move || write_loop(writer_stream, &queue))?;
        let activity = Arc::new(Activity::default());
        // Registered before any of its requests, since they travel on the same channel.
        let _ = self.inputs.send(Input::ClientConnected {
            client,
            answers,
            writer,
            activity: activity.clone(),
        });
        let inputs = self.inputs.clone();
        let idle = self.limits.idle;
        let reader = std::thread::Builder::new()
            .name(format!("client-{client}-reader"))
            .spawn(move || {
                let _seat = seat;
                read_loop(client, stream, &inputs, &activity, idle);
            });
        if let Err(e) = reader {
            let _ = self.inputs.send(Input::ClientGone { client });
            return Err(e);
        }
        Ok(())
    }
}

/// One connected client in the count; given back when dropped.
struct Seat(Arc<AtomicUsize>);

impl Seat {
    fn take(live: &Arc<AtomicUsize>) -> Seat {
        live.fetch_add(1, Ordering::SeqCst);
        Seat(live.clone())
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a frame (or the end of the stream) arrives within `idle`.
fn arrives_within(stream: &UnixStream, idle: Duration) -> bool {
    let timeout = PollTimeout::try_from(idle).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            // Let the read find out what is wrong.
            Err(_) => return true,
        }
    }
}

fn read_loop(
    client: ClientId,
    stream: UnixStream,
    inputs: &Sender<Input>,
    activity: &Activity,
    idle: Duration,
) {
    // Buffered: a pipelining client sends many requests per write; reading them frame by
    // frame from the socket would cost a syscall per length prefix and per body.
    let mut reader = io::BufReader::with_capacity(64 * 1024, stream);
    loop {
        if reader.buffer().is_empty() && !arrives_within(reader.get_ref(), idle) {
            if activity.busy() {
                continue;
            }
            log::info(&format!(
                "command client {client}: idle for {} ms; closing it",
                idle.as_millis()
            ));
            break;
        }
        match read_frame::<proto::Request, _>(&mut reader, DEFAULT_MAX_FRAME) {
            Ok(Some(raw)) => {
                let id = raw.id.clone();
                if !id.is_empty() {
                    activity.request_read();
                }
                let request = Request::try_from(&raw).map(Box::new);
                if inputs
                    .send(Input::ClientRequest {
                        client,
                        id,
                        request,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(FrameError::Io(_)) | Err(FrameError::Truncated) => break,
            Err(e) => {
                log::connection_warn(&format!("command client {client}: {e}; closing it"));
                break;
            }
        }
    }
    let _ = reader.get_ref().shutdown(std::net::Shutdown::Both);
    let _ = inputs.send(Input::ClientGone { client });
}

/// Writes answers as they come, everything queued at once per wake-up. Ends when the core
/// drops the sender (after everything queued was written) or the client stops reading.
fn write_loop(mut stream: UnixStream, queue: &Receiver<proto::Response>) {
    let mut buf = Vec::new();
    while let Ok(first) = queue.recv() {
        buf.clear();
        buf.extend_from_slice(&encode_frame(&first));
        while let Ok(next) = queue.try_recv() {
            buf.extend_from_slice(&encode_frame(&next));
            if buf.len() > 1 << 20 {
                break;
            }
        }
        if stream.write_all(&buf).is_err() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Takes the command socket inherited from a previous main process.
pub fn adopt(fd: OwnedFd) -> UnixListener {
    UnixListener::from(fd)
}

/// The command socket as the core holds it: the listening socket (kept open for a whole
/// upgrade, so clients queue in its backlog), its path, and the accept thread while one runs.
#[derive(Debug)]
pub struct CommandSocket {
    listener: UnixListener,
    path: PathBuf,
    acceptor: Option<Acceptor>,
    inputs: Sender<Input>,
    limits: ClientLimits,
    live: Arc<AtomicUsize>,
}

impl CommandSocket {
    /// Starts accepting clients on `listener`, bound (or inherited) at `path`.
    pub fn serve(
        listener: UnixListener,
        path: PathBuf,
        inputs: Sender<Input>,
        limits: ClientLimits,
    ) -> io::Result<CommandSocket> {
        let live = Arc::new(AtomicUsize::new(0));
        let acceptor = serve(&listener, inputs.clone(), limits, live.clone())?;
        Ok(CommandSocket {
            listener,
            path,
            acceptor: Some(acceptor),
            inputs,
            limits,
            live,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket's fd, for a new main process to inherit.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.listener)
    }

    /// Where the core's inputs go (for threads the core starts).
    pub fn inputs(&self) -> &Sender<Input> {
        &self.inputs
    }

    /// Stops accepting; the socket stays open and new clients wait in its backlog.
    pub fn stop_accepting(&mut self) {
        if let Some(mut acceptor) = self.acceptor.take() {
            acceptor.stop();
        }
    }

    /// Accepts again after [`CommandSocket::stop_accepting`] (an upgrade that failed).
    pub fn resume_accepting(&mut self) {
        if self.acceptor.is_some() {
            return;
        }
        match serve(
            &self.listener,
            self.inputs.clone(),
            self.limits,
            self.live.clone(),
        ) {
            Ok(a) => self.acceptor = Some(a),
            Err(e) => log::error(&format!("cannot accept on the command socket again: {e}")),
        }
    }

    /// Stops accepting and removes the socket file (unless a new main process now serves it).
    pub fn close(&mut self, remove_file: bool) {
        if remove_file {
            let _ = fs::remove_file(&self.path);
        }
        self.stop_accepting();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_uid_or_root_may_connect() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(1000, 0));
    }

    #[test]
    fn socket_is_private_and_a_live_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("weir.sock");
        let listener = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(matches!(bind(&path), Err(SocketError::InUse(_))));
        drop(listener);
        // Stale: the file is there but nothing listens.
        assert!(bind(&path).is_ok());
    }
}
