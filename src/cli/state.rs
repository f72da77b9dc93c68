//! `weir state`, `weir status`, `weir metrics`, `weir upgrade`: queries and control over the
//! command socket.

#[derive(Debug, clap::Args)]
pub struct StateArgs {}
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {}
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {}

pub fn run_state(_args: StateArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir state` is not built yet")
}
pub fn run_status(_args: StatusArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir status` is not built yet")
}
pub fn run_metrics(_args: MetricsArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir metrics` is not built yet")
}
pub fn run_upgrade(_args: UpgradeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`weir upgrade` is not built yet")
}
