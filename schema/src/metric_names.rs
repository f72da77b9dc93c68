//! The names of the counters a proxy reports to `QueryMetrics` (and `weir metrics` prints).
//!
//! A name crosses process and crate boundaries: a worker publishes it, the main process sums
//! it across workers, and other programs read it (`weir plan` shows the live count of a
//! backend it drains; scripts read `weir metrics`). Each is defined here once, for the producer
//! and every reader to use, so the two cannot drift apart: they did, when the plan read
//! `backend.<cluster>/<id>.connections` while workers published `.active`.

use crate::model::{BackendId, BackendKey, ClusterId, Fingerprint};

pub const CONNECTIONS_ACCEPTED: &str = "connections.accepted";
/// Client connections open now.
pub const CONNECTIONS_ACTIVE: &str = "connections.active";
/// Refused because of the connection cap (HTTP got a 503, TCP a close).
pub const CONNECTIONS_REFUSED: &str = "connections.refused";
/// Refused because their client address held `max_connections_per_ip` already.
pub const CONNECTIONS_REFUSED_PER_IP: &str = "connections.refused_per_ip";
/// Idle keep-alive connections closed at the connection cap to make room for a new one.
pub const CONNECTIONS_IDLE_CLOSED: &str = "connections.idle_closed";
/// Requests whose body did not arrive whole within `request_body_timeout`.
pub const HTTP_BODY_TIMEOUTS: &str = "http.body_timeouts";
/// Connections closed because the client read its answer too slowly (`send_timeout`).
pub const HTTP_SLOW_READS: &str = "http.slow_reads";
pub const HTTP_REQUESTS: &str = "http.requests";
pub const HTTP_RESPONSES_1XX: &str = "http.responses.1xx";
pub const HTTP_RESPONSES_2XX: &str = "http.responses.2xx";
pub const HTTP_RESPONSES_3XX: &str = "http.responses.3xx";
pub const HTTP_RESPONSES_4XX: &str = "http.responses.4xx";
pub const HTTP_RESPONSES_5XX: &str = "http.responses.5xx";
// The worker's totals over all its backends are `backends.*`, never `backend.*`: that prefix
// is the per-backend names' (`backend.<cluster>/<id>.*`), and a worker total beside a
// per-backend counter of the same suffix would be one Prometheus family with two label sets
// (`backend.connect_errors` and `backend.<key>.connect_errors` both made
// `weir_backend_connect_errors_total`).
/// Backend connects that failed, all backends together.
pub const BACKENDS_CONNECT_ERRORS: &str = "backends.connect_errors";
/// Backend connections opened, all backends together.
pub const BACKENDS_CONNECTIONS_OPENED: &str = "backends.connections_opened";
/// Requests sent on a pooled keep-alive backend connection.
pub const BACKENDS_CONNECTIONS_REUSED: &str = "backends.connections_reused";
/// Idle pooled connections closed by the worker after `backend_idle_timeout`.
pub const BACKENDS_IDLE_EXPIRED: &str = "backends.idle_expired";
/// Idle pooled connections the backend closed (or wrote to unasked).
pub const BACKENDS_IDLE_CLOSED_BY_BACKEND: &str = "backends.idle_closed_by_backend";
/// Backend connects that failed for want of fds or local ports in the worker: answered 503,
/// never counted against the backend.
pub const BACKENDS_LOCAL_SHORTAGES: &str = "backends.local_shortages";
/// Accepts that failed for want of fds (or memory): the listener pauses, then retries.
pub const CONNECTIONS_ACCEPT_SHORTAGES: &str = "connections.accept_shortages";
pub const BYTES_IN: &str = "bytes.in";
pub const BYTES_OUT: &str = "bytes.out";
pub const WEBSOCKET_UPGRADES: &str = "websocket.upgrades";
pub const TCP_SESSIONS: &str = "tcp.sessions";
pub const HTTP_RETRIES: &str = "http.retries";
/// Clients that left while their request was at a backend.
pub const HTTP_CLIENT_ABORTS: &str = "http.client_aborts";
/// TLS handshakes completed.
pub const TLS_HANDSHAKES: &str = "tls.handshakes";
/// TLS handshakes that failed (unknown name, refused version, bad ClientHello, the client
/// leaving, the request timeout).
pub const TLS_HANDSHAKE_FAILURES: &str = "tls.handshake_failures";
pub const BUFFERS_IN_USE: &str = "buffers.in_use";
pub const BUFFERS_EXHAUSTED: &str = "buffers.exhausted";
/// Access lines dropped because their target could not take them (blocked or gone).
pub const ACCESS_LOG_DROPPED: &str = "access_log.dropped";
/// A connect to a backend took longer than its connect timeout (the next backend is tried).
pub const TIMEOUTS_CONNECT: &str = "timeouts.connect";
/// A backend did not answer (or stopped answering) within the response timeout.
pub const TIMEOUTS_RESPONSE: &str = "timeouts.response";
/// A client did not send its request head (or TLS handshake) within the request timeout.
pub const TIMEOUTS_REQUEST: &str = "timeouts.request";
/// An idle keep-alive connection or a quiet tunnel reached its idle timeout and was closed.
pub const TIMEOUTS_IDLE: &str = "timeouts.idle";
/// statsd datagrams dropped because the socket would have blocked or failed.
pub const STATSD_DROPPED: &str = "statsd.dropped";

/// Every worker-wide name (beside the 5xx causes, [`ServerError::name`]): what a worker
/// reports with no cluster, backend or certificate in the name. Exporters and tests iterate
/// it; a producer adding a worker-wide counter adds it here (the engine's report is checked
/// against this table).
pub const WORKER_NAMES: [&str; 36] = [
    CONNECTIONS_ACCEPTED,
    CONNECTIONS_ACTIVE,
    CONNECTIONS_REFUSED,
    CONNECTIONS_REFUSED_PER_IP,
    CONNECTIONS_IDLE_CLOSED,
    CONNECTIONS_ACCEPT_SHORTAGES,
    HTTP_BODY_TIMEOUTS,
    HTTP_SLOW_READS,
    HTTP_REQUESTS,
    HTTP_RESPONSES_1XX,
    HTTP_RESPONSES_2XX,
    HTTP_RESPONSES_3XX,
    HTTP_RESPONSES_4XX,
    HTTP_RESPONSES_5XX,
    HTTP_RETRIES,
    HTTP_CLIENT_ABORTS,
    BACKENDS_CONNECT_ERRORS,
    BACKENDS_CONNECTIONS_OPENED,
    BACKENDS_CONNECTIONS_REUSED,
    BACKENDS_IDLE_EXPIRED,
    BACKENDS_IDLE_CLOSED_BY_BACKEND,
    BACKENDS_LOCAL_SHORTAGES,
    BYTES_IN,
    BYTES_OUT,
    WEBSOCKET_UPGRADES,
    TCP_SESSIONS,
    TLS_HANDSHAKES,
    TLS_HANDSHAKE_FAILURES,
    BUFFERS_IN_USE,
    BUFFERS_EXHAUSTED,
    ACCESS_LOG_DROPPED,
    TIMEOUTS_CONNECT,
    TIMEOUTS_RESPONSE,
    TIMEOUTS_REQUEST,
    TIMEOUTS_IDLE,
    STATSD_DROPPED,
];

/// Why a 5xx went to a client, reported as `http.5xx.<cause>`. Their sum is
/// `http.responses.5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerError {
    /// Weir's 502: every connect attempt to the cluster's backends failed.
    ConnectFailed,
    /// Weir's 502: the backend's answer was broken, or it closed before answering.
    BadResponse,
    /// Weir's 503: no backend up, the connection cap, or no free buffer.
    Unavailable,
    /// Weir's 504: the backend did not answer in time.
    Timeout,
    /// Weir's 501 or 505: a request it does not support.
    Unsupported,
    /// The backend's own 5xx, passed on.
    Backend,
}

impl ServerError {
    pub const ALL: [ServerError; 6] = [
        ServerError::ConnectFailed,
        ServerError::BadResponse,
        ServerError::Unavailable,
        ServerError::Timeout,
        ServerError::Unsupported,
        ServerError::Backend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerError::ConnectFailed => "http.5xx.connect_failed",
            ServerError::BadResponse => "http.5xx.bad_response",
            ServerError::Unavailable => "http.5xx.unavailable",
            ServerError::Timeout => "http.5xx.timeout",
            ServerError::Unsupported => "http.5xx.unsupported",
            ServerError::Backend => "http.5xx.backend",
        }
    }

    /// The cause of one of Weir's own answers with status `code` (not the backend's).
    pub fn of_own_answer(code: u16) -> Option<ServerError> {
        match code {
            502 => Some(ServerError::BadResponse),
            503 => Some(ServerError::Unavailable),
            504 => Some(ServerError::Timeout),
            500..=599 => Some(ServerError::Unsupported),
            _ => None,
        }
    }
}

/// Seconds until a certificate expires (0 once it has), reported as
/// `certificate.<fingerprint>.seconds_left`: a gauge, one per certificate in the state.
pub fn certificate_seconds_left(fingerprint: &Fingerprint) -> String {
    format!("certificate.{fingerprint}.seconds_left")
}

/// The fingerprint (hex) that `name` is the expiry gauge of, if it is one.
pub fn certificate_of(name: &str) -> Option<&str> {
    let hex = name
        .strip_prefix("certificate.")?
        .strip_suffix(".seconds_left")?;
    (!hex.is_empty() && !hex.contains('.')).then_some(hex)
}

/// A counter kept for each backend, reported as `backend.<cluster>/<id>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendCounter {
    /// Requests in flight to the backend now: the connections a drain waits for.
    Active,
    Requests,
    ConnectErrors,
    ConnectionsOpened,
    /// Idle keep-alive connections pooled for it.
    Idle,
    /// 1 while health checks count it up, else 0. Summed over workers it is the largest
    /// worker's value (see [`fold_of`]): 1 when at least one worker counts it up.
    Up,
    /// The backend's own answers by status class (1..=5); Weir's answers (a 502 after a
    /// failed connect, a 504) count in the cluster's `responses`, not here.
    Responses(u8),
}

impl BackendCounter {
    pub const ALL: [BackendCounter; 11] = [
        BackendCounter::Active,
        BackendCounter::Requests,
        BackendCounter::ConnectErrors,
        BackendCounter::ConnectionsOpened,
        BackendCounter::Idle,
        BackendCounter::Up,
        BackendCounter::Responses(1),
        BackendCounter::Responses(2),
        BackendCounter::Responses(3),
        BackendCounter::Responses(4),
        BackendCounter::Responses(5),
    ];

    /// The last part of the name.
    pub fn suffix(self) -> &'static str {
        match self {
            BackendCounter::Active => "active",
            BackendCounter::Requests => "requests",
            BackendCounter::ConnectErrors => "connect_errors",
            BackendCounter::ConnectionsOpened => "connections_opened",
            BackendCounter::Idle => "idle",
            BackendCounter::Up => "up",
            BackendCounter::Responses(1) => "responses.1xx",
            BackendCounter::Responses(2) => "responses.2xx",
            BackendCounter::Responses(3) => "responses.3xx",
            BackendCounter::Responses(4) => "responses.4xx",
            BackendCounter::Responses(_) => "responses.5xx",
        }
    }

    /// This counter's name for the backend `key`.
    pub fn name(self, key: &BackendKey) -> String {
        format!("backend.{key}.{}", self.suffix())
    }

    /// The backend that `name` is this counter of, if it is one.
    pub fn backend_of(self, name: &str) -> Option<BackendKey> {
        let key = name
            .strip_prefix("backend.")?
            .strip_suffix(self.suffix())?
            .strip_suffix('.')?;
        let (cluster, id) = key.split_once('/')?;
        Some(BackendKey {
            cluster: ClusterId(cluster.to_owned()),
            id: BackendId(id.to_owned()),
        })
    }
}

/// A counter kept for each cluster, reported as `cluster.<id>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterCounter {
    Requests,
    /// Responses sent to clients for requests routed to the cluster, by status class (1..=5).
    Responses(u8),
}

impl ClusterCounter {
    pub const ALL: [ClusterCounter; 6] = [
        ClusterCounter::Requests,
        ClusterCounter::Responses(1),
        ClusterCounter::Responses(2),
        ClusterCounter::Responses(3),
        ClusterCounter::Responses(4),
        ClusterCounter::Responses(5),
    ];

    /// The last part of the name.
    pub fn suffix(self) -> &'static str {
        match self {
            ClusterCounter::Requests => "requests",
            ClusterCounter::Responses(1) => "responses.1xx",
            ClusterCounter::Responses(2) => "responses.2xx",
            ClusterCounter::Responses(3) => "responses.3xx",
            ClusterCounter::Responses(4) => "responses.4xx",
            ClusterCounter::Responses(_) => "responses.5xx",
        }
    }

    /// This counter's name for the cluster `id`.
    pub fn name(self, id: &ClusterId) -> String {
        format!("cluster.{id}.{}", self.suffix())
    }

    /// The cluster that `name` is this counter of, if it is one.
    pub fn cluster_of(self, name: &str) -> Option<ClusterId> {
        let id = name
            .strip_prefix("cluster.")?
            .strip_suffix(self.suffix())?
            .strip_suffix('.')?;
        (!id.is_empty()).then(|| ClusterId(id.to_owned()))
    }
}

/// Upper bounds, in microseconds, of every latency histogram's buckets. A histogram has one
/// more bucket than this, for the samples above the last bound (Prometheus's `+Inf`).
pub const LATENCY_BOUNDS_US: [u64; 15] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The latency histograms kept per cluster (`cluster.<id>.<suffix>`) and per backend
/// (`backend.<cluster>/<id>.<suffix>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Latency {
    /// From the request's first byte to the response's last byte sent to the client; for an
    /// upgrade, to its `101` (the tunnel after it is no request).
    Total,
    /// From the request sent to the backend to the backend's first response byte.
    FirstByte,
}

impl Latency {
    pub const ALL: [Latency; 2] = [Latency::Total, Latency::FirstByte];

    pub fn suffix(self) -> &'static str {
        match self {
            Latency::Total => "latency",
            Latency::FirstByte => "first_byte_latency",
        }
    }

    pub fn cluster_name(self, id: &ClusterId) -> String {
        format!("cluster.{id}.{}", self.suffix())
    }

    pub fn backend_name(self, key: &BackendKey) -> String {
        format!("backend.{key}.{}", self.suffix())
    }

    /// What the histogram `name` measures, and for which cluster or backend.
    pub fn parse(name: &str) -> Option<(Latency, LatencyScope)> {
        // `first_byte_latency` ends in `latency`: try the longer suffix first.
        for latency in [Latency::FirstByte, Latency::Total] {
            let Some(rest) = name
                .strip_suffix(latency.suffix())
                .and_then(|r| r.strip_suffix('.'))
            else {
                continue;
            };
            if let Some(id) = rest.strip_prefix("cluster.") {
                if !id.is_empty() {
                    return Some((latency, LatencyScope::Cluster(ClusterId(id.to_owned()))));
                }
            } else if let Some((cluster, id)) = rest
                .strip_prefix("backend.")
                .and_then(|k| k.split_once('/'))
            {
                let key = BackendKey {
                    cluster: ClusterId(cluster.to_owned()),
                    id: BackendId(id.to_owned()),
                };
                return Some((latency, LatencyScope::Backend(key)));
            }
            return None;
        }
        None
    }
}

/// Whom a latency histogram is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyScope {
    Cluster(ClusterId),
    Backend(BackendKey),
}

/// The value below which a fraction `q` (0..=1) of a histogram's samples fall, in seconds,
/// interpolated linearly inside the bucket it lands in (as Prometheus's `histogram_quantile`).
/// `None` when the histogram is empty. A quantile in the open last bucket is the last bound.
pub fn quantile_seconds(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let Some(&upper) = LATENCY_BOUNDS_US.get(i) else {
                break;
            };
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] };
            let within = (rank - below as f64) / count as f64;
            let us = lower as f64 + (upper - lower) as f64 * within;
            return Some(us / 1e6);
        }
        below += count;
    }
    LATENCY_BOUNDS_US.last().map(|&us| us as f64 / 1e6)
}

/// Whether `name` is a gauge (a level that goes up and down: open connections, buffers in use,
/// a backend being up) rather than a counter that only grows. Exporters (Prometheus's `# TYPE`,
/// statsd's `|g` vs `|c`) ask this; a producer adding a gauge adds it here.
pub fn is_gauge(name: &str) -> bool {
    const WORKER_GAUGES: [&str; 2] = [CONNECTIONS_ACTIVE, BUFFERS_IN_USE];
    const BACKEND_GAUGES: [BackendCounter; 3] = [
        BackendCounter::Active,
        BackendCounter::Idle,
        BackendCounter::Up,
    ];
    WORKER_GAUGES.contains(&name)
        || certificate_of(name).is_some()
        || BACKEND_GAUGES
            .iter()
            .any(|counter| counter.backend_of(name).is_some())
}

/// How one name's values from several workers make the proxy's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Counters, and gauges that are each worker's share of a whole (open connections,
    /// buffers in use, a backend's active requests: what a drain waits for).
    Sum,
    /// Gauges every worker knows whole: a backend's `up` (1 when any worker counts it up;
    /// passive health is per worker, so one worker's failed connect does not hide the others')
    /// and a certificate's seconds left (the same in every worker).
    Max,
}

/// How the main process folds `name` across workers.
pub fn fold_of(name: &str) -> Fold {
    if certificate_of(name).is_some() || BackendCounter::Up.backend_of(name).is_some() {
        Fold::Max
    } else {
        Fold::Sum
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn a_backend_counter_name_reads_back_as_its_backend_and_no_other_counter() {
        let key = BackendKey {
            cluster: ClusterId("shop.eu".into()),
            id: BackendId("blue-1.a".into()),
        };
        for counter in BackendCounter::ALL {
            let name = counter.name(&key);
            assert_eq!(counter.backend_of(&name), Some(key.clone()), "{name}");
            for other in BackendCounter::ALL.into_iter().filter(|&o| o != counter) {
                assert_eq!(other.backend_of(&name), None, "{name} read as {other:?}");
            }
        }
        assert_eq!(
            BackendCounter::Active.name(&key),
            "backend.shop.eu/blue-1.a.active"
        );
        // Worker-wide backend counters name no backend.
        assert_eq!(
            BackendCounter::ConnectErrors.backend_of(BACKENDS_CONNECT_ERRORS),
            None
        );
    }

    #[test]
    fn cluster_counter_and_latency_names_read_back() {
        let id = ClusterId("shop.eu".into());
        for counter in ClusterCounter::ALL {
            let name = counter.name(&id);
            assert_eq!(counter.cluster_of(&name), Some(id.clone()), "{name}");
            for other in ClusterCounter::ALL.into_iter().filter(|&o| o != counter) {
                assert_eq!(other.cluster_of(&name), None, "{name} read as {other:?}");
            }
        }
        assert_eq!(
            ClusterCounter::Responses(5).name(&id),
            "cluster.shop.eu.responses.5xx"
        );
        let key = BackendKey {
            cluster: id.clone(),
            id: BackendId("blue-1.a".into()),
        };
        for latency in Latency::ALL {
            assert_eq!(
                Latency::parse(&latency.cluster_name(&id)),
                Some((latency, LatencyScope::Cluster(id.clone())))
            );
            assert_eq!(
                Latency::parse(&latency.backend_name(&key)),
                Some((latency, LatencyScope::Backend(key.clone())))
            );
        }
        assert_eq!(Latency::parse("cluster..latency"), None);
        assert_eq!(Latency::parse(HTTP_REQUESTS), None);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let mut buckets = [0u64; LATENCY_BOUNDS_US.len() + 1];
        assert_eq!(quantile_seconds(&buckets, 0.5), None);
        // 100 samples in (1ms, 2.5ms]: the median is half way through that bucket.
        buckets[3] = 100;
        let p50 = quantile_seconds(&buckets, 0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        let p100 = quantile_seconds(&buckets, 1.0).unwrap();
        assert!((p100 - 0.0025).abs() < 1e-9, "{p100}");
        // One slow sample beyond the last bound: p99 stays in the fast bucket, p100 is capped.
        buckets[LATENCY_BOUNDS_US.len()] = 1;
        assert!(quantile_seconds(&buckets, 0.99).unwrap() <= 0.0025);
        assert_eq!(quantile_seconds(&buckets, 1.0), Some(10.0));
    }

    #[test]
    fn gauges_are_the_levels_and_nothing_else() {
        let key = BackendKey {
            cluster: ClusterId("shop".into()),
            id: BackendId("blue".into()),
        };
        assert!(is_gauge(CONNECTIONS_ACTIVE));
        assert!(is_gauge(&BackendCounter::Up.name(&key)));
        assert!(is_gauge(&BackendCounter::Active.name(&key)));
        assert!(!is_gauge(&BackendCounter::Requests.name(&key)));
        assert!(!is_gauge(HTTP_REQUESTS));
        assert!(!is_gauge(CONNECTIONS_ACCEPTED));
    }

    #[test]
    fn up_and_certificates_fold_by_max_everything_else_by_sum() {
        let key = BackendKey {
            cluster: ClusterId("shop".into()),
            id: BackendId("blue".into()),
        };
        let fp = Fingerprint([0xab; 32]);
        let cert = certificate_seconds_left(&fp);
        assert_eq!(certificate_of(&cert), Some(fp.to_hex().as_str()));
        assert!(is_gauge(&cert));
        assert_eq!(fold_of(&cert), Fold::Max);
        assert_eq!(fold_of(&BackendCounter::Up.name(&key)), Fold::Max);
        assert_eq!(fold_of(&BackendCounter::Active.name(&key)), Fold::Sum);
        assert_eq!(fold_of(&BackendCounter::Responses(5).name(&key)), Fold::Sum);
        assert_eq!(fold_of(CONNECTIONS_ACTIVE), Fold::Sum);
        assert_eq!(certificate_of("certificate..seconds_left"), None);
        assert_eq!(certificate_of(HTTP_REQUESTS), None);
        assert_eq!(
            BackendCounter::Responses(2).name(&key),
            "backend.shop/blue.responses.2xx"
        );
        // Weir's own 5xx by status; every cause has its own name.
        assert_eq!(ServerError::of_own_answer(504), Some(ServerError::Timeout));
        assert_eq!(ServerError::of_own_answer(404), None);
        let names: std::collections::BTreeSet<_> =
            ServerError::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ServerError::ALL.len());
    }
}
