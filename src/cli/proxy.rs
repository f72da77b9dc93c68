//! `weir proxy` (the main process, in the foreground) and the hidden `weir worker` (one worker
//! process, started by the main process, never by hand).

use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::Context;
use weir_engine::channel::WorkerConfig;
use weir_engine::main_process::{self, Config, Overrides};

use super::{exit, SocketArg};

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Daemon settings (TOML): socket, workers, buffers, timeouts, saved state, desired dir
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArg,
    /// Worker processes [default: one per core]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// A desired-state directory (or file) applied at start
    #[arg(long, value_name = "DIR")]
    desired: Option<PathBuf>,
    /// Internal: the hand-over from a previous main process during `weir upgrade`
    #[arg(long, hide = true, value_name = "JSON")]
    handover: Option<String>,
    /// Stop (as on SIGTERM) when the process that started this one dies; `weir up` uses it
    /// so a killed `weir up` never leaves an orphaned proxy behind
    #[arg(long, hide = true)]
    exit_with_parent: bool,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Worker slot (0-based)
    #[arg(long)]
    id: u32,
    /// The inherited fd of the channel to the main process
    #[arg(long, value_name = "FD")]
    channel_fd: i32,
    /// The worker's settings, as JSON
    #[arg(long, value_name = "JSON")]
    config: String,
}

pub fn run_proxy(args: ProxyArgs) -> anyhow::Result<u8> {
    if args.exit_with_parent {
        exit_with_parent()?;
    }
    let config = match &args.handover {
        // The hand-over carries the previous main process's settings.
        Some(_) => Config::default(),
        None => {
            let base = match &args.config {
                Some(path) => Config::from_file(path)?,
                None => Config::default(),
            };
            base.finish(Overrides {
                socket: args.socket.socket.clone(),
                workers: args.workers,
                desired: args.desired.clone(),
            })?
        }
    };
    main_process::run(config, args.handover.as_deref())?;
    Ok(exit::OK)
}

pub fn run_worker(args: WorkerArgs) -> anyhow::Result<u8> {
    let mut config: WorkerConfig =
        serde_json::from_str(&args.config).context("--config is not a worker configuration")?;
    config.id = args.id;
    let channel = main_process::fd::adopt(args.channel_fd)
        .with_context(|| format!("--channel-fd {}", args.channel_fd))?;
    weir_engine::worker::run(config, UnixStream::from(channel))
        .with_context(|| format!("worker {}", args.id))?;
    Ok(exit::OK)
}

/// Asks the kernel for SIGTERM (a soft stop) when the parent dies. The parent may already have
/// died between our fork and this call, in which case we were re-parented: stop at once.
fn exit_with_parent() -> anyhow::Result<()> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .context("cannot ask for a parent-death signal")?;
    if nix::unistd::getppid() != parent || parent.as_raw() == 1 {
        anyhow::bail!("the process that started this proxy has already exited");
    }
    Ok(())
}
