//! Ownership scopes: what a plan made with `--owner NAME` may touch.
//!
//! A scoped plan is an ordinary plan against a *scoped desired state* ([`scoped_desired`]):
//! the live state with every resource of the owner (and, with `--adopt`, every un-owned one)
//! taken out, then the owner's desired resources put in, stamped with the owner. Every other
//! owner's resource is in the scoped desired state exactly as it is live, so the diff can never
//! remove or change it; a resource of the owner that the directory no longer names is absent,
//! so the diff removes it. Identity collisions and removals that would break another owner's
//! references are refused here, before any plan exists, naming the owners and resources.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use weir_schema::model::ResourceRef;
use weir_schema::{
    Backend, BackendKey, Cluster, ClusterId, Fingerprint, Frontend, Listener, Owner, State,
};

/// Who a plan is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub owner: Owner,
    /// Whether resources with no owner count as this owner's (removed when not desired,
    /// stamped when desired).
    pub adopt: bool,
}

/// Why a scoped plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("{resource} is owned by {holder}; {owner} cannot change it")]
    HeldByOther {
        resource: Box<ResourceRef>,
        holder: Owner,
        owner: Owner,
    },
    #[error("{resource} exists with no owner; give --adopt to let {owner} take it over")]
    Unowned {
        resource: Box<ResourceRef>,
        owner: Owner,
    },
    #[error("{owner} cannot remove {resource}: {user} (owned by {user_owner}) still uses it")]
    StillUsed {
        resource: Box<ResourceRef>,
        owner: Owner,
        user: Box<ResourceRef>,
        user_owner: String,
    },
}

impl Scope {
    /// Whether a resource with this owner is the scope's to change or remove.
    fn holds(&self, owner: &Option<Owner>) -> bool {
        match owner {
            Some(o) => *o == self.owner,
            None => self.adopt,
        }
    }

    /// Refuses touching a live resource the scope does not hold.
    fn claim(&self, resource: ResourceRef, live: &Option<Owner>) -> Result<(), OwnerError> {
        match live {
            _ if self.holds(live) => Ok(()),
            Some(holder) => Err(OwnerError::HeldByOther {
                resource: Box::new(resource),
                holder: holder.clone(),
                owner: self.owner.clone(),
            }),
            None => Err(OwnerError::Unowned {
                resource: Box::new(resource),
                owner: self.owner.clone(),
            }),
        }
    }
}

/// Desired resources that are another owner's live ones, referred to rather than touched.
#[derive(Default)]
struct References {
    listeners: BTreeSet<SocketAddr>,
    clusters: BTreeSet<ClusterId>,
    backends: BTreeSet<BackendKey>,
    certificates: BTreeSet<Fingerprint>,
    frontends: BTreeSet<Frontend>,
}

impl References {
    fn check(
        &self,
        same: bool,
        scope: &Scope,
        resource: ResourceRef,
        live: &Option<Owner>,
    ) -> Result<(), OwnerError> {
        if same {
            Ok(())
        } else {
            scope.claim(resource, live)
        }
    }
}

fn owner_name(owner: &Option<Owner>) -> String {
    owner
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "no one".to_owned())
}

/// The state a plan with `scope` moves `live` to: other owners' resources as they are live, the
/// scope's own resources as `desired` says, stamped with the owner.
pub fn scoped_desired(live: &State, desired: &State, scope: &Scope) -> Result<State, OwnerError> {
    let stamp = || Some(scope.owner.clone());
    // A desired resource that exists live under another owner (or none, without --adopt) is a
    // reference when its value is the same apart from the owner: it stays theirs. Any other
    // difference would change their resource, which is refused.
    let mut refs = References::default();
    for (addr, want) in &desired.listeners {
        if let Some(l) = live.listeners.get(addr).filter(|l| !scope.holds(&l.owner)) {
            let same = Listener {
                owner: l.owner.clone(),
                ..want.clone()
            } == *l;
            refs.check(same, scope, ResourceRef::Listener(*addr), &l.owner)?;
            refs.listeners.insert(*addr);
        }
    }
    for (id, want) in &desired.clusters {
        if let Some(c) = live.clusters.get(id).filter(|c| !scope.holds(&c.owner)) {
            let same = Cluster {
                owner: c.owner.clone(),
                ..want.clone()
            } == *c;
            refs.check(same, scope, ResourceRef::Cluster(id.clone()), &c.owner)?;
            refs.clusters.insert(id.clone());
        }
    }
    for (key, want) in &desired.backends {
        if let Some(b) = live.backends.get(key).filter(|b| !scope.holds(&b.owner)) {
            let same = Backend {
                owner: b.owner.clone(),
                ..want.clone()
            } == *b;
            refs.check(same, scope, ResourceRef::Backend(key.clone()), &b.owner)?;
            refs.backends.insert(key.clone());
        } else if let Some(c) = live
            .clusters
            .get(&key.cluster)
            .filter(|c| !scope.holds(&c.owner))
        {
            // A new backend in a cluster someone else holds would change where their routes
            // send traffic.
            scope.claim(ResourceRef::Cluster(key.cluster.clone()), &c.owner)?;
        }
    }
    // A certificate's fingerprint is its whole content (the name is only an alias), and a
    // frontend's identity its whole value: present live under another owner means shared.
    for fp in desired.certificates.keys() {
        if let Some(c) = live.certificates.get(fp) {
            if !scope.holds(&c.owner) {
                refs.certificates.insert(*fp);
            }
        }
    }
    for f in desired.frontends.keys() {
        if let Some((live_f, _)) = live.frontends.get_key_value(f) {
            if !scope.holds(&live_f.owner) {
                refs.frontends.insert(f.clone());
            }
        }
    }

    let mut out = live.clone();
    out.listeners.retain(|_, l| !scope.holds(&l.owner));
    out.clusters.retain(|_, c| !scope.holds(&c.owner));
    out.backends.retain(|_, b| !scope.holds(&b.owner));
    out.certificates.retain(|_, c| !scope.holds(&c.owner));
    out.frontends.retain(|f, _| !scope.holds(&f.owner));
    for (addr, l) in desired
        .listeners
        .iter()
        .filter(|(a, _)| !refs.listeners.contains(a))
    {
        let mut l = l.clone();
        l.owner = stamp();
        out.listeners.insert(*addr, l);
    }
    for (id, c) in desired
        .clusters
        .iter()
        .filter(|(i, _)| !refs.clusters.contains(i))
    {
        let mut c = c.clone();
        c.owner = stamp();
        out.clusters.insert(id.clone(), c);
    }
    for (key, b) in desired
        .backends
        .iter()
        .filter(|(k, _)| !refs.backends.contains(k))
    {
        let mut b = b.clone();
        b.owner = stamp();
        out.backends.insert(key.clone(), b);
    }
    for (fp, c) in desired
        .certificates
        .iter()
        .filter(|(f, _)| !refs.certificates.contains(f))
    {
        let mut c = c.clone();
        c.owner = stamp();
        out.certificates.insert(*fp, c);
    }
    // Desired frontends come after every kept one, in their desired order, as an apply adds
    // them: the newest matching route wins.
    let base = out.frontends.values().copied().max().map_or(0, |m| m + 1);
    let mut ordered: Vec<_> = desired
        .frontends
        .iter()
        .filter(|(f, _)| !refs.frontends.contains(f))
        .collect();
    ordered.sort_by_key(|(_, seq)| **seq);
    for (f, seq) in ordered {
        let mut f = f.clone();
        // Stamped like every other kind: an adopted frontend gets its owner in place
        // (`UpdateFrontend`), keeping its live position below.
        f.owner = stamp();
        let seq = match live.frontends.get(&f) {
            Some(live_seq) => *live_seq,
            None => base + seq,
        };
        out.frontends.insert(f, seq);
    }
    check_references(&out, scope)?;
    Ok(out)
}

/// Refuses a scoped state in which a kept resource of another owner refers to something the
/// scope removed (it is neither live under another owner nor in the directory).
fn check_references(out: &State, scope: &Scope) -> Result<(), OwnerError> {
    let gone = |resource: ResourceRef, user: ResourceRef, user_owner: &Option<Owner>| {
        OwnerError::StillUsed {
            resource: Box::new(resource),
            owner: scope.owner.clone(),
            user: Box::new(user),
            user_owner: owner_name(user_owner),
        }
    };
    let listener_missing = |a: &SocketAddr| !out.listeners.contains_key(a);
    for f in out.frontends.keys() {
        let user = || ResourceRef::Frontend(Box::new(f.clone()));
        if listener_missing(&f.listener) {
            return Err(gone(ResourceRef::Listener(f.listener), user(), &f.owner));
        }
        if !out.clusters.contains_key(&f.cluster) {
            return Err(gone(
                ResourceRef::Cluster(f.cluster.clone()),
                user(),
                &f.owner,
            ));
        }
        if let Some(fp) = f.certificate {
            if !out.certificates.contains_key(&fp) {
                return Err(gone(ResourceRef::Certificate(fp), user(), &f.owner));
            }
        }
    }
    for b in out.backends.values() {
        if !out.clusters.contains_key(&b.key.cluster) {
            return Err(gone(
                ResourceRef::Cluster(b.key.cluster.clone()),
                ResourceRef::Backend(b.key.clone()),
                &b.owner,
            ));
        }
    }
    Ok(())
}

/// The part of a state one owner holds (for `weir export --owner`), and the owner's backends
/// left out of it because another owner holds their cluster. Desired-state files hold a
/// backend inside its cluster, so such a backend cannot be written without that cluster; nor
/// can a plan by this owner keep it: [`scoped_desired`] refuses a backend in a cluster another
/// owner holds, and removes it when the owner's files leave it out.
pub fn owned_by(state: &State, owner: &Owner) -> (State, Vec<BackendKey>) {
    let mine = |o: &Option<Owner>| o.as_ref() == Some(owner);
    let mut out = state.clone();
    out.listeners.retain(|_, l| mine(&l.owner));
    out.clusters.retain(|_, c| mine(&c.owner));
    out.backends.retain(|_, b| mine(&b.owner));
    out.certificates.retain(|_, c| mine(&c.owner));
    out.frontends.retain(|f, _| mine(&f.owner));
    let stranded: Vec<BackendKey> = out
        .backends
        .keys()
        .filter(|k| !out.clusters.contains_key(&k.cluster))
        .cloned()
        .collect();
    for key in &stranded {
        out.backends.remove(key);
    }
    (out, stranded)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::{Change, FrontendOptions, Protocol};

    fn owner(name: &str) -> Option<Owner> {
        Some(Owner(name.to_owned()))
    }

    fn scope(name: &str, adopt: bool) -> Scope {
        Scope {
            owner: Owner(name.to_owned()),
            adopt,
        }
    }

    fn listener(port: u16, who: Option<Owner>) -> Listener {
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Listener {
            address,
            protocol: Protocol::Http,
            name: address.to_string(),
            settings: Default::default(),
            owner: who,
        }
    }

    fn cluster(id: &str, who: Option<Owner>) -> Cluster {
        Cluster {
            owner: who,
            ..Cluster::new(id)
        }
    }

    fn frontend(port: u16, host: &str, cluster: &str, who: Option<Owner>) -> Frontend {
        Frontend {
            listener: format!("127.0.0.1:{port}").parse().unwrap(),
            hostname: Some(host.to_owned()),
            path: "/".to_owned(),
            cluster: weir_schema::ClusterId(cluster.to_owned()),
            certificate: None,
            options: FrontendOptions::default(),
            owner: who,
        }
    }

    fn state(changes: Vec<Change>) -> State {
        let mut s = State::new();
        for c in &changes {
            s.apply_change(c, None).unwrap();
        }
        s
    }

    /// Platform owns the listener; team a owns its cluster and route.
    fn shared() -> State {
        state(vec![
            Change::AddListener(listener(8080, owner("platform"))),
            Change::AddCluster(cluster("a", owner("a"))),
            Change::AddFrontend(frontend(8080, "a.example", "a", owner("a"))),
        ])
    }

    #[test]
    fn other_owners_resources_stay_as_they_are_live() {
        let live = shared();
        // Team b's directory: only its own cluster and route (the listener is platform's).
        let desired = state(vec![
            Change::AddListener(listener(8080, None)),
            Change::AddCluster(cluster("b", None)),
            Change::AddFrontend(frontend(8080, "b.example", "b", None)),
        ]);
        let out = scoped_desired(&live, &desired, &scope("b", false)).unwrap();
        let l = &out.listeners[&listener(8080, None).address];
        assert_eq!(l.owner, owner("platform"), "a reference leaves the owner");
        assert_eq!(out.clusters.len(), 2, "team a's cluster stays");
        assert_eq!(out.frontends.len(), 2);
        // Changing the shared listener is refused, naming its owner.
        let mut changed = listener(8080, None);
        changed.name = "web".to_owned();
        let desired = state(vec![Change::AddListener(changed)]);
        let err = scoped_desired(&live, &desired, &scope("b", false)).unwrap_err();
        assert!(
            matches!(&err, OwnerError::HeldByOther { holder, .. } if holder.0 == "platform"),
            "{err}"
        );
        assert!(err.to_string().contains("listener 127.0.0.1:8080"), "{err}");
    }

    #[test]
    fn a_scope_removes_its_own_and_keeps_the_rest() {
        let live = shared();
        let out = scoped_desired(&live, &State::new(), &scope("a", false)).unwrap();
        assert!(out.clusters.is_empty());
        assert!(out.frontends.is_empty());
        assert_eq!(out.listeners.len(), 1, "platform's listener stays");
    }

    #[test]
    fn removing_what_another_owner_uses_is_refused_naming_both() {
        let live = shared();
        let err = scoped_desired(&live, &State::new(), &scope("platform", false)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("platform cannot remove listener 127.0.0.1:8080"),
            "{text}"
        );
        assert!(text.contains("owned by a"), "{text}");
    }

    #[test]
    fn a_backend_in_another_owners_cluster_is_refused() {
        let live = shared();
        let mut desired = state(vec![Change::AddCluster(cluster("a", None))]);
        let backend = weir_schema::Backend {
            key: weir_schema::BackendKey {
                cluster: weir_schema::ClusterId("a".to_owned()),
                id: weir_schema::BackendId("extra".to_owned()),
            },
            address: "127.0.0.1:9999".parse().unwrap(),
            weight: 100,
            backup: false,
            owner: None,
        };
        desired
            .apply_change(&Change::AddBackend(backend), None)
            .unwrap();
        let err = scoped_desired(&live, &desired, &scope("b", false)).unwrap_err();
        assert!(
            matches!(&err, OwnerError::HeldByOther { holder, .. } if holder.0 == "a"),
            "{err}"
        );
    }

    #[test]
    fn unowned_resources_need_adopt() {
        let live = state(vec![Change::AddCluster(cluster("old", None))]);
        let desired = state(vec![Change::AddCluster(cluster("old", None))]);
        let referred = scoped_desired(&live, &desired, &scope("a", false)).unwrap();
        assert_eq!(
            referred, live,
            "the same value is a reference, left un-owned"
        );
        let mut tuned = cluster("old", None);
        tuned.connect_timeout = Some(std::time::Duration::from_secs(1));
        let changed = state(vec![Change::AddCluster(tuned)]);
        let err = scoped_desired(&live, &changed, &scope("a", false)).unwrap_err();
        assert!(matches!(err, OwnerError::Unowned { .. }), "{err}");
        assert!(err.to_string().contains("--adopt"), "{err}");
        let kept = scoped_desired(&live, &State::new(), &scope("a", false)).unwrap();
        assert_eq!(kept.clusters.len(), 1, "never removed without --adopt");
        let adopted = scoped_desired(&live, &desired, &scope("a", true)).unwrap();
        assert_eq!(adopted.clusters[&cluster("old", None).id].owner, owner("a"));
        let removed = scoped_desired(&live, &State::new(), &scope("a", true)).unwrap();
        assert!(removed.clusters.is_empty());
    }

    #[test]
    fn an_adopted_frontend_is_stamped_and_then_held() {
        let live = state(vec![
            Change::AddListener(listener(8080, None)),
            Change::AddCluster(cluster("shop", None)),
            Change::AddFrontend(frontend(8080, "shop.example", "shop", None)),
        ]);
        let adopted = scoped_desired(&live, &live, &scope("platform", true)).unwrap();
        let route = frontend(8080, "shop.example", "shop", None);
        let (f, _) = adopted.frontends.get_key_value(&route).unwrap();
        assert_eq!(
            f.owner,
            owner("platform"),
            "adopted like the listener and cluster"
        );
        // Now platform's: another owner adopting un-owned resources leaves it, and neither
        // removes it nor takes it over.
        let other = scoped_desired(&adopted, &State::new(), &scope("b", true)).unwrap();
        let (f, _) = other.frontends.get_key_value(&route).unwrap();
        assert_eq!(f.owner, owner("platform"));
        let shared = state(vec![
            Change::AddListener(listener(8080, None)),
            Change::AddCluster(cluster("shop", None)),
            Change::AddFrontend(route.clone()),
        ]);
        let other = scoped_desired(&adopted, &shared, &scope("b", true)).unwrap();
        let (f, _) = other.frontends.get_key_value(&route).unwrap();
        assert_eq!(f.owner, owner("platform"), "named by b too: a reference");
    }

    #[test]
    fn owned_by_keeps_one_owners_resources() {
        let (only_a, stranded) = owned_by(&shared(), &Owner("a".to_owned()));
        assert_eq!(only_a.clusters.len(), 1);
        assert_eq!(only_a.frontends.len(), 1);
        assert!(only_a.listeners.is_empty());
        assert!(stranded.is_empty());
        // A's backend in platform's cluster (made by hand: no scoped plan makes one) cannot be
        // written without that cluster: it is named, not silently dropped.
        let mut live = shared();
        for change in [
            Change::AddCluster(cluster("shared", owner("platform"))),
            Change::AddBackend(weir_schema::Backend {
                key: weir_schema::BackendKey {
                    cluster: weir_schema::ClusterId("shared".to_owned()),
                    id: weir_schema::BackendId("a-1".to_owned()),
                },
                address: "127.0.0.1:9999".parse().unwrap(),
                weight: 100,
                backup: false,
                owner: owner("a"),
            }),
        ] {
            live.apply_change(&change, None).unwrap();
        }
        let (only_a, stranded) = owned_by(&live, &Owner("a".to_owned()));
        assert!(only_a.backends.is_empty(), "no backend without its cluster");
        assert_eq!(
            stranded.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["shared/a-1"]
        );
    }
}
