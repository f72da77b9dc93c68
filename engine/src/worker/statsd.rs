//! The statsd exporter: once a second, each worker sends its metrics report over UDP,
//! batched into datagrams of at most [`MAX_PAYLOAD`] bytes (what fits an Ethernet frame
//! without fragmenting, as statsd clients commonly do).
//!
//! Lines, each `<prefix>.<name>:<value>|<type>`:
//! - counters as their delta since the last flush, `|c` (left out when 0): several workers'
//!   deltas add up on the server, as statsd counters do;
//! - gauges (`metric_names::is_gauge`) as the worker's level, `|g`, named
//!   `<prefix>.worker.<n>.<name>`: a gauge is a last value, so workers sharing a name would
//!   overwrite each other's;
//! - latency histograms as timers: each bucket that gained samples is one line
//!   `<name>:<ms>|ms|@<1/n>`, the bucket's middle in milliseconds at a sample rate that makes
//!   the server count it `n` times (statsd's own sampling arithmetic; the open last bucket is
//!   sent at the last bound).
//!
//! Sending never blocks: the socket is non-blocking and a datagram that cannot go at once is
//! dropped and counted (`statsd.dropped`). Names are built and compared here, once a second,
//! never on the data path.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use weir_schema::metric_names::{is_gauge, LATENCY_BOUNDS_US};
use weir_schema::proto;

/// Most payload bytes in one datagram.
pub const MAX_PAYLOAD: usize = 1432;

/// How often a worker sends.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A worker's statsd sender.
#[derive(Debug)]
pub struct Statsd {
    socket: UdpSocket,
    target: SocketAddr,
    lines: Lines,
    next_flush: Instant,
}

impl Statsd {
    /// A sender to `target`, its first flush one period after `now`.
    pub fn new(target: SocketAddr, prefix: &str, worker: u32, now: Instant) -> io::Result<Statsd> {
        let local: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Statsd {
            socket,
            target,
            lines: Lines::new(prefix, worker),
            next_flush: now + FLUSH_EVERY,
        })
    }

    /// Whether a flush is due at `now`; if so the next one is scheduled.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next_flush {
            return false;
        }
        self.next_flush = now + FLUSH_EVERY;
        true
    }

    /// Sends `report` (deltas since the last flush). Returns how many datagrams were dropped.
    pub fn flush(&mut self, report: &proto::Metrics) -> u64 {
        let mut dropped = 0;
        for datagram in self.lines.datagrams(report) {
            match self.socket.send_to(&datagram, self.target) {
                Ok(n) if n == datagram.len() => {}
                // Would block, or an error the kernel reported for an earlier datagram: the
                // line is lost either way, and traffic must not wait for a metrics server.
                _ => dropped += 1,
            }
        }
        dropped
    }
}

/// Turns reports into statsd lines, remembering what was sent (sans-io).
#[derive(Debug)]
struct Lines {
    prefix: String,
    worker: u32,
    counters: HashMap<String, u64>,
    histograms: HashMap<String, Vec<u64>>,
}

impl Lines {
    fn new(prefix: &str, worker: u32) -> Lines {
        Lines {
            prefix: sanitize(prefix.trim_matches('.')),
            worker,
            counters: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn name(&self, out: &mut String, gauge: bool, name: &str) {
        out.clear();
        if !self.prefix.is_empty() {
            out.push_str(&self.prefix);
            out.push('.');
        }
        if gauge {
            out.push_str(&format!("worker.{}.", self.worker));
        }
        out.push_str(&sanitize(name));
    }

    /// The lines for `report`, packed into datagrams.
    fn datagrams(&mut self, report: &proto::Metrics) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut name = String::new();
        for c in &report.counters {
            if is_gauge(&c.name) {
                self.name(&mut name, true, &c.name);
                lines.push(format!("{name}:{}|g", c.value));
                continue;
            }
            let last = self.counters.insert(c.name.clone(), c.value).unwrap_or(0);
            // Below the last value: the counter started again (its backend was re-added).
            let delta = c.value.checked_sub(last).unwrap_or(c.value);
            if delta > 0 {
                self.name(&mut name, false, &c.name);
                lines.push(format!("{name}:{delta}|c"));
            }
        }
        for h in &report.histograms {
            let last = self
                .histograms
                .insert(h.name.clone(), h.buckets.clone())
                .unwrap_or_default();
            let restarted = last.iter().zip(&h.buckets).any(|(was, is)| is < was);
            self.name(&mut name, false, &h.name);
            for (i, &count) in h.buckets.iter().enumerate() {
                let before = if restarted {
                    0
                } else {
                    last.get(i).copied().unwrap_or(0)
                };
                let delta = count.saturating_sub(before);
                if delta == 0 {
                    continue;
                }
                let ms = bucket_middle_ms(i);
                if delta == 1 {
                    lines.push(format!("{name}:{ms}|ms"));
                } else {
                    lines.push(format!("{name}:{ms}|ms|@{}", 1.0 / delta as f64));
                }
            }
        }
        pack(&lines, MAX_PAYLOAD)
    }
}

/// The value a bucket's samples are sent at: its middle, in milliseconds.
fn bucket_middle_ms(i: usize) -> f64 {
    let last = LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1];
    let upper = LATENCY_BOUNDS_US.get(i).copied().unwrap_or(last);
    let lower = match i {
        0 => 0,
        _ if i >= LATENCY_BOUNDS_US.len() => last,
        _ => LATENCY_BOUNDS_US[i - 1],
    };
    (lower + upper) as f64 / 2.0 / 1000.0
}

/// A name as statsd servers read it: `:`, `|`, `@`, spaces and newlines are the line's own
/// syntax, so anything but letters, digits and `_.-/` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Lines joined by `\n` into payloads of at most `max` bytes (a longer line goes alone).
fn pack(lines: &[String], max: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > max {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(b'\n');
        }
        current.extend_from_slice(line.as_bytes());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::metric_names::{CONNECTIONS_ACTIVE, HTTP_REQUESTS};

    fn report(requests: u64, active: u64, buckets: Vec<u64>) -> proto::Metrics {
        proto::Metrics {
            counters: vec![
                proto::Counter {
                    name: HTTP_REQUESTS.into(),
                    value: requests,
                },
                proto::Counter {
                    name: CONNECTIONS_ACTIVE.into(),
                    value: active,
                },
            ],
            histograms: vec![proto::Histogram {
                name: "cluster.shop:1.latency".into(),
                count: buckets.iter().sum(),
                buckets,
                sum_us: 0,
            }],
        }
    }

    fn text(datagrams: &[Vec<u8>]) -> Vec<String> {
        datagrams
            .iter()
            .flat_map(|d| {
                String::from_utf8(d.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn counters_go_as_deltas_gauges_as_levels_histograms_as_sampled_timers() {
        let mut lines = Lines::new("weir", 3);
        let mut buckets = vec![0; LATENCY_BOUNDS_US.len() + 1];
        buckets[0] = 1;
        buckets[3] = 4;
        let first = text(&lines.datagrams(&report(10, 2, buckets.clone())));
        assert_eq!(
            first,
            [
                "weir.http.requests:10|c",
                "weir.worker.3.connections.active:2|g",
                "weir.cluster.shop_1.latency:0.125|ms",
                "weir.cluster.shop_1.latency:1.75|ms|@0.25",
            ]
        );
        buckets[LATENCY_BOUNDS_US.len()] = 2;
        let second = text(&lines.datagrams(&report(15, 0, buckets)));
        assert_eq!(
            second,
            [
                "weir.http.requests:5|c",
                "weir.worker.3.connections.active:0|g",
                "weir.cluster.shop_1.latency:10000|ms|@0.5",
            ]
        );
        // Nothing new: only the gauge.
        let mut buckets = vec![0; LATENCY_BOUNDS_US.len() + 1];
        buckets[0] = 1;
        buckets[3] = 4;
        buckets[LATENCY_BOUNDS_US.len()] = 2;
        let third = text(&lines.datagrams(&report(15, 0, buckets)));
        assert_eq!(third, ["weir.worker.3.connections.active:0|g"]);
    }

    #[test]
    fn datagrams_stay_within_the_payload_and_keep_every_line() {
        let lines: Vec<String> = (0..500).map(|i| format!("weir.x.{i}:1|c")).collect();
        let packed = pack(&lines, MAX_PAYLOAD);
        assert!(packed.len() > 1);
        assert!(packed.iter().all(|d| d.len() <= MAX_PAYLOAD));
        assert_eq!(text(&packed), lines);
        assert!(pack(&[], MAX_PAYLOAD).is_empty());
    }
}
