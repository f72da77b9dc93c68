//! Load balancing end to end: each algorithm's distribution, weights, backups, failover when a
//! backend refuses, and recovery when it comes back.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::{proxy_on_yaml, Desired, Proxy};
use weir_testkit::{dead_addr, http_get, wait_until, Backend};

fn start(yaml: &str) -> (Desired, Proxy, SocketAddr) {
    let (desired, proxy, addr) = proxy_on_yaml(yaml, None);
    assert!(wait_until(Duration::from_secs(20), || http_get(
        addr, "lb.test", "/"
    )
    .is_ok_and(|a| a.status == 200)));
    (desired, proxy, addr)
}

fn yaml(lb: &str, backends: &[(&str, SocketAddr, u32, bool)]) -> String {
    let mut list = String::new();
    for (id, addr, weight, backup) in backends {
        list.push_str(&format!(
            "      - {{ id: {id}, address: \"{addr}\", weight: {weight}, backup: {backup} }}\n"
        ));
    }
    format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http }}
clusters:
  - id: lb
    load_balancing: {lb}
    backends:
{list}
frontends:
  - {{ listener: web, hostname: lb.test, cluster: lb }}
"#
    )
}

fn spread(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let answer = http_get(addr, "lb.test", "/").unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        *counts.entry(answer.text()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn weighted_round_robin_is_exact() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (_d, _p, addr) = start(&yaml(
        "round_robin",
        &[("a", a.addr, 200, false), ("b", b.addr, 100, false)],
    ));
    // Warm-up requests shifted the rotation; a multiple of the cycle stays exact.
    let counts = spread(addr, 300);
    assert_eq!((counts["a"], counts["b"]), (200, 100), "{counts:?}");
}

#[test]
fn random_least_connections_and_power_of_two_use_every_backend() {
    for lb in ["random", "least_connections", "power_of_two"] {
        let servers = [
            Backend::start("a"),
            Backend::start("b"),
            Backend::start("c"),
        ];
        let backends: Vec<(&str, SocketAddr, u32, bool)> = ["a", "b", "c"]
            .into_iter()
            .zip(&servers)
            .map(|(id, s)| (id, s.addr, 100, false))
            .collect();
        let (_d, _p, addr) = start(&yaml(lb, &backends));
        let counts = spread(addr, 300);
        for id in ["a", "b", "c"] {
            let n = counts.get(id).copied().unwrap_or(0);
            assert!((50..=150).contains(&n), "{lb}: {counts:?}");
        }
    }
}

/// A backend named `slow` that answers at once until `hold` is set, then holds every request
/// until `hold` is cleared.
fn holding_backend() -> (Backend, Arc<AtomicBool>) {
    let hold = Arc::new(AtomicBool::new(false));
    let gate = hold.clone();
    let slow = Backend::with_handler(
        "slow",
        Arc::new(move |_, stream| {
            let started = Instant::now();
            while gate.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                .is_ok()
        }),
    );
    (slow, hold)
}

#[test]
fn least_connections_steers_around_a_busy_backend() {
    let (slow, hold) = holding_backend();
    let fast = Backend::start("fast");
    let (_d, _p, addr) = start(&yaml(
        "least_connections",
        &[
            ("slow", slow.addr, 100, false),
            ("fast", fast.addr, 100, false),
        ],
    ));
    hold.store(true, Ordering::SeqCst);
    // Requests one after another, each on its own thread: one the slow backend got stays in
    // flight there until the end, one the fast backend got is answered before the next goes.
    let (slow_before, mut held) = (slow.request_count(), Vec::new());
    for i in 0..30 {
        let (slow_now, fast_before) = (slow.request_count(), fast.request_count());
        let request = std::thread::spawn(move || http_get(addr, "lb.test", "/").unwrap());
        let arrived = wait_until(Duration::from_secs(10), || {
            slow.request_count() + fast.request_count() > slow_now + fast_before
        });
        assert!(arrived, "request {i} reached no backend");
        if fast.request_count() > fast_before {
            assert_eq!(request.join().unwrap().text(), "fast");
        } else {
            held.push(request);
        }
    }
    let busy = slow.request_count() - slow_before;
    hold.store(false, Ordering::SeqCst);
    for request in held {
        assert_eq!(request.join().unwrap().text(), "slow");
    }
    // Round robin would give it 15; least connections one at most (the first, on a tie).
    assert!(busy <= 1, "the busy backend got {busy} of 30");
}

/// Active health checks written in YAML: a backend that fails its check path leaves rotation
/// although it answers traffic, and comes back once the check passes again.
#[test]
fn health_checks_from_yaml_take_a_backend_out_and_back() {
    let healthy = Arc::new(AtomicBool::new(true));
    let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (flag, seen) = (healthy.clone(), checks.clone());
    let checked = Backend::with_handler(
        "checked",
        Arc::new(move |req, stream| {
            let check = req.head.starts_with("GET /ready ");
            if check {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let status = if check && !flag.load(Ordering::SeqCst) {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\nchecked");
            stream.write_all(answer.as_bytes()).is_ok()
        }),
    );
    let other = Backend::start("other");
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http }}
clusters:
  - id: lb
    health_check:
      path: /ready
      interval: 100ms
      timeout: 500ms
      healthy_threshold: 2
      unhealthy_threshold: 2
    backends:
      - {{ id: checked, address: "{}" }}
      - {{ id: other, address: "{}" }}
frontends:
  - {{ listener: web, hostname: lb.test, cluster: lb }}
"#,
        checked.addr, other.addr
    );
    let (_d, _p, addr) = start(&yaml);
    assert!(spread(addr, 10).contains_key("checked"));
    assert!(wait_until(Duration::from_secs(10), || checks
        .load(Ordering::SeqCst)
        >= 2));
    healthy.store(false, Ordering::SeqCst);
    // Out of rotation: ten requests in a row all go to the other backend.
    assert!(wait_until(Duration::from_secs(10), || spread(addr, 10)
        .get("other")
        == Some(&10)));
    assert_eq!(spread(addr, 20).get("other"), Some(&20));
    healthy.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || spread(addr, 4)
        .contains_key("checked")));
}

#[test]
fn weighted_random_follows_weights() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (_d, _p, addr) = start(&yaml(
        "random",
        &[("a", a.addr, 400, false), ("b", b.addr, 100, false)],
    ));
    let counts = spread(addr, 500);
    let share = counts["a"] as f64 / 500.0;
    assert!((0.7..0.9).contains(&share), "{counts:?}");
}

#[test]
fn failover_to_other_backends_then_recovery() {
    let good = Backend::start("good");
    let down_addr = dead_addr();
    let (_d, _p, addr) = start(&yaml(
        "round_robin",
        &[
            ("down", down_addr, 100, false),
            ("good", good.addr, 100, false),
        ],
    ));
    // Every request succeeds although one backend refuses: the connect is retried.
    let counts = spread(addr, 20);
    assert_eq!(counts.get("good"), Some(&20), "{counts:?}");
    // The backend comes back; after its backoff it gets traffic again.
    let back = Backend::start_at(down_addr, "down");
    assert!(wait_until(Duration::from_secs(15), || {
        http_get(addr, "lb.test", "/").is_ok_and(|a| a.text() == "down")
    }));
    drop(back);
}

#[test]
fn backup_serves_only_while_no_primary_is_up() {
    let backup = Backend::start("backup");
    let primary_addr = dead_addr();
    // The primary refuses: the backup takes every request, and none fails.
    let (_d, _p, addr) = start(&yaml(
        "round_robin",
        &[
            ("primary", primary_addr, 100, false),
            ("backup", backup.addr, 100, true),
        ],
    ));
    assert_eq!(spread(addr, 10).get("backup"), Some(&10));
    // The primary comes back: once it is up again the backup gets nothing.
    let _primary = Backend::start_at(primary_addr, "primary");
    assert!(wait_until(Duration::from_secs(15), || {
        http_get(addr, "lb.test", "/").is_ok_and(|a| a.text() == "primary")
    }));
    assert_eq!(spread(addr, 10).get("primary"), Some(&10));
}
