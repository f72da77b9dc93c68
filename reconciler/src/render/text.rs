//! Plans for people: Terraform-like text.
//!
//! Text lists the steps in the order they run, grouped by phase: `+` add, `~` update (with
//! each changed attribute `before → after`, long values as a line diff), `-/+` each step of a
//! re-creation, `-` remove; backends about to be drained show their live connection count when
//! the caller knows it. The last line is the summary (`Plan: 3 to add, 1 to change, 2 to
//! remove.`) or `No changes.`. Colour is the caller's choice (the CLI enables it on a TTY).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use weir_schema::model::Resource;
use weir_schema::{BackendKey, Change};

use super::{attributes, date};
use crate::address::Names;
use crate::diff::{Action, ResourceChange};
use crate::plan::{Plan, Step};

/// How [`text`] renders.
#[derive(Debug, Clone, Default)]
pub struct TextOptions {
    /// ANSI colours (the CLI sets this only on a TTY, and never with `--no-color`).
    pub color: bool,
    /// Live connections per backend, shown next to the backends a plan drains.
    pub live_connections: BTreeMap<BackendKey, u64>,
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
        // Every update shows them, a certificate's too: its owner changes by a
        // `ReplaceCertificate` to itself, which is an update like the others.
        let shows_attrs = step.op == crate::Op::Update
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::{Certificate, Owner, State};

    fn certificate(owner: Option<&str>) -> State {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let pem = std::fs::read_to_string(format!("{dir}a.pem")).unwrap();
        let key = std::fs::read_to_string(format!("{dir}a.key")).unwrap();
        let mut cert = Certificate::from_pem("cert-a", &pem, &key).unwrap();
        cert.owner = owner.map(|o| Owner(o.into()));
        let mut state = State::new();
        state
            .apply_change(&Change::AddCertificate(Box::new(cert)), None)
            .unwrap();
        state
    }

    /// Adopting a certificate changes only its owner: the text says so, as it does for the
    /// other kinds, instead of a bare `~` line.
    #[test]
    fn a_certificates_owner_change_shows_the_owner() {
        let plan = crate::plan(&certificate(None), &certificate(Some("platform")), &[]);
        let out = text(&plan, &TextOptions::default());
        let lines: Vec<&str> = out.lines().collect();
        let step = lines
            .iter()
            .position(|l| l.contains("~ certificate."))
            .unwrap_or_else(|| panic!("no certificate update in:\n{out}"));
        assert_eq!(
            lines[step + 1].trim(),
            "owner: (default) → platform",
            "{out}"
        );
    }
}
