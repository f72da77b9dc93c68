//! Byte pipes: TCP listeners and WebSocket upgrades.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::io::{Read, Write};

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
