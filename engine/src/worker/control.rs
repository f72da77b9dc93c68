//! The worker's side of the channel to the main process: framed requests in (with listening
//! sockets attached to `AddListener` frames), framed responses and events out. Each change is
//! applied to the worker's own [`State`] with the schema's rules, then to its runtime tables.
//!
//! The rules are those of [`crate::channel`]: every request is answered with its id; a
//! `RemoveBackend` is answered `PROCESSING` with the live request count each time it changes
//! and `OK` at zero (or `FAILURE` when its drain timeout passes first); health changes go out
//! unasked, with an empty id.
//!
//! TLS: certificates, https listeners and frontends go to the certificate store right after
//! the State took them (a removed frontend's sequence number is read before), so the very
//! next handshake sees them; an https listener's rustls configuration is rebuilt when it is
//! added or updated. The channel-only `set_ticket_keys` never decodes into a command: it is
//! taken from the raw message.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use weir_schema::framing::{FrameDecoder, FrameEncoder, DEFAULT_MAX_FRAME};
use weir_schema::proto::{self, response::Content};
use weir_schema::{BackendKey, Change, Command, Listener, Protocol, Request, State};

use super::context::Context;
use super::error::WorkerError;
use super::front::ListenerInfo;
use super::health::Transition;
use super::listeners::Listeners;
use super::report;
use super::router::RouteOptions;
use super::tls::{ListenerTls, TicketKeys, WorkerTls};
use super::token::token_other;
use super::upstream::{Notice, Upstream};
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
    stream: UnixStream,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    fds: VecDeque<OwnedFd>,
    state: State,
    drains: Vec<Drain>,
    soft_stop: Option<String>,
    worker_id: u32,
    started: Instant,
    /// Certificates, the SNI tables and the resumption state of every https listener.
    tls: WorkerTls,
    /// Each https listener's configuration, by address.
    tls_listeners: HashMap<SocketAddr, ListenerTls>,
}

/// What the worker must do after a request, beyond what [`Control::handle`] did itself.
#[derive(Debug)]
pub enum Directive {
    Continue,
    /// Exit now (a `HardStop`, answered already).
    Exit,
    /// Begin a soft stop; its answer goes out once the last session closed.
    SoftStop,
    /// A listener's settings changed: open sessions holding `old` take `new`.
    ListenerUpdated {
        old: Rc<ListenerInfo>,
        new: Rc<ListenerInfo>,
    },
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
            started: Instant::now(),
            tls: WorkerTls::new(),
            tls_listeners: HashMap::new(),
        })
    }

    /// The TLS configuration of the https listener at `address`.
    pub fn tls_listener(&self, address: SocketAddr) -> Option<&ListenerTls> {
        self.tls_listeners.get(&address)
    }

    /// Builds (or rebuilds) an https listener's configuration.
    fn set_tls_listener(&mut self, listener: &Listener) -> Result<(), String> {
        if listener.protocol != Protocol::Https {
            self.tls_listeners.remove(&listener.address);
            return Ok(());
        }
        self.tls.store.set_listener(listener);
        let config = self
            .tls
            .listener(listener.address, &listener.settings)
            .map_err(|e| format!("listener {}: {e}", listener.address))?;
        self.tls_listeners.insert(listener.address, config);
        Ok(())
    }

    /// Registers the channel in the worker's poll.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.stream,
            Token(token_other(0)),
            Interest::READABLE | Interest::WRITABLE,
        )
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

impl Control {
    /// Handles one request against the worker's parts; `live` is its session count.
    pub fn handle(
        &mut self,
        raw: proto::Request,
        cx: &mut Context,
        listeners: &mut Listeners,
        live: usize,
    ) -> Result<Directive, WorkerError> {
        let id = raw.id.clone();
        if let Some(proto::request::Kind::SetTicketKeys(keys)) = &raw.kind {
            let version = self.state.version;
            let response = match TicketKeys::from_wire(keys)
                .and_then(|keys| self.tls.set_ticket_keys(&keys))
            {
                Ok(()) => proto::Response::ok(&id, version),
                Err(e) => proto::Response::failure(&id, e.to_string(), version),
            };
            self.send(&response);
            return Ok(Directive::Continue);
        }
        let fd = match raw.kind {
            Some(proto::request::Kind::AddListener(_)) => self.fds.pop_front(),
            _ => None,
        };
        let request = match Request::try_from(&raw) {
            Ok(r) => r,
            Err(e) => {
                let response = proto::Response::failure(&id, e.to_string(), self.state.version);
                self.send(&response);
                return Ok(Directive::Continue);
            }
        };
        let version = self.state.version;
        let response = match &request.command {
            Command::Change(change) => {
                return self.handle_change(&request, change, fd, cx, listeners)
            }
            Command::QueryState => proto::Response::ok(&id, version)
                .with_content(Content::State(self.state.to_snapshot())),
            Command::QueryMetrics => proto::Response::ok(&id, version)
                .with_content(Content::Metrics(self.metrics(cx, live))),
            Command::Status => {
                let uptime = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let worker = proto::WorkerStatus {
                    id: self.worker_id,
                    pid: std::process::id(),
                    uptime_ms: uptime,
                    connections: live as u64,
                    state_version: version,
                    restarts: 0,
                    unresponsive: false,
                    buffers_in_use: cx.pool.in_use() as u64,
                    buffers_max: cx.pool.max() as u64,
                };
                proto::Response::ok(&id, version).with_content(Content::StatusReport(
                    proto::ProxyStatus {
                        pid: std::process::id(),
                        uptime_ms: uptime,
                        state_version: version,
                        state_fingerprint: self.state.fingerprint().to_hex(),
                        workers: vec![worker],
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    },
                ))
            }
            Command::SoftStop => {
                self.soft_stop = Some(id);
                return Ok(Directive::SoftStop);
            }
            Command::HardStop => {
                self.send(&proto::Response::ok(&id, version));
                self.flush_blocking()?;
                return Ok(Directive::Exit);
            }
            _ => proto::Response::failure(&id, "not a worker command", version),
        };
        self.send(&response);
        Ok(Directive::Continue)
    }

    fn handle_change(
        &mut self,
        request: &Request,
        change: &Change,
        fd: Option<OwnedFd>,
        cx: &mut Context,
        listeners: &mut Listeners,
    ) -> Result<Directive, WorkerError> {
        let id = &request.id;
        if matches!(change, Change::AddListener(_)) && fd.is_none() {
            let response = proto::Response::failure(
                id,
                "no listening socket came with AddListener",
                self.state.version,
            );
            self.send(&response);
            return Ok(Directive::Continue);
        }
        // The store tells apart two frontends on one name by sequence: read it while it is there.
        let removed_seq = match change {
            Change::RemoveFrontend(f) => self.state.frontends.get(f).copied(),
            _ => None,
        };
        if let Err(e) = self.state.apply(request) {
            let response = proto::Response::failure(id, e.to_string(), self.state.version);
            self.send(&response);
            return Ok(Directive::Continue);
        }
        let version = self.state.version;
        let now = cx.now;
        let defaults = &cx.config;
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
                    self.send(&response);
                    return Ok(Directive::Continue);
                }
                if let Err(e) = self.set_tls_listener(l) {
                    self.send(&proto::Response::failure(id, e, version));
                    return Ok(Directive::Continue);
                }
                listeners.add(
                    mio::net::TcpListener::from_std(listener),
                    l.address,
                    Rc::new(ListenerInfo::new(l, defaults)),
                );
            }
            Change::UpdateListener(l) => {
                if let Err(e) = self.set_tls_listener(l) {
                    self.send(&proto::Response::failure(id, e, version));
                    return Ok(Directive::Continue);
                }
                let new = Rc::new(ListenerInfo::new(l, defaults));
                if let Some(old) = listeners.update(l.address, new.clone()) {
                    self.send(&proto::Response::ok(id, version));
                    return Ok(Directive::ListenerUpdated { old, new });
                }
            }
            Change::RemoveListener(address) => {
                listeners.remove(*address, &cx.registry);
                self.tls.store.remove_listener(*address);
                self.tls_listeners.remove(address);
            }
            Change::AddCluster(c) => cx.upstream.add_cluster(c),
            Change::UpdateCluster(c) => cx.upstream.update_cluster(c, now),
            Change::RemoveCluster(c) => cx.upstream.remove_cluster(c),
            Change::AddBackend(b) => cx.upstream.add_backend(b, now),
            Change::UpdateBackend(b) => cx.upstream.update_backend(b),
            Change::RemoveBackend { key, drain_timeout } => {
                let removed = cx.upstream.remove_backend(key, &cx.registry);
                match removed {
                    Some((backend, live)) if live > 0 => {
                        let response = proto::Response::processing(id, "draining", version)
                            .with_content(drain_content(key, live));
                        self.send(&response);
                        self.drains.push(Drain {
                            request_id: id.clone(),
                            backend,
                            key: key.clone(),
                            deadline: now + drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
                        });
                        return Ok(Directive::Continue);
                    }
                    _ => {
                        let response =
                            proto::Response::ok(id, version).with_content(drain_content(key, 0));
                        self.send(&response);
                        return Ok(Directive::Continue);
                    }
                }
            }
            Change::AddFrontend(f) => {
                let seq = self.state.frontends.get(f).copied().unwrap_or(0);
                self.tls.store.add_frontend(f, seq);
                if let Some(cluster) = cx.upstream.cluster_key(&f.cluster) {
                    cx.router.insert(
                        f.listener,
                        f.hostname.as_deref(),
                        &f.path,
                        seq,
                        cluster,
                        RouteOptions::new(&f.options),
                    );
                }
            }
            Change::RemoveFrontend(f) => {
                if let Some(seq) = removed_seq {
                    self.tls.store.remove_frontend(f, seq);
                }
                if let Some(cluster) = cx.upstream.cluster_key(&f.cluster) {
                    cx.router.remove(
                        f.listener,
                        f.hostname.as_deref(),
                        &f.path,
                        cluster,
                        &RouteOptions::new(&f.options),
                    );
                }
            }
            Change::AddCertificate(c) => self.tls.store.add_certificate(c),
            Change::ReplaceCertificate { old, new } => {
                self.tls.store.replace_certificate(*old, new);
            }
            Change::RemoveCertificate(fp) => self.tls.store.remove_certificate(*fp),
            // Only the owner changed, which the state above now holds; the router and the
            // certificate store know routes by identity and sequence, both unchanged.
            Change::UpdateFrontend(_) => {}
        }
        self.send(&proto::Response::ok(id, version));
        Ok(Directive::Continue)
    }

    /// Turns drain progress and health changes into messages for the main process.
    pub fn flush_notices(&mut self, upstream: &mut Upstream) {
        if upstream.notices.is_empty() {
            return;
        }
        let version = self.state.version;
        let notices = std::mem::take(&mut upstream.notices);
        for notice in notices {
            match notice {
                Notice::Drain { backend, live } => {
                    let control = &mut *self;
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
                        worker_id: self.worker_id,
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
                    self.send(&response);
                }
            }
        }
    }

    /// The worker's metrics, as `QueryMetrics` answers them and statsd sends them.
    pub fn metrics(&self, cx: &Context, live: usize) -> proto::Metrics {
        report::report(cx, live, &self.state, std::time::SystemTime::now())
    }
}

fn drain_content(key: &BackendKey, live: u32) -> Content {
    Content::Drain(proto::DrainProgress {
        cluster_id: key.cluster.0.clone(),
        backend_id: key.id.0.clone(),
        live_connections: u64::from(live),
    })
}
