//! `weir state`, `weir status`, `weir upgrade`: queries and control over the
//! command socket, and restoring a saved state (`weir state load`, an apply of the backup).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};
use weir_reconciler::client::Client;
use weir_schema::{Command, State};

use super::apply::ApplyArgs;
use super::{exit, SocketArg, SocketsArg};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StateArgs {
    #[command(subcommand)]
    action: Option<StateAction>,
    /// Print the whole state as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Debug, clap::Subcommand)]
enum StateAction {
    /// Ask the proxy to save its state to FILE (atomically, with a checksum)
    Save {
        file: PathBuf,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Restore a saved state from FILE: apply it as `weir apply FILE --auto-approve` does,
    /// removing what it lacks (exit codes as apply's)
    Load {
        file: PathBuf,
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the status as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    socket: SocketArg,
}

fn connect(socket: &SocketArg) -> anyhow::Result<Client> {
    Ok(Client::connect(&socket.path())?)
}

/// The proxy resolves a relative path against its own directory, not the caller's.
fn absolute(file: &Path) -> anyhow::Result<PathBuf> {
    if file.is_absolute() {
        return Ok(file.to_owned());
    }
    Ok(std::env::current_dir()
        .context("cannot resolve the path: no current directory")?
        .join(file))
}

pub fn run_state(args: StateArgs) -> anyhow::Result<u8> {
    match args.action {
        Some(StateAction::Save { file, socket }) => {
            let socket = if socket.socket.is_some() {
                socket
            } else {
                args.socket
            };
            let answer = connect(&socket)?.call(Command::SaveState(absolute(&file)?))?;
            println!("{}", answer.message);
        }
        Some(StateAction::Load { file, socket }) => {
            let socket = if socket.socket.is_some() {
                socket
            } else {
                args.socket
            };
            return restore(file, socket);
        }
        None => {
            let state = connect(&args.socket)?.query_state()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&state_json(&state))?);
            } else {
                print!("{}", state_summary(&state));
            }
        }
    }
    Ok(exit::OK)
}

/// `weir state load FILE`: makes the live state the saved one, as `weir apply FILE
/// --auto-approve` does: an ordered plan that also removes what the backup lacks, rolled back
/// if a step fails. (The protocol's `LoadState` only adds and updates, so loading a backup
/// through it would leave a listener added since the backup live.)
fn restore(file: PathBuf, socket: SocketArg) -> anyhow::Result<u8> {
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    if !weir_schema::saved::is_saved_state(&bytes) {
        anyhow::bail!(
            "{} is not a saved state (`weir state save` writes one); to apply desired-state \
             files, use `weir apply`",
            file.display()
        );
    }
    super::apply::run(ApplyArgs {
        path: file,
        socket: SocketsArg::one(socket),
        auto_approve: true,
        json: false,
        targets: Vec::new(),
        drain_timeout: None,
        no_color: false,
        rollout: Default::default(),
        owner: Default::default(),
    })
}

fn state_json(state: &State) -> Value {
    json!({
        "version": state.version,
        "fingerprint": state.fingerprint().to_hex(),
        "listeners": state.listeners.values().map(|l| json!({
            "address": l.address.to_string(),
            "protocol": l.protocol.as_str(),
            "name": l.name,
            "tls_versions": l.settings.tls_versions.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
            "cipher_suites": l.settings.cipher_suites.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "default_certificate": l.settings.default_certificate.map(|fp| fp.to_hex()),
            "owner": owner_json(&l.owner),
        })).collect::<Vec<_>>(),
        "clusters": state.clusters.values().map(|c| json!({
            "id": c.id.0,
            "load_balancing": format!("{:?}", c.load_balancing),
            "backends": state.backends_of(&c.id).map(|b| json!({
                "id": b.key.id.0,
                "address": b.address.to_string(),
                "weight": b.weight,
                "backup": b.backup,
                "owner": owner_json(&b.owner),
            })).collect::<Vec<_>>(),
            "owner": owner_json(&c.owner),
        })).collect::<Vec<_>>(),
        "frontends": state.frontends_in_order().into_iter().map(|f| json!({
            "listener": f.listener.to_string(),
            "hostname": f.hostname,
            "path": f.path,
            "cluster": f.cluster.0,
            "certificate": f.certificate.map(|fp| fp.to_hex()),
            "redirect_https": f.options.redirect_https,
            "hsts": f.options.hsts,
            "owner": owner_json(&f.owner),
        })).collect::<Vec<_>>(),
        // Fingerprints and names only: a certificate's key never leaves the proxy through here.
        "certificates": state.certificates.values().map(|c| json!({
            "fingerprint": c.fingerprint.to_hex(),
            "name": c.name,
            "owner": owner_json(&c.owner),
        })).collect::<Vec<_>>(),
    })
}

fn owner_json(owner: &Option<weir_schema::Owner>) -> Option<&str> {
    owner.as_ref().map(|o| o.0.as_str())
}

/// ` [owner NAME]`, or nothing for a resource with no owner.
fn owner_text(owner: &Option<weir_schema::Owner>) -> String {
    owner
        .as_ref()
        .map(|o| format!(" [owner {o}]"))
        .unwrap_or_default()
}

fn state_summary(state: &State) -> String {
    use std::fmt::Write;
    let counts = state.counts();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "state version {} (fingerprint {})",
        state.version,
        &state.fingerprint().to_hex()[..16]
    );
    let _ = writeln!(
        out,
        "{} listener(s), {} cluster(s), {} backend(s), {} frontend(s), {} certificate(s)",
        counts.listeners, counts.clusters, counts.backends, counts.frontends, counts.certificates
    );
    for l in state.listeners.values() {
        let _ = writeln!(
            out,
            "listener {} {} ({}){}",
            l.address,
            l.protocol,
            l.name,
            owner_text(&l.owner)
        );
    }
    for c in state.clusters.values() {
        let _ = writeln!(out, "cluster {}{}", c.id, owner_text(&c.owner));
        for b in state.backends_of(&c.id) {
            let backup = if b.backup { " backup" } else { "" };
            let _ = writeln!(
                out,
                "  backend {} {} weight {}{backup}{}",
                b.key.id,
                b.address,
                b.weight,
                owner_text(&b.owner)
            );
        }
    }
    for f in state.frontends_in_order() {
        let _ = writeln!(
            out,
            "frontend {} {}{} -> {}{}",
            f.listener,
            f.hostname.as_deref().unwrap_or("*"),
            f.path,
            f.cluster,
            owner_text(&f.owner)
        );
    }
    for c in state.certificates.values() {
        let _ = writeln!(
            out,
            "certificate {} ({}){}",
            c.fingerprint,
            c.name,
            owner_text(&c.owner)
        );
    }
    out
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<u8> {
    let status = connect(&args.socket)?.status()?;
    if args.json {
        let value = json!({
            "pid": status.pid,
            "uptime_ms": status.uptime_ms,
            "state_version": status.state_version,
            "state_fingerprint": status.state_fingerprint,
            "version": status.version,
            "workers": status.workers.iter().map(|w| json!({
                "id": w.id,
                "pid": w.pid,
                "uptime_ms": w.uptime_ms,
                "connections": w.connections,
                "buffers_in_use": w.buffers_in_use,
                "buffers_max": w.buffers_max,
                "state_version": w.state_version,
                "restarts": w.restarts,
                "unresponsive": w.unresponsive,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(exit::OK);
    }
    println!(
        "weir {} main pid {} up {}, state version {} (fingerprint {})",
        status.version,
        status.pid,
        human_duration(status.uptime_ms),
        status.state_version,
        status
            .state_fingerprint
            .get(..16)
            .unwrap_or(&status.state_fingerprint)
    );
    println!(
        "{:>6} {:>8} {:>10} {:>12} {:>13} {:>8} {:>8}  state",
        "worker", "pid", "uptime", "connections", "buffers", "restarts", "version"
    );
    for w in &status.workers {
        let pid = if w.pid == 0 {
            "-".to_owned()
        } else {
            w.pid.to_string()
        };
        // An unresponsive worker's connections and version are unknown, not zero.
        let (connections, buffers, version, state) = if w.unresponsive {
            (
                "?".to_owned(),
                "?".to_owned(),
                "?".to_owned(),
                "UNRESPONSIVE",
            )
        } else if w.pid == 0 {
            ("-".to_owned(), "-".to_owned(), "-".to_owned(), "restarting")
        } else {
            (
                w.connections.to_string(),
                format!("{}/{}", w.buffers_in_use, w.buffers_max),
                w.state_version.to_string(),
                "ok",
            )
        };
        println!(
            "{:>6} {:>8} {:>10} {:>12} {:>13} {:>8} {:>8}  {}",
            w.id,
            pid,
            human_duration(w.uptime_ms),
            connections,
            buffers,
            w.restarts,
            version,
            state
        );
    }
    let hung = status.workers.iter().filter(|w| w.unresponsive).count();
    if hung > 0 {
        eprintln!(
            "warning: {hung} worker(s) did not answer in time (alive but hung); \
             the next change replaces them"
        );
    }
    Ok(exit::OK)
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn run_upgrade(args: UpgradeArgs) -> anyhow::Result<u8> {
    let mut client = connect(&args.socket)?;
    let answer = client.call(Command::UpgradeMain)?;
    println!("{}", answer.message);
    Ok(exit::OK)
}
