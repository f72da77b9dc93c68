//! The worker's side of the channel to the main process: framed requests in (with listening
//! sockets attached to `AddListener` frames), framed responses and events out. Each change is
//! applied to the worker's own [`State`] with the schema's rules, then to its runtime tables.
//!
//! The rules are those of [`crate::channel`]: every request is answered with its id; a
//! `RemoveBackend` is answered `PROCESSING` with the live request count each time it changes
//! and `OK` at zero (or `FAILURE` when its drain timeout passes first); health changes go out
//! unasked, with an empty id.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use weir_schema::framing::{FrameDecoder, FrameEncoder, DEFAULT_MAX_FRAME};
use weir_schema::metric_names::BackendCounter;
use weir_schema::proto::{self, response::Content};
use weir_schema::{BackendKey, Change, Command, Request, State};

use super::event_loop::Worker;
use super::health::Transition;
use super::sessions::ListenerInfo;
use super::upstream::Notice;
use super::WorkerError;
use crate::channel::recv_with_fds;

/// How long a removed backend may take to drain when the request names no timeout.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A `RemoveBackend` waiting for its backend's requests to finish.
#[derive(Debug)]
struct Drain {
    request_id: String,
    /// The backend's slab key while it drains.
    backend: usize,
    key: BackendKey,
    deadline: Instant,
}

/// The channel, the worker's copy of the state, and requests still being answered.
#[derive(Debug)]
pub struct Control {
    pub stream: UnixStream,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    fds: VecDeque<OwnedFd>,
    pub state: State,
    drains: Vec<Drain>,
    soft_stop: Option<String>,
    pub worker_id: u32,
}

impl Control {
    pub fn new(stream: StdUnixStream, worker_id: u32) -> io::Result<Control> {
        stream.set_nonblocking(true)?;
        Ok(Control {
            stream: UnixStream::from_std(stream),
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
            encoder: FrameEncoder::new(),
            fds: VecDeque::new(),
            state: State::new(),
            drains: Vec::new(),
            soft_stop: None,
            worker_id,
        })
    }

    /// Reads what arrived; `None` when the main process closed the channel.
    pub fn read_requests(&mut self) -> Result<Option<Vec<proto::Request>>, WorkerError> {
        let mut chunk = [0u8; 64 * 1024];
        let mut closed = false;
        loop {
            match recv_with_fds(&self.stream, &mut chunk, &mut self.fds) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.decoder.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WorkerError::Channel(e)),
            }
        }
        let mut requests = Vec::new();
        while let Some(request) = self.decoder.next::<proto::Request>()? {
            requests.push(request);
        }
        if closed && requests.is_empty() {
            return Ok(None);
        }
        Ok(Some(requests))
    }

    pub fn send(&mut self, response: &proto::Response) {
        self.encoder.push(response);
    }

    pub fn flush(&mut self) -> Result<(), WorkerError> {
        match self.encoder.write_to(&mut self.stream) {
            Ok(_) => Ok(()),
            Err(e) => Err(WorkerError::Channel(e)),
        }
    }

    /// Writes everything queued, waiting if it must: the worker is about to exit.
    pub fn flush_blocking(&mut self) -> Result<(), WorkerError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.encoder.is_empty() && Instant::now() < deadline {
            self.flush()?;
            if !self.encoder.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    pub fn finish_soft_stop(&mut self) {
        if let Some(id) = self.soft_stop.take() {
            let response = proto::Response::ok(&id, self.state.version);
            self.send(&response);
        }
    }

    /// Answers `FAILURE` for drains past their deadline; their sessions go on regardless.
    pub fn expire_drains(&mut self, now: Instant) {
        let version = self.state.version;
        let mut expired = Vec::new();
        self.drains.retain(|d| {
            if now >= d.deadline {
                expired.push(proto::Response::failure(
                    &d.request_id,
                    format!(
                        "drain timeout: backend {} still has live connections",
                        d.key
                    ),
                    version,
                ));
                false
            } else {
                true
            }
        });
        for response in expired {
            self.send(&response);
        }
    }
}

impl Worker {
    /// Handles one request. `Ok(true)`: the worker must exit now.
    pub fn handle(&mut self, raw: proto::Request) -> Result<bool, WorkerError> {
        let id = raw.id.clone();
        let fd = match raw.kind {
            Some(proto::request::Kind::AddListener(_)) => self.control.fds.pop_front(),
            _ => None,
        };
        let request = match Request::try_from(&raw) {
            Ok(r) => r,
            Err(e) => {
                let response =
                    proto::Response::failure(&id, e.to_string(), self.control.state.version);
                self.control.send(&response);
                return Ok(false);
            }
        };
        let version = self.control.state.version;
        let response = match &request.command {
            Command::Change(change) => {
                return self.handle_change(&request, change, fd).map(|()| false)
            }
            Command::QueryState => proto::Response::ok(&id, version)
                .with_content(Content::State(self.control.state.to_snapshot())),
            Command::QueryMetrics => {
                proto::Response::ok(&id, version).with_content(Content::Metrics(self.metrics()))
            }
            Command::Status => {
                let uptime = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let worker = proto::WorkerStatus {
                    id: self.control.worker_id,
                    pid: std::process::id(),
                    uptime_ms: uptime,
                    connections: self.live_connections() as u64,
                    state_version: version,
                    restarts: 0,
                    unresponsive: false,
                };
                proto::Response::ok(&id, version).with_content(Content::StatusReport(
                    proto::ProxyStatus {
                        pid: std::process::id(),
                        uptime_ms: uptime,
                        state_version: version,
                        state_fingerprint: self.control.state.fingerprint().to_hex(),
                        workers: vec![worker],
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    },
                ))
            }
            Command::SoftStop => {
                self.control.soft_stop = Some(id);
                self.begin_soft_stop();
                return Ok(false);
            }
            Command::HardStop => {
                self.control.send(&proto::Response::ok(&id, version));
                self.control.flush_blocking()?;
                return Ok(true);
            }
            _ => proto::Response::failure(&id, "not a worker command", version),
        };
        self.control.send(&response);
        Ok(false)
    }

    fn handle_change(
        &mut self,
        request: &Request,
        change: &Change,
        fd: Option<OwnedFd>,
    ) -> Result<(), WorkerError> {
        let id = &request.id;
        if matches!(change, Change::AddListener(_)) && fd.is_none() {
            let response = proto::Response::failure(
                id,
                "no listening socket came with AddListener",
                self.control.state.version,
            );
            self.control.send(&response);
            return Ok(());
        }
        if let Err(e) = self.control.state.apply(request) {
            let response = proto::Response::failure(id, e.to_string(), self.control.state.version);
            self.control.send(&response);
            return Ok(());
        }
        let version = self.control.state.version;
        let now = self.cx.now;
        let defaults = &self.cx.config;
        match change {
            Change::AddListener(l) => {
                let listener = std::net::TcpListener::from(fd.ok_or(WorkerError::MissingFd)?);
                let result = listener.set_nonblocking(true);
                if let Err(e) = result {
                    // The state has it; the socket could not be used. Say so loudly.
                    let response = proto::Response::failure(
                        id,
                        format!("listener {}: {e}", l.address),
                        version,
                    );
                    self.control.send(&response);
                    return Ok(());
                }
                self.add_listener_socket(
                    mio::net::TcpListener::from_std(listener),
                    l.address,
                    Rc::new(ListenerInfo::new(l, defaults)),
                );
            }
            Change::UpdateListener(l) => {
                if let Some(&key) = self.listener_by_addr.get(&l.address) {
                    let info = Rc::new(ListenerInfo::new(l, defaults));
                    let old = std::mem::replace(&mut self.listeners[key].info, info.clone());
                    // Open connections take the new settings too, from their next request on
                    // (a request under way keeps the body limit it started with). One walk
                    // here rather than a lookup per request keeps the request path as it is.
                    for (_, session) in self.sessions.iter_mut() {
                        if Rc::ptr_eq(&session.io.info, &old) {
                            session.io.info = info.clone();
                        }
                    }
                }
            }
            Change::RemoveListener(address) => {
                if let Some(&key) = self.listener_by_addr.get(address) {
                    self.remove_listener_key(key);
                }
            }
            Change::AddCluster(c) => self.cx.upstream.add_cluster(c),
            Change::UpdateCluster(c) => self.cx.upstream.update_cluster(c, now),
            Change::RemoveCluster(c) => self.cx.upstream.remove_cluster(c),
            Change::AddBackend(b) => self.cx.upstream.add_backend(b, now),
            Change::UpdateBackend(b) => self.cx.upstream.update_backend(b),
            Change::RemoveBackend { key, drain_timeout } => {
                let removed = self.cx.upstream.remove_backend(key, &self.cx.registry);
                match removed {
                    Some((backend, live)) if live > 0 => {
                        let response = proto::Response::processing(id, "draining", version)
                            .with_content(drain_content(key, live));
                        self.control.send(&response);
                        self.control.drains.push(Drain {
                            request_id: id.clone(),
                            backend,
                            key: key.clone(),
                            deadline: now + drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
                        });
                        return Ok(());
                    }
                    _ => {
                        let response =
                            proto::Response::ok(id, version).with_content(drain_content(key, 0));
                        self.control.send(&response);
                        return Ok(());
                    }
                }
            }
            Change::AddFrontend(f) => {
                let seq = self.control.state.frontends.get(f).copied().unwrap_or(0);
                if let Some(&cluster) = self.cx.upstream.cluster_by_id.get(&f.cluster) {
                    self.cx
                        .router
                        .insert(f.listener, f.hostname.as_deref(), &f.path, seq, cluster);
                }
            }
            Change::RemoveFrontend(f) => {
                if let Some(&cluster) = self.cx.upstream.cluster_by_id.get(&f.cluster) {
                    self.cx
                        .router
                        .remove(f.listener, f.hostname.as_deref(), &f.path, cluster);
                }
            }
            // Certificates only matter to TLS, which a later issue adds; the state keeps them.
            Change::AddCertificate(_)
            | Change::ReplaceCertificate { .. }
            | Change::RemoveCertificate(_) => {}
        }
        self.control.send(&proto::Response::ok(id, version));
        Ok(())
    }

    /// Turns drain progress and health changes into messages for the main process.
    pub fn flush_notices(&mut self) {
        if self.cx.upstream.notices.is_empty() {
            return;
        }
        let version = self.control.state.version;
        let notices = std::mem::take(&mut self.cx.upstream.notices);
        for notice in notices {
            match notice {
                Notice::Drain { backend, live } => {
                    let control = &mut self.control;
                    for drain in control.drains.iter().filter(|d| d.backend == backend) {
                        let response = if live == 0 {
                            proto::Response::ok(&drain.request_id, version)
                        } else {
                            proto::Response::processing(&drain.request_id, "draining", version)
                        };
                        let response = response.with_content(drain_content(&drain.key, live));
                        control.encoder.push(&response);
                    }
                    if live == 0 {
                        control.drains.retain(|d| d.backend != backend);
                    }
                }
                Notice::Health { key, transition } => {
                    let kind = match transition {
                        Transition::Down => proto::EventKind::BackendDown,
                        Transition::Up => proto::EventKind::BackendUp,
                    };
                    let event = proto::Event {
                        sequence: 0,
                        kind: kind as i32,
                        cluster_id: key.cluster.0.clone(),
                        backend_id: key.id.0.clone(),
                        worker_id: self.control.worker_id,
                        message: format!(
                            "backend {key} is {}",
                            if transition == Transition::Up {
                                "up"
                            } else {
                                "down"
                            }
                        ),
                        state_version: version,
                    };
                    let response =
                        proto::Response::ok("", version).with_content(Content::Event(event));
                    self.control.send(&response);
                }
            }
        }
    }

    /// Every counter, worker-wide then per backend.
    fn metrics(&self) -> proto::Metrics {
        let mut counters = Vec::new();
        self.cx.metrics.report(
            self.live_connections(),
            &self.cx.pool,
            self.cx.upstream.stats,
            &mut counters,
        );
        for (_, b) in self.cx.upstream.backends.iter() {
            for (counter, value) in [
                (BackendCounter::Active, u64::from(b.active)),
                (BackendCounter::Requests, b.requests),
                (BackendCounter::ConnectErrors, b.connect_errors),
                (BackendCounter::ConnectionsOpened, b.connections_opened),
                (BackendCounter::Idle, b.idle.len() as u64),
                (BackendCounter::Up, u64::from(b.health.is_up())),
            ] {
                counters.push(proto::Counter {
                    name: counter.name(&b.config.key),
                    value,
                });
            }
        }
        proto::Metrics { counters }
    }
}

fn drain_content(key: &BackendKey, live: u32) -> Content {
    Content::Drain(proto::DrainProgress {
        cluster_id: key.cluster.0.clone(),
        backend_id: key.id.0.clone(),
        live_connections: u64::from(live),
    })
}
