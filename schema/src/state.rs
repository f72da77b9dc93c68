//! The State: every resource a proxy holds, and the one set of rules for changing it.
//!
//! [`State::apply`] is the only way a state changes, in the main process, in every worker, in
//! the reconciler's simulations and in the desired-state loader. It validates a change
//! completely before touching anything, so a change is either applied whole (and the version
//! bumped) or refused with a typed error and the state left exactly as it was. Because the main
//! process runs the same checks as its workers, a change it accepts cannot fail in a worker.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::cert::Certificate;
use crate::command::{Change, Command, PrivateKeys, Request};
use crate::model::{
    Backend, BackendKey, Cluster, ClusterId, Fingerprint, Frontend, Listener, Owner, Protocol,
    RequestIdHeaderError, TlsSettingsError,
};
use crate::proto;
use crate::wire::{certificate_from_snapshot, certificate_to_wire, WireError};

/// Why a change was refused. The state is unchanged whenever one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state is at version {actual}, the request expected {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
    #[error("listener {0} already exists")]
    DuplicateListener(SocketAddr),
    #[error("listener {0} does not exist")]
    UnknownListener(SocketAddr),
    #[error("listener {address} is {actual}; changing it to {requested} needs a new listener")]
    ListenerProtocolChange {
        address: SocketAddr,
        actual: Protocol,
        requested: Protocol,
    },
    #[error("listener {address}: port 0 is not allowed (every worker must listen on one port)")]
    ListenerPortZero { address: SocketAddr },
    #[error("listener {address}: {error}")]
    ListenerTls {
        address: SocketAddr,
        error: TlsSettingsError,
    },
    #[error("listener {address}: {error}")]
    ListenerRequestIdHeader {
        address: SocketAddr,
        error: RequestIdHeaderError,
    },
    #[error("listener {address} still has {frontends} frontend(s)")]
    ListenerInUse {
        address: SocketAddr,
        frontends: usize,
    },
    #[error("cluster {0} already exists")]
    DuplicateCluster(ClusterId),
    #[error("cluster {0} does not exist")]
    UnknownCluster(ClusterId),
    #[error("cluster {id} still has {backends} backend(s) and {frontends} frontend(s)")]
    ClusterInUse {
        id: ClusterId,
        backends: usize,
        frontends: usize,
    },
    #[error("backend {0} already exists")]
    DuplicateBackend(BackendKey),
    #[error("backend {0} does not exist")]
    UnknownBackend(BackendKey),
    #[error("backend {key} has address {actual}; a new address needs a new backend")]
    BackendAddressChange {
        key: BackendKey,
        actual: SocketAddr,
        requested: SocketAddr,
    },
    #[error("certificate {0} already exists")]
    DuplicateCertificate(Fingerprint),
    #[error("certificate {0} does not exist")]
    UnknownCertificate(Fingerprint),
    #[error("certificate {fingerprint} is still used by {} frontend(s): {}", frontends.len(), list(frontends))]
    CertificateInUse {
        fingerprint: Fingerprint,
        /// The frontends naming it, in identity order.
        frontends: Vec<Frontend>,
    },
    #[error("frontend {0} already exists")]
    DuplicateFrontend(Box<Frontend>),
    #[error("frontend {0} does not exist")]
    UnknownFrontend(Box<Frontend>),
    #[error("frontend {frontend}: {problem}")]
    FrontendMismatch {
        frontend: Box<Frontend>,
        problem: &'static str,
    },
    #[error("{0} is not a change to the state")]
    NotAChange(&'static str),
    #[error("malformed request: {0}")]
    Wire(#[from] WireError),
}

/// Frontends as an error lists them: the first few, then how many more.
fn list(frontends: &[Frontend]) -> String {
    const SHOWN: usize = 5;
    let mut text = frontends
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if frontends.len() > SHOWN {
        text.push_str(&format!("; and {} more", frontends.len() - SHOWN));
    }
    text
}

/// Position of a frontend in the order frontends were added; the newest matching route wins.
pub type FrontendSeq = u64;

/// Everything a proxy holds. Maps are ordered by identity, so iteration (and everything derived
/// from it: snapshots, fingerprints, plans) is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Bumped by every accepted change.
    pub version: u64,
    pub listeners: BTreeMap<SocketAddr, Listener>,
    pub clusters: BTreeMap<ClusterId, Cluster>,
    pub backends: BTreeMap<BackendKey, Backend>,
    pub certificates: BTreeMap<Fingerprint, Certificate>,
    /// Each frontend with the sequence number it was added at.
    pub frontends: BTreeMap<Frontend, FrontendSeq>,
    next_frontend_seq: FrontendSeq,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Applies a change request: checks the expected version, then the change.
    pub fn apply(&mut self, request: &Request) -> Result<(), StateError> {
        match &request.command {
            Command::Change(change) => self.apply_change(change, request.expected_version),
            _ => Err(StateError::NotAChange("a query or control request")),
        }
    }

    /// Applies one change if the state is at `expected_version` (when given) and the change is
    /// valid; otherwise returns why and changes nothing.
    pub fn apply_change(
        &mut self,
        change: &Change,
        expected_version: Option<u64>,
    ) -> Result<(), StateError> {
        if let Some(expected) = expected_version {
            if expected != self.version {
                return Err(StateError::VersionMismatch {
                    expected,
                    actual: self.version,
                });
            }
        }
        self.check(change)?;
        self.commit(change);
        self.version += 1;
        Ok(())
    }

    /// Every rule a change must satisfy, checked without changing anything.
    pub fn check(&self, change: &Change) -> Result<(), StateError> {
        match change {
            Change::AddListener(l) => {
                if l.address.port() == 0 {
                    return Err(StateError::ListenerPortZero { address: l.address });
                }
                if self.listeners.contains_key(&l.address) {
                    return Err(StateError::DuplicateListener(l.address));
                }
                check_listener_settings(l)?;
            }
            Change::UpdateListener(l) => {
                let current = self
                    .listeners
                    .get(&l.address)
                    .ok_or(StateError::UnknownListener(l.address))?;
                if current.protocol != l.protocol {
                    return Err(StateError::ListenerProtocolChange {
                        address: l.address,
                        actual: current.protocol,
                        requested: l.protocol,
                    });
                }
                check_listener_settings(l)?;
            }
            Change::RemoveListener(address) => {
                if !self.listeners.contains_key(address) {
                    return Err(StateError::UnknownListener(*address));
                }
                let frontends = self
                    .frontends
                    .keys()
                    .filter(|f| f.listener == *address)
                    .count();
                if frontends > 0 {
                    return Err(StateError::ListenerInUse {
                        address: *address,
                        frontends,
                    });
                }
            }
            Change::AddCluster(c) => {
                if self.clusters.contains_key(&c.id) {
                    return Err(StateError::DuplicateCluster(c.id.clone()));
                }
            }
            Change::UpdateCluster(c) => {
                if !self.clusters.contains_key(&c.id) {
                    return Err(StateError::UnknownCluster(c.id.clone()));
                }
            }
            Change::RemoveCluster(id) => {
                if !self.clusters.contains_key(id) {
                    return Err(StateError::UnknownCluster(id.clone()));
                }
                let backends = self.backends_of(id).count();
                let frontends = self.frontends.keys().filter(|f| f.cluster == *id).count();
                if backends > 0 || frontends > 0 {
                    return Err(StateError::ClusterInUse {
                        id: id.clone(),
                        backends,
                        frontends,
                    });
                }
            }
            Change::AddBackend(b) => {
                if !self.clusters.contains_key(&b.key.cluster) {
                    return Err(StateError::UnknownCluster(b.key.cluster.clone()));
                }
                if self.backends.contains_key(&b.key) {
                    return Err(StateError::DuplicateBackend(b.key.clone()));
                }
            }
            Change::UpdateBackend(b) => {
                let current = self
                    .backends
                    .get(&b.key)
                    .ok_or_else(|| StateError::UnknownBackend(b.key.clone()))?;
                if current.address != b.address {
                    return Err(StateError::BackendAddressChange {
                        key: b.key.clone(),
                        actual: current.address,
                        requested: b.address,
                    });
                }
            }
            Change::RemoveBackend { key, .. } => {
                if !self.backends.contains_key(key) {
                    return Err(StateError::UnknownBackend(key.clone()));
                }
            }
            Change::AddCertificate(c) => {
                if self.certificates.contains_key(&c.fingerprint) {
                    return Err(StateError::DuplicateCertificate(c.fingerprint));
                }
            }
            Change::ReplaceCertificate { old, new } => {
                if !self.certificates.contains_key(old) {
                    return Err(StateError::UnknownCertificate(*old));
                }
                if new.fingerprint != *old && self.certificates.contains_key(&new.fingerprint) {
                    return Err(StateError::DuplicateCertificate(new.fingerprint));
                }
                // Repointing frontends must not make two of them identical.
                for f in self
                    .frontends
                    .keys()
                    .filter(|f| f.certificate == Some(*old))
                {
                    let mut moved = f.clone();
                    moved.certificate = Some(new.fingerprint);
                    if new.fingerprint != *old && self.frontends.contains_key(&moved) {
                        return Err(StateError::DuplicateFrontend(Box::new(moved)));
                    }
                }
            }
            Change::RemoveCertificate(fp) => {
                if !self.certificates.contains_key(fp) {
                    return Err(StateError::UnknownCertificate(*fp));
                }
                let frontends: Vec<Frontend> = self
                    .frontends
                    .keys()
                    .filter(|f| f.certificate == Some(*fp))
                    .cloned()
                    .collect();
                if !frontends.is_empty() {
                    return Err(StateError::CertificateInUse {
                        fingerprint: *fp,
                        frontends,
                    });
                }
            }
            Change::AddFrontend(f) => {
                self.check_frontend(f)?;
                if self.frontends.contains_key(f) {
                    return Err(StateError::DuplicateFrontend(Box::new(f.clone())));
                }
            }
            Change::UpdateFrontend(f) | Change::RemoveFrontend(f) => {
                if !self.frontends.contains_key(f) {
                    return Err(StateError::UnknownFrontend(Box::new(f.clone())));
                }
            }
        }
        Ok(())
    }

    fn check_frontend(&self, f: &Frontend) -> Result<(), StateError> {
        let mismatch = |problem| StateError::FrontendMismatch {
            frontend: Box::new(f.clone()),
            problem,
        };
        let listener = self
            .listeners
            .get(&f.listener)
            .ok_or(StateError::UnknownListener(f.listener))?;
        if !self.clusters.contains_key(&f.cluster) {
            return Err(StateError::UnknownCluster(f.cluster.clone()));
        }
        f.options.check(listener.protocol).map_err(mismatch)?;
        match listener.protocol {
            Protocol::Tcp => {
                if f.hostname.is_some() {
                    return Err(mismatch("a tcp listener routes no hostname"));
                }
                if f.path != "/" {
                    return Err(mismatch("a tcp listener routes no path"));
                }
                if f.certificate.is_some() {
                    return Err(mismatch("a tcp listener takes no certificate"));
                }
            }
            Protocol::Http => {
                if f.hostname.is_none() {
                    return Err(mismatch("an http frontend needs a hostname"));
                }
                if f.certificate.is_some() {
                    return Err(mismatch(
                        "an http listener takes no certificate (use an https listener)",
                    ));
                }
            }
            Protocol::Https => {
                if f.hostname.is_none() {
                    return Err(mismatch("an https frontend needs a hostname"));
                }
                let fp = f
                    .certificate
                    .ok_or_else(|| mismatch("an https frontend needs a certificate"))?;
                if !self.certificates.contains_key(&fp) {
                    return Err(StateError::UnknownCertificate(fp));
                }
            }
        }
        Ok(())
    }

    /// Makes a change that [`State::check`] accepted.
    fn commit(&mut self, change: &Change) {
        match change {
            Change::AddListener(l) | Change::UpdateListener(l) => {
                self.listeners.insert(l.address, l.clone());
            }
            Change::RemoveListener(address) => {
                self.listeners.remove(address);
            }
            Change::AddCluster(c) | Change::UpdateCluster(c) => {
                self.clusters.insert(c.id.clone(), c.clone());
            }
            Change::RemoveCluster(id) => {
                self.clusters.remove(id);
            }
            Change::AddBackend(b) | Change::UpdateBackend(b) => {
                self.backends.insert(b.key.clone(), b.clone());
            }
            Change::RemoveBackend { key, .. } => {
                self.backends.remove(key);
            }
            Change::AddCertificate(c) => {
                self.certificates.insert(c.fingerprint, (**c).clone());
            }
            Change::ReplaceCertificate { old, new } => {
                self.certificates.remove(old);
                self.certificates.insert(new.fingerprint, (**new).clone());
                let moved: Vec<(Frontend, FrontendSeq)> = self
                    .frontends
                    .iter()
                    .filter(|(f, _)| f.certificate == Some(*old))
                    .map(|(f, seq)| (f.clone(), *seq))
                    .collect();
                for (mut f, seq) in moved {
                    self.frontends.remove(&f);
                    f.certificate = Some(new.fingerprint);
                    self.frontends.insert(f, seq);
                }
                for l in self.listeners.values_mut() {
                    if l.settings.default_certificate == Some(*old) {
                        l.settings.default_certificate = Some(new.fingerprint);
                    }
                }
            }
            Change::RemoveCertificate(fp) => {
                self.certificates.remove(fp);
            }
            Change::AddFrontend(f) => {
                self.frontends.insert(f.clone(), self.next_frontend_seq);
                self.next_frontend_seq += 1;
            }
            Change::UpdateFrontend(f) => {
                // A map keeps the key it has on insert, and the owner is in the key (left out
                // of its ordering): take the old one out, put the new one in at the same place.
                if let Some(seq) = self.frontends.remove(f) {
                    self.frontends.insert(f.clone(), seq);
                }
            }
            Change::RemoveFrontend(f) => {
                self.frontends.remove(f);
            }
        }
    }

    /// The backends of one cluster, in id order.
    pub fn backends_of<'a>(&'a self, cluster: &'a ClusterId) -> impl Iterator<Item = &'a Backend> {
        self.backends
            .range(
                BackendKey {
                    cluster: cluster.clone(),
                    id: crate::model::BackendId(String::new()),
                }..,
            )
            .take_while(move |(k, _)| k.cluster == *cluster)
            .map(|(_, b)| b)
    }

    /// Frontends in the order they were added (oldest first).
    pub fn frontends_in_order(&self) -> Vec<&Frontend> {
        let mut ordered: Vec<(&Frontend, &FrontendSeq)> = self.frontends.iter().collect();
        ordered.sort_by_key(|(_, seq)| **seq);
        ordered.into_iter().map(|(f, _)| f).collect()
    }

    /// The changes that rebuild this state from empty, in dependency order: listeners,
    /// clusters, backends, certificates, then frontends in the order they were added.
    pub fn to_changes(&self) -> Vec<Change> {
        let mut changes = Vec::with_capacity(
            self.listeners.len()
                + self.clusters.len()
                + self.backends.len()
                + self.certificates.len()
                + self.frontends.len(),
        );
        changes.extend(self.listeners.values().cloned().map(Change::AddListener));
        changes.extend(self.clusters.values().cloned().map(Change::AddCluster));
        changes.extend(self.backends.values().cloned().map(Change::AddBackend));
        changes.extend(
            self.certificates
                .values()
                .map(|c| Change::AddCertificate(Box::new(c.clone()))),
        );
        changes.extend(
            self.frontends_in_order()
                .into_iter()
                .cloned()
                .map(Change::AddFrontend),
        );
        changes
    }

    /// [`State::to_changes`] as requests with ids `"<prefix>-<n>"`.
    pub fn to_requests(&self, id_prefix: &str) -> Vec<Request> {
        self.to_changes()
            .into_iter()
            .enumerate()
            .map(|(n, c)| Request::change(format!("{id_prefix}-{n}"), c))
            .collect()
    }

    /// The whole state as a wire message (frontends in the order they were added), with
    /// certificates' private keys left out: what a query gets by default.
    pub fn to_snapshot(&self) -> proto::StateSnapshot {
        self.snapshot(PrivateKeys::Redacted)
    }

    /// The whole state as a wire message, private keys included or not. A state that must be
    /// restored later (a saved state) needs them; an answer to a query should not carry them
    /// unless asked to.
    pub fn snapshot(&self, keys: PrivateKeys) -> proto::StateSnapshot {
        proto::StateSnapshot {
            version: self.version,
            listeners: self.listeners.values().map(Into::into).collect(),
            clusters: self.clusters.values().map(Into::into).collect(),
            backends: self.backends.values().map(Into::into).collect(),
            certificates: self
                .certificates
                .values()
                .map(|c| certificate_to_wire(c, keys))
                .collect(),
            frontends: self
                .frontends_in_order()
                .into_iter()
                .map(Into::into)
                .collect(),
        }
    }

    /// Rebuilds a state from a snapshot by applying every resource through the usual rules,
    /// so a snapshot that breaks them (a frontend naming a missing cluster, say) is refused.
    /// The result carries the snapshot's version. Certificates of a redacted snapshot come back
    /// without keys.
    pub fn from_snapshot(snapshot: &proto::StateSnapshot) -> Result<State, StateError> {
        let mut state = State::new();
        let mut changes = Vec::new();
        for l in &snapshot.listeners {
            changes.push(Change::AddListener(l.try_into()?));
        }
        for c in &snapshot.clusters {
            changes.push(Change::AddCluster(c.try_into()?));
        }
        for b in &snapshot.backends {
            changes.push(Change::AddBackend(b.try_into()?));
        }
        for c in &snapshot.certificates {
            changes.push(Change::AddCertificate(Box::new(certificate_from_snapshot(
                c,
            )?)));
        }
        for f in &snapshot.frontends {
            changes.push(Change::AddFrontend(f.try_into()?));
        }
        for change in &changes {
            state.apply_change(change, None)?;
        }
        state.version = snapshot.version;
        Ok(state)
    }

    /// A SHA-256 over the content of the state: every resource and setting a diff compares,
    /// in identity order. The version, the order frontends were added in and the aliases of
    /// certificates are left out, so two states that route the same way have the same
    /// fingerprint whatever their history. Stable across processes and platforms because it
    /// hashes a protobuf encoding of sorted lists (no maps, no floats).
    pub fn fingerprint(&self) -> Fingerprint {
        let canonical = proto::StateSnapshot {
            version: 0,
            listeners: self.listeners.values().map(Into::into).collect(),
            clusters: self.clusters.values().map(Into::into).collect(),
            backends: self.backends.values().map(Into::into).collect(),
            certificates: self
                .certificates
                .iter()
                .map(|(fp, c)| proto::Certificate {
                    name: fp.to_hex(),
                    certificate_pem: String::new(),
                    key_pem: String::new(),
                    owner: Owner::to_wire(&c.owner),
                })
                .collect(),
            frontends: self.frontends.keys().map(Into::into).collect(),
        };
        let mut hasher = Sha256::new();
        hasher.update(b"weir-state-v1\0");
        hasher.update(canonical.encode_to_vec());
        Fingerprint(hasher.finalize().into())
    }

    /// Counts of each resource kind, for summaries.
    pub fn counts(&self) -> Counts {
        Counts {
            listeners: self.listeners.len(),
            clusters: self.clusters.len(),
            backends: self.backends.len(),
            certificates: self.certificates.len(),
            frontends: self.frontends.len(),
        }
    }
}

/// A listener's TLS settings and request id field must fit its protocol.
fn check_listener_settings(l: &Listener) -> Result<(), StateError> {
    l.settings
        .check_tls(l.protocol)
        .map_err(|error| StateError::ListenerTls {
            address: l.address,
            error,
        })?;
    l.settings
        .check_request_id_header(l.protocol)
        .map_err(|error| StateError::ListenerRequestIdHeader {
            address: l.address,
            error,
        })
}

/// How many resources of each kind a state holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub listeners: usize,
    pub clusters: usize,
    pub backends: usize,
    pub certificates: usize,
    pub frontends: usize,
}
