//! The names of the counters a proxy reports to `QueryMetrics` (and `weir metrics` prints).
//!
//! A name crosses process and crate boundaries: a worker publishes it, the main process sums
//! it across workers, and other programs read it (`weir plan` shows the live count of a
//! backend it drains; scripts read `weir metrics`). Each is defined here once, for the producer
//! and every reader to use, so the two cannot drift apart: they did, when the plan read
//! `backend.<cluster>/<id>.connections` while workers published `.active`.

use crate::model::{BackendId, BackendKey, ClusterId};

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
pub const BACKEND_CONNECT_ERRORS: &str = "backend.connect_errors";
pub const BACKEND_CONNECTIONS_OPENED: &str = "backend.connections_opened";
pub const BACKEND_CONNECTIONS_REUSED: &str = "backend.connections_reused";
pub const BACKEND_IDLE_EXPIRED: &str = "backend.idle_expired";
pub const BACKEND_IDLE_CLOSED_BY_BACKEND: &str = "backend.idle_closed_by_backend";
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
    /// 1 while health checks count it up, else 0.
    Up,
}

impl BackendCounter {
    pub const ALL: [BackendCounter; 6] = [
        BackendCounter::Active,
        BackendCounter::Requests,
        BackendCounter::ConnectErrors,
        BackendCounter::ConnectionsOpened,
        BackendCounter::Idle,
        BackendCounter::Up,
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

#[cfg(test)]
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
            BackendCounter::ConnectErrors.backend_of(BACKEND_CONNECT_ERRORS),
            None
        );
    }
}
