//! weir-schema: the language every part of Weir speaks.
//!
//! It holds the command protocol (the `.proto` compiled by prost, and its framing), the domain
//! model of a proxy's State with the resource identities a diff compares, the single set of
//! rules a change must pass ([`State::apply`]), the loader of desired-state files, what more
//! than one process or crate must spell alike ([`duration`]s and [`metric_names`]), and the one
//! way to write a file that holds private keys ([`private_file`]). It does no network I/O and
//! pulls in no event loop, so any tool can link it.
#![forbid(unsafe_code)]

pub mod cert;
pub mod command;
pub mod desired;
pub mod duration;
pub mod framing;
pub mod metric_names;
pub mod metric_rates;
pub mod model;
pub mod paths;
pub mod private_file;
pub mod prometheus;
pub mod saved;
pub mod state;
pub mod wire;

/// The prost types generated from `proto/command.proto`. They stay at the wire edge: convert
/// them with [`wire`] once and work with the domain types.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/weir.v1.rs"));
}

pub use cert::{CertError, Certificate};
pub use command::{Change, Command, PrivateKeys, Request};
pub use model::{
    Backend, BackendId, BackendKey, Cluster, ClusterId, Fingerprint, Frontend, FrontendOptions,
    HealthCheck, Listener, ListenerSettings, LoadBalancing, Owner, Protocol, RequestIdHeaderError,
    TlsCipherSuite, TlsVersion,
};
pub use state::{State, StateError};
