//! Certificates by fingerprint, and the choice of one per handshake from the client's SNI.
//!
//! The worker's control code feeds [`CertStore`] the same changes it applies to its State
//! (certificates, listeners, frontends with their sequence numbers), right after the State
//! accepted them. Each https listener gets an [`SniResolver`] that reads the store's tables at
//! every handshake, so a change is seen by the very next handshake; a session already
//! established keeps the certificate it was served.
//!
//! Rules (issue 15): among the frontends of the listener, exact hostnames before `*.`
//! wildcards (a wildcard matches any depth, the longest suffix first, as the router does); the
//! newest frontend wins among equals; a client without SNI gets the listener's default
//! certificate if it has one. Anything else — no SNI without a default, an unknown name, a name
//! whose certificate is not (yet) in the store — finds nothing, which the handshake turns into
//! an `unrecognized_name` alert.
//!
//! The tables sit behind one `RwLock` because rustls wants `Send + Sync` resolvers; the worker
//! is the only thread that touches them, so the lock is never contended.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::HashMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use weir_schema::state::FrontendSeq;
use weir_schema::{Certificate, Fingerprint, Frontend, Listener, Protocol};

/// The frontends that share one hostname on one listener: (sequence, certificate).
type Entries = Vec<(FrontendSeq, Fingerprint)>;

/// The names one https listener answers to.
#[derive(Debug, Default)]
struct Names {
    exact: HashMap<Box<str>, Entries>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, Entries>,
    default: Option<Fingerprint>,
}

impl Names {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }

    fn map_for<'a>(
        &'a mut self,
        hostname: &'a str,
    ) -> (&'a mut HashMap<Box<str>, Entries>, &'a str) {
        match hostname.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, hostname),
        }
    }

    /// The certificate for a (normalised) server name.
    fn choose(&self, name: &str) -> Option<Fingerprint> {
        if let Some(found) = self.exact.get(name).and_then(newest) {
            return Some(found);
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(found) = self.wildcard.get(rest).and_then(newest) {
                return Some(found);
            }
        }
        None
    }
}

fn newest(entries: &Entries) -> Option<Fingerprint> {
    entries
        .iter()
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, fp)| *fp)
}

#[derive(Default)]
struct Tables {
    certificates: HashMap<Fingerprint, Arc<CertifiedKey>>,
    listeners: HashMap<SocketAddr, Names>,
}

/// Every certificate a worker holds and, per https listener, the names that select them.
#[derive(Clone, Default)]
pub struct CertStore {
    tables: Arc<RwLock<Tables>>,
}

/// Counts only: chains are long, and the keys are nobody's business.
impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tables = self.read();
        f.debug_struct("CertStore")
            .field("certificates", &tables.certificates.len())
            .field("listeners", &tables.listeners.len())
            .finish()
    }
}

impl CertStore {
    pub fn new() -> CertStore {
        CertStore::default()
    }

    // A panic while holding the lock cannot leave the tables half-changed in a way that
    // matters more than stopping would: every change below is a single insert or removal.
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// After `AddCertificate`. A certificate without its key (only a redacted snapshot makes
    /// one; requests always carry keys) cannot be served and is left out.
    pub fn add_certificate(&mut self, certificate: &Certificate) {
        if let Some(key) = &certificate.certified_key {
            self.write()
                .certificates
                .insert(certificate.fingerprint, key.clone());
        }
    }

    /// After `ReplaceCertificate`: the new certificate takes over every name and default the
    /// old one had, in one step.
    pub fn replace_certificate(&mut self, old: Fingerprint, new: &Certificate) {
        let mut tables = self.write();
        tables.certificates.remove(&old);
        if let Some(key) = &new.certified_key {
            tables.certificates.insert(new.fingerprint, key.clone());
        }
        for names in tables.listeners.values_mut() {
            if names.default == Some(old) {
                names.default = Some(new.fingerprint);
            }
            for entries in names.exact.values_mut().chain(names.wildcard.values_mut()) {
                for (_, fp) in entries.iter_mut().filter(|(_, fp)| *fp == old) {
                    *fp = new.fingerprint;
                }
            }
        }
    }

    /// After `RemoveCertificate` (which the State refuses while a frontend uses it).
    pub fn remove_certificate(&mut self, fingerprint: Fingerprint) {
        self.write().certificates.remove(&fingerprint);
    }

    /// After `AddListener` or `UpdateListener`: records the listener's default certificate.
    pub fn set_listener(&mut self, listener: &Listener) {
        if listener.protocol != Protocol::Https {
            return;
        }
        let mut tables = self.write();
        let names = tables.listeners.entry(listener.address).or_default();
        names.default = listener.settings.default_certificate;
        if names.is_empty() {
            tables.listeners.remove(&listener.address);
        }
    }

    /// After `RemoveListener`.
    pub fn remove_listener(&mut self, address: SocketAddr) {
        self.write().listeners.remove(&address);
    }

    /// After `AddFrontend`, with the sequence number the State gave it. Frontends without a
    /// certificate (http, tcp) are ignored.
    pub fn add_frontend(&mut self, frontend: &Frontend, seq: FrontendSeq) {
        let (Some(hostname), Some(fp)) = (&frontend.hostname, frontend.certificate) else {
            return;
        };
        let mut tables = self.write();
        let names = tables.listeners.entry(frontend.listener).or_default();
        let (map, key) = names.map_for(hostname);
        map.entry(key.into()).or_default().push((seq, fp));
    }

    /// After `RemoveFrontend`, with the sequence number it had: that, not the certificate,
    /// tells apart two frontends on one name (and decides which of the others is now newest).
    pub fn remove_frontend(&mut self, frontend: &Frontend, seq: FrontendSeq) {
        let (Some(hostname), Some(_)) = (&frontend.hostname, frontend.certificate) else {
            return;
        };
        let mut tables = self.write();
        let Some(names) = tables.listeners.get_mut(&frontend.listener) else {
            return;
        };
        let (map, key) = names.map_for(hostname);
        if let Some(entries) = map.get_mut(key) {
            entries.retain(|(s, _)| *s != seq);
            if entries.is_empty() {
                map.remove(key);
            }
        }
        if names.is_empty() {
            tables.listeners.remove(&frontend.listener);
        }
    }

    /// The resolver an https listener's TLS configuration uses.
    pub fn resolver(&self, listener: SocketAddr) -> Arc<SniResolver> {
        Arc::new(SniResolver {
            listener,
            store: self.clone(),
        })
    }

    /// The certificate a handshake on `listener` gets for `server_name` (`None`: no SNI).
    pub fn choose(
        &self,
        listener: SocketAddr,
        server_name: Option<&str>,
    ) -> Option<Arc<CertifiedKey>> {
        let tables = self.read();
        let names = tables.listeners.get(&listener)?;
        let fp = match server_name {
            None => names.default?,
            Some(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    names.choose(&name.to_ascii_lowercase())?
                } else {
                    names.choose(name)?
                }
            }
        };
        tables.certificates.get(&fp).cloned()
    }
}

/// One https listener's view of the [`CertStore`], for rustls.
#[derive(Debug)]
pub struct SniResolver {
    listener: SocketAddr,
    store: CertStore,
}

impl SniResolver {
    /// The certificate for this server name (`None`: the client sent no SNI).
    pub fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.store.choose(self.listener, server_name)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(client_hello.server_name())
    }
}
