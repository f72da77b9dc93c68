//! The core: the one thread that owns the State, the listening sockets and the workers, and
//! turns [`Input`]s into answers, forwarded requests and process changes.
//!
//! Invariants it keeps:
//! - a change is validated against the main State first (a FAILURE changes nothing, including
//!   a listener that cannot bind), then applied, then forwarded to every live worker in the
//!   same order; the client's OK waits for every worker (or its replacement's replay).
//! - a worker's channel is written only here, in request order, so a restarted worker that got
//!   the full replay first is never behind a request forwarded later.
//! - the listening sockets of a listener live from its AddListener to its RemoveListener (or a
//!   stop), whatever happens to the workers using them.
//! - no request waits forever on a worker that is alive but hung: past `timeouts.worker_answer_ms`
//!   without a first answer, a query is answered without it (and flags it) and a change has it
//!   killed and replaced, like a crashed worker (see [`Core::check_silent`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use weir_schema::proto::{self, response::Content};
use weir_schema::wire::WireError;
use weir_schema::{Change, Command, Request, State};

use super::command_server::{self, Acceptor};
use super::config::Config;
use super::dispatch::{Aggregate, ClientId, Drain, Origin, Outcome, Pending, Silence, WorkerKey};
use super::events::{event, EventLog, DEFAULT_CAPACITY};
use super::listeners::Listeners;
use super::supervisor::{Slot, Spawner, Worker};
use super::upgrade::{self, Handover};
use super::{heap, log_error, log_info, log_warn, persist, Input, MainError};

/// How often the core wakes with nothing to do, to check deadlines and restarts.
const TICK: Duration = Duration::from_millis(20);

/// Inputs handled before queued writes to workers are flushed.
const BATCH: usize = 1024;

/// Inputs (commands, worker answers) after which the next idle tick hands freed heap pages back
/// to the OS: a burst that large (a big desired state loaded and synced to workers, a large
/// apply) leaves its peak behind otherwise.
const TRIM_AFTER_INPUTS: u64 = 10_000;

/// Prefix of ids the main process sends to workers without a client waiting: replays, loads,
/// stops. A FAILURE answer to one of them still means the worker diverged.
const INTERNAL: &str = "_";

#[derive(Debug)]
struct Client {
    answers: Sender<proto::Response>,
    writer: Option<JoinHandle<()>>,
}

/// Where the process is in its life.
#[derive(Debug)]
enum Phase {
    Running,
    /// SoftStop / SIGTERM: workers finish in-flight requests, bounded by `deadline`.
    Stopping {
        deadline: Instant,
        reply: Option<(ClientId, String)>,
    },
    /// A new main process is starting; the command socket is no longer accepted here.
    Upgrading {
        reply: (ClientId, String),
    },
    /// The new main process serves; old workers drain, then this process exits.
    HandedOver {
        deadline: Instant,
    },
}

/// The state-owning loop of the main process.
#[derive(Debug)]
pub struct Core {
    config: Config,
    state: State,
    listeners: Listeners,
    command: UnixListener,
    socket_path: PathBuf,
    acceptor: Option<Acceptor>,
    inputs_tx: Sender<Input>,
    inputs: Receiver<Input>,
    spawner: Spawner,
    slots: Vec<Slot>,
    retiring: Vec<Worker>,
    clients: HashMap<ClientId, Client>,
    subscribers: BTreeSet<ClientId>,
    pending: HashMap<String, Pending>,
    next_id: u64,
    events: EventLog,
    started: Instant,
    saved_version: u64,
    phase: Phase,
    /// Set on a main process started by an upgrade: where to report readiness.
    ready: Option<std::os::unix::net::UnixStream>,
    exit: bool,
    /// Inputs handled since the heap was last trimmed ([`TRIM_AFTER_INPUTS`]).
    inputs_since_trim: u64,
}

impl Core {
    /// Builds the state, opens the sockets, starts the workers.
    pub fn start(
        config: Config,
        handover: Option<Handover>,
        inputs_tx: Sender<Input>,
        inputs: Receiver<Input>,
    ) -> Result<Core, MainError> {
        let exe = upgrade::current_binary().map_err(MainError::Spawn)?;
        let mut listeners = Listeners::default();
        let (config, state, command, ready, saved_version) = match handover {
            Some(handover) => {
                let adopted = handover.adopt().map_err(MainError::Handover)?;
                let state = persist::load(&adopted.state_file)?;
                let _ = std::fs::remove_file(&adopted.state_file);
                for (address, fds) in adopted.listeners {
                    listeners.adopt(address, fds);
                }
                let saved = state.version;
                (
                    handover.config,
                    state,
                    command_server::adopt(adopted.command),
                    Some(adopted.ready),
                    saved,
                )
            }
            None => {
                let state = initial_state(&config)?;
                let slots = config.worker_count();
                for address in state.listeners.keys() {
                    listeners
                        .open(*address, slots)
                        .map_err(|source| MainError::Listen {
                            address: *address,
                            source,
                        })?;
                }
                let command = command_server::bind(&config.socket_path())?;
                let saved = u64::MAX; // unknown: save on the first change
                (config, state, command, None, saved)
            }
        };
        let socket_path = config.socket_path();
        let acceptor =
            command_server::serve(&command, inputs_tx.clone()).map_err(MainError::Spawn)?;
        let slot_count = config.worker_count();
        let mut core = Core {
            spawner: Spawner {
                exe,
                inputs: inputs_tx.clone(),
            },
            slots: (0..slot_count)
                .map(|i| Slot::new(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect(),
            config,
            state,
            listeners,
            command,
            socket_path,
            acceptor: Some(acceptor),
            inputs_tx,
            inputs,
            retiring: Vec::new(),
            clients: HashMap::new(),
            subscribers: BTreeSet::new(),
            pending: HashMap::new(),
            next_id: 0,
            events: EventLog::new(DEFAULT_CAPACITY),
            started: Instant::now(),
            saved_version,
            phase: Phase::Running,
            ready,
            exit: false,
            inputs_since_trim: 0,
        };
        if core.saved_version == u64::MAX {
            core.saved_version = 0;
            core.autosave();
        }
        let mut first = Vec::new();
        for index in 0..core.slots.len() {
            let key = core.start_worker(index).map_err(MainError::Spawn)?;
            first.push(key);
        }
        let id = core.new_id();
        core.broadcast_to(&first, &id, proto::request::Kind::Status(proto::Status {}));
        core.pending
            .insert(id, Pending::new(Origin::Startup, first, Aggregate::Barrier));
        log_info(&format!(
            "serving {} listener(s) with {} worker(s); command socket {}",
            core.state.listeners.len(),
            core.slots.len(),
            core.socket_path.display()
        ));
        Ok(core)
    }

    /// Runs until stopped.
    pub fn run(mut self) {
        loop {
            match self.inputs.recv_timeout(TICK) {
                Ok(input) => {
                    self.handle(input);
                    let mut handled = 1;
                    for _ in 0..BATCH {
                        match self.inputs.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                        handled += 1;
                    }
                    self.inputs_since_trim += handled;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.inputs_since_trim >= TRIM_AFTER_INPUTS {
                        heap::release_free_pages();
                        self.inputs_since_trim = 0;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.flush_workers();
            self.tick(Instant::now());
            self.flush_workers();
            if self.exit {
                self.shutdown();
                return;
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::ClientConnected {
                client,
                answers,
                writer,
            } => {
                self.clients.insert(
                    client,
                    Client {
                        answers,
                        writer: Some(writer),
                    },
                );
            }
            Input::ClientRequest {
                client,
                id,
                request,
            } => self.on_request(client, id, request),
            Input::ClientGone { client } => {
                self.clients.remove(&client);
                self.subscribers.remove(&client);
            }
            Input::Worker { key, response } => self.on_worker_message(key, response),
            Input::WorkerChannelClosed { key } => {
                if let Some(worker) = self.worker(key) {
                    worker.kill();
                }
            }
            Input::WorkerExited { key, status } => self.on_worker_exit(key, &status),
            Input::Signal(Signal::SIGTERM) => {
                log_info("SIGTERM: stopping once in-flight requests finish");
                self.begin_soft_stop(None);
            }
            Input::Signal(Signal::SIGINT) => {
                log_info("SIGINT: stopping now");
                self.hard_stop();
            }
            Input::Signal(signal) => log_info(&format!("{signal} ignored")),
            Input::UpgradeReady { pid } => self.on_upgrade_ready(pid),
            Input::UpgradeFailed { reason } => self.on_upgrade_failed(&reason),
        }
    }

    // ---- clients -------------------------------------------------------------------------

    fn answer(&self, client: ClientId, response: proto::Response) {
        if let Some(c) = self.clients.get(&client) {
            let _ = c.answers.send(response);
        }
    }

    fn fail(&self, client: ClientId, id: &str, message: impl Into<String>) {
        self.answer(
            client,
            proto::Response::failure(id, message, self.state.version),
        );
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("m{}", self.next_id)
    }

    fn on_request(&mut self, client: ClientId, id: String, request: Result<Request, WireError>) {
        let request = match request {
            Ok(r) => r,
            Err(e) => return self.fail(client, &id, format!("malformed request: {e}")),
        };
        let version = self.state.version;
        match request.command {
            Command::Change(change) => {
                self.on_change(client, id, request.expected_version, change);
            }
            Command::QueryState => self.answer(
                client,
                proto::Response::ok(&id, version)
                    .with_content(Content::State(self.state.to_snapshot())),
            ),
            Command::QueryMetrics => self.ask_workers(
                client,
                id,
                proto::request::Kind::QueryMetrics(proto::QueryMetrics {}),
                Aggregate::Metrics(BTreeMap::new()),
            ),
            Command::Status => self.ask_workers(
                client,
                id,
                proto::request::Kind::Status(proto::Status {}),
                Aggregate::Status {
                    version,
                    reports: Vec::new(),
                },
            ),
            Command::SaveState(path) => match persist::save(&self.state, &path) {
                Ok(()) => self.answer(
                    client,
                    ok_with(
                        &id,
                        format!("saved state version {version} to {}", path.display()),
                        version,
                    ),
                ),
                Err(e) => self.fail(client, &id, e.to_string()),
            },
            Command::LoadState(path) => {
                self.load_state(client, id, request.expected_version, &path)
            }
            Command::SoftStop => self.begin_soft_stop(Some((client, id))),
            Command::HardStop => {
                self.answer(client, proto::Response::ok(&id, version));
                self.hard_stop();
            }
            Command::UpgradeMain => self.begin_upgrade(client, id),
            Command::UpgradeWorker(slot) => self.upgrade_worker(client, id, slot),
            Command::SubscribeEvents { from_sequence } => {
                self.subscribe(client, &id, from_sequence);
            }
        }
    }

    /// Why changes are refused right now, if they are.
    fn closed_for_changes(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Running => None,
            Phase::Stopping { .. } => Some("the proxy is stopping"),
            Phase::Upgrading { .. } | Phase::HandedOver { .. } => Some(
                "the proxy is upgrading; reconnect to the command socket to reach the new main process",
            ),
        }
    }

    fn on_change(&mut self, client: ClientId, id: String, expected: Option<u64>, change: Change) {
        if let Some(why) = self.closed_for_changes() {
            return self.fail(client, &id, why);
        }
        if let Some(expected) = expected {
            if expected != self.state.version {
                let e = weir_schema::StateError::VersionMismatch {
                    expected,
                    actual: self.state.version,
                };
                return self.fail(client, &id, e.to_string());
            }
        }
        if let Err(e) = self.state.check(&change) {
            return self.fail(client, &id, format!("{}: {e}", change.describe()));
        }
        if let Change::AddListener(l) = &change {
            if let Err(e) = self.listeners.open(l.address, self.slots.len()) {
                return self.fail(client, &id, format!("cannot listen on {}: {e}", l.address));
            }
        }
        let waiting = self.commit(&change, None);
        let version = self.state.version;
        let aggregate = match &change {
            Change::RemoveBackend { key, drain_timeout } => Aggregate::Drain {
                version,
                drain: Drain::new(
                    key.clone(),
                    Instant::now() + drain_timeout.unwrap_or(self.config.drain_timeout()),
                ),
            },
            _ => Aggregate::Change { version },
        };
        let Some((mid, waiting)) = waiting else {
            return self.fail(
                client,
                &id,
                "internal error: a checked change failed to apply",
            );
        };
        self.track(
            mid,
            Pending::new(
                Origin::Client {
                    client,
                    request_id: id,
                },
                waiting,
                aggregate,
            ),
        );
    }

    /// Applies a checked change (its listener sockets already open), forwards it to every
    /// worker and emits STATE_CHANGED. Returns the forwarded id and the workers that owe an
    /// answer, or `None` if the State refused it after all.
    fn commit(&mut self, change: &Change, id: Option<String>) -> Option<(String, Vec<WorkerKey>)> {
        if let Err(e) = self.state.apply_change(change, None) {
            if let Change::AddListener(l) = change {
                self.listeners.close(&l.address);
            }
            log_error(&format!("{}: {e}", change.describe()));
            return None;
        }
        let id = id.unwrap_or_else(|| self.new_id());
        let request = proto::Request {
            id: id.clone(),
            expected_version: None,
            kind: Some(change.into()),
        };
        let mut waiting = Vec::new();
        for slot in &mut self.slots {
            if let Some(worker) = slot.worker.as_mut() {
                send_change(worker, slot.id, change, &request, &self.listeners);
                waiting.push(worker.key);
            }
        }
        // Workers being replaced keep serving until their successor is ready: keep them
        // current, without waiting for them.
        for worker in &mut self.retiring {
            send_change(worker, worker.key.slot, change, &request, &self.listeners);
        }
        if let Change::RemoveListener(address) = change {
            self.listeners.close(address);
        }
        let mut e = event(proto::EventKind::StateChanged);
        e.state_version = self.state.version;
        e.message = change.describe();
        self.emit(e);
        Some((id, waiting))
    }

    fn track(&mut self, id: String, pending: Pending) {
        if pending.is_done() {
            self.finish(pending);
        } else {
            self.pending.insert(id, pending);
        }
    }

    /// LoadState: the saved resources are added to the state (resources already present and
    /// identical are skipped, changed settings become updates); all of it is checked on a copy
    /// first, so a file that does not fit is refused whole.
    fn load_state(&mut self, client: ClientId, id: String, expected: Option<u64>, path: &Path) {
        if let Some(why) = self.closed_for_changes() {
            return self.fail(client, &id, why);
        }
        if let Some(expected) = expected.filter(|e| *e != self.state.version) {
            let e = weir_schema::StateError::VersionMismatch {
                expected,
                actual: self.state.version,
            };
            return self.fail(client, &id, e.to_string());
        }
        let loaded = match persist::load(path) {
            Ok(s) => s,
            Err(e) => return self.fail(client, &id, e.to_string()),
        };
        let changes = merge_changes(&self.state, &loaded);
        let mut trial = self.state.clone();
        for change in &changes {
            if let Err(e) = trial.apply_change(change, None) {
                return self.fail(
                    client,
                    &id,
                    format!(
                        "{} does not fit the running state: {}: {e}",
                        path.display(),
                        change.describe()
                    ),
                );
            }
        }
        let mut opened = Vec::new();
        for change in &changes {
            if let Change::AddListener(l) = change {
                if let Err(e) = self.listeners.open(l.address, self.slots.len()) {
                    for address in &opened {
                        self.listeners.close(address);
                    }
                    return self.fail(client, &id, format!("cannot listen on {}: {e}", l.address));
                }
                opened.push(l.address);
            }
        }
        let count = changes.len();
        let mut last = None;
        for (n, change) in changes.iter().enumerate() {
            let forwarded = if n + 1 == count {
                None
            } else {
                Some(format!("{INTERNAL}load-{n}"))
            };
            last = self.commit(change, forwarded);
        }
        let version = self.state.version;
        match last {
            Some((mid, waiting)) => self.track(
                mid,
                Pending::new(
                    Origin::Client {
                        client,
                        request_id: id,
                    },
                    waiting,
                    Aggregate::Change { version },
                ),
            ),
            None => self.answer(
                client,
                ok_with(&id, "nothing to load: the state already holds it", version),
            ),
        }
    }

    fn ask_workers(
        &mut self,
        client: ClientId,
        id: String,
        kind: proto::request::Kind,
        aggregate: Aggregate,
    ) {
        let keys: Vec<WorkerKey> = self.live_workers().collect();
        let mid = self.new_id();
        self.broadcast_to(&keys, &mid, kind);
        self.track(
            mid,
            Pending::new(
                Origin::Client {
                    client,
                    request_id: id,
                },
                keys,
                aggregate,
            ),
        );
    }

    fn broadcast_to(&mut self, keys: &[WorkerKey], id: &str, kind: proto::request::Kind) {
        let request = proto::Request {
            id: id.to_owned(),
            expected_version: None,
            kind: Some(kind),
        };
        for key in keys {
            if let Some(worker) = self.worker(*key) {
                worker.queue(&request);
            }
        }
    }

    fn subscribe(&mut self, client: ClientId, id: &str, from: Option<u64>) {
        let version = self.state.version;
        let (replay, gap) = match from {
            Some(seq) => self.events.since(seq),
            None => (Vec::new(), false),
        };
        let message = if gap {
            format!(
                "subscribed; some events after {} were no longer retained",
                from.unwrap_or(0)
            )
        } else {
            format!("subscribed at sequence {}", self.events.last_sequence())
        };
        self.answer(client, ok_with(id, message, version));
        for e in replay {
            self.answer(client, event_response(e, version));
        }
        self.subscribers.insert(client);
    }

    fn emit(&mut self, e: proto::Event) {
        let e = self.events.push(e);
        for client in &self.subscribers {
            if let Some(c) = self.clients.get(client) {
                let _ = c
                    .answers
                    .send(event_response(e.clone(), self.state.version));
            }
        }
    }

    /// Saves the state if automatic saving is on and the file is behind.
    fn autosave(&mut self) {
        if !self.config.state.auto_save || self.saved_version == self.state.version {
            return;
        }
        let Some(path) = self.config.state.path.clone() else {
            return;
        };
        match persist::save(&self.state, &path) {
            Ok(()) => self.saved_version = self.state.version,
            Err(e) => log_error(&e.to_string()),
        }
    }

    // ---- finishing forwarded requests ----------------------------------------------------

    fn finish(&mut self, pending: Pending) {
        let note = pending.silence_note(self.config.worker_answer_timeout());
        match pending.origin {
            Origin::Startup => self.on_ready(),
            Origin::WorkerUpgrade {
                client,
                request_id,
                old,
            } => {
                self.stop_worker(old);
                self.answer(
                    client,
                    ok_with(
                        &request_id,
                        format!("worker {} replaced", old.slot),
                        self.state.version,
                    ),
                );
            }
            Origin::Client { client, request_id } => {
                let mut answer = match pending.aggregate {
                    Aggregate::Change { version } => {
                        self.autosave();
                        proto::Response::ok(&request_id, version)
                    }
                    Aggregate::Drain { version, drain } => {
                        self.autosave();
                        let mut e = event(proto::EventKind::BackendDrained);
                        e.cluster_id = drain.backend.cluster.0.clone();
                        e.backend_id = drain.backend.id.0.clone();
                        e.state_version = version;
                        e.message = format!("backend {} drained", drain.backend);
                        self.emit(e);
                        proto::Response::ok(&request_id, version).with_content(drain.as_content())
                    }
                    Aggregate::Status { reports, .. } => {
                        proto::Response::ok(&request_id, self.state.version)
                            .with_content(Content::StatusReport(self.status_report(reports)))
                    }
                    Aggregate::Metrics(sums) => {
                        proto::Response::ok(&request_id, self.state.version).with_content(
                            Content::Metrics(proto::Metrics {
                                counters: sums
                                    .into_iter()
                                    .map(|(name, value)| proto::Counter { name, value })
                                    .collect(),
                            }),
                        )
                    }
                    Aggregate::Barrier => proto::Response::ok(&request_id, self.state.version),
                };
                if let Some(note) = note {
                    answer.message = note;
                }
                self.answer(client, answer);
            }
        }
    }

    fn status_report(&self, reports: Vec<proto::WorkerStatus>) -> proto::ProxyStatus {
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
                    entry.uptime_ms = millis(worker.started.elapsed());
                }
            }
        }
        proto::ProxyStatus {
            pid: std::process::id(),
            uptime_ms: millis(self.started.elapsed()),
            state_version: self.state.version,
            state_fingerprint: self.state.fingerprint().to_hex(),
            workers: by_slot.into_values().collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn on_ready(&mut self) {
        log_info("every worker has applied the state");
        if let Some(mut ready) = self.ready.take() {
            use std::io::Write;
            if let Err(e) = ready.write_all(b"1") {
                log_warn(&format!(
                    "cannot report readiness to the previous main process: {e}"
                ));
            }
        }
    }

    // ---- workers -------------------------------------------------------------------------

    fn live_workers(&self) -> impl Iterator<Item = WorkerKey> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.worker.as_ref().map(|w| w.key))
    }

    fn worker(&mut self, key: WorkerKey) -> Option<&mut Worker> {
        let slot = self.slots.get_mut(key.slot as usize)?;
        match slot.worker.as_mut() {
            Some(w) if w.key == key => Some(w),
            _ => self.retiring.iter_mut().find(|w| w.key == key),
        }
    }

    /// Starts the worker of slot `index` and replays the whole state to it.
    fn start_worker(&mut self, index: usize) -> std::io::Result<WorkerKey> {
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.restart_at = None;
        let key = WorkerKey {
            slot: slot.id,
            generation: slot.generation,
        };
        let mut worker = self
            .spawner
            .spawn(key, &self.config.worker_config(slot.id))?;
        for (n, change) in self.state.to_changes().iter().enumerate() {
            let request = proto::Request {
                id: format!("{INTERNAL}replay-{n}"),
                expected_version: None,
                kind: Some(change.into()),
            };
            send_change(&mut worker, slot.id, change, &request, &self.listeners);
        }
        slot.worker = Some(worker);
        Ok(key)
    }

    fn flush_workers(&mut self) {
        for slot in &mut self.slots {
            if let Some(w) = slot.worker.as_mut() {
                w.flush();
            }
        }
        for w in &mut self.retiring {
            w.flush();
        }
    }

    fn on_worker_message(&mut self, key: WorkerKey, response: proto::Response) {
        let Some(worker) = self.worker(key) else {
            return;
        };
        worker.last_heard = Instant::now();
        if response.id.is_empty() {
            if let Some(Content::Event(mut e)) = response.content {
                e.worker_id = key.slot;
                e.state_version = self.state.version;
                self.emit(e);
            }
            return;
        }
        let failed = response.status() == proto::ResponseStatus::Failure;
        if response.id.starts_with(INTERNAL) {
            if failed && response.id != format!("{INTERNAL}stop") {
                self.diverged(key, &response.message);
            }
            return;
        }
        let Some(pending) = self.pending.get_mut(&response.id) else {
            return;
        };
        let outcome = pending.on_answer(key, &response);
        let done = pending.is_done();
        match outcome {
            Outcome::Wait => {}
            Outcome::Progress(answer) => {
                if let Origin::Client { client, .. } = pending.origin {
                    self.answer(client, answer);
                }
            }
            Outcome::Diverged(message) => self.diverged(key, &message),
        }
        if done {
            if let Some(pending) = self.pending.remove(&response.id) {
                self.finish(pending);
            }
        }
    }

    /// A worker refused what the main process accepted: replace it rather than let it serve a
    /// different state.
    fn diverged(&mut self, key: WorkerKey, message: &str) {
        log_error(&format!(
            "worker {} diverged from the main state ({message}); replacing it",
            key.slot
        ));
        if let Some(worker) = self.worker(key) {
            worker.kill();
        }
    }

    fn on_worker_exit(&mut self, key: WorkerKey, status: &str) {
        if let Some(i) = self.retiring.iter().position(|w| w.key == key) {
            let worker = self.retiring.swap_remove(i);
            worker.reap();
            self.forget(key);
            return;
        }
        let Some(slot) = self.slots.get_mut(key.slot as usize) else {
            return;
        };
        let Some(worker) = slot.worker.take_if(|w| w.key == key) else {
            return;
        };
        worker.reap();
        let running = matches!(self.phase, Phase::Running);
        if running {
            slot.crashed(Instant::now(), worker.started.elapsed());
        }
        self.forget(key);
        if running {
            log_warn(&format!(
                "worker {} (pid {}) {status}",
                key.slot, worker.pid
            ));
            let mut e = event(proto::EventKind::WorkerCrashed);
            e.worker_id = key.slot;
            e.message = format!("worker {} (pid {}) {status}", key.slot, worker.pid);
            self.emit(e);
        }
    }

    /// Deals with workers that owe a first answer past `timeouts.worker_answer_ms`: queries go
    /// on without them, changes have them replaced. Only a worker that has said nothing at all
    /// for that long counts, so one working through a long backlog is never taken for hung; and
    /// that check comes first, which keeps this cheap with thousands of changes in flight.
    fn check_silent(&mut self, now: Instant) {
        let limit = self.config.worker_answer_timeout();
        let quiet: BTreeSet<WorkerKey> = self
            .slots
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .filter(|w| now.saturating_duration_since(w.last_heard) >= limit)
            .map(|w| w.key)
            .collect();
        if quiet.is_empty() || self.pending.is_empty() {
            return;
        }
        let mut replace = BTreeSet::new();
        let mut skipped = BTreeSet::new();
        let mut done = Vec::new();
        for (id, pending) in &mut self.pending {
            for key in pending.overdue(now, limit) {
                if !quiet.contains(&key) {
                    continue;
                }
                match pending.on_silent(key) {
                    Silence::Skipped => skipped.insert(key),
                    Silence::Replace => replace.insert(key),
                };
            }
            if pending.is_done() {
                done.push(id.clone());
            }
        }
        // A worker that stays silent on a query is as hung as one silent on a change: its
        // share of new connections waits in an accept queue nobody serves. The query has
        // already been answered without it; the worker is replaced all the same.
        for key in skipped.difference(&replace) {
            if let Some(worker) = self.worker(*key) {
                log_warn(&format!(
                    "worker {} (pid {}) did not answer a query within {} ms; answered without it",
                    key.slot,
                    worker.pid,
                    limit.as_millis()
                ));
            }
        }
        replace.extend(skipped);
        for key in replace {
            if let Some(worker) = self.worker(key) {
                let pid = worker.pid;
                if worker.abandon() {
                    log_warn(&format!(
                        "worker {} (pid {pid}) did not answer within {} ms; replacing it",
                        key.slot,
                        limit.as_millis()
                    ));
                }
            }
            // Like a dead worker: what waited only on it is answered now; the slot restarts
            // when the exit of the killed process arrives, with the whole state replayed.
            self.forget(key);
        }
        for id in done {
            if let Some(pending) = self.pending.remove(&id) {
                self.finish(pending);
            }
        }
    }

    /// Stops waiting for `key` anywhere, finishing what no longer waits for anyone.
    fn forget(&mut self, key: WorkerKey) {
        let mut done = Vec::new();
        for (id, pending) in &mut self.pending {
            pending.forget(key);
            if pending.is_done() {
                done.push(id.clone());
            }
        }
        for id in done {
            if let Some(pending) = self.pending.remove(&id) {
                self.finish(pending);
            }
        }
    }

    /// Moves a worker to the retiring list and asks it to finish its requests and exit.
    fn stop_worker(&mut self, key: WorkerKey) {
        if let Some(i) = self.retiring.iter().position(|w| w.key == key) {
            let stop = stop_request();
            self.retiring[i].queue(&stop);
        }
        self.forget(key);
    }

    fn upgrade_worker(&mut self, client: ClientId, id: String, slot_id: u32) {
        if !matches!(self.phase, Phase::Running) {
            return self.fail(client, &id, "the proxy is stopping or upgrading");
        }
        let index = slot_id as usize;
        let Some(slot) = self.slots.get_mut(index) else {
            return self.fail(
                client,
                &id,
                format!("no worker {slot_id} (workers are 0..{})", self.slots.len()),
            );
        };
        let old = slot.worker.take();
        let new = match self.start_worker(index) {
            Ok(key) => key,
            Err(e) => {
                self.slots[index].worker = old;
                return self.fail(client, &id, format!("cannot start a worker: {e}"));
            }
        };
        let Some(old) = old else {
            return self.answer(client, proto::Response::ok(&id, self.state.version));
        };
        let old_key = old.key;
        self.retiring.push(old);
        // The old worker's pending answers no longer matter: the new one has the state.
        self.forget(old_key);
        let mid = self.new_id();
        self.broadcast_to(&[new], &mid, proto::request::Kind::Status(proto::Status {}));
        self.track(
            mid,
            Pending::new(
                Origin::WorkerUpgrade {
                    client,
                    request_id: id,
                    old: old_key,
                },
                [new],
                Aggregate::Barrier,
            ),
        );
    }

    // ---- time ----------------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        self.check_silent(now);
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(&p.aggregate, Aggregate::Drain { drain, .. } if drain.deadline <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            if let (Origin::Client { client, request_id }, Aggregate::Drain { version, drain }) =
                (&pending.origin, &pending.aggregate)
            {
                self.autosave();
                let message = format!(
                    "drain deadline reached: backend {} still has {} live connection(s); it stays removed",
                    drain.backend,
                    drain.total()
                );
                self.answer(
                    *client,
                    proto::Response::failure(request_id, message, *version)
                        .with_content(drain.as_content()),
                );
            }
        }
        if matches!(self.phase, Phase::Running) {
            for index in 0..self.slots.len() {
                let due = self.slots[index].restart_at.is_some_and(|t| t <= now);
                if !due {
                    continue;
                }
                match self.start_worker(index) {
                    Ok(key) => {
                        let slot = &mut self.slots[index];
                        slot.restarts += 1;
                        let pid = slot.worker.as_ref().map_or(0, |w| w.pid.as_raw());
                        log_info(&format!("worker {} restarted (pid {pid})", key.slot));
                        let mut e = event(proto::EventKind::WorkerRestarted);
                        e.worker_id = key.slot;
                        e.message = format!("worker {} restarted as pid {pid}", key.slot);
                        self.emit(e);
                    }
                    Err(e) => {
                        log_error(&format!("cannot restart worker {index}: {e}"));
                        self.slots[index].crashed(now, Duration::ZERO);
                    }
                }
            }
        }
        let all_gone = self.slots.iter().all(|s| s.worker.is_none()) && self.retiring.is_empty();
        match &self.phase {
            Phase::Stopping { deadline, reply } => {
                if all_gone || *deadline <= now {
                    if let Some((client, id)) = reply {
                        self.answer(*client, proto::Response::ok(id, self.state.version));
                    }
                    self.exit = true;
                }
            }
            Phase::HandedOver { deadline } => {
                if all_gone || *deadline <= now {
                    self.exit = true;
                }
            }
            Phase::Running | Phase::Upgrading { .. } => {}
        }
    }

    // ---- stopping ------------------------------------------------------------------------

    fn begin_soft_stop(&mut self, reply: Option<(ClientId, String)>) {
        match &self.phase {
            Phase::Running => {}
            _ => {
                if let Some((client, id)) = reply {
                    self.fail(client, &id, "the proxy is already stopping or upgrading");
                }
                return;
            }
        }
        self.phase = Phase::Stopping {
            deadline: Instant::now() + self.config.stop_timeout(),
            reply,
        };
        // No new connection may queue on a socket nobody will accept from.
        self.listeners.close_all();
        self.soft_stop_all_workers();
    }

    fn soft_stop_all_workers(&mut self) {
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

    fn hard_stop(&mut self) {
        self.kill_workers();
        self.exit = true;
    }

    /// Kills and reaps every worker, serving and retiring.
    fn kill_workers(&mut self) {
        let serving = self.slots.iter_mut().filter_map(|slot| slot.worker.take());
        for w in serving.chain(self.retiring.drain(..)) {
            w.kill();
            w.reap();
        }
    }

    fn shutdown(&mut self) {
        self.kill_workers();
        self.autosave();
        if !matches!(self.phase, Phase::HandedOver { .. }) {
            let _ = std::fs::remove_file(&self.socket_path);
        }
        if let Some(mut acceptor) = self.acceptor.take() {
            acceptor.stop();
        }
        // Let every writer send what is queued (each is bounded by its write timeout).
        let writers: Vec<JoinHandle<()>> = self
            .clients
            .drain()
            .filter_map(|(_, mut c)| c.writer.take())
            .collect();
        for writer in writers {
            let _ = writer.join();
        }
        log_info("stopped");
    }

    // ---- upgrade -------------------------------------------------------------------------

    fn begin_upgrade(&mut self, client: ClientId, id: String) {
        if !matches!(self.phase, Phase::Running) {
            return self.fail(client, &id, "the proxy is already stopping or upgrading");
        }
        if let Some(mut acceptor) = self.acceptor.take() {
            acceptor.stop();
        }
        let state_file = std::env::temp_dir().join(format!(
            "weir-upgrade-{}-{}.state",
            std::process::id(),
            self.state.version
        ));
        let mut config = self.config.clone();
        config.workers = Some(self.slots.len());
        config.desired = None;
        config.socket = Some(self.socket_path.clone());
        let handover = Handover {
            config,
            command_fd: self.command.as_raw_fd(),
            listeners: self.listeners.all_fds(),
            state_file: state_file.clone(),
            ready_fd: -1,
        };
        let launched = persist::save(&self.state, &state_file)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                upgrade::current_binary()
                    .and_then(|bin| upgrade::launch(&bin, handover, self.inputs_tx.clone()))
                    .map_err(|e| format!("cannot start the new main process: {e}"))
            });
        match launched {
            Ok(pid) => {
                log_info(&format!("upgrade: new main process pid {pid} is starting"));
                self.phase = Phase::Upgrading {
                    reply: (client, id),
                };
            }
            Err(e) => {
                let _ = std::fs::remove_file(&state_file);
                self.resume_accepting();
                self.fail(client, &id, e);
            }
        }
    }

    fn resume_accepting(&mut self) {
        match command_server::serve(&self.command, self.inputs_tx.clone()) {
            Ok(a) => self.acceptor = Some(a),
            Err(e) => log_error(&format!("cannot accept on the command socket again: {e}")),
        }
    }

    fn on_upgrade_ready(&mut self, pid: u32) {
        let Phase::Upgrading { reply } = &self.phase else {
            return;
        };
        let (client, id) = reply.clone();
        log_info(&format!(
            "upgrade: main process {pid} serves; draining the old workers"
        ));
        self.answer(
            client,
            ok_with(
                &id,
                format!("upgraded: the new main process is pid {pid}"),
                self.state.version,
            ),
        );
        self.phase = Phase::HandedOver {
            deadline: Instant::now() + self.config.stop_timeout(),
        };
        // The new main process and its workers hold the sockets now.
        self.listeners.close_all();
        self.soft_stop_all_workers();
    }

    fn on_upgrade_failed(&mut self, reason: &str) {
        let Phase::Upgrading { reply } = &self.phase else {
            return;
        };
        let (client, id) = reply.clone();
        log_error(&format!("upgrade failed: {reason}"));
        self.phase = Phase::Running;
        self.resume_accepting();
        self.fail(client, &id, format!("upgrade failed: {reason}"));
    }
}

fn stop_request() -> proto::Request {
    proto::Request {
        id: format!("{INTERNAL}stop"),
        expected_version: None,
        kind: Some(proto::request::Kind::SoftStop(proto::SoftStop {})),
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
            None => log_error(&format!(
                "no socket for listener {} in slot {slot}; worker not told",
                l.address
            )),
        }
    } else {
        worker.queue(request);
    }
}

fn event_response(e: proto::Event, version: u64) -> proto::Response {
    proto::Response::ok("", version).with_content(Content::Event(e))
}

/// A final OK with a message for people.
fn ok_with(id: &str, message: impl Into<String>, version: u64) -> proto::Response {
    let mut answer = proto::Response::ok(id, version);
    answer.message = message.into();
    answer
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The state at start: the saved state (if configured and present), then `desired` merged in.
fn initial_state(config: &Config) -> Result<State, MainError> {
    let mut state = State::new();
    if let Some(path) = config.state.path.as_ref().filter(|p| p.exists()) {
        state = persist::load(path)?;
        log_info(&format!(
            "loaded saved state version {} from {}",
            state.version,
            path.display()
        ));
    }
    if let Some(dir) = &config.desired {
        let desired = weir_schema::desired::load(dir).map_err(|e| MainError::Desired {
            path: dir.clone(),
            errors: e.to_string(),
        })?;
        for warning in &desired.warnings {
            log_warn(warning);
        }
        for change in merge_changes(&state, &desired.state) {
            state
                .apply_change(&change, None)
                .map_err(|e| MainError::Desired {
                    path: dir.clone(),
                    errors: format!("{}: {e}", change.describe()),
                })?;
        }
    }
    Ok(state)
}

/// The changes that add `incoming`'s resources to `current`: identical resources are skipped,
/// a listener, cluster or backend whose settings differ becomes an update (which the State may
/// still refuse, e.g. a backend whose address changed).
pub fn merge_changes(current: &State, incoming: &State) -> Vec<Change> {
    incoming
        .to_changes()
        .into_iter()
        .filter_map(|change| match change {
            Change::AddListener(l) => match current.listeners.get(&l.address) {
                None => Some(Change::AddListener(l)),
                Some(old) if *old == l => None,
                Some(_) => Some(Change::UpdateListener(l)),
            },
            Change::AddCluster(c) => match current.clusters.get(&c.id) {
                None => Some(Change::AddCluster(c)),
                Some(old) if *old == c => None,
                Some(_) => Some(Change::UpdateCluster(c)),
            },
            Change::AddBackend(b) => match current.backends.get(&b.key) {
                None => Some(Change::AddBackend(b)),
                Some(old) if *old == b => None,
                Some(_) => Some(Change::UpdateBackend(b)),
            },
            Change::AddCertificate(c) => (!current.certificates.contains_key(&c.fingerprint))
                .then_some(Change::AddCertificate(c)),
            Change::AddFrontend(f) => {
                (!current.frontends.contains_key(&f)).then_some(Change::AddFrontend(f))
            }
            other => Some(other),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::{Cluster, ClusterId};

    #[test]
    fn merging_skips_what_is_there_and_updates_what_changed() {
        let mut current = State::new();
        current
            .apply_change(&Change::AddCluster(Cluster::new("a")), None)
            .unwrap();
        let mut incoming = State::new();
        let mut changed = Cluster::new("a");
        changed.connect_timeout = Some(Duration::from_secs(1));
        incoming
            .apply_change(&Change::AddCluster(changed.clone()), None)
            .unwrap();
        incoming
            .apply_change(&Change::AddCluster(Cluster::new("b")), None)
            .unwrap();
        let changes = merge_changes(&current, &incoming);
        assert_eq!(
            changes,
            [
                Change::UpdateCluster(changed),
                Change::AddCluster(Cluster::new("b"))
            ]
        );
        assert!(merge_changes(&incoming, &incoming).is_empty());
        let _ = ClusterId("unused".into());
    }
}
