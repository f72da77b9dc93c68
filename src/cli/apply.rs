//! `weir apply`.

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {}

pub fn run(_args: ApplyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir apply` is not built yet")
}
