//! Plans for programs: JSON, format version 1.
//!
//! JSON is the documented, stable format of docs/plan-json.md: fields are only ever added,
//! and `format_version` changes if one ever changes meaning. It holds no private key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::Value;
use weir_schema::model::{Resource, TlsVersion};
use weir_schema::{BackendKey, Change, Fingerprint};

use super::date;
use crate::address::Names;
use crate::plan::{Plan, Step};

/// The version of the JSON format [`json`] writes.
pub const JSON_FORMAT_VERSION: u64 = 1;

/// The request a change sends, named as the protocol's field (`add_backend`, ...).
pub fn request_name(change: &Change) -> &'static str {
    match change {
        Change::AddListener(_) => "add_listener",
        Change::UpdateListener(_) => "update_listener",
        Change::RemoveListener(_) => "remove_listener",
        Change::AddCluster(_) => "add_cluster",
        Change::UpdateCluster(_) => "update_cluster",
        Change::RemoveCluster(_) => "remove_cluster",
        Change::AddBackend(_) => "add_backend",
        Change::UpdateBackend(_) => "update_backend",
        Change::RemoveBackend { .. } => "remove_backend",
        Change::AddCertificate(_) => "add_certificate",
        Change::ReplaceCertificate { .. } => "replace_certificate",
        Change::RemoveCertificate(_) => "remove_certificate",
        Change::AddFrontend(_) => "add_frontend",
        Change::UpdateFrontend(_) => "update_frontend",
        Change::RemoveFrontend(_) => "remove_frontend",
    }
}

/// One step as JSON (also used by `weir apply --json`).
pub fn step_json(number: usize, step: &Step) -> Value {
    // Serializing these structs into a `Value` cannot fail: every key is a string and no
    // number is a float.
    serde_json::to_value(StepJson::new(number, step)).unwrap_or_default()
}

/// The plan in the stable JSON format (docs/plan-json.md), as a tree.
///
/// To print a plan, [`json_to_writer`] (or serializing [`json_view`]) writes the same JSON
/// without building the tree first, which for big plans is most of the cost.
pub fn json(plan: &Plan) -> Value {
    // Cannot fail, as in `step_json`.
    serde_json::to_value(json_view(plan)).unwrap_or_default()
}

/// Writes the plan in the stable JSON format (docs/plan-json.md), pretty-printed as `weir plan
/// --json` prints it, without a trailing newline.
pub fn json_to_writer<W: std::io::Write>(writer: W, plan: &Plan) -> serde_json::Result<()> {
    serde_json::to_writer_pretty(writer, &json_view(plan))
}

/// The plan as something to serialize in the JSON format of [`json`], borrowing the plan.
pub fn json_view(plan: &Plan) -> PlanJson<'_> {
    PlanJson { plan, live: None }
}

/// A plan that serializes in the JSON format of [`json`]; made by [`json_view`].
///
/// Serializers that keep fields in the order they are given (serde_json's writers) see them in
/// the sorted order a `Value` tree has, so both give the same bytes: every struct below lists
/// its fields alphabetically for that reason.
#[derive(Debug, Clone, Copy)]
pub struct PlanJson<'a> {
    plan: &'a Plan,
    live: Option<&'a BTreeMap<BackendKey, u64>>,
}

impl<'a> PlanJson<'a> {
    /// Gives each step that removes a backend whose live connection count `live` holds a
    /// `live_connections` field with it, as `weir plan` shows the count next to the drain in
    /// text. Only a plan printed for review has them: a count holds for a moment, so saved
    /// plans (and [`json`]) carry none.
    pub fn with_live_connections(self, live: &'a BTreeMap<BackendKey, u64>) -> PlanJson<'a> {
        PlanJson {
            live: Some(live),
            ..self
        }
    }
}

impl Serialize for PlanJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let plan = self.plan;
        let summary = plan.summary();
        PlanFields {
            changes: Changes(plan),
            drain_timeout_ms: plan
                .drain_timeout()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            empty: plan.is_empty(),
            format_version: JSON_FORMAT_VERSION,
            from: FromJson {
                fingerprint: Shown(plan.from_fingerprint()),
                version: plan.from_version(),
            },
            notes: plan.notes(),
            steps: Steps(plan.steps(), self.live),
            summary: SummaryJson {
                add: summary.add,
                change: summary.change,
                remove: summary.remove,
            },
            targets: Targets(plan.targets()),
            to: ToJson {
                fingerprint: plan.to_fingerprint().map(Shown),
            },
        }
        .serialize(serializer)
    }
}

#[derive(Serialize)]
struct PlanFields<'a> {
    changes: Changes<'a>,
    drain_timeout_ms: Option<u64>,
    empty: bool,
    format_version: u64,
    from: FromJson,
    notes: &'a [String],
    steps: Steps<'a>,
    summary: SummaryJson,
    targets: Targets<'a>,
    to: ToJson,
}

#[derive(Serialize)]
struct FromJson {
    fingerprint: Shown<Fingerprint>,
    version: u64,
}

#[derive(Serialize)]
struct ToJson {
    fingerprint: Option<Shown<Fingerprint>>,
}

#[derive(Serialize)]
struct SummaryJson {
    add: usize,
    change: usize,
    remove: usize,
}

/// A value serialized as the string its `Display` writes, with no `String` in between.
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// An optional duration as [`super::duration`] shows it: `"5s"`, `"1500ms"`, or `null`.
struct DurationJson(Option<Duration>);

impl DurationJson {
    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl Serialize for DurationJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) if d.subsec_millis() == 0 => {
                serializer.collect_str(&format_args!("{}s", d.as_secs()))
            }
            Some(d) => serializer.collect_str(&format_args!("{}ms", d.as_millis())),
            None => serializer.serialize_none(),
        }
    }
}

struct Targets<'a>(&'a [crate::Address]);

impl Serialize for Targets<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Shown))
    }
}

struct Steps<'a>(&'a [Step], Option<&'a BTreeMap<BackendKey, u64>>);

impl Serialize for Steps<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().enumerate().map(|(i, step)| {
            let mut json = StepJson::new(i + 1, step);
            if let (Change::RemoveBackend { key, .. }, Some(live)) = (&step.change, self.1) {
                json.live_connections = live.get(key).copied();
            }
            json
        }))
    }
}

#[derive(Serialize)]
struct StepJson<'a> {
    address: Shown<&'a crate::Address>,
    drain: bool,
    kind: &'static str,
    /// Only when known: see [`PlanJson::with_live_connections`].
    #[serde(skip_serializing_if = "Option::is_none")]
    live_connections: Option<u64>,
    note: Option<&'a str>,
    number: usize,
    op: &'static str,
    part_of: &'static str,
    phase: u8,
    phase_name: &'static str,
    request: &'static str,
}

impl<'a> StepJson<'a> {
    fn new(number: usize, step: &'a Step) -> StepJson<'a> {
        StepJson {
            address: Shown(&step.address),
            drain: step.is_drain(),
            kind: step.address.kind.as_str(),
            live_connections: None,
            note: step.note.as_deref(),
            number,
            op: step.op.as_str(),
            part_of: step.part_of.as_str(),
            phase: step.phase.number(),
            phase_name: step.phase.title(),
            request: request_name(&step.change),
        }
    }
}

struct Changes<'a>(&'a Plan);

impl Serialize for Changes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = self.0.names();
        serializer.collect_seq(self.0.changes().iter().map(|c| ChangeJson {
            action: c.action.as_str(),
            address: Shown(&c.address),
            after: c.after.as_ref().map(|r| AttributesJson(r, names)),
            before: c.before.as_ref().map(|r| AttributesJson(r, names)),
            kind: c.address.kind.as_str(),
        }))
    }
}

#[derive(Serialize)]
struct ChangeJson<'a> {
    action: &'static str,
    address: Shown<&'a crate::Address>,
    after: Option<AttributesJson<'a>>,
    before: Option<AttributesJson<'a>>,
    kind: &'static str,
}

/// A resource's attributes as a JSON object: the same as [`super::attributes`] gives (a test
/// holds the two together), written without building `Value`s.
struct AttributesJson<'a>(&'a Resource, &'a Names);

impl Serialize for AttributesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = self.1;
        match self.0 {
            Resource::Listener(l) => ListenerJson {
                address: Shown(l.address),
                allow_underscores_in_headers: l.settings.allow_underscores_in_headers,
                answer_404: l.settings.answer_404.as_deref(),
                answer_503: l.settings.answer_503.as_deref(),
                front_timeout: DurationJson(l.settings.front_timeout),
                max_connections_per_ip: l.settings.max_connections_per_ip,
                max_request_body: l.settings.max_request_body,
                max_requests_per_connection: l.settings.max_requests_per_connection,
                name: &l.name,
                owner: owner_str(&l.owner),
                protocol: l.protocol.as_str(),
                request_body_timeout: DurationJson(l.settings.request_body_timeout),
                request_id_header: l.settings.request_id_header.as_deref(),
                request_timeout: DurationJson(l.settings.request_timeout),
                send_timeout: DurationJson(l.settings.send_timeout),
                tls_versions: TlsVersions(&l.settings.tls_versions),
                tunnel_timeout: DurationJson(l.settings.tunnel_timeout),
            }
            .serialize(serializer),
            Resource::Cluster(c) => ClusterJson {
                connect_timeout: DurationJson(c.connect_timeout),
                health_check: c.health_check.as_ref().map(|hc| HealthCheckJson {
                    healthy_threshold: hc.healthy_threshold,
                    interval: DurationJson(Some(hc.interval)),
                    path: &hc.path,
                    timeout: DurationJson(Some(hc.timeout)),
                    unhealthy_threshold: hc.unhealthy_threshold,
                }),
                id: &c.id.0,
                load_balancing: c.load_balancing.as_str(),
                owner: owner_str(&c.owner),
                response_timeout: DurationJson(c.response_timeout),
            }
            .serialize(serializer),
            Resource::Backend(b) => BackendJson {
                address: Shown(b.address),
                backup: b.backup,
                cluster: &b.key.cluster.0,
                id: &b.key.id.0,
                owner: owner_str(&b.owner),
                weight: b.weight,
            }
            .serialize(serializer),
            Resource::Certificate(c) => CertificateJson {
                dns_names: &c.dns_names,
                fingerprint: Shown(c.fingerprint),
                name: names.certificate(c.fingerprint),
                not_after: date(c.not_after),
                owner: owner_str(&c.owner),
            }
            .serialize(serializer),
            Resource::Frontend(f) => FrontendJson {
                certificate: f.certificate.map(|fp| names.certificate(fp)),
                certificate_fingerprint: f.certificate.map(Shown),
                cluster: &f.cluster.0,
                hostname: f.hostname.as_deref(),
                listener: names.listener(f.listener),
                listener_address: Shown(f.listener),
                owner: owner_str(&f.owner),
                path: &f.path,
            }
            .serialize(serializer),
        }
    }
}

/// A resource's owner, left out of its object when it has none (docs/plan-json.md).
fn owner_str(owner: &Option<weir_schema::Owner>) -> Option<&str> {
    owner.as_ref().map(|o| o.0.as_str())
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    address: Shown<std::net::SocketAddr>,
    // The limits added after format 1 was published show only when set, so plans of
    // listeners without them read as they always did.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_underscores_in_headers: bool,
    answer_404: Option<&'a str>,
    answer_503: Option<&'a str>,
    front_timeout: DurationJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_ip: Option<u32>,
    max_request_body: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_requests_per_connection: Option<u32>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    protocol: &'static str,
    #[serde(skip_serializing_if = "DurationJson::is_none")]
    request_body_timeout: DurationJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id_header: Option<&'a str>,
    request_timeout: DurationJson,
    #[serde(skip_serializing_if = "DurationJson::is_none")]
    send_timeout: DurationJson,
    tls_versions: TlsVersions<'a>,
    tunnel_timeout: DurationJson,
}

struct TlsVersions<'a>(&'a [TlsVersion]);

impl Serialize for TlsVersions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|v| v.as_str()))
    }
}

#[derive(Serialize)]
struct ClusterJson<'a> {
    connect_timeout: DurationJson,
    health_check: Option<HealthCheckJson<'a>>,
    id: &'a str,
    load_balancing: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    response_timeout: DurationJson,
}

#[derive(Serialize)]
struct HealthCheckJson<'a> {
    healthy_threshold: u32,
    interval: DurationJson,
    path: &'a str,
    timeout: DurationJson,
    unhealthy_threshold: u32,
}

#[derive(Serialize)]
struct BackendJson<'a> {
    address: Shown<std::net::SocketAddr>,
    backup: bool,
    cluster: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    weight: u32,
}

#[derive(Serialize)]
struct CertificateJson<'a> {
    dns_names: &'a [String],
    fingerprint: Shown<Fingerprint>,
    name: String,
    not_after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
}

#[derive(Serialize)]
struct FrontendJson<'a> {
    certificate: Option<String>,
    certificate_fingerprint: Option<Shown<Fingerprint>>,
    cluster: &'a str,
    hostname: Option<&'a str>,
    listener: String,
    listener_address: Shown<std::net::SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    path: &'a str,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::render::attributes;
    use weir_schema::{BackendId, ClusterId};

    /// A live and a desired state between them using every resource kind and every optional
    /// attribute, so that plans between them hold every JSON object the format has.
    fn states() -> (weir_schema::State, weir_schema::State) {
        use weir_schema::model::{
            Backend, Cluster, Frontend, HealthCheck, Listener, ListenerSettings, Protocol,
        };
        use weir_schema::{Certificate, State};

        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let pem = std::fs::read_to_string(format!("{dir}a.pem")).unwrap();
        let key = std::fs::read_to_string(format!("{dir}a.key")).unwrap();
        let cert = Certificate::from_pem("cert-a", &pem, &key).unwrap();
        let http = "127.0.0.1:18001".parse().unwrap();
        let https = "127.0.0.1:18002".parse().unwrap();
        let backend = |id: &str, port: u16| Backend {
            owner: None,
            key: BackendKey {
                cluster: ClusterId("shop".into()),
                id: BackendId(id.into()),
            },
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            weight: 100,
            backup: false,
        };
        let build = |changes: Vec<Change>| {
            let mut s = State::new();
            for c in changes {
                s.apply_change(&c, None).unwrap();
            }
            s
        };
        let live = build(vec![
            Change::AddListener(Listener {
                owner: None,
                address: http,
                protocol: Protocol::Http,
                name: "web".into(),
                settings: ListenerSettings::default(),
            }),
            Change::AddCluster(Cluster::new("shop")),
            Change::AddBackend(backend("blue", 19001)),
            Change::AddFrontend(Frontend {
                owner: None,
                listener: http,
                hostname: Some("shop.test".into()),
                path: "/".into(),
                cluster: ClusterId("shop".into()),
                certificate: None,
                options: Default::default(),
            }),
        ]);
        let mut cluster = Cluster::new("shop");
        cluster.health_check = Some(HealthCheck {
            path: "/health".into(),
            interval: Duration::from_millis(1500),
            timeout: HealthCheck::DEFAULT_TIMEOUT,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        });
        cluster.connect_timeout = Some(Duration::from_secs(3));
        // Every desired resource has an owner, so the `owner` attribute is compared too, and
        // the frontend both sides route changes its owner alone.
        let owner = || Some(weir_schema::Owner("platform".into()));
        cluster.owner = owner();
        let mut green = backend("green", 19002);
        green.backup = true;
        green.owner = owner();
        let desired = build(vec![
            Change::AddListener(Listener {
                owner: owner(),
                address: http,
                protocol: Protocol::Http,
                name: "web".into(),
                settings: ListenerSettings {
                    front_timeout: Some(Duration::from_millis(2500)),
                    max_request_body: Some(1 << 20),
                    answer_404: Some("<h1>\"gone\"</h1>\n".into()),
                    // The settings shown only when set, so both renderings are compared
                    // with them present too.
                    allow_underscores_in_headers: true,
                    max_connections_per_ip: Some(50),
                    max_requests_per_connection: Some(200),
                    request_body_timeout: Some(Duration::from_secs(90)),
                    send_timeout: Some(Duration::from_secs(20)),
                    request_id_header: Some("X-Request-Id".into()),
                    ..ListenerSettings::default()
                },
            }),
            Change::AddListener(Listener {
                owner: owner(),
                address: https,
                protocol: Protocol::Https,
                name: "secure".into(),
                settings: ListenerSettings {
                    tls_versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
                    ..ListenerSettings::default()
                },
            }),
            Change::AddCertificate(Box::new(weir_schema::Certificate {
                owner: owner(),
                ..cert.clone()
            })),
            Change::AddCluster(cluster),
            Change::AddBackend(green),
            Change::AddFrontend(Frontend {
                owner: owner(),
                listener: http,
                hostname: Some("shop.test".into()),
                path: "/".into(),
                cluster: ClusterId("shop".into()),
                certificate: None,
                options: Default::default(),
            }),
            Change::AddFrontend(Frontend {
                owner: owner(),
                listener: https,
                hostname: Some("shop.test".into()),
                path: "/api".into(),
                cluster: ClusterId("shop".into()),
                certificate: Some(cert.fingerprint),
                options: Default::default(),
            }),
        ]);
        (live, desired)
    }

    /// The JSON objects of resources say what `attributes` (which the text diff uses) says.
    #[test]
    fn json_attributes_match_attributes() {
        let (live, desired) = states();
        for (from, to) in [(&live, &desired), (&desired, &live)] {
            let p = crate::plan(from, to, &[]);
            let mut seen = std::collections::HashSet::new();
            for r in p
                .changes()
                .iter()
                .flat_map(|c| [&c.before, &c.after])
                .flatten()
            {
                let expected: serde_json::Map<String, Value> = attributes(r, p.names())
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                let got = serde_json::to_value(AttributesJson(r, p.names())).unwrap();
                assert_eq!(got, Value::Object(expected));
                seen.insert(std::mem::discriminant(r));
            }
            assert_eq!(seen.len(), 5, "every resource kind is compared");
        }
    }

    /// Written straight from the plan, the JSON is byte for byte what pretty-printing the
    /// `Value` tree (whose objects sort their keys) gives: every field is in sorted order.
    #[test]
    fn json_writer_matches_value() {
        let (live, desired) = states();
        let empty = weir_schema::State::new();
        let target = [crate::Address::parse("cluster.shop").unwrap()];
        let mut plans = vec![
            crate::plan(&live, &desired, &[]),
            crate::plan(&desired, &live, &[]),
            crate::plan(&empty, &desired, &target),
            crate::plan(&desired, &desired, &[]),
        ];
        plans[1].set_drain_timeout(Some(Duration::from_millis(2500)));
        for p in &plans {
            let mut written = Vec::new();
            json_to_writer(&mut written, p).unwrap();
            let via_value = serde_json::to_string_pretty(&json(p)).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), via_value);
            let compact = serde_json::to_string(&json_view(p)).unwrap();
            assert_eq!(compact, json(p).to_string());
        }
        assert!(plans[1].steps().iter().any(|s| s.is_drain()));
    }

    /// The drain of a backend whose live count is known carries it; no other step does, and
    /// without counts the JSON is [`json`]'s.
    #[test]
    fn live_connections_go_next_to_the_drain_they_concern() {
        let (live, desired) = states();
        let p = crate::plan(&desired, &live, &[]);
        let drained = BackendKey {
            cluster: ClusterId("shop".into()),
            id: BackendId("green".into()),
        };
        let other = BackendKey {
            cluster: ClusterId("shop".into()),
            id: BackendId("blue".into()),
        };
        let counts = BTreeMap::from([(drained, 4), (other, 9)]);
        let with = serde_json::to_value(json_view(&p).with_live_connections(&counts)).unwrap();
        let steps = with["steps"].as_array().unwrap();
        let carrying: Vec<&Value> = steps
            .iter()
            .filter(|s| s.get("live_connections").is_some())
            .collect();
        assert_eq!(carrying.len(), 1, "{steps:#?}");
        assert_eq!(carrying[0]["address"], "backend.shop/green");
        assert_eq!(carrying[0]["drain"], true);
        assert_eq!(carrying[0]["live_connections"], 4);
        assert_eq!(serde_json::to_value(json_view(&p)).unwrap(), json(&p));
    }
}
