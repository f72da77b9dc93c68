//! What an exchange counts: the statuses and latencies of its cluster and backend, and the
//! fields of its access line. Kept apart from the state machine, which only says when.

use std::time::Instant;

use super::Exchange;
use crate::worker::access_log::Outcome as LogOutcome;
use crate::worker::context::Context;
use crate::worker::dial::DialState;
use weir_schema::metric_names::ServerError;

impl Exchange {
    /// Counts one of Weir's own answers to this request (for its cluster).
    pub fn count_answer(&self, code: u16, cx: &mut Context) {
        count_answer(cx, self.cluster, code, self.started);
    }

    /// What the access line reports of this exchange so far.
    pub fn outcome(&self) -> LogOutcome {
        let (cluster, backend) = self.dial.keys();
        let since = |t: Instant| t.saturating_duration_since(self.started);
        LogOutcome {
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            cluster: Some(cluster),
            backend,
            connect: self.connected_at.map(since),
            backend_time: self.first_byte_at.map(since),
        }
    }

    /// The response went out whole, or a `101` came: its total latency, for its cluster and
    /// its backend.
    pub(super) fn record_latency(&self, cx: &mut Context) {
        let elapsed = cx.now.saturating_duration_since(self.started);
        if let Some(stats) = cx.upstream.cluster_stats(self.cluster) {
            stats.latency.record(elapsed);
        }
        if self.dial.state() != DialState::Gone {
            if let Some(stats) = cx.upstream.backend_stats(self.dial.link().backend) {
                stats.latency.record(elapsed);
            }
        }
    }

    /// The backend's first answer byte came: the time since the request went to it.
    pub(super) fn record_first_byte(&self, cx: &mut Context) {
        let elapsed = cx.now.saturating_duration_since(self.sent_at);
        if let Some(stats) = cx.upstream.cluster_stats(self.cluster) {
            stats.first_byte.record(elapsed);
        }
        if let Some(stats) = cx.upstream.backend_stats(self.dial.link().backend) {
            stats.first_byte.record(elapsed);
        }
    }

    /// Counts a status the backend sent: worker-wide, for the cluster and for the backend.
    pub(super) fn count_backend_status(&self, code: u16, cx: &mut Context) {
        cx.metrics.count_status(code);
        if code >= 500 {
            cx.metrics.count_server_error(ServerError::Backend);
        }
        if let Some(stats) = cx.upstream.cluster_stats(self.cluster) {
            stats.count_status(code);
        }
        if let Some(stats) = cx.upstream.backend_stats(self.dial.link().backend) {
            stats.count_status(code);
        }
    }
}

/// Counts one of Weir's own answers to a request routed to `cluster`, routed at `started`:
/// its status and latency for the cluster (the worker-wide count is the session's).
pub(super) fn count_answer(cx: &mut Context, cluster: usize, code: u16, started: Instant) {
    let elapsed = cx.now.saturating_duration_since(started);
    if let Some(stats) = cx.upstream.cluster_stats(cluster) {
        stats.count_status(code);
        stats.latency.record(elapsed);
    }
}
