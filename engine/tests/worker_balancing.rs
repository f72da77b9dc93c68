//! Load balancing, failover and recovery, active health checks, and runtime changes (drain).
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::TestWorker;
use weir_schema::proto::{self, request::Kind, ResponseStatus};
use weir_testkit::{connect, dead_addr, http_get, read_answer, wait_until, Backend};

fn cluster(id: &str, lb: proto::LoadBalancing) -> proto::Cluster {
    proto::Cluster {
        id: id.into(),
        load_balancing: lb as i32,
        ..Default::default()
    }
}

fn spread(listener: std::net::SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let answer = http_get(listener, "a.test", "/").unwrap();
        assert_eq!(answer.status, 200);
        *counts.entry(answer.text()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn round_robin_with_weights() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(cluster("c", proto::LoadBalancing::RoundRobin));
    w.add_backend_with("c", "a", a.addr, Some(300), false);
    w.add_backend_with("c", "b", b.addr, Some(100), false);
    w.add_frontend(listener, "a.test", "/", "c");
    let counts = spread(listener, 200);
    assert_eq!(counts.get("a"), Some(&150));
    assert_eq!(counts.get("b"), Some(&50));
}

#[test]
fn every_algorithm_spreads_over_every_backend() {
    for lb in [
        proto::LoadBalancing::Random,
        proto::LoadBalancing::LeastConnections,
        proto::LoadBalancing::PowerOfTwo,
    ] {
        let (a, b, c) = (
            Backend::start("a"),
            Backend::start("b"),
            Backend::start("c"),
        );
        let mut w = TestWorker::with_defaults();
        let listener = w.add_http_listener();
        w.add_cluster(cluster("c", lb));
        for backend in [&a, &b, &c] {
            w.add_backend("c", &backend.name, backend.addr);
        }
        w.add_frontend(listener, "a.test", "/", "c");
        let counts = spread(listener, 150);
        for name in ["a", "b", "c"] {
            let n = counts.get(name).copied().unwrap_or(0);
            assert!((20..=80).contains(&n), "{lb:?}: {counts:?}");
        }
    }
}

/// Sends `n` GETs one after another, each on its own connection and thread, while `slow`
/// holds every request it gets: each request is let go only once it reached a backend, and,
/// when that was `fast`, once it was answered. So `slow` carries every request it was given
/// until the end, and `fast` none. Returns how many `slow` got, after checking every answer.
fn load_with_a_busy_backend(
    listener: std::net::SocketAddr,
    slow: &Backend,
    release: &AtomicBool,
    fast: &Backend,
    n: usize,
) -> usize {
    let mut held = Vec::new();
    for i in 0..n {
        let fast_before = fast.request_count();
        let request = std::thread::spawn(move || http_get(listener, "a.test", "/").unwrap());
        assert!(wait_until(Duration::from_secs(5), || {
            slow.request_count() + fast.request_count() == i + 1
        }));
        if fast.request_count() > fast_before {
            assert_eq!(request.join().unwrap().text(), "fast");
        } else {
            held.push(request);
        }
    }
    let busy = slow.request_count();
    assert_eq!(held.len(), busy);
    release.store(true, Ordering::SeqCst);
    for request in held {
        assert_eq!(request.join().unwrap().text(), "slow");
    }
    busy
}

#[test]
fn least_loaded_algorithms_steer_around_a_busy_backend() {
    // Round robin or random would give the busy backend about half of the 40 requests; a
    // least-loaded pick gives it one at most (the first, when both were idle).
    for lb in [
        proto::LoadBalancing::LeastConnections,
        proto::LoadBalancing::PowerOfTwo,
    ] {
        let (slow, release) = slow_backend();
        let fast = Backend::start("fast");
        let mut w = TestWorker::with_defaults();
        let listener = w.add_http_listener();
        w.add_cluster(cluster("c", lb));
        w.add_backend("c", "slow", slow.addr);
        w.add_backend("c", "fast", fast.addr);
        w.add_frontend(listener, "a.test", "/", "c");
        let busy = load_with_a_busy_backend(listener, &slow, &release, &fast, 40);
        assert!(busy <= 1, "{lb:?}: the busy backend got {busy} of 40");
    }
}

#[test]
fn failover_then_recovery() {
    let good = Backend::start("good");
    let flaky_addr = dead_addr();
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(TestWorker::cluster("c"));
    w.add_backend("c", "flaky", flaky_addr);
    w.add_backend("c", "good", good.addr);
    w.add_frontend(listener, "a.test", "/", "c");
    // Every request succeeds: the failed connect is retried on the good backend.
    for _ in 0..10 {
        assert_eq!(http_get(listener, "a.test", "/").unwrap().text(), "good");
    }
    // The main process heard the backend go down.
    let down = w.metrics();
    assert!(
        down.iter()
            .any(|c| c.name == "backend.c/flaky.up" && c.value == 0),
        "{down:?}"
    );
    // It comes back: after its backoff a request tries it again and it is up.
    let flaky = Backend::start_at(flaky_addr, "flaky");
    assert!(wait_until(Duration::from_secs(10), || http_get(
        listener, "a.test", "/"
    )
    .unwrap()
    .text()
        == "flaky"));
    w.call(Kind::Status(proto::Status {}));
    let kinds: Vec<i32> = w
        .events
        .iter()
        .filter_map(|e| match &e.content {
            Some(proto::response::Content::Event(ev)) => Some(ev.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            proto::EventKind::BackendDown as i32,
            proto::EventKind::BackendUp as i32
        ]
    );
    drop(flaky);
}

#[test]
fn backups_serve_only_when_no_primary_is_up() {
    let (primary, backup) = (Backend::start("primary"), Backend::start("backup"));
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(TestWorker::cluster("c"));
    w.add_backend_with("c", "primary", primary.addr, None, false);
    w.add_backend_with("c", "backup", backup.addr, None, true);
    w.add_frontend(listener, "a.test", "/", "c");
    assert_eq!(spread(listener, 10).get("primary"), Some(&10));
    w.call(Kind::RemoveBackend(proto::RemoveBackend {
        cluster_id: "c".into(),
        id: "primary".into(),
        drain_timeout_ms: 0,
    }));
    assert_eq!(spread(listener, 5).get("backup"), Some(&5));
}

#[test]
fn active_health_check_takes_a_backend_out_and_back() {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let checked = Backend::with_handler(
        "checked",
        Arc::new(move |seen, stream| {
            let status = if seen.head.starts_with("GET /health ") && !flag.load(Ordering::SeqCst) {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\nchecked");
            stream.write_all(answer.as_bytes()).is_ok()
        }),
    );
    let other = Backend::start("other");
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(proto::Cluster {
        id: "c".into(),
        health_check: Some(proto::HealthCheck {
            path: "/health".into(),
            interval_ms: 50,
            timeout_ms: 500,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }),
        ..Default::default()
    });
    w.add_backend("c", "checked", checked.addr);
    w.add_backend("c", "other", other.addr);
    w.add_frontend(listener, "a.test", "/", "c");
    healthy.store(false, Ordering::SeqCst);
    let is_up = |w: &mut TestWorker| w.counter("backend.c/checked.up") == 1;
    assert!(wait_until(Duration::from_secs(10), || !is_up(&mut w)));
    assert_eq!(spread(listener, 10).get("other"), Some(&10));
    healthy.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || is_up(&mut w)));
    assert!(spread(listener, 10).contains_key("checked"));
}

/// A backend named `slow` that holds every request until the flag is set, then answers `slow`
/// (keeping the connection, so a `Connection: close` the client sees comes from the worker).
fn slow_backend() -> (Backend, Arc<AtomicBool>) {
    let release = Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    let slow = Backend::with_handler(
        "slow",
        Arc::new(move |_, stream| {
            while !gate.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                .is_ok()
        }),
    );
    (slow, release)
}

#[test]
fn removed_backend_drains_its_in_flight_request() {
    let (slow, release) = slow_backend();
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&slow]);
    let mut client = connect(listener);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || slow.request_count() == 1));
    let id = w.send(Kind::RemoveBackend(proto::RemoveBackend {
        cluster_id: "c".into(),
        id: "slow".into(),
        drain_timeout_ms: 0,
    }));
    // The drain's progress is seen while the request is still held, so it cannot be a
    // report made after the request finished.
    let first = w.next_answer(&id);
    release.store(true, Ordering::SeqCst);
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.text(), "slow", "the in-flight request finished");
    let mut answers = vec![first];
    if !answers[0].is_final() {
        answers.extend(w.answers_for(&id));
    }
    let live: Vec<(ResponseStatus, u64)> = answers
        .iter()
        .map(|a| match &a.content {
            Some(proto::response::Content::Drain(d)) => (a.status(), d.live_connections),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        live,
        vec![(ResponseStatus::Processing, 1), (ResponseStatus::Ok, 0)]
    );
    // No new request reaches it.
    assert_eq!(http_get(listener, "a.test", "/").unwrap().status, 503);
}

#[test]
fn routes_change_under_a_running_request_loop_without_failures() {
    let (blue, green) = (Backend::start("blue"), Backend::start("green"));
    let mut w = TestWorker::with_defaults();
    let listener = w.add_http_listener();
    w.add_cluster(TestWorker::cluster("blue"));
    w.add_backend("blue", "blue", blue.addr);
    w.add_frontend(listener, "a.test", "/", "blue");
    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = stop.clone();
    let client = std::thread::spawn(move || {
        let mut results = HashMap::new();
        let mut conn = connect(listener);
        let mut n = 0;
        while !loop_stop.load(Ordering::SeqCst) && n < 20_000 {
            n += 1;
            conn.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                .unwrap();
            let answer = read_answer(&mut conn).unwrap();
            *results.entry((answer.status, answer.text())).or_insert(0) += 1;
        }
        results
    });
    // Blue → green, make-before-break, while the loop runs.
    assert!(wait_until(Duration::from_secs(5), || blue.request_count() > 20));
    w.add_cluster(TestWorker::cluster("green"));
    w.add_backend("green", "green", green.addr);
    w.add_frontend(listener, "a.test", "/", "green");
    w.call(Kind::RemoveFrontend(TestWorker::frontend(
        listener, "a.test", "/", "blue",
    )));
    w.call(Kind::RemoveBackend(proto::RemoveBackend {
        cluster_id: "blue".into(),
        id: "blue".into(),
        drain_timeout_ms: 0,
    }));
    w.call(Kind::RemoveCluster(proto::RemoveCluster {
        id: "blue".into(),
    }));
    assert!(wait_until(Duration::from_secs(5), || green.request_count() > 20));
    stop.store(true, Ordering::SeqCst);
    let results = client.join().unwrap();
    assert!(
        results.keys().all(|(status, _)| *status == 200),
        "{results:?}"
    );
    assert!(results.contains_key(&(200, "blue".to_owned())));
    assert!(results.contains_key(&(200, "green".to_owned())));
}

#[test]
fn soft_stop_finishes_in_flight_requests_then_exits() {
    let (slow, release) = slow_backend();
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("a.test", &[&slow]);
    let idle = connect(listener);
    let mut busy = connect(listener);
    busy.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || slow.request_count() == 1));
    let id = w.send(Kind::SoftStop(proto::SoftStop {}));
    // New connections are refused once the listener is gone.
    assert!(wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(listener).is_err()
    }));
    release.store(true, Ordering::SeqCst);
    let answer = read_answer(&mut busy).unwrap();
    assert_eq!(answer.text(), "slow");
    assert_eq!(answer.header("connection"), Some("close"));
    let answers = w.answers_for(&id);
    assert_eq!(answers.last().map(|a| a.status()), Some(ResponseStatus::Ok));
    drop(idle);
    let thread = w.thread.take().unwrap();
    thread.join().unwrap().unwrap();
}
