//! The HTTP session driven state by state, without the event loop or sockets: the test plays
//! the event loop (it hands readiness on as `event_loop.rs` does, and drives), the client and
//! the backends, over in-memory connections (`worker/memory.rs`). Time is the test's: a
//! timeout fires when the test moves `cx.now` to the session's deadline and calls
//! `on_timeout`, so no test waits for a timer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::Duration;

use weir_schema::{Backend, BackendId, BackendKey, Cluster, ClusterId, Protocol};

use super::{Drive, HttpSession};
use crate::channel::WorkerConfig;
use crate::worker::buffer::Buf;
use crate::worker::dial::DialState;
use crate::worker::front::ListenerInfo;
use crate::worker::http::exchange::States;
use crate::worker::rig::{Answer, Net, Peer, Rig, TestBackend, TURNS};
use crate::worker::router::RouteOptions;

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// The rig and an HTTP session on its client connection.
struct Harness {
    rig: Rig,
    session: HttpSession,
}

impl Deref for Harness {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Rig {
        &mut self.rig
    }
}

impl Harness {
    fn new(net: &Net, backends: &[SocketAddr]) -> Harness {
        Harness::with_config(net, backends, WorkerConfig::default())
    }

    fn with_config(net: &Net, backends: &[SocketAddr], config: WorkerConfig) -> Harness {
        Harness {
            rig: Rig::new(net, backends, Protocol::Http, config),
            session: HttpSession::new(),
        }
    }

    /// Drives the session as the event loop does after readiness.
    fn drive(&mut self) -> Drive {
        let rig = &mut self.rig;
        self.session.drive(&mut rig.io, &mut rig.cx)
    }

    /// One turn of the event loop: readiness in, then the session driven.
    fn turn(&mut self) -> Drive {
        self.rig.deliver();
        self.drive()
    }

    /// Turns until `done` holds (bounded).
    fn until(&mut self, what: &str, done: impl Fn(&Harness) -> bool) -> Drive {
        for _ in 0..TURNS {
            let drive = self.turn();
            if done(self) {
                return drive;
            }
            assert!(
                drive == Drive::Wait,
                "never reached {what}: {drive:?}, phase {}, exchange {:?}",
                self.session.phase_name(),
                self.states()
            );
        }
        panic!(
            "never reached {what}: phase {}, exchange {:?}",
            self.session.phase_name(),
            self.states()
        );
    }

    /// Turns until the session stops waiting (bounded).
    fn until_not_waiting(&mut self, what: &str) -> Drive {
        for _ in 0..TURNS {
            let drive = self.turn();
            if drive != Drive::Wait {
                return drive;
            }
        }
        panic!("never reached {what}");
    }

    fn states(&self) -> Option<States> {
        self.session.exchange().map(|ex| ex.states())
    }

    fn response(&self) -> Option<&'static str> {
        self.states().map(|s| s.response)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.client.send(bytes);
    }

    /// Moves the clock to the session's deadline and lets it fire.
    fn time_out(&mut self) -> Drive {
        self.rig.jump_to_deadline();
        let rig = &mut self.rig;
        self.session.on_timeout(&mut rig.io, &mut rig.cx)
    }
}

/// What a backend connection received: one whole request head (and body) by now.
fn request(backend: &Peer) -> Vec<u8> {
    let got = backend.take();
    assert!(
        got.windows(4).any(|w| w == b"\r\n\r\n"),
        "no whole head: {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

/// What the client was sent, which must end with `end`.
fn answer(client: &Peer, end: &[u8]) -> Vec<u8> {
    let got = client.take();
    assert!(got.ends_with(end), "{:?}", String::from_utf8_lossy(&got));
    got
}

// ---- one exchange, state by state --------------------------------------------------------

#[test]
fn an_exchange_goes_connecting_awaiting_head_body_done_and_pools_its_connection() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    // The head is routed and the request sent once connected.
    h.until("the request sent", |h| {
        h.states().is_some_and(|s| {
            s.link == DialState::Connected && s.response == "awaiting" && s.request == "open"
        })
    });
    let b = backend.accept();
    assert!(request(&b).starts_with(b"GET /x HTTP/1.1\r\n"));
    // The deadline is the response timeout from the moment of connecting.
    assert_eq!(h.io.deadline.at, h.cx.now + h.cx.config.response_timeout);

    b.send(b"HTTP/1.1 200 OK\r\nContent-");
    h.until("a head begun", |h| h.response() == Some("head"));
    b.send(b"Length: 5\r\n\r\nhe");
    h.until("the body", |h| h.response() == Some("body"));
    b.send(b"llo");
    h.until("the exchange done", |h| h.session.phase_name() == "head");

    let answer = answer(&h.client, b"hello");
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    // The keep-alive connection waits for its next request at the front timeout.
    assert_eq!(h.io.deadline.at, h.cx.now + h.io.info.front_timeout);
    assert_eq!(h.session.served, 1);

    // The next request takes the pooled connection: connected at once, no new connect.
    h.send(GET);
    h.until("the second request sent", |h| {
        h.response() == Some("awaiting") && h.io.deadline.at > h.cx.now
    });
    assert_eq!(h.cx.upstream.stats().reused, 1);
    assert_eq!(h.cx.upstream.stats().opened, 1);
    request(&b);
    b.send(OK);
    h.until("the second exchange done", |h| h.session.served == 2);
}

#[test]
fn an_interim_answer_passes_through_before_the_final_one() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
    // An interim head does not end the head state: the final one is still to come.
    h.until("the interim head", |h| h.response() == Some("head"));
    let interim = answer(&h.client, b"\r\n\r\n");
    assert!(
        interim.starts_with(b"HTTP/1.1 103 Early Hints\r\n"),
        "{interim:?}"
    );
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
    assert!(answer(&h.client, b"hello").starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_response_head_trickling_in_byte_by_byte_is_parsed_in_linear_work() {
    use crate::worker::http::parser::RESPONSE_BYTES_PARSED;
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    // An 8 KiB head (within one buffer), then its body.
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n".to_vec();
    for i in 0.. {
        if head.len() > 8 * 1024 - 128 {
            break;
        }
        head.extend_from_slice(format!("X-Field-{i}: {}\r\n", "v".repeat(100)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    RESPONSE_BYTES_PARSED.with(|n| n.set(0));
    for &byte in &head {
        b.send(&[byte]);
        h.turn();
    }
    b.send(b"hello");
    h.until("the exchange done", |h| h.session.served == 1);
    let parsed = RESPONSE_BYTES_PARSED.with(|n| n.get());
    // Parsing after every read would look at about len²/2 bytes (33 million here).
    assert!(
        parsed <= 3 * head.len(),
        "{parsed} bytes parsed for a head of {}",
        head.len()
    );
    let got = answer(&h.client, b"hello");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    assert!(String::from_utf8_lossy(&got).contains("X-Field-60: vvv"));
}

#[test]
fn a_body_until_close_ends_with_the_backend_and_closes_the_client() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(b"HTTP/1.1 200 OK\r\n\r\nstream");
    h.until("the body", |h| h.response() == Some("body"));
    b.close();
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.ends_with("stream"), "{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
}

#[test]
fn a_truncated_body_closes_the_client() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
    h.until("the body", |h| h.response() == Some("body"));
    b.close();
    assert_eq!(h.until_not_waiting("the close"), Drive::Close);
}

// ---- connecting and retrying -------------------------------------------------------------

#[test]
fn a_refused_connect_is_retried_on_the_next_backend() {
    let net = Net::default();
    let live = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[net.backend(Answer::Refuse).addr(), live.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    assert_eq!(h.cx.metrics.retries, 1);
    assert_eq!(h.cx.upstream.stats().connect_errors, 1);
    let b = live.accept();
    request(&b);
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
    assert!(answer(&h.client, b"hello").starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_connect_timeout_is_retried_on_the_next_backend() {
    let net = Net::default();
    let stuck = net.backend(Answer::Hold).addr();
    let live = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[stuck, live.addr()]);

    h.send(GET);
    h.until("connecting", |h| {
        h.states().is_some_and(|s| s.link == DialState::Connecting)
    });
    assert_eq!(h.io.deadline.at, h.cx.now + h.cx.config.connect_timeout);
    // Still connecting on the next turns: only the timeout moves it.
    h.turn();
    assert_eq!(h.states().map(|s| s.link), Some(DialState::Connecting));

    assert_eq!(h.time_out(), Drive::Wait);
    assert_eq!(h.cx.metrics.retries, 1);
    assert_eq!(h.cx.upstream.stats().connect_errors, 1);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = live.accept();
    request(&b);
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
}

#[test]
fn when_every_connect_fails_the_client_gets_a_502() {
    let net = Net::default();
    let mut h = Harness::new(
        &net,
        &[
            net.backend(Answer::Refuse).addr(),
            net.backend(Answer::Refuse).addr(),
        ],
    );
    h.send(GET);
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
    assert_eq!(h.cx.upstream.stats().connect_errors, 2);
}

#[test]
fn a_cluster_without_backends_answers_the_listeners_503() {
    let net = Net::default();
    let mut h = Harness::new(&net, &[]);
    h.send(GET);
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.ends_with("no backend here"), "{answer}");
}

/// A first exchange leaves its connection pooled; the backend then closes it unseen.
fn with_stale_pooled_connection(second: &[u8]) -> (Harness, TestBackend) {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
    answer(&h.client, b"hello");
    h.hide_idle_events = true;
    b.close();
    h.send(second);
    h.until("the request on the pooled connection", |h| {
        h.cx.upstream.stats().reused == 1
    });
    (h, backend)
}

#[test]
fn a_request_on_a_stale_pooled_connection_is_replayed_on_a_fresh_one() {
    let (mut h, backend) = with_stale_pooled_connection(GET);
    h.until("the replay sent", |h| {
        h.cx.upstream.stats().opened == 2 && h.response() == Some("awaiting")
    });
    let fresh = backend.accept();
    request(&fresh);
    // The replay went out on a new connection.
    assert_eq!(h.cx.upstream.stats().reused, 1);
    assert_eq!(h.cx.upstream.stats().opened, 2);
    assert_eq!(h.cx.metrics.retries, 1);
    fresh.send(OK);
    h.until("the replayed exchange done", |h| h.session.served == 2);
    assert!(answer(&h.client, b"hello").starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_request_with_a_body_is_not_replayed() {
    let post = b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi";
    let (mut h, _backend) = with_stale_pooled_connection(post);
    h.until("closing", |h| h.session.phase_name() == "linger");
    assert_eq!(h.cx.metrics.retries, 0);
    let answer = h.client.take_to_close();
    assert!(answer.contains("HTTP/1.1 502 "), "{answer}");
}

// ---- timeouts ----------------------------------------------------------------------------

#[test]
fn a_backend_silent_past_the_response_timeout_gets_a_504() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    assert_eq!(h.time_out(), Drive::Wait);
    assert_eq!(h.session.phase_name(), "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 504 "), "{answer}");
}

#[test]
fn a_timeout_in_the_body_can_only_close() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nsome");
    h.until("the body", |h| h.response() == Some("body"));
    assert_eq!(h.time_out(), Drive::Close);
}

#[test]
fn a_request_head_slower_than_the_request_timeout_gets_a_408() {
    let net = Net::default();
    let mut h = Harness::new(&net, &[]);
    h.send(b"GET /x HTTP/1.1\r\nHo");
    h.until("the head begun", |h| h.session.front_in.is_some());
    assert_eq!(h.time_out(), Drive::Wait);
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
}

#[test]
fn an_idle_keep_alive_connection_closes_silently_at_its_timeout() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
    answer(&h.client, b"hello");
    assert_eq!(h.time_out(), Drive::Close);
}

#[test]
fn a_lingering_connection_closes_at_its_timeout() {
    let net = Net::default();
    let mut h = Harness::new(&net, &[]);
    h.send(GET);
    h.until("lingering", |h| h.session.phase_name() == "linger");
    assert_eq!(h.io.deadline.at, h.cx.now + super::LINGER);
    assert_eq!(h.time_out(), Drive::Close);
}

// ---- buffers, the request half, upgrades, clients that leave ------------------------------

#[test]
fn a_response_head_parks_without_a_buffer_and_goes_on_when_one_is_free() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let config = WorkerConfig {
        max_buffers: 4,
        ..WorkerConfig::default()
    };
    let mut h = Harness::with_config(&net, &[backend.addr()], config);
    // A POST's head is given back once sent: it is not kept for a replay.
    h.send(b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi");
    h.until("the request sent", |h| {
        h.response() == Some("awaiting") && h.cx.pool.in_use() <= 1
    });
    let b = backend.accept();
    assert!(b.take().ends_with(b"hi"));
    // Every buffer but one is taken: the answer can be read, not rewritten.
    let free = 4 - h.cx.pool.in_use();
    let held: Vec<Buf> = (1..free).map(|_| h.cx.pool.get().unwrap()).collect();
    b.send(OK);
    h.until("the head parked", |h| h.response() == Some("head parked"));
    assert!(h.io.waiting_for_buffer);
    for buf in held {
        h.cx.pool.put(buf);
    }
    // As the event loop does for a buffer waiter: drive it again, no readiness needed.
    h.io.waiting_for_buffer = false;
    assert_eq!(h.drive(), Drive::Wait);
    assert_eq!(h.session.served, 1);
    assert!(answer(&h.client, b"hello").starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_backend_that_stops_reading_after_answering_abandons_the_request() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n");
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    // It answers before the body has come...
    b.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nno");
    h.until("the early answer", |h| h.response() == Some("body"));
    // ...then resets the connection, which the worker sees first on a write.
    h.hide_backend_events = true;
    b.reset();
    h.send(&[b'x'; 1000]);
    h.until("the request abandoned", |h| {
        h.states().is_some_and(|s| s.request == "abandoned")
    });
    // The answer goes on regardless; its cut body can only close the client.
    h.hide_backend_events = false;
    h.io.readable = true;
    if let Some(c) = h.cx.upstream.conn_mut(0) {
        c.readable = true;
    }
    assert_eq!(h.until_not_waiting("the close"), Drive::Close);
}

#[test]
fn a_101_for_an_offered_protocol_upgrades_the_session() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nframe");
    assert_eq!(h.until_not_waiting("the upgrade"), Drive::Upgrade);
    let session = std::mem::take(&mut h.session);
    let parts = session.into_pipe_parts().unwrap();
    let (dial, down) = (parts.dial, parts.down);
    assert_eq!(dial.state(), DialState::Connected);
    let down = down.unwrap();
    assert!(down.pending().starts_with(b"HTTP/1.1 101 "));
    assert!(down.pending().ends_with(b"frame"));
    // The exchange ended at its 101: one latency sample, total and first byte.
    let cluster = h.cx.upstream.clusters().next().unwrap();
    assert_eq!(
        (cluster.stats.latency.count, cluster.stats.first_byte.count),
        (1, 1)
    );
    let backend = h.cx.upstream.backends().next().unwrap();
    assert_eq!(
        (backend.stats.latency.count, backend.stats.first_byte.count),
        (1, 1)
    );
}

#[test]
fn a_client_that_resets_while_its_request_is_at_the_backend_ends_the_exchange() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let _b = backend.accept();
    h.client.reset();
    assert_eq!(h.until_not_waiting("the reset noticed"), Drive::Close);
    assert_eq!(h.cx.metrics.client_aborts, 1);
}

#[test]
fn a_connect_timeout_with_no_backend_left_gets_a_502() {
    let net = Net::default();
    let stuck = net.backend(Answer::Hold).addr();
    let mut h = Harness::new(&net, &[stuck]);
    h.send(GET);
    h.until("connecting", |h| {
        h.states().is_some_and(|s| s.link == DialState::Connecting)
    });
    assert_eq!(h.time_out(), Drive::Wait);
    assert_eq!(h.session.phase_name(), "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
}

#[test]
fn a_retry_never_reaches_a_cluster_added_later_in_the_same_slot() {
    let net = Net::default();
    let stuck = net.backend(Answer::Hold).addr();
    let mut h = Harness::new(&net, &[stuck]);
    h.send(GET);
    h.until("connecting", |h| {
        h.states().is_some_and(|s| s.link == DialState::Connecting)
    });
    // While the connect hangs, its backend is drained and its cluster removed; the next
    // cluster added takes the freed slab slot.
    let app = ClusterId("app".to_owned());
    let slot = h.cx.upstream.cluster_key(&app).unwrap();
    let drained = BackendKey {
        cluster: app.clone(),
        id: BackendId("b0".to_owned()),
    };
    let registry = h.cx.registry.try_clone().unwrap();
    assert_eq!(
        h.cx.upstream
            .remove_backend(&drained, &registry)
            .map(|(_, live)| live),
        Some(1)
    );
    h.cx.upstream.remove_cluster(&app);
    let newcomer = net.backend(Answer::Accept);
    let now = h.cx.now;
    h.cx.upstream.add_cluster(&Cluster::new("newcomer"));
    let new_id = ClusterId("newcomer".to_owned());
    assert_eq!(h.cx.upstream.cluster_key(&new_id), Some(slot));
    h.cx.upstream.add_backend(
        &Backend {
            owner: None,
            key: BackendKey {
                cluster: new_id,
                id: BackendId("n0".to_owned()),
            },
            address: newcomer.addr(),
            weight: 100,
            backup: false,
        },
        now,
    );
    // The connect times out: the retry finds its cluster gone, not the newcomer.
    assert_eq!(h.time_out(), Drive::Wait);
    assert_eq!(newcomer.dialed(), 0, "the retry reached the newcomer");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
}

#[test]
fn a_backend_that_closes_in_the_middle_of_its_head_gets_a_502() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(b"HTTP/1.1 200 OK\r\nContent-");
    h.until("a head begun", |h| h.response() == Some("head"));
    b.close();
    h.until("closing", |h| h.session.phase_name() == "linger");
    // Bytes came, so the request is not replayed.
    assert_eq!(h.cx.metrics.retries, 0);
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
}

#[test]
fn a_101_the_client_did_not_ask_for_is_a_502() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
}

#[test]
fn a_client_that_only_half_closes_still_gets_its_answer() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    // `nc -N` and scripts end their side once the request is out.
    h.client.shutdown_write();
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
    assert_eq!(h.cx.metrics.client_aborts, 0);
    assert!(answer(&h.client, b"hello").starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_held_connect_sends_the_request_once_it_completes() {
    let net = Net::default();
    let slow = net.backend(Answer::Hold);
    let mut h = Harness::new(&net, &[slow.addr()]);
    h.send(GET);
    h.until("connecting", |h| {
        h.states().is_some_and(|s| s.link == DialState::Connecting)
    });
    let b = slow.accept();
    // Nothing goes out, and the clock is the connect timeout's, until the connect completes.
    for _ in 0..3 {
        assert_eq!(h.turn(), Drive::Wait);
    }
    assert!(b.take().is_empty());
    assert_eq!(h.io.deadline.at, h.cx.now + h.cx.config.connect_timeout);
    b.complete();
    h.until("the request sent", |h| {
        h.states()
            .is_some_and(|s| s.link == DialState::Connected && s.response == "awaiting")
    });
    assert!(request(&b).starts_with(b"GET /x HTTP/1.1\r\n"));
    assert_eq!(h.io.deadline.at, h.cx.now + h.cx.config.response_timeout);
    assert_eq!(h.cx.metrics.retries, 0);
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
}

#[test]
fn a_slow_client_gets_the_answer_as_it_reads() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    // The client takes 10 bytes at a time: each write stops at its window, and the rest
    // follows when the client has read (a writable event).
    h.client.set_window(Some(10));
    b.send(OK);
    let mut got = Vec::new();
    for _ in 0..TURNS {
        assert_eq!(h.turn(), Drive::Wait);
        let chunk = h.client.take();
        assert!(chunk.len() <= 10, "{} bytes past the window", chunk.len());
        got.extend(chunk);
        if h.session.served == 1 {
            break;
        }
        assert_eq!(h.response(), Some("body"));
    }
    assert_eq!(h.session.served, 1);
    assert!(got.len() > 30, "{got:?}");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    assert!(got.ends_with(b"\r\n\r\nhello"), "{got:?}");
}

// ---- the listener's limits ---------------------------------------------------------------

impl Harness {
    /// Gives the rig's listener these limits (as an `UpdateListener` would).
    fn with_limits(&mut self, body: Option<Duration>, send: Duration) {
        let info = ListenerInfo {
            request_body_timeout: body,
            send_timeout: send,
            ..(*self.io.info).clone()
        };
        self.rig.io.info = Rc::new(info);
    }
}

#[test]
fn a_body_slower_than_request_body_timeout_gets_a_408_however_steady() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.with_limits(Some(Duration::from_secs(1)), Duration::from_secs(60));
    let start = h.cx.now;
    h.send(b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nab");
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    assert_eq!(h.io.deadline.at, start + Duration::from_secs(1));
    // Body bytes are progress for the idle deadlines, not for the whole body's.
    h.cx.now += Duration::from_millis(500);
    h.send(b"c");
    assert_eq!(h.turn(), Drive::Wait);
    assert_eq!(h.io.deadline.at, start + Duration::from_secs(1));
    h.time_out();
    assert_eq!(h.cx.metrics.body_timeouts, 1);
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
}

#[test]
fn a_whole_body_is_not_held_to_request_body_timeout() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.with_limits(Some(Duration::from_secs(1)), Duration::from_secs(60));
    h.send(b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nab");
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    h.send(b"cde");
    assert_eq!(h.turn(), Drive::Wait);
    // Whole now: the backend's response timeout is the deadline again.
    assert_eq!(h.io.deadline.at, h.cx.now + h.cx.config.response_timeout);
    let b = backend.accept();
    assert!(request(&b).ends_with(b"\r\n\r\nabcde"));
    b.send(OK);
    h.until("the exchange done", |h| h.session.served == 1);
    assert_eq!(h.cx.metrics.body_timeouts, 0);
}

#[test]
fn a_client_that_stops_reading_is_closed_at_send_timeout() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.with_limits(None, Duration::from_secs(2));
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    // The client's window holds 100 bytes and it never reads them.
    h.client.set_window(Some(100));
    b.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    b.send(&[b'z'; 1000]);
    h.until("bytes waiting", |h| h.response() == Some("body"));
    assert_eq!(h.turn(), Drive::Wait);
    assert_eq!(h.io.deadline.at, h.cx.now + Duration::from_secs(2));
    assert_eq!(h.time_out(), Drive::Close);
    assert_eq!(h.cx.metrics.slow_reads, 1);
}

// ---- a route's options -------------------------------------------------------------------

impl Harness {
    /// Routes `app.test` on the rig's listener with `options` instead of the default ones.
    fn reroute(&mut self, options: RouteOptions) {
        let listener: SocketAddr = crate::worker::rig::LISTENER.parse().unwrap();
        let cluster = self
            .cx
            .upstream
            .cluster_key(&ClusterId("app".to_owned()))
            .unwrap();
        let router = &mut self.rig.cx.router;
        router.remove(
            listener,
            Some("app.test"),
            "/",
            cluster,
            &RouteOptions::default(),
        );
        router.insert(listener, Some("app.test"), "/", 2, cluster, options);
    }
}

fn hsts(value: &str) -> RouteOptions {
    RouteOptions {
        redirect_https: false,
        hsts: Some(Rc::from(value)),
    }
}

#[test]
fn a_route_with_hsts_puts_it_on_forwarded_answers_in_place_of_the_backends() {
    let net = Net::default();
    let backend = net.backend(Answer::Accept);
    let mut h = Harness::new(&net, &[backend.addr()]);
    h.reroute(hsts("max-age=600"));
    h.send(GET);
    h.until("the request sent", |h| h.response() == Some("awaiting"));
    let b = backend.accept();
    request(&b);
    b.send(
        b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 5\r\n\r\nhello",
    );
    h.until("the exchange done", |h| h.session.served == 1);
    let answer = String::from_utf8(answer(&h.client, b"hello")).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("\r\nStrict-Transport-Security: max-age=600\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("max-age=1\r\n"), "{answer}");
}

#[test]
fn a_route_with_hsts_puts_it_on_the_proxys_own_answers_on_that_route() {
    let net = Net::default();
    let refused = [
        net.backend(Answer::Refuse).addr(),
        net.backend(Answer::Refuse).addr(),
    ];
    let mut h = Harness::new(&net, &refused);
    h.reroute(hsts("max-age=600; preload"));
    h.send(GET);
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
    assert!(
        answer.contains("\r\nStrict-Transport-Security: max-age=600; preload\r\n"),
        "{answer}"
    );
}

#[test]
fn a_404_is_on_no_route_and_gets_no_hsts() {
    let net = Net::default();
    let mut h = Harness::new(&net, &[net.backend(Answer::Refuse).addr()]);
    h.reroute(hsts("max-age=600"));
    h.send(b"GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n");
    h.until("closing", |h| h.session.phase_name() == "linger");
    let answer = h.client.take_to_close();
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(!answer.contains("Strict-Transport-Security"), "{answer}");
}

#[test]
fn a_redirect_route_answers_301_keeps_the_connection_and_never_dials() {
    let net = Net::default();
    let mut h = Harness::new(&net, &[net.backend(Answer::Refuse).addr()]);
    h.reroute(RouteOptions {
        redirect_https: true,
        hsts: None,
    });
    h.send(b"GET /a/b?q=1 HTTP/1.1\r\nHost: App.Test:8080\r\n\r\n");
    h.until("answered", |h| h.session.served == 1);
    let answer = String::from_utf8(answer(&h.client, b"\r\n\r\n")).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nLocation: https://app.test/a/b?q=1\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nContent-Length: 0\r\n"), "{answer}");
    assert!(!answer.contains("Connection: close"), "{answer}");
    assert_eq!(h.session.phase_name(), "head");
    assert_eq!(h.cx.upstream.stats().opened, 0);
    assert_eq!(h.cx.upstream.stats().connect_errors, 0);
}
