//! The idle pool of backend connections: a pooled connection is reused while fresh, closed by
//! the worker after `backend_idle_timeout`, and dropped at once (never handed out) when the
//! backend closes it while it sits idle.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use support::TestWorker;
use weir_engine::channel::WorkerConfig;
use weir_testkit::{connect, read_answer, wait_until};

/// What the scripted backend reports about one of its connections.
#[derive(Debug)]
enum Report {
    /// Its n-th connection answered a request.
    Answered { conn: usize },
    /// Its n-th connection was closed by the proxy, this long after its last answer.
    ClosedByPeer { conn: usize, idle_for: Duration },
}

/// A keep-alive backend that answers `200 ok` to every request of every connection and
/// reports what happens to its connections. Sending on `close` makes it close its oldest
/// open connection, as a backend with its own keep-alive timeout would.
struct ScriptedBackend {
    addr: SocketAddr,
    reports: Receiver<Report>,
    close: Sender<()>,
}

impl ScriptedBackend {
    fn start() -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (report_tx, reports) = mpsc::channel();
        let (close, close_rx) = mpsc::channel::<()>();
        let (stream_tx, stream_rx) = mpsc::channel::<TcpStream>();
        // Closing on request: the oldest connection handed over by the acceptor.
        thread::spawn(move || {
            let mut open = Vec::new();
            while close_rx.recv().is_ok() {
                open.extend(stream_rx.try_iter());
                if !open.is_empty() {
                    let s: TcpStream = open.remove(0);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        });
        thread::spawn(move || {
            for (conn, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let _ = stream_tx.send(stream.try_clone().unwrap());
                let report = report_tx.clone();
                thread::spawn(move || serve(conn, stream, &report));
            }
        });
        ScriptedBackend {
            addr,
            reports,
            close,
        }
    }

    fn next_report(&self) -> Report {
        self.reports
            .recv_timeout(Duration::from_secs(10))
            .expect("a report from the backend")
    }
}

fn serve(conn: usize, stream: TcpStream, report: &Sender<Report>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut last_answer = Instant::now();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = report.send(Report::ClosedByPeer {
                    conn,
                    idle_for: last_answer.elapsed(),
                });
                return;
            }
            Ok(_) => {}
        }
        if line != "\r\n" {
            continue;
        }
        // Taken before the write: the worker can read the answer and start its idle timer
        // before this thread runs again, so an instant taken after the write could be later
        // than the timer's start and make a correct close look early.
        last_answer = Instant::now();
        // Bodiless requests only: the head is the whole request.
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
        let _ = report.send(Report::Answered { conn });
    }
}

/// Sends `GET /` on the client's connection, expects `200`, and that the backend answered it on
/// its `conn`-th connection.
fn get_answered_on(client: &mut TcpStream, backend: &ScriptedBackend, conn: usize) {
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(client).unwrap().status, 200);
    let report = backend.next_report();
    assert!(
        matches!(report, Report::Answered { conn: c } if c == conn),
        "expected an answer on connection {conn}, got {report:?}"
    );
}

fn idle_count(w: &mut TestWorker) -> u64 {
    w.counter("backend.c/b.idle")
}

fn setup(idle_timeout: Duration) -> (ScriptedBackend, TestWorker, SocketAddr) {
    let backend = ScriptedBackend::start();
    let mut w = TestWorker::start(WorkerConfig {
        backend_idle_timeout: idle_timeout,
        ..WorkerConfig::default()
    });
    let listener = w.add_http_listener();
    w.add_cluster(TestWorker::cluster("c"));
    w.add_backend("c", "b", backend.addr);
    w.add_frontend(listener, "a.test", "/", "c");
    (backend, w, listener)
}

#[test]
fn idle_pooled_connection_is_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_millis(300);
    let (backend, mut w, listener) = setup(idle_timeout);
    let mut client = connect(listener);
    // Two requests in a row share one backend connection: the pool works within the timeout.
    for _ in 0..2 {
        get_answered_on(&mut client, &backend, 0);
    }
    // Then, left idle, the proxy closes it: the backend sees its end of stream.
    match backend.next_report() {
        Report::ClosedByPeer { conn: 0, idle_for } => {
            assert!(idle_for >= idle_timeout, "closed after {idle_for:?}");
            assert!(
                idle_for < Duration::from_secs(5),
                "closed after {idle_for:?}"
            );
        }
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(wait_until(Duration::from_secs(5), || w
        .counter("backends.idle_expired")
        == 1));
    assert_eq!(idle_count(&mut w), 0);
    // The client's own keep-alive connection is untouched; the next request opens a fresh
    // backend connection.
    get_answered_on(&mut client, &backend, 1);
}

#[test]
fn pooled_connection_closed_by_the_backend_is_never_picked() {
    let (backend, mut w, listener) = setup(Duration::from_secs(30));
    let mut client = connect(listener);
    get_answered_on(&mut client, &backend, 0);
    assert!(wait_until(Duration::from_secs(5), || idle_count(&mut w) == 1));

    // The backend closes the pooled connection while it is idle: the worker drops it.
    backend.close.send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || w
        .counter("backends.idle_closed_by_backend")
        == 1));
    assert_eq!(idle_count(&mut w), 0);

    // A POST cannot be replayed: had the dead connection been picked, this would be a 502.
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut client).unwrap().status, 200);
    assert!(matches!(
        backend.next_report(),
        Report::ClosedByPeer { conn: 0, .. }
    ));
    assert!(matches!(
        backend.next_report(),
        Report::Answered { conn: 1 }
    ));
    assert_eq!(w.counter("http.retries"), 0);
}

/// `max_idle_per_backend` bounds the pool: with 0 no connection is kept, so every request
/// opens its own; with the default the second request reuses the first one's.
#[test]
fn max_idle_per_backend_bounds_the_pool() {
    for (max_idle, reused) in [(0, 0), (512, 1)] {
        let backend = weir_testkit::Backend::start("a");
        let mut w = TestWorker::start(WorkerConfig {
            max_idle_per_backend: max_idle,
            ..WorkerConfig::default()
        });
        let listener = w.simple("a.test", &[&backend]);
        for _ in 0..2 {
            let mut client = connect(listener);
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
                .unwrap();
            assert_eq!(read_answer(&mut client).unwrap().status, 200);
        }
        assert_eq!(
            w.counter("backends.connections_reused"),
            reused,
            "{max_idle}"
        );
        assert_eq!(
            w.counter("backends.connections_opened"),
            2 - reused,
            "{max_idle}"
        );
    }
}
