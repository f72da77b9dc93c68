//! Conversions between the prost messages and the domain types, done once at the edge.
//!
//! Decoding checks everything the message shape cannot: addresses parse, hostnames and paths are
//! valid, fingerprints are 32 bytes of hex, certificates parse and match their keys. A request
//! that decodes is well-formed; whether it fits the current state is [`crate::State`]'s call.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cert::{CertError, Certificate};
use crate::command::{Change, Command, PrivateKeys, Request};
use crate::model::{
    normalize_hostname, normalize_hsts, normalize_path, normalize_route_path, Backend, BackendId,
    BackendKey, Cluster, ClusterId, Fingerprint, Frontend, FrontendOptions, HealthCheck, Listener,
    ListenerSettings, LoadBalancing, Owner, Protocol, RouteError, TlsCipherSuite, TlsVersion,
    DEFAULT_WEIGHT,
};
use crate::proto;

/// Why a message could not be turned into a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("request has no kind (or a kind this proxy does not know)")]
    UnknownKind,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}`: {value:?} is not a socket address (expected e.g. 127.0.0.1:8080)")]
    BadAddress { field: &'static str, value: String },
    #[error("field `{field}`: {value:?} is not a SHA-256 fingerprint (64 hex digits)")]
    BadFingerprint { field: &'static str, value: String },
    #[error("field `{field}`: unknown value {value}")]
    BadEnum { field: &'static str, value: i32 },
    #[error("field `tls_versions`: {0:?} is not a TLS version (expected \"1.2\" or \"1.3\")")]
    BadTlsVersion(String),
    #[error("field `cipher_suites`: {0:?} is not a supported cipher suite (expected an IANA name such as \"TLS_AES_128_GCM_SHA256\")")]
    BadCipherSuite(String),
    #[error("{0} is sent only by the main process to its workers")]
    ChannelOnly(&'static str),
    #[error("field `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("field `weight` must be at least 1 (remove the backend instead)")]
    ZeroWeight,
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("certificate: {0}")]
    Certificate(#[from] CertError),
}

fn ms(value: u64) -> Option<Duration> {
    (value > 0).then(|| Duration::from_millis(value))
}

fn to_ms(value: Option<Duration>) -> u64 {
    value.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn address(field: &'static str, value: &str) -> Result<SocketAddr, WireError> {
    value.trim().parse().map_err(|_| WireError::BadAddress {
        field,
        value: value.to_owned(),
    })
}

fn non_empty(field: &'static str, value: &str) -> Result<String, WireError> {
    if value.trim().is_empty() {
        Err(WireError::Empty { field })
    } else {
        Ok(value.to_owned())
    }
}

fn fingerprint(field: &'static str, value: &str) -> Result<Fingerprint, WireError> {
    Fingerprint::from_hex(value).ok_or_else(|| WireError::BadFingerprint {
        field,
        value: value.to_owned(),
    })
}

// ---- listeners -------------------------------------------------------------------------------

pub fn protocol_from_wire(value: i32) -> Result<Protocol, WireError> {
    match proto::ListenerProtocol::try_from(value) {
        Ok(proto::ListenerProtocol::Http) => Ok(Protocol::Http),
        Ok(proto::ListenerProtocol::Https) => Ok(Protocol::Https),
        Ok(proto::ListenerProtocol::Tcp) => Ok(Protocol::Tcp),
        _ => Err(WireError::BadEnum {
            field: "protocol",
            value,
        }),
    }
}

pub fn protocol_to_wire(protocol: Protocol) -> proto::ListenerProtocol {
    match protocol {
        Protocol::Http => proto::ListenerProtocol::Http,
        Protocol::Https => proto::ListenerProtocol::Https,
        Protocol::Tcp => proto::ListenerProtocol::Tcp,
    }
}

impl TryFrom<&proto::Listener> for Listener {
    type Error = WireError;
    fn try_from(l: &proto::Listener) -> Result<Self, WireError> {
        let address = address("address", &l.address)?;
        let settings = l.settings.clone().unwrap_or_default();
        let tls_versions = settings
            .tls_versions
            .iter()
            .map(|v| TlsVersion::parse(v).ok_or_else(|| WireError::BadTlsVersion(v.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let cipher_suites = settings
            .cipher_suites
            .iter()
            .map(|v| TlsCipherSuite::parse(v).ok_or_else(|| WireError::BadCipherSuite(v.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let default_certificate = if settings.default_certificate.is_empty() {
            None
        } else {
            Some(fingerprint(
                "default_certificate",
                &settings.default_certificate,
            )?)
        };
        Ok(Listener {
            address,
            protocol: protocol_from_wire(l.protocol)?,
            name: if l.name.is_empty() {
                address.to_string()
            } else {
                l.name.clone()
            },
            settings: ListenerSettings {
                front_timeout: ms(settings.front_timeout_ms),
                tunnel_timeout: ms(settings.tunnel_timeout_ms),
                request_timeout: ms(settings.request_timeout_ms),
                max_request_body: (settings.max_request_body > 0)
                    .then_some(settings.max_request_body),
                answer_404: settings.answer_404,
                answer_503: settings.answer_503,
                tls_versions,
                cipher_suites,
                default_certificate,
                allow_underscores_in_headers: settings.allow_underscores_in_headers,
                max_connections_per_ip: (settings.max_connections_per_ip > 0)
                    .then_some(settings.max_connections_per_ip),
                max_requests_per_connection: (settings.max_requests_per_connection > 0)
                    .then_some(settings.max_requests_per_connection),
                request_body_timeout: ms(settings.request_body_timeout_ms),
                send_timeout: ms(settings.send_timeout_ms),
                request_id_header: settings.request_id_header,
            },
            owner: Owner::from_wire(&l.owner),
        })
    }
}

impl From<&Listener> for proto::Listener {
    fn from(l: &Listener) -> Self {
        let s = &l.settings;
        proto::Listener {
            address: l.address.to_string(),
            protocol: protocol_to_wire(l.protocol) as i32,
            name: l.name.clone(),
            settings: Some(proto::ListenerSettings {
                front_timeout_ms: to_ms(s.front_timeout),
                tunnel_timeout_ms: to_ms(s.tunnel_timeout),
                request_timeout_ms: to_ms(s.request_timeout),
                max_request_body: s.max_request_body.unwrap_or(0),
                answer_404: s.answer_404.clone(),
                answer_503: s.answer_503.clone(),
                tls_versions: s
                    .tls_versions
                    .iter()
                    .map(|v| v.as_str().to_owned())
                    .collect(),
                cipher_suites: s
                    .cipher_suites
                    .iter()
                    .map(|v| v.as_str().to_owned())
                    .collect(),
                default_certificate: s
                    .default_certificate
                    .map(|fp| fp.to_hex())
                    .unwrap_or_default(),
                allow_underscores_in_headers: s.allow_underscores_in_headers,
                max_connections_per_ip: s.max_connections_per_ip.unwrap_or(0),
                max_requests_per_connection: s.max_requests_per_connection.unwrap_or(0),
                request_body_timeout_ms: to_ms(s.request_body_timeout),
                send_timeout_ms: to_ms(s.send_timeout),
                request_id_header: s.request_id_header.clone(),
            }),
            owner: Owner::to_wire(&l.owner),
        }
    }
}

// ---- clusters --------------------------------------------------------------------------------

fn lb_from_wire(value: i32) -> Result<LoadBalancing, WireError> {
    match proto::LoadBalancing::try_from(value) {
        Ok(proto::LoadBalancing::Unspecified | proto::LoadBalancing::RoundRobin) => {
            Ok(LoadBalancing::RoundRobin)
        }
        Ok(proto::LoadBalancing::Random) => Ok(LoadBalancing::Random),
        Ok(proto::LoadBalancing::LeastConnections) => Ok(LoadBalancing::LeastConnections),
        Ok(proto::LoadBalancing::PowerOfTwo) => Ok(LoadBalancing::PowerOfTwo),
        Err(_) => Err(WireError::BadEnum {
            field: "load_balancing",
            value,
        }),
    }
}

fn lb_to_wire(lb: LoadBalancing) -> proto::LoadBalancing {
    match lb {
        LoadBalancing::RoundRobin => proto::LoadBalancing::RoundRobin,
        LoadBalancing::Random => proto::LoadBalancing::Random,
        LoadBalancing::LeastConnections => proto::LoadBalancing::LeastConnections,
        LoadBalancing::PowerOfTwo => proto::LoadBalancing::PowerOfTwo,
    }
}

impl TryFrom<&proto::Cluster> for Cluster {
    type Error = WireError;
    fn try_from(c: &proto::Cluster) -> Result<Self, WireError> {
        let health_check = match &c.health_check {
            None => None,
            Some(h) => Some(HealthCheck {
                path: normalize_path(&h.path)?,
                interval: ms(h.interval_ms).unwrap_or(HealthCheck::DEFAULT_INTERVAL),
                timeout: ms(h.timeout_ms).unwrap_or(HealthCheck::DEFAULT_TIMEOUT),
                healthy_threshold: if h.healthy_threshold == 0 {
                    HealthCheck::DEFAULT_HEALTHY
                } else {
                    h.healthy_threshold
                },
                unhealthy_threshold: if h.unhealthy_threshold == 0 {
                    HealthCheck::DEFAULT_UNHEALTHY
                } else {
                    h.unhealthy_threshold
                },
            }),
        };
        Ok(Cluster {
            id: ClusterId(non_empty("id", &c.id)?),
            load_balancing: lb_from_wire(c.load_balancing)?,
            health_check,
            connect_timeout: ms(c.connect_timeout_ms),
            response_timeout: ms(c.response_timeout_ms),
            owner: Owner::from_wire(&c.owner),
        })
    }
}

impl From<&Cluster> for proto::Cluster {
    fn from(c: &Cluster) -> Self {
        proto::Cluster {
            id: c.id.0.clone(),
            load_balancing: lb_to_wire(c.load_balancing) as i32,
            health_check: c.health_check.as_ref().map(|h| proto::HealthCheck {
                path: h.path.clone(),
                interval_ms: to_ms(Some(h.interval)),
                timeout_ms: to_ms(Some(h.timeout)),
                healthy_threshold: h.healthy_threshold,
                unhealthy_threshold: h.unhealthy_threshold,
            }),
            connect_timeout_ms: to_ms(c.connect_timeout),
            response_timeout_ms: to_ms(c.response_timeout),
            owner: Owner::to_wire(&c.owner),
        }
    }
}

// ---- backends --------------------------------------------------------------------------------

fn backend_key(cluster_id: &str, id: &str) -> Result<BackendKey, WireError> {
    Ok(BackendKey {
        cluster: ClusterId(non_empty("cluster_id", cluster_id)?),
        id: BackendId(non_empty("id", id)?),
    })
}

impl TryFrom<&proto::Backend> for Backend {
    type Error = WireError;
    fn try_from(b: &proto::Backend) -> Result<Self, WireError> {
        let weight = b.weight.unwrap_or(DEFAULT_WEIGHT);
        if weight == 0 {
            return Err(WireError::ZeroWeight);
        }
        Ok(Backend {
            key: backend_key(&b.cluster_id, &b.id)?,
            address: address("address", &b.address)?,
            weight,
            backup: b.backup,
            owner: Owner::from_wire(&b.owner),
        })
    }
}

impl From<&Backend> for proto::Backend {
    fn from(b: &Backend) -> Self {
        proto::Backend {
            cluster_id: b.key.cluster.0.clone(),
            id: b.key.id.0.clone(),
            address: b.address.to_string(),
            weight: Some(b.weight),
            backup: b.backup,
            owner: Owner::to_wire(&b.owner),
        }
    }
}

// ---- frontends -------------------------------------------------------------------------------

impl TryFrom<&proto::Frontend> for Frontend {
    type Error = WireError;
    fn try_from(f: &proto::Frontend) -> Result<Self, WireError> {
        Ok(Frontend {
            listener: address("listener", &f.listener)?,
            hostname: if f.hostname.is_empty() {
                None
            } else {
                Some(normalize_hostname(&f.hostname)?)
            },
            path: normalize_route_path(&f.path)?,
            cluster: ClusterId(non_empty("cluster_id", &f.cluster_id)?),
            certificate: if f.certificate.is_empty() {
                None
            } else {
                Some(fingerprint("certificate", &f.certificate)?)
            },
            options: FrontendOptions {
                redirect_https: f.redirect_https,
                hsts: if f.hsts.is_empty() {
                    None
                } else {
                    Some(normalize_hsts(&f.hsts)?)
                },
            },
            owner: Owner::from_wire(&f.owner),
        })
    }
}

impl From<&Frontend> for proto::Frontend {
    fn from(f: &Frontend) -> Self {
        proto::Frontend {
            listener: f.listener.to_string(),
            hostname: f.hostname.clone().unwrap_or_default(),
            path: f.path.clone(),
            cluster_id: f.cluster.0.clone(),
            certificate: f.certificate.map(|fp| fp.to_hex()).unwrap_or_default(),
            redirect_https: f.options.redirect_https,
            hsts: f.options.hsts.clone().unwrap_or_default(),
            owner: Owner::to_wire(&f.owner),
        }
    }
}

// ---- certificates ----------------------------------------------------------------------------

/// A certificate a request adds: its key is required.
impl TryFrom<&proto::Certificate> for Certificate {
    type Error = WireError;
    fn try_from(c: &proto::Certificate) -> Result<Self, WireError> {
        let mut cert = Certificate::from_pem(&c.name, &c.certificate_pem, &c.key_pem)?;
        cert.owner = Owner::from_wire(&c.owner);
        Ok(cert)
    }
}

/// A certificate listed in a state snapshot: without a key when the answer was redacted.
pub fn certificate_from_snapshot(c: &proto::Certificate) -> Result<Certificate, WireError> {
    if c.key_pem.is_empty() {
        let mut cert = Certificate::public_from_pem(&c.name, &c.certificate_pem)?;
        cert.owner = Owner::from_wire(&c.owner);
        Ok(cert)
    } else {
        Ok(c.try_into()?)
    }
}

/// With its key when it has one; see [`certificate_to_wire`] to choose.
impl From<&Certificate> for proto::Certificate {
    fn from(c: &Certificate) -> Self {
        certificate_to_wire(c, PrivateKeys::Included)
    }
}

/// A certificate as the wire carries it, with or without its key.
pub fn certificate_to_wire(c: &Certificate, keys: PrivateKeys) -> proto::Certificate {
    let key_pem = match (keys, &c.key_pem) {
        (PrivateKeys::Included, Some(key)) => key.expose().to_owned(),
        _ => String::new(),
    };
    proto::Certificate {
        name: c.name.clone(),
        certificate_pem: c.certificate_pem.clone(),
        key_pem,
        owner: Owner::to_wire(&c.owner),
    }
}

impl fmt::Debug for proto::Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("name", &self.name)
            .field("certificate_pem", &self.certificate_pem)
            .field("owner", &self.owner)
            .field(
                "key_pem",
                &if self.key_pem.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl fmt::Debug for proto::TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey")
            .field("name", &hex::encode(&self.name))
            .field("secret", &"<redacted>")
            .finish()
    }
}

// ---- requests --------------------------------------------------------------------------------

impl TryFrom<&proto::Request> for Request {
    type Error = WireError;
    fn try_from(r: &proto::Request) -> Result<Self, WireError> {
        use proto::request::Kind;
        let kind = r.kind.as_ref().ok_or(WireError::UnknownKind)?;
        let change = |c: Change| Command::Change(c);
        let command = match kind {
            Kind::AddListener(l) => change(Change::AddListener(l.try_into()?)),
            Kind::UpdateListener(l) => change(Change::UpdateListener(l.try_into()?)),
            Kind::RemoveListener(l) => {
                change(Change::RemoveListener(address("address", &l.address)?))
            }
            Kind::AddCluster(c) => change(Change::AddCluster(c.try_into()?)),
            Kind::UpdateCluster(c) => change(Change::UpdateCluster(c.try_into()?)),
            Kind::RemoveCluster(c) => {
                change(Change::RemoveCluster(ClusterId(non_empty("id", &c.id)?)))
            }
            Kind::AddBackend(b) => change(Change::AddBackend(b.try_into()?)),
            Kind::UpdateBackend(b) => change(Change::UpdateBackend(b.try_into()?)),
            Kind::RemoveBackend(b) => change(Change::RemoveBackend {
                key: backend_key(&b.cluster_id, &b.id)?,
                drain_timeout: ms(b.drain_timeout_ms),
            }),
            Kind::AddFrontend(f) => change(Change::AddFrontend(f.try_into()?)),
            Kind::UpdateFrontend(f) => change(Change::UpdateFrontend(f.try_into()?)),
            Kind::RemoveFrontend(f) => change(Change::RemoveFrontend(f.try_into()?)),
            Kind::AddCertificate(c) => change(Change::AddCertificate(Box::new(c.try_into()?))),
            Kind::ReplaceCertificate(c) => change(Change::ReplaceCertificate {
                old: fingerprint("old_fingerprint", &c.old_fingerprint)?,
                new: Box::new(
                    c.new_certificate
                        .as_ref()
                        .ok_or(WireError::Missing("new_certificate"))?
                        .try_into()?,
                ),
            }),
            Kind::RemoveCertificate(c) => change(Change::RemoveCertificate(fingerprint(
                "fingerprint",
                &c.fingerprint,
            )?)),
            Kind::QueryState(_) => Command::QueryState,
            Kind::SetTicketKeys(_) => return Err(WireError::ChannelOnly("set_ticket_keys")),
            Kind::QueryMetrics(_) => Command::QueryMetrics,
            Kind::Status(_) => Command::Status,
            Kind::SaveState(s) => Command::SaveState(PathBuf::from(non_empty("path", &s.path)?)),
            Kind::LoadState(s) => Command::LoadState(PathBuf::from(non_empty("path", &s.path)?)),
            Kind::SoftStop(_) => Command::SoftStop,
            Kind::HardStop(_) => Command::HardStop,
            Kind::UpgradeMain(_) => Command::UpgradeMain,
            Kind::UpgradeWorker(w) => Command::UpgradeWorker(w.worker_id),
            Kind::SubscribeEvents(s) => Command::SubscribeEvents {
                from_sequence: s.from_sequence,
            },
        };
        let private_keys = match kind {
            Kind::QueryState(q) if q.include_private_keys => PrivateKeys::Included,
            _ => PrivateKeys::Redacted,
        };
        Ok(Request {
            id: r.id.clone(),
            expected_version: r.expected_version,
            command,
            private_keys,
        })
    }
}

impl From<&Change> for proto::request::Kind {
    fn from(change: &Change) -> Self {
        use proto::request::Kind;
        match change {
            Change::AddListener(l) => Kind::AddListener(l.into()),
            Change::UpdateListener(l) => Kind::UpdateListener(l.into()),
            Change::RemoveListener(a) => Kind::RemoveListener(proto::RemoveListener {
                address: a.to_string(),
            }),
            Change::AddCluster(c) => Kind::AddCluster(c.into()),
            Change::UpdateCluster(c) => Kind::UpdateCluster(c.into()),
            Change::RemoveCluster(id) => {
                Kind::RemoveCluster(proto::RemoveCluster { id: id.0.clone() })
            }
            Change::AddBackend(b) => Kind::AddBackend(b.into()),
            Change::UpdateBackend(b) => Kind::UpdateBackend(b.into()),
            Change::RemoveBackend { key, drain_timeout } => {
                Kind::RemoveBackend(proto::RemoveBackend {
                    cluster_id: key.cluster.0.clone(),
                    id: key.id.0.clone(),
                    drain_timeout_ms: to_ms(*drain_timeout),
                })
            }
            Change::AddFrontend(f) => Kind::AddFrontend(f.into()),
            Change::UpdateFrontend(f) => Kind::UpdateFrontend(f.into()),
            Change::RemoveFrontend(f) => Kind::RemoveFrontend(f.into()),
            Change::AddCertificate(c) => Kind::AddCertificate(c.as_ref().into()),
            Change::ReplaceCertificate { old, new } => {
                Kind::ReplaceCertificate(proto::ReplaceCertificate {
                    old_fingerprint: old.to_hex(),
                    new_certificate: Some(new.as_ref().into()),
                })
            }
            Change::RemoveCertificate(fp) => Kind::RemoveCertificate(proto::RemoveCertificate {
                fingerprint: fp.to_hex(),
            }),
        }
    }
}

impl From<&Request> for proto::Request {
    fn from(r: &Request) -> Self {
        use proto::request::Kind;
        let kind = match &r.command {
            Command::Change(c) => c.into(),
            Command::QueryState => Kind::QueryState(proto::QueryState {
                include_private_keys: r.private_keys == PrivateKeys::Included,
            }),
            Command::QueryMetrics => Kind::QueryMetrics(proto::QueryMetrics {}),
            Command::Status => Kind::Status(proto::Status {}),
            Command::SaveState(p) => Kind::SaveState(proto::SaveState {
                path: p.to_string_lossy().into_owned(),
            }),
            Command::LoadState(p) => Kind::LoadState(proto::LoadState {
                path: p.to_string_lossy().into_owned(),
            }),
            Command::SoftStop => Kind::SoftStop(proto::SoftStop {}),
            Command::HardStop => Kind::HardStop(proto::HardStop {}),
            Command::UpgradeMain => Kind::UpgradeMain(proto::UpgradeMain {}),
            Command::UpgradeWorker(id) => {
                Kind::UpgradeWorker(proto::UpgradeWorker { worker_id: *id })
            }
            Command::SubscribeEvents { from_sequence } => {
                Kind::SubscribeEvents(proto::SubscribeEvents {
                    from_sequence: *from_sequence,
                })
            }
        };
        proto::Request {
            id: r.id.clone(),
            expected_version: r.expected_version,
            kind: Some(kind),
        }
    }
}

// ---- responses -------------------------------------------------------------------------------

impl proto::Response {
    /// A final success.
    pub fn ok(id: &str, state_version: u64) -> Self {
        Self::with_status(id, proto::ResponseStatus::Ok, String::new(), state_version)
    }

    /// A final failure: nothing changed, `message` says why.
    pub fn failure(id: &str, message: impl Into<String>, state_version: u64) -> Self {
        Self::with_status(
            id,
            proto::ResponseStatus::Failure,
            message.into(),
            state_version,
        )
    }

    /// An intermediate answer: more follow.
    pub fn processing(id: &str, message: impl Into<String>, state_version: u64) -> Self {
        Self::with_status(
            id,
            proto::ResponseStatus::Processing,
            message.into(),
            state_version,
        )
    }

    fn with_status(
        id: &str,
        status: proto::ResponseStatus,
        message: String,
        state_version: u64,
    ) -> Self {
        proto::Response {
            id: id.to_owned(),
            status: status as i32,
            message,
            state_version,
            content: None,
        }
    }

    pub fn with_content(mut self, content: proto::response::Content) -> Self {
        self.content = Some(content);
        self
    }

    /// Whether this answer is the last one for its request.
    pub fn is_final(&self) -> bool {
        self.status() != proto::ResponseStatus::Processing
    }
}
