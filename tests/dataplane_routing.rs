//! Data plane end to end, through the real `weir proxy` binary: routing (exact, wildcard,
//! prefix, newest wins), keep-alive on both sides, pipelining, chunked bodies both ways,
//! `Expect: 100-continue`, large streamed bodies, and route changes under a running request
//! loop.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use util::control::{add_backend, add_cluster, apply, client, is_ok};
use util::{curl, proxy_on_yaml, Desired, Proxy};
use weir_schema::{Change, ClusterId, Frontend};
use weir_testkit::{connect, http_get, read_answer, wait_until, Backend, Seen};

/// Starts a proxy on `yaml` (with `{port}` replaced by a free port) and waits until
/// `host` answers `200` through it (the listener may accept a moment before its routes are
/// in, and answer 404 meanwhile).
fn start(yaml: &str, host: &str) -> (Desired, Proxy, SocketAddr) {
    let (desired, proxy, addr) = proxy_on_yaml(yaml, None);
    assert!(
        wait_until(Duration::from_secs(20), || http_get(addr, host, "/")
            .is_ok_and(|a| a.status == 200)),
        "the proxy never served {host}"
    );
    (desired, proxy, addr)
}

fn one_origin_yaml(origin: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
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
    )
}

#[test]
fn routes_by_exact_host_wildcard_and_longest_prefix() {
    let (a, b, c) = (
        Backend::start("exact"),
        Backend::start("api"),
        Backend::start("wildcard"),
    );
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
clusters:
  - id: a
    backends: [{{ id: a1, address: "{}" }}]
  - id: b
    backends: [{{ id: b1, address: "{}" }}]
  - id: c
    backends: [{{ id: c1, address: "{}" }}]
frontends:
  - {{ listener: web, hostname: shop.test, path: /, cluster: a }}
  - {{ listener: web, hostname: shop.test, path: /api, cluster: b }}
  - {{ listener: web, hostname: "*.shop.test", cluster: c }}
"#,
        a.addr, b.addr, c.addr
    );
    let (_d, _proxy, addr) = start(&yaml, "shop.test");
    let body = |host: &str, path: &str| http_get(addr, host, path).unwrap().text();
    assert_eq!(body("shop.test", "/"), "exact");
    assert_eq!(body("Shop.Test:80", "/cart"), "exact");
    assert_eq!(body("shop.test", "/api/v1/items"), "api");
    assert_eq!(body("eu.shop.test", "/api"), "wildcard");
    assert_eq!(body("a.b.shop.test", "/"), "wildcard");
    let missing = http_get(addr, "shop.example", "/").unwrap();
    assert_eq!(missing.status, 404);
    // The origin saw the forwarding headers.
    let seen = b.last_seen();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-port"),
        Some(addr.port().to_string().as_str())
    );
    assert!(seen
        .header("forwarded")
        .is_some_and(|f| f.contains("for=127.0.0.1")));
}

#[test]
fn keep_alive_reuses_connections_on_both_sides() {
    let origin = Backend::start("hello");
    let (_d, proxy, addr) = start(&one_origin_yaml(origin.addr), "app.test");
    let before = origin.connection_count();
    let mut conn = connect(addr);
    for _ in 0..50 {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut conn).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "hello");
    }
    assert!(
        origin.connection_count() - before <= 1,
        "50 requests on one client connection used {} origin connections",
        origin.connection_count() - before
    );
    let metrics = client(&proxy).metrics().unwrap();
    let reused = metrics
        .counters
        .iter()
        .find(|c| c.name == "backends.connections_reused")
        .map_or(0, |c| c.value);
    assert!(reused >= 49, "{metrics:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Backend::with_handler(
        "echo-path",
        Arc::new(|req: &Seen, stream: &mut TcpStream| {
            let path = req.path().to_owned();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            );
            stream.write_all(answer.as_bytes()).is_ok()
        }),
    );
    let (_d, _proxy, addr) = start(&one_origin_yaml(origin.addr), "app.test");
    let mut conn = connect(addr);
    let batch: String = (0..10)
        .map(|i| format!("GET /{i} HTTP/1.1\r\nHost: app.test\r\n\r\n"))
        .collect();
    conn.write_all(batch.as_bytes()).unwrap();
    for i in 0..10 {
        assert_eq!(read_answer(&mut conn).unwrap().text(), format!("/{i}"));
    }
}

#[test]
fn chunked_bodies_in_both_directions() {
    let origin = Backend::with_handler(
        "upper",
        Arc::new(|req: &Seen, stream: &mut TcpStream| {
            let body = String::from_utf8_lossy(&req.body).to_uppercase();
            let mut answer = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for piece in body.as_bytes().chunks(7) {
                answer.push_str(&format!(
                    "{:x}\r\n{}\r\n",
                    piece.len(),
                    String::from_utf8_lossy(piece)
                ));
            }
            answer.push_str("0\r\n\r\n");
            stream.write_all(answer.as_bytes()).is_ok()
        }),
    );
    let (_d, _proxy, addr) = start(&one_origin_yaml(origin.addr), "app.test");
    // curl sends the body chunked and decodes the chunked answer.
    let out = curl(&[
        "-H",
        "Host: app.test",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "streamed through weir",
        &format!("http://{addr}/echo"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "STREAMED THROUGH WEIR"
    );
    assert_eq!(origin.last_seen().body, b"streamed through weir");
    assert_eq!(
        origin.last_seen().header("transfer-encoding"),
        Some("chunked")
    );
}

#[test]
fn expect_100_continue() {
    let origin = Backend::start("accepted");
    let (_d, _proxy, addr) = start(&one_origin_yaml(origin.addr), "app.test");
    let mut conn = connect(addr);
    conn.write_all(
        b"PUT /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_answer(&mut conn).unwrap().status, 100);
    conn.write_all(b"data").unwrap();
    let answer = read_answer(&mut conn).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(origin.last_seen().body, b"data");
    // curl does the same dance on its own.
    let out = curl(&[
        "-H",
        "Host: app.test",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "from curl",
        &format!("http://{addr}/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "accepted");
}

/// Peak resident memory (VmHWM) of the proxy's processes (the main process and every child),
/// summed, in KiB. The peak, not the current size: memory held during a transfer and given
/// back after it would not show in VmRSS read afterwards.
fn peak_rss_kib(proxy: &Proxy) -> u64 {
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        proxy.pid(),
        proxy.pid()
    ))
    .unwrap_or_default();
    children
        .split_whitespace()
        .chain(std::iter::once(proxy.pid().to_string().as_str()))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

#[test]
fn large_bodies_stream_without_growing_memory() {
    const SIZE: usize = 256 * 1024 * 1024;
    // The origin answers a GET with SIZE bytes and counts the bytes of a PUT.
    let origin = Backend::with_handler(
        "big",
        Arc::new(|req: &Seen, stream: &mut TcpStream| {
            if req.head.starts_with("GET") {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
                if stream.write_all(head.as_bytes()).is_err() {
                    return false;
                }
                let block = vec![b'w'; 1 << 20];
                for _ in 0..SIZE >> 20 {
                    if stream.write_all(&block).is_err() {
                        return false;
                    }
                }
                true
            } else {
                let body = req.body.len().to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).is_ok()
            }
        }),
    );
    let (_d, proxy, addr) = start(&one_origin_yaml(origin.addr), "app.test");
    let peak_before = peak_rss_kib(&proxy);
    // Download: read it all, counting.
    let mut conn = connect(addr);
    conn.write_all(b"GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while got < SIZE {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "download cut at {got}");
        got += n;
    }
    assert_eq!(got, SIZE);
    // Upload: the origin only counts (it holds the body; the proxy must not).
    let mut up = connect(addr);
    up.write_all(
        format!(
            "PUT /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
            64 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    let block = vec![b'u'; 1 << 20];
    for _ in 0..64 {
        up.write_all(&block).unwrap();
    }
    let answer = read_answer(&mut up).unwrap();
    assert_eq!(answer.text(), (64usize << 20).to_string());
    let growth = peak_rss_kib(&proxy).saturating_sub(peak_before);
    assert!(
        growth < 16 * 1024,
        "proxy peak RSS grew by {growth} KiB while streaming"
    );
}

#[test]
fn routes_change_under_a_running_request_loop_without_failures() {
    let (blue, green) = (Backend::start("blue"), Backend::start("green"));
    let (_d, proxy, addr) = start(&one_origin_yaml(blue.addr), "app.test");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let load = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let mut bodies = std::collections::BTreeSet::new();
        let mut conn = connect(addr);
        for _ in 0..50_000 {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            conn.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                .unwrap();
            let answer = read_answer(&mut conn).unwrap();
            statuses.push(answer.status);
            bodies.insert(answer.text());
        }
        (statuses, bodies)
    });
    assert!(wait_until(Duration::from_secs(10), || blue.request_count() > 50));
    let mut c = client(&proxy);
    let listener = addr;
    let old = Frontend {
        owner: None,
        listener,
        hostname: Some("app.test".into()),
        path: "/".into(),
        cluster: ClusterId("app".into()),
        certificate: None,
        options: Default::default(),
    };
    let new = Frontend {
        cluster: ClusterId("green".into()),
        ..old.clone()
    };
    // Make before break: the new route first (newest wins), then the old one goes.
    assert!(is_ok(&apply(&mut c, add_cluster("green"))));
    assert!(is_ok(&apply(
        &mut c,
        add_backend("green", "g1", green.addr)
    )));
    assert!(is_ok(&apply(&mut c, Change::AddFrontend(new))));
    assert!(wait_until(Duration::from_secs(10), || green
        .request_count()
        > 50));
    assert!(is_ok(&apply(&mut c, Change::RemoveFrontend(old))));
    let served_green = green.request_count();
    assert!(wait_until(Duration::from_secs(10), || green
        .request_count()
        > served_green + 50));
    stop.store(true, Ordering::SeqCst);
    let (statuses, bodies) = load.join().unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a request failed during the switch"
    );
    assert!(
        bodies.contains("blue") && bodies.contains("green"),
        "{bodies:?}"
    );
}
