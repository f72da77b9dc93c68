//! In-process harness for worker tests: a real worker on a thread, driven over a real
//! socketpair exactly as the main process drives it, plus tiny backends on 127.0.0.1.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use weir_engine::channel::{send_with_fd, WorkerConfig};
use weir_schema::framing::{encode_frame, read_frame, DEFAULT_MAX_FRAME};
use weir_schema::proto::{self, request::Kind, ResponseStatus};

/// A worker running on a thread.
pub struct TestWorker {
    pub channel: UnixStream,
    pub thread: Option<JoinHandle<Result<(), weir_engine::worker::WorkerError>>>,
    next_id: u64,
    /// Unsolicited messages (events) seen while waiting for answers.
    pub events: Vec<proto::Response>,
}

impl TestWorker {
    pub fn start(config: WorkerConfig) -> TestWorker {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let thread = thread::spawn(move || weir_engine::worker::run(config, theirs));
        ours.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        TestWorker {
            channel: ours,
            thread: Some(thread),
            next_id: 0,
            events: Vec::new(),
        }
    }

    pub fn with_defaults() -> TestWorker {
        TestWorker::start(WorkerConfig::default())
    }

    fn request(&mut self, kind: Kind) -> proto::Request {
        self.next_id += 1;
        proto::Request {
            id: format!("t-{}", self.next_id),
            expected_version: None,
            kind: Some(kind),
        }
    }

    /// Sends a request and returns every answer up to the final one.
    pub fn call_all(&mut self, kind: Kind) -> Vec<proto::Response> {
        let request = self.request(kind);
        self.channel
            .write_all(&encode_frame(&request))
            .expect("send");
        self.answers_for(&request.id)
    }

    pub fn answers_for(&mut self, id: &str) -> Vec<proto::Response> {
        let mut answers = Vec::new();
        loop {
            let answer: proto::Response = read_frame(&mut self.channel, DEFAULT_MAX_FRAME)
                .expect("read answer")
                .expect("worker closed the channel");
            if answer.id != id {
                self.events.push(answer);
                continue;
            }
            let last = answer.is_final();
            answers.push(answer);
            if last {
                return answers;
            }
        }
    }

    /// Sends a request and expects a final OK.
    pub fn call(&mut self, kind: Kind) -> proto::Response {
        let answers = self.call_all(kind);
        let last = answers.last().cloned().expect("an answer");
        assert_eq!(last.status(), ResponseStatus::Ok, "{last:?}");
        last
    }

    /// Sends a request without reading its answer; returns its id.
    pub fn send(&mut self, kind: Kind) -> String {
        let request = self.request(kind);
        self.channel
            .write_all(&encode_frame(&request))
            .expect("send");
        request.id
    }

    pub fn add_listener_with(
        &mut self,
        protocol: proto::ListenerProtocol,
        settings: proto::ListenerSettings,
    ) -> SocketAddr {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let request = self.request(Kind::AddListener(proto::Listener {
            address: addr.to_string(),
            protocol: protocol as i32,
            name: String::new(),
            settings: Some(settings),
        }));
        send_with_fd(&self.channel, &encode_frame(&request), socket.as_raw_fd()).expect("send fd");
        drop(socket);
        let answers = self.answers_for(&request.id);
        assert_eq!(
            answers.last().map(|a| a.status()),
            Some(ResponseStatus::Ok),
            "{answers:?}"
        );
        addr
    }

    pub fn add_http_listener(&mut self) -> SocketAddr {
        self.add_listener_with(
            proto::ListenerProtocol::Http,
            proto::ListenerSettings::default(),
        )
    }

    pub fn add_cluster(&mut self, cluster: proto::Cluster) {
        self.call(Kind::AddCluster(cluster));
    }

    pub fn cluster(id: &str) -> proto::Cluster {
        proto::Cluster {
            id: id.to_owned(),
            ..Default::default()
        }
    }

    pub fn add_backend(&mut self, cluster: &str, id: &str, addr: SocketAddr) {
        self.add_backend_with(cluster, id, addr, None, false);
    }

    pub fn add_backend_with(
        &mut self,
        cluster: &str,
        id: &str,
        addr: SocketAddr,
        weight: Option<u32>,
        backup: bool,
    ) {
        self.call(Kind::AddBackend(proto::Backend {
            cluster_id: cluster.to_owned(),
            id: id.to_owned(),
            address: addr.to_string(),
            weight,
            backup,
        }));
    }

    pub fn frontend(
        listener: SocketAddr,
        host: &str,
        path: &str,
        cluster: &str,
    ) -> proto::Frontend {
        proto::Frontend {
            listener: listener.to_string(),
            hostname: host.to_owned(),
            path: path.to_owned(),
            cluster_id: cluster.to_owned(),
            certificate: String::new(),
        }
    }

    pub fn add_frontend(&mut self, listener: SocketAddr, host: &str, path: &str, cluster: &str) {
        self.call(Kind::AddFrontend(TestWorker::frontend(
            listener, host, path, cluster,
        )));
    }

    /// A listener, a cluster `c` with these backends, and a route for `host` `/`.
    pub fn simple(&mut self, host: &str, backends: &[&Backend]) -> SocketAddr {
        let listener = self.add_http_listener();
        self.add_cluster(TestWorker::cluster("c"));
        for b in backends {
            self.add_backend("c", &b.name, b.addr);
        }
        self.add_frontend(listener, host, "/", "c");
        listener
    }

    pub fn metrics(&mut self) -> Vec<proto::Counter> {
        match self
            .call(Kind::QueryMetrics(proto::QueryMetrics {}))
            .content
        {
            Some(proto::response::Content::Metrics(m)) => m.counters,
            other => panic!("no metrics: {other:?}"),
        }
    }

    pub fn counter(&mut self, name: &str) -> u64 {
        self.metrics()
            .into_iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.value)
    }

    /// Hard-stops the worker and waits for its thread.
    pub fn stop(mut self) {
        self.call(Kind::HardStop(proto::HardStop {}));
        if let Some(t) = self.thread.take() {
            t.join().expect("worker thread").expect("worker result");
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        let _ = self.channel.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// What a backend does with a request.
pub type Handler = Arc<dyn Fn(&Seen, &mut TcpStream) -> bool + Send + Sync>;

/// A tiny HTTP/1.1 backend: one thread per connection, reads heads and bodies (Content-Length
/// or chunked), answers through its handler (which returns whether to keep the connection).
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    /// Answers `200` with its name as the body.
    pub fn start(name: &str) -> Backend {
        Backend::with_handler(name, Backend::name_handler(name))
    }

    /// The handler of [`Backend::start`].
    pub fn name_handler(name: &str) -> Handler {
        let body = name.to_owned();
        {
            Arc::new(move |seen, stream| {
                let close = seen
                    .header("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{}",
                    body.len(),
                    if close { "Connection: close\r\n" } else { "" },
                    body
                );
                stream.write_all(answer.as_bytes()).is_ok() && !close
            })
        }
    }

    pub fn with_handler(name: &str, handler: Handler) -> Backend {
        Backend::at("127.0.0.1:0".parse().expect("addr"), name, handler)
    }

    /// Starts on a given address (to bring a "dead" backend back).
    pub fn at(addr: SocketAddr, name: &str, handler: Handler) -> Backend {
        let listener = TcpListener::bind(addr).expect("bind backend");
        let addr = listener.local_addr().expect("addr");
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
        Backend {
            name: name.to_owned(),
            addr,
            requests,
            connections,
            seen,
        }
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

fn serve(stream: TcpStream, requests: &AtomicUsize, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
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
        let mut s = Seen {
            head,
            body: Vec::new(),
        };
        if let Some(len) = s
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            if s.header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            {
                let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            s.body.resize(len, 0);
            if reader.read_exact(&mut s.body).is_err() {
                return;
            }
        } else if s
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
                s.body.extend_from_slice(&chunk[..size]);
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut all) = seen.lock() {
            all.push(s.clone());
        }
        if !handler(&s, &mut writer) {
            return;
        }
    }
}

/// One HTTP answer as a client reads it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one answer (Content-Length, chunked, or until close; none for HEAD when `head`).
pub fn read_answer(stream: &mut TcpStream, head_request: bool) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
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
    if let Some(len) = answer.header("content-length") {
        let mut body = vec![0u8; len.parse().unwrap_or(0)];
        stream.read_exact(&mut body)?;
        answer.body = body;
    } else if answer
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        let mut reader = BufReader::new(stream.try_clone()?);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                loop {
                    let mut t = String::new();
                    reader.read_line(&mut t)?;
                    if t == "\r\n" || t.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk)?;
            answer.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        stream.read_to_end(&mut answer.body)?;
    }
    Ok(answer)
}

/// Sends raw bytes on a fresh connection and reads one answer.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = connect(addr);
    s.write_all(request).expect("write");
    read_answer(&mut s, false).expect("answer")
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Polls `check` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// An address nothing listens on (bound then closed).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
