//! Access logs end to end: the real proxy writes one line per request (and per TCP or
//! WebSocket session) to each kind of target, in text or JSON, reopens its file on SIGUSR1,
//! and never lets a blocked target slow traffic.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{control, proxy_on_yaml, Desired, Proxy};
use weir_schema::command::Command;
use weir_testkit::{
    connect, http_get, http_raw, read_answer, send_and_read_to_end, tcp_echo, wait_until,
    websocket_echo, Backend,
};

/// An http listener routing `shop.test` to `backend` (id `b1` in cluster `shop`).
fn shop_yaml(backend: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http }}
clusters:
  - id: shop
    backends: [{{ id: b1, address: "{backend}" }}]
frontends:
  - {{ listener: web, hostname: shop.test, cluster: shop }}
"#
    )
}

/// The proxy with `[access_log]` set to `target` and `format`, once `shop.test` is routed.
fn start(backend: &Backend, target: &str, format: &str) -> (Desired, Proxy, SocketAddr) {
    let toml = format!("[access_log]\ntarget = \"{target}\"\nformat = \"{format}\"\n");
    let (desired, proxy, addr) = proxy_on_yaml(&shop_yaml(backend.addr), Some(&toml));
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "shop.test", "/ready").is_ok_and(|a| a.status == 200)
    }));
    (desired, proxy, addr)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits for the JSON line of the request to `path` in the file at `log`.
fn json_line(log: &Path, path: &str) -> Value {
    let mut found = None;
    let seen = wait_until(Duration::from_secs(10), || {
        found = lines(log)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["path"] == path);
        found.is_some()
    });
    assert!(seen, "no line for {path} in {:?}", lines(log));
    found.unwrap()
}

fn metric(proxy: &Proxy, name: &str) -> u64 {
    let mut client = control::client(proxy);
    let answer = control::call(&mut client, Command::QueryMetrics);
    let Some(weir_schema::proto::response::Content::Metrics(m)) = answer.content else {
        panic!("{answer:?}");
    };
    m.counters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .value
}

const FIELDS: [&str; 15] = [
    "time",
    "client",
    "listener",
    "host",
    "method",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "cluster",
    "backend",
    "duration_ms",
    "connect_ms",
    "backend_ms",
    "request_id",
];

#[test]
fn json_lines_have_every_field_with_the_values_of_the_traffic() {
    let backend = Backend::start("b1");
    let (desired, _proxy, addr) = start(&backend, "access.log", "json");
    let log = desired.path().join("access.log");

    let mut conn = connect(addr);
    let get = b"GET /items?page=2 HTTP/1.1\r\nHost: shop.test\r\n\r\n";
    conn.write_all(get).unwrap();
    let answer = read_answer(&mut conn).unwrap();
    assert_eq!(answer.status, 200);
    let client = conn.local_addr().unwrap().to_string();
    let post = b"POST /cart HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nhello";
    conn.write_all(post).unwrap();
    let posted = read_answer(&mut conn).unwrap();
    assert_eq!(posted.status, 200);

    let line = json_line(&log, "/items?page=2");
    for field in FIELDS {
        assert!(line.get(field).is_some(), "{field} missing from {line}");
    }
    assert_eq!(line.as_object().unwrap().len(), FIELDS.len(), "{line}");
    assert_eq!(line["client"], client.as_str());
    assert_eq!(line["listener"], addr.to_string().as_str());
    assert_eq!(line["host"], "shop.test");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert_eq!(line["cluster"], "shop");
    assert_eq!(line["backend"], "b1");
    assert_eq!(line["bytes_in"], get.len());
    let answered = answer.head.len() + answer.body.len();
    assert_eq!(line["bytes_out"], answered);
    let duration = line["duration_ms"].as_f64().unwrap();
    let first_byte = line["backend_ms"].as_f64().unwrap();
    let connected = line["connect_ms"].as_f64().unwrap();
    assert!(connected <= first_byte && first_byte <= duration, "{line}");
    let time = line["time"].as_str().unwrap();
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T');
    let id = line["request_id"].as_str().unwrap();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));

    let post_line = json_line(&log, "/cart");
    assert_eq!(post_line["method"], "POST");
    assert_eq!(post_line["bytes_in"], post.len());
    assert_ne!(post_line["request_id"], line["request_id"]);
}

#[test]
fn hostile_bytes_are_escaped_into_valid_json() {
    let backend = Backend::start("b1");
    let (desired, _proxy, addr) = start(&backend, "access.log", "json");
    let log = desired.path().join("access.log");
    // Quotes and backslashes in the target, a quote, invalid UTF-8 and valid UTF-8 in Host.
    let answer = http_raw(
        addr,
        b"GET /a\"b\\c{}<x> HTTP/1.1\r\nHost: h\xff\xc3\xa9\"\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.head);
    let line = json_line(&log, "/a\"b\\c{}<x>");
    assert_eq!(line["host"], "h\u{ff}é\"");
    assert_eq!(line["status"], 400);
    assert!(
        line["cluster"].is_null() && line["backend"].is_null(),
        "{line}"
    );
    // Every line of the file is one JSON object, whatever was sent.
    for l in lines(&log) {
        serde_json::from_str::<Value>(&l).unwrap();
    }
}

#[test]
fn text_lines_show_every_field_and_our_own_404_has_no_backend() {
    let backend = Backend::start("b1");
    let (desired, _proxy, addr) = start(&backend, "access.log", "text");
    let log = desired.path().join("access.log");
    assert_eq!(http_get(addr, "shop.test", "/shoes").unwrap().status, 200);
    assert_eq!(
        http_get(addr, "nobody.test", "/nothing").unwrap().status,
        404
    );
    let mut found = (None, None);
    assert!(wait_until(Duration::from_secs(10), || {
        let all = lines(&log);
        let find = |p: &str| all.iter().find(|l| l.contains(p)).cloned();
        found = (find(" path=/shoes "), find(" path=/nothing "));
        found.0.is_some() && found.1.is_some()
    }));
    let (ok, missing) = (found.0.unwrap(), found.1.unwrap());
    for field in FIELDS {
        assert!(ok.contains(&format!("{field}=")), "{field} missing: {ok}");
    }
    assert!(
        ok.contains(" host=shop.test method=GET path=/shoes status=200 "),
        "{ok}"
    );
    assert!(ok.contains(" cluster=shop backend=b1 "), "{ok}");
    assert!(missing.contains(" status=404 "), "{missing}");
    assert!(missing.contains(" cluster=- backend=- "), "{missing}");
    assert!(missing.contains(" connect_ms=- backend_ms=- "), "{missing}");
}

#[test]
fn tcp_and_websocket_sessions_log_one_line_when_they_end() {
    let echo = tcp_echo();
    let ws = websocket_echo();
    let raw = weir_testkit::free_addr();
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http }}
  - {{ name: raw, address: "{raw}", protocol: tcp }}
clusters:
  - id: ws
    backends: [{{ id: ws-1, address: "{}" }}]
  - id: echo
    backends: [{{ id: echo-1, address: "{echo}" }}]
frontends:
  - {{ listener: web, hostname: ws.test, cluster: ws }}
  - {{ listener: raw, cluster: echo }}
"#,
        ws.addr
    );
    let toml = "[access_log]\ntarget = \"access.log\"\nformat = \"json\"\n";
    let (desired, _proxy, addr) = proxy_on_yaml(&yaml, Some(toml));
    let log = desired.path().join("access.log");

    // WebSocket: upgraded, a few bytes each way, closed by the client.
    let upgrade = b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut upgraded = None;
    assert!(wait_until(Duration::from_secs(20), || {
        let Ok(mut conn) = TcpStream::connect(addr) else {
            return false;
        };
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let sent = conn.write_all(upgrade);
        match read_answer(&mut conn) {
            Ok(answer) if sent.is_ok() && answer.status == 101 => {
                upgraded = Some(conn);
                true
            }
            _ => false,
        }
    }));
    let mut conn = upgraded.unwrap();
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    conn.write_all(&frame).unwrap();
    let mut back = [0u8; 11];
    conn.read_exact(&mut back).unwrap();
    // Not logged while it is open: the line comes when the session ends.
    assert!(!lines(&log).iter().any(|l| l.contains("/chat")));
    drop(conn);
    let ws_line = json_line(&log, "/chat");
    assert_eq!(ws_line["status"], 101);
    assert_eq!(ws_line["cluster"], "ws");
    assert_eq!(ws_line["backend"], "ws-1");
    assert_eq!(ws_line["bytes_in"], upgrade.len() + frame.len());
    assert!(
        ws_line["bytes_out"].as_u64().unwrap() > frame.len() as u64,
        "{ws_line}"
    );
    let chats = lines(&log).iter().filter(|l| l.contains("/chat")).count();
    assert_eq!(chats, 1);

    // TCP: an echoed payload, then both sides close.
    assert!(wait_until(Duration::from_secs(20), || {
        let Ok(mut probe) = TcpStream::connect(raw) else {
            return false;
        };
        probe
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        probe.write_all(b"?").is_ok() && probe.read_exact(&mut byte).is_ok()
    }));
    let mut tcp = connect(raw);
    let client = tcp.local_addr().unwrap().to_string();
    let payload = vec![7u8; 10_000];
    assert_eq!(
        send_and_read_to_end(&mut tcp, &payload).len(),
        payload.len()
    );
    let mut tcp_line = None;
    assert!(wait_until(Duration::from_secs(10), || {
        tcp_line = lines(&log)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["client"] == client.as_str());
        tcp_line.is_some()
    }));
    let tcp_line = tcp_line.unwrap();
    assert_eq!(tcp_line["listener"], raw.to_string().as_str());
    assert!(
        tcp_line["status"].is_null() && tcp_line["method"].is_null(),
        "{tcp_line}"
    );
    assert_eq!(tcp_line["cluster"], "echo");
    assert_eq!(tcp_line["backend"], "echo-1");
    assert_eq!(tcp_line["bytes_in"], payload.len());
    assert_eq!(tcp_line["bytes_out"], payload.len());
}

#[test]
fn udp_target_gets_one_datagram_per_line() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let target = format!("udp://{}", collector.local_addr().unwrap());
    let backend = Backend::start("b1");
    let (_desired, _proxy, addr) = start(&backend, &target, "json");
    assert_eq!(
        http_get(addr, "shop.test", "/over-udp").unwrap().status,
        200
    );
    let mut buf = [0u8; 65536];
    let found = wait_until(Duration::from_secs(10), || {
        let Ok(n) = collector.recv(&mut buf) else {
            return false;
        };
        let line: Value = serde_json::from_slice(&buf[..n]).unwrap();
        line["path"] == "/over-udp"
    });
    assert!(found);
}

#[test]
fn tcp_target_gets_a_stream_of_lines_and_is_reconnected() {
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp://{}", collector.local_addr().unwrap());
    let backend = Backend::start("b1");
    let (_desired, _proxy, addr) = start(&backend, &target, "json");
    let read_until = |path: &str| {
        let (conn, _) = collector.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "the collector's connection closed");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["path"] == path {
                return;
            }
        }
    };
    assert_eq!(
        http_get(addr, "shop.test", "/over-tcp").unwrap().status,
        200
    );
    read_until("/over-tcp");
    // The collector dropped that connection: later lines come on a new one. Requests keep
    // going while the proxy notices (a write to a closed connection fails only on the next).
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let sender = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !stopped.load(Ordering::SeqCst) {
            assert_eq!(http_get(addr, "shop.test", "/again").unwrap().status, 200);
            // Paced, not a readiness wait: a stream of requests while the proxy reconnects.
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    read_until("/again");
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
}

#[test]
fn unix_datagram_target_gets_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let collector = UnixDatagram::bind(&path).unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let backend = Backend::start("b1");
    let target = format!("unix:{}", path.display());
    let (_desired, _proxy, addr) = start(&backend, &target, "text");
    assert_eq!(
        http_get(addr, "shop.test", "/over-unix").unwrap().status,
        200
    );
    let mut buf = [0u8; 65536];
    assert!(wait_until(Duration::from_secs(10), || {
        let Ok(n) = collector.recv(&mut buf) else {
            return false;
        };
        String::from_utf8_lossy(&buf[..n]).contains(" path=/over-unix ")
    }));
}

#[test]
fn the_file_is_reopened_after_sigusr1() {
    let backend = Backend::start("b1");
    let (desired, proxy, addr) = start(&backend, "access.log", "json");
    let log = desired.path().join("access.log");
    let rotated = desired.path().join("access.log.1");
    assert_eq!(http_get(addr, "shop.test", "/before").unwrap().status, 200);
    json_line(&log, "/before");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(proxy.pid()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    // Until the workers have reopened, lines still go to the renamed file; then to a new file
    // at the path.
    assert!(wait_until(Duration::from_secs(10), || {
        assert_eq!(http_get(addr, "shop.test", "/after").unwrap().status, 200);
        lines(&log).iter().any(|l| l.contains("\"/after\""))
    }));
    assert!(lines(&rotated).iter().any(|l| l.contains("\"/before\"")));
    assert!(!lines(&log).iter().any(|l| l.contains("\"/before\"")));
    // The workers survived the signal.
    assert_eq!(http_get(addr, "shop.test", "/still").unwrap().status, 200);
}

#[test]
fn a_blocked_target_drops_and_counts_lines_without_slowing_requests() {
    // A collector that accepts and never reads: the kernel's buffers fill, then the proxy's.
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp://{}", collector.local_addr().unwrap());
    let held = std::thread::spawn(move || collector.accept().map(|(conn, _)| conn));
    let backend = Backend::start("b1");
    let (_desired, proxy, addr) = start(&backend, &target, "json");
    let _held = held.join().unwrap().unwrap();
    // A long path makes long lines, so the buffers fill in fewer requests.
    let long = format!("/{}", "x".repeat(2000));
    let request = format!("GET {long} HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    let mut conn = connect(addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut sent, mut slowest) = (0, Duration::ZERO);
    let mut dropped = 0;
    while Instant::now() < deadline && sent < 20_000 {
        let start = Instant::now();
        conn.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_answer(&mut conn).unwrap().status, 200);
        slowest = slowest.max(start.elapsed());
        sent += 1;
        if sent % 500 == 0 {
            dropped = metric(&proxy, "access_log.dropped");
            if dropped > 0 {
                break;
            }
        }
    }
    assert!(dropped > 0, "nothing dropped after {sent} requests");
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?}"
    );
    // And the proxy still answers at once.
    let start = Instant::now();
    assert_eq!(http_get(addr, "shop.test", "/after").unwrap().status, 200);
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// A listener with `request_id_header` gives the backend each request's id, the one its log
/// line carries, in place of any the client sent; a listener without it passes the client's
/// field on like any other and keeps its own id to the log.
#[test]
fn the_backend_gets_the_request_id_its_log_line_carries() {
    let backend = Backend::start("b1");
    let plain = weir_testkit::free_addr();
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http, request_id_header: X-Request-Id }}
  - {{ name: plain, address: "{plain}", protocol: http }}
clusters:
  - id: shop
    backends: [{{ id: b1, address: "{}" }}]
frontends:
  - {{ listener: web, hostname: shop.test, cluster: shop }}
  - {{ listener: plain, hostname: shop.test, cluster: shop }}
"#,
        backend.addr
    );
    let toml = "[access_log]\ntarget = \"access.log\"\nformat = \"json\"\n";
    let (desired, _proxy, web) = proxy_on_yaml(&yaml, Some(toml));
    let log = desired.path().join("access.log");
    for addr in [web, plain] {
        assert!(wait_until(Duration::from_secs(20), || {
            http_get(addr, "shop.test", "/ready").is_ok_and(|a| a.status == 200)
        }));
    }

    // Two requests on one connection, the first with a forged id: each gets its own.
    let mut conn = connect(web);
    let mut ids = Vec::new();
    for (path, sent) in [("/first", "X-Request-Id: forged\r\n"), ("/second", "")] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n{sent}\r\n");
        conn.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_answer(&mut conn).unwrap().status, 200);
        let seen = backend.last_seen();
        assert_eq!(seen.path(), path);
        assert_eq!(
            seen.head.matches("X-Request-Id:").count(),
            1,
            "{}",
            seen.head
        );
        let id = seen.header("x-request-id").unwrap().to_owned();
        assert_eq!(json_line(&log, path)["request_id"], id.as_str());
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);

    let answer = http_raw(
        plain,
        b"GET /plain HTTP/1.1\r\nHost: shop.test\r\nX-Request-Id: theirs\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(backend.last_seen().header("x-request-id"), Some("theirs"));
    let line = json_line(&log, "/plain");
    assert!(line["request_id"].as_str().is_some_and(|id| id.len() == 16));
}
