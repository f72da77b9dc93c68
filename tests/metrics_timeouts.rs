//! The timeout counters end to end: a real proxy with short timeouts, clients and backends that
//! make each kind of timeout happen a known number of times, and the counters read back both
//! through `weir metrics --json` and through a Prometheus scrape of the admin endpoint parsed
//! by `prometheus_client`. Each kind is provoked a different number of times, so two counters
//! swapped or merged cannot pass.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use util::control::Gate;
use util::metrics::{counter, metrics_json, scrape, value, Samples};
use util::{proxy_on_yaml, wait_for_port, Proxy};
use weir_testkit::{
    closed_by_peer, connect, free_addr, http_get, read_answer, wait_until, Backend,
};

/// How many times each kind is provoked.
const RESPONSE: u64 = 2;
const BODY: u64 = 3;
const REQUEST: u64 = 1;
const IDLE: u64 = 4;

/// The counters under test: the name `weir metrics` reports, and its Prometheus family.
const COUNTERS: [(&str, &str); 5] = [
    ("timeouts.response", "weir_timeouts_response_total"),
    ("http.body_timeouts", "weir_http_body_timeouts_total"),
    ("timeouts.request", "weir_timeouts_request_total"),
    ("timeouts.idle", "weir_timeouts_idle_total"),
    ("timeouts.connect", "weir_timeouts_connect_total"),
];

/// Each counter's value now, read both ways.
fn read_all(proxy: &Proxy, admin: SocketAddr) -> Vec<(u64, f64)> {
    let json = metrics_json(proxy, &[]);
    let (samples, types): (Samples, _) = scrape(admin);
    COUNTERS
        .iter()
        .map(|(name, family)| {
            // The family is typed `counter` (the parser names it without `_total`).
            let base = family.trim_end_matches("_total");
            assert_eq!(
                types.get(base).map(String::as_str),
                Some("counter"),
                "{family}"
            );
            (counter(&json, name), value(&samples, family, &[]))
        })
        .collect()
}

#[test]
fn each_timeout_kind_is_counted_exactly_in_weir_metrics_and_in_prometheus() {
    // `slow` never answers (its requests wait at the gate for good); `ok` answers at once.
    let gate = Gate::start();
    let ok = Backend::start("ok");
    let admin = free_addr();
    let yaml = format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:{{port}}\n    protocol: http\n\
         \x20   request_timeout: 400ms\n    front_timeout: 400ms\n\
         \x20   request_body_timeout: 400ms\n\
         clusters:\n  - id: slow\n    response_timeout: 400ms\n    backends:\n\
         \x20     - {{ id: gate, address: \"{}\" }}\n\
         \x20 - id: ok\n    backends:\n      - {{ id: ok-1, address: \"{}\" }}\n\
         frontends:\n  - {{ listener: web, hostname: slow.test, cluster: slow }}\n\
         \x20 - {{ listener: web, hostname: ok.test, cluster: ok }}\n",
        gate.addr, ok.addr
    );
    let toml = format!("[metrics]\nprometheus = \"{admin}\"\n");
    let (_desired, proxy, addr) = proxy_on_yaml(&yaml, Some(&toml));
    assert!(wait_for_port(admin), "the admin endpoint never listened");
    // Readiness polls close their connections (`Connection: close`): they time nothing out.
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "ok.test", "/").is_ok_and(|a| a.status == 200)
    }));
    let before = read_all(&proxy, admin);

    // Response timeouts: the backend has the request and never answers: 504.
    for _ in 0..RESPONSE {
        let started = Instant::now();
        assert_eq!(http_get(addr, "slow.test", "/").unwrap().status, 504);
        assert!(started.elapsed() >= Duration::from_millis(350));
    }
    // Body timeouts: a head promising 100 bytes, then 10 of them and silence: 408.
    for _ in 0..BODY {
        let mut conn = connect(addr);
        conn.write_all(
            b"POST /upload HTTP/1.1\r\nHost: ok.test\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .unwrap();
        assert_eq!(read_answer(&mut conn).unwrap().status, 408);
    }
    // Request timeouts: half a head, never finished: 408, then the close.
    for _ in 0..REQUEST {
        let mut conn = connect(addr);
        conn.write_all(b"GET / HTTP/1.1\r\nHost: ok.te").unwrap();
        assert_eq!(read_answer(&mut conn).unwrap().status, 408);
    }
    // Idle timeouts: one request answered on a keep-alive connection, then nothing: the
    // proxy closes it without a word.
    for _ in 0..IDLE {
        let mut conn = connect(addr);
        conn.write_all(b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")
            .unwrap();
        assert_eq!(read_answer(&mut conn).unwrap().status, 200);
        closed_by_peer(&mut conn).unwrap();
    }

    let expected = [RESPONSE, BODY, REQUEST, IDLE, 0];
    // A worker counts a timeout before it answers or closes, so the counts are in already;
    // polled all the same, bounded, in case a scrape raced a worker's answer.
    let mut after = read_all(&proxy, admin);
    wait_until(Duration::from_secs(10), || {
        after = read_all(&proxy, admin);
        after
            .iter()
            .zip(&before)
            .zip(expected)
            .all(|((a, b), n)| a.0 - b.0 >= n)
    });
    for (((name, family), (a, b)), n) in
        COUNTERS.iter().zip(after.iter().zip(&before)).zip(expected)
    {
        assert_eq!(a.0 - b.0, n, "{name} in weir metrics");
        assert_eq!(a.1 - b.1, n as f64, "{family} in Prometheus");
    }
    // The 504s are counted as timeouts among the 5xx causes too.
    let json = metrics_json(&proxy, &[]);
    assert_eq!(counter(&json, "http.5xx.timeout"), RESPONSE);
    drop(gate);
}
