//! Worker processes: fork+exec of `weir worker`, their channels, their exits and restarts.
//!
//! Each worker is watched by two small threads: one reads its channel and hands every answer
//! to the core as an [`Input`], the other waits for the process to exit (without reaping it, so
//! the pid cannot be reused while the core may still signal it; the core reaps it once it has
//! forgotten the worker). Writes to a worker come only from the core, buffered and flushed once
//! per batch of inputs, which is what lets thousands of changes be pipelined to every worker.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use weir_schema::framing::{encode_frame, read_frame, DEFAULT_MAX_FRAME};
use weir_schema::proto;

use super::dispatch::WorkerKey;
use super::{fd, Input};
use crate::channel::{send_with_fd, WorkerConfig};

/// A worker that does not read its channel for this long is considered hung and replaced.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Flush a worker's queue once it holds this much, even in the middle of a batch.
const FLUSH_AT: usize = 256 * 1024;

/// A worker that crashes sooner than this after starting counts as crashing again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Longest wait between restarts of a worker that keeps crashing.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One running worker process.
#[derive(Debug)]
pub struct Worker {
    pub key: WorkerKey,
    pub pid: Pid,
    pub started: Instant,
    /// When the worker last said anything: one that keeps answering is busy, not hung.
    pub last_heard: Instant,
    channel: UnixStream,
    out: Vec<u8>,
    /// The channel failed: the worker is being killed and must not be written to.
    broken: bool,
}

impl Worker {
    /// Queues a request; it is written at the next [`Worker::flush`].
    pub fn queue(&mut self, request: &proto::Request) {
        if self.broken {
            return;
        }
        self.out.extend_from_slice(&encode_frame(request));
        if self.out.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Sends a request with a listening socket attached (AddListener).
    pub fn send_with_fd(&mut self, request: &proto::Request, fd: std::os::fd::RawFd) {
        self.flush();
        if self.broken {
            return;
        }
        if let Err(e) = send_with_fd(&self.channel, &encode_frame(request), fd) {
            self.fail(&e);
        }
    }

    /// Writes everything queued. A worker that cannot take it is killed (and later replaced).
    pub fn flush(&mut self) {
        if self.broken || self.out.is_empty() {
            return;
        }
        let result = self.channel.write_all(&self.out);
        self.out.clear();
        if let Err(e) = result {
            self.fail(&e);
        }
    }

    fn fail(&mut self, error: &io::Error) {
        super::log_warn(&format!(
            "worker {} (pid {}): channel write failed ({error}); replacing it",
            self.key.slot, self.pid
        ));
        self.broken = true;
        self.kill();
    }

    /// Gives up on a hung worker: nothing more is written to it (a full channel would block
    /// the core for the write timeout) and it is killed, to be replaced. False if it already
    /// was.
    pub fn abandon(&mut self) -> bool {
        let first = !self.broken;
        self.broken = true;
        self.out.clear();
        self.kill();
        first
    }

    /// SIGKILL. Safe against pid reuse: the process is not reaped until the core forgets it.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    /// Reaps the exited process.
    pub fn reap(&self) {
        let _ = waitpid(self.pid, None);
    }
}

/// A worker position, kept across restarts (its listening sockets belong to the slot).
#[derive(Debug)]
pub struct Slot {
    pub id: u32,
    pub worker: Option<Worker>,
    pub generation: u64,
    pub restarts: u32,
    crashes_in_a_row: u32,
    pub restart_at: Option<Instant>,
}

impl Slot {
    pub fn new(id: u32) -> Slot {
        Slot {
            id,
            worker: None,
            generation: 0,
            restarts: 0,
            crashes_in_a_row: 0,
            restart_at: None,
        }
    }

    /// Records an unexpected exit and schedules the restart: at once the first time, then
    /// with a doubling delay while the worker keeps dying young.
    pub fn crashed(&mut self, now: Instant, ran_for: Duration) {
        if ran_for < STABLE_AFTER {
            self.crashes_in_a_row += 1;
        } else {
            self.crashes_in_a_row = 1;
        }
        let delay = if self.crashes_in_a_row <= 1 {
            Duration::ZERO
        } else {
            let doubling = 1u32 << (self.crashes_in_a_row - 2).min(10);
            (Duration::from_millis(100) * doubling).min(MAX_BACKOFF)
        };
        self.restart_at = Some(now + delay);
    }
}

/// Starts worker processes.
#[derive(Debug, Clone)]
pub struct Spawner {
    pub exe: PathBuf,
    pub inputs: Sender<Input>,
}

impl Spawner {
    /// Fork+execs `weir worker --id N --channel-fd FD --config JSON` and starts its two
    /// watcher threads.
    pub fn spawn(&self, key: WorkerKey, config: &WorkerConfig) -> io::Result<Worker> {
        let (main_end, worker_end) = UnixStream::pair()?;
        let json = serde_json::to_string(config).map_err(io::Error::other)?;
        let mut command = Command::new(&self.exe);
        command
            .arg("worker")
            .arg("--id")
            .arg(key.slot.to_string())
            .arg("--channel-fd")
            .arg(worker_end.as_raw_fd().to_string())
            .arg("--config")
            .arg(json)
            .stdin(Stdio::null());
        let child = fd::spawn_with_fds(&mut command, &[worker_end.as_raw_fd()])?;
        drop(worker_end);
        let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
        // Dropping a std Child neither kills nor reaps it: the waiter thread and the core do.
        drop(child);
        main_end.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let reader = main_end.try_clone()?;
        let inputs = self.inputs.clone();
        std::thread::Builder::new()
            .name(format!("worker-{}-reader", key.slot))
            .spawn(move || read_worker(reader, key, &inputs))?;
        let inputs = self.inputs.clone();
        std::thread::Builder::new()
            .name(format!("worker-{}-waiter", key.slot))
            .spawn(move || {
                let status = wait_exit(pid);
                let _ = inputs.send(Input::WorkerExited { key, status });
            })?;
        Ok(Worker {
            key,
            pid,
            started: Instant::now(),
            last_heard: Instant::now(),
            channel: main_end,
            out: Vec::new(),
            broken: false,
        })
    }
}

fn read_worker(channel: UnixStream, key: WorkerKey, inputs: &Sender<Input>) {
    // Buffered: a worker answers a burst of changes in a few large writes, and reading them
    // frame by frame from the socket would cost a syscall per length prefix and per body.
    let mut channel = std::io::BufReader::with_capacity(64 * 1024, channel);
    loop {
        match read_frame::<proto::Response, _>(&mut channel, DEFAULT_MAX_FRAME) {
            Ok(Some(response)) => {
                if inputs.send(Input::Worker { key, response }).is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                let _ = inputs.send(Input::WorkerChannelClosed { key });
                return;
            }
        }
    }
}

/// Waits until `pid` exits, leaving it unreaped, and describes how it ended.
fn wait_exit(pid: Pid) -> String {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(_, code)) => return format!("exited with status {code}"),
            Ok(WaitStatus::Signaled(_, signal, _)) => return format!("killed by {signal}"),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return format!("could not be waited for: {e}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_while_a_worker_keeps_crashing() {
        let mut slot = Slot::new(0);
        let now = Instant::now();
        slot.crashed(now, Duration::from_millis(5));
        assert_eq!(slot.restart_at, Some(now));
        slot.crashed(now, Duration::from_millis(5));
        assert_eq!(slot.restart_at, Some(now + Duration::from_millis(100)));
        slot.crashed(now, Duration::from_millis(5));
        assert_eq!(slot.restart_at, Some(now + Duration::from_millis(200)));
        for _ in 0..20 {
            slot.crashed(now, Duration::from_millis(5));
        }
        assert_eq!(slot.restart_at, Some(now + MAX_BACKOFF));
        // A worker that ran a while before crashing is restarted at once.
        slot.crashed(now, Duration::from_secs(60));
        assert_eq!(slot.restart_at, Some(now));
    }
}
