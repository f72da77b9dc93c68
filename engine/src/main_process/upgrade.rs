//! Zero-downtime upgrade of the main process: hand the listening sockets, the command socket
//! and the state to a new binary, let its workers start serving, then drain the old workers.
//!
//! The listening sockets are inherited across `exec` (same fd numbers, named in the hand-over
//! JSON), so they never close and no connection is refused: until the new workers accept,
//! connections wait in the sockets' accept queues, which old and new workers share. The state
//! travels as a saved-state file ([`StateFile`]): it may hold private keys, so it is created
//! exclusively, readable by this user only, in a fresh directory only this user can enter, and
//! removed once the new main process has read it or the upgrade failed. The new main process
//! reports readiness on a socketpair once each of its workers has applied the state.
//!
//! The TLS session-ticket keys travel the other way on that same socketpair, one frame written
//! before the new process starts ([`send_ticket_keys`], [`read_ticket_keys`]): never on its
//! command line (which any user may read in `/proc`) nor in a file (ticket keys, unlike
//! certificate keys, exist nowhere else and must not outlive the processes using them). So
//! tickets issued before an upgrade still resume after it.

use std::fs::{OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_schema::framing::{read_frame, write_frame};
use weir_schema::{proto, saved, State};

use super::command_server::CommandSocket;
use super::config::Config;
use super::fd;
use super::input::Input;
use super::listeners::Listeners;

/// Longest wait for a new main process to report that it serves.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for the ticket keys, which the previous main process wrote before this one
/// started, so they are already there.
const KEYS_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest ticket-keys frame accepted (two keys and a lifetime take about 110 bytes).
const MAX_KEYS_FRAME: usize = 4096;

/// What an old main process passes to its successor (`weir proxy --handover JSON`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    pub config: Config,
    pub command_fd: RawFd,
    pub listeners: Vec<(SocketAddr, Vec<RawFd>)>,
    pub state_file: PathBuf,
    pub ready_fd: RawFd,
    /// Set when the TLS ticket keys wait on the ready socket: the milliseconds left until they
    /// rotate. Absent from the hand-over of a version without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_keys_rotate_in_ms: Option<u64>,
}

/// The hand-over with its fds taken into ownership.
#[derive(Debug)]
pub struct Adopted {
    pub command: OwnedFd,
    pub listeners: Vec<(SocketAddr, Vec<OwnedFd>)>,
    pub state_file: PathBuf,
    pub ready: UnixStream,
}

impl Handover {
    pub fn from_json(json: &str) -> Result<Handover, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    /// Takes ownership of every inherited fd.
    pub fn adopt(&self) -> Result<Adopted, String> {
        let take = |fd: RawFd| fd::adopt(fd).map_err(|e| format!("inherited fd {fd}: {e}"));
        let listeners = self
            .listeners
            .iter()
            .map(|(address, fds)| {
                let fds = fds
                    .iter()
                    .map(|&f| take(f))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((*address, fds))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Adopted {
            command: take(self.command_fd)?,
            listeners,
            state_file: self.state_file.clone(),
            ready: UnixStream::from(take(self.ready_fd)?),
        })
    }
}

/// The state handed to the successor: a saved-state file alone in a fresh directory.
/// Dropping it removes both, so it never outlives the upgrade that needed it.
#[derive(Debug)]
pub struct StateFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl StateFile {
    /// Writes `state` in a new directory under `parent` (mode 0700), to a file created
    /// exclusively and without following a link (mode 0600).
    pub fn write(state: &State, parent: &Path) -> io::Result<StateFile> {
        let dir = tempfile::Builder::new()
            .prefix("weir-upgrade-")
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let path = dir.path().join("state");
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        file.write_all(&saved::encode(state))?;
        Ok(StateFile { dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the file for the successor to read and remove (this process stops first).
    pub fn keep(self) {
        let _ = self.dir.keep();
    }
}

/// Starts the successor of this main process: the state saved for it, the command socket and
/// every listening socket inherited, the settings it must keep (worker count, socket path)
/// fixed, and the TLS ticket keys with the time left until they rotate, if there are any.
/// Returns its pid and the state file, to be dropped once the upgrade succeeded or failed; its
/// readiness arrives later as an [`Input`].
pub fn start(
    state: &State,
    config: &Config,
    workers: usize,
    command: &CommandSocket,
    listeners: &Listeners,
    tickets: Option<(proto::TicketKeys, Duration)>,
) -> Result<(u32, StateFile), String> {
    let state_file = StateFile::write(state, &std::env::temp_dir())
        .map_err(|e| format!("cannot write the state for the new main process: {e}"))?;
    let mut config = config.clone();
    config.workers = Some(workers);
    // The state travels whole; the successor must not merge the directory in again.
    config.desired = None;
    config.socket = Some(command.path().to_owned());
    let handover = Handover {
        config,
        command_fd: command.raw_fd(),
        listeners: listeners.all_fds(),
        state_file: state_file.path().to_owned(),
        ready_fd: -1,
        ticket_keys_rotate_in_ms: None,
    };
    let pid = current_binary()
        .and_then(|bin| launch(&bin, handover, tickets, command.inputs().clone()))
        .map_err(|e| format!("cannot start the new main process: {e}"))?;
    Ok((pid, state_file))
}

/// The binary to start: this executable's path, also after it was replaced on disk (then the
/// kernel reports the old inode's path with " (deleted)", and the new file sits at the path).
pub fn current_binary() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Starts `binary proxy --handover JSON` with the fds inherited and the ticket keys waiting on
/// its ready socket, and a thread that reports [`Input::UpgradeReady`] or
/// [`Input::UpgradeFailed`].
fn launch(
    binary: &Path,
    mut handover: Handover,
    tickets: Option<(proto::TicketKeys, Duration)>,
    inputs: Sender<Input>,
) -> io::Result<u32> {
    let (mut ready_here, ready_there) = UnixStream::pair()?;
    handover.ready_fd = ready_there.as_raw_fd();
    if let Some((keys, rotate_in)) = tickets {
        send_ticket_keys(&mut ready_here, &keys)?;
        handover.ticket_keys_rotate_in_ms =
            Some(u64::try_from(rotate_in.as_millis()).unwrap_or(u64::MAX));
    }
    let json = serde_json::to_string(&handover).map_err(io::Error::other)?;
    let mut inherit = vec![handover.command_fd, handover.ready_fd];
    inherit.extend(
        handover
            .listeners
            .iter()
            .flat_map(|(_, fds)| fds.iter().copied()),
    );
    let mut command = Command::new(binary);
    command
        .arg("proxy")
        .arg("--handover")
        .arg(json)
        .stdin(Stdio::null());
    let mut child = fd::spawn_with_fds(&mut command, &inherit)?;
    drop(ready_there);
    let pid = child.id();
    ready_here.set_read_timeout(Some(READY_TIMEOUT))?;
    std::thread::Builder::new()
        .name("upgrade-ready".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            let input = match ready_here.read(&mut byte) {
                Ok(1) => Input::UpgradeReady { pid },
                Ok(_) => {
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    Input::UpgradeFailed {
                        reason: format!("the new main process exited before serving ({status})"),
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Input::UpgradeFailed {
                        reason: format!("the new main process did not report ready: {e}"),
                    }
                }
            };
            let _ = inputs.send(input);
        })?;
    Ok(pid)
}

/// Writes the ticket keys for the successor on the previous main process's end of the ready
/// socket. A frame this small fits the socket's buffer, so this does not wait for the reader.
fn send_ticket_keys(ready: &mut UnixStream, keys: &proto::TicketKeys) -> io::Result<()> {
    ready.set_write_timeout(Some(KEYS_TIMEOUT))?;
    // The error never holds the frame, only why it could not be written.
    write_frame(ready, keys).map_err(io::Error::other)
}

/// Reads the ticket keys the previous main process left on the ready socket.
pub fn read_ticket_keys(ready: &mut UnixStream) -> Result<proto::TicketKeys, String> {
    let read = ready
        .set_read_timeout(Some(KEYS_TIMEOUT))
        .map_err(|e| e.to_string())
        .and_then(|()| read_frame(ready, MAX_KEYS_FRAME).map_err(|e| e.to_string()));
    let keys = match read {
        Ok(Some(keys)) => keys,
        Ok(None) => return Err("the ticket keys were announced but not sent".to_owned()),
        Err(e) => return Err(format!("cannot read the ticket keys: {e}")),
    };
    ready
        .set_read_timeout(None)
        .map_err(|e| format!("ready socket: {e}"))?;
    Ok(keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::{Change, Cluster};

    #[test]
    fn the_state_file_is_private_and_removed_with_its_directory() {
        let parent = tempfile::tempdir().unwrap();
        // A parent anyone may enter: the file's own directory must still be private.
        std::fs::set_permissions(parent.path(), Permissions::from_mode(0o755)).unwrap();
        let mut state = State::new();
        state
            .apply_change(&Change::AddCluster(Cluster::new("shop")), None)
            .unwrap();
        let file = StateFile::write(&state, parent.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.path()), 0o600);
        let dir = file.path().parent().unwrap().to_owned();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(dir.parent(), Some(parent.path()));
        let read = saved::decode(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(read.fingerprint(), state.fingerprint());
        drop(file);
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn ticket_keys_cross_the_ready_socket_and_stay_off_the_hand_over() {
        let keys = proto::TicketKeys {
            current: Some(proto::TicketKey {
                name: vec![1; 16],
                secret: vec![0xab; 32],
            }),
            previous: None,
            lifetime_ms: 1000,
        };
        let (mut here, mut there) = UnixStream::pair().unwrap();
        send_ticket_keys(&mut here, &keys).unwrap();
        assert_eq!(read_ticket_keys(&mut there).unwrap(), keys);
        drop(here);
        assert!(read_ticket_keys(&mut there).is_err());
        // The JSON (a command-line argument) names only the time left; without keys it is the
        // hand-over of a version that sends none, which still reads.
        let handover = Handover {
            config: Config::default(),
            command_fd: 3,
            listeners: Vec::new(),
            state_file: PathBuf::from("state"),
            ready_fd: 4,
            ticket_keys_rotate_in_ms: None,
        };
        let json = serde_json::to_string(&handover).unwrap();
        assert!(!json.contains("ticket"), "{json}");
        let handover = Handover::from_json(&json).unwrap();
        assert_eq!(handover.ticket_keys_rotate_in_ms, None);
    }
}
