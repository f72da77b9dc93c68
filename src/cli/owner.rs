//! `--owner` / `--adopt`: the ownership scope shared by `weir plan`, `apply` and `watch`.
//!
//! With an owner, the desired files are loaded against the live state (a listener, cluster or
//! certificate they name but do not define may be another team's), then turned into the
//! scoped desired state (`weir_reconciler::owner`), which the ordinary plan takes to.

use std::path::Path;

use weir_reconciler::owner::{scoped_desired, Scope};
use weir_schema::{Owner, State};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct OwnerArgs {
    /// Plan and apply only this owner's resources, recording the owner on every resource the
    /// apply creates or updates
    #[arg(long, env = "WEIR_OWNER", value_name = "NAME", value_parser = parse_owner)]
    pub owner: Option<Owner>,
    /// With --owner: resources with no owner count as this owner's (removed when the files
    /// do not name them)
    #[arg(long, requires = "owner")]
    pub adopt: bool,
}

fn parse_owner(s: &str) -> Result<Owner, String> {
    let name = s.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err("an owner is a non-empty name without control characters".to_owned());
    }
    Ok(Owner(name.to_owned()))
}

impl OwnerArgs {
    pub fn scope(&self) -> Option<Scope> {
        self.owner.as_ref().map(|owner| Scope {
            owner: owner.clone(),
            adopt: self.adopt,
        })
    }

    /// The state a plan takes `live` to: the files as they are without an owner, the scoped
    /// desired state with one. A refusal names the owners and resources involved.
    pub fn desired(&self, path: &Path, live: &State) -> anyhow::Result<State> {
        let Some(scope) = self.scope() else {
            return super::plan::load_desired(path);
        };
        let files = match weir_schema::desired::load_with_live(path, live) {
            Ok(desired) => {
                for warning in &desired.warnings {
                    eprintln!("warning: {warning}");
                }
                desired.state
            }
            Err(errors) => {
                let n = errors.0.len();
                anyhow::bail!("{} has {n} error(s):\n{errors}", path.display())
            }
        };
        Ok(scoped_desired(live, &files, &scope)?)
    }
}
