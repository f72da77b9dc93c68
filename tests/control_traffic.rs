//! Control-plane behaviour under real traffic: drains with a request in flight, crash
//! recovery under a request loop, load shared by workers, soft stop and upgrade without
//! failed requests. Needs the worker's HTTP proxying.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use util::control::*;
use util::Proxy;
use weir_reconciler::client::Client;
use weir_schema::proto::{response::Content, ResponseStatus};
use weir_schema::{Change, Command, Request};
use weir_testkit::{connect, free_addr, read_answer, wait_until, Backend};

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
    gate.release();
    let _ = request.join();
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
    // Still running while the request is in flight.
    std::thread::sleep(Duration::from_millis(200));
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
