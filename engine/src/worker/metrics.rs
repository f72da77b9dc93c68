//! Plain counters a worker keeps, reported by `QueryMetrics`.
//!
//! Counters are bare integers bumped on the hot path; names are built only when reported.
//! Per-backend counters live with each backend (in the upstream's `BackendRt`) and are added to
//! the report by the worker's control side.

use weir_schema::{metric_names as names, proto};

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
}

impl Metrics {
    pub fn count_status(&mut self, code: u16) {
        let class = usize::from(code / 100).min(5);
        self.responses[class] += 1;
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
        add(names::BACKEND_CONNECT_ERRORS, upstream.connect_errors);
        add(names::BACKEND_CONNECTIONS_OPENED, upstream.opened);
        add(names::BACKEND_CONNECTIONS_REUSED, upstream.reused);
        add(names::BACKEND_IDLE_EXPIRED, upstream.idle_expired);
        add(names::BACKEND_IDLE_CLOSED_BY_BACKEND, upstream.idle_lost);
        add(names::BACKEND_LOCAL_SHORTAGES, upstream.local_shortages);
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
    }
}
