//! Control-plane behaviour under real traffic: drains with a request in flight, crash
//! recovery under a request loop, load shared by workers, soft stop, SIGTERM (and its
//! `stop_ms` deadline), SIGINT and upgrade with requests in flight, and `weir metrics`. Needs
//! the worker's HTTP proxying.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::control::*;
use util::Proxy;
use weir_reconciler::client::Client;
use weir_schema::proto::{response::Content, ResponseStatus};
use weir_schema::{Change, Command, Request};
use weir_testkit::{connect, free_addr, http_get, read_answer, refuses, wait_until, Backend};

/// A proxy with `workers` workers, a command client on it, and a listener (its address last)
/// routing `app.test` to `backend`.
fn routed_proxy(workers: &str, backend: SocketAddr) -> (Proxy, Client, SocketAddr) {
    let proxy = Proxy::start(&["--workers", workers]);
    let addr = free_addr();
    let mut c = client(&proxy);
    route(&mut c, addr, "app.test", &[backend]);
    (proxy, c, addr)
}

fn remove_backend(id: &str, timeout_ms: u64) -> Request {
    Request::change(
        format!("rm-{id}"),
        Change::RemoveBackend {
            key: backend_key("app", id),
            drain_timeout: Some(Duration::from_millis(timeout_ms)),
        },
    )
}

#[test]
fn drain_reports_live_connections_then_ok_when_they_close() {
    let gate = Gate::start();
    let (_proxy, mut c, addr) = routed_proxy("2", gate.addr);
    let request = gate.hold(addr, "app.test");
    let mut progress = Vec::new();
    let mut released = false;
    let answer = c
        .call_with(&remove_backend("b0", 20_000), |r| {
            if let Some(Content::Drain(d)) = &r.content {
                progress.push(d.live_connections);
            }
            if !released {
                released = true;
                gate.release();
            }
        })
        .unwrap();
    assert_eq!(answer.status(), ResponseStatus::Ok, "{answer:?}");
    assert_eq!(progress.first(), Some(&1), "{progress:?}");
    assert_eq!(request.join().unwrap().unwrap().status, 200);
    // Removed at once: no backend left for new requests.
    assert!(c.query_state().unwrap().backends.is_empty());
}

#[test]
fn drain_times_out_with_a_failure_naming_the_count() {
    let gate = Gate::start();
    let (_proxy, mut c, addr) = routed_proxy("1", gate.addr);
    let request = gate.hold(addr, "app.test");
    let answer = c.call_with(&remove_backend("b0", 300), |_| {}).unwrap();
    assert_eq!(answer.status(), ResponseStatus::Failure);
    assert!(
        answer.message.contains("drain deadline"),
        "{}",
        answer.message
    );
    assert!(
        answer.message.contains("1 live connection"),
        "{}",
        answer.message
    );
    assert!(c.query_state().unwrap().backends.is_empty());
    // Past the deadline the backend is out of rotation, but its request is not cut off.
    gate.release();
    assert_eq!(request.join().unwrap().unwrap().status, 200);
}

#[test]
fn a_worker_killed_under_load_is_replaced_and_only_in_flight_requests_fail() {
    let backend = Backend::start("one");
    let (_proxy, mut c, addr) = routed_proxy("2", backend.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(addr, "app.test", stop.clone(), 20_000);
    assert!(wait_until(Duration::from_secs(10), || backend
        .request_count()
        > 50));
    let victim = status(&mut c).workers[0].pid;
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        let s = status(&mut c);
        s.workers[0].pid != victim && s.workers[0].pid != 0
    }));
    let served = backend.request_count();
    assert!(wait_until(Duration::from_secs(10), || backend
        .request_count()
        > served + 50));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = load.join().unwrap();
    assert!(ok > 100, "ok={ok}");
    assert!(
        failed <= 2,
        "only in-flight requests may fail: failed={failed}"
    );
    assert_eq!(c.query_state().unwrap().backends.len(), 1);
}

#[test]
fn two_workers_share_the_load() {
    let backend = Backend::start("one");
    let (_proxy, mut c, addr) = routed_proxy("2", backend.addr);
    // Keep-alive connections held open, each after one answered request.
    let mut held = Vec::new();
    for _ in 0..32 {
        use std::io::Write;
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        assert_eq!(read_answer(&mut s).unwrap().status, 200);
        held.push(s);
    }
    let s = status(&mut c);
    assert!(
        s.workers.iter().all(|w| w.connections > 0),
        "every worker holds some of the connections: {:?}",
        s.workers
    );
}

#[test]
fn soft_stop_lets_a_slow_request_finish() {
    let gate = Gate::start();
    let (mut proxy, mut c, addr) = routed_proxy("1", gate.addr);
    let request = gate.hold(addr, "app.test");
    c.send(&Request::new("stop", Command::SoftStop)).unwrap();
    // The stop has begun (the listener is closed), and the proxy still runs while the
    // request is in flight.
    assert!(wait_until(Duration::from_secs(10), || refuses(addr)));
    assert!(proxy.child.try_wait().unwrap().is_none());
    gate.release();
    let answer = request.join().unwrap().unwrap();
    assert_eq!(answer.status, 200);
    assert!(wait_exit(&mut proxy.child, Duration::from_secs(10)).is_some());
}

#[test]
fn upgrade_under_a_request_loop_has_no_failures() {
    let backend = Backend::start("one");
    let (mut proxy, _c, addr) = routed_proxy("2", backend.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|_| request_loop(addr, "app.test", stop.clone(), 20_000))
        .collect();
    assert!(wait_until(Duration::from_secs(10), || backend
        .request_count()
        > 100));
    let out = proxy.weir(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_exit(&mut proxy.child, Duration::from_secs(30)).is_some());
    let served = backend.request_count();
    assert!(wait_until(Duration::from_secs(10), || backend
        .request_count()
        > served + 100));
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for l in loops {
        let (o, f) = l.join().unwrap();
        ok += o;
        failed += f;
    }
    let mut c = client(&proxy);
    let new_main = status(&mut c).pid;
    let _ = call(&mut c, Command::HardStop);
    assert!(wait_until(Duration::from_secs(10), || !alive(new_main)));
    assert_eq!(failed, 0, "ok={ok}");
    assert!(ok > 200);
}

/// A proxy with one worker, started with `toml` as its weir.toml, routing `app.test` on its
/// listener to `backend`; the config's directory is returned to keep it alive.
fn routed_proxy_with_config(
    toml: &str,
    backend: SocketAddr,
) -> (tempfile::TempDir, Proxy, Client, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), toml);
    let proxy = Proxy::start(&["--workers", "1", "--config", config.to_str().unwrap()]);
    let addr = free_addr();
    let mut c = client(&proxy);
    route(&mut c, addr, "app.test", &[backend]);
    (dir, proxy, c, addr)
}

fn signal(proxy: &Proxy, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits() {
    let gate = Gate::start();
    let (mut proxy, mut c, addr) = routed_proxy("1", gate.addr);
    let workers: Vec<u32> = status(&mut c).workers.iter().map(|w| w.pid).collect();
    let request = gate.hold(addr, "app.test");
    signal(&proxy, "TERM");
    // The stop has begun (the listener is closed: no new connection may queue on it) and
    // the proxy waits for the request it holds.
    assert!(wait_until(Duration::from_secs(10), || refuses(addr)));
    assert!(proxy.child.try_wait().unwrap().is_none());
    assert!(workers.iter().all(|p| alive(*p)));
    gate.release();
    let answer = request.join().unwrap().unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "held"));
    let exited = wait_exit(&mut proxy.child, Duration::from_secs(10)).expect("exit");
    assert!(exited.success(), "{exited:?}");
    assert!(workers.iter().all(|p| !alive(*p)));
    assert!(!proxy.socket.exists());
}

#[test]
fn sigterm_gives_up_on_in_flight_requests_at_stop_ms() {
    let gate = Gate::start();
    let (_dir, mut proxy, _c, addr) =
        routed_proxy_with_config("[timeouts]\nstop_ms = 500\n", gate.addr);
    let request = gate.hold(addr, "app.test");
    let started = Instant::now();
    signal(&proxy, "TERM");
    // The built-in stop_ms is 30 s: only the configured one ends this wait so soon.
    let exited = wait_exit(&mut proxy.child, Duration::from_secs(10)).expect("exit");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(exited.success(), "{exited:?}");
    // The held request was cut off, not answered.
    assert!(request.join().unwrap().is_err());
    gate.release();
}

#[test]
fn sigint_stops_at_once_even_with_a_request_in_flight() {
    let gate = Gate::start();
    let (mut proxy, mut c, addr) = routed_proxy("1", gate.addr);
    let workers: Vec<u32> = status(&mut c).workers.iter().map(|w| w.pid).collect();
    let request = gate.hold(addr, "app.test");
    signal(&proxy, "INT");
    // No wait for the held request (the default stop_ms would be 30 s).
    let exited = wait_exit(&mut proxy.child, Duration::from_secs(5)).expect("exit");
    assert!(exited.success(), "{exited:?}");
    assert!(workers.iter().all(|p| !alive(*p)));
    assert!(!proxy.socket.exists());
    assert!(refuses(addr));
    assert!(request.join().unwrap().is_err());
    gate.release();
}

/// `weir metrics` prints the counters summed over the workers, one `name value` per line
/// before its latency table, and the same numbers as JSON.
#[test]
fn weir_metrics_sums_the_workers_counters() {
    let backend = Backend::start("one");
    let (proxy, mut c, addr) = routed_proxy("2", backend.addr);
    // Each on a new connection, so the kernel spreads them over both workers.
    for _ in 0..20 {
        assert_eq!(http_get(addr, "app.test", "/").unwrap().status, 200);
    }
    let per_worker: Vec<u32> = status(&mut c).workers.iter().map(|w| w.pid).collect();
    assert_eq!(per_worker.len(), 2);
    let out = proxy.weir(&["metrics"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // Counters first; the latency table follows an empty line.
    let counters = text.split_once("\n\n").map_or(text.as_str(), |(c, _)| c);
    let lines: std::collections::BTreeMap<&str, u64> = counters
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            (name, value.parse().unwrap_or_else(|_| panic!("{l:?}")))
        })
        .collect();
    assert_eq!(lines.get("http.requests"), Some(&20), "{text}");
    assert_eq!(lines.get("http.responses.2xx"), Some(&20), "{text}");
    assert_eq!(lines.get("backend.app/b0.requests"), Some(&20), "{text}");
    assert_eq!(lines.get("connections.accepted"), Some(&20), "{text}");
    let out = proxy.weir(&["metrics", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let object = json["counters"].as_object().unwrap();
    assert_eq!(object.len(), lines.len(), "{json}");
    for (name, value) in &lines {
        assert_eq!(object[*name], *value, "{name}");
    }
}
