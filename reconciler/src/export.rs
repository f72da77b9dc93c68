//! `weir export`: a State written back as desired-state files, so an existing proxy can be
//! brought under Git.
//!
//! The files are built to round-trip: loading them gives a State with the same fingerprint,
//! so `weir plan` against the proxy they came from is empty. Everything the fingerprint covers
//! is written, defaults included where the loader would otherwise fill in a different one
//! (a health check's timings). Frontends are written in the order they were added, because
//! the newest of two equal routes wins and the loader adds them in file order.
//!
//! This module only builds the files (paths relative to the export directory, and their
//! contents); writing them, with a private key's file mode, is the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use weir_schema::model::{
    Backend, Cluster, ClusterId, Fingerprint, Frontend, Listener, LoadBalancing, Protocol,
    DEFAULT_WEIGHT,
};
use weir_schema::State;

/// The file format written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Toml => "toml",
        }
    }
}

/// How the resources are spread over files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Everything in `weir.<ext>`.
    None,
    /// Listeners and certificates in `weir.<ext>`; each cluster, its backends and the routes to
    /// it in `clusters/<id>.<ext>`.
    Cluster,
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    pub split: Split,
    /// Write the certificates' private keys (they must be in the state).
    pub with_keys: bool,
    /// Where the state came from, for the files' header (`proxy /run/weir/weir.sock`).
    pub source: String,
}

/// One file to write, relative to the export directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub contents: String,
    /// A private key: to be written readable by its owner only.
    pub secret: bool,
}

/// The files of an export, and the key files the user must supply before the files load.
#[derive(Debug, Clone)]
pub struct Export {
    pub files: Vec<File>,
    /// Key paths the files refer to but that were not written (no `with_keys`).
    pub missing_keys: Vec<PathBuf>,
}

/// Why a state cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "listeners {first} and {second} share the name {name:?}; desired-state files need one \
         name per listener"
    )]
    SharedListenerName {
        name: String,
        first: SocketAddr,
        second: SocketAddr,
    },
    #[error("certificate {name:?} came without its private key: the proxy did not send it")]
    MissingKey { name: String },
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("cannot write TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

// ---- the document written: the loader's mirror, in serialisable form ----------------------------

#[derive(Debug, Default, Serialize)]
struct Doc {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    listeners: Vec<ListenerDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<CertificateDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    clusters: Vec<ClusterDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    frontends: Vec<FrontendDoc>,
}

#[derive(Debug, Serialize)]
struct ListenerDoc {
    name: String,
    address: String,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    front_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_body: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_404: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_503: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tls_versions: Vec<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_underscores_in_headers: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_ip: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_requests_per_connection: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id_header: Option<String>,
}

#[derive(Debug, Serialize)]
struct ClusterDoc {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancing: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheckDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backends: Vec<BackendDoc>,
}

#[derive(Debug, Serialize)]
struct HealthCheckDoc {
    path: String,
    interval: String,
    timeout: String,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

#[derive(Debug, Serialize)]
struct BackendDoc {
    id: String,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    backup: bool,
}

#[derive(Debug, Serialize)]
struct FrontendDoc {
    listener: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
}

#[derive(Debug, Serialize)]
struct CertificateDoc {
    name: String,
    certificate: String,
    key: String,
}

/// A duration in the loader's spelling, in the largest unit that holds it exactly.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if (ms / per) * per == ms {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// A file name made of the safe characters of `name` (others become `_`); never empty, never
/// hidden (the loader skips hidden files).
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_start_matches('.');
    if stem.is_empty() {
        "unnamed".to_owned()
    } else {
        stem.to_owned()
    }
}

/// Gives every name a distinct file stem, adding `-2`, `-3`... where the safe spellings meet.
fn unique_stems<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut taken = BTreeSet::new();
    let mut stems = BTreeMap::new();
    for name in names {
        let base = file_stem(name);
        let mut stem = base.clone();
        let mut n = 2;
        while !taken.insert(stem.to_ascii_lowercase()) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        stems.insert(name.to_owned(), stem);
    }
    stems
}

/// The state as desired-state files.
pub fn export(state: &State, options: &Options) -> Result<Export, ExportError> {
    let mut names: BTreeMap<&str, SocketAddr> = BTreeMap::new();
    for (address, l) in &state.listeners {
        if let Some(first) = names.insert(&l.name, *address) {
            return Err(ExportError::SharedListenerName {
                name: l.name.clone(),
                first,
                second: *address,
            });
        }
    }

    // Certificate names are only aliases and may repeat in a live state (the loader needs
    // them unique): a repeated one gets its fingerprint's start added.
    let mut cert_names: BTreeMap<Fingerprint, String> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (fp, cert) in &state.certificates {
        let mut name = cert.name.trim().to_owned();
        if name.is_empty() || !seen.insert(name.clone()) {
            name = format!("{name}-{}", &fp.to_hex()[..12])
                .trim_start_matches('-')
                .to_owned();
            seen.insert(name.clone());
        }
        cert_names.insert(*fp, name);
    }
    let cert_stems = unique_stems(cert_names.values().map(String::as_str));

    let mut files = Vec::new();
    let mut missing_keys = Vec::new();
    let mut certificates = Vec::new();
    for (fp, cert) in &state.certificates {
        let name = &cert_names[fp];
        let stem = &cert_stems[name];
        let pem = PathBuf::from(format!("certs/{stem}.pem"));
        let key = PathBuf::from(format!("certs/{stem}.key"));
        files.push(File {
            path: pem.clone(),
            contents: cert.certificate_pem.clone(),
            secret: false,
        });
        if options.with_keys {
            let Some(key_pem) = cert
                .key_pem
                .as_ref()
                .filter(|k| !k.expose().trim().is_empty())
            else {
                return Err(ExportError::MissingKey { name: name.clone() });
            };
            files.push(File {
                path: key.clone(),
                contents: key_pem.expose().to_owned(),
                secret: true,
            });
        } else {
            missing_keys.push(key.clone());
        }
        certificates.push(CertificateDoc {
            name: name.clone(),
            certificate: pem.display().to_string(),
            key: key.display().to_string(),
        });
    }

    let listener_name = |address: &SocketAddr| {
        state
            .listeners
            .get(address)
            .map_or_else(|| address.to_string(), |l| l.name.clone())
    };
    let frontends = state.frontends_in_order();
    let frontend_doc = |f: &Frontend| FrontendDoc {
        listener: listener_name(&f.listener),
        hostname: f.hostname.clone(),
        path: (f.path != "/").then(|| f.path.clone()),
        cluster: f.cluster.0.clone(),
        certificate: f
            .certificate
            .map(|fp| cert_names.get(&fp).cloned().unwrap_or_else(|| fp.to_hex())),
    };

    let mut main = Doc {
        listeners: state.listeners.values().map(listener_doc).collect(),
        certificates,
        ..Doc::default()
    };
    let header = header(state, options);
    let ext = options.format.extension();
    match options.split {
        Split::None => {
            main.clusters = state
                .clusters
                .values()
                .map(|c| cluster_doc(c, state))
                .collect();
            main.frontends = frontends.iter().map(|f| frontend_doc(f)).collect();
        }
        Split::Cluster => {
            // Equal routes (same listener, hostname and path) to different clusters would be
            // reordered by being spread over files, and the newest wins: they stay together
            // in the main file, in the order they were added.
            let mut routes: BTreeMap<(SocketAddr, &Option<String>, &str), usize> = BTreeMap::new();
            for f in &frontends {
                *routes
                    .entry((f.listener, &f.hostname, f.path.as_str()))
                    .or_default() += 1;
            }
            let shared = |f: &Frontend| routes[&(f.listener, &f.hostname, f.path.as_str())] > 1;
            let mut by_cluster: BTreeMap<&ClusterId, Vec<FrontendDoc>> = BTreeMap::new();
            for f in frontends.iter().filter(|f| !shared(f)) {
                by_cluster
                    .entry(&f.cluster)
                    .or_default()
                    .push(frontend_doc(f));
            }
            let stems = unique_stems(state.clusters.keys().map(|c| c.0.as_str()));
            for cluster in state.clusters.values() {
                let doc = Doc {
                    clusters: vec![cluster_doc(cluster, state)],
                    frontends: by_cluster.remove(&cluster.id).unwrap_or_default(),
                    ..Doc::default()
                };
                files.push(File {
                    path: PathBuf::from(format!("clusters/{}.{ext}", stems[&cluster.id.0])),
                    contents: render(&header, &doc, options.format)?,
                    secret: false,
                });
            }
            main.frontends = frontends
                .iter()
                .filter(|f| shared(f) || !state.clusters.contains_key(&f.cluster))
                .map(|f| frontend_doc(f))
                .collect();
        }
    }
    let mut main_header = header;
    if !missing_keys.is_empty() {
        main_header.push_str(
            "#\n# The private keys were not exported (`weir export --with-keys` writes them).\n\
             # Put each certificate's key at the path its `key:` names before loading these files.\n",
        );
    }
    let main_empty = main.listeners.is_empty()
        && main.certificates.is_empty()
        && main.clusters.is_empty()
        && main.frontends.is_empty();
    if !main_empty || files.iter().all(|f| f.path.starts_with("certs")) {
        files.insert(
            0,
            File {
                path: PathBuf::from(format!("weir.{ext}")),
                contents: render(&main_header, &main, options.format)?,
                secret: false,
            },
        );
    }
    Ok(Export {
        files,
        missing_keys,
    })
}

fn header(state: &State, options: &Options) -> String {
    format!(
        "# Exported by `weir export` from {}.\n# State version {}, fingerprint {}.\n",
        options.source.replace('\n', " "),
        state.version,
        state.fingerprint()
    )
}

fn render(header: &str, doc: &Doc, format: Format) -> Result<String, ExportError> {
    let body = match format {
        Format::Yaml => serde_yaml::to_string(doc)?,
        Format::Toml => toml::to_string(doc)?,
    };
    // An empty document (a proxy with nothing in it) still loads as an empty state.
    let body = match body.trim() {
        "{}" | "" => String::new(),
        _ => body,
    };
    Ok(format!("{header}\n{body}"))
}

fn listener_doc(l: &Listener) -> ListenerDoc {
    let s = &l.settings;
    ListenerDoc {
        name: l.name.clone(),
        address: l.address.to_string(),
        protocol: l.protocol.as_str(),
        front_timeout: s.front_timeout.map(duration_text),
        tunnel_timeout: s.tunnel_timeout.map(duration_text),
        request_timeout: s.request_timeout.map(duration_text),
        max_request_body: s.max_request_body,
        answer_404: s.answer_404.clone(),
        answer_503: s.answer_503.clone(),
        tls_versions: if l.protocol == Protocol::Https {
            s.tls_versions.iter().map(|v| v.as_str()).collect()
        } else {
            Vec::new()
        },
        allow_underscores_in_headers: s.allow_underscores_in_headers,
        max_connections_per_ip: s.max_connections_per_ip,
        max_requests_per_connection: s.max_requests_per_connection,
        request_body_timeout: s.request_body_timeout.map(duration_text),
        send_timeout: s.send_timeout.map(duration_text),
        request_id_header: s.request_id_header.clone(),
    }
}

fn cluster_doc(c: &Cluster, state: &State) -> ClusterDoc {
    ClusterDoc {
        id: c.id.0.clone(),
        load_balancing: (c.load_balancing != LoadBalancing::RoundRobin)
            .then(|| c.load_balancing.as_str()),
        connect_timeout: c.connect_timeout.map(duration_text),
        response_timeout: c.response_timeout.map(duration_text),
        health_check: c.health_check.as_ref().map(|h| HealthCheckDoc {
            path: h.path.clone(),
            interval: duration_text(h.interval),
            timeout: duration_text(h.timeout),
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
        }),
        backends: state.backends_of(&c.id).map(backend_doc).collect(),
    }
}

fn backend_doc(b: &Backend) -> BackendDoc {
    BackendDoc {
        id: b.key.id.0.clone(),
        address: b.address.to_string(),
        weight: (b.weight != DEFAULT_WEIGHT).then_some(b.weight),
        backup: b.backup,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_largest_exact_unit() {
        assert_eq!(duration_text(Duration::from_secs(3600)), "1h");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(120)), "2m");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
    }

    /// Certificate names are aliases a live state may repeat; the files need them unique.
    #[test]
    fn repeated_certificate_names_get_distinct_names_and_files() {
        use weir_schema::{Certificate, Change};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let mut state = State::new();
        for file in ["a", "b"] {
            let pem = std::fs::read_to_string(format!("{dir}{file}.pem")).unwrap();
            let key = std::fs::read_to_string(format!("{dir}{file}.key")).unwrap();
            let cert = Certificate::from_pem("shop", &pem, &key).unwrap();
            state
                .apply_change(&Change::AddCertificate(Box::new(cert)), None)
                .unwrap();
        }
        let options = Options {
            format: Format::Yaml,
            split: Split::None,
            with_keys: true,
            source: "a test".into(),
        };
        let exported = export(&state, &options).unwrap();
        let paths: BTreeSet<String> = exported
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(paths.len(), 5, "{paths:?}");
        let second = state.certificates.keys().nth(1).unwrap().to_hex();
        let renamed = format!("shop-{}", &second[..12]);
        assert!(paths.contains("certs/shop.pem"), "{paths:?}");
        assert!(paths.contains(&format!("certs/{renamed}.key")), "{paths:?}");
        let main = &exported.files[0].contents;
        assert!(main.contains(&format!("name: {renamed}")), "{main}");
        assert!(exported.files.iter().filter(|f| f.secret).count() == 2);
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let stems = unique_stems(["a/b", "a_b", "..x", ""].into_iter());
        assert_eq!(stems["a/b"], "a_b");
        assert_eq!(stems["a_b"], "a_b-2");
        assert_eq!(stems["..x"], "x");
        assert_eq!(stems[""], "unnamed");
    }
}
