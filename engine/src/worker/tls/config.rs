//! Each https listener's rustls `ServerConfig`, and what a worker shares between them.
//!
//! Defaults follow Mozilla's *intermediate* profile: TLS 1.3 and 1.2, ECDHE key exchange only
//! over X25519, P-256 and P-384, AEAD suites only (no CBC), in the profile's order. rustls
//! implements neither compression nor renegotiation, so both are off by construction. A
//! listener narrows versions and suites (`tls_versions`, `cipher_suites`, already checked by
//! the State to leave every accepted version a suite). ALPN offers `http/1.1` only.
//!
//! Resumption: every listener of a worker shares the worker's stateful session cache (used for
//! TLS 1.2 session ids, and for everything while no ticket keys are set) and its [`Ticketer`],
//! whose keys come from the main process.
//!
//! A configuration is built when its listener is added or updated, never per handshake; a
//! connection keeps the configuration it started with.

use std::net::SocketAddr;
use std::sync::Arc;

use super::crypto::provider;
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use weir_schema::{ListenerSettings, TlsCipherSuite, TlsVersion};

use super::store::{CertStore, SniResolver};
use super::tickets::{TicketKeyError, TicketKeys, Ticketer};

/// Sessions one worker remembers for stateful resumption (about 200 bytes each).
pub const SESSION_CACHE_SIZE: usize = 10_000;

/// The only application protocol offered.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a listener's TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no cipher suite is left for the accepted TLS versions")]
    NoCipherSuite,
}

fn suite(s: TlsCipherSuite) -> SupportedCipherSuite {
    use provider::cipher_suite as cs;
    match s {
        TlsCipherSuite::Tls13Aes128GcmSha256 => cs::TLS13_AES_128_GCM_SHA256,
        TlsCipherSuite::Tls13Aes256GcmSha384 => cs::TLS13_AES_256_GCM_SHA384,
        TlsCipherSuite::Tls13Chacha20Poly1305Sha256 => cs::TLS13_CHACHA20_POLY1305_SHA256,
        TlsCipherSuite::EcdheEcdsaAes128GcmSha256 => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TlsCipherSuite::EcdheRsaAes128GcmSha256 => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TlsCipherSuite::EcdheEcdsaAes256GcmSha384 => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TlsCipherSuite::EcdheRsaAes256GcmSha384 => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TlsCipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        TlsCipherSuite::EcdheRsaChacha20Poly1305Sha256 => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
    }
}

fn version(v: TlsVersion) -> &'static SupportedProtocolVersion {
    match v {
        TlsVersion::Tls12 => &rustls::version::TLS12,
        TlsVersion::Tls13 => &rustls::version::TLS13,
    }
}

/// The crypto provider for a listener: the intermediate profile, narrowed by its settings.
pub fn provider_for(settings: &ListenerSettings) -> CryptoProvider {
    let suites: &[TlsCipherSuite] = if settings.cipher_suites.is_empty() {
        &TlsCipherSuite::ALL
    } else {
        &settings.cipher_suites
    };
    // In the profile's order whatever order the listener lists them in: the server's
    // preference does not apply anyway (clients choose), but a stable order is easier to read.
    let cipher_suites = TlsCipherSuite::ALL
        .into_iter()
        .filter(|s| suites.contains(s))
        .map(suite)
        .collect();
    // rustls 0.23.48 deprecates ring's default provider because ring has no post-quantum key
    // exchange. The groups are named here, so only the signature algorithms, the RNG and the
    // key loader come from it; post-quantum groups are the aws-lc-rs feature's to add.
    #[allow(deprecated)]
    let base = provider::default_provider();
    CryptoProvider {
        cipher_suites,
        kx_groups: vec![
            provider::kx_group::X25519,
            provider::kx_group::SECP256R1,
            provider::kx_group::SECP384R1,
        ],
        ..base
    }
}

/// What a handshake on one https listener needs.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub config: Arc<ServerConfig>,
    /// The same resolver the configuration holds, asked before the handshake goes on so that
    /// an unknown name is refused with `unrecognized_name`.
    pub resolver: Arc<SniResolver>,
}

/// A worker's TLS state: its certificates and the resumption state its listeners share.
#[derive(Debug)]
pub struct WorkerTls {
    pub store: CertStore,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<Ticketer>,
}

impl Default for WorkerTls {
    fn default() -> Self {
        WorkerTls::new()
    }
}

impl WorkerTls {
    pub fn new() -> WorkerTls {
        WorkerTls {
            store: CertStore::new(),
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            ticketer: Arc::new(Ticketer::new()),
        }
    }

    /// Takes the main process's ticket keys (at start and at each rotation).
    pub fn set_ticket_keys(&self, keys: &TicketKeys) -> Result<(), TicketKeyError> {
        self.ticketer.set_keys(keys)
    }

    /// The configuration of the https listener at `address` (on add and on update).
    pub fn listener(
        &self,
        address: SocketAddr,
        settings: &ListenerSettings,
    ) -> Result<ListenerTls, TlsConfigError> {
        let versions: Vec<&'static SupportedProtocolVersion> = settings
            .accepted_tls_versions()
            .into_iter()
            .map(version)
            .collect();
        let provider = provider_for(settings);
        if provider.cipher_suites.is_empty() {
            return Err(TlsConfigError::NoCipherSuite);
        }
        let resolver = self.store.resolver(address);
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.session_storage = self.sessions.clone();
        config.ticketer = self.ticketer.clone();
        config.max_early_data_size = 0;
        Ok(ListenerTls {
            config: Arc::new(config),
            resolver,
        })
    }
}
