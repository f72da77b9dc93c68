//! Built-in demo origins for `weir up`: tiny HTTP servers on the addresses of backends marked
//! `demo: true`, so the quickstart answers `200` through the proxy with nothing else installed.
//!
//! Each answers every request with its backend id (and a colour word, when the id has none),
//! so switching a route from blue to green is visible with `curl`. They bind the address the
//! desired state names (always 127.0.0.1 in the examples), speak just enough HTTP/1.1 for the
//! proxy's keep-alive pool, and are not meant to carry real traffic: connections are capped and
//! idle ones time out.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use weir_schema::desired::DemoOrigin;

/// Most connections one demo origin serves at a time; more are answered `503` and closed.
const MAX_CONNECTIONS: usize = 256;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

const COLOURS: [&str; 6] = ["blue", "green", "red", "yellow", "purple", "orange"];

/// The running demo origins; they stop accepting when dropped.
#[derive(Debug)]
pub struct DemoOrigins {
    servers: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

/// A demo origin that could not start (its address is taken, say).
#[derive(Debug)]
pub struct Skipped {
    pub origin: DemoOrigin,
    pub error: io::Error,
}

impl DemoOrigins {
    /// Starts one server per origin. Origins whose address cannot be bound are returned in
    /// the second list rather than failing the whole start: something may already serve them.
    pub fn start(origins: &[DemoOrigin]) -> (DemoOrigins, Vec<Skipped>) {
        let mut servers = Vec::new();
        let mut skipped = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, origin) in origins.iter().enumerate() {
            // Clusters may share a demo address (many-apps does): the first backend serves it.
            if !seen.insert(origin.address) {
                continue;
            }
            match TcpListener::bind(origin.address) {
                Ok(listener) => {
                    let body = answer_body(&origin.backend.id.0, i);
                    let stop = Arc::new(AtomicBool::new(false));
                    let flag = stop.clone();
                    let spawned = thread::Builder::new()
                        .name(format!("weir-demo-{}", origin.backend))
                        .spawn(move || accept_loop(listener, body, flag));
                    match spawned {
                        Ok(_) => servers.push(Server {
                            address: origin.address,
                            stop,
                        }),
                        Err(error) => skipped.push(Skipped {
                            origin: origin.clone(),
                            error,
                        }),
                    }
                }
                Err(error) => skipped.push(Skipped {
                    origin: origin.clone(),
                    error,
                }),
            }
        }
        (DemoOrigins { servers }, skipped)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }
}

impl Drop for DemoOrigins {
    fn drop(&mut self) {
        for server in &self.servers {
            server.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so it sees the flag.
            let _ = TcpStream::connect_timeout(&server.address, Duration::from_millis(100));
        }
    }
}

/// `blue` → "blue"; `app-1` → "app-1 (green)": every answer names a colour.
fn answer_body(id: &str, index: usize) -> String {
    let lower = id.to_ascii_lowercase();
    if COLOURS.iter().any(|c| lower.contains(c)) {
        format!("{id}\n")
    } else {
        format!("{id} ({})\n", COLOURS[index % COLOURS.len()])
    }
}

fn accept_loop(listener: TcpListener, body: String, stop: Arc<AtomicBool>) {
    let body: Arc<str> = body.into();
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        }
        let spawned = thread::Builder::new().spawn({
            let (body, active) = (body.clone(), active.clone());
            move || {
                let _ = serve(stream, &body);
                active.fetch_sub(1, Ordering::SeqCst);
            }
        });
        if spawned.is_err() {
            // The closure was dropped unrun: give its slot back.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Serves requests on one connection until the client closes it, asks to, or goes idle.
fn serve(stream: TcpStream, body: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        // Discard a request body so the next request on the connection parses.
        if head.content_length > 0 {
            io::copy(
                &mut (&mut reader).take(head.content_length),
                &mut io::sink(),
            )?;
        }
        let connection = if head.close { "close" } else { "keep-alive" };
        let payload = if head.is_head { "" } else { body };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{payload}",
            body.len()
        )?;
        writer.flush()?;
        if head.close {
            return Ok(());
        }
    }
}

struct Head {
    content_length: u64,
    close: bool,
    is_head: bool,
}

/// Reads one request head; `None` when the client closed the connection between requests.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    let mut total = 0;
    let mut head = Head {
        content_length: 0,
        close: false,
        is_head: false,
    };
    let mut first = true;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return if first {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let trimmed = line.trim_end();
        if first {
            head.is_head = trimmed.starts_with("HEAD ");
            head.close = trimmed.ends_with("HTTP/1.0");
            first = false;
            continue;
        }
        if trimmed.is_empty() {
            return Ok(Some(head));
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value
                    .parse()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
            } else if name.eq_ignore_ascii_case("connection") {
                head.close = value.eq_ignore_ascii_case("close");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use weir_schema::{BackendId, BackendKey, ClusterId};

    fn origin(id: &str) -> DemoOrigin {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        DemoOrigin {
            backend: BackendKey {
                cluster: ClusterId("app".into()),
                id: BackendId(id.into()),
            },
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn get(stream: &mut TcpStream, close: bool) -> String {
        let conn = if close { "close" } else { "keep-alive" };
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }

    #[test]
    fn answers_with_the_backend_id_and_keeps_the_connection_alive() {
        let blue = origin("blue");
        let (origins, skipped) = DemoOrigins::start(std::slice::from_ref(&blue));
        assert!(skipped.is_empty());
        assert_eq!(origins.len(), 1);
        let mut stream = TcpStream::connect(blue.address).unwrap();
        assert_eq!(get(&mut stream, false), "blue\n");
        assert_eq!(
            get(&mut stream, true),
            "blue\n",
            "same connection, second request"
        );
    }

    #[test]
    fn a_taken_address_is_skipped_not_fatal() {
        let blue = origin("blue");
        let _taken = TcpListener::bind(blue.address).unwrap();
        let (origins, skipped) = DemoOrigins::start(&[blue]);
        assert_eq!(origins.len(), 0);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn a_shared_address_is_served_once() {
        let blue = origin("blue");
        let mut again = origin("blue-2");
        again.address = blue.address;
        let (origins, skipped) = DemoOrigins::start(&[blue, again]);
        assert_eq!(origins.len(), 1);
        assert!(skipped.is_empty());
    }

    #[test]
    fn ids_without_a_colour_get_one() {
        assert_eq!(answer_body("green-2", 0), "green-2\n");
        assert_eq!(answer_body("app-1", 1), "app-1 (green)\n");
    }
}
