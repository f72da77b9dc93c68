//! `weir up`.

#[derive(Debug, clap::Args)]
pub struct UpArgs {}

pub fn run(_args: UpArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir up` is not built yet")
}
