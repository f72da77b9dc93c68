//! Byte pipes: TCP listeners and WebSocket upgrades.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::TestWorker;
use weir_schema::proto;
use weir_testkit::{connect, read_answer, send_and_read_to_end, tcp_echo, websocket_echo};

#[test]
fn tcp_listener_pipes_bytes_both_ways() {
    let echo = tcp_echo();
    let mut w = TestWorker::with_defaults();
    let listener = w.add_listener_with(
        proto::ListenerProtocol::Tcp,
        proto::ListenerSettings::default(),
    );
    w.add_cluster(TestWorker::cluster("tcp"));
    w.add_backend("tcp", "echo", echo);
    w.call(proto::request::Kind::AddFrontend(proto::Frontend {
        listener: listener.to_string(),
        hostname: String::new(),
        path: String::new(),
        cluster_id: "tcp".into(),
        certificate: String::new(),
        ..Default::default()
    }));
    let mut client = connect(listener);
    let payload: Vec<u8> = (0..1_000_000).map(|i| (i % 253) as u8).collect();
    let got = send_and_read_to_end(&mut client, &payload);
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
    assert_eq!(w.counter("tcp.sessions"), 1);
}

#[test]
fn websocket_upgrade_becomes_a_pipe() {
    let backend = websocket_echo();
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("ws.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut client).unwrap();
    assert_eq!(answer.status, 101);
    assert_eq!(answer.header("upgrade"), Some("websocket"));
    // The upgrade reached the backend as one.
    let seen = backend.last_seen();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("upgrade"));
    for i in 0..10 {
        let frame = format!("frame number {i}");
        client.write_all(frame.as_bytes()).unwrap();
        let mut back = vec![0u8; frame.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, frame.as_bytes());
    }
    assert_eq!(w.counter("websocket.upgrades"), 1);
}

/// A pipe idles by the listener's tunnel timeout, not by its keep-alive timeout (nor, on a TCP
/// listener, by the connect timeout it started with): quiet WebSockets and TCP sessions live
/// on, and an idle one still ends.
#[test]
fn pipes_idle_by_the_tunnel_timeout_not_the_keep_alive_one() {
    let settings = proto::ListenerSettings {
        front_timeout_ms: 200,
        tunnel_timeout_ms: 1_500,
        ..Default::default()
    };
    let mut w = TestWorker::start(weir_engine::channel::WorkerConfig {
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let echo = tcp_echo();
    let tcp = w.add_listener_with(proto::ListenerProtocol::Tcp, settings.clone());
    w.add_cluster(TestWorker::cluster("tcp"));
    w.add_backend("tcp", "echo", echo);
    w.call(proto::request::Kind::AddFrontend(TestWorker::frontend(
        tcp, "", "", "tcp",
    )));
    let ws_backend = websocket_echo();
    let http = w.add_listener_with(proto::ListenerProtocol::Http, settings);
    w.add_cluster(TestWorker::cluster("ws"));
    w.add_backend("ws", "ws-1", ws_backend.addr);
    w.add_frontend(http, "ws.test", "/", "ws");

    let mut tcp_client = connect(tcp);
    let mut ws_client = connect(http);
    ws_client
        .write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut ws_client).unwrap().status, 101);
    // Idle well past the keep-alive and connect timeouts (the behaviour under test is time).
    std::thread::sleep(Duration::from_millis(700));
    for client in [&mut tcp_client, &mut ws_client] {
        client.write_all(b"still here").unwrap();
        let mut back = [0u8; 10];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"still here");
    }
    // Then idle past the tunnel timeout: the proxy closes both.
    let quiet = Instant::now();
    for client in [&mut tcp_client, &mut ws_client] {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    let idle = quiet.elapsed();
    assert!(
        // The tunnel timer restarted at the echo, a little before `quiet`: a margin of a
        // third of the timeout, and still far above the 200 ms timeouts it must not use.
        idle >= Duration::from_millis(1_000) && idle < Duration::from_secs(8),
        "{idle:?}"
    );
}
