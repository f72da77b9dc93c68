//! Plans for people ([`text`]: Terraform-like) and for programs ([`json`]: the stable format of
//! docs/plan-json.md), each renderer in its own module. What both show is here: a resource's
//! attributes, and the live connection counts read from a proxy's metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use weir_schema::cert::utc_date as date;
use weir_schema::metric_names::BackendCounter;
use weir_schema::model::Resource;
use weir_schema::{proto, BackendKey};

use crate::address::Names;

mod json;
mod text;

pub use json::{
    json, json_to_writer, json_view, request_name, step_json, PlanJson, JSON_FORMAT_VERSION,
};
pub use text::{text, TextOptions};

/// Live connections per backend, as a proxy's metrics give them: each backend's
/// [`BackendCounter::Active`] (`backend.<cluster>/<id>.active`), summed over its workers.
pub fn connections_from_metrics(metrics: &proto::Metrics) -> BTreeMap<BackendKey, u64> {
    metrics
        .counters
        .iter()
        .filter_map(|c| Some((BackendCounter::Active.backend_of(&c.name)?, c.value)))
        .collect()
}

fn duration(d: Option<Duration>) -> Value {
    match d {
        Some(d) if d.subsec_millis() == 0 => Value::String(format!("{}s", d.as_secs())),
        Some(d) => Value::String(format!("{}ms", d.as_millis())),
        None => Value::Null,
    }
}

/// A resource's attributes, by name, as JSON values (`null` for "the default").
pub fn attributes(r: &Resource, names: &Names) -> Vec<(&'static str, Value)> {
    let mut attrs = settings(r, names);
    // Only when set, so plans made without owners read as they always did.
    if let Some(owner) = owner_of(r) {
        attrs.push(("owner", json!(owner.0)));
    }
    attrs
}

fn owner_of(r: &Resource) -> Option<&weir_schema::Owner> {
    match r {
        Resource::Listener(l) => l.owner.as_ref(),
        Resource::Cluster(c) => c.owner.as_ref(),
        Resource::Backend(b) => b.owner.as_ref(),
        Resource::Certificate(c) => c.owner.as_ref(),
        Resource::Frontend(f) => f.owner.as_ref(),
    }
}

fn settings(r: &Resource, names: &Names) -> Vec<(&'static str, Value)> {
    match r {
        Resource::Listener(l) => {
            let mut attrs = vec![
                ("address", json!(l.address.to_string())),
                ("protocol", json!(l.protocol.as_str())),
                ("name", json!(l.name)),
                ("front_timeout", duration(l.settings.front_timeout)),
                ("tunnel_timeout", duration(l.settings.tunnel_timeout)),
                ("request_timeout", duration(l.settings.request_timeout)),
                ("max_request_body", json!(l.settings.max_request_body)),
                ("answer_404", json!(l.settings.answer_404)),
                ("answer_503", json!(l.settings.answer_503)),
                (
                    "tls_versions",
                    json!(l
                        .settings
                        .tls_versions
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()),
                ),
            ];
            // The limits added after plans were first published show only when set, so
            // plans of listeners without them read as they always did.
            let s = &l.settings;
            let optional = [
                (
                    "allow_underscores_in_headers",
                    s.allow_underscores_in_headers.then_some(json!(true)),
                ),
                (
                    "max_connections_per_ip",
                    s.max_connections_per_ip.map(|n| json!(n)),
                ),
                (
                    "max_requests_per_connection",
                    s.max_requests_per_connection.map(|n| json!(n)),
                ),
                (
                    "request_body_timeout",
                    s.request_body_timeout.map(|d| duration(Some(d))),
                ),
                ("send_timeout", s.send_timeout.map(|d| duration(Some(d)))),
                (
                    "request_id_header",
                    s.request_id_header.as_ref().map(|n| json!(n)),
                ),
            ];
            attrs.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
            attrs
        }
        Resource::Cluster(c) => vec![
            ("id", json!(c.id.0)),
            ("load_balancing", json!(c.load_balancing.as_str())),
            (
                "health_check",
                match &c.health_check {
                    Some(hc) => json!({
                        "path": hc.path,
                        "interval": duration(Some(hc.interval)),
                        "timeout": duration(Some(hc.timeout)),
                        "healthy_threshold": hc.healthy_threshold,
                        "unhealthy_threshold": hc.unhealthy_threshold,
                    }),
                    None => Value::Null,
                },
            ),
            ("connect_timeout", duration(c.connect_timeout)),
            ("response_timeout", duration(c.response_timeout)),
        ],
        Resource::Backend(b) => vec![
            ("cluster", json!(b.key.cluster.0)),
            ("id", json!(b.key.id.0)),
            ("address", json!(b.address.to_string())),
            ("weight", json!(b.weight)),
            ("backup", json!(b.backup)),
        ],
        Resource::Certificate(c) => vec![
            ("name", json!(names.certificate(c.fingerprint))),
            ("fingerprint", json!(c.fingerprint.to_hex())),
            ("dns_names", json!(c.dns_names)),
            ("not_after", json!(date(c.not_after))),
        ],
        Resource::Frontend(f) => vec![
            ("listener", json!(names.listener(f.listener))),
            ("listener_address", json!(f.listener.to_string())),
            ("hostname", json!(f.hostname)),
            ("path", json!(f.path)),
            ("cluster", json!(f.cluster.0)),
            (
                "certificate",
                json!(f.certificate.map(|fp| names.certificate(fp))),
            ),
            (
                "certificate_fingerprint",
                json!(f.certificate.map(|fp| fp.to_hex())),
            ),
        ],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Counters as a worker names them (`weir_schema::metric_names`), not as a test would
    /// guess: only each backend's live count is read, whatever else is reported.
    #[test]
    fn live_connections_are_read_from_the_names_workers_publish() {
        let key = |cluster: &str, id: &str| BackendKey {
            cluster: weir_schema::ClusterId(cluster.into()),
            id: weir_schema::BackendId(id.into()),
        };
        let mut counters = vec![proto::Counter {
            name: weir_schema::metric_names::HTTP_REQUESTS.into(),
            value: 9,
        }];
        for (backend, live) in [(key("shop", "blue-1"), 3), (key("shop", "blue-2"), 0)] {
            for counter in BackendCounter::ALL {
                let value = if counter == BackendCounter::Active {
                    live
                } else {
                    7
                };
                counters.push(proto::Counter {
                    name: counter.name(&backend),
                    value,
                });
            }
        }
        let got = connections_from_metrics(&proto::Metrics {
            counters,
            ..Default::default()
        });
        let expected = BTreeMap::from([(key("shop", "blue-1"), 3), (key("shop", "blue-2"), 0)]);
        assert_eq!(got, expected);
    }
}
