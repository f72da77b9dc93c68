//! What reaches the other side of the proxy, byte for byte: chunked bodies in canonical form
//! both ways (no extensions, sizes without leading zeros), and request fields whose names hold
//! `_` dropped, or kept on a listener that allows them but for look-alikes of framing and
//! routing fields.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use util::{proxy_on_yaml, Desired, Proxy};
use weir_testkit::{connect, free_addr, http_get, read_answer, wait_until, Backend, Seen};

/// Two http listeners routing `app.test` to `origin`: `web` (on `{port}`, defaults) and
/// `keep` (on the returned address, `allow_underscores_in_headers: true`).
fn start(origin: SocketAddr) -> (Desired, Proxy, SocketAddr, SocketAddr) {
    let keep = free_addr();
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
  - name: keep
    address: {keep}
    protocol: http
    allow_underscores_in_headers: true
clusters:
  - id: app
    backends:
      - id: app-1
        address: {origin}
frontends:
  - listener: web
    hostname: app.test
    cluster: app
  - listener: keep
    hostname: app.test
    cluster: app
"#
    );
    let (desired, proxy, web) = proxy_on_yaml(&yaml, None);
    for addr in [web, keep] {
        assert!(
            wait_until(Duration::from_secs(20), || http_get(addr, "app.test", "/")
                .is_ok_and(|a| a.status == 200)),
            "{addr} never served app.test"
        );
    }
    (desired, proxy, web, keep)
}

/// Sends `parts` one write at a time, a moment apart, so the proxy reads them in separate
/// reads (chunk lines split across them), then reads the answer.
fn send_in_parts(addr: SocketAddr, parts: &[&[u8]]) -> weir_testkit::Answer {
    let mut conn = connect(addr);
    for part in parts {
        conn.write_all(part).unwrap();
        conn.flush().unwrap();
        thread::sleep(Duration::from_millis(30));
    }
    read_answer(&mut conn).unwrap()
}

#[test]
fn chunk_extensions_and_odd_sizes_never_reach_the_backend() {
    let origin = Backend::start("origin");
    let (_d, _proxy, web, _keep) = start(origin.addr);
    let answer = send_in_parts(
        web,
        &[
            b"POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n00",
            b"00a;name=val",
            b"ue\r\n0123456789\r\n3;x=\"quoted;\"",
            b" ; y\r\nabc\r\n000F\r\nfifteen bytes!!\r\n0",
            b"0;last\r\nX-Sum: 1\r\n\r\n",
        ],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = origin.last_seen();
    assert_eq!(seen.body, b"0123456789abcfifteen bytes!!");
    assert_eq!(
        String::from_utf8_lossy(&seen.raw_body),
        "a\r\n0123456789\r\n3\r\nabc\r\nf\r\nfifteen bytes!!\r\n0\r\nX-Sum: 1\r\n\r\n"
    );
}

#[test]
fn chunked_answers_reach_the_client_in_canonical_form() {
    let origin = Backend::with_handler(
        "odd",
        Arc::new(|_: &Seen, stream: &mut TcpStream| {
            let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                           0005;ext=1\r\nhello\r\n1;a=\"b\"\r\n \r\n00005\r\nworld\r\n0000;end\r\n\r\n";
            let _ = stream.write_all(answer);
            false
        }),
    );
    let (_d, _proxy, web, _keep) = start(origin.addr);
    let mut conn = connect(web);
    conn.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_eq!(
        body, "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
        "{text}"
    );
}

#[test]
fn underscored_names_are_dropped_unless_the_listener_keeps_them() {
    let origin = Backend::start("origin");
    let (_d, _proxy, web, keep) = start(origin.addr);
    let request = b"POST / HTTP/1.1\r\nHost: app.test\r\nX_Custom: mine\r\nContent_Length: 50\r\n\
                    Transfer_Encoding: chunked\r\nX_Forwarded_For: 6.6.6.6\r\nX-Plain: kept\r\n\
                    Content-Length: 2\r\n\r\nok";
    // By default, as nginx: every underscored name is dropped.
    assert_eq!(send_in_parts(web, &[request]).status, 200);
    let seen = origin.last_seen();
    assert!(!seen.head.contains('_'), "{}", seen.head);
    assert_eq!(seen.header("x-plain"), Some("kept"));
    assert_eq!(seen.body, b"ok");
    // A listener that keeps them keeps the others, never the framing and routing look-alikes.
    assert_eq!(send_in_parts(keep, &[request]).status, 200);
    let seen = origin.last_seen();
    assert_eq!(seen.header("x_custom"), Some("mine"), "{}", seen.head);
    let lower = seen.head.to_ascii_lowercase();
    for gone in ["content_length", "transfer_encoding", "6.6.6.6"] {
        assert!(!lower.contains(gone), "{gone}: {}", seen.head);
    }
    assert_eq!(seen.body, b"ok");
}

#[test]
fn a_response_head_trickled_byte_by_byte_reaches_the_client_exactly() {
    // An interim head, then a final head of a few hundred bytes, each byte its own segment a
    // moment after the last, so the proxy reads the heads in many pieces (the blank lines
    // split across reads among them).
    const INTERIM: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
    const HEAD: &str = "HTTP/1.1 200 OK\r\nDate: Sun, 06 Dec 2026 22:00:00 GMT\r\n\
                        Content-Type: text/plain\r\nX-One: 1\r\nX-Two: two words\r\n\
                        X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
                        Cache-Control: no-store\r\nContent-Length: 7\r\n\r\n";
    let origin = Backend::with_handler(
        "trickle",
        Arc::new(|seen: &Seen, stream: &mut TcpStream| {
            if seen.path() != "/slow" {
                return stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_ok();
            }
            let _ = stream.set_nodelay(true);
            for &byte in INTERIM.iter().chain(HEAD.as_bytes()) {
                if stream.write_all(&[byte]).is_err() {
                    return false;
                }
                thread::sleep(Duration::from_millis(1));
            }
            stream.write_all(b"trickle").is_ok()
        }),
    );
    let (_d, _proxy, web, _keep) = start(origin.addr);
    let mut conn = connect(web);
    // Twice on one connection: the second head is scanned from its own start.
    for _ in 0..2 {
        conn.write_all(b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        let interim = read_answer(&mut conn).unwrap();
        assert_eq!(interim.head.as_bytes(), INTERIM);
        let answer = read_answer(&mut conn).unwrap();
        assert_eq!(answer.head, HEAD);
        assert_eq!(answer.body, b"trickle");
    }
}
