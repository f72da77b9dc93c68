//! Prometheus text exposition (format 0.0.4) of a metrics answer: what `GET /metrics` on the
//! main process's admin address serves.
//!
//! Names are mapped by rules, not by a table, so a counter a worker starts reporting later comes
//! out right without this module changing:
//! - `backend.<cluster>/<id>.<x>` → `weir_backend_<x>{cluster, backend}`;
//! - `cluster.<id>.<x>` → `weir_cluster_<x>{cluster}`;
//! - `certificate.<fingerprint>.<x>` → `weir_certificate_<x>{fingerprint}`;
//! - a last segment `Nxx` becomes a `code="Nxx"` label (`http.responses.2xx` →
//!   `weir_http_responses_total{code="2xx"}`);
//! - every other dot (and any byte a metric name may not hold) becomes `_`;
//! - counters end in `_total`, gauges ([`metric_names::is_gauge`]) do not;
//! - histograms become `<name>_seconds_bucket{le}` (cumulative, in seconds, up to `+Inf`),
//!   `_sum` and `_count`.
//!
//! Cluster and backend ids may hold dots, so where an id ends is ambiguous from the name alone:
//! [`Ids`] (the ids of the live state) settles it, longest known id first; an id it does not
//! know ends at the first dot.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::metric_names::{self, LATENCY_BOUNDS_US};
use crate::proto;
use crate::State;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The cluster ids and `cluster/backend` keys a name may carry.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    clusters: HashSet<String>,
    backends: HashSet<String>,
}

impl Ids {
    pub fn of(state: &State) -> Ids {
        Ids {
            clusters: state.clusters.keys().map(|id| id.0.clone()).collect(),
            backends: state.backends.keys().map(|key| key.to_string()).collect(),
        }
    }
}

/// Where a metric belongs, and what is left of its name.
#[derive(Debug, PartialEq)]
struct Scoped<'a> {
    prefix: &'static str,
    labels: Vec<(&'static str, &'a str)>,
    rest: &'a str,
}

/// Splits `name` into its scope's labels and the rest, per the module's rules.
fn scope<'a>(name: &'a str, ids: &Ids) -> Scoped<'a> {
    if let Some(rest) = name.strip_prefix("backend.") {
        if let Some((key, rest)) = split_id(rest, &ids.backends, true) {
            if let Some((cluster, backend)) = key.split_once('/') {
                return Scoped {
                    prefix: "weir_backend_",
                    labels: vec![("cluster", cluster), ("backend", backend)],
                    rest,
                };
            }
        }
    } else if let Some(hex) = metric_names::certificate_of(name) {
        // One family for every certificate, told apart by a label: a fingerprint in the
        // family name would make a family per certificate, which no query can aggregate.
        if let Some(rest) = name
            .strip_prefix("certificate.")
            .and_then(|r| r.strip_prefix(hex))
            .and_then(|r| r.strip_prefix('.'))
        {
            return Scoped {
                prefix: "weir_certificate_",
                labels: vec![("fingerprint", hex)],
                rest,
            };
        }
    } else if let Some(rest) = name.strip_prefix("cluster.") {
        if let Some((id, rest)) = split_id(rest, &ids.clusters, false) {
            return Scoped {
                prefix: "weir_cluster_",
                labels: vec![("cluster", id)],
                rest,
            };
        }
    }
    Scoped {
        prefix: "weir_",
        labels: Vec::new(),
        rest: name,
    }
}

/// `text` as `<id>.<rest>`: the longest id in `known` followed by a dot, else up to the first
/// dot (after the `/` of a backend key). `None` if there is no such split.
fn split_id<'a>(text: &'a str, known: &HashSet<String>, keyed: bool) -> Option<(&'a str, &'a str)> {
    let dots = text.match_indices('.').map(|(i, _)| i);
    let mut longest = None;
    for i in dots {
        if known.contains(&text[..i]) {
            longest = Some(i);
        }
    }
    let end = match longest {
        Some(i) => i,
        None => {
            let from = if keyed { text.find('/')? + 1 } else { 0 };
            from + text[from..].find('.')?
        }
    };
    let (id, rest) = (&text[..end], &text[end + 1..]);
    (!id.is_empty() && !rest.is_empty()).then_some((id, rest))
}

/// The status class a last segment `1xx`..`5xx` names.
fn status_class(segment: &str) -> Option<&str> {
    let b = segment.as_bytes();
    (b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && &b[1..] == b"xx").then_some(segment)
}

/// A family name built from `prefix` and the dotted `rest`, every byte a name may not hold
/// turned into `_`.
fn family_name(prefix: &str, rest: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + rest.len() + 8);
    name.push_str(prefix);
    name.extend(rest.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// `value` escaped for a label value: backslash, double quote and line feed.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (n, (name, value)) in labels.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape_label(value));
    }
    out.push('}');
}

/// One family: its type and its sample lines, in the order they came.
#[derive(Debug, Default)]
struct Family {
    kind: &'static str,
    lines: String,
}

/// Where one metric of a worker's report goes in the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposed<'a> {
    /// The family's name (a histogram's, without `_bucket`, `_sum` or `_count`).
    pub family: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// The sample's labels, `le` aside.
    pub labels: Vec<(&'static str, &'a str)>,
}

/// Where the counter or gauge `name` is exposed.
pub fn exposed_counter<'a>(name: &'a str, ids: &Ids) -> Exposed<'a> {
    let Scoped {
        prefix,
        mut labels,
        rest,
    } = scope(name, ids);
    let rest = match rest.rsplit_once('.') {
        Some((head, last)) if status_class(last).is_some() => {
            labels.push(("code", last));
            head
        }
        _ => rest,
    };
    let gauge = metric_names::is_gauge(name);
    let mut family = family_name(prefix, rest);
    if !gauge && !family.ends_with("_total") {
        family.push_str("_total");
    }
    Exposed {
        family,
        kind: if gauge { "gauge" } else { "counter" },
        labels,
    }
}

/// Where the latency histogram `name` is exposed.
pub fn exposed_histogram<'a>(name: &'a str, ids: &Ids) -> Exposed<'a> {
    let Scoped {
        prefix,
        labels,
        rest,
    } = scope(name, ids);
    Exposed {
        family: family_name(prefix, rest) + "_seconds",
        kind: "histogram",
        labels,
    }
}

/// The exposition of `metrics`.
pub fn render(metrics: &proto::Metrics, ids: &Ids) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for counter in &metrics.counters {
        let Exposed {
            family: name,
            kind,
            labels,
        } = exposed_counter(&counter.name, ids);
        let family = families.entry(name.clone()).or_default();
        family.kind = kind;
        family.lines.push_str(&name);
        write_labels(&mut family.lines, &labels);
        let _ = writeln!(family.lines, " {}", counter.value);
    }
    for histogram in &metrics.histograms {
        // A histogram of another shape than the bounds cannot be given `le` labels.
        if histogram.buckets.len() != LATENCY_BOUNDS_US.len() + 1 {
            continue;
        }
        let Exposed {
            family: name,
            kind,
            labels,
        } = exposed_histogram(&histogram.name, ids);
        let family = families.entry(name.clone()).or_default();
        family.kind = kind;
        let mut cumulative = 0u64;
        for (i, count) in histogram.buckets.iter().enumerate() {
            cumulative = cumulative.saturating_add(*count);
            let le = match LATENCY_BOUNDS_US.get(i) {
                Some(&us) => seconds(us),
                None => "+Inf".to_owned(),
            };
            let mut with_le = labels.clone();
            with_le.push(("le", &le));
            family.lines.push_str(&name);
            family.lines.push_str("_bucket");
            write_labels(&mut family.lines, &with_le);
            let _ = writeln!(family.lines, " {cumulative}");
        }
        for (suffix, value) in [
            ("_sum", seconds(histogram.sum_us)),
            ("_count", cumulative.to_string()),
        ] {
            family.lines.push_str(&name);
            family.lines.push_str(suffix);
            write_labels(&mut family.lines, &labels);
            let _ = writeln!(family.lines, " {value}");
        }
    }
    let mut out = String::new();
    for (name, family) in families {
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        out.push_str(&family.lines);
    }
    out
}

/// Microseconds as seconds, in the shortest decimal that reads back exactly.
fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metric_names::{BackendCounter, ClusterCounter, Latency};
    use crate::{Backend, BackendId, BackendKey, Change, Cluster, ClusterId};

    fn counter(name: &str, value: u64) -> proto::Counter {
        proto::Counter {
            name: name.into(),
            value,
        }
    }

    fn ids(clusters: &[&str], backends: &[(&str, &str)]) -> Ids {
        let mut state = State::new();
        for c in clusters {
            state
                .apply_change(&Change::AddCluster(Cluster::new(c)), None)
                .unwrap();
        }
        for (c, b) in backends {
            let backend = Backend {
                owner: None,
                key: BackendKey {
                    cluster: ClusterId((*c).into()),
                    id: BackendId((*b).into()),
                },
                address: "127.0.0.1:1".parse().unwrap(),
                weight: 100,
                backup: false,
            };
            state
                .apply_change(&Change::AddBackend(backend), None)
                .unwrap();
        }
        Ids::of(&state)
    }

    #[test]
    fn names_map_by_rule_with_code_labels_and_total_on_counters_only() {
        let metrics = proto::Metrics {
            counters: vec![
                counter("http.responses.2xx", 7),
                counter("http.responses.5xx", 1),
                counter("connections.active", 3),
                counter("cluster.shop.responses.4xx", 2),
                counter("backend.shop/blue.requests", 5),
                counter("backend.shop/blue.up", 1),
                counter("some.new-counter", 9),
            ],
            histograms: vec![],
        };
        let text = render(&metrics, &ids(&["shop"], &[("shop", "blue")]));
        let expected = "\
# TYPE weir_backend_requests_total counter
weir_backend_requests_total{cluster=\"shop\",backend=\"blue\"} 5
# TYPE weir_backend_up gauge
weir_backend_up{cluster=\"shop\",backend=\"blue\"} 1
# TYPE weir_cluster_responses_total counter
weir_cluster_responses_total{cluster=\"shop\",code=\"4xx\"} 2
# TYPE weir_connections_active gauge
weir_connections_active 3
# TYPE weir_http_responses_total counter
weir_http_responses_total{code=\"2xx\"} 7
weir_http_responses_total{code=\"5xx\"} 1
# TYPE weir_some_new_counter_total counter
weir_some_new_counter_total 9
";
        assert_eq!(text, expected);
    }

    #[test]
    fn dotted_ids_split_at_the_known_id_and_unknown_ones_at_the_first_dot() {
        let known = ids(&["shop.eu"], &[("shop.eu", "blue-1.a")]);
        let id = ClusterId("shop.eu".into());
        let key = BackendKey {
            cluster: id.clone(),
            id: BackendId("blue-1.a".into()),
        };
        let metrics = proto::Metrics {
            counters: vec![
                counter(&ClusterCounter::Responses(5).name(&id), 1),
                counter(&BackendCounter::ConnectErrors.name(&key), 2),
                counter("backend.gone/old.requests", 3),
                counter("cluster.gone.requests", 4),
            ],
            histograms: vec![],
        };
        let text = render(&metrics, &known);
        for line in [
            "weir_cluster_responses_total{cluster=\"shop.eu\",code=\"5xx\"} 1",
            "weir_backend_connect_errors_total{cluster=\"shop.eu\",backend=\"blue-1.a\"} 2",
            "weir_backend_requests_total{cluster=\"gone\",backend=\"old\"} 3",
            "weir_cluster_requests_total{cluster=\"gone\"} 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    /// Every name a worker reports, from the shared tables in `metric_names`, for a cluster,
    /// a backend and a certificate: counters and gauges, then histograms.
    fn every_reported_name() -> (Vec<String>, Vec<String>) {
        use crate::metric_names::{certificate_seconds_left, ServerError, WORKER_NAMES};
        let id = ClusterId("shop.eu".into());
        let key = BackendKey {
            cluster: id.clone(),
            id: BackendId("blue-1.a".into()),
        };
        let mut counters: Vec<String> = WORKER_NAMES.iter().map(|&n| n.to_owned()).collect();
        counters.extend(ServerError::ALL.iter().map(|c| c.name().to_owned()));
        counters.extend(BackendCounter::ALL.iter().map(|c| c.name(&key)));
        counters.extend(ClusterCounter::ALL.iter().map(|c| c.name(&id)));
        counters.push(certificate_seconds_left(&crate::Fingerprint([0xab; 32])));
        let histograms = Latency::ALL
            .iter()
            .flat_map(|l| [l.cluster_name(&id), l.backend_name(&key)])
            .collect();
        (counters, histograms)
    }

    #[test]
    fn no_two_names_share_a_family_with_another_type_or_label_set() {
        let known = ids(&["shop.eu"], &[("shop.eu", "blue-1.a")]);
        let (counters, histograms) = every_reported_name();
        // family -> (type, label names, the name that made it)
        let mut seen: BTreeMap<String, (&str, Vec<&str>, &str)> = BTreeMap::new();
        let mut claim =
            |family: String, kind: &'static str, labels: Vec<&'static str>, name| match seen
                .get(&family)
            {
                Some((k, l, first)) => assert!(
                    *k == kind && *l == labels,
                    "{name} and {first} are both {family}, as {kind}{labels:?} and {k}{l:?}"
                ),
                None => {
                    seen.insert(family, (kind, labels, name));
                }
            };
        for name in &counters {
            let e = exposed_counter(name, &known);
            let labels = e.labels.iter().map(|(l, _)| *l).collect();
            claim(e.family, e.kind, labels, name.as_str());
        }
        for name in &histograms {
            let e = exposed_histogram(name, &known);
            let labels: Vec<&str> = e.labels.iter().map(|(l, _)| *l).collect();
            // A histogram's samples take these names too: no gauge may have one of them.
            for suffix in ["_bucket", "_sum", "_count"] {
                claim(e.family.clone() + suffix, "histogram", labels.clone(), name);
            }
            claim(e.family, e.kind, labels, name.as_str());
        }
        // Every per-cluster or per-backend name is labelled with whom it is about.
        for name in counters.iter().chain(&histograms) {
            let e = exposed_counter(name, &known);
            if name.starts_with("backend.") || name.starts_with("cluster.") {
                assert!(
                    e.labels
                        .iter()
                        .any(|(l, v)| *l == "cluster" && *v == "shop.eu"),
                    "{name}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn certificates_are_one_family_labelled_by_fingerprint() {
        let fp = crate::Fingerprint([0xab; 32]);
        let metrics = proto::Metrics {
            counters: vec![counter(
                &crate::metric_names::certificate_seconds_left(&fp),
                86_400,
            )],
            histograms: vec![],
        };
        let text = render(&metrics, &Ids::default());
        let expected = format!(
            "# TYPE weir_certificate_seconds_left gauge\n\
             weir_certificate_seconds_left{{fingerprint=\"{}\"}} 86400\n",
            fp.to_hex()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let known = ids(&["x\"y"], &[("x\"y", "b\\\n")]);
        let metrics = proto::Metrics {
            counters: vec![counter("backend.x\"y/b\\\n.requests", 1)],
            histograms: vec![],
        };
        let text = render(&metrics, &known);
        assert!(
            text.contains("{cluster=\"x\\\"y\",backend=\"b\\\\\\n\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_in_seconds_with_inf_sum_and_count() {
        let id = ClusterId("shop".into());
        let mut buckets = vec![0u64; LATENCY_BOUNDS_US.len() + 1];
        buckets[0] = 2; // <= 250 us
        buckets[3] = 3; // <= 2.5 ms
        buckets[LATENCY_BOUNDS_US.len()] = 1; // beyond 10 s
        let metrics = proto::Metrics {
            counters: vec![],
            histograms: vec![
                proto::Histogram {
                    name: Latency::Total.cluster_name(&id),
                    buckets,
                    sum_us: 12_500_000,
                    count: 6,
                },
                proto::Histogram {
                    name: "cluster.shop.broken".into(),
                    buckets: vec![1, 2],
                    sum_us: 1,
                    count: 3,
                },
            ],
        };
        let text = render(&metrics, &ids(&["shop"], &[]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# TYPE weir_cluster_latency_seconds histogram");
        assert_eq!(
            lines[1],
            "weir_cluster_latency_seconds_bucket{cluster=\"shop\",le=\"0.00025\"} 2"
        );
        assert_eq!(
            lines[4],
            "weir_cluster_latency_seconds_bucket{cluster=\"shop\",le=\"0.0025\"} 5"
        );
        assert_eq!(
            lines[15],
            "weir_cluster_latency_seconds_bucket{cluster=\"shop\",le=\"10\"} 5"
        );
        assert_eq!(
            lines[16],
            "weir_cluster_latency_seconds_bucket{cluster=\"shop\",le=\"+Inf\"} 6"
        );
        assert_eq!(
            lines[17],
            "weir_cluster_latency_seconds_sum{cluster=\"shop\"} 12.5"
        );
        assert_eq!(
            lines[18],
            "weir_cluster_latency_seconds_count{cluster=\"shop\"} 6"
        );
        assert_eq!(
            lines.len(),
            19,
            "the malformed histogram is left out: {text}"
        );
    }
}
