//! Origins for the byte-pipe tests: a TCP echo server, and a WebSocket-style echo backend
//! (frames are opaque to the proxy once it has relayed the `101`, so echoing bytes is enough).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use crate::Backend;

/// A TCP server on 127.0.0.1 that echoes every byte, one thread per connection. It runs until
/// the test process ends.
pub fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || echo(stream));
        }
    });
    addr
}

/// A backend named `ws-echo` that answers an `Upgrade: websocket` request with
/// `101 Switching Protocols`, then echoes bytes until the client closes. Anything else is a
/// `400`. The upgrade request is in [`Backend::last_seen`].
pub fn websocket_echo() -> Backend {
    Backend::with_handler(
        "ws-echo",
        Arc::new(|seen, stream| {
            let upgrade = seen
                .header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
            if !upgrade {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                return false;
            }
            if stream
                .write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                )
                .is_err()
            {
                return false;
            }
            if let Ok(s) = stream.try_clone() {
                echo(s);
            }
            false
        }),
    )
}

/// Copies every byte it reads back to the sender until the sender closes.
fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
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
}
