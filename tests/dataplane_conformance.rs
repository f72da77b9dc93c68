//! The data plane against what real clients, scanners and attack generators send (RFC 9110,
//! RFC 9112, RFC 6455, and what nginx and HAProxy answer). The first tests are regressions,
//! one per bug found by probing the running proxy; the rest pin behaviour that already held.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::{proxy_on_yaml, Desired, Proxy};
use weir_testkit::{
    connect, http_get, http_raw, read_answer, read_answer_to_head, wait_until, Backend, Handler,
};

/// An origin answering every request with its head and body as the answer's body, so a test
/// sees exactly what the proxy forwarded. `/early` first sends a `103 Early Hints`;
/// `/until-close` answers without a length and closes; `/cut` promises 100 bytes, sends 5
/// and closes; `/switch` answers `101` to any request that reaches it with an `Upgrade`
/// field, as an origin that speaks every protocol offered would. The rest answer what a
/// broken origin might: `/chunked` a chunked body whatever the request's version,
/// `/bad-chunks` a chunk size that is not hex, `/switch-bare` a 101 without `Upgrade`,
/// `/switch-h2c` a 101 to h2c, `/no-content` a 204 announcing a length.
fn origin() -> Backend {
    let handler: Handler = Arc::new(|req, stream| {
        let broken: Option<&[u8]> = match req.path() {
            "/chunked" => {
                Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            }
            "/bad-chunks" => {
                Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n")
            }
            "/switch-bare" => {
                Some(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n")
            }
            "/switch-h2c" => Some(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            ),
            "/no-content" => {
                Some(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\n")
            }
            _ => None,
        };
        if let Some(answer) = broken {
            return stream.write_all(answer).is_ok() && req.path() == "/no-content";
        }
        let answer: Vec<u8> = match req.path() {
            "/switch" if req.header("upgrade").is_some() => {
                let offer = req.header("upgrade").unwrap_or_default();
                let _ = write!(stream, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {offer}\r\n\r\n");
                return false;
            }
            "/early" => b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            "/until-close" => b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec(),
            "/cut" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
            "/no-upgrade" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno".to_vec(),
            "/dated" => b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n".to_vec(),
            _ => {
                let mut echo = req.head.clone().into_bytes();
                echo.extend_from_slice(&req.body);
                let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", echo.len())
                    .into_bytes();
                a.extend_from_slice(&echo);
                a
            }
        };
        let keep = !matches!(req.path(), "/until-close" | "/cut");
        stream.write_all(&answer).is_ok() && keep
    });
    Backend::with_handler("origin", handler)
}

/// A proxy routing `app.test` and `*.wild.test` to `origin`, with a short request timeout.
fn start(origin: SocketAddr) -> (Desired, Proxy, SocketAddr) {
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
    request_timeout: 500ms
clusters:
  - id: app
    backends:
      - id: app-1
        address: {origin}
  - id: empty
frontends:
  - listener: web
    hostname: app.test
    cluster: app
  - listener: web
    hostname: "*.wild.test"
    cluster: app
  - listener: web
    hostname: empty.test
    cluster: empty
"#
    );
    let (desired, proxy, addr) = proxy_on_yaml(&yaml, None);
    // `empty.test` is routed last, to a cluster without backends: a 503 means every route is in.
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "empty.test", "/").is_ok_and(|a| a.status == 503)
    }));
    (desired, proxy, addr)
}

/// Reads until the proxy closes (bounded by the read timeout). `true` if it closed.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let closed = s.read_to_end(&mut all).is_ok();
    (all, closed)
}

// ---- regressions ------------------------------------------------------------------------------

#[test]
fn request_line_over_a_buffer_is_414_not_431() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let long_target = format!("/{}", "a".repeat(20_000));
    let answer = http_raw(
        addr,
        format!("GET {long_target} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.status, 414, "{}", answer.head);
    // A request line that fits, with fields that do not, is still a 431.
    let big_field = "b".repeat(20_000);
    let answer = http_raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {big_field}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.status, 431, "{}", answer.head);
    assert_eq!(origin.request_count(), 0);
}

#[test]
fn unknown_http_versions_are_505_and_http09_is_400() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    for request in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/3\r\nHost: app.test\r\n\r\n",
    ] {
        let answer = http_raw(addr, request).unwrap();
        assert_eq!(answer.status, 505, "{:?}", String::from_utf8_lossy(request));
    }
    for request in [
        &b"GET /\r\n\r\n"[..],
        b"GET / HTTP/1.x\r\nHost: app.test\r\n\r\n",
    ] {
        let answer = http_raw(addr, request).unwrap();
        assert_eq!(answer.status, 400, "{:?}", String::from_utf8_lossy(request));
    }
    assert_eq!(origin.request_count(), 0);
}

#[test]
fn absolute_form_target_is_forwarded_in_origin_form_with_its_host() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    // RFC 9112 3.2.2: the target's authority wins over the Host field, which is replaced, so
    // the backend never sees a Host other than the one the request was routed on.
    let answer = http_raw(
        addr,
        b"GET http://APP.test:8080/p?q=1 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    let seen = origin.last_seen();
    assert!(
        seen.head.starts_with("GET /p?q=1 HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("host"), Some("APP.test:8080"));
    assert_eq!(seen.head.matches("Host:").count(), 1, "{}", seen.head);
    // HTTP/1.0 has no Host field to replace: it is added. An empty path becomes `/`.
    let answer = http_raw(addr, b"GET http://x.wild.test HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(answer.status, 200);
    let seen = origin.last_seen();
    assert!(seen.head.starts_with("GET / HTTP/1.0\r\n"), "{}", seen.head);
    assert_eq!(seen.header("host"), Some("x.wild.test"));
}

#[test]
fn content_length_list_is_forwarded_as_one_value() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    // `5, 5` and a repeated equal field are valid (RFC 9110 8.6), but a backend that reads
    // only the first field, or fails on a list, would frame the body differently.
    let answer = http_raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    let seen = origin.last_seen();
    assert_eq!(seen.header("content-length"), Some("5"));
    assert_eq!(
        seen.head
            .to_ascii_lowercase()
            .matches("content-length")
            .count(),
        1
    );
    assert_eq!(seen.body, b"hello");
}

// ---- behaviour that held when probed -----------------------------------------------------------

#[test]
fn slowloris_head_gets_408_at_request_timeout() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let mut s = connect(addr);
    let started = Instant::now();
    // One byte every 50 ms: each byte arrives well within any idle timeout, yet the head as a
    // whole cannot beat the 500 ms request timeout. Bounded: at most 60 bytes (3 s).
    // A failed write means the proxy already answered and closed: stop trickling.
    for &b in b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (all, closed) = read_to_close(&mut s);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(origin.request_count(), 0);
}

#[test]
fn interim_103_is_forwarded_then_the_final_answer() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let mut s = connect(addr);
    s.write_all(b"GET /early HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let interim = read_answer(&mut s).unwrap();
    assert_eq!(interim.status, 103);
    assert_eq!(interim.header("link"), Some("</s.css>; rel=preload"));
    let last = read_answer(&mut s).unwrap();
    assert_eq!((last.status, last.text().as_str()), (200, "ok"));
    // The connection is still usable.
    s.write_all(b"GET /again HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).unwrap().status, 200);
}

#[test]
fn backend_closing_mid_body_or_at_its_end_closes_the_client() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    // Read until close: the body ends with the backend's close, so the client's must close.
    let mut s = connect(addr);
    s.write_all(b"GET /until-close HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let (all, closed) = read_to_close(&mut s);
    let text = String::from_utf8_lossy(&all);
    assert!(closed, "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nuntil close"), "{text}");
    // Cut short: the client learns it only from the close, which must come, not a hang.
    let mut s = connect(addr);
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let (all, closed) = read_to_close(&mut s);
    assert!(closed);
    assert!(String::from_utf8_lossy(&all).ends_with("\r\n\r\nshort"));
}

#[test]
fn refused_upgrade_keeps_http_semantics() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let mut s = connect(addr);
    s.write_all(
        b"GET /no-upgrade HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "no"));
    // Not a pipe: the next bytes are parsed as the next request.
    s.write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.text().starts_with("GET /next HTTP/1.1\r\n"));
}

/// h2c smuggling: after a `101` to `h2c` the client could send HTTP/2 requests straight to
/// the backend, past every route. The offer is dropped and the request served as plain
/// HTTP/1.1; an Upgrade in an HTTP/1.0 request is ignored too (RFC 9110 7.8).
#[test]
fn h2c_and_http10_upgrades_are_not_passed_on() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    for request in [
        &b"GET /switch HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"[..],
        b"GET /switch HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        b"GET /switch HTTP/1.0\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let answer = http_raw(addr, request).unwrap();
        let shown = String::from_utf8_lossy(request);
        assert_eq!(answer.status, 200, "{shown}");
        let seen = answer.text().to_ascii_lowercase();
        assert!(!seen.contains("upgrade"), "{shown} reached the origin as:\n{seen}");
        assert!(!seen.contains("http2-settings"), "{shown} reached the origin as:\n{seen}");
    }
    // A WebSocket offer in HTTP/1.1 still switches.
    let answer = http_raw(
        addr,
        b"GET /switch HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 101);
}

/// A HEAD request the proxy answers itself gets the head a GET would get and no body (RFC
/// 9110 9.3.2): a body there would be read as the start of the next answer on the connection.
#[test]
fn the_proxys_own_answers_to_head_have_no_body() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let mut s = connect(addr);
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
        .unwrap();
    let head = read_answer_to_head(&mut s).unwrap();
    assert_eq!(head.status, 404);
    assert!(head.header("content-length").is_some_and(|l| l != "0"));
    // The connection is kept, and the next bytes on it are the next answer's.
    s.write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let next = read_answer(&mut s).unwrap();
    assert_eq!(next.status, 200, "{}", next.head);
    assert!(next.text().starts_with("GET /next HTTP/1.1\r\n"));
    // A closing answer to HEAD (503: no backend) ends right after its head.
    let mut s = connect(addr);
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: empty.test\r\n\r\n")
        .unwrap();
    let (all, closed) = read_to_close(&mut s);
    let text = String::from_utf8_lossy(&all);
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "a body follows the head: {text}"
    );
}

/// Every answer carries a `Date` (RFC 9110 6.6.1): the proxy's own, and a backend's that came
/// without one (the test backends send none); a backend's own `Date` is kept as it is.
#[test]
fn answers_carry_a_date() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let is_imf_fixdate = |v: Option<&str>| {
        v.is_some_and(|v| v.len() == 29 && v.ends_with(" GMT") && v.as_bytes()[3] == b',')
    };
    let not_found = http_get(addr, "nowhere.test", "/").unwrap();
    assert_eq!(not_found.status, 404);
    assert!(
        is_imf_fixdate(not_found.header("date")),
        "{}",
        not_found.head
    );
    let forwarded = http_get(addr, "app.test", "/").unwrap();
    assert_eq!(forwarded.status, 200);
    assert!(
        is_imf_fixdate(forwarded.header("date")),
        "{}",
        forwarded.head
    );
    assert_eq!(
        forwarded.head.matches("Date:").count(),
        1,
        "{}",
        forwarded.head
    );
    let dated = http_get(addr, "app.test", "/dated").unwrap();
    assert_eq!(dated.header("date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_eq!(dated.head.to_ascii_lowercase().matches("date:").count(), 1);
}

/// What a broken origin answers never reaches the client as it came: a chunked body for an
/// HTTP/1.0 client (which cannot read one), a body whose framing breaks at once, or a 101
/// that switches to nothing or to what was not offered, are each a clean 502.
#[test]
fn broken_origin_answers_become_502() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    for (request, status) in [
        (
            "GET /chunked HTTP/1.1\r\nHost: app.test\r\n\r\n".to_owned(),
            200,
        ),
        (
            "GET /chunked HTTP/1.0\r\nHost: app.test\r\n\r\n".to_owned(),
            502,
        ),
        (
            "GET /bad-chunks HTTP/1.1\r\nHost: app.test\r\n\r\n".to_owned(),
            502,
        ),
        (
            format!("GET /switch-bare HTTP/1.1\r\nHost: app.test\r\n{ws}\r\n"),
            502,
        ),
        (
            format!("GET /switch-h2c HTTP/1.1\r\nHost: app.test\r\n{ws}\r\n"),
            502,
        ),
    ] {
        let answer = http_raw(addr, request.as_bytes()).unwrap();
        assert_eq!(answer.status, status, "{request}");
        if status == 200 {
            assert_eq!(answer.text(), "ok");
        }
    }
}

/// A 204 has no body, so the client is told no length (RFC 9110 8.6), and the connection
/// goes on; a request body in a coding other than chunked is a 501 (RFC 9112 6.1).
#[test]
fn bodiless_answers_lose_their_length_and_other_codings_are_501() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let mut s = connect(addr);
    s.write_all(b"GET /no-content HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("content-length"), None, "{}", answer.head);
    assert_eq!(answer.header("x-kept"), Some("yes"));
    s.write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).unwrap().status, 200);
    let answer = http_raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 501);
    assert_eq!(
        origin.request_count(),
        2,
        "only the two GETs reached the origin"
    );
}

#[test]
fn host_forms_route_alike_and_odd_targets_are_handled() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    for host in [
        "app.test",
        "APP.TEST",
        "app.test.",
        "app.test:1234",
        "Y.WILD.TEST:80",
    ] {
        let answer = http_get(addr, host, "/").unwrap();
        assert_eq!(answer.status, 200, "Host: {host}");
    }
    assert_eq!(http_get(addr, "[::1]:80", "/").unwrap().status, 404);
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\nHost: \r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (
            b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n",
            400,
        ),
        (
            b"GET http://user@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            200,
        ),
        // Methods are case-sensitive tokens: a lowercase one is another (unknown) method
        // for the backend to judge, not a malformed request.
        (
            b"get / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            200,
        ),
        // RFC 9112 2.2: an empty line before the request line is ignored.
        (
            b"\r\nGET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            200,
        ),
    ] {
        let answer = http_raw(addr, request).unwrap();
        assert_eq!(
            answer.status,
            status,
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(origin.last_seen().head.starts_with("GET / HTTP/1.1\r\n"));
}

#[test]
fn http10_closes_unless_asked_and_http11_keeps_unless_asked() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let (all, closed) = read_to_close(&mut s);
    assert!(closed);
    assert!(String::from_utf8_lossy(&all).contains("Connection: close\r\n"));

    let mut s = connect(addr);
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut s).unwrap();
        assert_eq!(answer.header("connection"), Some("keep-alive"));
    }

    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\nGET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (all, closed) = read_to_close(&mut s);
    let text = String::from_utf8_lossy(&all);
    assert!(closed);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

#[test]
fn forwarded_fields_are_appended_to_the_clients() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let answer = http_raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\nForwarded: for=192.0.2.3\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    let seen = origin.last_seen();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("192.0.2.1, 192.0.2.2, 127.0.0.1")
    );
    assert_eq!(
        seen.header("forwarded"),
        Some("for=192.0.2.3, for=127.0.0.1;host=\"app.test\";proto=http")
    );
    // Set by the proxy, never trusted from the client.
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[test]
fn requests_carry_a_via_element_after_the_clients() {
    let origin = origin();
    let (_d, _proxy, addr) = start(origin.addr);
    let answer = http_raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nVia: 1.1 edge\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(origin.last_seen().header("via"), Some("1.1 edge, 1.1 weir"));
    let answer = http_raw(addr, b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(origin.last_seen().header("via"), Some("1.0 weir"));
}
