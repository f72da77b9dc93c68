//! The resources a proxy holds, as domain types with their identities.
//!
//! Each resource type here is what the State stores and what a diff compares. Identities follow
//! DESIGN.md's table: a listener is its address, a cluster its id, a backend its
//! (cluster, id), a certificate the SHA-256 of its leaf, and a frontend the whole route.
//! Values are normalised on construction (hostnames lowercased, default weights filled in)
//! so that two spellings of the same route compare equal.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cert::Certificate;

/// Weight a backend gets when none is given.
pub const DEFAULT_WEIGHT: u32 = 100;

/// A cluster's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub String);

/// A backend's id, unique within its cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub String);

/// A backend's identity: (cluster, id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendKey {
    pub cluster: ClusterId,
    pub id: BackendId,
}

/// A certificate's identity: the SHA-256 of its leaf certificate's DER.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.id)
    }
}

impl Fingerprint {
    /// Parses the 64-character hex form used on the wire and in files.
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        let bytes = hex::decode(s.trim()).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Fingerprint(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
        }
    }

    /// Whether frontends on this protocol route by hostname and path.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TLS protocol version an https listener may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }

    pub fn parse(s: &str) -> Option<TlsVersion> {
        match s.trim().trim_start_matches("TLS").trim_start_matches("tls") {
            "1.2" | "v1.2" => Some(TlsVersion::Tls12),
            "1.3" | "v1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

/// A TLS cipher suite an https listener may offer: the AEAD, ECDHE suites of Mozilla's
/// *intermediate* profile that rustls implements. Spelled by their IANA names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsCipherSuite {
    Tls13Aes128GcmSha256,
    Tls13Aes256GcmSha384,
    Tls13Chacha20Poly1305Sha256,
    EcdheEcdsaAes128GcmSha256,
    EcdheRsaAes128GcmSha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheRsaAes256GcmSha384,
    EcdheEcdsaChacha20Poly1305Sha256,
    EcdheRsaChacha20Poly1305Sha256,
}

impl TlsCipherSuite {
    /// Every suite, in the intermediate profile's order of preference.
    pub const ALL: [TlsCipherSuite; 9] = [
        TlsCipherSuite::Tls13Aes128GcmSha256,
        TlsCipherSuite::Tls13Aes256GcmSha384,
        TlsCipherSuite::Tls13Chacha20Poly1305Sha256,
        TlsCipherSuite::EcdheEcdsaAes128GcmSha256,
        TlsCipherSuite::EcdheRsaAes128GcmSha256,
        TlsCipherSuite::EcdheEcdsaAes256GcmSha384,
        TlsCipherSuite::EcdheRsaAes256GcmSha384,
        TlsCipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
        TlsCipherSuite::EcdheRsaChacha20Poly1305Sha256,
    ];

    /// The IANA name.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsCipherSuite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            TlsCipherSuite::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            TlsCipherSuite::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
            TlsCipherSuite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            TlsCipherSuite::EcdheRsaAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            TlsCipherSuite::EcdheEcdsaAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            TlsCipherSuite::EcdheRsaAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            TlsCipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            }
            TlsCipherSuite::EcdheRsaChacha20Poly1305Sha256 => {
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
            }
        }
    }

    /// An IANA name, in any case.
    pub fn parse(s: &str) -> Option<TlsCipherSuite> {
        let s = s.trim();
        TlsCipherSuite::ALL
            .into_iter()
            .find(|suite| suite.as_str().eq_ignore_ascii_case(s))
    }

    /// The protocol version the suite belongs to.
    pub fn version(self) -> TlsVersion {
        match self {
            TlsCipherSuite::Tls13Aes128GcmSha256
            | TlsCipherSuite::Tls13Aes256GcmSha384
            | TlsCipherSuite::Tls13Chacha20Poly1305Sha256 => TlsVersion::Tls13,
            _ => TlsVersion::Tls12,
        }
    }
}

/// Why a listener's TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSettingsError {
    #[error("only https listeners take {0} (this one is {1})")]
    NotHttps(&'static str, Protocol),
    #[error("TLS {0} is accepted but none of the listed cipher_suites is a TLS {0} suite")]
    NoSuiteForVersion(&'static str),
}

/// Settings of a listener that can change in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Idle time allowed between requests on a keep-alive connection.
    pub front_timeout: Option<Duration>,
    /// Idle time allowed on a byte pipe (a WebSocket after its `101`, a TCP listener's
    /// connection), apart from the keep-alive timeout: tunnels are often quiet for minutes.
    pub tunnel_timeout: Option<Duration>,
    /// Time allowed for a whole request head to arrive (408 after it).
    pub request_timeout: Option<Duration>,
    /// Largest request body accepted (413 over it); `None` is unlimited.
    pub max_request_body: Option<u64>,
    /// Body of the 404 answer, replacing the default.
    pub answer_404: Option<String>,
    /// Body of the 503 answer, replacing the default.
    pub answer_503: Option<String>,
    /// TLS versions accepted on an https listener; empty means 1.2 and 1.3.
    pub tls_versions: Vec<TlsVersion>,
    /// Cipher suites offered on an https listener; empty means all of [`TlsCipherSuite::ALL`].
    pub cipher_suites: Vec<TlsCipherSuite>,
    /// The certificate shown to clients that send no SNI. A reference by fingerprint that the
    /// state does not enforce (the reconciler adds listeners before certificates): while the
    /// state holds no such certificate, those clients get `unrecognized_name`.
    pub default_certificate: Option<Fingerprint>,
    /// Keep request fields whose names hold `_` (dropped by default, as nginx drops them).
    /// Names that spell a framing, routing or forwarding field with `_` for `-` are dropped
    /// whatever this says.
    pub allow_underscores_in_headers: bool,
    /// Most connections one client address may hold at once, in each worker; `None` is
    /// unlimited.
    pub max_connections_per_ip: Option<u32>,
    /// Requests served on one connection, the last answered with `Connection: close`; `None`
    /// is the worker's default (1000, as nginx).
    pub max_requests_per_connection: Option<u32>,
    /// Time allowed for a whole request body to arrive (408, or a close once the answer
    /// began); `None` is no limit beyond the idle timeouts.
    pub request_body_timeout: Option<Duration>,
    /// Time a client has to take all the response bytes waiting for it, each time some are;
    /// slower readers are closed. `None` is the worker's default (60 s).
    pub send_timeout: Option<Duration>,
    /// A request field (`X-Request-Id`, say) that Weir sets to the request's id, the access
    /// log's `request_id`, on every request it forwards, replacing any the client sent. `None`
    /// (the default) sends no id.
    pub request_id_header: Option<String>,
}

/// Why a listener's `request_id_header` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdHeaderError {
    #[error("only http and https listeners take request_id_header (this one is {0})")]
    NotHttp(Protocol),
    #[error("request_id_header {0:?} is not a field name (letters, digits and !#$%&'*+-.^_`|~)")]
    NotAName(String),
    #[error(
        "request_id_header {0:?} names a field that frames, routes or forwards the request: \
         pick another name, such as X-Request-Id"
    )]
    Reserved(String),
}

/// Fields a request id must not replace: they frame or route the request, handle its
/// connection, or carry the forwarding information Weir writes itself.
const RESERVED_FIELDS: [&str; 15] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-host",
    "forwarded",
    "via",
];

/// Whether `name` can carry a request id: a field name (RFC 9110 5.1: a token) that is not
/// one Weir reads or writes for its own purposes (`_` counts as `-`, as CGI servers read them).
pub fn check_request_id_header(name: &str) -> Result<(), RequestIdHeaderError> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err(RequestIdHeaderError::NotAName(name.to_owned()));
    }
    let spelled = name.to_ascii_lowercase().replace('_', "-");
    if RESERVED_FIELDS.contains(&spelled.as_str()) {
        return Err(RequestIdHeaderError::Reserved(name.to_owned()));
    }
    Ok(())
}

impl ListenerSettings {
    /// Whether the TLS settings fit a listener of `protocol`: TLS settings only on https, and
    /// every accepted version keeps at least one of the listed suites.
    pub fn check_tls(&self, protocol: Protocol) -> Result<(), TlsSettingsError> {
        if protocol != Protocol::Https {
            let named = [
                (!self.tls_versions.is_empty(), "tls_versions"),
                (!self.cipher_suites.is_empty(), "cipher_suites"),
                (self.default_certificate.is_some(), "default_certificate"),
            ];
            if let Some((_, name)) = named.iter().find(|(set, _)| *set) {
                return Err(TlsSettingsError::NotHttps(name, protocol));
            }
            return Ok(());
        }
        if self.cipher_suites.is_empty() {
            return Ok(());
        }
        for version in self.accepted_tls_versions() {
            if !self.cipher_suites.iter().any(|s| s.version() == version) {
                return Err(TlsSettingsError::NoSuiteForVersion(version.as_str()));
            }
        }
        Ok(())
    }

    /// Whether the request id field fits a listener of `protocol`: only where requests are
    /// read, and a name [`check_request_id_header`] accepts.
    pub fn check_request_id_header(&self, protocol: Protocol) -> Result<(), RequestIdHeaderError> {
        let Some(name) = &self.request_id_header else {
            return Ok(());
        };
        if protocol == Protocol::Tcp {
            return Err(RequestIdHeaderError::NotHttp(protocol));
        }
        check_request_id_header(name)
    }

    /// The versions accepted: the listed ones, or both when none is listed.
    pub fn accepted_tls_versions(&self) -> Vec<TlsVersion> {
        if self.tls_versions.is_empty() {
            vec![TlsVersion::Tls12, TlsVersion::Tls13]
        } else {
            let mut versions = self.tls_versions.clone();
            versions.sort();
            versions.dedup();
            versions
        }
    }
}

/// A listening address. Identity: `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub protocol: Protocol,
    /// The alias desired-state files use for it; defaults to the address.
    pub name: String,
    pub settings: ListenerSettings,
    /// The team whose `weir apply --owner` last set it (see [`Owner`]).
    pub owner: Option<Owner>,
}

/// How a cluster spreads requests over its backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    Random,
    LeastConnections,
    PowerOfTwo,
}

impl LoadBalancing {
    pub const ALL: [LoadBalancing; 4] = [
        LoadBalancing::RoundRobin,
        LoadBalancing::Random,
        LoadBalancing::LeastConnections,
        LoadBalancing::PowerOfTwo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancing::RoundRobin => "round_robin",
            LoadBalancing::Random => "random",
            LoadBalancing::LeastConnections => "least_connections",
            LoadBalancing::PowerOfTwo => "power_of_two",
        }
    }

    pub fn parse(s: &str) -> Option<LoadBalancing> {
        LoadBalancing::ALL.into_iter().find(|lb| lb.as_str() == s)
    }
}

/// An active HTTP health check of a cluster's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl HealthCheck {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_HEALTHY: u32 = 2;
    pub const DEFAULT_UNHEALTHY: u32 = 3;
}

/// A group of backends that frontends route to. Identity: `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub id: ClusterId,
    pub load_balancing: LoadBalancing,
    pub health_check: Option<HealthCheck>,
    pub connect_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub owner: Option<Owner>,
}

impl Cluster {
    /// A cluster with every setting at its default.
    pub fn new(id: &str) -> Cluster {
        Cluster {
            id: ClusterId(id.to_owned()),
            load_balancing: LoadBalancing::default(),
            health_check: None,
            connect_timeout: None,
            response_timeout: None,
            owner: None,
        }
    }
}

/// A server a cluster sends traffic to. Identity: (`cluster`, `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub key: BackendKey,
    pub address: SocketAddr,
    pub weight: u32,
    /// A backup backend gets traffic only when no primary backend of its cluster is up.
    pub backup: bool,
    pub owner: Option<Owner>,
}

/// A route from a listener to a cluster. The whole value is the identity, so a frontend is
/// never changed in place: a new one is added, then the old one removed.
///
/// On http/https listeners `hostname` is `Some` (exact, or `*.example.com`) and `path` is a
/// prefix starting with `/`. On tcp listeners `hostname` is `None` and `path` is `/`.
///
/// The owner is the one field outside the identity: `Eq`, `Ord` and `Hash` ignore it, so a
/// frontend keeps its place (and its add sequence) when only its owner changes.
#[derive(Debug, Clone)]
pub struct Frontend {
    pub listener: SocketAddr,
    pub hostname: Option<String>,
    pub path: String,
    pub cluster: ClusterId,
    pub certificate: Option<Fingerprint>,
    /// Part of the identity like every other field: changing an option is a new frontend
    /// added, then the old one removed (the newest wins meanwhile).
    pub options: FrontendOptions,
    /// Not part of the identity (see the type's docs).
    pub owner: Option<Owner>,
}

impl Frontend {
    /// The fields that make the identity, in the order frontends sort by.
    #[allow(clippy::type_complexity)]
    fn identity(
        &self,
    ) -> (
        &SocketAddr,
        &Option<String>,
        &String,
        &ClusterId,
        &Option<Fingerprint>,
        &FrontendOptions,
    ) {
        (
            &self.listener,
            &self.hostname,
            &self.path,
            &self.cluster,
            &self.certificate,
            &self.options,
        )
    }
}

impl PartialEq for Frontend {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Frontend {}

impl PartialOrd for Frontend {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frontend {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl std::hash::Hash for Frontend {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// The team a resource belongs to: `weir apply --owner NAME` records it on every resource it
/// creates or updates, and a plan with an owner touches only that owner's resources. Not part
/// of any identity; on the wire an empty string means none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(pub String);

impl Owner {
    /// The owner an empty-or-not wire string names.
    pub fn from_wire(s: &str) -> Option<Owner> {
        (!s.is_empty()).then(|| Owner(s.to_owned()))
    }

    /// The wire string of an optional owner: empty for none.
    pub fn to_wire(owner: &Option<Owner>) -> String {
        owner.as_ref().map(|o| o.0.clone()).unwrap_or_default()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an HTTP(S) frontend answers besides routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendOptions {
    /// On an http listener: answer `301` to `https://host/path?query` instead of routing.
    pub redirect_https: bool,
    /// On an https listener: the `Strict-Transport-Security` value added to answers.
    pub hsts: Option<String>,
}

impl FrontendOptions {
    pub fn is_default(&self) -> bool {
        *self == FrontendOptions::default()
    }

    /// Whether these options fit a frontend on a listener of `protocol`.
    pub fn check(&self, protocol: Protocol) -> Result<(), &'static str> {
        if self.redirect_https && protocol != Protocol::Http {
            return Err(
                "redirect_https is for http listeners (it sends plain-HTTP clients to https)",
            );
        }
        if self.hsts.is_some() && protocol != Protocol::Https {
            return Err("hsts is for https listeners (browsers ignore it over plain HTTP)");
        }
        Ok(())
    }
}

/// Checks a `Strict-Transport-Security` value: a `max-age=<seconds>` directive, optionally
/// `includeSubDomains` and `preload`, separated by `;` (RFC 6797 6.1).
pub fn normalize_hsts(raw: &str) -> Result<String, RouteError> {
    let bad = |why| RouteError::BadHsts(raw.to_owned(), why);
    let value = raw.trim();
    if value
        .bytes()
        .any(|b| !(b == b' ' || b == b'\t' || b.is_ascii_graphic()))
    {
        return Err(bad("only visible ASCII characters"));
    }
    let mut max_age = false;
    for directive in value.split(';').map(str::trim) {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("max-age") {
            if max_age {
                return Err(bad("max-age given twice"));
            }
            if !arg.is_some_and(|a| {
                !a.is_empty() && a.len() <= 19 && a.bytes().all(|b| b.is_ascii_digit())
            }) {
                return Err(bad("max-age needs a number of seconds"));
            }
            max_age = true;
        } else if !(name.eq_ignore_ascii_case("includeSubDomains")
            || name.eq_ignore_ascii_case("preload"))
            || arg.is_some()
        {
            return Err(bad(
                "directives are max-age=<seconds>, includeSubDomains, preload",
            ));
        }
    }
    if !max_age {
        return Err(bad("max-age=<seconds> is required"));
    }
    Ok(value.to_owned())
}

/// Why a hostname or path cannot be used in a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("hostname {0:?} is not a valid DNS name (letters, digits, '-', '.', optionally starting with '*.')")]
    BadHostname(String),
    #[error("path {0:?} must start with '/' and hold no spaces or control characters")]
    BadPath(String),
    /// Requests are routed on their normalised path (no query, no dot segments, no `//`,
    /// unreserved characters decoded), which a route like this could never equal.
    #[error(
        "path {0:?} can never match: requests are routed on their normalised path, which has {1}"
    )]
    UnmatchablePath(String, &'static str),
    #[error("hsts {0:?} is not a Strict-Transport-Security value: {1}")]
    BadHsts(String, &'static str),
}

/// Normalises a route hostname: lowercase, no trailing dot, no port. `*.` is allowed only as
/// the first label.
pub fn normalize_hostname(raw: &str) -> Result<String, RouteError> {
    let bad = || RouteError::BadHostname(raw.to_owned());
    let host = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let rest = host.strip_prefix("*.").unwrap_or(&host);
    if rest.is_empty() || host.len() > 253 {
        return Err(bad());
    }
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(bad());
        }
    }
    Ok(host)
}

/// Normalises a route path prefix: empty means `/`.
pub fn normalize_path(raw: &str) -> Result<String, RouteError> {
    if raw.is_empty() {
        return Ok("/".to_owned());
    }
    if !raw.starts_with('/') || raw.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RouteError::BadPath(raw.to_owned()));
    }
    Ok(raw.to_owned())
}

/// [`normalize_path`] for a frontend's path prefix, which must also be one a request can
/// match (a health check's path, sent as it is, may hold a query).
pub fn normalize_route_path(raw: &str) -> Result<String, RouteError> {
    let path = normalize_path(raw)?;
    match unmatchable(&path) {
        Some(reason) => Err(RouteError::UnmatchablePath(path, reason)),
        None => Ok(path),
    }
}

/// What a normalised request path never holds that `path` does (see the engine's
/// `routing_path`).
fn unmatchable(path: &str) -> Option<&'static str> {
    if path.contains(['?', '#']) {
        return Some("no query or fragment");
    }
    if !path.is_ascii() {
        return Some("only ASCII (percent-encode other characters)");
    }
    if path.contains("//") {
        return Some("no empty segment ('//')");
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Some("no '.' or '..' segment");
    }
    let bytes = path.as_bytes();
    let encoded_unreserved = bytes.windows(3).any(|w| {
        let hex = |b: u8| char::from(b).to_digit(16);
        w[0] == b'%'
            && matches!((hex(w[1]), hex(w[2])), (Some(h), Some(l))
                if { let c = (h * 16 + l) as u8; c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') })
    });
    if encoded_unreserved {
        return Some("letters, digits and '-._~' decoded (write them plainly)");
    }
    let lowercase_hex = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1..].iter().any(|&b| matches!(b, b'a'..=b'f')));
    if lowercase_hex {
        return Some("percent-encoding in uppercase (write %C3%A9, not %c3%a9)");
    }
    None
}

/// Anything a state holds, named the way plans and errors name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceRef {
    Listener(SocketAddr),
    Cluster(ClusterId),
    Backend(BackendKey),
    Certificate(Fingerprint),
    Frontend(Box<Frontend>),
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceRef::Listener(a) => write!(f, "listener {a}"),
            ResourceRef::Cluster(c) => write!(f, "cluster {c}"),
            ResourceRef::Backend(b) => write!(f, "backend {b}"),
            ResourceRef::Certificate(fp) => write!(f, "certificate {fp}"),
            ResourceRef::Frontend(fr) => write!(f, "frontend {fr}"),
        }
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.hostname {
            Some(h) => write!(
                f,
                "{}/{}{} -> {}",
                self.listener, h, self.path, self.cluster
            )?,
            None => write!(f, "{} -> {}", self.listener, self.cluster)?,
        }
        // Frontends that differ only in their options must not read the same in a plan.
        if self.options.redirect_https {
            f.write_str(" (redirect to https)")?;
        }
        if let Some(hsts) = &self.options.hsts {
            write!(f, " (hsts {hsts:?})")?;
        }
        Ok(())
    }
}

/// A resource with its value, as carried by `Add*` requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Listener(Listener),
    Cluster(Cluster),
    Backend(Backend),
    Certificate(Box<Certificate>),
    Frontend(Frontend),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn route_paths_must_be_ones_a_normalised_request_can_match() {
        for ok in [
            "",
            "/",
            "/api",
            "/api/",
            "/.well-known/",
            "/a%2Fb",
            "/a..b/",
            "/~u",
        ] {
            assert!(normalize_route_path(ok).is_ok(), "{ok}");
        }
        for never in [
            "/%c3%a9",
            "/a//b",
            "/a/./b",
            "/a/..",
            "/a?b",
            "/a#b",
            "/caf\u{e9}",
            "/%7e",
            "/%41",
        ] {
            assert!(
                matches!(
                    normalize_route_path(never),
                    Err(RouteError::UnmatchablePath(..))
                ),
                "{never}"
            );
        }
        // A health check's path is sent as it is, query included.
        assert!(normalize_path("/healthz?full=1").is_ok());
    }
}
