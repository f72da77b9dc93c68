//! A worker without its event loop or sockets, for unit tests of the protocols: a `Context`,
//! a client connection's `FrontIo` over an in-memory stream and the test's end of it, and
//! in-memory backends the test answers by hand ([`super::memory`]). The test plays the event
//! loop: [`Rig::deliver`] hands readiness on as `event_loop.rs` does, and time is the test's
//! (`cx.now`), so a timeout fires when the test moves the clock to a deadline, not when a
//! timer runs out.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use mio::event::Source;
use mio::{Interest, Poll, Token};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use weir_schema::{Backend, BackendId, BackendKey, Cluster, ClusterId, Protocol};

use super::buffer::BufferPool;
use super::context::{BufferWaiters, Context};
use super::front::{FrontIo, ListenerInfo, Transport, Underscores};
use super::http::date::HttpDate;
use super::metrics::Metrics;
use super::router::{RouteOptions, Router};
use super::timer::Deadline;
use super::token::{decode_token, token_front, TokenKind};
use super::upstream::Upstream;
use crate::channel::WorkerConfig;

pub use super::memory::{Answer, Net, Peer, TestBackend};

/// The route key of the listener the client came through (never bound: routes only).
pub const LISTENER: &str = "127.0.0.1:8080";
/// Bounds every loop of these tests: more turns than any exchange here needs, since nothing
/// happens between turns that the test does not do itself.
pub const TURNS: usize = 64;

/// A listener of `protocol` with a cluster of backends behind it, without the event loop.
pub struct Rig {
    /// Owns the registry's poll; nothing is registered with it.
    _poll: Poll,
    pub net: Net,
    pub cx: Context,
    pub io: FrontIo,
    /// The test's end of the client connection.
    pub client: Peer,
    /// Readiness on idle pooled connections is not delivered (as if the request came first).
    pub hide_idle_events: bool,
    /// Readiness on backend connections is not delivered yet (readiness is only a hint).
    pub hide_backend_events: bool,
}

impl Rig {
    /// A worker context routing `app.test` on a listener of `protocol` to a cluster of the
    /// `backends` of `net`, and one client connected to it.
    pub fn new(
        net: &Net,
        backends: &[SocketAddr],
        protocol: Protocol,
        config: WorkerConfig,
    ) -> Rig {
        let poll = Poll::new().unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let now = Instant::now();
        let mut upstream = Upstream::new(
            SmallRng::seed_from_u64(7),
            config.backend_idle_timeout,
            config.max_idle_per_backend,
        );
        upstream.dial_in_memory(net.clone());
        let mut cx = Context {
            now,
            date: HttpDate::new(SystemTime::now()),
            registry,
            pool: BufferPool::new(config.buffer_size, config.max_buffers),
            upstream,
            router: Router::new(),
            metrics: Metrics::default(),
            access_log: crate::worker::access_log::AccessLog::default(),
            request_ids: crate::worker::request_id::RequestIds::new(),
            config,
            stopping: false,
            buffer_waiters: BufferWaiters::default(),
        };
        let listener: SocketAddr = LISTENER.parse().unwrap();
        let cluster_id = ClusterId("app".to_owned());
        cx.upstream.add_cluster(&Cluster::new("app"));
        for (i, &address) in backends.iter().enumerate() {
            let backend = Backend {
                owner: None,
                key: BackendKey {
                    cluster: cluster_id.clone(),
                    id: BackendId(format!("b{i}")),
                },
                address,
                weight: 100,
                backup: false,
            };
            cx.upstream.add_backend(&backend, now);
        }
        let cluster = cx.upstream.cluster_key(&cluster_id).unwrap();
        let host = (protocol != Protocol::Tcp).then_some("app.test");
        cx.router
            .insert(listener, host, "/", 1, cluster, RouteOptions::default());

        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let (stream, client) = net.client(peer);
        let mut transport = Transport::Memory(stream);
        transport
            .register(
                &cx.registry,
                Token(token_front(0)),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        let info = ListenerInfo {
            address: listener,
            protocol,
            port: 8080,
            front_timeout: Duration::from_secs(60),
            tunnel_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            max_request_body: None,
            answer_404: None,
            answer_503: Some(Rc::from("no backend here")),
            underscores: Underscores::Drop,
            max_connections_per_ip: None,
            max_requests_per_connection: 1000,
            request_body_timeout: None,
            send_timeout: Duration::from_secs(60),
            request_id_header: None,
        };
        let io = FrontIo {
            key: 0,
            serial: 1,
            transport,
            peer,
            deadline: Deadline::new(now + info.request_timeout),
            info: Rc::new(info),
            readable: false,
            read_closed: false,
            waiting_for_buffer: false,
            ip_slot: None,
        };
        Rig {
            _poll: poll,
            net: net.clone(),
            cx,
            io,
            client,
            hide_idle_events: false,
            hide_backend_events: false,
        }
    }

    /// Readiness in, as the event loop sets it.
    pub fn deliver(&mut self) {
        for (token, event) in self.net.take_events() {
            let closed = event.read_closed || event.error;
            let readable = event.readable || closed;
            match decode_token(token.0) {
                TokenKind::Front(_) => {
                    self.io.readable |= readable;
                    self.io.read_closed |= closed;
                }
                TokenKind::Back(conn) => {
                    let Some(c) = self.cx.upstream.conn_mut(conn) else {
                        continue;
                    };
                    if c.owner.is_none() {
                        if !self.hide_idle_events {
                            c.readable |= readable;
                            c.read_closed |= closed;
                            self.cx.upstream.on_idle_event(conn, &self.cx.registry);
                        }
                        continue;
                    }
                    if self.hide_backend_events {
                        continue;
                    }
                    c.readable |= readable;
                    c.read_closed |= closed;
                    c.writable_seen |= event.writable;
                }
                _ => {}
            }
        }
    }

    /// Moves the clock to the session's deadline.
    pub fn jump_to_deadline(&mut self) {
        self.cx.now = self.io.deadline.at;
    }
}
