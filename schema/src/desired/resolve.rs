//! From parsed files to one [`State`]: names resolved, every rule of [`State::apply_change`]
//! enforced, every problem placed at the file, line and column that caused it.
//!
//! Resources are applied in dependency order (certificates, which a listener may name as its
//! default, then listeners, clusters with their backends, frontends), each kind over all files
//! in path order, so that a reference may
//! point into any file. Frontends are added in file order because the newest of two equal
//! routes wins. A resource that fails is remembered as broken, so references to it do not
//! each raise a second, misleading "unknown" error.

mod certificates;
mod field;

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::command::Change;
use crate::model::{
    check_request_id_header, normalize_hostname, normalize_hsts, normalize_path,
    normalize_route_path, Backend, BackendId, BackendKey, Cluster, ClusterId, Fingerprint,
    Frontend, FrontendOptions, HealthCheck, Listener, ListenerSettings, Protocol, DEFAULT_WEIGHT,
};
use crate::state::{State, StateError};

use self::field::{Field, Within};
use super::files::Format;
use super::mirror::{BackendDoc, ClusterDoc, FileDoc, FrontendDoc, ListenerDoc};
use super::positions::{Pos, Positions};
use super::{toml_file, yaml_file, Definition, DemoOrigin, LoadError, Location};

/// Certificates expiring sooner than this are warned about.
const EXPIRY_WARNING_SECS: i64 = 30 * 24 * 3600;

/// One parsed file.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub doc: FileDoc,
    format: Format,
    text: String,
    /// Where each field was written: read from `text` on the first error or warning placed in
    /// this file, since a file without any never needs it.
    positions: OnceCell<Positions>,
}

impl SourceFile {
    pub fn new(path: PathBuf, format: Format, text: String, doc: FileDoc) -> SourceFile {
        SourceFile {
            path,
            doc,
            format,
            text,
            positions: OnceCell::new(),
        }
    }

    fn positions(&self) -> &Positions {
        self.positions.get_or_init(|| match self.format {
            Format::Yaml => yaml_file::positions(&self.text),
            Format::Toml => toml_file::positions(&self.text),
        })
    }
}

/// Where a resource was defined, for "defined twice" errors; turned into a [`Location`] only
/// when one is reported.
#[derive(Debug, Clone, Copy)]
struct Place {
    file: usize,
    field: Field,
}

/// What the files say, or what is wrong with them.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub state: State,
    pub demo_origins: Vec<DemoOrigin>,
    pub listener_definitions: BTreeMap<SocketAddr, Definition>,
    pub warnings: Vec<String>,
    pub errors: Vec<LoadError>,
}

/// Builds the state. `complete` is false when some file did not parse: references to unknown
/// names are then not reported, since the missing file may define them.
pub(crate) fn resolve(
    files: &[SourceFile],
    complete: bool,
    now: i64,
    live: Option<&State>,
) -> Resolved {
    let mut r = Resolver {
        files,
        live,
        complete,
        now,
        state: State::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        demo_origins: Vec::new(),
        listener_names: BTreeMap::new(),
        listener_addresses: BTreeMap::new(),
        clusters: BTreeMap::new(),
        backends: BTreeMap::new(),
        certificate_names: BTreeMap::new(),
        certificate_fingerprints: BTreeMap::new(),
        frontends: BTreeMap::new(),
        broken: BTreeSet::new(),
    };
    for (f, file) in files.iter().enumerate() {
        for (i, c) in file.doc.certificates.iter().enumerate() {
            r.certificate(f, Field::item("certificates", i), c);
        }
    }
    for (f, file) in files.iter().enumerate() {
        for (i, l) in file.doc.listeners.iter().enumerate() {
            r.listener(f, Field::item("listeners", i), l);
        }
    }
    for (f, file) in files.iter().enumerate() {
        for (i, c) in file.doc.clusters.iter().enumerate() {
            r.cluster(f, Field::item("clusters", i), c);
        }
    }
    for (f, file) in files.iter().enumerate() {
        for (i, fr) in file.doc.frontends.iter().enumerate() {
            r.frontend(f, Field::item("frontends", i), fr);
        }
    }
    let listener_definitions = r
        .listener_addresses
        .iter()
        .map(|(address, place)| {
            let definition = Definition {
                file: files[place.file].path.clone(),
                field: place.field.to_string(),
            };
            (*address, definition)
        })
        .collect();
    Resolved {
        state: r.state,
        demo_origins: r.demo_origins,
        listener_definitions,
        warnings: r.warnings,
        errors: r.errors,
    }
}

/// A name that failed to define, by kind, so references to it stay quiet.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Broken {
    Listener(String),
    Cluster(String),
    Certificate(String),
}

/// What is known about a certificate by name.
#[derive(Debug)]
struct CertEntry {
    fingerprint: Fingerprint,
    place: Place,
}

struct Resolver<'a> {
    files: &'a [SourceFile],
    /// The proxy's state, when references may name its resources (`weir plan --owner`): a
    /// listener, cluster or certificate another team owns is used, not defined, by these files.
    live: Option<&'a State>,
    complete: bool,
    now: i64,
    state: State,
    errors: Vec<LoadError>,
    warnings: Vec<String>,
    demo_origins: Vec<DemoOrigin>,
    /// Listener name → (address, where defined).
    listener_names: BTreeMap<String, (SocketAddr, Place)>,
    listener_addresses: BTreeMap<SocketAddr, Place>,
    clusters: BTreeMap<ClusterId, Place>,
    backends: BTreeMap<BackendKey, Place>,
    certificate_names: BTreeMap<String, CertEntry>,
    /// Fingerprint → (name, where defined).
    certificate_fingerprints: BTreeMap<Fingerprint, (String, Place)>,
    frontends: BTreeMap<Frontend, Place>,
    broken: BTreeSet<Broken>,
}

impl Resolver<'_> {
    fn file(&self, f: usize) -> &SourceFile {
        &self.files[f]
    }

    /// Where `path` was written in file `f` (or its closest written parent).
    fn at(&self, f: usize, path: Field) -> Location {
        let file = self.file(f);
        let pos = file
            .positions()
            .value(&path.to_string())
            .unwrap_or(Pos { line: 1, column: 1 });
        Location {
            file: file.path.clone(),
            line: pos.line,
            column: pos.column,
        }
    }

    fn location(&self, place: Place) -> Location {
        self.at(place.file, place.field)
    }

    fn error(&mut self, f: usize, path: Field, message: impl Into<String>) {
        let location = self.at(f, path);
        self.errors.push(LoadError {
            location: Some(location),
            field: Some(path.to_string()),
            message: message.into(),
        });
    }

    fn warn(&mut self, f: usize, path: Field, message: &str) {
        let location = self.at(f, path);
        self.warnings.push(format!("{location}: {path}: {message}"));
    }

    /// Applies `change` through the State's rules; on refusal reports `field` (via `place`).
    fn apply(&mut self, change: &Change, f: usize, place: Field) -> bool {
        match self.state.apply_change(change, None) {
            Ok(()) => true,
            Err(e) => {
                self.error(f, place, state_message(&e));
                false
            }
        }
    }

    fn address(&mut self, f: usize, path: Field, raw: &str) -> Option<SocketAddr> {
        match raw.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    f,
                    path,
                    format!(
                        "{raw:?} is not a socket address (expected an IP address and a port, \
                         such as 127.0.0.1:8080)"
                    ),
                );
                None
            }
        }
    }

    // ---- listeners ---------------------------------------------------------------------------

    fn listener(&mut self, f: usize, path: Field, doc: &ListenerDoc) {
        let address = self.address(f, path.field("address"), &doc.address);
        let name = match (&doc.name, address) {
            (Some(n), _) => n.trim().to_owned(),
            (None, Some(a)) => a.to_string(),
            (None, None) => doc.address.trim().to_owned(),
        };
        if name.is_empty() {
            self.error(f, path.field("name"), "must not be empty (or leave it out)");
            return;
        }
        let protocol = Protocol::from(doc.protocol);
        // Field errors are reported and the resource still added without that setting, so
        // that everything after it is checked too (the load fails either way).
        if protocol != Protocol::Https {
            let tls_fields = [
                ("tls_versions", doc.tls_versions.is_some()),
                ("cipher_suites", doc.cipher_suites.is_some()),
                ("default_certificate", doc.default_certificate.is_some()),
            ];
            for (field, _) in tls_fields.into_iter().filter(|(_, set)| *set) {
                self.error(
                    f,
                    path.field(field),
                    format!("only https listeners take {field} (this one is {protocol})"),
                );
            }
        }
        if protocol == Protocol::Tcp {
            // A tcp listener pipes bytes: it never reads a request, so these would be ignored.
            let http_only = [
                ("front_timeout", doc.front_timeout.is_some()),
                ("request_timeout", doc.request_timeout.is_some()),
                ("max_request_body", doc.max_request_body.is_some()),
                ("answer_404", doc.answer_404.is_some()),
                ("answer_503", doc.answer_503.is_some()),
                (
                    "allow_underscores_in_headers",
                    doc.allow_underscores_in_headers.is_some(),
                ),
                (
                    "max_requests_per_connection",
                    doc.max_requests_per_connection.is_some(),
                ),
                ("request_body_timeout", doc.request_body_timeout.is_some()),
                ("send_timeout", doc.send_timeout.is_some()),
                ("request_id_header", doc.request_id_header.is_some()),
            ];
            for (field, _) in http_only.into_iter().filter(|(_, set)| *set) {
                self.error(
                    f,
                    path.field(field),
                    format!(
                        "only http and https listeners take {field} (a tcp listener never reads \
                         a request)"
                    ),
                );
            }
        }
        // A count of zero would refuse every connection or request: never what was meant.
        for (field, value) in [
            ("max_connections_per_ip", doc.max_connections_per_ip),
            (
                "max_requests_per_connection",
                doc.max_requests_per_connection,
            ),
        ] {
            if value == Some(0) {
                self.error(
                    f,
                    path.field(field),
                    "must be at least 1 (leave it out for the default)",
                );
            }
        }
        let request_id_header = match &doc.request_id_header {
            Some(name) if protocol != Protocol::Tcp => {
                let name = name.trim();
                match check_request_id_header(name) {
                    Ok(()) => Some(name.to_owned()),
                    Err(e) => {
                        self.error(f, path.field("request_id_header"), e.to_string());
                        None
                    }
                }
            }
            _ => None,
        };
        let count = |value: Option<u32>| value.filter(|n| *n > 0);
        // TLS settings on another protocol are reported above, then left out.
        let https = protocol == Protocol::Https;
        let default_certificate = match &doc.default_certificate {
            Some(name) if protocol == Protocol::Https => {
                self.find_certificate(f, path.field("default_certificate"), name)
            }
            _ => None,
        };
        let here = Place {
            file: f,
            field: path,
        };
        if let Some((_, first)) = self.listener_names.get(&name) {
            let first = self.location(*first);
            self.error(
                f,
                path,
                format!("listener {name:?} is defined twice: here and at {first}"),
            );
            return;
        }
        let Some(address) = address else {
            self.broken.insert(Broken::Listener(name));
            return;
        };
        if let Some(first) = self.listener_addresses.get(&address) {
            let first = self.location(*first);
            self.error(
                f,
                path.field("address"),
                format!("listener address {address} is defined twice: here and at {first}"),
            );
            return;
        }
        let listener = Listener {
            owner: None,
            address,
            protocol,
            name: name.clone(),
            settings: ListenerSettings {
                front_timeout: doc.front_timeout.map(|d| d.0),
                tunnel_timeout: doc.tunnel_timeout.map(|d| d.0),
                request_timeout: doc.request_timeout.map(|d| d.0),
                max_request_body: doc.max_request_body.map(|s| s.0),
                answer_404: doc.answer_404.clone(),
                answer_503: doc.answer_503.clone(),
                tls_versions: (https.then_some(&doc.tls_versions).into_iter().flatten())
                    .flatten()
                    .map(|v| v.0)
                    .collect(),
                cipher_suites: (https.then_some(&doc.cipher_suites).into_iter().flatten())
                    .flatten()
                    .map(|v| v.0)
                    .collect(),
                default_certificate,
                allow_underscores_in_headers: doc.allow_underscores_in_headers.unwrap_or(false),
                max_connections_per_ip: count(doc.max_connections_per_ip),
                max_requests_per_connection: count(doc.max_requests_per_connection),
                request_body_timeout: doc.request_body_timeout.map(|d| d.0),
                send_timeout: doc.send_timeout.map(|d| d.0),
                request_id_header,
            },
        };
        let place = match (protocol, &doc.cipher_suites) {
            (Protocol::Https, Some(_)) => path.field("cipher_suites"),
            _ => path.field("address"),
        };
        if self.apply(&Change::AddListener(listener), f, place) {
            self.listener_names.insert(name, (address, here));
            self.listener_addresses.insert(address, here);
        } else {
            self.broken.insert(Broken::Listener(name));
        }
    }

    // ---- clusters and backends ---------------------------------------------------------------

    fn cluster(&mut self, f: usize, path: Field, doc: &ClusterDoc) {
        let id = doc.id.trim();
        if id.is_empty() {
            self.error(f, path.field("id"), "must not be empty");
            return;
        }
        let id = ClusterId(id.to_owned());
        let here = Place {
            file: f,
            field: path,
        };
        if let Some(first) = self.clusters.get(&id) {
            let first = self.location(*first);
            self.error(
                f,
                path.field("id"),
                format!(
                    "cluster {id:?} is defined twice: here and at {first}",
                    id = id.0
                ),
            );
            // Its backends would be added to the first definition: skip them.
            return;
        }
        // A bad health check is reported; the cluster is still added so that its backends
        // and the frontends using it are checked too.
        let health_check = doc
            .health_check
            .as_ref()
            .and_then(|h| self.health_check(f, path.within(Within::HealthCheck), h));
        let cluster = Cluster {
            owner: None,
            id: id.clone(),
            load_balancing: doc.load_balancing.map(Into::into).unwrap_or_default(),
            health_check,
            connect_timeout: doc.connect_timeout.map(|d| d.0),
            response_timeout: doc.response_timeout.map(|d| d.0),
        };
        if !self.apply(&Change::AddCluster(cluster), f, path.field("id")) {
            self.broken.insert(Broken::Cluster(id.0));
            return;
        }
        self.clusters.insert(id.clone(), here);
        for (j, b) in doc.backends.iter().enumerate() {
            self.backend(f, path.within(Within::Backend(j)), &id, b);
        }
    }

    fn health_check(
        &mut self,
        f: usize,
        path: Field,
        doc: &super::mirror::HealthCheckDoc,
    ) -> Option<HealthCheck> {
        let mut ok = true;
        let hc_path = match normalize_path(&doc.path) {
            Ok(p) if !doc.path.is_empty() => Some(p),
            Ok(_) => {
                self.error(f, path.field("path"), "must not be empty (e.g. /healthz)");
                None
            }
            Err(e) => {
                self.error(f, path.field("path"), e.to_string());
                None
            }
        };
        let mut threshold = |field: &'static str, value: Option<u32>, default: u32| match value {
            Some(0) => {
                self.error(f, path.field(field), "must be at least 1");
                ok = false;
                default
            }
            Some(v) => v,
            None => default,
        };
        let healthy = threshold(
            "healthy_threshold",
            doc.healthy_threshold,
            HealthCheck::DEFAULT_HEALTHY,
        );
        let unhealthy = threshold(
            "unhealthy_threshold",
            doc.unhealthy_threshold,
            HealthCheck::DEFAULT_UNHEALTHY,
        );
        let interval = doc.interval.map_or(HealthCheck::DEFAULT_INTERVAL, |d| d.0);
        let timeout = doc.timeout.map_or(HealthCheck::DEFAULT_TIMEOUT, |d| d.0);
        let hc_path = hc_path?;
        ok.then_some(HealthCheck {
            path: hc_path,
            interval,
            timeout,
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
        })
    }

    fn backend(&mut self, f: usize, path: Field, cluster: &ClusterId, doc: &BackendDoc) {
        let id = doc.id.trim();
        if id.is_empty() {
            self.error(f, path.field("id"), "must not be empty");
            return;
        }
        let key = BackendKey {
            cluster: cluster.clone(),
            id: BackendId(id.to_owned()),
        };
        if let Some(first) = self.backends.get(&key) {
            let first = self.location(*first);
            self.error(
                f,
                path.field("id"),
                format!("backend {key} is defined twice: here and at {first}"),
            );
            return;
        }
        let here = Place {
            file: f,
            field: path,
        };
        self.backends.insert(key.clone(), here);
        let address = self.address(f, path.field("address"), &doc.address);
        if doc.weight == Some(0) {
            self.error(
                f,
                path.field("weight"),
                "must be at least 1 (to stop traffic, remove the backend or mark it backup)",
            );
        }
        let Some(address) = address else { return };
        let mut demo = doc.demo;
        if demo && !address.ip().is_loopback() {
            self.error(
                f,
                path.field("address"),
                format!(
                    "a demo backend is served on this machine: {address} must be a loopback \
                     address such as 127.0.0.1"
                ),
            );
            demo = false;
        }
        let backend = Backend {
            owner: None,
            key: key.clone(),
            address,
            weight: doc.weight.filter(|w| *w > 0).unwrap_or(DEFAULT_WEIGHT),
            backup: doc.backup,
        };
        if self.apply(&Change::AddBackend(backend), f, path) && demo {
            self.demo_origins.push(DemoOrigin {
                backend: key,
                address,
            });
        }
    }

    // ---- frontends ---------------------------------------------------------------------------

    fn frontend(&mut self, f: usize, path: Field, doc: &FrontendDoc) {
        let listener = self.find_listener(f, path.field("listener"), &doc.listener);
        let cluster = ClusterId(doc.cluster.trim().to_owned());
        let cluster_ok =
            self.state.clusters.contains_key(&cluster) || self.borrow_cluster(&cluster);
        if !cluster_ok
            && self.complete
            && !self.broken.contains(&Broken::Cluster(cluster.0.clone()))
        {
            let known = known("clusters", self.state.clusters.keys().map(|c| c.0.as_str()));
            self.error(
                f,
                path.field("cluster"),
                format!("unknown cluster {:?} ({known})", cluster.0),
            );
        }
        let hostname = match &doc.hostname {
            None => Some(None),
            Some(h) => match normalize_hostname(h) {
                Ok(h) => Some(Some(h)),
                Err(e) => {
                    self.error(f, path.field("hostname"), e.to_string());
                    None
                }
            },
        };
        let route_path = match normalize_route_path(doc.path.as_deref().unwrap_or("/")) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(f, path.field("path"), e.to_string());
                None
            }
        };
        let certificate = match &doc.certificate {
            None => Some(None),
            Some(name) => self
                .find_certificate(f, path.field("certificate"), name)
                .map(Some),
        };
        let hsts = match &doc.hsts {
            None => Some(None),
            Some(h) => match normalize_hsts(h) {
                Ok(h) => Some(Some(h)),
                Err(e) => {
                    self.error(f, path.field("hsts"), e.to_string());
                    None
                }
            },
        };
        let (Some(listener), true, Some(hostname), Some(route_path), Some(certificate), Some(hsts)) = (
            listener,
            cluster_ok,
            hostname,
            route_path,
            certificate,
            hsts,
        ) else {
            return;
        };
        let frontend = Frontend {
            owner: None,
            listener,
            hostname,
            path: route_path,
            cluster,
            certificate,
            options: FrontendOptions {
                redirect_https: doc.redirect_https.unwrap_or(false),
                hsts,
            },
        };
        if let Some(first) = self.frontends.get(&frontend) {
            let first = self.location(*first);
            self.error(
                f,
                path,
                format!("the same route is defined twice: here and at {first}"),
            );
            return;
        }
        let protocol = self.state.listeners.get(&listener).map(|l| l.protocol);
        // Point a protocol mismatch at the field that does not fit the listener.
        let place = match protocol {
            Some(Protocol::Tcp) if frontend.hostname.is_some() => path.field("hostname"),
            Some(Protocol::Tcp) if frontend.path != "/" => path.field("path"),
            Some(Protocol::Http | Protocol::Tcp) if frontend.certificate.is_some() => {
                path.field("certificate")
            }
            Some(Protocol::Https | Protocol::Tcp) if frontend.options.redirect_https => {
                path.field("redirect_https")
            }
            Some(Protocol::Http | Protocol::Tcp) if frontend.options.hsts.is_some() => {
                path.field("hsts")
            }
            _ => path,
        };
        if !self.apply(&Change::AddFrontend(frontend.clone()), f, place) {
            return;
        }
        if let (Some(Protocol::Https), Some(host), Some(fp)) =
            (protocol, &frontend.hostname, frontend.certificate)
        {
            if let Some(cert) = self.state.certificates.get(&fp) {
                if !cert.covers(host) {
                    let message = format!(
                        "hostname {host} is not covered by certificate {:?} (it covers: {})",
                        cert.name,
                        cert.dns_names.join(", ")
                    );
                    self.warn(f, path.field("hostname"), &message);
                }
            }
        }
        let here = Place {
            file: f,
            field: path,
        };
        self.frontends.insert(frontend, here);
    }

    /// A listener by name, or by address.
    fn find_listener(&mut self, f: usize, path: Field, raw: &str) -> Option<SocketAddr> {
        let name = raw.trim();
        if let Some((address, _)) = self.listener_names.get(name) {
            return Some(*address);
        }
        if let Ok(address) = name.parse::<SocketAddr>() {
            if self.listener_addresses.contains_key(&address) {
                return Some(address);
            }
        }
        if let Some(address) = self.borrow_listener(name) {
            return Some(address);
        }
        if self.complete && !self.broken.contains(&Broken::Listener(name.to_owned())) {
            let known = known("listeners", self.listener_names.keys().map(String::as_str));
            self.error(f, path, format!("unknown listener {name:?} ({known})"));
        }
        None
    }
}

impl Resolver<'_> {
    /// A live listener named `name` (or at that address), copied into the desired state as it
    /// is live, owner included, so an ownership scope sees a reference and leaves it alone.
    fn borrow_listener(&mut self, name: &str) -> Option<SocketAddr> {
        let live = self.live?;
        let by_address = name.parse::<SocketAddr>().ok();
        let l = live
            .listeners
            .values()
            .find(|l| l.name == name || Some(l.address) == by_address)?;
        if !self.state.listeners.contains_key(&l.address) {
            self.state
                .apply_change(&Change::AddListener(l.clone()), None)
                .ok()?;
        }
        Some(l.address)
    }

    /// A live cluster, copied as [`Resolver::borrow_listener`] copies a listener (without its
    /// backends: a frontend needs only the cluster).
    fn borrow_cluster(&mut self, id: &ClusterId) -> bool {
        let Some(c) = self.live.and_then(|live| live.clusters.get(id)) else {
            return false;
        };
        self.state
            .apply_change(&Change::AddCluster(c.clone()), None)
            .is_ok()
    }

    /// A live certificate by its alias or its hex fingerprint, copied likewise.
    pub(super) fn borrow_certificate(&mut self, name: &str) -> Option<Fingerprint> {
        let live = self.live?;
        let by_fingerprint = Fingerprint::from_hex(name);
        let c = live
            .certificates
            .values()
            .find(|c| c.name == name || Some(c.fingerprint) == by_fingerprint)?;
        if !self.state.certificates.contains_key(&c.fingerprint) {
            self.state
                .apply_change(&Change::AddCertificate(Box::new(c.clone())), None)
                .ok()?;
        }
        Some(c.fingerprint)
    }
}

/// How many known names an "unknown name" error lists before it cuts the list short.
const KNOWN_NAMES_SHOWN: usize = 10;

/// `known clusters: a, b`, or `no clusters are defined`, for "unknown name" errors.
fn known<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return format!("no {kind} are defined");
    }
    let shown = names[..names.len().min(KNOWN_NAMES_SHOWN)].join(", ");
    match names.len().checked_sub(KNOWN_NAMES_SHOWN) {
        Some(more) if more > 0 => format!("known {kind}: {shown} and {more} more"),
        _ => format!("known {kind}: {shown}"),
    }
}

/// The State's refusal, worded for a file (the file already says which resource).
fn state_message(e: &StateError) -> String {
    match e {
        StateError::FrontendMismatch { problem, .. } => (*problem).to_owned(),
        StateError::ListenerTls { error, .. } => error.to_string(),
        StateError::ListenerRequestIdHeader { error, .. } => error.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        assert_eq!(
            known("clusters", ["a", "b"].into_iter()),
            "known clusters: a, b"
        );
        assert_eq!(
            known("clusters", std::iter::empty()),
            "no clusters are defined"
        );
    }

    #[test]
    fn fields_are_spelled_as_paths() {
        let cluster = Field::item("clusters", 3);
        assert_eq!(cluster.to_string(), "clusters[3]");
        assert_eq!(cluster.field("id").to_string(), "clusters[3].id");
        assert_eq!(
            cluster
                .within(Within::Backend(0))
                .field("address")
                .to_string(),
            "clusters[3].backends[0].address"
        );
        assert_eq!(
            cluster
                .within(Within::HealthCheck)
                .field("healthy_threshold")
                .to_string(),
            "clusters[3].health_check.healthy_threshold"
        );
    }

    fn source(name: &str, text: &str) -> SourceFile {
        let doc = match yaml_file::parse(text) {
            Ok(doc) => doc,
            Err(e) => panic!("{name} does not parse: {e:?}"),
        };
        SourceFile::new(name.into(), Format::Yaml, text.to_owned(), doc)
    }

    #[test]
    fn positions_are_read_only_for_files_with_errors() {
        let good = source(
            "a.yaml",
            "clusters:\n  - id: shop\n    backends:\n      - id: one\n        address: 127.0.0.1:9001\n",
        );
        let bad = source("b.yaml", "clusters:\n  - id: shop\n");
        let files = [good, bad];
        let resolved = resolve(&files, true, 0, None);
        assert_eq!(resolved.errors.len(), 1, "{:?}", resolved.errors);
        // The duplicate names where the first definition is, so both files are read.
        assert_eq!(
            resolved.errors[0].to_string(),
            "b.yaml:2:9: clusters[0].id: cluster \"shop\" is defined twice: here and at a.yaml:2:5"
        );
        assert!(files.iter().all(|f| f.positions.get().is_some()));

        let files = [source("c.yaml", "clusters:\n  - id: shop\n")];
        let resolved = resolve(&files, true, 0, None);
        assert!(resolved.errors.is_empty(), "{:?}", resolved.errors);
        assert!(files[0].positions.get().is_none());
    }
}
