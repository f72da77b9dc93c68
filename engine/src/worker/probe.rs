//! Active health checks: a periodic `GET <path>` to each backend of a cluster that configures
//! one. A 2xx or 3xx status within the check's timeout is a success; anything else (refused,
//! reset, timeout, other status) a failure. Results feed the backend's [`Health`] with the
//! cluster's thresholds.
//!
//! Probes are rare (one per backend per interval), so each may allocate its small request.
//!
//! [`Health`]: super::health::Health

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::context::Context;
use super::shortage::is_local_shortage;
use super::token::token_other;

#[derive(Debug)]
struct Probe {
    backend: usize,
    stream: TcpStream,
    request: Vec<u8>,
    written: usize,
    /// The start of the status line.
    got: [u8; 12],
    got_len: usize,
    deadline: Instant,
}

/// Health probes in flight.
#[derive(Debug, Default)]
pub struct Probes {
    probes: Slab<Probe>,
    due: Vec<(usize, std::net::SocketAddr, weir_schema::HealthCheck)>,
}

impl Probes {
    pub fn new() -> Probes {
        Probes::default()
    }

    /// Starts the checks that are due.
    pub fn start_due(&mut self, cx: &mut Context) {
        self.due.clear();
        cx.upstream.due_checks(cx.now, &mut self.due);
        for (backend, address, check) in self.due.drain(..) {
            // One probe per backend at a time.
            if self.probes.iter().any(|(_, p)| p.backend == backend) {
                continue;
            }
            let mut stream = match TcpStream::connect(address) {
                Ok(stream) => stream,
                // Out of fds or ports here: no verdict on the backend; the next check tries.
                Err(e) if is_local_shortage(&e) => continue,
                Err(_) => {
                    cx.upstream.record_check(backend, false);
                    continue;
                }
            };
            let entry = self.probes.vacant_entry();
            let token = Token(token_other(entry.key() + 1));
            if let Err(e) =
                cx.registry
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                if !is_local_shortage(&e) {
                    cx.upstream.record_check(backend, false);
                }
                continue;
            }
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: weir-health-check\r\nConnection: close\r\n\r\n",
                check.path
            )
            .into_bytes();
            entry.insert(Probe {
                backend,
                stream,
                request,
                written: 0,
                got: [0; 12],
                got_len: 0,
                deadline: cx.now + check.timeout,
            });
        }
    }

    /// Fails the probes past their timeout.
    pub fn expire(&mut self, cx: &mut Context) {
        let late: Vec<usize> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= cx.now)
            .map(|(k, _)| k)
            .collect();
        for key in late {
            self.finish(key, false, cx);
        }
    }

    pub fn on_event(&mut self, key: usize, cx: &mut Context) {
        let Some(probe) = self.probes.get_mut(key) else {
            return;
        };
        if let Ok(Some(_)) | Err(_) = probe.stream.take_error() {
            return self.finish(key, false, cx);
        }
        while probe.written < probe.request.len() {
            match probe.stream.write(&probe.request[probe.written..]) {
                Ok(n) => probe.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.finish(key, false, cx),
            }
        }
        while probe.got_len < probe.got.len() {
            match probe.stream.read(&mut probe.got[probe.got_len..]) {
                Ok(0) => return self.finish(key, false, cx),
                Ok(n) => probe.got_len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.finish(key, false, cx),
            }
        }
        // "HTTP/1.x 2xx" or "3xx".
        let ok = probe.got.starts_with(b"HTTP/1.") && matches!(probe.got[9], b'2' | b'3');
        self.finish(key, ok, cx);
    }

    fn finish(&mut self, key: usize, ok: bool, cx: &mut Context) {
        if self.probes.contains(key) {
            let mut probe = self.probes.remove(key);
            let _ = cx.registry.deregister(&mut probe.stream);
            cx.upstream.record_check(probe.backend, ok);
        }
    }
}
