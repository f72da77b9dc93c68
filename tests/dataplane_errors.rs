//! The proxy's own answers end to end: 400 (every request-smuggling shape), 404, 408, 413,
//! 431, 502, 503, 504, and every timeout (request head, idle keep-alive, connect, response).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::control::metric;
use util::{proxy_on_yaml, Desired, Proxy};
use weir_testkit::{
    connect, dead_addr, http_get, http_raw, read_answer, wait_until, Backend, Seen, StuckListener,
};

/// Starts a proxy on `yaml` (`{port}` is the listener's port) with optional daemon settings.
fn start(yaml: &str, daemon_toml: Option<&str>) -> (Desired, Proxy, SocketAddr) {
    let (desired, proxy, addr) = proxy_on_yaml(yaml, daemon_toml);
    // Every file routes `empty.test`, last, to a cluster without backends: once it answers
    // 503 rather than 404, all routes are in (the listener accepts a moment before).
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "empty.test", "/").is_ok_and(|a| a.status == 503)
    }));
    (desired, proxy, addr)
}

fn yaml(origin: SocketAddr, listener_extra: &str, cluster_extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
{listener_extra}
clusters:
  - id: app
{cluster_extra}
    backends:
      - id: app-1
        address: {origin}
  - id: empty
frontends:
  - listener: web
    hostname: app.test
    cluster: app
  - listener: web
    hostname: empty.test
    cluster: empty
"#
    )
}

#[test]
fn every_smuggling_shape_is_a_400_and_never_reaches_the_origin() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(&yaml(origin.addr, "", ""), None);
    assert!(wait_until(Duration::from_secs(10), || http_get(
        addr, "app.test", "/"
    )
    .is_ok_and(|a| a.status == 200)));
    let served = origin.request_count();
    let shapes: &[(&str, &[u8])] = &[
        ("CL + TE", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE + CL", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        ("differing CL", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("CL list", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4, 5\r\n\r\nabcde"),
        ("signed CL", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: +4\r\n\r\nabcd"),
        ("hex CL", b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0x4\r\n\r\nabcd"),
        ("TE not chunked last", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("TE unknown", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("chunk size with sign", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
        ("bad chunk extension", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n"),
        ("chunk extension without a name", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n"),
        ("chunk extension value not a token", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;a=<b>{c}\r\nhello\r\n0\r\n\r\n"),
        ("chunk extension of obs-text", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;\xff\xfe\r\nhello\r\n0\r\n\r\n"),
        ("chunk extension quote unterminated", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n"),
        ("request smuggled as trailers", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nGET /smug HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("obs-fold in trailers", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\n folded\r\n\r\n"),
        ("trailer not a field line", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngarbage line\r\n\r\n"),
        ("space before colon in trailers", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A : 1\r\n\r\n"),
        ("framing fields in trailers", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\n\r\n"),
        ("Host in trailers", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\nhOsT: evil.test\r\n\r\n"),
        ("chunk data too long", b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n b\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding : chunked\r\n\r\n"),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\rb\r\n\r\n"),
        ("bare LF", b"GET / HTTP/1.1\nHost: app.test\n\n"),
        ("control char", b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x07b\r\n\r\n"),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n"),
        ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
    ];
    for (name, request) in shapes {
        let answer = http_raw(addr, request).unwrap();
        assert_eq!(answer.status, 400, "{name}: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{name}");
    }
    assert_eq!(
        origin.request_count(),
        served,
        "a smuggling shape reached the origin"
    );
}

#[test]
fn no_route_is_404_and_no_backend_is_503() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(
        &yaml(origin.addr, "    answer_503: \"come back later\"", ""),
        None,
    );
    assert!(wait_until(Duration::from_secs(10), || http_get(
        addr,
        "nothing.test",
        "/"
    )
    .is_ok_and(|a| a.status == 404)));
    let answer = http_get(addr, "empty.test", "/").unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.text(), "come back later");
}

#[test]
fn request_head_timeout_is_408_and_idle_keep_alive_closes() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(
        &yaml(
            origin.addr,
            "    request_timeout: 300ms\n    front_timeout: 300ms",
            "",
        ),
        None,
    );
    // A head that never completes.
    let mut slow = connect(addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: app.te").unwrap();
    let started = Instant::now();
    assert_eq!(read_answer(&mut slow).unwrap().status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    // An idle keep-alive connection is closed without an answer.
    let mut idle = connect(addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut idle).unwrap().status, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The proxy's timer started before `started`, when the answer left: half the timeout is
    // the margin for this thread and the proxy to be scheduled on a loaded machine.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn body_over_the_limit_is_413_and_a_head_over_a_buffer_is_431() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(&yaml(origin.addr, "    max_request_body: 1024", ""), None);
    assert!(wait_until(Duration::from_secs(10), || http_get(
        addr, "app.test", "/"
    )
    .is_ok_and(|a| a.status == 200)));
    let big = http_raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4096\r\n\r\n",
    )
    .unwrap();
    assert_eq!(big.status, 413);
    let head = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(20_000)
    );
    assert_eq!(http_raw(addr, head.as_bytes()).unwrap().status, 431);
}

/// `max_buffers` in weir.toml reaches the workers: with a single buffer a request head can be
/// read but not also written to a backend, so every request is a fast 503 that never reaches
/// the origin (the default pool serves it).
#[test]
fn weir_toml_max_buffers_reaches_the_workers() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(&yaml(origin.addr, "", ""), Some("max_buffers = 1\n"));
    let answer = http_get(addr, "app.test", "/").unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(origin.request_count(), 0);
}

#[test]
fn refused_closed_or_garbage_backends_are_502() {
    let garbage = Backend::answer_then_close("garbage", b"this is not HTTP\r\n\r\n");
    let closer = Backend::with_handler("closer", Arc::new(|_: &Seen, _: &mut TcpStream| false));
    let refused = dead_addr();
    for (name, backend) in [
        ("garbage", garbage.addr),
        ("closer", closer.addr),
        ("refused", refused),
    ] {
        let (_d, _proxy, addr) = start(&yaml(backend, "", ""), None);
        let answer = http_get(addr, "app.test", "/").unwrap();
        assert_eq!(answer.status, 502, "{name}: {answer:?}");
    }
}

#[test]
fn slow_backend_is_504() {
    let slow = Backend::with_handler(
        "slow",
        Arc::new(|_: &Seen, _: &mut TcpStream| {
            std::thread::sleep(Duration::from_secs(3));
            false
        }),
    );
    let (_d, _proxy, addr) = start(&yaml(slow.addr, "", "    response_timeout: 300ms"), None);
    let started = Instant::now();
    assert_eq!(http_get(addr, "app.test", "/").unwrap().status, 504);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn connect_timeout_tries_the_next_backend() {
    let stuck = StuckListener::start();
    let good = Backend::start("good");
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
clusters:
  - id: app
    connect_timeout: 200ms
    backends:
      - {{ id: a-stuck, address: "{stuck}" }}
      - {{ id: b-good, address: "{good}" }}
  - id: empty
frontends:
  - {{ listener: web, hostname: app.test, cluster: app }}
  - {{ listener: web, hostname: empty.test, cluster: empty }}
"#,
        stuck = stuck.addr,
        good = good.addr
    );
    // The daemon's default is far longer, so a worker that ignored the cluster's 200 ms would
    // make one of these requests wait 10 s.
    let (_d, _proxy, addr) = start(&yaml, Some("[timeouts]\nconnect_ms = 10000\n"));
    let started = Instant::now();
    for _ in 0..4 {
        let answer = http_get(addr, "app.test", "/").unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "good");
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

/// The daemon settings of `weir.toml` reach the workers: default timeouts (connect, request,
/// idle keep-alive) where the desired state sets none, and the buffer size, which caps a
/// request head.
#[test]
fn weir_toml_timeouts_and_buffers_reach_the_workers() {
    let stuck = StuckListener::start();
    let origin = Backend::start("origin");
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http }}
clusters:
  - id: app
    backends:
      - {{ id: app-1, address: "{origin}" }}
  - id: stuck
    backends:
      - {{ id: stuck-1, address: "{stuck}" }}
  - id: empty
frontends:
  - {{ listener: web, hostname: app.test, cluster: app }}
  - {{ listener: web, hostname: stuck.test, cluster: stuck }}
  - {{ listener: web, hostname: empty.test, cluster: empty }}
"#,
        origin = origin.addr,
        stuck = stuck.addr
    );
    let toml =
        "buffer_size = 4096\n[timeouts]\nconnect_ms = 300\nrequest_ms = 400\nfront_ms = 500\n";
    let (_d, _proxy, addr) = start(&yaml, Some(toml));

    // connect_ms: given up on after about 300 ms (the built-in default is 3 s).
    let started = Instant::now();
    let answer = http_get(addr, "stuck.test", "/").unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );

    // request_ms: an unfinished head gets its 408 after about 400 ms (default 10 s).
    let mut slow = connect(addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: app.te").unwrap();
    let started = Instant::now();
    assert_eq!(read_answer(&mut slow).unwrap().status, 408);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    // front_ms: an idle keep-alive connection is closed after about 500 ms (default 60 s).
    let mut idle = connect(addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut idle).unwrap().status, 200);
    let started = Instant::now();
    weir_testkit::closed_by_peer(&mut idle).unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    // buffer_size: a 6 KiB head no longer fits (the default 16 KiB buffer would take it).
    let head = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(6_000)
    );
    assert_eq!(http_raw(addr, head.as_bytes()).unwrap().status, 431);
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2_000)
    );
    assert_eq!(http_raw(addr, fits.as_bytes()).unwrap().status, 200);
}

/// At the cap with no connection idle (an idle one would be closed to make room: see
/// tests/dataplane_limits.rs), a new client gets a fast 503.
#[test]
fn over_the_connection_cap_is_a_fast_503() {
    let origin = Backend::start("origin");
    let (_d, proxy, addr) = start(&yaml(origin.addr, "", ""), Some("max_connections = 1\n"));
    // The readiness probe's connection may still hold the only slot for a moment: retry until
    // this connection holds it.
    let mut first = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let mut conn = connect(addr);
        let ok = conn
            .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .is_ok()
            && read_answer(&mut conn).is_ok_and(|a| a.status == 200);
        if ok {
            first = Some(conn);
        }
        ok
    }));
    // Busy again: half of its next request is in (it holds a buffer for it).
    let mut first = first.expect("wait_until held, so a connection was kept");
    first.write_all(b"GET / HTTP/1.1\r\nHost: ap").unwrap();
    assert!(wait_until(Duration::from_secs(10), || metric(
        &proxy,
        "buffers.in_use"
    ) == 1));
    let started = Instant::now();
    let second = http_get(addr, "app.test", "/").unwrap();
    assert_eq!(second.status, 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The first connection held its slot all along and is still served.
    first.write_all(b"p.test\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut first).unwrap().status, 200);
}
