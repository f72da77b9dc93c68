//! Byte pipes: TCP listeners and WebSocket upgrades.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use support::{connect, read_answer, Backend, TestWorker};
use weir_schema::proto;

/// A TCP server that echoes every byte, one thread per connection.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tcp_listener_pipes_bytes_both_ways() {
    let echo = echo_server();
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
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let t = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
    assert_eq!(w.counter("tcp.sessions"), 1);
}

#[test]
fn websocket_upgrade_becomes_a_pipe() {
    let backend = Backend::with_handler(
        "ws",
        Arc::new(|seen, stream: &mut TcpStream| {
            assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
            assert_eq!(seen.header("connection").as_deref(), Some("upgrade"));
            stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .unwrap();
            // Echo frames (opaque bytes here) until the client closes.
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            return false;
                        }
                    }
                }
            }
        }),
    );
    let mut w = TestWorker::with_defaults();
    let listener = w.simple("ws.test", &[&backend]);
    let mut client = connect(listener);
    client
        .write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut client, true).unwrap();
    assert_eq!(answer.status, 101);
    assert_eq!(answer.header("upgrade").as_deref(), Some("websocket"));
    for i in 0..10 {
        let frame = format!("frame number {i}");
        client.write_all(frame.as_bytes()).unwrap();
        let mut back = vec![0u8; frame.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, frame.as_bytes());
    }
    assert_eq!(w.counter("websocket.upgrades"), 1);
}
