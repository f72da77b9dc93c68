//! `weir validate`.

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {}

pub fn run(_args: ValidateArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir validate` is not built yet")
}
