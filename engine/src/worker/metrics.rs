//! Plain counters a worker keeps, reported by `QueryMetrics`.
//!
//! Counters are bare integers bumped on the hot path; names are built only when reported.
//! Per-backend counters live with each backend (in the upstream's `BackendRt`) and are added to
//! the report by the worker's control side.

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
}

/// Worker-wide counters.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub connections_accepted: u64,
    /// Refused because of the connection cap (HTTP got a 503, TCP a close).
    pub connections_refused: u64,
    pub http_requests: u64,
    /// Responses sent to clients by status class: index 1 = 1xx ... 5 = 5xx.
    pub responses: [u64; 6],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub websocket_upgrades: u64,
    pub tcp_sessions: u64,
    pub retries: u64,
    /// Clients that left while their request was at a backend (which was then let go).
    pub client_aborts: u64,
    /// https connections closed at accept (TLS is not served yet).
    pub tls_refused: u64,
}

impl Metrics {
    pub fn count_status(&mut self, code: u16) {
        let class = usize::from(code / 100).min(5);
        self.responses[class] += 1;
    }

    /// Appends the counters, named as the command protocol documents them.
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
        add("connections.accepted", self.connections_accepted);
        add("connections.active", active_connections as u64);
        add("connections.refused", self.connections_refused);
        add("http.requests", self.http_requests);
        for (class, name) in [
            (1, "http.responses.1xx"),
            (2, "http.responses.2xx"),
            (3, "http.responses.3xx"),
            (4, "http.responses.4xx"),
            (5, "http.responses.5xx"),
        ] {
            add(name, self.responses[class]);
        }
        add("backend.connect_errors", upstream.connect_errors);
        add("backend.connections_opened", upstream.opened);
        add("backend.connections_reused", upstream.reused);
        add("backend.idle_expired", upstream.idle_expired);
        add("backend.idle_closed_by_backend", upstream.idle_lost);
        add("bytes.in", self.bytes_in);
        add("bytes.out", self.bytes_out);
        add("websocket.upgrades", self.websocket_upgrades);
        add("tcp.sessions", self.tcp_sessions);
        add("http.retries", self.retries);
        add("http.client_aborts", self.client_aborts);
        add("tls.refused", self.tls_refused);
        add("buffers.in_use", buffers.in_use() as u64);
        add("buffers.exhausted", buffers.exhausted);
    }
}
