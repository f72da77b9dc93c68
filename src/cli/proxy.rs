//! `weir proxy` and the internal `weir worker`.

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

pub fn run_proxy(_args: ProxyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir proxy` is not built yet")
}

pub fn run_worker(_args: WorkerArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir worker` is not built yet")
}
