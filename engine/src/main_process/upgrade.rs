//! Zero-downtime upgrade of the main process: hand the listening sockets, the command socket
//! and the state to a new binary, let its workers start serving, then drain the old workers.
//!
//! The listening sockets are inherited across `exec` (same fd numbers, named in the hand-over
//! JSON), so they never close and no connection is refused: until the new workers accept,
//! connections wait in the sockets' accept queues, which old and new workers share. The state
//! travels as a temporary saved-state file. The new main process reports readiness on a
//! socketpair once each of its workers has applied the state.

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_schema::State;

use super::command_server::CommandSocket;
use super::config::Config;
use super::input::Input;
use super::listeners::Listeners;
use super::{fd, persist};

/// Longest wait for a new main process to report that it serves.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What an old main process passes to its successor (`weir proxy --handover JSON`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    pub config: Config,
    pub command_fd: RawFd,
    pub listeners: Vec<(SocketAddr, Vec<RawFd>)>,
    pub state_file: PathBuf,
    pub ready_fd: RawFd,
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

/// Starts the successor of this main process: the state saved for it, the command socket and
/// every listening socket inherited, the settings it must keep (worker count, socket path)
/// fixed. Returns its pid; its readiness arrives later as an [`Input`].
pub fn start(
    state: &State,
    config: &Config,
    workers: usize,
    command: &CommandSocket,
    listeners: &Listeners,
) -> Result<u32, String> {
    let state_file = std::env::temp_dir().join(format!(
        "weir-upgrade-{}-{}.state",
        std::process::id(),
        state.version
    ));
    let mut config = config.clone();
    config.workers = Some(workers);
    // The state travels whole; the successor must not merge the directory in again.
    config.desired = None;
    config.socket = Some(command.path().to_owned());
    let handover = Handover {
        config,
        command_fd: command.raw_fd(),
        listeners: listeners.all_fds(),
        state_file: state_file.clone(),
        ready_fd: -1,
    };
    let launched = persist::save(state, &state_file)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            current_binary()
                .and_then(|bin| launch(&bin, handover, command.inputs().clone()))
                .map_err(|e| format!("cannot start the new main process: {e}"))
        });
    if launched.is_err() {
        let _ = std::fs::remove_file(&state_file);
    }
    launched
}

/// The binary to start: this executable's path, also after it was replaced on disk (then the
/// kernel reports the old inode's path with " (deleted)", and the new file sits at the path).
pub fn current_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Starts `binary proxy --handover JSON` with the fds inherited, and a thread that reports
/// [`Input::UpgradeReady`] or [`Input::UpgradeFailed`].
fn launch(binary: &Path, mut handover: Handover, inputs: Sender<Input>) -> std::io::Result<u32> {
    let (mut ready_here, ready_there) = UnixStream::pair()?;
    handover.ready_fd = ready_there.as_raw_fd();
    let json = serde_json::to_string(&handover).map_err(std::io::Error::other)?;
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
