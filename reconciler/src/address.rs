//! Resource addresses: the names plans, targets and errors use for resources.
//!
//! An address is `<kind>.<name>`, Terraform's habit: `listener.web`, `cluster.shop`,
//! `backend.shop/blue-1`, `certificate.shop-2026` and
//! `frontend.web/shop.example.com/ -> shop`. Listener and certificate names are the aliases of
//! desired-state files (a listener's defaults to its address); a frontend is named by its
//! listener's alias, its hostname and path prefix, and, after ` -> `, the cluster it routes
//! to, so that two routes of the same hostname (blue and green during a switch) read apart.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use weir_schema::model::Resource;
use weir_schema::{Fingerprint, Frontend, State};

/// The five kinds of resource a state holds, in the order plans list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Listener,
    Cluster,
    Backend,
    Certificate,
    Frontend,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Listener,
        Kind::Cluster,
        Kind::Backend,
        Kind::Certificate,
        Kind::Frontend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Listener => "listener",
            Kind::Cluster => "cluster",
            Kind::Backend => "backend",
            Kind::Certificate => "certificate",
            Kind::Frontend => "frontend",
        }
    }

    /// The kind of a resource value.
    pub fn of(resource: &Resource) -> Kind {
        match resource {
            Resource::Listener(_) => Kind::Listener,
            Resource::Cluster(_) => Kind::Cluster,
            Resource::Backend(_) => Kind::Backend,
            Resource::Certificate(_) => Kind::Certificate,
            Resource::Frontend(_) => Kind::Frontend,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource's address, e.g. `backend.shop/blue-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub kind: Kind,
    pub name: String,
}

/// Why a `--target` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a resource address (expected listener.NAME, cluster.ID, backend.CLUSTER/ID, certificate.NAME or frontend.LISTENER/HOST/PATH)")]
pub struct AddressError(pub String);

impl Address {
    pub fn new(kind: Kind, name: impl Into<String>) -> Address {
        Address {
            kind,
            name: name.into(),
        }
    }

    /// Parses `kind.name`. The name is everything after the first dot, so hostnames and
    /// addresses with dots need no quoting.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let bad = || AddressError(text.to_owned());
        let (kind, name) = text.trim().split_once('.').ok_or_else(bad)?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        Ok(Address::new(kind, name))
    }

    /// Whether this address, used as a target, names `other`. A frontend target may leave out
    /// the ` -> cluster` part to name every route of that hostname and path; a listener target
    /// may use the socket address instead of the alias (`listener_address`).
    pub fn selects(&self, other: &Address, listener_address: Option<SocketAddr>) -> bool {
        if self.kind != other.kind {
            return false;
        }
        if self.name == other.name {
            return true;
        }
        match self.kind {
            Kind::Frontend => other
                .name
                .split_once(" -> ")
                .is_some_and(|(route, _)| route == self.name),
            Kind::Listener => listener_address.is_some_and(|a| a.to_string() == self.name),
            _ => false,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)
    }
}

/// The aliases of listeners and certificates, which states know only by address and
/// fingerprint. Built from the live and the desired state, the desired alias winning, so a
/// plan speaks the names of the files being applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub listeners: BTreeMap<SocketAddr, String>,
    pub certificates: BTreeMap<Fingerprint, String>,
}

impl Names {
    pub fn of(live: &State, desired: &State) -> Names {
        let mut names = Names::default();
        for state in [live, desired] {
            for (address, listener) in &state.listeners {
                names.listeners.insert(*address, listener.name.clone());
            }
            for (fp, cert) in &state.certificates {
                let name = if cert.name.is_empty() {
                    fp.to_hex()[..12].to_owned()
                } else {
                    cert.name.clone()
                };
                names.certificates.insert(*fp, name);
            }
        }
        names
    }

    pub fn listener(&self, address: SocketAddr) -> String {
        self.listeners
            .get(&address)
            .cloned()
            .unwrap_or_else(|| address.to_string())
    }

    pub fn certificate(&self, fp: Fingerprint) -> String {
        self.certificates
            .get(&fp)
            .cloned()
            .unwrap_or_else(|| fp.to_hex()[..12].to_owned())
    }

    /// The address of a frontend: `web/shop.example.com/ -> shop`, or `db -> pg` on tcp.
    pub fn frontend(&self, f: &Frontend) -> Address {
        let listener = self.listener(f.listener);
        let name = match &f.hostname {
            Some(host) => format!("{listener}/{host}{} -> {}", f.path, f.cluster),
            None => format!("{listener} -> {}", f.cluster),
        };
        Address::new(Kind::Frontend, name)
    }

    /// The address of any resource.
    pub fn address(&self, resource: &Resource) -> Address {
        match resource {
            Resource::Listener(l) => Address::new(Kind::Listener, l.name.clone()),
            Resource::Cluster(c) => Address::new(Kind::Cluster, c.id.0.clone()),
            Resource::Backend(b) => Address::new(Kind::Backend, b.key.to_string()),
            Resource::Certificate(c) => {
                Address::new(Kind::Certificate, self.certificate(c.fingerprint))
            }
            Resource::Frontend(f) => self.frontend(f),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_selects() {
        let target = Address::parse("frontend.web/shop.example.com/").unwrap();
        let blue = Address::new(Kind::Frontend, "web/shop.example.com/ -> blue");
        let other = Address::new(Kind::Frontend, "web/shop.example.com/api -> blue");
        assert!(target.selects(&blue, None));
        assert!(!target.selects(&other, None));
        assert_eq!(
            Address::parse("backend.shop/blue-1").unwrap().to_string(),
            "backend.shop/blue-1"
        );
        assert!(Address::parse("shop").is_err());
        assert!(Address::parse("widget.shop").is_err());
        assert!(Address::parse("cluster.").is_err());
        let by_socket = Address::parse("listener.127.0.0.1:8080").unwrap();
        let web = Address::new(Kind::Listener, "web");
        assert!(by_socket.selects(&web, Some("127.0.0.1:8080".parse().unwrap())));
    }
}
