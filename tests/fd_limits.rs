//! File descriptors as a resource the proxy runs out of: the soft limit is raised at start,
//! a default `max_connections` fits the limit (so a default start does not warn), and running
//! out is a local condition (503, a paused accept) that never marks a backend down.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use util::control::*;
use util::Proxy;
use weir_schema::metric_names::{self, BackendCounter};
use weir_testkit::{free_addr, http_get, read_answer, wait_until, Backend};

/// Raises this test process's own soft limit to its hard one (it opens over a thousand
/// sockets) and returns the hard limit.
fn raise_own_limit() -> u64 {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

fn counter(c: &mut weir_reconciler::client::Client, name: &str) -> u64 {
    counter_in(&c.metrics().unwrap(), name)
}

/// Counter `name` of one metrics answer; panics on a name it does not hold.
fn counter_in(metrics: &weir_schema::proto::Metrics, name: &str) -> u64 {
    metrics
        .counters
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .value
}

/// The worker's (accepted, accept shortages) counts, from one metrics answer so they agree.
fn accepts(c: &mut weir_reconciler::client::Client) -> (u64, u64) {
    let metrics = c.metrics().unwrap();
    (
        counter_in(&metrics, metric_names::CONNECTIONS_ACCEPTED),
        counter_in(&metrics, metric_names::CONNECTIONS_ACCEPT_SHORTAGES),
    )
}

fn stderr_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, std::fs::File) {
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

#[test]
fn a_proxy_started_under_a_soft_limit_of_256_serves_1200_idle_connections_and_traffic() {
    let hard = raise_own_limit();
    if hard < 4000 {
        eprintln!("skipped: the hard fd limit here is {hard}, too low to show the soft one raised");
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let (log, stderr) = stderr_file(&logs);
    let proxy = Proxy::start_with_fd_limit(256, None, &["--workers", "1"], stderr);
    let mut c = client(&proxy);
    let blue = Backend::start("blue");
    let listener = free_addr();
    route(&mut c, listener, "site.test", &[blue.addr]);
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(listener, "site.test", "/").is_ok_and(|a| a.status == 200)
    }));

    // 1,200 keep-alive connections, each served once and then left idle.
    let mut idle = Vec::new();
    for _ in 0..1200 {
        let mut stream = TcpStream::connect(listener).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut stream).unwrap();
        assert_eq!(answer.status, 200);
        idle.push(stream);
    }
    // With all of them open, new connections are still served.
    for _ in 0..100 {
        let answer = http_get(listener, "site.test", "/").unwrap();
        assert_eq!((answer.status, answer.text()), (200, "blue".to_owned()));
    }
    assert!(counter(&mut c, metric_names::CONNECTIONS_ACTIVE) >= 1200);
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains(&format!("file descriptor limit raised from 256 to {hard}")),
        "{log}"
    );
}

#[test]
fn running_out_of_fds_answers_503_and_never_marks_the_backend_down() {
    raise_own_limit();
    let logs = tempfile::tempdir().unwrap();
    let (log, stderr) = stderr_file(&logs);
    let config = write_config(
        logs.path(),
        "workers = 1\nmax_connections = 1000\n[timeouts]\nrequest_ms = 60000\n",
    );
    let proxy = Proxy::start_with_fd_limit(
        64,
        Some(64),
        &["--config", config.to_str().unwrap()],
        stderr,
    );
    let mut c = client(&proxy);
    let routes = HeldRoutes::add(&mut c);
    let (listener, gate) = (routes.listener, &routes.gate);
    // Told once, at start, that 64 fds cannot hold 1,000 connections.
    let start_log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        start_log
            .matches("the file descriptor limit (64 per process) is below")
            .count(),
        1,
        "{start_log}"
    );

    // One connection accepted and left waiting: an fd to give back later.
    let spare = TcpStream::connect(listener).unwrap();
    assert!(wait_until(Duration::from_secs(10), || counter(
        &mut c,
        metric_names::CONNECTIONS_ACTIVE
    ) == 1));

    // Requests held at the backend take two fds each (client and backend) until none is left.
    let mut held = Vec::new();
    let mut spare = Some(spare);
    let mut refused = None;
    for _ in 0..100 {
        // Counted before the request leaves: a fast worker can hand it to the gate before
        // the next line of this loop runs, and a count taken after would wait for nothing.
        let before = gate.arrived();
        let (accepted, shortages) = accepts(&mut c);
        let mut stream = TcpStream::connect(listener).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: held.test\r\n\r\n")
            .unwrap();
        stream.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        // Held at the gate, answered, or left unaccepted for want of an fd: told by the gate,
        // the socket, and the worker's counts, however slow a loaded machine is. A shortage
        // alone does not say it: the accept after the last one that got fds fails too, with
        // nothing waiting; only a shortage with no accept means this connection waits.
        wait_until(Duration::from_secs(20), || {
            gate.arrived() > before || stream.peek(&mut peek).is_ok() || {
                let (now_accepted, now_shortages) = accepts(&mut c);
                now_shortages > shortages && now_accepted == accepted
            }
        });
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        if gate.arrived() > before {
            held.push(stream);
            continue;
        }
        if stream.peek(&mut peek).is_err() {
            // Not even accepted (no fd for it: the listener pauses). Giving the spare back
            // lets it in, and its connect to the backend is the one that finds none.
            drop(spare.take());
        }
        refused = Some(read_answer(&mut stream).unwrap());
        break;
    }
    let refused = refused.expect("the worker never ran out of fds");
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert!(!held.is_empty());

    // The backend was not blamed: still up, no connect error counted against it.
    let gate_key = routes.gate_key();
    assert_eq!(counter(&mut c, &BackendCounter::Up.name(&gate_key)), 1);
    assert_eq!(
        counter(&mut c, &BackendCounter::ConnectErrors.name(&gate_key)),
        0
    );
    assert!(counter(&mut c, metric_names::BACKENDS_LOCAL_SHORTAGES) >= 1);

    // Accepting with no fd left pauses the listener rather than giving up on its queue: the
    // connection waiting there is served as soon as an fd is free, with no new arrival to
    // wake the listener.
    let mut open = Vec::new();
    let mut waiting = None;
    for _ in 0..100 {
        let mut stream = TcpStream::connect(listener).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
            .unwrap();
        match read_answer(&mut stream) {
            Ok(answer) => {
                assert_eq!(answer.status, 404);
                open.push(stream);
            }
            Err(_) => {
                waiting = Some(stream);
                break;
            }
        }
    }
    let mut waiting = waiting.expect("every connection was accepted");
    assert!(counter(&mut c, metric_names::CONNECTIONS_ACCEPT_SHORTAGES) >= 1);
    drop(open.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_answer(&mut waiting).unwrap().status, 404);
    drop(open);

    // Once fds are free again, everything is served at once (no backend in backoff).
    drop(held);
    drop(spare);
    gate.release();
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(listener, "site.test", "/").is_ok_and(|a| a.status == 200)
    }));
    let answer = http_get(listener, "held.test", "/").unwrap();
    assert_eq!((answer.status, answer.text()), (200, "held".to_owned()));
}

#[test]
fn a_default_start_under_a_hard_limit_of_20000_fits_its_connections_to_it_and_says_no_warning() {
    let hard = raise_own_limit();
    if hard < 20_000 {
        eprintln!("skipped: the hard fd limit here is {hard}, below the 20,000 this is about");
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let (log, stderr) = stderr_file(&logs);
    // 10,000 connections would need 20,128 fds: the default takes what 20,000 holds.
    let proxy = Proxy::start_with_fd_limit(20_000, Some(20_000), &["--workers", "1"], stderr);
    let mut c = client(&proxy);
    c.status().unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(!log.contains("warn"), "{log}");
    assert!(
        log.contains("max_connections: 9936 per worker, what the file descriptor limit (20000)"),
        "{log}"
    );
}

#[test]
fn a_default_start_caps_connections_at_what_the_fd_limit_holds() {
    raise_own_limit();
    let logs = tempfile::tempdir().unwrap();
    let (log, stderr) = stderr_file(&logs);
    // (200 − 128) / 2 = 36 connections a worker, nowhere near the 10,000 of the default.
    let proxy = Proxy::start_with_fd_limit(200, Some(200), &["--workers", "1"], stderr);
    let mut c = client(&proxy);
    let blue = Backend::start("blue");
    let listener = free_addr();
    route(&mut c, listener, "site.test", &[blue.addr]);
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(listener, "site.test", "/").is_ok_and(|a| a.status == 200)
    }));
    assert!(wait_until(Duration::from_secs(10), || counter(
        &mut c,
        metric_names::CONNECTIONS_ACTIVE
    ) == 0));
    let get = |stream: &mut TcpStream| {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
            .unwrap();
        read_answer(stream).unwrap().status
    };
    let mut idle = Vec::new();
    for _ in 0..36 {
        let mut stream = TcpStream::connect(listener).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(get(&mut stream), 200);
        idle.push(stream);
    }
    assert_eq!(counter(&mut c, metric_names::CONNECTIONS_IDLE_CLOSED), 0);
    // The 37th is over the cap: the oldest idle connections (an eighth of them) are closed to
    // make room for it, as at any cap, rather than the worker running out of fds.
    let mut one_more = TcpStream::connect(listener).unwrap();
    one_more
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(get(&mut one_more), 200);
    assert!(counter(&mut c, metric_names::CONNECTIONS_IDLE_CLOSED) >= 1);
    weir_testkit::closed_by_peer(&mut idle[0]).unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("max_connections: 36 per worker"), "{log}");
    assert!(!log.contains("warn"), "{log}");
}
