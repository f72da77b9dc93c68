//! Saved plans (`weir plan --out FILE`, then `weir apply FILE`).
//!
//! A saved plan is a JSON object: `format` (`"weir-saved-plan"`), `format_version` (1), `plan`
//! (the plan in the format of [`crate::render::json`], for review), and `desired_state`, the
//! full desired state in the saved-state format (`weir_schema::saved`), hex encoded, so the
//! file is self-contained. It holds certificate private keys: write it with mode 0600 and
//! treat it like them.
//!
//! Applying it first compares the live state's fingerprint with `plan.from.fingerprint`, then
//! plans again from the live state to the saved desired state and requires the very same
//! steps; if either differs the plan is stale and is refused.

use serde_json::{json, Value};
use weir_schema::{saved, Fingerprint, State};

use crate::address::Address;
use crate::plan::{plan, Plan};
use crate::render;

/// The `format` field of a saved plan.
pub const FORMAT: &str = "weir-saved-plan";
/// The `format_version` this weir writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// Why a saved plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("not a saved weir plan: {0}")]
    NotAPlan(String),
    #[error("saved plan format version {0} is not supported (this weir reads {FORMAT_VERSION})")]
    UnsupportedVersion(u64),
    #[error("the saved plan's desired state is unreadable: {0}")]
    DesiredState(#[from] saved::SavedStateError),
}

/// A saved plan, read back.
#[derive(Debug, Clone)]
pub struct SavedPlan {
    pub desired: State,
    pub targets: Vec<Address>,
    pub from_fingerprint: Fingerprint,
    pub drain_timeout_ms: Option<u64>,
    /// The plan as it was saved (render::json).
    pub plan_json: Value,
}

/// Serialises `plan`, made towards `desired`, as a saved plan.
pub fn to_json(plan: &Plan, desired: &State) -> Value {
    json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "plan": render::json(plan),
        "desired_state": hex::encode(saved::encode(desired)),
    })
}

/// Whether `bytes` look like a saved plan (rather than a desired-state file).
pub fn is_saved_plan(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    text.trim_start().starts_with('{') && text.contains(FORMAT)
}

/// Reads a saved plan.
pub fn from_slice(bytes: &[u8]) -> Result<SavedPlan, SavedPlanError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| SavedPlanError::NotAPlan(e.to_string()))?;
    let missing = |what: &str| SavedPlanError::NotAPlan(format!("missing or invalid `{what}`"));
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(missing("format"));
    }
    let version = value
        .get("format_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| missing("format_version"))?;
    if version != FORMAT_VERSION {
        return Err(SavedPlanError::UnsupportedVersion(version));
    }
    let plan_json = value.get("plan").cloned().ok_or_else(|| missing("plan"))?;
    let from_fingerprint = plan_json
        .pointer("/from/fingerprint")
        .and_then(Value::as_str)
        .and_then(Fingerprint::from_hex)
        .ok_or_else(|| missing("plan.from.fingerprint"))?;
    let targets = plan_json
        .get("targets")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("plan.targets"))?
        .iter()
        .map(|t| {
            t.as_str()
                .and_then(|t| Address::parse(t).ok())
                .ok_or_else(|| missing("plan.targets"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let drain_timeout_ms = plan_json.get("drain_timeout_ms").and_then(Value::as_u64);
    let desired_hex = value
        .get("desired_state")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("desired_state"))?;
    let desired_bytes = hex::decode(desired_hex).map_err(|_| missing("desired_state"))?;
    let desired = saved::decode(&desired_bytes)?;
    Ok(SavedPlan {
        desired,
        targets,
        from_fingerprint,
        drain_timeout_ms,
        plan_json,
    })
}

impl SavedPlan {
    /// Plans again against `live`; `None` when the result is not the saved plan (the live
    /// state moved since it was made).
    pub fn replan(&self, live: &State) -> Option<Plan> {
        if live.fingerprint() != self.from_fingerprint {
            return None;
        }
        let mut p = plan(live, &self.desired, &self.targets);
        p.set_drain_timeout(self.drain_timeout_ms.map(std::time::Duration::from_millis));
        let steps = render::json(&p).get("steps").cloned();
        (steps.as_ref() == self.plan_json.get("steps")).then_some(p)
    }
}
