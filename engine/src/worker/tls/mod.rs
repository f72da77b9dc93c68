//! HTTPS termination: certificates and SNI, per-listener rustls configurations, session
//! tickets under keys the main process shares, and the TLS byte stream to a client.
//!
//! - [`store`] holds certificates by fingerprint and each https listener's SNI resolver, fed the
//!   same changes as the worker's State.
//! - [`config`] builds the Mozilla *intermediate* `ServerConfig` of a listener, narrowed by its
//!   settings, and [`config::WorkerTls`], what a worker's listeners share.
//! - [`tickets`] is the ticketer whose keys come over the channel, rotation included.
//! - [`stream`] holds [`stream::TlsAccept`] (ClientHello, certificate choice, `unrecognized_name`)
//!   and [`stream::TlsStream`], the transport the session reads and writes plaintext through.

pub mod config;
pub mod store;
pub mod stream;
pub mod tickets;

#[cfg(test)]
mod tests;

pub use config::{ListenerTls, TlsConfigError, WorkerTls};
pub use store::{CertStore, SniResolver};
pub use stream::{Accepting, Hello, HelloReader, Refusal, Refused, TlsAccept, TlsStream};
pub use tickets::{TicketKey, TicketKeyError, TicketKeys, Ticketer};
