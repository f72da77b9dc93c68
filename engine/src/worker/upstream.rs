//! The worker's view of clusters and backends: balancing state, health, live request counts,
//! pools of idle keep-alive connections, and opening connections with bounded retries.
//!
//! Backend connections live in their own slab (`conns`), each with its own mio token. A pooled
//! idle connection therefore stays registered, and handing it to another session costs no
//! system call: only its `owner` changes. An event on an idle connection means the backend
//! closed it (or sent something unasked): it is closed and dropped from the pool at once, so it
//! is never handed out again. An idle connection also closes after the worker's
//! `backend_idle_timeout`: a deadline armed lazily in `idle_timers` (see [`super::timer`]), so
//! pooling a connection again and again costs a store, not a heap push, and the heap holds at
//! most about one entry per connection.
//!
//! A removed backend leaves rotation at once and its idle connections are closed; its entry
//! stays until its last request in flight finishes ([`Notice::Drain`] reports each step), so
//! that the `RemoveBackend` answer can count down to zero.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use rand::rngs::SmallRng;
use slab::Slab;
use weir_schema::{Backend, BackendKey, Cluster, ClusterId, HealthCheck};

use super::back_stream::BackStream;
use super::balancer::{Balancer, Candidate};
use super::health::{Health, Transition};
use super::metrics::{BackendStats, ClusterStats, UpstreamStats};
use super::timer::{Deadline, TimerKey, Timers};
use super::token::token_back;

/// Most backends one request tries before giving up (bounded further by the config).
pub const MAX_TRIED: usize = 8;

/// Something the main process must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A removed backend's live requests changed; at 0 the drain is over.
    Drain { backend: usize, live: u32 },
    Health {
        key: BackendKey,
        transition: Transition,
    },
}

/// A cluster as the worker runs it.
#[derive(Debug)]
pub struct ClusterRt {
    pub config: Cluster,
    pub balancer: Balancer,
    /// Backend slab keys, in rotation.
    pub members: Vec<usize>,
    /// Which cluster of this slab slot it is: a removed cluster's slot is reused by the next
    /// one added, and a session still holding the slot (a drained request retrying its
    /// connect) must not take it for the newcomer.
    pub generation: u64,
    pub stats: ClusterStats,
}

/// A backend as the worker runs it.
#[derive(Debug)]
pub struct BackendRt {
    pub config: Backend,
    pub cluster: usize,
    pub health: Health,
    /// Requests (or TCP pipes) in flight.
    pub active: u32,
    /// Idle keep-alive connections (conn slab keys), most recently used last.
    pub idle: Vec<usize>,
    /// Out of rotation, waiting for `active` to reach 0.
    pub removed: bool,
    pub requests: u64,
    pub connect_errors: u64,
    pub connections_opened: u64,
    pub stats: BackendStats,
    /// When the next active health check is due.
    pub next_check: Option<Instant>,
}

/// A connection to a backend.
#[derive(Debug)]
pub struct BackConn {
    pub stream: BackStream,
    pub backend: usize,
    /// The session using it; `None` while idle in the pool.
    pub owner: Option<usize>,
    pub connected: bool,
    /// Readiness seen since the last `WouldBlock` (edge-triggered).
    pub readable: bool,
    /// The backend closed its side (or the socket failed).
    pub read_closed: bool,
    pub writable_seen: bool,
    /// Tells this connection from a later one reusing its slab key (for stale timer entries).
    pub serial: u64,
    /// When it closes if it stays idle; meaningful only while it is in the pool.
    pub idle_deadline: Deadline,
}

/// A session's hold on a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub conn: usize,
    pub backend: usize,
    /// Taken from the idle pool rather than opened for this request.
    pub reused: bool,
}

/// Why no backend connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBackend {
    /// No backend is up (or the cluster has none): 503.
    NoneHealthy,
    /// Backends exist but every connect attempt failed: 502.
    ConnectFailed,
    /// This worker is out of file descriptors or local ports ([`super::shortage`]): 503, and
    /// no backend is blamed.
    LocalShortage,
}

/// The backends one request has tried, and how many attempts it made.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub cluster: usize,
    /// The cluster's [`ClusterRt::generation`] when the attempt began.
    generation: u64,
    tried: [usize; MAX_TRIED],
    tried_len: usize,
    pub failures: u32,
}

impl Attempt {
    fn new(cluster: usize, generation: u64) -> Attempt {
        Attempt {
            cluster,
            generation,
            tried: [usize::MAX; MAX_TRIED],
            tried_len: 0,
            failures: 0,
        }
    }

    fn has_tried(&self, backend: usize) -> bool {
        self.tried[..self.tried_len].contains(&backend)
    }

    /// Lets `backend` be tried again (a replay on a fresh connection to the same backend).
    pub fn forget(&mut self, backend: usize) {
        if let Some(i) = self.tried[..self.tried_len]
            .iter()
            .position(|&b| b == backend)
        {
            self.tried.copy_within(i + 1..self.tried_len, i);
            self.tried_len -= 1;
        }
    }

    fn record(&mut self, backend: usize) {
        if self.tried_len < MAX_TRIED && !self.has_tried(backend) {
            self.tried[self.tried_len] = backend;
            self.tried_len += 1;
        }
    }
}

/// Clusters, backends and their connections.
#[derive(Debug)]
pub struct Upstream {
    clusters: Slab<ClusterRt>,
    cluster_by_id: HashMap<ClusterId, usize>,
    backends: Slab<BackendRt>,
    backend_by_key: HashMap<BackendKey, usize>,
    conns: Slab<BackConn>,
    /// What the main process must hear, taken by the worker after each turn.
    pub notices: Vec<Notice>,
    stats: UpstreamStats,
    rng: SmallRng,
    candidates: Vec<Candidate>,
    /// Idle deadlines of pooled connections.
    idle_timers: Timers,
    idle_timeout: Duration,
    /// Most idle connections kept per backend (0: none are pooled).
    max_idle: usize,
    next_serial: u64,
    /// The generation the next cluster added gets.
    next_generation: u64,
    /// Where connects go instead of sockets (see [`Upstream::dial_in_memory`]).
    #[cfg(test)]
    net: Option<super::memory::Net>,
}

impl Upstream {
    pub fn new(rng: SmallRng, idle_timeout: Duration, max_idle: usize) -> Upstream {
        Upstream {
            clusters: Slab::new(),
            cluster_by_id: HashMap::new(),
            backends: Slab::new(),
            backend_by_key: HashMap::new(),
            conns: Slab::new(),
            notices: Vec::new(),
            stats: UpstreamStats::default(),
            rng,
            candidates: Vec::new(),
            idle_timers: Timers::new(),
            idle_timeout,
            max_idle,
            next_serial: 0,
            next_generation: 1,
            #[cfg(test)]
            net: None,
        }
    }

    /// Connects from now on go to `net`'s in-memory backends, not to sockets.
    #[cfg(test)]
    pub fn dial_in_memory(&mut self, net: super::memory::Net) {
        self.net = Some(net);
    }

    /// A non-blocking connect to `address`.
    #[cfg(not(test))]
    fn dial(&self, address: SocketAddr) -> io::Result<BackStream> {
        BackStream::connect(address)
    }

    #[cfg(test)]
    fn dial(&self, address: SocketAddr) -> io::Result<BackStream> {
        match &self.net {
            Some(net) => net.connect(address).map(BackStream::Memory),
            None => BackStream::connect(address),
        }
    }

    /// The slab key of cluster `id`, which routes point to.
    pub fn cluster_key(&self, id: &ClusterId) -> Option<usize> {
        self.cluster_by_id.get(id).copied()
    }

    /// The tries of one request to the cluster in slot `cluster` as it is now: every retry
    /// picks from that cluster, and from no other later added in its slot.
    pub fn attempt(&self, cluster: usize) -> Attempt {
        Attempt::new(
            cluster,
            self.clusters.get(cluster).map_or(0, |c| c.generation),
        )
    }

    /// Every backend, including removed ones still draining.
    pub fn backends(&self) -> impl Iterator<Item = &BackendRt> {
        self.backends.iter().map(|(_, b)| b)
    }

    /// The ids of a cluster and a backend by slab key, for an access line. Called while the
    /// session still holds its backend link, so the key cannot have been reused.
    pub fn names(
        &self,
        cluster: Option<usize>,
        backend: Option<usize>,
    ) -> (Option<&str>, Option<&str>) {
        (
            cluster
                .and_then(|c| self.clusters.get(c))
                .map(|c| c.config.id.0.as_str()),
            backend
                .and_then(|b| self.backends.get(b))
                .map(|b| b.config.key.id.0.as_str()),
        )
    }

    /// Every cluster.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterRt> {
        self.clusters.iter().map(|(_, c)| c)
    }

    pub fn stats(&self) -> UpstreamStats {
        self.stats
    }

    /// The counters of cluster `key` (a route's cluster), if it is still there.
    #[inline]
    pub fn cluster_stats(&mut self, key: usize) -> Option<&mut ClusterStats> {
        self.clusters.get_mut(key).map(|c| &mut c.stats)
    }

    /// The counters of backend `key` (a [`Link`]'s backend), if it is still there.
    #[inline]
    pub fn backend_stats(&mut self, key: usize) -> Option<&mut BackendStats> {
        self.backends.get_mut(key).map(|b| &mut b.stats)
    }

    /// A backend connection, by the key in its token or [`Link`].
    #[inline]
    pub fn conn_mut(&mut self, conn: usize) -> Option<&mut BackConn> {
        self.conns.get_mut(conn)
    }

    // ---- configuration -----------------------------------------------------------------------

    pub fn add_cluster(&mut self, cluster: &Cluster) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let key = self.clusters.insert(ClusterRt {
            balancer: Balancer::new(cluster.load_balancing),
            config: cluster.clone(),
            members: Vec::new(),
            generation,
            stats: ClusterStats::default(),
        });
        self.cluster_by_id.insert(cluster.id.clone(), key);
    }

    pub fn update_cluster(&mut self, cluster: &Cluster, now: Instant) {
        if let Some(&key) = self.cluster_by_id.get(&cluster.id) {
            let rt = &mut self.clusters[key];
            if rt.balancer.algorithm != cluster.load_balancing {
                rt.balancer = Balancer::new(cluster.load_balancing);
            }
            rt.config = cluster.clone();
            let first_check = cluster.health_check.as_ref().map(|_| now);
            for &b in &rt.members {
                let backend = &mut self.backends[b];
                backend.next_check = first_check;
                if first_check.is_none() {
                    if let Some(t) = backend.health.clear_checks() {
                        self.notices.push(Notice::Health {
                            key: backend.config.key.clone(),
                            transition: t,
                        });
                    }
                }
            }
        }
    }

    pub fn remove_cluster(&mut self, id: &ClusterId) {
        if let Some(key) = self.cluster_by_id.remove(id) {
            self.clusters.remove(key);
        }
    }

    pub fn add_backend(&mut self, backend: &Backend, now: Instant) {
        let Some(&cluster) = self.cluster_by_id.get(&backend.key.cluster) else {
            return;
        };
        let has_check = self.clusters[cluster].config.health_check.is_some();
        let key = self.backends.insert(BackendRt {
            config: backend.clone(),
            cluster,
            health: Health::new(),
            active: 0,
            idle: Vec::new(),
            removed: false,
            requests: 0,
            connect_errors: 0,
            connections_opened: 0,
            stats: BackendStats::default(),
            next_check: has_check.then_some(now),
        });
        self.backend_by_key.insert(backend.key.clone(), key);
        let rt = &mut self.clusters[cluster];
        rt.members.push(key);
        rt.balancer.reset();
    }

    pub fn update_backend(&mut self, backend: &Backend) {
        if let Some(&key) = self.backend_by_key.get(&backend.key) {
            self.backends[key].config = backend.clone();
        }
    }

    /// Takes a backend out of rotation and closes its idle connections. Returns its slab key
    /// and how many requests are still in flight to it (0: it is gone already).
    pub fn remove_backend(
        &mut self,
        key: &BackendKey,
        registry: &Registry,
    ) -> Option<(usize, u32)> {
        let slab_key = self.backend_by_key.remove(key)?;
        let backend = &mut self.backends[slab_key];
        backend.removed = true;
        let cluster = backend.cluster;
        let idle = std::mem::take(&mut backend.idle);
        let live = backend.active;
        if let Some(rt) = self.clusters.get_mut(cluster) {
            rt.members.retain(|&b| b != slab_key);
            rt.balancer.reset();
        }
        for conn in idle {
            self.close_conn(conn, registry);
        }
        if live == 0 {
            self.backends.remove(slab_key);
        }
        Some((slab_key, live))
    }

    // ---- choosing and connecting -------------------------------------------------------------

    /// A backend for `attempt`, honouring health, backups and what it already tried.
    fn pick(&mut self, attempt: &Attempt, now: Instant) -> Option<usize> {
        let cluster = self
            .clusters
            .get_mut(attempt.cluster)
            .filter(|c| c.generation == attempt.generation)?;
        self.candidates.clear();
        for &b in &cluster.members {
            let rt = &self.backends[b];
            self.candidates.push(Candidate {
                weight: rt.config.weight,
                active: rt.active,
                available: rt.health.is_available(now) && !attempt.has_tried(b),
                backup: rt.config.backup,
            });
        }
        let index = cluster.balancer.pick(&self.candidates, &mut self.rng)?;
        Some(cluster.members[index])
    }

    /// A connection for the next try of `attempt`: an idle pooled one when there is one (and
    /// `fresh_only` is not set), else a new non-blocking connect. Connections that fail at once
    /// count as failed tries; after `max_attempts` failures the answer is [`NoBackend`].
    pub fn connect(
        &mut self,
        attempt: &mut Attempt,
        owner: usize,
        fresh_only: bool,
        max_attempts: u32,
        now: Instant,
        registry: &Registry,
    ) -> Result<Link, NoBackend> {
        loop {
            if attempt.failures >= max_attempts.max(1) {
                return Err(NoBackend::ConnectFailed);
            }
            let Some(backend) = self.pick(attempt, now) else {
                return Err(if attempt.failures > 0 {
                    NoBackend::ConnectFailed
                } else {
                    NoBackend::NoneHealthy
                });
            };
            attempt.record(backend);
            if !fresh_only {
                if let Some(conn) = self.take_idle(backend) {
                    self.conns[conn].owner = Some(owner);
                    self.attach(backend);
                    self.stats.reused += 1;
                    return Ok(Link {
                        conn,
                        backend,
                        reused: true,
                    });
                }
            }
            match self.open(backend, owner, now, registry) {
                Ok(conn) => {
                    self.attach(backend);
                    self.stats.opened += 1;
                    return Ok(Link {
                        conn,
                        backend,
                        reused: false,
                    });
                }
                // Out of fds or ports here: another backend would fare no better, and this one
                // did nothing wrong.
                Err(e) if super::shortage::is_local_shortage(&e) => {
                    self.stats.local_shortages += 1;
                    return Err(NoBackend::LocalShortage);
                }
                Err(_) => {
                    attempt.failures += 1;
                    self.record_failure(backend, now);
                }
            }
        }
    }

    /// The most recently used idle connection of `backend` that is still usable. LIFO keeps
    /// a few connections warm and lets the rest age until the backend closes them.
    fn take_idle(&mut self, backend: usize) -> Option<usize> {
        while let Some(conn) = self.backends[backend].idle.pop() {
            // An idle connection that saw readiness was closed (or written to) by the backend.
            if self
                .conns
                .get(conn)
                .is_some_and(|c| !c.readable && !c.read_closed)
            {
                return Some(conn);
            }
            if self.conns.contains(conn) {
                self.conns.remove(conn);
            }
        }
        None
    }

    fn open(
        &mut self,
        backend: usize,
        owner: usize,
        now: Instant,
        registry: &Registry,
    ) -> io::Result<usize> {
        let address: SocketAddr = self.backends[backend].config.address;
        let mut stream = self.dial(address)?;
        let entry = self.conns.vacant_entry();
        registry.register(
            &mut stream,
            Token(token_back(entry.key())),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let key = entry.key();
        self.next_serial += 1;
        entry.insert(BackConn {
            stream,
            backend,
            owner: Some(owner),
            connected: false,
            readable: false,
            read_closed: false,
            writable_seen: false,
            serial: self.next_serial,
            idle_deadline: Deadline::new(now),
        });
        self.backends[backend].connections_opened += 1;
        Ok(key)
    }

    fn attach(&mut self, backend: usize) {
        let rt = &mut self.backends[backend];
        rt.active += 1;
        rt.requests += 1;
    }

    /// Whether a connecting link finished: `Some(Ok)` connected, `Some(Err)` failed, `None`
    /// still in progress.
    pub fn check_connect(&mut self, link: Link) -> Option<io::Result<()>> {
        let conn = self.conns.get_mut(link.conn)?;
        if conn.connected {
            return Some(Ok(()));
        }
        if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
            return Some(Err(e));
        }
        match conn.stream.peer_addr() {
            Ok(_) => {
                conn.connected = true;
                conn.stream.set_nodelay();
                Some(Ok(()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                if conn.readable {
                    // Readiness without a peer: the connect was refused.
                    Some(Err(io::ErrorKind::ConnectionRefused.into()))
                } else {
                    None
                }
            }
            Err(e) => Some(Err(e)),
        }
    }

    pub fn record_success(&mut self, backend: usize) {
        if let Some(rt) = self.backends.get_mut(backend) {
            if let Some(t) = rt.health.on_connect_success() {
                self.notices.push(Notice::Health {
                    key: rt.config.key.clone(),
                    transition: t,
                });
            }
        }
    }

    pub fn record_failure(&mut self, backend: usize, now: Instant) {
        self.stats.connect_errors += 1;
        if let Some(rt) = self.backends.get_mut(backend) {
            rt.connect_errors += 1;
            if let Some(t) = rt.health.on_connect_failure(now) {
                self.notices.push(Notice::Health {
                    key: rt.config.key.clone(),
                    transition: t,
                });
            }
        }
    }

    /// Ends a session's hold on a link: the connection goes back to the idle pool when
    /// `reusable` (and its backend is still in rotation), else it is closed. A pooled
    /// connection closes by itself `idle_timeout` after `now` unless it is used again.
    pub fn release(&mut self, link: Link, reusable: bool, now: Instant, registry: &Registry) {
        let pooled = reusable
            && self
                .backends
                .get(link.backend)
                .is_some_and(|b| !b.removed && b.idle.len() < self.max_idle)
            && self
                .conns
                .get(link.conn)
                .is_some_and(|c| c.connected && !c.read_closed);
        if pooled {
            if let Some(conn) = self.conns.get_mut(link.conn) {
                conn.owner = None;
                conn.readable = false;
                conn.idle_deadline.at = now + self.idle_timeout;
                let owner = TimerKey {
                    key: link.conn,
                    serial: conn.serial,
                };
                conn.idle_deadline.arm(&mut self.idle_timers, owner);
            }
            self.backends[link.backend].idle.push(link.conn);
        } else {
            self.close_conn(link.conn, registry);
        }
        self.detach(link.backend);
    }

    fn detach(&mut self, backend: usize) {
        let Some(rt) = self.backends.get_mut(backend) else {
            return;
        };
        rt.active = rt.active.saturating_sub(1);
        if rt.removed {
            let live = rt.active;
            self.notices.push(Notice::Drain { backend, live });
            if live == 0 {
                self.backends.remove(backend);
            }
        }
    }

    pub fn close_conn(&mut self, conn: usize, registry: &Registry) {
        if self.conns.contains(conn) {
            let mut c = self.conns.remove(conn);
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// An event on an idle pooled connection: the backend closed it or sent bytes nobody
    /// asked for. Either way it cannot carry a request any more.
    pub fn on_idle_event(&mut self, conn: usize, registry: &Registry) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.owner.is_some() {
            return;
        }
        // Readiness is only a hint: a peek tells an end of stream (0), an error, or unasked
        // bytes from a spurious wake-up (`WouldBlock`).
        let mut probe = [0u8; 1];
        let alive = matches!(c.stream.peek(&mut probe), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock);
        if alive && !c.read_closed {
            if let Some(c) = self.conns.get_mut(conn) {
                c.readable = false;
            }
            return;
        }
        self.stats.idle_lost += 1;
        self.drop_idle(conn, registry);
    }

    /// Closes a pooled connection and takes it out of its backend's pool.
    fn drop_idle(&mut self, conn: usize, registry: &Registry) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if let Some(rt) = self.backends.get_mut(c.backend) {
            rt.idle.retain(|&k| k != conn);
        }
        self.close_conn(conn, registry);
    }

    /// When the earliest idle deadline falls (the worker's poll must wake by then).
    pub fn next_idle_deadline(&self) -> Option<Instant> {
        self.idle_timers.next_deadline()
    }

    /// Closes the pooled connections that stayed idle past their deadline.
    pub fn expire_idle(&mut self, now: Instant, registry: &Registry) {
        while let Some(owner) = self.idle_timers.pop_due(now) {
            let Some(c) = self.conns.get_mut(owner.key) else {
                continue;
            };
            if c.serial != owner.serial {
                continue;
            }
            // A connection in use has a stale deadline: nothing to do until it is pooled again,
            // which arms it afresh.
            let due = c.idle_deadline.on_pop(now, &mut self.idle_timers, owner);
            if due && c.owner.is_none() {
                self.stats.idle_expired += 1;
                self.drop_idle(owner.key, registry);
            }
        }
    }

    /// The cluster's response timeout, connect timeout and health check.
    pub fn cluster_timeouts(&self, cluster: usize) -> (Option<Duration>, Option<Duration>) {
        self.clusters.get(cluster).map_or((None, None), |c| {
            (c.config.connect_timeout, c.config.response_timeout)
        })
    }

    /// Backends whose active health check is due, with their address and check settings.
    pub fn due_checks(&mut self, now: Instant, out: &mut Vec<(usize, SocketAddr, HealthCheck)>) {
        for (key, rt) in self.backends.iter_mut() {
            if rt.removed || rt.next_check.is_none_or(|at| at > now) {
                continue;
            }
            let Some(check) = self
                .clusters
                .get(rt.cluster)
                .and_then(|c| c.config.health_check.clone())
            else {
                rt.next_check = None;
                continue;
            };
            rt.next_check = Some(now + check.interval);
            out.push((key, rt.config.address, check));
        }
    }

    /// The result of one active check.
    pub fn record_check(&mut self, backend: usize, ok: bool) {
        let Some(rt) = self.backends.get_mut(backend) else {
            return;
        };
        let Some(check) = self
            .clusters
            .get(rt.cluster)
            .and_then(|c| c.config.health_check.as_ref())
        else {
            return;
        };
        if let Some(t) = rt
            .health
            .on_check(ok, check.healthy_threshold, check.unhealthy_threshold)
        {
            self.notices.push(Notice::Health {
                key: rt.config.key.clone(),
                transition: t,
            });
        }
    }
}
