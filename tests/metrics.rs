//! What workers count and how it gets out: `weir metrics` (text, `--json`, `--cluster`) against
//! the traffic a test sent through a real proxy with two workers, statsd datagrams caught on a
//! test UDP socket, and a WebSocket handshake's latency sample.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::control::*;
use util::metrics::{counter, metrics_json};
use util::Proxy;
use weir_schema::metric_names::LATENCY_BOUNDS_US;
use weir_testkit::{
    connect, dead_addr, free_addr, http_get, read_answer, wait_until, websocket_echo, Backend,
    StuckListener,
};

/// Answers every request `500`, keeping the connection.
fn failing_backend() -> Backend {
    Backend::with_handler(
        "broken",
        Arc::new(|_, stream| {
            stream
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nnope")
                .is_ok()
        }),
    )
}

/// Two clusters on one listener: `app.test` → `app` (b0 answers 200, b1 answers 500) and
/// `other.test` → `other` (b0 answers 200).
struct Site {
    proxy: Proxy,
    addr: SocketAddr,
    ok: Backend,
    broken: Backend,
    _other: Backend,
}

fn site(extra: &[&str]) -> Site {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args);
    let (ok, broken, other) = (Backend::start("ok"), failing_backend(), Backend::start("o"));
    let addr = free_addr();
    let mut c = client(&proxy);
    route(&mut c, addr, "app.test", &[ok.addr, broken.addr]);
    for change in [
        add_cluster("other"),
        add_backend("other", "b0", other.addr),
        add_frontend(addr, "other.test", "other"),
    ] {
        assert!(is_ok(&apply(&mut c, change)));
    }
    Site {
        proxy,
        addr,
        ok,
        broken,
        _other: other,
    }
}

/// Sends `app` requests to `app.test`, `other` to `other.test` and `unknown` to a host no
/// route has, each on a new connection (so both workers get some); returns the statuses seen.
fn traffic(site: &Site, app: usize, other: usize, unknown: usize) -> BTreeMap<u16, usize> {
    let mut seen = BTreeMap::new();
    for (host, n) in [
        ("app.test", app),
        ("other.test", other),
        ("nobody.test", unknown),
    ] {
        for _ in 0..n {
            let status = http_get(site.addr, host, "/").unwrap().status;
            *seen.entry(status).or_default() += 1;
        }
    }
    seen
}

#[test]
fn weir_metrics_counts_match_the_traffic_per_class_cluster_and_backend() {
    let site = site(&[]);
    let seen = traffic(&site, 40, 6, 5);
    let (ok, broken) = (site.ok.request_count(), site.broken.request_count());
    assert_eq!(ok + broken, 40);
    assert!(
        ok > 0 && broken > 0,
        "both backends served: {ok} / {broken}"
    );
    assert_eq!(seen.get(&200), Some(&(ok + 6)));
    assert_eq!(seen.get(&500), Some(&broken));
    assert_eq!(seen.get(&404), Some(&5));

    let m = metrics_json(&site.proxy, &[]);
    let n = |x: usize| x as u64;
    // Worker-wide, summed over both workers.
    assert_eq!(counter(&m, "http.requests"), 51);
    assert_eq!(counter(&m, "http.responses.2xx"), n(ok + 6));
    assert_eq!(counter(&m, "http.responses.5xx"), n(broken));
    assert_eq!(counter(&m, "http.responses.4xx"), 5);
    assert_eq!(counter(&m, "http.5xx.backend"), n(broken));
    assert_eq!(counter(&m, "http.5xx.connect_failed"), 0);
    // Per cluster: Weir's own 404 belongs to no cluster.
    assert_eq!(counter(&m, "cluster.app.requests"), 40);
    assert_eq!(counter(&m, "cluster.app.responses.2xx"), n(ok));
    assert_eq!(counter(&m, "cluster.app.responses.5xx"), n(broken));
    assert_eq!(counter(&m, "cluster.app.responses.4xx"), 0);
    assert_eq!(counter(&m, "cluster.other.requests"), 6);
    assert_eq!(counter(&m, "cluster.other.responses.2xx"), 6);
    // Per backend.
    assert_eq!(counter(&m, "backend.app/b0.requests"), n(ok));
    assert_eq!(counter(&m, "backend.app/b0.responses.2xx"), n(ok));
    assert_eq!(counter(&m, "backend.app/b0.responses.5xx"), 0);
    assert_eq!(counter(&m, "backend.app/b1.requests"), n(broken));
    assert_eq!(counter(&m, "backend.app/b1.responses.5xx"), n(broken));
    assert_eq!(counter(&m, "backend.app/b1.responses.2xx"), 0);
    // Up in every worker; nothing in flight.
    assert_eq!(counter(&m, "backend.app/b0.up"), 1);
    assert_eq!(counter(&m, "backend.app/b0.active"), 0);

    // Histograms: one sample per answered request, buckets that add up to the count.
    let bounds: Vec<u64> = serde_json::from_value(m["latency_bounds_us"].clone()).unwrap();
    assert_eq!(bounds, LATENCY_BOUNDS_US);
    for (name, count) in [
        ("cluster.app.latency", 40),
        ("cluster.app.first_byte_latency", 40),
        ("cluster.other.latency", 6),
        ("backend.app/b0.latency", n(ok)),
        ("backend.app/b1.first_byte_latency", n(broken)),
    ] {
        let h = &m["histograms"][name];
        assert_eq!(h["count"], count, "{name}: {h}");
        let buckets: Vec<u64> = serde_json::from_value(h["buckets"].clone()).unwrap();
        assert_eq!(buckets.len(), LATENCY_BOUNDS_US.len() + 1, "{name}");
        assert_eq!(buckets.iter().sum::<u64>(), count, "{name}: {h}");
        // Local requests: well under a second each, and quantiles inside the bounds.
        assert!(
            h["sum_us"].as_u64().unwrap() < count * 1_000_000,
            "{name}: {h}"
        );
        let p99 = h["p99_seconds"].as_f64().unwrap();
        assert!(p99 > 0.0 && p99 < 1.0, "{name}: {h}");
    }

    // The text form: the same counters as `name value` lines, then a latency table.
    let out = site.proxy.weir(&["metrics"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (counters, table) = text.split_once("\n\n").unwrap();
    assert!(
        counters.lines().any(|l| l == "cluster.app.requests 40"),
        "{text}"
    );
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["latency", "count", "mean", "p50", "p99"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("cluster.app.latency "))
        .unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("40"), "{table}");
}

#[test]
fn weir_metrics_cluster_keeps_one_clusters_names_and_its_backends() {
    let site = site(&[]);
    traffic(&site, 4, 3, 1);
    let m = metrics_json(&site.proxy, &["--cluster", "other"]);
    let names: Vec<&String> = m["counters"]
        .as_object()
        .unwrap()
        .keys()
        .chain(m["histograms"].as_object().unwrap().keys())
        .collect();
    assert!(!names.is_empty());
    for name in &names {
        assert!(
            name.starts_with("cluster.other.") || name.starts_with("backend.other/"),
            "{name} is not cluster other's"
        );
    }
    assert_eq!(counter(&m, "cluster.other.requests"), 3);
    assert_eq!(counter(&m, "backend.other/b0.requests"), 3);
    assert_eq!(m["histograms"]["cluster.other.latency"]["count"], 3);
    // An unknown cluster is an error, not an empty answer.
    let out = site.proxy.weir(&["metrics", "--cluster", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

/// Reads every datagram the socket gets until `done` holds for the lines so far (or 15 s),
/// then for `grace` more: the rest of a flush split over several datagrams.
fn collect_statsd(
    socket: &UdpSocket,
    grace: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut lines = Vec::new();
    let mut buf = [0u8; 65536];
    let mut deadline = Instant::now() + Duration::from_secs(15);
    let mut finished = false;
    while Instant::now() < deadline {
        if !finished && done(&lines) {
            finished = true;
            deadline = Instant::now() + grace;
        }
        if let Ok(n) = socket.recv(&mut buf) {
            assert!(n <= 1432, "a datagram of {n} bytes");
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            lines.extend(text.lines().map(str::to_owned));
        }
    }
    lines
}

/// What the lines say for `name`: counter deltas summed, timer samples counted (each line
/// standing for 1/rate samples).
fn statsd_total(lines: &[String], name: &str) -> f64 {
    lines
        .iter()
        .filter_map(|l| {
            let (n, rest) = l.split_once(':')?;
            (n == name).then_some(rest)
        })
        .map(|rest| {
            let parts: Vec<&str> = rest.split('|').collect();
            match parts[1] {
                "c" => parts[0].parse::<f64>().unwrap(),
                "ms" => parts
                    .get(2)
                    .map_or(1.0, |r| 1.0 / r[1..].parse::<f64>().unwrap()),
                other => panic!("{l:?}: {other}", l = rest),
            }
        })
        .sum()
}

#[test]
fn statsd_datagrams_are_valid_lines_that_add_up_to_the_traffic() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[metrics]\nstatsd = \"{}\"\nprefix = \"edge\"\n",
            sink.local_addr().unwrap()
        ),
    );
    let site = site(&["--config", config.to_str().unwrap()]);
    traffic(&site, 30, 0, 4);
    let broken = site.broken.request_count() as f64;
    let lines = collect_statsd(&sink, Duration::from_millis(300), |lines| {
        statsd_total(lines, "edge.http.requests") >= 34.0
            && statsd_total(lines, "edge.cluster.app.latency") >= 30.0
    });
    let valid = regex::Regex::new(r"^[a-zA-Z0-9_.\-/]+:[0-9.]+\|(c|g|ms)(\|@[0-9.]+)?$").unwrap();
    for line in &lines {
        assert!(valid.is_match(line), "not a statsd line: {line:?}");
    }
    let total = |name| statsd_total(&lines, name);
    assert_eq!(total("edge.http.requests"), 34.0);
    assert_eq!(total("edge.cluster.app.requests"), 30.0);
    assert_eq!(total("edge.http.responses.4xx"), 4.0);
    assert_eq!(total("edge.backend.app/b1.responses.5xx"), broken);
    // Each histogram sample counted once, over both workers' datagrams.
    assert!((total("edge.cluster.app.latency") - 30.0).abs() < 1e-6);
    // Gauges come per worker, so two workers do not overwrite each other's.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("edge.worker.0.connections.active:")),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("edge.worker.1.backend.app/b0.up:1|g")));
    // Nothing was dropped on the way.
    let m = metrics_json(&site.proxy, &[]);
    assert_eq!(counter(&m, "statsd.dropped"), 0);
    // Quiet now: the next flushes carry no counter deltas, only the gauges.
    let later = collect_statsd(&sink, Duration::from_millis(2500), |_| true);
    assert!(!later.is_empty());
    assert!(later.iter().all(|l| l.ends_with("|g")), "{later:?}");
}

#[test]
fn weir_status_shows_each_workers_buffers() {
    let site = site(&[]);
    let mut c = client(&site.proxy);
    let s = status(&mut c);
    assert_eq!(s.workers.len(), 2);
    for w in &s.workers {
        assert_eq!(w.buffers_in_use, 0, "{w:?}");
        assert_eq!(w.buffers_max, 16 * 1024, "{w:?}");
    }
    let out = site.proxy.weir(&["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("buffers"), "{text}");
    assert!(text.contains("0/16384"), "{text}");
}

#[test]
fn weirs_own_5xx_are_counted_by_cause_and_connect_timeouts_by_kind() {
    let stuck = StuckListener::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[timeouts]\nconnect_ms = 200\n");
    let proxy = Proxy::start(&["--workers", "1", "--config", config.to_str().unwrap()]);
    let addr = free_addr();
    let mut c = client(&proxy);
    route(&mut c, addr, "dead.test", &[dead_addr()]);
    for change in [
        add_cluster("slow"),
        add_backend("slow", "b0", stuck.addr),
        add_frontend(addr, "slow.test", "slow"),
        add_cluster("empty"),
        add_frontend(addr, "empty.test", "empty"),
    ] {
        assert!(is_ok(&apply(&mut c, change)));
    }
    assert_eq!(http_get(addr, "dead.test", "/").unwrap().status, 502);
    assert_eq!(http_get(addr, "slow.test", "/").unwrap().status, 502);
    assert_eq!(http_get(addr, "empty.test", "/").unwrap().status, 503);
    let m = metrics_json(&proxy, &[]);
    assert_eq!(counter(&m, "http.5xx.connect_failed"), 2);
    assert_eq!(counter(&m, "http.5xx.unavailable"), 1);
    assert_eq!(counter(&m, "http.5xx.bad_response"), 0);
    assert_eq!(counter(&m, "http.5xx.backend"), 0);
    assert_eq!(counter(&m, "http.responses.5xx"), 3);
    assert!(counter(&m, "timeouts.connect") >= 1, "{m}");
    assert_eq!(counter(&m, "timeouts.response"), 0);
    // Weir's answers count for the cluster they were routed to, never for a backend.
    assert_eq!(counter(&m, "cluster.app.responses.5xx"), 1);
    assert_eq!(counter(&m, "cluster.empty.responses.5xx"), 1);
    assert_eq!(counter(&m, "backend.app/b0.responses.5xx"), 0);
    assert_eq!(m["histograms"]["cluster.slow.latency"]["count"], 1);
}

/// A WebSocket exchange ends at its `101`: that is one latency sample, time to first byte and
/// total, for the cluster and the backend, taken while the tunnel is still open. The tunnel's
/// lifetime after it is a session's, never a request latency.
#[test]
fn a_websocket_upgrade_is_one_latency_sample_up_to_its_101_and_the_tunnel_is_none() {
    let origin = websocket_echo();
    let plain = Backend::start("plain");
    let yaml = format!(
        "listeners:\n  - {{ name: web, address: \"127.0.0.1:{{port}}\", protocol: http }}\n\
         clusters:\n  - id: ws\n    backends: [{{ id: ws-1, address: \"{}\" }}]\n\
         \x20 - id: plain\n    backends: [{{ id: p-1, address: \"{}\" }}]\n\
         frontends:\n  - {{ listener: web, hostname: ws.test, cluster: ws }}\n\
         \x20 - {{ listener: web, hostname: plain.test, cluster: plain }}\n",
        origin.addr, plain.addr
    );
    let (_desired, proxy, addr) = util::proxy_on_yaml(&yaml, None);
    // Ready once the plain route answers; the ws cluster has seen nothing yet.
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "plain.test", "/").is_ok_and(|a| a.status == 200)
    }));
    let names = [
        "cluster.ws.latency",
        "cluster.ws.first_byte_latency",
        "backend.ws/ws-1.latency",
        "backend.ws/ws-1.first_byte_latency",
    ];
    let counts = |m: &Value| -> Vec<u64> {
        names
            .iter()
            .map(|n| {
                m["histograms"][n]["count"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{n}: {m}"))
            })
            .collect()
    };
    assert_eq!(counts(&metrics_json(&proxy, &[])), [0, 0, 0, 0]);

    let opened = Instant::now();
    let mut conn = connect(addr);
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let answer = read_answer(&mut conn).unwrap();
    assert_eq!(answer.status, 101);
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // The tunnel works: a masked text frame "hello" (RFC 6455 5.7) comes back.
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    conn.write_all(&frame).unwrap();
    let mut back = [0u8; 11];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
    // Counted while the tunnel is open: the sample was taken at the 101.
    let m = metrics_json(&proxy, &[]);
    assert_eq!(counts(&m), [1, 1, 1, 1], "{m}");
    assert_eq!(counter(&m, "websocket.upgrades"), 1);

    // Keep the tunnel a while, then close it and wait for the proxy to end the session.
    let tunnel = Duration::from_millis(1200);
    while opened.elapsed() < tunnel {
        conn.write_all(&frame).unwrap();
        conn.read_exact(&mut back).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(conn);
    let mut m = metrics_json(&proxy, &[]);
    assert!(wait_until(Duration::from_secs(10), || {
        m = metrics_json(&proxy, &[]);
        counter(&m, "connections.active") == 0
    }));
    // Still one sample each, and it measures the handshake, not the tunnel's 1.2 s.
    assert_eq!(counts(&m), [1, 1, 1, 1], "{m}");
    for name in names {
        let sum_us = m["histograms"][name]["sum_us"].as_u64().unwrap();
        assert!(sum_us < 1_000_000, "{name}: {sum_us} us, the tunnel's time");
    }
}
