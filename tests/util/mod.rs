//! The one end-to-end harness: runs the real `weir` binary, takes ports from the OS, waits by
//! polling readiness (never by sleeping a guessed time), and starts tiny real backends on
//! 127.0.0.1.
//!
//! Each test file includes it with `mod util;`; not every file uses every helper.
#![allow(dead_code)]

pub mod backend;
pub mod control;
pub mod servers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `weir` binary cargo built for this test run.
pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// Runs `weir ARGS...` to completion and returns its output.
pub fn weir(args: &[&str]) -> Output {
    Command::new(weir_bin())
        .args(args)
        .env_remove("WEIR_SOCKET")
        .output()
        .expect("run weir")
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ask the OS for a free port")
}

/// Polls `check` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr) -> bool {
    wait_until(Duration::from_secs(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// A temporary directory holding desired-state files.
pub struct Desired {
    pub dir: tempfile::TempDir,
}

impl Desired {
    pub fn new() -> Desired {
        Desired {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes (or overwrites) a file relative to the directory.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write desired file");
        path
    }
}

/// A running `weir proxy`, killed (with its workers) when dropped.
pub struct Proxy {
    pub child: Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `weir proxy --socket S EXTRA...` and waits until its command socket answers.
    pub fn start(extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("weir.sock");
        let child = Command::new(weir_bin())
            .arg("proxy")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env_remove("WEIR_SOCKET")
            .stdin(Stdio::null())
            .spawn()
            .expect("start weir proxy");
        let mut proxy = Proxy {
            child,
            socket,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&proxy.socket).is_ok()
        });
        if !ready {
            let status = proxy.child.try_wait().ok().flatten();
            panic!("weir proxy did not open its command socket (exit: {status:?})");
        }
        proxy
    }

    /// Starts the proxy serving a desired-state directory, with `workers` workers.
    pub fn with_desired(desired: &Path, workers: usize) -> Proxy {
        let desired = desired.to_str().expect("utf-8 path");
        Proxy::start(&["--desired", desired, "--workers", &workers.to_string()])
    }

    pub fn socket_str(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    /// Runs `weir ARGS... --socket <this proxy>`.
    pub fn weir(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--socket");
        all.push(self.socket_str());
        weir(&all)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGKILL the main process; workers notice their channel closing and exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 answer, as read by [`http_request`].
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends raw bytes on a fresh connection and reads one answer (head, then a Content-Length or
/// chunked body, or until close).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<HttpAnswer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    read_answer(&mut stream)
}

/// `GET path` with a Host header, `Connection: close`.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<HttpAnswer> {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Reads one HTTP answer from a stream.
pub fn read_answer(stream: &mut TcpStream) -> std::io::Result<HttpAnswer> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut answer = HttpAnswer {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(len) = answer.header("content-length") {
        let len: usize = len.parse().unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body)?;
        answer.body = body;
    } else if answer
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        answer.body = read_chunked(stream)?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        stream.read_to_end(&mut answer.body)?;
    }
    Ok(answer)
}

fn read_line(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_chunked(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(stream)?.is_empty() {}
            return Ok(body);
        }
        let mut chunk = vec![0u8; size];
        stream.read_exact(&mut chunk)?;
        body.extend_from_slice(&chunk);
        read_line(stream)?;
    }
}

/// Runs `curl ARGS...` and returns its output (curl is on every machine CI runs on).
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl")
}
