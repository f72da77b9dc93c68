//! Plans and rollouts over many proxies, for people and programs: proxies whose plans are the
//! same are shown once, together, and drifted ones apart. Each plan itself is rendered by
//! [`crate::render`].

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::render::{self, TextOptions};
use crate::rollout::{Outcome, ProxyReport};
use crate::Plan;

/// Proxies that share one plan.
#[derive(Debug)]
pub struct Group<'a> {
    pub sockets: Vec<&'a Path>,
    pub plan: &'a Plan,
}

/// A plan's content, without the live version it was made from: two proxies with the same
/// routing reached through different histories have the same plan.
fn key(plan: &Plan) -> Value {
    let mut value = render::json(plan);
    if let Some(from) = value.get_mut("from").and_then(Value::as_object_mut) {
        from.remove("version");
    }
    value
}

/// Groups the proxies by plan, in the order each plan is first met.
pub fn group(plans: &[(PathBuf, Plan)]) -> Vec<Group<'_>> {
    let mut groups: Vec<(Value, Group<'_>)> = Vec::new();
    for (socket, plan) in plans {
        let k = key(plan);
        match groups.iter_mut().find(|(gk, _)| *gk == k) {
            Some((_, g)) => g.sockets.push(socket),
            None => groups.push((
                k,
                Group {
                    sockets: vec![socket],
                    plan,
                },
            )),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

fn list(sockets: &[&Path]) -> String {
    sockets
        .iter()
        .map(|s| s.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One text plan per group, each under a line naming its proxies.
pub fn text(groups: &[Group<'_>], opts: &TextOptions) -> String {
    let total: usize = groups.iter().map(|g| g.sockets.len()).sum();
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let heading = match (groups.len(), g.sockets.len()) {
            (1, n) if n > 1 => format!(
                "== All {total} proxies have the same plan: {}",
                list(&g.sockets)
            ),
            (_, 1) if groups.len() > 1 => format!("== Drifted: {}", list(&g.sockets)),
            (_, n) => format!("== {n} of {total} proxies: {}", list(&g.sockets)),
        };
        out.push_str(&heading);
        out.push_str("\n\n");
        out.push_str(&render::text(g.plan, opts));
    }
    out
}

/// `{"format_version":1,"groups":[{"sockets":[...],"plan":{...}}]}`.
pub fn json(groups: &[Group<'_>]) -> Value {
    json!({
        "format_version": render::JSON_FORMAT_VERSION,
        "groups": groups.iter().map(|g| json!({
            "sockets": g.sockets.iter().map(|s| s.display().to_string()).collect::<Vec<_>>(),
            "plan": render::json(g.plan),
        })).collect::<Vec<_>>(),
    })
}

/// One proxy's report as JSON.
pub fn report_json(r: &ProxyReport) -> Value {
    let mut v = json!({
        "socket": r.socket.display().to_string(),
        "wave": r.wave,
        "canary": r.canary,
        "planned_changes": r.planned_changes,
        "result": r.outcome.as_str(),
    });
    match &r.outcome {
        Outcome::NoChanges { version } => v["version"] = json!(version),
        Outcome::Applied { steps, version } => {
            v["steps"] = json!(steps);
            v["version"] = json!(version);
        }
        Outcome::Failed { stage, message } => {
            v["step"] = json!(stage.as_str());
            v["message"] = json!(message);
        }
        Outcome::NotReached => {}
    }
    v
}

/// One proxy's report as a line of text.
pub fn report_text(r: &ProxyReport) -> String {
    let socket = r.socket.display();
    match &r.outcome {
        Outcome::NoChanges { version } => {
            format!("{socket}: no changes (version {version}), workers live")
        }
        Outcome::Applied { steps, version } => format!(
            "{socket}: applied {steps} step(s), now at version {version}, plan empty, workers live"
        ),
        Outcome::Failed { stage, message } => {
            format!("{socket}: FAILED at step {}: {message}", stage.as_str())
        }
        Outcome::NotReached => format!("{socket}: not reached, unchanged"),
    }
}
