//! Byte pipes end to end: WebSocket after `101 Switching Protocols`, and TCP listeners.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use util::servers::{tcp_echo, websocket_echo};
use util::{free_port, read_answer, wait_until, Desired, Proxy};

#[test]
fn websocket_echo_through_the_proxy() {
    let origin = websocket_echo();
    let port = free_port();
    let desired = Desired::new();
    desired.write(
        "weir.yaml",
        &format!(
            r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{port}", protocol: http }}
clusters:
  - id: ws
    backends: [{{ id: ws-1, address: "{}" }}]
frontends:
  - {{ listener: web, hostname: ws.test, cluster: ws }}
"#,
            origin.addr
        ),
    );
    let _proxy = Proxy::with_desired(desired.path(), 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // The listener accepts a moment before its routes are in (404 meanwhile): retry the
    // upgrade until it is answered 101.
    let mut upgraded = None;
    assert!(wait_until(Duration::from_secs(20), || {
        let Ok(mut conn) = TcpStream::connect(addr) else {
            return false;
        };
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let sent = conn.write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        match read_answer(&mut conn) {
            Ok(answer) if sent.is_ok() && answer.status == 101 => {
                assert_eq!(answer.header("upgrade").as_deref(), Some("websocket"));
                upgraded = Some(conn);
                true
            }
            _ => false,
        }
    }));
    let mut conn = upgraded.unwrap();
    // A masked text frame "hello" (RFC 6455 5.7), then a bigger binary one.
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    conn.write_all(&frame).unwrap();
    let mut back = [0u8; 11];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
    let big: Vec<u8> = (0..200_000).map(|i| (i % 256) as u8).collect();
    conn.write_all(&big).unwrap();
    let mut echoed = vec![0u8; big.len()];
    conn.read_exact(&mut echoed).unwrap();
    assert!(echoed == big);
}

#[test]
fn tcp_listener_echo() {
    let echo = tcp_echo();
    let port = free_port();
    let desired = Desired::new();
    desired.write(
        "weir.yaml",
        &format!(
            r#"
listeners:
  - {{ name: raw, address: "127.0.0.1:{port}", protocol: tcp }}
clusters:
  - id: echo
    backends: [{{ id: echo-1, address: "{echo}" }}]
frontends:
  - {{ listener: raw, cluster: echo }}
"#
        ),
    );
    let _proxy = Proxy::with_desired(desired.path(), 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Ready once a byte comes back (the listener accepts a moment before its route is in).
    assert!(wait_until(Duration::from_secs(20), || {
        let Ok(mut probe) = TcpStream::connect(addr) else {
            return false;
        };
        probe
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        probe.write_all(b"?").is_ok() && probe.read_exact(&mut byte).is_ok() && byte == *b"?"
    }));
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let payload: Vec<u8> = (0..4_000_000).map(|i| (i * 7 % 256) as u8).collect();
    let mut writer = conn.try_clone().unwrap();
    let sent = payload.clone();
    let t = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
}
