//! The core: the one thread that owns the State, the listening sockets and the workers, and
//! turns [`Input`]s into answers, forwarded requests and process changes.
//!
//! It holds a few parts, each owned here and touched only from this thread: the worker fleet
//! ([`Fleet`]), the table of forwarded requests ([`Requests`]), the connected clients and
//! event log ([`Clients`]), the phase of its life ([`Lifecycle`]) and the command socket. The
//! parts know nothing of each other; the core decides in what order they act.
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

mod admin;
mod binary_upgrade;
mod finish;

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use weir_schema::proto::{self, response::Content};
use weir_schema::wire::WireError;
use weir_schema::{Change, Command, Request, State};

use super::admin::Admin;
use super::clients::{ok_with, Clients};
use super::command_server::CommandSocket;
use super::config::Config;
use super::dispatch::{metrics_content, Aggregate, Drain, Origin, Outcome, Pending, Requests};
use super::error::{listen_failure, MainError};
use super::events::event;
use super::input::{ClientId, Input, WorkerKey};
use super::lifecycle::{Lifecycle, Reply};
use super::listeners::Listeners;
use super::loading::{self, Start};
use super::metric_sums::MetricSums;
use super::persist::AutoSave;
use super::supervisor::{self, Exit, Fleet, Spawner, INTERNAL};
use super::tickets::{TicketRotation, ROTATE_EVERY};
use super::upgrade::{self, Handover};
use super::{heap, log, persist};

/// How often the core wakes with nothing to do, to check deadlines and restarts.
const TICK: Duration = Duration::from_millis(20);

/// Inputs handled before queued writes to workers are flushed.
const BATCH: usize = 1024;

/// Inputs (commands, worker answers) after which the next idle tick hands freed heap pages back
/// to the OS: a burst that large (a big desired state loaded and synced to workers, a large
/// apply) leaves its peak behind otherwise.
const TRIM_AFTER_INPUTS: u64 = 10_000;

/// The state-owning loop of the main process.
#[derive(Debug)]
pub struct Core {
    config: Config,
    state: State,
    saved: AutoSave,
    listeners: Listeners,
    command: CommandSocket,
    fleet: Fleet,
    requests: Requests,
    clients: Clients,
    life: Lifecycle,
    /// TLS ticket keys; `None` if the system could not make any (workers then resume from
    /// their own session caches only).
    tickets: Option<TicketRotation>,
    /// The admin HTTP endpoint (`[metrics] prometheus`), if configured.
    admin: Option<Admin>,
    /// The last change applied and when, for the status page.
    last_change: Option<(String, SystemTime)>,
}

impl Core {
    /// Builds the state, opens the sockets, starts the workers.
    pub fn start(
        config: Config,
        handover: Option<Handover>,
        inputs: Sender<Input>,
    ) -> Result<Core, MainError> {
        let exe = upgrade::current_binary().map_err(MainError::Spawn)?;
        let take_over = handover.is_some();
        let Start {
            config,
            state,
            listeners,
            command,
            ready,
            saved_version,
            tickets,
        } = loading::start(config, handover)?;
        let saved = AutoSave::new(&config.state, saved_version);
        let command = CommandSocket::serve(
            command,
            config.socket_path(),
            inputs.clone(),
            config.client_limits(),
        )
        .map_err(MainError::Spawn)?;
        let admin = config
            .metrics
            .prometheus
            .map(|address| Admin::start(address, inputs.clone(), take_over))
            .transpose()?;
        let mut fleet = Fleet::new(Spawner { exe, inputs }, config.worker_count());
        let now = Instant::now();
        let rotation = match tickets {
            // After an upgrade, the keys of the main process this one replaces: tickets it
            // issued still resume.
            Some((keys, rotate_in)) => TicketRotation::resume(&keys, now, rotate_in, ROTATE_EVERY)
                .or_else(|e| {
                    log::warn(&format!(
                        "handed-over ticket keys unusable ({e}): new ones made"
                    ));
                    TicketRotation::start(now, ROTATE_EVERY)
                }),
            None => TicketRotation::start(now, ROTATE_EVERY),
        };
        let tickets = match rotation {
            Ok(rotation) => {
                fleet.set_ticket_keys(rotation.wire());
                Some(rotation)
            }
            Err(e) => {
                log::error(&format!("no TLS ticket keys ({e}): tickets are not issued"));
                None
            }
        };
        let mut core = Core {
            config,
            state,
            saved,
            listeners,
            command,
            fleet,
            requests: Requests::default(),
            clients: Clients::default(),
            life: Lifecycle::new(ready),
            tickets,
            admin,
            last_change: None,
        };
        if core.state.version > 0 {
            let loaded = format!("state version {} loaded at start", core.state.version);
            core.last_change = Some((loaded, SystemTime::now()));
        }
        // With saving on, a proxy that cannot save what it starts with says so now, rather
        // than refuse every change later.
        core.saved.save(&core.state)?;
        let mut first = Vec::new();
        for index in 0..core.fleet.len() {
            let key = core.start_worker(index).map_err(MainError::Spawn)?;
            first.push(key);
        }
        let id = core.requests.new_id();
        core.send_to(&first, &id, proto::request::Kind::Status(proto::Status {}));
        core.track(id, Pending::new(Origin::Startup, first, Aggregate::Barrier));
        log::info(&format!(
            "serving {} listener(s) with {} worker(s); command socket {}",
            core.state.listeners.len(),
            core.fleet.len(),
            core.command.path().display()
        ));
        Ok(core)
    }

    /// Runs until stopped.
    pub fn run(mut self, inputs: &Receiver<Input>) {
        // Inputs handled since the heap was last trimmed ([`TRIM_AFTER_INPUTS`]).
        let mut since_trim = 0;
        loop {
            match inputs.recv_timeout(TICK) {
                Ok(input) => {
                    self.handle(input);
                    let mut handled = 1;
                    for _ in 0..BATCH {
                        match inputs.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                        handled += 1;
                    }
                    since_trim += handled;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if since_trim >= TRIM_AFTER_INPUTS {
                        heap::release_free_pages();
                        since_trim = 0;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.fleet.flush();
            self.tick(Instant::now());
            self.fleet.flush();
            if self.life.exit_due() {
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
                activity,
            } => self.clients.connected(client, answers, writer, activity),
            Input::ClientRequest {
                client,
                id,
                request,
            } => self.on_request(client, id, request.map(|r| *r)),
            Input::ClientGone { client } => self.clients.gone(client),
            Input::Worker { key, response } => self.on_worker_message(key, response),
            Input::WorkerChannelClosed { key } => {
                if let Some(worker) = self.fleet.worker(key) {
                    worker.kill();
                }
            }
            Input::WorkerExited { key, status } => self.on_worker_exit(key, &status),
            Input::Signal(Signal::SIGTERM) => {
                log::info("SIGTERM: stopping once in-flight requests finish");
                self.begin_soft_stop(None);
            }
            Input::Signal(Signal::SIGINT) => {
                log::info("SIGINT: stopping now");
                self.hard_stop();
            }
            Input::Signal(Signal::SIGUSR1) => {
                // Workers write the access log themselves: each reopens its own file.
                log::info("SIGUSR1: workers reopen the access log");
                self.fleet.signal_all(Signal::SIGUSR1);
            }
            Input::Signal(signal) => log::info(&format!("{signal} ignored")),
            Input::UpgradeReady { pid } => self.on_upgrade_ready(pid),
            Input::UpgradeFailed { reason } => self.on_upgrade_failed(&reason),
            Input::Admin { query, page } => self.on_admin(query, page),
        }
    }

    // ---- clients -------------------------------------------------------------------------

    fn answer(&self, client: ClientId, response: proto::Response) {
        self.clients.answer(client, response);
    }

    fn fail(&self, client: ClientId, id: &str, message: impl Into<String>) {
        self.answer(
            client,
            proto::Response::failure(id, message, self.state.version),
        );
    }

    fn emit(&mut self, e: proto::Event) {
        self.clients.emit(e, self.state.version);
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
                    .with_content(Content::State(self.state.snapshot(request.private_keys))),
            ),
            Command::QueryMetrics => self.ask_workers(
                client,
                id,
                proto::request::Kind::QueryMetrics(proto::QueryMetrics {}),
                Aggregate::Metrics(MetricSums::default()),
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
                self.clients.subscribe(client, &id, from_sequence, version);
            }
        }
    }

    /// Refuses a change while the proxy is not running or when the client expected another
    /// version; the reason is the client's answer.
    fn refuse_change(&self, expected: Option<u64>) -> Option<String> {
        if let Some(why) = self.life.closed_for_changes() {
            return Some(why.to_owned());
        }
        let expected = expected.filter(|e| *e != self.state.version)?;
        let e = weir_schema::StateError::VersionMismatch {
            expected,
            actual: self.state.version,
        };
        Some(e.to_string())
    }

    fn on_change(&mut self, client: ClientId, id: String, expected: Option<u64>, change: Change) {
        if let Some(why) = self.refuse_change(expected) {
            return self.fail(client, &id, why);
        }
        if let Err(e) = self.state.check(&change) {
            return self.fail(client, &id, format!("{}: {e}", change.describe()));
        }
        if let Change::AddListener(l) = &change {
            if let Err(e) = self.listeners.open(l.address, self.fleet.len()) {
                let why = listen_failure(&l.name, &l.address, None, &e);
                return self.fail(client, &id, why);
            }
        }
        if let Err(why) = self
            .saved
            .save_ahead(&self.state, std::slice::from_ref(&change))
        {
            if let Change::AddListener(l) = &change {
                self.listeners.close(&l.address);
            }
            return self.fail(client, &id, why);
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
            log::error(&format!("{}: {e}", change.describe()));
            return None;
        }
        let id = id.unwrap_or_else(|| self.requests.new_id());
        let request = proto::Request {
            id: id.clone(),
            expected_version: None,
            kind: Some(change.into()),
        };
        let waiting = self.fleet.forward(change, &request, &self.listeners);
        if let Change::RemoveListener(address) = change {
            self.listeners.close(address);
        }
        let mut e = event(proto::EventKind::StateChanged);
        e.state_version = self.state.version;
        e.message = change.describe();
        self.last_change = Some((e.message.clone(), SystemTime::now()));
        self.emit(e);
        Some((id, waiting))
    }

    fn track(&mut self, id: String, pending: Pending) {
        if let Some(done) = self.requests.track(id, pending) {
            self.finish(done);
        }
    }

    /// LoadState: the saved resources are added to the state (resources already present and
    /// identical are skipped, changed settings become updates); all of it is checked on a copy
    /// first, so a file that does not fit is refused whole.
    fn load_state(&mut self, client: ClientId, id: String, expected: Option<u64>, path: &Path) {
        if let Some(why) = self.refuse_change(expected) {
            return self.fail(client, &id, why);
        }
        let changes = match loading::changes_to_load(&self.state, path) {
            Ok(changes) => changes,
            Err(e) => return self.fail(client, &id, e),
        };
        let added: Vec<&weir_schema::Listener> = changes
            .iter()
            .filter_map(|change| match change {
                Change::AddListener(l) => Some(l),
                _ => None,
            })
            .collect();
        if let Err((l, e)) = self
            .listeners
            .open_each(added.iter().copied(), self.fleet.len())
        {
            let origin = format!("from {}", path.display());
            let why = listen_failure(&l.name, &l.address, Some(&origin), &e);
            return self.fail(client, &id, why);
        }
        if let Err(why) = self.saved.save_ahead(&self.state, &changes) {
            for l in &added {
                self.listeners.close(&l.address);
            }
            return self.fail(client, &id, why);
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
        let keys: Vec<WorkerKey> = self.fleet.live().collect();
        let mid = self.requests.new_id();
        self.send_to(&keys, &mid, kind);
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

    fn send_to(&mut self, keys: &[WorkerKey], id: &str, kind: proto::request::Kind) {
        let request = proto::Request {
            id: id.to_owned(),
            expected_version: None,
            kind: Some(kind),
        };
        self.fleet.send_to(keys, &request);
    }

    // ---- workers -------------------------------------------------------------------------

    /// Starts the worker of slot `index` and replays the whole state to it.
    fn start_worker(&mut self, index: usize) -> std::io::Result<WorkerKey> {
        self.fleet
            .start(index, &self.config, &self.state, &self.listeners)
    }

    fn on_worker_message(&mut self, key: WorkerKey, response: proto::Response) {
        let Some(worker) = self.fleet.worker(key) else {
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
            if failed && response.id != supervisor::stop_id() {
                self.diverged(key, &response.message);
            }
            return;
        }
        let Some(answered) = self.requests.answer(&response.id, key, &response) else {
            return;
        };
        match answered.outcome {
            Outcome::Wait => {}
            Outcome::Progress(answer) => {
                if let Some(client) = answered.client {
                    self.answer(client, answer);
                }
            }
            Outcome::Diverged(message) => self.diverged(key, &message),
        }
        if let Some(done) = answered.done {
            self.finish(done);
        }
    }

    /// A worker refused what the main process accepted: replace it rather than let it serve a
    /// different state.
    fn diverged(&mut self, key: WorkerKey, message: &str) {
        log::error(&format!(
            "worker {} diverged from the main state ({message}); replacing it",
            key.slot
        ));
        if let Some(worker) = self.fleet.worker(key) {
            worker.kill();
        }
    }

    fn on_worker_exit(&mut self, key: WorkerKey, status: &str) {
        let running = self.life.is_running();
        let exit = self.fleet.exited(key, running);
        self.forget(key);
        if let (Exit::Crashed { pid }, true) = (exit, running) {
            log::warn(&format!("worker {} (pid {pid}) {status}", key.slot));
            let mut e = event(proto::EventKind::WorkerCrashed);
            e.worker_id = key.slot;
            e.message = format!("worker {} (pid {pid}) {status}", key.slot);
            self.emit(e);
        }
    }

    /// Deals with workers that owe a first answer past `timeouts.worker_answer_ms`: queries go
    /// on without them, changes have them replaced. Only a worker that has said nothing at all
    /// for that long counts, so one working through a long backlog is never taken for hung; and
    /// that check comes first, which keeps this cheap with thousands of changes in flight.
    fn check_silent(&mut self, now: Instant) {
        let limit = self.config.worker_answer_timeout();
        let quiet = self.fleet.quiet(now, limit);
        if quiet.is_empty() || self.requests.is_empty() {
            return;
        }
        let mut silent = self.requests.silent(now, limit, &quiet);
        // A worker that stays silent on a query is as hung as one silent on a change: its
        // share of new connections waits in an accept queue nobody serves. The query has
        // already been answered without it; the worker is replaced all the same.
        for key in silent.skipped.difference(&silent.replace) {
            if let Some(worker) = self.fleet.worker(*key) {
                log::warn(&format!(
                    "worker {} (pid {}) did not answer a query within {} ms; answered without it",
                    key.slot,
                    worker.pid,
                    limit.as_millis()
                ));
            }
        }
        silent.replace.extend(silent.skipped);
        for key in silent.replace {
            if let Some(worker) = self.fleet.worker(key) {
                let pid = worker.pid;
                if worker.abandon() {
                    log::warn(&format!(
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
        self.finish_all(silent.done);
    }

    /// Stops waiting for `key` anywhere, finishing what no longer waits for anyone.
    fn forget(&mut self, key: WorkerKey) {
        let done = self.requests.forget(key);
        self.finish_all(done);
    }

    fn upgrade_worker(&mut self, client: ClientId, id: String, slot_id: u32) {
        if !self.life.is_running() {
            return self.fail(client, &id, "the proxy is stopping or upgrading");
        }
        let index = slot_id as usize;
        if index >= self.fleet.len() {
            return self.fail(
                client,
                &id,
                format!("no worker {slot_id} (workers are 0..{})", self.fleet.len()),
            );
        }
        let replaced = self
            .fleet
            .replace(index, &self.config, &self.state, &self.listeners);
        let (new, old) = match replaced {
            Ok(keys) => keys,
            Err(e) => return self.fail(client, &id, format!("cannot start a worker: {e}")),
        };
        let Some(old) = old else {
            return self.answer(client, proto::Response::ok(&id, self.state.version));
        };
        // The old worker's pending answers no longer matter: the new one has the state.
        self.forget(old);
        let mid = self.requests.new_id();
        self.send_to(&[new], &mid, proto::request::Kind::Status(proto::Status {}));
        self.track(
            mid,
            Pending::new(
                Origin::WorkerUpgrade {
                    client,
                    request_id: id,
                    old,
                },
                [new],
                Aggregate::Barrier,
            ),
        );
    }

    // ---- time ----------------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        self.check_silent(now);
        for (key, pid) in self.fleet.kill_overdue(now) {
            log::warn(&format!(
                "worker {} (pid {pid}), replaced, still had connections after {} ms; killed",
                key.slot,
                self.config.stop_timeout().as_millis()
            ));
        }
        if let Some(rotated) = self.tickets.as_mut().and_then(|t| t.rotate_if_due(now)) {
            match rotated {
                Ok(keys) => self.fleet.set_ticket_keys(keys),
                // The keys in use stay; the next period tries again.
                Err(e) => log::error(&format!("TLS ticket keys not rotated: {e}")),
            }
        }
        for pending in self.requests.expired_drains(now) {
            if let Some((client, answer)) = pending.drain_deadline_answer() {
                self.save_state();
                self.answer(client, answer);
            }
        }
        if self.life.is_running() {
            let restarted = self
                .fleet
                .restart_due(now, &self.config, &self.state, &self.listeners);
            for (key, pid) in restarted {
                log::info(&format!("worker {} restarted (pid {pid})", key.slot));
                let mut e = event(proto::EventKind::WorkerRestarted);
                e.worker_id = key.slot;
                e.message = format!("worker {} restarted as pid {pid}", key.slot);
                self.emit(e);
            }
        }
        if let Some((client, id)) = self.life.tick(now, self.fleet.all_gone()) {
            self.answer(client, proto::Response::ok(&id, self.state.version));
        }
    }

    // ---- stopping ------------------------------------------------------------------------

    fn begin_soft_stop(&mut self, reply: Option<Reply>) {
        let deadline = Instant::now() + self.config.stop_timeout();
        if let Err(reply) = self.life.stop(deadline, reply) {
            if let Some((client, id)) = reply {
                self.fail(client, &id, "the proxy is already stopping or upgrading");
            }
            return;
        }
        // No new connection may queue on a socket nobody will accept from.
        self.listeners.close_all();
        self.fleet.soft_stop_all();
    }

    fn hard_stop(&mut self) {
        self.fleet.kill_all();
        self.life.exit_now();
    }

    fn shutdown(&mut self) {
        self.fleet.kill_all();
        self.save_state();
        self.command.close(!self.life.handed_over());
        self.clients.close();
        log::info("stopped");
    }
}
