//! Plain counters and latency histograms a worker keeps, reported by `QueryMetrics` and to
//! statsd.
//!
//! Counters are bare integers bumped on the hot path, histograms fixed arrays of them: a
//! request costs a few additions and a binary search over 15 bounds, no allocation and no
//! hashing (clusters and backends are found by their slab keys). Names are built only when
//! reported. Per-cluster and per-backend counters live with each cluster and backend (in the
//! upstream's `ClusterRt` and `BackendRt`) and are added to the report by `report.rs`.

use std::time::Duration;

use weir_schema::metric_names::{self as names, ServerError, LATENCY_BOUNDS_US};
use weir_schema::proto;

use super::buffer::BufferPool;

/// Worker-wide backend connection counters, kept by the upstream.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpstreamStats {
    pub opened: u64,
    pub reused: u64,
    pub connect_errors: u64,
    /// Idle pooled connections closed by the worker after `backend_idle_timeout`.
    pub idle_expired: u64,
    /// Idle pooled connections the backend closed (or wrote to unasked), dropped from the pool.
    pub idle_lost: u64,
    /// Connects that failed for want of fds or local ports here (see `shortage`).
    pub local_shortages: u64,
}

/// Buckets of a latency histogram: one per bound, and one for the samples above the last.
pub const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// A latency distribution over `LATENCY_BOUNDS_US` (upper bounds, inclusive: a sample equal
/// to a bound is in that bound's bucket, as Prometheus's `le`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; BUCKETS],
            sum_us: 0,
            count: 0,
        }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    pub fn to_proto(&self, name: String) -> proto::Histogram {
        proto::Histogram {
            name,
            buckets: self.buckets.to_vec(),
            sum_us: self.sum_us,
            count: self.count,
        }
    }
}

/// What a worker counts per cluster (beside its backends').
#[derive(Debug, Default, Clone)]
pub struct ClusterStats {
    /// Requests routed to the cluster.
    pub requests: u64,
    /// Answers to those requests by status class (index 1 = 1xx ... 5 = 5xx), the backends'
    /// and Weir's own (a 502, 503 or 504 for the cluster).
    pub responses: [u64; 6],
    /// Request routed to response's last byte (or to Weir's own answer).
    pub latency: Histogram,
    /// Request sent to a backend to its first answer byte.
    pub first_byte: Histogram,
}

impl ClusterStats {
    #[inline]
    pub fn count_status(&mut self, code: u16) {
        self.responses[status_class(code)] += 1;
    }
}

/// What a worker counts per backend, beside `BackendRt`'s connection counters.
#[derive(Debug, Default, Clone)]
pub struct BackendStats {
    /// The backend's own answers by status class.
    pub responses: [u64; 6],
    /// Request routed to the backend's response's last byte.
    pub latency: Histogram,
    /// Request sent to the backend to its first answer byte.
    pub first_byte: Histogram,
}

impl BackendStats {
    #[inline]
    pub fn count_status(&mut self, code: u16) {
        self.responses[status_class(code)] += 1;
    }
}

/// The index of `code`'s class in a `responses` array (1..=5).
#[inline]
fn status_class(code: u16) -> usize {
    usize::from(code / 100).clamp(1, 5)
}

/// Timeouts, by what timed out.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timeouts {
    pub connect: u64,
    pub response: u64,
    pub request: u64,
    pub idle: u64,
}

/// Worker-wide counters.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub connections_accepted: u64,
    /// Refused because of the connection cap (HTTP got a 503, TCP a close).
    pub connections_refused: u64,
    /// Accepts that failed for want of fds or memory (the listener then pauses).
    pub accept_shortages: u64,
    /// Refused because their client address held `max_connections_per_ip` already.
    pub connections_refused_per_ip: u64,
    /// Idle keep-alive connections closed at the cap to make room for a new one.
    pub connections_idle_closed: u64,
    pub http_requests: u64,
    /// Request bodies cut at `request_body_timeout`.
    pub body_timeouts: u64,
    /// Clients closed for reading too slowly (`send_timeout`).
    pub slow_reads: u64,
    /// Responses sent to clients by status class: index 1 = 1xx ... 5 = 5xx.
    pub responses: [u64; 6],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub websocket_upgrades: u64,
    pub tcp_sessions: u64,
    pub retries: u64,
    /// Clients that left while their request was at a backend (which was then let go).
    pub client_aborts: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed: unknown name, refused version or suite, a broken or
    /// missing ClientHello, the client leaving, the request timeout.
    pub tls_handshake_failures: u64,
    /// Access lines dropped because their target could not take them.
    pub access_log_dropped: u64,
    pub timeouts: Timeouts,
    /// 5xx answers by cause, indexed by `ServerError as usize`.
    pub server_errors: [u64; ServerError::ALL.len()],
    /// statsd datagrams dropped (the socket would block, or failed).
    pub statsd_dropped: u64,
}

impl Metrics {
    pub fn count_status(&mut self, code: u16) {
        self.responses[status_class(code)] += 1;
    }

    #[inline]
    pub fn count_server_error(&mut self, cause: ServerError) {
        self.server_errors[cause as usize] += 1;
    }

    /// Appends the counters, named as `weir_schema::metric_names` defines them.
    pub fn report(
        &self,
        active_connections: usize,
        buffers: &BufferPool,
        upstream: UpstreamStats,
        out: &mut Vec<proto::Counter>,
    ) {
        let mut add = |name: &str, value: u64| {
            out.push(proto::Counter {
                name: name.to_owned(),
                value,
            })
        };
        add(names::CONNECTIONS_ACCEPTED, self.connections_accepted);
        add(names::CONNECTIONS_ACTIVE, active_connections as u64);
        add(names::CONNECTIONS_REFUSED, self.connections_refused);
        add(names::CONNECTIONS_ACCEPT_SHORTAGES, self.accept_shortages);
        add(
            names::CONNECTIONS_REFUSED_PER_IP,
            self.connections_refused_per_ip,
        );
        add(names::CONNECTIONS_IDLE_CLOSED, self.connections_idle_closed);
        add(names::HTTP_REQUESTS, self.http_requests);
        add(names::HTTP_BODY_TIMEOUTS, self.body_timeouts);
        add(names::HTTP_SLOW_READS, self.slow_reads);
        for (class, name) in [
            (1, names::HTTP_RESPONSES_1XX),
            (2, names::HTTP_RESPONSES_2XX),
            (3, names::HTTP_RESPONSES_3XX),
            (4, names::HTTP_RESPONSES_4XX),
            (5, names::HTTP_RESPONSES_5XX),
        ] {
            add(name, self.responses[class]);
        }
        add(names::BACKENDS_CONNECT_ERRORS, upstream.connect_errors);
        add(names::BACKENDS_CONNECTIONS_OPENED, upstream.opened);
        add(names::BACKENDS_CONNECTIONS_REUSED, upstream.reused);
        add(names::BACKENDS_IDLE_EXPIRED, upstream.idle_expired);
        add(names::BACKENDS_IDLE_CLOSED_BY_BACKEND, upstream.idle_lost);
        add(names::BACKENDS_LOCAL_SHORTAGES, upstream.local_shortages);
        add(names::BYTES_IN, self.bytes_in);
        add(names::BYTES_OUT, self.bytes_out);
        add(names::WEBSOCKET_UPGRADES, self.websocket_upgrades);
        add(names::TCP_SESSIONS, self.tcp_sessions);
        add(names::HTTP_RETRIES, self.retries);
        add(names::HTTP_CLIENT_ABORTS, self.client_aborts);
        add(names::TLS_HANDSHAKES, self.tls_handshakes);
        add(names::TLS_HANDSHAKE_FAILURES, self.tls_handshake_failures);
        add(names::BUFFERS_IN_USE, buffers.in_use() as u64);
        add(names::BUFFERS_EXHAUSTED, buffers.exhausted);
        add(names::ACCESS_LOG_DROPPED, self.access_log_dropped);
        add(names::TIMEOUTS_CONNECT, self.timeouts.connect);
        add(names::TIMEOUTS_RESPONSE, self.timeouts.response);
        add(names::TIMEOUTS_REQUEST, self.timeouts.request);
        add(names::TIMEOUTS_IDLE, self.timeouts.idle);
        for cause in ServerError::ALL {
            add(cause.name(), self.server_errors[cause as usize]);
        }
        add(names::STATSD_DROPPED, self.statsd_dropped);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bucket_of(us: u64) -> usize {
        let mut h = Histogram::default();
        h.record(Duration::from_micros(us));
        assert_eq!(h.count, 1);
        assert_eq!(h.sum_us, us);
        h.buckets.iter().position(|&n| n == 1).unwrap()
    }

    #[test]
    fn a_sample_on_a_bound_is_in_that_bounds_bucket_and_one_above_in_the_next() {
        assert_eq!(bucket_of(0), 0);
        for (i, &bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            assert_eq!(bucket_of(bound), i, "{bound}us");
            assert_eq!(bucket_of(bound + 1), i + 1, "{}us", bound + 1);
        }
        // Above the last bound: the open bucket.
        assert_eq!(bucket_of(u64::MAX / 2), LATENCY_BOUNDS_US.len());
    }

    #[test]
    fn a_histogram_counts_and_sums_every_sample() {
        let mut h = Histogram::default();
        for ms in [1, 1, 3, 20, 20_000] {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.buckets.iter().sum::<u64>(), 5);
        assert_eq!(h.sum_us, 20_025_000);
        // 1ms twice (bound 1_000), 3ms in (2.5ms, 5ms], 20ms in (10ms, 25ms], 20s open.
        assert_eq!(h.buckets[2], 2);
        assert_eq!(h.buckets[4], 1);
        assert_eq!(h.buckets[6], 1);
        assert_eq!(h.buckets[BUCKETS - 1], 1);
        let wire = h.to_proto("cluster.a.latency".into());
        assert_eq!(wire.buckets.len(), BUCKETS);
        assert_eq!(wire.count, 5);
    }

    #[test]
    fn the_worker_wide_names_reported_are_the_shared_table_and_nothing_else() {
        let mut out = Vec::new();
        let pool = BufferPool::new(1024, 4);
        Metrics::default().report(0, &pool, UpstreamStats::default(), &mut out);
        let mut expected: Vec<&str> = names::WORKER_NAMES.to_vec();
        expected.extend(ServerError::ALL.iter().map(|c| c.name()));
        let mut reported: Vec<&str> = out.iter().map(|c| c.name.as_str()).collect();
        reported.sort_unstable();
        expected.sort_unstable();
        assert_eq!(reported, expected);
    }

    #[test]
    fn status_classes_clamp_to_one_through_five() {
        let mut m = Metrics::default();
        for code in [100, 200, 299, 404, 503, 599] {
            m.count_status(code);
        }
        assert_eq!(m.responses, [0, 1, 2, 0, 1, 2]);
    }
}
