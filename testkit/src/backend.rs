//! A tiny real HTTP/1.1 backend: one thread per connection, keep-alive, request bodies by
//! Content-Length or chunks, `Expect: 100-continue` answered with an interim `100`. It answers
//! `200` with its name as the body, or whatever its [`Handler`] writes (chunked, slow, garbage,
//! an early close...), and records every request it read, so a test can check what the proxy
//! forwarded.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::wire;

/// What a backend read of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line and the fields, up to and including the empty line, as received.
    pub head: String,
    pub body: Vec<u8>,
    /// The body's bytes as they came on the wire, chunk framing included.
    pub raw_body: Vec<u8>,
}

impl Seen {
    /// The value of the first field `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::field(&self.head, name)
    }

    /// The request target, as received.
    pub fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("")
    }
}

/// Writes the answer to a request and returns whether to keep the connection for the next.
pub type Handler = Arc<dyn Fn(&Seen, &mut TcpStream) -> bool + Send + Sync>;

/// A running backend on 127.0.0.1. Dropping it stops accepting, so its address refuses
/// connections again; connections already open are served to their end.
#[derive(Debug)]
pub struct Backend {
    /// The id tests give it in the proxy's state, and the body [`Backend::start`] answers.
    pub name: String,
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// Answers `200` with its name as the body, closing when the request asks to.
    pub fn start(name: &str) -> Backend {
        Backend::with_handler(name, answer_name(name))
    }

    /// [`Backend::start`] on a given address, e.g. one a test kept dead until now.
    pub fn start_at(addr: SocketAddr, name: &str) -> Backend {
        Backend::listen(addr, name, answer_name(name))
    }

    /// Answers what `handler` writes.
    pub fn with_handler(name: &str, handler: Handler) -> Backend {
        Backend::listen(SocketAddr::from(([127, 0, 0, 1], 0)), name, handler)
    }

    /// Writes `answer` as is to the first request of each connection, then closes it: for
    /// answers framed by the close, answers that lie about their length, or no HTTP at all.
    pub fn answer_then_close(name: &str, answer: &'static [u8]) -> Backend {
        Backend::with_handler(
            name,
            Arc::new(move |_, stream| {
                let _ = stream.write_all(answer);
                false
            }),
        )
    }

    fn listen(addr: SocketAddr, name: &str, handler: Handler) -> Backend {
        let listener = TcpListener::bind(addr).expect("bind backend");
        let backend = Backend {
            name: name.to_owned(),
            addr: listener.local_addr().expect("backend addr"),
            requests: Arc::new(AtomicUsize::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (requests, connections, seen, stop) = (
            backend.requests.clone(),
            backend.connections.clone(),
            backend.seen.clone(),
            backend.stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let (requests, seen, handler) = (requests.clone(), seen.clone(), handler.clone());
                thread::spawn(move || serve(stream, &requests, &seen, &handler));
            }
        });
        backend
    }

    /// Requests read so far (counted before they are answered).
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The last request read; panics if there was none.
    pub fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and closes the listener.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The handler of [`Backend::start`].
fn answer_name(name: &str) -> Handler {
    let body = name.to_owned();
    Arc::new(move |seen, stream| {
        let close = seen
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        stream.write_all(answer.as_bytes()).is_ok() && !close
    })
}

/// Serves one connection until the peer closes, a read fails or the handler lets go.
fn serve(stream: TcpStream, requests: &AtomicUsize, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Ok(head) = wire::read_head(&mut reader) else {
            return;
        };
        let expects_continue =
            wire::field(&head, "expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        // The client waits for this before it sends the body.
        if expects_continue && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
        let mut tee = wire::Tee::new(&mut reader);
        let Ok(body) = wire::read_framed_body(&mut tee, &head) else {
            return;
        };
        let request = Seen {
            head,
            body: body.unwrap_or_default(),
            raw_body: tee.into_copy(),
        };
        requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut all) = seen.lock() {
            all.push(request.clone());
        }
        if !handler(&request, &mut writer) {
            return;
        }
    }
}
