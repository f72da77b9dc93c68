//! A raw HTTP/1.1 client: the test writes the exact bytes of a request (smuggling shapes,
//! pipelined batches, half a head), and reads answers one at a time off the same connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use crate::wire;

/// How long a read may block before the test fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP answer as a client read it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The status line and the fields, up to and including the empty line.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of the first field `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::field(&self.head, name)
    }

    /// The body as text (lossy: a test compares it with what it expects).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects to `addr`, with a read timeout so a proxy that never answers fails the test.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream
}

/// Reads one answer: its head, then its body by Content-Length, by chunks, or until the
/// connection closes. Interim (1xx), `204` and `304` answers have no body; the next answer
/// on the connection is read by another call.
pub fn read_answer(stream: &mut impl Read) -> io::Result<Answer> {
    read(stream, false)
}

/// Reads the answer to a `HEAD` request: a head only, whatever length it announces.
pub fn read_answer_to_head(stream: &mut impl Read) -> io::Result<Answer> {
    read(stream, true)
}

fn read(stream: &mut impl Read, head_request: bool) -> io::Result<Answer> {
    let head = wire::read_head(stream)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut answer = Answer {
        status,
        head,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(answer);
    }
    match wire::read_framed_body(stream, &answer.head)? {
        Some(body) => answer.body = body,
        None => {
            stream.read_to_end(&mut answer.body)?;
        }
    }
    Ok(answer)
}

/// Sends `request` as is on a fresh connection and reads one answer. Fails rather than panics
/// when nothing listens yet, so it can poll a proxy that is starting inside
/// [`wait_until`](crate::wait_until).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> io::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.write_all(request)?;
    read_answer(&mut stream)
}

/// `GET path` for `host` on a fresh connection, with `Connection: close`.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> io::Result<Answer> {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Writes `payload` and half-closes the connection from another thread while this one reads
/// until the peer closes, and returns what came back. Writing first and reading after would
/// deadlock on an echo once both directions' buffers are full.
pub fn send_and_read_to_end(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone the stream");
    thread::scope(|scope| {
        let sending = scope.spawn(move || {
            writer.write_all(payload)?;
            writer.shutdown(Shutdown::Write)
        });
        let mut got = Vec::new();
        stream.read_to_end(&mut got).expect("read to the end");
        sending
            .join()
            .expect("the sending thread")
            .expect("send and half-close");
        got
    })
}
