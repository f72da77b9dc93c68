//! Subcommands, one module each. Every module holds its clap `Args` and a `run` returning the
//! process exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod apply;
mod demo;
mod export;
mod metrics;
mod owner;
mod plan;
mod proxy;
mod rollout;
mod state;
mod top;
mod up;
mod validate;
mod watch;

/// Exit codes, frozen: scripts and CI depend on them.
pub mod exit {
    /// Success, or no changes.
    pub const OK: u8 = 0;
    /// Any error.
    pub const ERROR: u8 = 1;
    /// `plan --detailed-exitcode`: changes are present.
    pub const CHANGES: u8 = 2;
    /// A saved plan was made from a state that has moved since.
    pub const STALE_PLAN: u8 = 3;
    /// A backend drain outlived its deadline.
    pub const DRAIN_DEADLINE: u8 = 4;
    /// A step failed and the apply was rolled back.
    pub const ROLLED_BACK: u8 = 5;
}

#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "A reverse proxy reconfigured while it runs, driven by plan/apply", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The command socket option every proxy-facing command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArg {
    /// Command socket of the proxy [default: $WEIR_SOCKET, else a per-user runtime path]
    #[arg(long, env = "WEIR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl SocketArg {
    pub fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(weir_schema::paths::default_socket_path)
    }
}

/// The command sockets `plan` and `apply` take: one proxy, or several for a rollout.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketsArg {
    /// Command socket of the proxy; repeat it to plan or roll out to several proxies
    /// [default: $WEIR_SOCKET, else a per-user runtime path]
    #[arg(long = "socket", env = "WEIR_SOCKET", value_name = "PATH")]
    pub sockets: Vec<PathBuf>,
}

impl SocketsArg {
    pub fn one(socket: SocketArg) -> SocketsArg {
        SocketsArg {
            sockets: socket.socket.into_iter().collect(),
        }
    }

    /// The sockets given, or the default one.
    pub fn paths(&self) -> Vec<PathBuf> {
        if self.sockets.is_empty() {
            vec![weir_schema::paths::default_socket_path()]
        } else {
            self.sockets.clone()
        }
    }

    /// The one socket, when only one proxy is meant.
    pub fn path(&self) -> PathBuf {
        self.paths().swap_remove(0)
    }

    pub fn several(&self) -> bool {
        self.sockets.len() > 1
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy in the foreground (main process and workers)
    Proxy(proxy::ProxyArgs),
    /// Internal: one worker process, started by `weir proxy`
    #[command(hide = true)]
    Worker(proxy::WorkerArgs),
    /// Check desired-state files and print a summary, or the errors found
    Validate(validate::ValidateArgs),
    /// Show the ordered changes that would make the proxy match desired state
    Plan(plan::PlanArgs),
    /// Apply desired state (or a saved plan) to the proxy, rolling back on failure
    Apply(apply::ApplyArgs),
    /// Keep the proxy reconciled with a directory as it changes
    Watch(watch::WatchArgs),
    /// Start the proxy, apply a directory and keep it reconciled (default: examples/quickstart)
    Up(up::UpArgs),
    /// Write the proxy's state (or a saved state) as desired-state files
    Export(export::ExportArgs),
    /// Show, save or load the proxy's state
    State(state::StateArgs),
    /// Show the proxy's workers, connections and state version
    Status(state::StatusArgs),
    /// Show the proxy's counters and latency histograms, summed over its workers
    Metrics(metrics::MetricsArgs),
    /// A live view of the clusters: rps, 5xx share, p50/p99, backends up or down
    Top(top::TopArgs),
    /// Replace the running main process with this binary, without dropping connections
    Upgrade(state::UpgradeArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Proxy(args) => proxy::run_proxy(args),
        Command::Worker(args) => proxy::run_worker(args),
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Up(args) => up::run(args),
        Command::Export(args) => export::run(args),
        Command::State(args) => state::run_state(args),
        Command::Status(args) => state::run_status(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Top(args) => top::run(args),
        Command::Upgrade(args) => state::run_upgrade(args),
    }
}
