//! `weir plan`: the ordered changes that would make a proxy match desired state.
//!
//! The live state comes from the proxy's command socket, or from a file with `--from-state`
//! (a saved state, or desired-state files), so CI review jobs can plan with no proxy running.
//! Exit codes: 0 no changes (or changes without `--detailed-exitcode`), 1 error, 2 changes.

use std::io::{BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_reconciler::client::Client;
use weir_reconciler::render::{self, TextOptions};
use weir_reconciler::{saved_plan, Address, Kind, Names, Plan};
use weir_schema::State;

use super::{exit, SocketsArg};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Desired-state directory or file, or a saved state file
    pub path: PathBuf,
    #[command(flatten)]
    pub socket: SocketsArg,
    /// Also save the plan to FILE, for `weir apply FILE` (holds private keys: mode 0600)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (format: docs/plan-json.md)
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when there are changes (0: none, 1: error)
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan only this resource and what it depends on (e.g. cluster.shop); repeatable
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// Plan against this saved state (or desired-state files) instead of a running proxy
    #[arg(long, value_name = "FILE")]
    pub from_state: Option<PathBuf>,
    /// No colours, even on a terminal
    #[arg(long)]
    pub no_color: bool,
    #[command(flatten)]
    pub owner: super::owner::OwnerArgs,
}

pub fn run(args: PlanArgs) -> anyhow::Result<u8> {
    let targets = parse_targets(&args.targets)?;
    if args.socket.several() && args.from_state.is_none() {
        if args.owner.owner.is_some() {
            anyhow::bail!("--owner plans one proxy at a time: give one --socket");
        }
        let desired = load_desired(&args.path)?;
        return super::rollout::plan_many(&args, &desired, &targets);
    }
    let mut live_connections = Default::default();
    let mut client = None;
    let live = match &args.from_state {
        Some(file) => {
            load_desired(file).with_context(|| format!("--from-state {}", file.display()))?
        }
        None => client
            .insert(Client::connect(&args.socket.path())?)
            .query_state()?,
    };
    let desired = args.owner.desired(&args.path, &live)?;
    refuse_unknown_targets(&targets, &live, &desired)?;
    let plan = weir_reconciler::plan(&live, &desired, &targets);
    // Connection counts are a courtesy shown next to backends that will drain: asked for only
    // when there is one (every worker reports every backend's counters, which is not free),
    // and a proxy without them still gets a plan.
    if let Some(client) = client.as_mut() {
        if plan.steps().iter().any(|s| s.is_drain()) {
            if let Ok(metrics) = client.metrics() {
                live_connections = render::connections_from_metrics(&metrics);
            }
        }
    }
    if !targets.is_empty() && plan.changes().is_empty() {
        eprintln!("warning: the targets name resources that do not change");
    }

    // One buffer for the whole plan: a big plan is many small writes, and stdout alone would
    // make a system call per line.
    let mut stdout = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if args.json {
        let view = render::json_view(&plan).with_live_connections(&live_connections);
        serde_json::to_writer_pretty(&mut stdout, &view)?;
        writeln!(stdout)?;
    } else {
        let opts = TextOptions {
            color: color_wanted(args.no_color),
            live_connections,
        };
        stdout.write_all(render::text(&plan, &opts).as_bytes())?;
    }
    if let Some(out) = &args.out {
        save_plan(out, &plan, &desired)?;
        if !args.json {
            writeln!(
                stdout,
                "\nSaved the plan to {0}. Apply exactly it with: weir apply {0}",
                out.display()
            )?;
        }
    }
    stdout.flush()?;
    Ok(if plan.is_empty() || !args.detailed_exitcode {
        exit::OK
    } else {
        exit::CHANGES
    })
}

/// Colours only on a terminal, and never with `--no-color` or `NO_COLOR`.
pub(super) fn color_wanted(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

pub(super) fn parse_targets(targets: &[String]) -> anyhow::Result<Vec<Address>> {
    targets
        .iter()
        .map(|t| Address::parse(t).map_err(anyhow::Error::from))
        .collect()
}

/// Refuses targets that name no resource of either state: a typo would otherwise plan
/// nothing and look like "No changes".
pub(super) fn refuse_unknown_targets(
    targets: &[Address],
    live: &State,
    desired: &State,
) -> anyhow::Result<()> {
    let names = Names::of(live, desired);
    let mut known: Vec<(Address, Option<SocketAddr>)> = Vec::new();
    for state in [live, desired] {
        for (address, l) in &state.listeners {
            known.push((Address::new(Kind::Listener, l.name.clone()), Some(*address)));
        }
        for id in state.clusters.keys() {
            known.push((Address::new(Kind::Cluster, id.0.clone()), None));
        }
        for key in state.backends.keys() {
            known.push((Address::new(Kind::Backend, key.to_string()), None));
        }
        for fp in state.certificates.keys() {
            known.push((
                Address::new(Kind::Certificate, names.certificate(*fp)),
                None,
            ));
        }
        for f in state.frontends.keys() {
            known.push((names.frontend(f), None));
        }
    }
    let unknown: Vec<String> = targets
        .iter()
        .filter(|t| !known.iter().any(|(a, socket)| t.selects(a, *socket)))
        .map(|t| t.to_string())
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "--target {} names no resource in the desired state or the proxy's (see `weir plan` \
             for the addresses)",
            unknown.join(", --target ")
        );
    }
    Ok(())
}

/// Loads desired-state files (or a saved state), printing warnings; every error found is
/// reported.
pub(super) fn load_desired(path: &Path) -> anyhow::Result<State> {
    match weir_schema::desired::load(path) {
        Ok(desired) => {
            for warning in &desired.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(desired.state)
        }
        Err(errors) => {
            let n = errors.0.len();
            anyhow::bail!("{} has {n} error(s):\n{errors}", path.display())
        }
    }
}

/// Writes a saved plan readable only by its owner (it holds private keys), replacing any
/// earlier file of that name and its mode.
fn save_plan(out: &Path, plan: &Plan, desired: &State) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec(&saved_plan::to_json(plan, desired))?;
    bytes.push(b'\n');
    weir_schema::private_file::write(out, &bytes)
        .with_context(|| format!("cannot write the plan to {}", out.display()))
}
