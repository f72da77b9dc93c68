//! A worker's metrics as one report: the worker-wide counters, then per cluster and per
//! backend, then the certificates' expiry. `QueryMetrics` answers with it and the statsd
//! exporter sends it; either way names are built here, never on the data path.

use std::time::{SystemTime, UNIX_EPOCH};

use weir_schema::metric_names::{self as names, BackendCounter, ClusterCounter, Latency};
use weir_schema::{proto, State};

use super::context::Context;

/// Every counter and histogram of the worker. `live` is its session count; the certificates
/// come from its copy of the `state`, their seconds left counted from `wall`.
pub fn report(cx: &Context, live: usize, state: &State, wall: SystemTime) -> proto::Metrics {
    let mut counters = Vec::new();
    let mut histograms = Vec::new();
    cx.metrics
        .report(live, &cx.pool, cx.upstream.stats(), &mut counters);
    let mut add = |name: String, value: u64| counters.push(proto::Counter { name, value });
    for c in cx.upstream.clusters() {
        let id = &c.config.id;
        add(ClusterCounter::Requests.name(id), c.stats.requests);
        for class in 1..=5u8 {
            add(
                ClusterCounter::Responses(class).name(id),
                c.stats.responses[usize::from(class)],
            );
        }
        histograms.push(c.stats.latency.to_proto(Latency::Total.cluster_name(id)));
        histograms.push(
            c.stats
                .first_byte
                .to_proto(Latency::FirstByte.cluster_name(id)),
        );
    }
    for b in cx.upstream.backends() {
        let key = &b.config.key;
        for (counter, value) in [
            (BackendCounter::Active, u64::from(b.active)),
            (BackendCounter::Requests, b.requests),
            (BackendCounter::ConnectErrors, b.connect_errors),
            (BackendCounter::ConnectionsOpened, b.connections_opened),
            (BackendCounter::Idle, b.idle.len() as u64),
            (BackendCounter::Up, u64::from(b.health.is_up())),
        ] {
            add(counter.name(key), value);
        }
        for class in 1..=5u8 {
            add(
                BackendCounter::Responses(class).name(key),
                b.stats.responses[usize::from(class)],
            );
        }
        histograms.push(b.stats.latency.to_proto(Latency::Total.backend_name(key)));
        histograms.push(
            b.stats
                .first_byte
                .to_proto(Latency::FirstByte.backend_name(key)),
        );
    }
    let now = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (fingerprint, cert) in &state.certificates {
        let left = u64::try_from(cert.not_after.saturating_sub(now)).unwrap_or(0);
        add(names::certificate_seconds_left(fingerprint), left);
    }
    proto::Metrics {
        counters,
        histograms,
    }
}
