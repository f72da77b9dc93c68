//! weir-reconciler: Terraform-style plan/apply for a live proxy.
//!
//! The core is sans-io: [`diff`] and [`plan`] take two [`State`]s and return data, and the
//! renderers turn a [`Plan`] into text or JSON. Only [`apply`] talks to a proxy, through the
//! command socket ([`client`]), exactly as any third-party tool could.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use weir_reconciler::{apply, client::Client, plan, render, Quiet};
//! # let desired = weir_schema::State::new();
//! let mut client = Client::connect(std::path::Path::new("/run/weir/weir.sock"))?;
//! let live = client.query_state()?;
//! let plan = plan(&live, &desired, &[]);
//! print!("{}", render::text(&plan, &render::TextOptions::default()));
//! if !plan.is_empty() {
//!     apply(&mut client, &plan, &mut Quiet)?;
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod address;
pub mod apply;
pub mod client;
pub mod diff;
pub mod export;
pub mod fleet_render;
pub mod owner;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod saved_plan;
pub mod watch;

pub use address::{Address, AddressError, Kind, Names};
pub use apply::{apply, ApplyError, ApplyEvent, ApplyObserver, ApplyReport, Quiet};
pub use diff::{diff, Action, ResourceChange};
pub use plan::{plan, Op, Phase, Plan, Step, Summary};
pub use weir_schema::State;
