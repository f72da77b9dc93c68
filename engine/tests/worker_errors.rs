//! The worker's own answers and timeouts: 400, 404, 408, 413, 431, 502, 503, 504, idle
//! keep-alive and connect timeouts.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::TestWorker;
use weir_engine::channel::WorkerConfig;
use weir_schema::proto;
use weir_testkit::{connect, dead_addr, http_get, http_raw, read_answer, Backend, StuckListener};

#[test]
fn request_head_timeout_is_408() {
    let backend = Backend::start("a");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple_with(
        proto::ListenerSettings {
            request_timeout_ms: 200,
            ..Default::default()
        },
        "a.test",
        &[&backend],
    );
    let mut client = connect(listener);
    client.write_all(b"GET / HTTP/1.1\r\nHost: a.te").unwrap();
    let started = Instant::now();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn idle_keep_alive_connection_is_closed_after_front_timeout() {
    let backend = Backend::start("a");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple_with(
        proto::ListenerSettings {
            front_timeout_ms: 400,
            ..Default::default()
        },
        "a.test",
        &[&backend],
    );
    let mut client = connect(listener);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed without an answer");
    // The timer started before `started` (when the answer left), by as long as this thread
    // took to be scheduled and read it: half the timeout is the margin.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn body_over_the_limit_is_413() {
    let backend = Backend::start("a");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple_with(
        proto::ListenerSettings {
            max_request_body: 10,
            ..Default::default()
        },
        "a.test",
        &[&backend],
    );
    let answer = http_raw(
        listener,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 413);
    let chunked = http_raw(
        listener,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n01234567890123456789012345678901\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(chunked.status, 413);
    let small = http_raw(
        listener,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    assert_eq!(small.status, 200);
}

#[test]
fn lowered_body_limit_applies_to_an_open_keep_alive_connection() {
    let backend = Backend::start("a");
    let mut w = TestWorker::with_defaults();
    let settings = proto::ListenerSettings {
        max_request_body: 1000,
        ..Default::default()
    };
    let listener = w.simple_with(settings.clone(), "a.test", &[&backend]);
    let post = format!(
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n{}",
        "x".repeat(100)
    );
    let mut client = connect(listener);
    client.write_all(post.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 200);

    w.call(proto::request::Kind::UpdateListener(proto::Listener {
        owner: String::new(),
        address: listener.to_string(),
        protocol: proto::ListenerProtocol::Http as i32,
        name: String::new(),
        settings: Some(proto::ListenerSettings {
            max_request_body: 10,
            ..settings
        }),
    }));
    // The same connection, accepted under the old limit, gets the new one.
    client.write_all(post.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 413);
    assert_eq!(backend.request_count(), 1);
}

#[test]
fn head_larger_than_a_buffer_is_431() {
    let backend = Backend::start("a");
    let mut w = TestWorker::start(WorkerConfig {
        buffer_size: 4096,
        ..WorkerConfig::default()
    });
    let listener = w.simple("a.test", &[&backend]);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(5000)
    );
    assert_eq!(http_raw(listener, big.as_bytes()).unwrap().status, 431);
}

#[test]
fn refused_backend_is_502_and_no_backend_is_503() {
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(TestWorker::cluster("dead"));
    w.add_backend("dead", "d", dead_addr());
    w.add_frontend(listener, "dead.test", "/", "dead");
    w.add_cluster(TestWorker::cluster("empty"));
    w.add_frontend(listener, "empty.test", "/", "empty");
    let answer = http_get(listener, "dead.test", "/").unwrap();
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(answer.text().contains("Bad Gateway"));
    // The backend is now down and in backoff: no healthy backend.
    assert_eq!(http_get(listener, "dead.test", "/").unwrap().status, 503);
    assert_eq!(http_get(listener, "empty.test", "/").unwrap().status, 503);
    assert!(w.counter("backends.connect_errors") >= 1);
}

#[test]
fn garbage_from_the_backend_is_502() {
    let backend = Backend::answer_then_close(
        "garbage",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&backend]);
    assert_eq!(http_get(listener, "a.test", "/").unwrap().status, 502);
}

#[test]
fn silent_backend_is_504() {
    let backend = Backend::with_handler(
        "silent",
        Arc::new(|_, _| {
            std::thread::sleep(Duration::from_secs(3));
            false
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(proto::Cluster {
        id: "c".into(),
        response_timeout_ms: 200,
        ..Default::default()
    });
    w.add_backend("c", "s", backend.addr);
    w.add_frontend(listener, "a.test", "/", "c");
    let started = Instant::now();
    assert_eq!(http_get(listener, "a.test", "/").unwrap().status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn connect_timeout_moves_on_to_another_backend() {
    let stuck = StuckListener::start();
    let good = Backend::start("good");
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(proto::Cluster {
        id: "c".into(),
        connect_timeout_ms: 150,
        ..Default::default()
    });
    w.add_backend("c", "a-stuck", stuck.addr);
    w.add_backend("c", "b-good", good.addr);
    w.add_frontend(listener, "a.test", "/", "c");
    for _ in 0..4 {
        let answer = http_get(listener, "a.test", "/").unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "good");
    }
}

/// The cluster's `connect_timeout` bounds the wait, not the worker's default: with a 10 s
/// default and a 200 ms cluster value, a backend whose SYNs are dropped is given up on in
/// about 200 ms.
#[test]
fn cluster_connect_timeout_bounds_the_wait() {
    let stuck = StuckListener::start();
    let mut w = TestWorker::start(WorkerConfig {
        connect_timeout: Duration::from_secs(10),
        ..WorkerConfig::default()
    });
    let listener = w.add_http_listener();
    w.add_cluster(proto::Cluster {
        id: "c".into(),
        connect_timeout_ms: 200,
        ..Default::default()
    });
    w.add_backend("c", "stuck", stuck.addr);
    w.add_frontend(listener, "a.test", "/", "c");
    let started = Instant::now();
    let answer = http_get(listener, "a.test", "/").unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 502, "{elapsed:?} {answer:?}");
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(w.counter("backends.connect_errors"), 1);
}

/// At the cap with no connection idle (an idle one would be closed to make room: see
/// tests/dataplane_limits.rs), a new client gets a fast 503.
#[test]
fn over_the_connection_cap_is_a_fast_503() {
    let backend = Backend::start("a");
    let mut w = TestWorker::start(WorkerConfig {
        max_connections: 1,
        ..WorkerConfig::default()
    });
    let listener = w.simple("a.test", &[&backend]);
    let mut first = connect(listener);
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut first).unwrap().status, 200);
    // Busy again: half of its next request is in (it holds a buffer for it).
    first.write_all(b"GET / HTTP/1.1\r\nHost: a").unwrap();
    assert!(weir_testkit::wait_until(Duration::from_secs(10), || w
        .counter("buffers.in_use")
        == 1));
    let second = http_get(listener, "a.test", "/").unwrap();
    assert_eq!(second.status, 503);
    assert_eq!(w.counter("connections.refused"), 1);
}

#[test]
fn custom_404_body() {
    let mut w = TestWorker::with_defaults();
    let listener = w.add_listener_with(
        proto::ListenerProtocol::Http,
        proto::ListenerSettings {
            answer_404: Some("nothing here".into()),
            ..Default::default()
        },
    );
    // A listener accepts once it has a route.
    w.add_cluster(TestWorker::cluster("c"));
    w.add_frontend(listener, "a.test", "/", "c");
    let answer = http_get(listener, "x.test", "/").unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(answer.text(), "nothing here");
}

#[test]
fn empty_buffer_pool_is_a_503_not_a_queue() {
    let backend = Backend::start("a");
    // One buffer: enough to read a request head, not to also write it to a backend.
    let mut w = TestWorker::start(WorkerConfig {
        max_buffers: 1,
        ..WorkerConfig::default()
    });
    let listener = w.simple("a.test", &[&backend]);
    let answer = http_get(listener, "a.test", "/").unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(backend.request_count(), 0);
}

/// A session the pool refused a buffer in the middle of an exchange is driven again as soon
/// as one comes back, not left to its timeout: with edge-triggered readiness, the answer it
/// left unread brings no new event.
#[test]
fn a_session_short_of_a_buffer_resumes_when_one_is_free() {
    // A backend that answers only when told to.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let backend = Backend::with_handler(
        "held",
        Arc::new(move |_req, stream| {
            let _ = wait.lock().unwrap().recv();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_ok()
        }),
    );
    let mut w = TestWorker::start(WorkerConfig {
        max_buffers: 3,
        ..WorkerConfig::default()
    });
    let listener = w.simple("a.test", &[&backend]);
    // The request reaches the backend and holds one buffer (its head, kept for a replay).
    let mut client = connect(listener);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert!(weir_testkit::wait_until(Duration::from_secs(10), || {
        backend.request_count() == 1
    }));
    // Two clients each hold a buffer with half a head.
    let mut hogs: Vec<_> = (0..2).map(|_| connect(listener)).collect();
    for hog in &mut hogs {
        hog.write_all(b"GET / HTTP/1.1\r\nHost: a.te").unwrap();
    }
    assert!(weir_testkit::wait_until(Duration::from_secs(10), || {
        w.counter("buffers.in_use") == 3
    }));
    // The answer comes, and finds no buffer to be read into.
    go.send(()).unwrap();
    assert!(weir_testkit::wait_until(Duration::from_secs(10), || {
        w.counter("buffers.exhausted") > 0
    }));
    // A hog leaves; its buffer goes back, and the request is answered at once (the response
    // timeout, 30 s, is beyond the client's read timeout).
    drop(hogs.pop());
    let started = Instant::now();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A client that resets its connection while its request is at a slow backend is noticed at
/// once: the backend connection and the buffers are let go, not held to the response timeout.
/// A client that only half-closes (FIN after its request) still gets its answer.
#[test]
fn a_client_that_resets_while_the_backend_thinks_is_let_go() {
    // A backend that never answers, and counts the connections the proxy closed on it.
    let let_go = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = let_go.clone();
    let slow = Backend::with_handler(
        "slow",
        Arc::new(move |_req, stream| {
            let mut rest = [0u8; 64];
            if matches!(stream.read(&mut rest), Ok(0)) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            false
        }),
    );
    let fast = Backend::start("fast");
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&slow]);
    w.add_cluster(TestWorker::cluster("f"));
    w.add_backend("f", "fast", fast.addr);
    w.add_frontend(listener, "fast.test", "/", "f");

    let client = connect(listener);
    (&client)
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert!(weir_testkit::wait_until(Duration::from_secs(10), || {
        slow.request_count() == 1
    }));
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    assert!(weir_testkit::wait_until(Duration::from_secs(5), || {
        let_go.load(std::sync::atomic::Ordering::SeqCst) == 1
    }));
    assert_eq!(w.counter("http.client_aborts"), 1);
    assert_eq!(w.counter("buffers.in_use"), 0);

    // Half-closed after a request, and after two pipelined ones: every answer comes.
    for requests in [1, 2] {
        let mut client = connect(listener);
        for _ in 0..requests {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: fast.test\r\n\r\n")
                .unwrap();
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        for _ in 0..requests {
            let answer = read_answer(&mut client).unwrap();
            assert_eq!((answer.status, answer.text().as_str()), (200, "fast"));
        }
    }
    assert_eq!(w.counter("http.client_aborts"), 1);
}
