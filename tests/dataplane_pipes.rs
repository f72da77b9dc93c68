//! Byte pipes end to end: WebSocket after `101 Switching Protocols`, and TCP listeners.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::proxy_on_yaml;
use weir_testkit::{
    connect, read_answer, send_and_read_to_end, tcp_echo, wait_until, websocket_echo,
};

#[test]
fn websocket_echo_through_the_proxy() {
    let origin = websocket_echo();
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:{{port}}", protocol: http }}
clusters:
  - id: ws
    backends: [{{ id: ws-1, address: "{}" }}]
frontends:
  - {{ listener: web, hostname: ws.test, cluster: ws }}
"#,
        origin.addr
    );
    let (_desired, _proxy, addr) = proxy_on_yaml(&yaml, None);
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
                assert_eq!(answer.header("upgrade"), Some("websocket"));
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
    let yaml = format!(
        r#"
listeners:
  - {{ name: raw, address: "127.0.0.1:{{port}}", protocol: tcp }}
clusters:
  - id: echo
    backends: [{{ id: echo-1, address: "{echo}" }}]
frontends:
  - {{ listener: raw, cluster: echo }}
"#
    );
    let (_desired, _proxy, addr) = proxy_on_yaml(&yaml, None);
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
    let mut conn = connect(addr);
    let payload: Vec<u8> = (0..4_000_000).map(|i| (i * 7 % 256) as u8).collect();
    let got = send_and_read_to_end(&mut conn, &payload);
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
}
