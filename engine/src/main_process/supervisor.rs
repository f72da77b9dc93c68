//! Worker processes: fork+exec of `weir worker`, their channels, their exits and restarts.
//!
//! [`Fleet`] is the core's view of them: one [`Slot`] per worker position (its listening
//! sockets belong to the slot, so a restarted worker takes over the same accept queues), and
//! the replaced workers still finishing their requests. It writes to workers but decides
//! nothing about requests: the core says what to forward and learns which workers owe answers.
//!
//! Each worker is watched by two small threads: one reads its channel and hands every answer
//! to the core as an [`Input`], the other waits for the process to exit (without reaping it, so
//! the pid cannot be reused while the core may still signal it; the core reaps it once it has
//! forgotten the worker). Writes to a worker come only from the core, buffered and flushed once
//! per batch of inputs, which is what lets thousands of changes be pipelined to every worker.

use std::collections::{BTreeMap, BTreeSet};
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
use weir_schema::{proto, Change, State};

use super::config::Config;
use super::input::{Input, WorkerKey};
use super::listeners::Listeners;
use super::{fd, log};
use crate::channel::{send_with_fd, WorkerConfig};

/// Prefix of ids the main process sends to workers without a client waiting: replays, loads,
/// stops. A FAILURE answer to one of them still means the worker diverged.
pub const INTERNAL: &str = "_";

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
    /// For a retiring worker told to stop: when it is killed if it has not exited yet.
    kill_at: Option<Instant>,
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
        log::warn(&format!(
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
        // Past the fork, a failure must not leave the child behind: it is killed and reaped.
        reap_on_error(child, |pid| self.watch(key, pid, main_end))
    }

    /// Starts the two watcher threads of a started worker.
    fn watch(&self, key: WorkerKey, pid: Pid, main_end: UnixStream) -> io::Result<Worker> {
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
            kill_at: None,
        })
    }
}

/// Hands a freshly started `child` to `watch`; if that fails, the child is killed and reaped
/// before the error is returned, so a start that fails after the fork leaves no process and
/// no zombie behind. (Dropping a std `Child` neither kills nor reaps it.)
fn reap_on_error<T>(
    mut child: std::process::Child,
    watch: impl FnOnce(Pid) -> io::Result<T>,
) -> io::Result<T> {
    let result = i32::try_from(child.id())
        .map_err(io::Error::other)
        .map(Pid::from_raw)
        .and_then(watch);
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Every worker: one per slot, plus the replaced ones still finishing their requests.
///
/// The fleet writes to workers but decides nothing about requests: the core tells it what to
/// forward and reads back which workers owe an answer.
#[derive(Debug)]
pub struct Fleet {
    spawner: Spawner,
    slots: Vec<Slot>,
    /// Replaced workers that keep serving until their successor is ready, then drain.
    retiring: Vec<Worker>,
    /// The TLS ticket keys every worker gets, a new one first (before its state replay).
    ticket_keys: Option<proto::TicketKeys>,
}

/// What a worker's exit meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// A retiring worker finished, or the exit of a worker already forgotten.
    Expected,
    /// The serving worker of its slot died (`pid`).
    Crashed { pid: Pid },
}

impl Fleet {
    pub fn new(spawner: Spawner, slots: usize) -> Fleet {
        Fleet {
            spawner,
            slots: (0..slots)
                .map(|i| Slot::new(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect(),
            retiring: Vec::new(),
            ticket_keys: None,
        }
    }

    /// Keeps the ticket keys for workers started from now on and sends them to every worker
    /// now (retiring ones too: they still serve connections that may resume).
    pub fn set_ticket_keys(&mut self, keys: proto::TicketKeys) {
        let request = ticket_keys_request(&keys);
        for slot in &mut self.slots {
            if let Some(w) = slot.worker.as_mut() {
                w.queue(&request);
            }
        }
        for w in &mut self.retiring {
            w.queue(&request);
        }
        self.ticket_keys = Some(keys);
    }

    /// How many slots there are (each listener has one socket per slot).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The serving workers.
    pub fn live(&self) -> impl Iterator<Item = WorkerKey> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.worker.as_ref().map(|w| w.key))
    }

    /// A serving or retiring worker.
    pub fn worker(&mut self, key: WorkerKey) -> Option<&mut Worker> {
        let slot = self.slots.get_mut(key.slot as usize)?;
        match slot.worker.as_mut() {
            Some(w) if w.key == key => Some(w),
            _ => self.retiring.iter_mut().find(|w| w.key == key),
        }
    }

    /// Starts the worker of slot `index` and replays the whole state to it.
    pub fn start(
        &mut self,
        index: usize,
        config: &Config,
        state: &State,
        listeners: &Listeners,
    ) -> io::Result<WorkerKey> {
        let slot = self
            .slots
            .get_mut(index)
            .ok_or_else(|| io::Error::other(format!("no worker slot {index}")))?;
        slot.generation += 1;
        slot.restart_at = None;
        let key = WorkerKey {
            slot: slot.id,
            generation: slot.generation,
        };
        let mut worker = self.spawner.spawn(key, &config.worker_config(slot.id))?;
        if let Some(keys) = &self.ticket_keys {
            worker.queue(&ticket_keys_request(keys));
        }
        for (n, change) in state.to_changes().iter().enumerate() {
            let request = proto::Request {
                id: format!("{INTERNAL}replay-{n}"),
                expected_version: None,
                kind: Some(change.into()),
            };
            send_change(&mut worker, slot.id, change, &request, listeners);
        }
        slot.worker = Some(worker);
        Ok(key)
    }

    /// Starts every slot whose restart is due; returns the started workers and their pids.
    /// A slot that cannot start is tried again later, as after a crash.
    pub fn restart_due(
        &mut self,
        now: Instant,
        config: &Config,
        state: &State,
        listeners: &Listeners,
    ) -> Vec<(WorkerKey, Pid)> {
        let mut started = Vec::new();
        for index in 0..self.slots.len() {
            let due = self.slots[index].restart_at.is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            match self.start(index, config, state, listeners) {
                Ok(key) => {
                    let slot = &mut self.slots[index];
                    slot.restarts += 1;
                    if let Some(w) = &slot.worker {
                        started.push((key, w.pid));
                    }
                }
                Err(e) => {
                    log::error(&format!("cannot restart worker {index}: {e}"));
                    self.slots[index].crashed(now, Duration::ZERO);
                }
            }
        }
        started
    }

    /// Starts a new worker in slot `index`; the one it replaces (if any) goes on serving,
    /// kept current, until [`Fleet::retire`]. Returns the new key and the replaced one.
    pub fn replace(
        &mut self,
        index: usize,
        config: &Config,
        state: &State,
        listeners: &Listeners,
    ) -> io::Result<(WorkerKey, Option<WorkerKey>)> {
        let old = self.slots.get_mut(index).and_then(|s| s.worker.take());
        match self.start(index, config, state, listeners) {
            Ok(new) => {
                let old_key = old.map(|old| {
                    let key = old.key;
                    self.retiring.push(old);
                    key
                });
                Ok((new, old_key))
            }
            Err(e) => {
                if let Some(slot) = self.slots.get_mut(index) {
                    slot.worker = old;
                }
                Err(e)
            }
        }
    }

    /// Asks a retiring worker to finish its requests and exit; one still running at
    /// `kill_at` is killed ([`Fleet::kill_overdue`]), so a long-lived connection (a WebSocket,
    /// a stuck backend) cannot keep a replaced worker alive for ever.
    pub fn retire(&mut self, key: WorkerKey, kill_at: Instant) {
        if let Some(w) = self.retiring.iter_mut().find(|w| w.key == key) {
            w.queue(&stop_request());
            w.kill_at = Some(kill_at);
        }
    }

    /// Kills the retiring workers past their deadline; returns them. Each is reaped when its
    /// exit arrives, like any other.
    pub fn kill_overdue(&mut self, now: Instant) -> Vec<(WorkerKey, Pid)> {
        let mut killed = Vec::new();
        for w in &mut self.retiring {
            if w.kill_at.is_some_and(|t| t <= now) {
                w.kill_at = None;
                w.abandon();
                killed.push((w.key, w.pid));
            }
        }
        killed
    }

    /// Forwards an accepted change to every worker; returns the serving ones, which owe an
    /// answer. Retiring workers are kept current without being waited for.
    pub fn forward(
        &mut self,
        change: &Change,
        request: &proto::Request,
        listeners: &Listeners,
    ) -> Vec<WorkerKey> {
        let mut waiting = Vec::new();
        for slot in &mut self.slots {
            if let Some(worker) = slot.worker.as_mut() {
                send_change(worker, slot.id, change, request, listeners);
                waiting.push(worker.key);
            }
        }
        for worker in &mut self.retiring {
            send_change(worker, worker.key.slot, change, request, listeners);
        }
        waiting
    }

    /// Queues `request` to each of `keys` still around.
    pub fn send_to(&mut self, keys: &[WorkerKey], request: &proto::Request) {
        for key in keys {
            if let Some(worker) = self.worker(*key) {
                worker.queue(request);
            }
        }
    }

    /// Writes what is queued to every worker.
    pub fn flush(&mut self) {
        for slot in &mut self.slots {
            if let Some(w) = slot.worker.as_mut() {
                w.flush();
            }
        }
        for w in &mut self.retiring {
            w.flush();
        }
    }

    /// The serving workers that have said nothing for `limit`.
    pub fn quiet(&self, now: Instant, limit: Duration) -> BTreeSet<WorkerKey> {
        self.slots
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .filter(|w| now.saturating_duration_since(w.last_heard) >= limit)
            .map(|w| w.key)
            .collect()
    }

    /// Reaps an exited worker. A serving one that died is a crash: its slot's restart is
    /// scheduled when `restart` (not while stopping).
    pub fn exited(&mut self, key: WorkerKey, restart: bool) -> Exit {
        if let Some(i) = self.retiring.iter().position(|w| w.key == key) {
            self.retiring.swap_remove(i).reap();
            return Exit::Expected;
        }
        let Some(slot) = self.slots.get_mut(key.slot as usize) else {
            return Exit::Expected;
        };
        let Some(worker) = slot.worker.take_if(|w| w.key == key) else {
            return Exit::Expected;
        };
        worker.reap();
        if restart {
            slot.crashed(Instant::now(), worker.started.elapsed());
        }
        Exit::Crashed { pid: worker.pid }
    }

    /// Asks every worker to finish its requests and exit; no slot restarts after this.
    pub fn soft_stop_all(&mut self) {
        let stop = stop_request();
        for slot in &mut self.slots {
            slot.restart_at = None;
            if let Some(w) = slot.worker.as_mut() {
                w.queue(&stop);
            }
        }
        for w in &mut self.retiring {
            w.queue(&stop);
        }
    }

    /// Sends `signal` to every worker, serving and retiring (SIGUSR1: reopen the access log).
    /// Safe against pid reuse for the reason [`Worker::kill`] is.
    pub fn signal_all(&self, signal: Signal) {
        let serving = self.slots.iter().filter_map(|slot| slot.worker.as_ref());
        for w in serving.chain(self.retiring.iter()) {
            let _ = kill(w.pid, signal);
        }
    }

    /// Kills and reaps every worker, serving and retiring.
    pub fn kill_all(&mut self) {
        let serving = self.slots.iter_mut().filter_map(|slot| slot.worker.take());
        for w in serving.chain(self.retiring.drain(..)) {
            w.kill();
            w.reap();
        }
    }

    /// No worker process is left.
    pub fn all_gone(&self) -> bool {
        self.slots.iter().all(|s| s.worker.is_none()) && self.retiring.is_empty()
    }

    /// One status entry per slot: the workers' own `reports` (by slot id) completed with
    /// what the main process knows (restarts, pid, uptime).
    pub fn status(&self, reports: Vec<proto::WorkerStatus>) -> Vec<proto::WorkerStatus> {
        let mut by_slot: BTreeMap<u32, proto::WorkerStatus> =
            reports.into_iter().map(|w| (w.id, w)).collect();
        for slot in &self.slots {
            let entry = by_slot
                .entry(slot.id)
                .or_insert_with(|| proto::WorkerStatus {
                    id: slot.id,
                    ..proto::WorkerStatus::default()
                });
            entry.restarts = slot.restarts;
            if let Some(worker) = &slot.worker {
                entry.pid = u32::try_from(worker.pid.as_raw()).unwrap_or(0);
                if entry.uptime_ms == 0 {
                    entry.uptime_ms =
                        u64::try_from(worker.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                }
            }
        }
        by_slot.into_values().collect()
    }
}

/// The request that asks a worker to finish its requests and exit.
fn stop_request() -> proto::Request {
    proto::Request {
        id: stop_id(),
        expected_version: None,
        kind: Some(proto::request::Kind::SoftStop(proto::SoftStop {})),
    }
}

/// The id of [`stop_request`]: a worker may refuse it without having diverged.
pub fn stop_id() -> String {
    format!("{INTERNAL}stop")
}

/// The channel-only request that gives a worker the ticket keys.
fn ticket_keys_request(keys: &proto::TicketKeys) -> proto::Request {
    proto::Request {
        id: format!("{INTERNAL}ticket-keys"),
        expected_version: None,
        kind: Some(proto::request::Kind::SetTicketKeys(keys.clone())),
    }
}

/// Forwards one change to a worker, with the slot's listening socket for an AddListener.
fn send_change(
    worker: &mut Worker,
    slot: u32,
    change: &Change,
    request: &proto::Request,
    listeners: &Listeners,
) {
    if let Change::AddListener(l) = change {
        match listeners.fd(&l.address, slot as usize) {
            Some(fd) => worker.send_with_fd(request, fd),
            None => log::error(&format!(
                "no socket for listener {} in slot {slot}; worker not told",
                l.address
            )),
        }
    } else {
        worker.queue(request);
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

    /// Whether `pid` is gone from the process table: not running, and not a zombie either.
    fn gone(pid: u32) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_start_that_fails_after_the_fork_kills_and_reaps_the_child() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let result: io::Result<()> =
            reap_on_error(child, |_| Err(io::Error::other("no thread for it")));
        assert_eq!(result.unwrap_err().to_string(), "no thread for it");
        // Reaped at once: no zombie is left for anyone to collect.
        assert!(
            gone(pid),
            "{:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );

        // A start that succeeds leaves the child to its watcher.
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let watched = reap_on_error(child, Ok).unwrap();
        assert_eq!(watched.as_raw(), i32::try_from(pid).unwrap());
        assert!(!gone(pid));
        let _ = kill(watched, Signal::SIGKILL);
        let _ = waitpid(watched, None);
    }

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
