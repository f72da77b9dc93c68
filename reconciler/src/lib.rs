//! weir-reconciler: Terraform-style plan/apply for a live proxy.
//!
//! It talks to a proxy only through the command socket ([`client`]), exactly as any
//! third-party tool could.
#![forbid(unsafe_code)]

pub mod client;
