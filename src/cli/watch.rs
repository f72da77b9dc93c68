//! `weir watch`.

#[derive(Debug, clap::Args)]
pub struct WatchArgs {}

pub fn run(_args: WatchArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir watch` is not built yet")
}
