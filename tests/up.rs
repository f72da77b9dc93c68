//! End-to-end test of `weir up`: the one-command start on a copy of examples/quickstart (its
//! ports rewritten to free ones), through the real binary, stopped with SIGINT.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use util::weir_bin;
use weir_testkit::{free_port, http_get, refuses, wait_until};

/// Copies `from` into `to`, giving every `127.0.0.1:PORT` a free port (the same one wherever
/// the same port appears), so the test never collides with a real quickstart.
fn copy_with_free_ports(from: &Path, to: &Path, ports: &mut BTreeMap<u16, u16>) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_with_free_ports(&entry.path(), &target, ports);
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let Ok(text) = String::from_utf8(bytes.clone()) else {
            std::fs::write(&target, bytes).unwrap();
            continue;
        };
        let mut out = String::new();
        let mut rest = text.as_str();
        const PREFIX: &str = "127.0.0.1:";
        while let Some(i) = rest.find(PREFIX) {
            let after = &rest[i + PREFIX.len()..];
            let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
            out.push_str(&rest[..i + PREFIX.len()]);
            match after[..digits].parse::<u16>() {
                Ok(port) => {
                    let new = *ports.entry(port).or_insert_with(free_port);
                    out.push_str(&new.to_string());
                }
                Err(_) => out.push_str(&after[..digits]),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        std::fs::write(&target, out).unwrap();
    }
}

/// A running `weir up`. On an early failure it is stopped the way a user would (SIGINT), so
/// that it stops the proxy it started, and killed only if that does not work.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        if !wait_until(Duration::from_secs(10), || {
            self.0.try_wait().ok().flatten().is_some()
        }) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The first `curl -H 'Host: HOST' http://ADDR/PATH` line of the banner.
fn curl_line(lines: &[String]) -> Option<(String, SocketAddr, String)> {
    lines.iter().find_map(|l| {
        let rest = l.trim().strip_prefix("curl -H 'Host: ")?;
        let (host, rest) = rest.split_once("' http://")?;
        let slash = rest.find('/')?;
        let addr = rest[..slash].parse().ok()?;
        Some((host.to_owned(), addr, rest[slash..].to_owned()))
    })
}

/// What a started `weir up` gives a test: the process, the banner's route, its stderr lines.
struct Started {
    up: Up,
    addr: SocketAddr,
    host: String,
    path: String,
    body: String,
    stderr: Arc<Mutex<Vec<String>>>,
    _work: tempfile::TempDir,
}

/// Starts `weir up` on a copy of the quickstart and waits until its first route answers 200.
fn start_quickstart() -> Started {
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let work = util::private_tempdir();
    let dir = work.path().join("quickstart");
    std::fs::create_dir(&dir).unwrap();
    let mut ports = BTreeMap::new();
    copy_with_free_ports(&quickstart, &dir, &mut ports);
    assert!(
        !ports.is_empty(),
        "the quickstart names no 127.0.0.1 address"
    );
    let socket = work.path().join("weir.sock");

    let child = Command::new(weir_bin())
        .arg("up")
        .arg(&dir)
        .arg("--socket")
        .arg(&socket)
        .args(["--workers", "1"])
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir up");
    let mut up = Up(child);
    let child = &mut up.0;
    let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});

    let mut target = None;
    let started = wait_until(Duration::from_secs(30), || {
        target = curl_line(&stderr.lock().unwrap());
        target.is_some()
    });
    if !started {
        panic!("no banner: {:?}", stderr.lock().unwrap());
    }
    let (host, addr, path) = target.unwrap();
    let answer = wait_until(Duration::from_secs(10), || {
        http_get(addr, &host, &path).is_ok_and(|a| a.status == 200)
    });
    let body = http_get(addr, &host, &path).map(|a| a.text());
    if !answer {
        panic!(
            "no 200 from {addr} Host {host}: {body:?} {:?}",
            stderr.lock().unwrap()
        );
    }
    Started {
        up,
        addr,
        host,
        path,
        body: body.unwrap(),
        stderr,
        _work: work,
    }
}

#[test]
fn up_serves_the_quickstart_and_stops_cleanly_on_sigint() {
    let Started {
        mut up,
        addr,
        host,
        path,
        body,
        stderr,
        _work,
    } = start_quickstart();
    let child = &mut up.0;
    // A demo origin answers with its backend id, a colour word.
    assert!(
        ["blue", "green"].iter().any(|c| body.contains(c)),
        "{body:?}"
    );

    assert!(!refuses(addr));
    assert_eq!(http_get(addr, &host, &path).unwrap().status, 200);

    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    let exited = wait_until(Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        panic!(
            "weir up did not exit on SIGINT: {:?}",
            stderr.lock().unwrap()
        );
    }
    assert!(
        status.unwrap().success(),
        "exit {status:?}: {:?}",
        stderr.lock().unwrap()
    );
    // The proxy went with it: nothing listens on the route's address any more.
    assert!(
        wait_until(Duration::from_secs(5), || refuses(addr)),
        "the proxy is still serving after weir up exited"
    );
}

#[test]
fn a_killed_up_leaves_no_proxy_behind() {
    let Started {
        mut up,
        addr,
        host,
        path,
        _work,
        ..
    } = start_quickstart();
    assert_eq!(http_get(addr, &host, &path).unwrap().status, 200);
    // SIGKILL: `weir up` gets no chance to stop the proxy itself; the proxy must notice.
    up.0.kill().unwrap();
    up.0.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || refuses(addr)),
        "the proxy kept serving after weir up was killed"
    );
}
