//! Test origins with behaviour the data-plane tests need: an HTTP server whose answers a
//! closure decides (chunked, slow, garbage, early close...), a TCP echo server, and a
//! WebSocket-style echo server (answers `101`, then echoes bytes). All bind 127.0.0.1 with a
//! port from the OS and serve each connection on its own thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as an origin read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("")
    }
}

/// Decides the answer: writes it to the stream and returns whether to keep the connection.
pub type Handler = Arc<dyn Fn(&Request, &mut TcpStream) -> bool + Send + Sync>;

/// An HTTP/1.1 origin driven by a [`Handler`]. Reads Content-Length and chunked bodies, and
/// answers `Expect: 100-continue` with an interim `100` before reading the body.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Request>>>,
}

impl HttpServer {
    pub fn start(handler: Handler) -> HttpServer {
        HttpServer::start_at("127.0.0.1:0".parse().expect("addr"), handler)
    }

    /// On a given address, e.g. to bring back a backend that was down.
    pub fn start_at(addr: SocketAddr, handler: Handler) -> HttpServer {
        let listener = TcpListener::bind(addr).expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, c, s) = (requests.clone(), connections.clone(), seen.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, s, h) = (r.clone(), s.clone(), handler.clone());
                thread::spawn(move || serve(stream, &r, &s, &h));
            }
        });
        HttpServer {
            addr,
            requests,
            connections,
            seen,
        }
    }

    /// Answers `200` with `body`.
    pub fn fixed(body: &str) -> HttpServer {
        HttpServer::start(fixed_handler(body))
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Request {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

/// The handler of [`HttpServer::fixed`].
pub fn fixed_handler(body: &str) -> Handler {
    let body = body.to_owned();
    Arc::new(move |req, stream| {
        let close = req
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

fn serve(stream: TcpStream, requests: &AtomicUsize, seen: &Mutex<Vec<Request>>, handler: &Handler) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut req = Request {
            head,
            body: Vec::new(),
        };
        if req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        if let Some(len) = req
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            req.body.resize(len, 0);
            if reader.read_exact(&mut req.body).is_err() {
                return;
            }
        } else if req
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or(0);
                if size == 0 {
                    loop {
                        let mut t = String::new();
                        if reader.read_line(&mut t).unwrap_or(0) == 0 || t == "\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                req.body.extend_from_slice(&chunk[..size]);
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut all) = seen.lock() {
            all.push(req.clone());
        }
        if !handler(&req, &mut writer) {
            return;
        }
    }
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

/// A TCP echo server.
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

/// A WebSocket-style echo origin: answers an Upgrade request with `101 Switching Protocols`,
/// then echoes bytes (frames are opaque to the proxy, so no framing is needed here).
pub fn websocket_echo() -> HttpServer {
    HttpServer::start(Arc::new(|req, stream| {
        let upgrade = req
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
    }))
}
