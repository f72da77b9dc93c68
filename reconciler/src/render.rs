//! Plans for people (Terraform-like text) and for programs (JSON, format version 1).
//!
//! Text lists the steps in the order they run, grouped by phase: `+` add, `~` update (with
//! each changed attribute `before → after`, long values as a line diff), `-/+` each step of a
//! re-creation, `-` remove; backends about to be drained show their live connection count when
//! the caller knows it. The last line is the summary (`Plan: 3 to add, 1 to change, 2 to
//! remove.`) or `No changes.`. Colour is the caller's choice (the CLI enables it on a TTY).
//!
//! JSON is the documented, stable format of docs/plan-json.md: fields are only ever added,
//! and `format_version` changes if one ever changes meaning. It holds no private key.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use weir_schema::cert::utc_date as date;
use weir_schema::model::{Resource, TlsVersion};
use weir_schema::{proto, BackendId, BackendKey, Change, ClusterId, Fingerprint};

use crate::address::Names;
use crate::diff::{Action, ResourceChange};
use crate::plan::{Plan, Step};

/// The version of the JSON format [`json`] writes.
pub const JSON_FORMAT_VERSION: u64 = 1;

/// How [`text`] renders.
#[derive(Debug, Clone, Default)]
pub struct TextOptions {
    /// ANSI colours (the CLI sets this only on a TTY, and never with `--no-color`).
    pub color: bool,
    /// Live connections per backend, shown next to the backends a plan drains.
    pub live_connections: BTreeMap<BackendKey, u64>,
}

/// Reads the `backend.<cluster>/<id>.connections` counters of a metrics answer.
pub fn connections_from_metrics(metrics: &proto::Metrics) -> BTreeMap<BackendKey, u64> {
    metrics
        .counters
        .iter()
        .filter_map(|c| {
            let name = c
                .name
                .strip_prefix("backend.")?
                .strip_suffix(".connections")?;
            let (cluster, id) = name.split_once('/')?;
            Some((
                BackendKey {
                    cluster: ClusterId(cluster.to_owned()),
                    id: BackendId(id.to_owned()),
                },
                c.value,
            ))
        })
        .collect()
}

const RESET: &str = "\x1b[0m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const MAGENTA: &str = "\x1b[35m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn symbol(&self, action: Action) -> String {
        let code = match action {
            Action::Add => GREEN,
            Action::Update => YELLOW,
            Action::Replace => MAGENTA,
            Action::Remove => RED,
        };
        self.wrap(code, action.symbol())
    }
}

/// The plan as Terraform-like text, ending with a newline.
pub fn text(plan: &Plan, opts: &TextOptions) -> String {
    let paint = Paint(opts.color);
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "No changes. The proxy already matches the desired state (version {}, fingerprint {}).",
            plan.from_version(),
            short(&plan.from_fingerprint().to_hex())
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Weir will make these changes, in this order, to the state at version {} (fingerprint {}):",
        plan.from_version(),
        short(&plan.from_fingerprint().to_hex())
    );
    if !plan.targets().is_empty() {
        let targets: Vec<String> = plan.targets().iter().map(|t| t.to_string()).collect();
        let _ = writeln!(
            out,
            "Only the targets {} and what they depend on.",
            targets.join(", ")
        );
    }
    // Each resource's change, to show attribute changes next to its steps.
    let by_address: BTreeMap<&crate::Address, &ResourceChange> =
        plan.changes().iter().map(|c| (&c.address, c)).collect();
    let width = plan.steps().len().to_string().len();
    let mut phase = None;
    for (i, step) in plan.steps().iter().enumerate() {
        if phase != Some(step.phase) {
            phase = Some(step.phase);
            let _ = writeln!(out);
            let title = format!("Phase {}: {}", step.phase.number(), step.phase.title());
            let _ = writeln!(out, "{}", paint.wrap(BOLD, &title));
        }
        let action = match step.part_of {
            Action::Replace => Action::Replace,
            _ => match step.op {
                crate::Op::Add => Action::Add,
                crate::Op::Update => Action::Update,
                crate::Op::Remove => Action::Remove,
            },
        };
        let _ = write!(
            out,
            "  {:>width$}  {} {}",
            i + 1,
            paint.symbol(action),
            step.address,
        );
        if step.part_of == Action::Replace {
            let _ = write!(out, " ({})", step.op.as_str());
        }
        let change = by_address.get(&step.address);
        let before = change.and_then(|c| c.before.as_ref());
        let brief = brief_of_step(step, before, plan.names());
        if !brief.is_empty() {
            let _ = write!(out, "  {brief}");
        }
        if let Change::RemoveBackend { key, .. } = &step.change {
            if let Some(n) = opts.live_connections.get(key) {
                let _ = write!(
                    out,
                    "  {}",
                    paint.wrap(YELLOW, &format!("[drains {n} live connection(s)]"))
                );
            }
        }
        if let Some(note) = &step.note {
            let _ = write!(out, "  {}", paint.wrap(DIM, &format!("# {note}")));
        }
        let _ = writeln!(out);
        // Attribute changes: on an update, and on the add step of a replacement.
        let shows_attrs = matches!(step.change, Change::UpdateListener(_))
            || matches!(step.change, Change::UpdateCluster(_))
            || matches!(step.change, Change::UpdateBackend(_))
            || (step.part_of == Action::Replace && step.op == crate::Op::Add);
        if shows_attrs {
            if let Some(change) = change {
                if let (Some(before), Some(after)) = (&change.before, &change.after) {
                    attribute_diff(&mut out, before, after, plan.names(), width, &paint);
                }
            }
        }
    }
    if !plan.notes().is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Notes:");
        for note in plan.notes() {
            let _ = writeln!(out, "  - {note}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", paint.wrap(BOLD, &plan.summary().to_string()));
    out
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// The one-line description of what a step's request carries. A removal names what it
/// removes, from the resource's live value when the plan has it.
fn brief_of_step(step: &Step, before: Option<&Resource>, names: &Names) -> String {
    let removed = |what: String| match before {
        Some(r) => brief(r, names),
        None => what,
    };
    let mut text = match &step.change {
        Change::AddListener(l) => brief(&Resource::Listener(l.clone()), names),
        Change::AddCluster(c) => brief(&Resource::Cluster(c.clone()), names),
        Change::AddBackend(b) => brief(&Resource::Backend(b.clone()), names),
        Change::AddCertificate(c) => brief(&Resource::Certificate(c.clone()), names),
        Change::AddFrontend(f) => brief(&Resource::Frontend(f.clone()), names),
        Change::RemoveListener(a) => removed(a.to_string()),
        Change::RemoveCluster(_) => removed(String::new()),
        Change::RemoveBackend { .. } => removed(String::new()),
        Change::RemoveCertificate(fp) => removed(format!("sha256 {}", short(&fp.to_hex()))),
        Change::RemoveFrontend(f) => brief(&Resource::Frontend(f.clone()), names),
        _ => String::new(),
    };
    if step.is_drain() {
        text.push_str(if text.is_empty() {
            "(drain)"
        } else {
            " (drain)"
        });
    }
    text
}

/// A resource in a few words.
fn brief(r: &Resource, names: &Names) -> String {
    match r {
        Resource::Listener(l) => format!("{} {}", l.address, l.protocol),
        Resource::Cluster(c) => {
            let mut s = c.load_balancing.as_str().to_owned();
            if let Some(hc) = &c.health_check {
                let _ = write!(s, ", health check {}", hc.path);
            }
            s
        }
        Resource::Backend(b) => {
            let mut s = format!("{} weight {}", b.address, b.weight);
            if b.backup {
                s.push_str(" backup");
            }
            s
        }
        Resource::Certificate(c) => format!(
            "sha256 {}, {}, expires {}",
            short(&c.fingerprint.to_hex()),
            c.dns_names.join(" "),
            date(c.not_after)
        ),
        Resource::Frontend(f) => match f.certificate {
            Some(fp) => format!("certificate {}", names.certificate(fp)),
            None => String::new(),
        },
    }
}

/// Values longer than this (or holding a newline) are shown as a line diff.
const LONG_VALUE: usize = 60;

fn attribute_diff(
    out: &mut String,
    before: &Resource,
    after: &Resource,
    names: &Names,
    width: usize,
    paint: &Paint,
) {
    let old: BTreeMap<&str, Value> = attributes(before, names).into_iter().collect();
    let indent = " ".repeat(width + 6);
    for (name, new_value) in attributes(after, names) {
        let old_value = old.get(name).cloned().unwrap_or(Value::Null);
        if old_value == new_value {
            continue;
        }
        let (a, b) = (value_text(&old_value), value_text(&new_value));
        if a.len() > LONG_VALUE || b.len() > LONG_VALUE || a.contains('\n') || b.contains('\n') {
            let _ = writeln!(out, "{indent}{name}:");
            let diff = similar::TextDiff::from_lines(&a, &b);
            for change in diff.iter_all_changes() {
                let line = change.value().trim_end_matches('\n');
                let text = match change.tag() {
                    similar::ChangeTag::Delete => paint.wrap(RED, &format!("- {line}")),
                    similar::ChangeTag::Insert => paint.wrap(GREEN, &format!("+ {line}")),
                    similar::ChangeTag::Equal => format!("  {line}"),
                };
                let _ = writeln!(out, "{indent}  {text}");
            }
        } else {
            let _ = writeln!(out, "{indent}{name}: {a} → {b}");
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "(default)".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_text).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(fields) => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect();
            parts.join(" ")
        }
        other => other.to_string(),
    }
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
    match r {
        Resource::Listener(l) => vec![
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
        ],
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
    PlanJson(plan)
}

/// A plan that serializes in the JSON format of [`json`]; made by [`json_view`].
///
/// Serializers that keep fields in the order they are given (serde_json's writers) see them in
/// the sorted order a `Value` tree has, so both give the same bytes: every struct below lists
/// its fields alphabetically for that reason.
#[derive(Debug, Clone, Copy)]
pub struct PlanJson<'a>(&'a Plan);

impl Serialize for PlanJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let plan = self.0;
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
            steps: Steps(plan.steps()),
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

/// An optional duration as [`duration`] shows it: `"5s"`, `"1500ms"`, or `null`.
struct DurationJson(Option<Duration>);

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

struct Steps<'a>(&'a [Step]);

impl Serialize for Steps<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .iter()
                .enumerate()
                .map(|(i, step)| StepJson::new(i + 1, step)),
        )
    }
}

#[derive(Serialize)]
struct StepJson<'a> {
    address: Shown<&'a crate::Address>,
    drain: bool,
    kind: &'static str,
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

/// A resource's attributes as a JSON object: the same as [`attributes`] gives (a test holds
/// the two together), written without building `Value`s.
struct AttributesJson<'a>(&'a Resource, &'a Names);

impl Serialize for AttributesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = self.1;
        match self.0 {
            Resource::Listener(l) => ListenerJson {
                address: Shown(l.address),
                answer_404: l.settings.answer_404.as_deref(),
                answer_503: l.settings.answer_503.as_deref(),
                front_timeout: DurationJson(l.settings.front_timeout),
                max_request_body: l.settings.max_request_body,
                name: &l.name,
                protocol: l.protocol.as_str(),
                request_timeout: DurationJson(l.settings.request_timeout),
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
                response_timeout: DurationJson(c.response_timeout),
            }
            .serialize(serializer),
            Resource::Backend(b) => BackendJson {
                address: Shown(b.address),
                backup: b.backup,
                cluster: &b.key.cluster.0,
                id: &b.key.id.0,
                weight: b.weight,
            }
            .serialize(serializer),
            Resource::Certificate(c) => CertificateJson {
                dns_names: &c.dns_names,
                fingerprint: Shown(c.fingerprint),
                name: names.certificate(c.fingerprint),
                not_after: date(c.not_after),
            }
            .serialize(serializer),
            Resource::Frontend(f) => FrontendJson {
                certificate: f.certificate.map(|fp| names.certificate(fp)),
                certificate_fingerprint: f.certificate.map(Shown),
                cluster: &f.cluster.0,
                hostname: f.hostname.as_deref(),
                listener: names.listener(f.listener),
                listener_address: Shown(f.listener),
                path: &f.path,
            }
            .serialize(serializer),
        }
    }
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    address: Shown<std::net::SocketAddr>,
    answer_404: Option<&'a str>,
    answer_503: Option<&'a str>,
    front_timeout: DurationJson,
    max_request_body: Option<u64>,
    name: &'a str,
    protocol: &'static str,
    request_timeout: DurationJson,
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
    weight: u32,
}

#[derive(Serialize)]
struct CertificateJson<'a> {
    dns_names: &'a [String],
    fingerprint: Shown<Fingerprint>,
    name: String,
    not_after: String,
}

#[derive(Serialize)]
struct FrontendJson<'a> {
    certificate: Option<String>,
    certificate_fingerprint: Option<Shown<Fingerprint>>,
    cluster: &'a str,
    hostname: Option<&'a str>,
    listener: String,
    listener_address: Shown<std::net::SocketAddr>,
    path: &'a str,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
                address: http,
                protocol: Protocol::Http,
                name: "web".into(),
                settings: ListenerSettings::default(),
            }),
            Change::AddCluster(Cluster::new("shop")),
            Change::AddBackend(backend("blue", 19001)),
            Change::AddFrontend(Frontend {
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
        let mut green = backend("green", 19002);
        green.backup = true;
        let desired = build(vec![
            Change::AddListener(Listener {
                address: http,
                protocol: Protocol::Http,
                name: "web".into(),
                settings: ListenerSettings {
                    front_timeout: Some(Duration::from_millis(2500)),
                    max_request_body: Some(1 << 20),
                    answer_404: Some("<h1>\"gone\"</h1>\n".into()),
                    ..ListenerSettings::default()
                },
            }),
            Change::AddListener(Listener {
                address: https,
                protocol: Protocol::Https,
                name: "secure".into(),
                settings: ListenerSettings {
                    tls_versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
                    ..ListenerSettings::default()
                },
            }),
            Change::AddCertificate(Box::new(cert.clone())),
            Change::AddCluster(cluster),
            Change::AddBackend(green),
            Change::AddFrontend(Frontend {
                listener: http,
                hostname: Some("shop.test".into()),
                path: "/".into(),
                cluster: ClusterId("shop".into()),
                certificate: None,
                options: Default::default(),
            }),
            Change::AddFrontend(Frontend {
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

    #[test]
    fn metrics_connections() {
        let metrics = proto::Metrics {
            counters: vec![
                proto::Counter {
                    name: "backend.shop/blue-1.connections".into(),
                    value: 3,
                },
                proto::Counter {
                    name: "http.requests".into(),
                    value: 9,
                },
            ],
        };
        let got = connections_from_metrics(&metrics);
        assert_eq!(got.len(), 1);
        assert_eq!(got.values().next(), Some(&3));
    }
}
