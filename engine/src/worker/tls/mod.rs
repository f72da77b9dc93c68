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

/// The crypto provider: ring, or aws-lc-rs with the `aws-lc-rs` feature (same API for what
/// the ticketer uses). The choice and its measurements: ARCHITECTURE.md, "Crypto provider".
mod crypto {
    #[cfg(feature = "aws-lc-rs")]
    pub use aws_lc_rs::{aead, rand};
    #[cfg(not(feature = "aws-lc-rs"))]
    pub use ring::{aead, rand};
    #[cfg(feature = "aws-lc-rs")]
    pub use rustls::crypto::aws_lc_rs as provider;
    #[cfg(not(feature = "aws-lc-rs"))]
    pub use rustls::crypto::ring as provider;
}
pub mod store;
pub mod stream;
pub mod tickets;

#[cfg(test)]
mod tests;

pub use config::{ListenerTls, TlsConfigError, WorkerTls};
pub use store::{CertStore, SniResolver};
pub use stream::{Accepting, Hello, HelloReader, Refusal, Refused, TlsAccept, TlsStream};
pub use tickets::{TicketKey, TicketKeyError, TicketKeys, Ticketer};
