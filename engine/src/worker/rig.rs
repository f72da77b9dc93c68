//! A worker without its event loop, for unit tests of the protocols: a `Context`, a client
//! connection's `FrontIo` and the test's end of it, and backends the test answers by hand,
//! all on loopback sockets. The test plays the event loop: [`Rig::deliver`] polls and sets
//! readiness as `event_loop.rs` does, and time is the test's (`cx.now`), so a timeout fires
//! when the test moves the clock to a deadline, not when a timer runs out.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use weir_schema::{Backend, BackendId, BackendKey, Cluster, ClusterId, Protocol};

use super::buffer::BufferPool;
use super::context::{BufferWaiters, Context};
use super::front::{FrontIo, ListenerInfo, Transport};
use super::http::date::HttpDate;
use super::metrics::Metrics;
use super::router::{RouteOptions, Router};
use super::timer::Deadline;
use super::token::{decode_token, token_front, TokenKind};
use super::upstream::Upstream;
use crate::channel::WorkerConfig;

/// The route key of the listener the client came through (never bound: routes only).
pub const LISTENER: &str = "127.0.0.1:8080";
/// Bounds every wait of these tests.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A backend the test answers for by hand.
pub struct TestBackend {
    listener: TcpListener,
}

impl TestBackend {
    pub fn new() -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        TestBackend { listener }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// The connection the worker opened (it is in the accept queue already).
    pub fn accept(&self) -> TcpStream {
        let mut got = None;
        assert!(
            weir_testkit::wait_until(PATIENCE, || {
                got = self.listener.accept().ok();
                got.is_some()
            }),
            "the worker never connected"
        );
        let (stream, _) = got.unwrap();
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

/// An address where nothing listens: a connect to it is refused.
pub fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Reads until `bytes` have come (a head, say) or the peer closed.
pub fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(end.len()).any(|w| w == end) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}, after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    got
}

/// Reads what the client was sent until the proxy closed.
pub fn read_to_close(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// A listener of `protocol` with a cluster of `backends` behind it, without the event loop.
pub struct Rig {
    poll: Poll,
    events: Events,
    pub cx: Context,
    pub io: FrontIo,
    /// The test's end of the client connection.
    pub client: TcpStream,
    /// Readiness on idle pooled connections is not delivered (as if the request came first).
    pub hide_idle_events: bool,
    /// Readiness on backend connections is not delivered yet (readiness is only a hint).
    pub hide_backend_events: bool,
}

impl Rig {
    /// A worker context routing `app.test` on a listener of `protocol` to a cluster of
    /// `backends`, and one client connected to it.
    pub fn new(backends: &[SocketAddr], protocol: Protocol, config: WorkerConfig) -> Rig {
        let poll = Poll::new().unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let now = Instant::now();
        let mut cx = Context {
            now,
            date: HttpDate::new(SystemTime::now()),
            registry,
            pool: BufferPool::new(config.buffer_size, config.max_buffers),
            upstream: Upstream::new(
                SmallRng::seed_from_u64(7),
                config.backend_idle_timeout,
                config.max_idle_per_backend,
            ),
            router: Router::new(),
            metrics: Metrics::default(),
            config,
            stopping: false,
            buffer_waiters: BufferWaiters::default(),
        };
        let listener: SocketAddr = LISTENER.parse().unwrap();
        let cluster_id = ClusterId("app".to_owned());
        cx.upstream.add_cluster(&Cluster::new("app"));
        for (i, &address) in backends.iter().enumerate() {
            let backend = Backend {
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

        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let (server, peer) = front.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut stream = mio::net::TcpStream::from_std(server);
        cx.registry
            .register(
                &mut stream,
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
        };
        let io = FrontIo {
            key: 0,
            serial: 1,
            transport: Transport::Plain(stream),
            peer,
            deadline: Deadline::new(now + info.request_timeout),
            info: Rc::new(info),
            readable: false,
            read_closed: false,
            waiting_for_buffer: false,
        };
        Rig {
            poll,
            events: Events::with_capacity(64),
            cx,
            io,
            client,
            hide_idle_events: false,
            hide_backend_events: false,
        }
    }

    /// Readiness in, as the event loop sets it (polls for at most 10 ms).
    pub fn deliver(&mut self) {
        self.poll
            .poll(&mut self.events, Some(Duration::from_millis(10)))
            .unwrap();
        for event in self.events.iter() {
            let closed = event.is_read_closed() || event.is_error();
            let readable = event.is_readable() || closed;
            match decode_token(event.token().0) {
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
                    c.writable_seen |= event.is_writable();
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

/// A loopback listener whose accept queue is full: it drops SYNs, so a connect to it stays in
/// progress. Keep the guard alive as long as the address is used.
pub fn stuck_addr() -> (SocketAddr, (socket2::Socket, TcpStream)) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr: SocketAddr = socket.local_addr().unwrap().as_socket().unwrap();
    let fill = TcpStream::connect(addr).unwrap();
    (addr, (socket, fill))
}
