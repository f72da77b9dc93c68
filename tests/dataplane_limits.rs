//! The limits production proxies have, per listener, end to end: connections per client
//! address, requests per connection, a deadline for a whole request body, slow readers, and
//! idle keep-alive connections closed first at the connection cap.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::control::metric;
use util::{proxy_on_yaml, Desired, Proxy};
use weir_testkit::{closed_by_peer, connect, http_get, read_answer, wait_until, Backend, Seen};

/// A proxy with one worker whose listener has `listener_extra` and routes `app.test` to
/// `origin`, with optional daemon settings; returns once `app.test` is served.
fn start(
    origin: SocketAddr,
    listener_extra: &str,
    toml: Option<&str>,
) -> (Desired, Proxy, SocketAddr) {
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
{listener_extra}
clusters:
  - id: app
    backends:
      - id: app-1
        address: {origin}
frontends:
  - listener: web
    hostname: app.test
    cluster: app
"#
    );
    let (desired, proxy, addr) = proxy_on_yaml(&yaml, toml);
    assert!(
        wait_until(Duration::from_secs(20), || http_get(addr, "app.test", "/")
            .is_ok_and(|a| a.status == 200)),
        "the proxy never served app.test"
    );
    (desired, proxy, addr)
}

/// A keep-alive GET on `conn`; its answer.
fn get(conn: &mut TcpStream) -> weir_testkit::Answer {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    read_answer(conn).unwrap()
}

/// Waits until the proxy has exactly `n` client connections open.
fn wait_for_connections(proxy: &Proxy, n: u64) {
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            proxy,
            "connections.active"
        ) == n),
        "connections.active never reached {n}: {}",
        metric(proxy, "connections.active")
    );
}

#[test]
fn max_connections_per_ip_refuses_the_one_over_the_limit() {
    let origin = Backend::start("origin");
    let (_d, proxy, addr) = start(origin.addr, "    max_connections_per_ip: 2", None);
    wait_for_connections(&proxy, 0);
    let mut first = connect(addr);
    let mut second = connect(addr);
    assert_eq!(get(&mut first).status, 200);
    assert_eq!(get(&mut second).status, 200);
    // The third from the same address is refused with a 503, and counted.
    let mut third = connect(addr);
    assert_eq!(read_answer(&mut third).unwrap().status, 503);
    assert_eq!(metric(&proxy, "connections.refused_per_ip"), 1);
    // The two still work; once one closes, its place is free again.
    assert_eq!(get(&mut second).status, 200);
    drop(first);
    wait_for_connections(&proxy, 1);
    let mut again = connect(addr);
    assert_eq!(get(&mut again).status, 200);
    assert_eq!(metric(&proxy, "connections.refused_per_ip"), 1);
}

#[test]
fn the_last_request_of_a_connection_is_answered_with_a_close() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(origin.addr, "    max_requests_per_connection: 3", None);
    let mut conn = connect(addr);
    for _ in 0..2 {
        let answer = get(&mut conn);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), None, "{answer:?}");
    }
    let last = get(&mut conn);
    assert_eq!(last.status, 200);
    assert_eq!(last.header("connection"), Some("close"), "{last:?}");
    closed_by_peer(&mut conn).unwrap();
}

#[test]
fn the_default_is_a_thousand_requests_per_connection() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(origin.addr, "", None);
    let mut conn = connect(addr);
    for i in 1..=1000 {
        let answer = get(&mut conn);
        assert_eq!(answer.status, 200);
        let close = answer.header("connection") == Some("close");
        assert_eq!(close, i == 1000, "request {i}: {answer:?}");
    }
    closed_by_peer(&mut conn).unwrap();
}

#[test]
fn a_body_trickling_past_request_body_timeout_is_408() {
    let origin = Backend::start("origin");
    let (_d, proxy, addr) = start(origin.addr, "    request_body_timeout: 1s", None);
    let before = origin.request_count();
    let mut conn = connect(addr);
    conn.write_all(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nab")
        .unwrap();
    // A byte every 100 ms is progress enough for every idle timeout, never enough for the
    // whole body's deadline. Bounded: at most 60 bytes, 6 s.
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..60 {
        if conn.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(metric(&proxy, "http.body_timeouts"), 1);
    assert_eq!(
        origin.request_count(),
        before,
        "the body never arrived whole"
    );
}

#[test]
fn a_client_reading_too_slowly_is_closed_at_send_timeout() {
    // 64 MiB, far more than the socket buffers on both sides of the proxy hold, so the proxy
    // has bytes waiting for a client that does not read.
    const SIZE: usize = 64 << 20;
    let origin = Backend::with_handler(
        "big",
        Arc::new(|_: &Seen, stream: &mut TcpStream| {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err() {
                return false;
            }
            let chunk = vec![b'z'; 64 << 10];
            for _ in 0..SIZE / chunk.len() {
                if stream.write_all(&chunk).is_err() {
                    return false;
                }
            }
            true
        }),
    );
    let (_d, proxy, addr) = start(origin.addr, "    send_timeout: 1s", None);
    let mut conn = connect(addr);
    conn.write_all(b"GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    // Not reading: the proxy's bytes wait, and it gives up on this reader.
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &proxy,
            "http.slow_reads"
        ) == 1),
        "the slow reader was never closed"
    );
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    assert!(got.len() < SIZE, "the whole answer arrived: {}", got.len());
    // A client that reads gets all of it.
    let mut fast = connect(addr);
    fast.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let answer = get(&mut fast);
    assert_eq!((answer.status, answer.body.len()), (200, SIZE));
    assert_eq!(metric(&proxy, "http.slow_reads"), 1);
}

#[test]
fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let origin = Backend::start("origin");
    let (_d, proxy, addr) = start(origin.addr, "", Some("max_connections = 2\n"));
    wait_for_connections(&proxy, 0);
    let mut oldest = connect(addr);
    assert_eq!(get(&mut oldest).status, 200);
    let mut newer = connect(addr);
    assert_eq!(get(&mut newer).status, 200);
    wait_for_connections(&proxy, 2);
    // Both idle: a third client is served, and the oldest idle connection closed for it.
    let mut third = connect(addr);
    assert_eq!(get(&mut third).status, 200);
    closed_by_peer(&mut oldest).unwrap();
    assert_eq!(get(&mut newer).status, 200);
    assert_eq!(metric(&proxy, "connections.idle_closed"), 1);
    // None idle (both in the middle of a request): a new client gets the 503.
    newer.write_all(b"GET / HTTP/1.1\r\nHost: app").unwrap();
    third.write_all(b"GET / HTTP/1.1\r\nHost: app").unwrap();
    // Each holds a buffer once the proxy read its half head.
    assert!(wait_until(Duration::from_secs(10), || metric(
        &proxy,
        "buffers.in_use"
    ) == 2));
    let mut fourth = connect(addr);
    assert_eq!(read_answer(&mut fourth).unwrap().status, 503);
    assert_eq!(metric(&proxy, "connections.idle_closed"), 1);
}
