//! The worker's HTTP proxying, driven in-process over its real channel.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::TestWorker;
use weir_testkit::{
    connect, http_get, http_raw, read_answer, read_answer_to_head, wait_until, Backend,
};

#[test]
fn proxies_a_get_and_adds_forwarding_headers() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("shop.test", &[&backend]);
    let answer = http_get(listener, "shop.test", "/hello").unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.text(), "alpha");
    let seen = backend.last_seen();
    assert!(
        seen.head.starts_with("GET /hello HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-port"),
        Some(listener.port().to_string().as_str())
    );
    assert!(seen
        .header("forwarded")
        .is_some_and(|f| f.contains("for=127.0.0.1")));
    assert_eq!(seen.header("connection"), None, "hop-by-hop removed");
    w.stop();
}

#[test]
fn keep_alive_on_both_sides() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    for _ in 0..20 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut client).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "alpha");
    }
    assert_eq!(backend.request_count(), 20);
    assert_eq!(
        backend.connection_count(),
        1,
        "the backend connection was reused"
    );
    assert_eq!(w.counter("connections.accepted"), 1);
}

#[test]
fn unknown_host_is_404_and_keeps_the_connection() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.status, 404);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 200);
}

#[test]
fn smuggling_is_rejected() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let answer = http_raw(
        listener,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(backend.request_count(), 0);
}

#[test]
fn chunked_request_and_response() {
    let backend = Backend::with_handler(
        "chunky",
        Arc::new(|seen, stream| {
            let body = String::from_utf8_lossy(&seen.body).to_uppercase();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
            stream.write_all(answer.as_bytes()).is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "HELLO WORLD");
    assert_eq!(backend.last_seen().body, b"hello world");
}

#[test]
fn chunked_bodies_go_on_canonical_and_trailers_pass_both_ways() {
    // Padded sizes, extensions with BWS and quoted strings, and trailers: all valid, so
    // forwarded, in both directions, in canonical form: sizes without their zeros, no
    // extensions, the trailers as sent.
    const BODY: &[u8] = b"00005 ; a = \"x;\\\"y\"\r\nHELLO\r\n0;last\r\n\
        X-Checksum: abc\r\nServer-Timing: db;dur=5 \r\n\r\n";
    let backend = Backend::with_handler(
        "trailers",
        Arc::new(|_, stream| {
            let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            stream.write_all(&[&head[..], BODY].concat()).is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005;a=\"b;c\";d\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.text(), "HELLO");
    assert_eq!(backend.last_seen().body, b"hello");
    // Both bodies ended where they end: the connection goes on.
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).unwrap();
    let body_at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let canonical: &[u8] =
        b"5\r\nHELLO\r\n0\r\nX-Checksum: abc\r\nServer-Timing: db;dur=5 \r\n\r\n";
    assert_eq!(&raw[body_at..], canonical, "{}", raw.escape_ascii());
    assert_eq!(backend.request_count(), 2);
}

#[test]
fn a_response_smuggling_an_answer_in_its_trailers_is_cut_off() {
    // A client that ends the body at `0\r\n` would take the "trailers" for a second answer.
    let backend = Backend::answer_then_close(
        "smuggler",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains("Content-Length: 4"), "{raw}");
    assert!(!raw.contains("evil"), "{raw}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::with_handler(
        "echo-path",
        Arc::new(|seen, stream| {
            let path = seen.path().to_owned();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            );
            stream.write_all(answer.as_bytes()).is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes());
    }
    client.write_all(&batch).unwrap();
    for i in 0..5 {
        let answer = read_answer(&mut client).unwrap();
        assert_eq!(answer.text(), format!("/{i}"));
    }
}

#[test]
fn expect_100_continue_is_relayed() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let interim = read_answer(&mut client).unwrap();
    assert_eq!(interim.status, 100);
    client.write_all(b"hello").unwrap();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(backend.last_seen().body, b"hello");
}

#[test]
fn head_and_204_have_no_body() {
    let backend = Backend::with_handler(
        "nobody",
        Arc::new(|seen, stream| {
            let answer: &[u8] = if seen.head.starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            } else {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            };
            stream.write_all(answer).is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let head = read_answer_to_head(&mut client).unwrap();
    assert_eq!(head.header("content-length"), Some("1000"));
    client
        .write_all(b"DELETE / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 204);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 204);
}

#[test]
fn large_bodies_stream_both_ways() {
    const SIZE: usize = 16 * 1024 * 1024;
    let backend = Backend::with_handler(
        "big",
        Arc::new(|seen, stream| {
            let n = seen.body.len();
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", n * 2);
            stream.write_all(head.as_bytes()).is_ok()
                && stream.write_all(&seen.body).is_ok()
                && stream.write_all(&seen.body).is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut c = client.try_clone().unwrap();
        let body = body.clone();
        std::thread::spawn(move || {
            c.write_all(
                format!("PUT / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {SIZE}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            c.write_all(&body).unwrap();
        })
    };
    let answer = read_answer(&mut client).unwrap();
    writer.join().unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), SIZE * 2);
    assert!(answer.body[..SIZE] == body[..] && answer.body[SIZE..] == body[..]);
    // Nothing is left in flight: every buffer went back.
    assert!(wait_until(std::time::Duration::from_secs(5), || w
        .counter("buffers.in_use")
        == 0));
}

#[test]
fn read_until_close_response_closes_the_client() {
    let backend = Backend::answer_then_close("eof", b"HTTP/1.1 200 OK\r\n\r\nuntil close");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let answer = http_raw(listener, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").unwrap();
    assert_eq!(answer.text(), "until close");
    assert_eq!(answer.header("connection"), Some("close"));
}

#[test]
fn routing_exact_wildcard_prefix_and_newest() {
    let (a, b, c, d) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
        Backend::start("d"),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    for (id, backend) in [("ca", &a), ("cb", &b), ("cc", &c), ("cd", &d)] {
        w.add_cluster(TestWorker::cluster(id));
        w.add_backend(id, backend.name.as_str(), backend.addr);
    }
    w.add_frontend(listener, "shop.test", "/", "ca");
    w.add_frontend(listener, "shop.test", "/api", "cb");
    w.add_frontend(listener, "*.shop.test", "/", "cc");
    assert_eq!(http_get(listener, "shop.test", "/x").unwrap().text(), "a");
    assert_eq!(
        http_get(listener, "SHOP.test:8080", "/api/v1")
            .unwrap()
            .text(),
        "b"
    );
    assert_eq!(http_get(listener, "eu.shop.test", "/").unwrap().text(), "c");
    // Newest wins among equal routes.
    w.add_frontend(listener, "shop.test", "/", "cd");
    assert_eq!(http_get(listener, "shop.test", "/x").unwrap().text(), "d");
    w.call(weir_schema::proto::request::Kind::RemoveFrontend(
        TestWorker::frontend(listener, "shop.test", "/", "cd"),
    ));
    assert_eq!(http_get(listener, "shop.test", "/x").unwrap().text(), "a");
}

#[test]
fn stale_pooled_connection_is_replayed_on_a_fresh_one() {
    // Each connection answers its first request and keeps the connection open, then reads the
    // second request and closes without a byte: the keep-alive race where the backend closes
    // an idle connection just as the proxy reuses it. The pooled connection is known to be
    // stale when it is reused, so every request after the first must be replayed.
    let answered: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let seen_once = answered.clone();
    let backend = Backend::with_handler(
        "racy",
        Arc::new(move |_, stream| {
            let peer = stream.peer_addr().unwrap();
            if !seen_once.lock().unwrap().insert(peer) {
                return false;
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    for _ in 0..10 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut client).unwrap();
        assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    }
    // Requests 2..10 each went out on the pooled connection, met its close, and were sent
    // again on a fresh one.
    assert_eq!(w.counter("http.retries"), 9);
    assert_eq!(w.counter("backends.connections_reused"), 9);
    assert_eq!(backend.connection_count(), 10);
    assert_eq!(backend.request_count(), 19);
}

/// A POST is not safe to repeat: on a stale pooled connection it gets a 502, never a replay.
#[test]
fn stale_pooled_connection_is_not_replayed_for_a_post() {
    let answered: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let seen_once = answered.clone();
    let backend = Backend::with_handler(
        "racy",
        Arc::new(move |_, stream| {
            let peer = stream.peer_addr().unwrap();
            if !seen_once.lock().unwrap().insert(peer) {
                return false;
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_ok()
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 200);
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 502);
    assert_eq!(w.counter("http.retries"), 0);
    assert_eq!(backend.request_count(), 2);
}

#[test]
fn idle_keep_alive_connections_hold_no_buffer() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = connect(listener);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        assert_eq!(read_answer(&mut client).unwrap().status, 200);
        clients.push(client);
    }
    assert_eq!(w.counter("connections.active"), 50);
    assert_eq!(w.counter("buffers.in_use"), 0);
}

#[test]
fn http10_clients_are_served_and_closed() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let answer = http_raw(listener, b"GET /old HTTP/1.0\r\nHost: a.test\r\n\r\n").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "alpha");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(backend
        .last_seen()
        .head
        .starts_with("GET /old HTTP/1.0\r\n"));
    // With keep-alive the connection stays.
    let mut client = connect(listener);
    for _ in 0..3 {
        client
            .write_all(b"GET / HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut client).unwrap();
        assert_eq!(answer.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn status_state_and_unknown_commands() {
    use weir_schema::proto::{self, request::Kind, response::Content, ResponseStatus};
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    let _idle = connect(listener);
    let status = w.call(Kind::Status(proto::Status {}));
    let Some(Content::StatusReport(report)) = status.content else {
        panic!("{status:?}");
    };
    assert_eq!(report.workers.len(), 1);
    assert_eq!(report.workers[0].pid, std::process::id());
    assert_eq!(report.workers[0].state_version, 4);
    let state = w.call(Kind::QueryState(proto::QueryState::default()));
    let Some(Content::State(snapshot)) = state.content else {
        panic!("{state:?}");
    };
    assert_eq!((snapshot.listeners.len(), snapshot.frontends.len()), (1, 1));
    let answers = w.call_all(Kind::SaveState(proto::SaveState {
        path: "/nonexistent".into(),
    }));
    assert_eq!(answers[0].status(), ResponseStatus::Failure);
    assert_eq!(answers[0].message, "not a worker command");
    // A change the state refuses is a FAILURE and changes nothing.
    let dup = w.call_all(Kind::AddCluster(TestWorker::cluster("c")));
    assert_eq!(dup[0].status(), ResponseStatus::Failure);
    assert_eq!(dup[0].state_version, 4);
}

#[test]
fn listener_accepts_only_once_it_has_a_route() {
    use weir_schema::proto::request::Kind;
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(TestWorker::cluster("c"));
    w.add_backend("c", "alpha", backend.addr);
    // The connection waits in the accept queue instead of getting a 404...
    let mut early = connect(listener);
    early
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(w.counter("connections.accepted"), 0);
    // ...and is served once the route is in.
    w.call(Kind::AddFrontend(TestWorker::frontend(
        listener, "a.test", "/", "c",
    )));
    let answer = read_answer(&mut early).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "alpha");
}

/// A rustls client trusting only `root`, over a blocking socket.
fn tls_client(
    addr: std::net::SocketAddr,
    root: &rcgen::Certificate,
    sni: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der().clone()).unwrap();
    // Deprecated since rustls 0.23.48 for its lack of post-quantum groups, which a test
    // client does not need.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = connect(addr);
    rustls::StreamOwned::new(conn, sock)
}

/// An https listener with one certificate for `host`, routed to `backend`.
fn https_worker(
    w: &mut TestWorker,
    host: &str,
    backend: &Backend,
) -> (SocketAddr, rcgen::Certificate) {
    https_worker_with(
        w,
        host,
        backend,
        weir_schema::proto::ListenerSettings::default(),
    )
}

fn https_worker_with(
    w: &mut TestWorker,
    host: &str,
    backend: &Backend,
    settings: weir_schema::proto::ListenerSettings,
) -> (SocketAddr, rcgen::Certificate) {
    use weir_schema::proto;
    let listener = w.add_listener_with(proto::ListenerProtocol::Https, settings);
    let made = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let certificate = proto::Certificate {
        owner: String::new(),
        name: "a".into(),
        certificate_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
    };
    let fingerprint = weir_schema::Certificate::try_from(&certificate)
        .unwrap()
        .fingerprint;
    assert_eq!(
        w.call(proto::request::Kind::AddCertificate(certificate))
            .status,
        proto::ResponseStatus::Ok as i32
    );
    w.add_cluster(TestWorker::cluster("c"));
    w.add_backend("c", "alpha", backend.addr);
    let mut frontend = TestWorker::frontend(listener, host, "/", "c");
    frontend.certificate = fingerprint.to_hex();
    w.call(proto::request::Kind::AddFrontend(frontend));
    (listener, made.cert)
}

#[test]
fn https_requests_are_served_over_tls_and_forwarded_as_https() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let (listener, root) = https_worker(&mut w, "a.test", &backend);
    let mut client = tls_client(listener, &root, "a.test");
    // Two requests on one connection: the session stays Http over TLS after the first.
    for _ in 0..2 {
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut client).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "alpha");
    }
    let seen = backend.last_seen();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert!(
        seen.header("forwarded")
            .is_some_and(|f| f.contains("proto=https")),
        "{:?}",
        seen.header("forwarded")
    );
    assert_eq!(w.counter("tls.handshakes"), 1);
    assert_eq!(w.counter("tls.handshake_failures"), 0);
    // An idle TLS keep-alive connection holds no pool buffer.
    assert_eq!(w.counter("buffers.in_use"), 0);
}

#[test]
fn failed_handshakes_are_counted_and_the_worker_goes_on() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let (listener, root) = https_worker(&mut w, "a.test", &backend);
    // A port probe (connect, then close without a byte) is no failed handshake.
    drop(connect(listener));
    // An unknown name, then plain HTTP on the TLS port.
    let mut unknown = tls_client(listener, &root, "b.test");
    assert!(unknown
        .write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
        .and_then(|()| unknown.flush())
        .and_then(|()| read_answer(&mut unknown).map(|_| ()))
        .is_err());
    let mut plain = connect(listener);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let _ = weir_testkit::closed_by_peer(&mut plain);
    assert!(weir_testkit::wait_until(
        std::time::Duration::from_secs(5),
        || { w.counter("tls.handshake_failures") == 2 }
    ));
    let mut good = tls_client(listener, &root, "a.test");
    good.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut good).unwrap().status, 200);
    assert_eq!(
        w.counter("tls.handshake_failures"),
        2,
        "the probe was counted"
    );
    assert_eq!(w.counter("tls.handshakes"), 1);
}

#[test]
fn a_stalled_handshake_is_closed_at_the_request_timeout() {
    let backend = Backend::start("alpha");
    let mut w = TestWorker::with_defaults();
    let settings = weir_schema::proto::ListenerSettings {
        request_timeout_ms: 300,
        ..Default::default()
    };
    let (listener, _) = https_worker_with(&mut w, "a.test", &backend, settings);
    // Half a TLS record header: a ClientHello that never completes.
    let mut stalled = connect(listener);
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let started = std::time::Instant::now();
    weir_testkit::closed_by_peer(&mut stalled).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert!(weir_testkit::wait_until(
        std::time::Duration::from_secs(5),
        || w.counter("tls.handshake_failures") == 1
    ));
    assert_eq!(w.counter("tls.handshakes"), 0);
}
