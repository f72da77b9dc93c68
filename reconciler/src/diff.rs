//! The diff: what differs between a live and a desired state, per resource, by identity.
//!
//! One generic merge over two `BTreeMap<Id, T>` ([`keyed_diff`]) does the work for every
//! resource kind; what is particular to a kind is one comparison function saying whether two
//! values with the same identity are equal, differ in place, or must be replaced (DESIGN.md's
//! identity table). Both maps are sorted by identity, so the merge is linear and its output is
//! in a deterministic order: listeners, clusters, backends, certificates, frontends, each by
//! identity.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use weir_schema::model::Resource;
use weir_schema::{Backend, Certificate, Cluster, Frontend, Listener, State};

use crate::address::{Address, Names};

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// It is created.
    Add,
    /// It keeps its identity and changes a setting in place.
    Update,
    /// A setting that cannot change in place changed: it is removed and created again.
    Replace,
    /// It is removed (a backend is drained first).
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Remove => "remove",
        }
    }

    /// The Terraform-style symbol: `+`, `~`, `-/+`, `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Add => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Remove => "-",
        }
    }
}

/// One resource that differs, with its value before (live) and after (desired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    pub address: Address,
    pub action: Action,
    /// The live value; `None` for an add.
    pub before: Option<Resource>,
    /// The desired value; `None` for a remove.
    pub after: Option<Resource>,
}

/// How two values with the same identity compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    Same,
    InPlace,
    Replace,
}

/// One entry of a keyed diff, borrowing from both maps.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a, K, V> {
    Added(&'a K, &'a V),
    Changed {
        /// The live side's key.
        key: &'a K,
        /// The desired side's key: equal to `key` as an identity, but it may differ in what
        /// the identity leaves out (a frontend's owner).
        desired_key: &'a K,
        before: &'a V,
        after: &'a V,
        replace: bool,
    },
    Removed(&'a K, &'a V),
}

/// Merges two maps sorted by identity and yields what differs, in identity order. `compare`
/// decides, for a key present on both sides, whether the (key, value) pairs differ and how.
pub fn keyed_diff<'a, K: Ord, V>(
    live: &'a BTreeMap<K, V>,
    desired: &'a BTreeMap<K, V>,
    compare: impl Fn((&K, &V), (&K, &V)) -> Delta,
) -> Vec<Entry<'a, K, V>> {
    let mut out = Vec::new();
    let mut old = live.iter().peekable();
    let mut new = desired.iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                if let Some((k, v)) = old.next() {
                    out.push(Entry::Removed(k, v));
                }
            }
            Ordering::Greater => {
                if let Some((k, v)) = new.next() {
                    out.push(Entry::Added(k, v));
                }
            }
            Ordering::Equal => {
                if let (Some((key, before)), Some((desired_key, after))) = (old.next(), new.next())
                {
                    match compare((key, before), (desired_key, after)) {
                        Delta::Same => {}
                        delta => out.push(Entry::Changed {
                            key,
                            desired_key,
                            before,
                            after,
                            replace: delta == Delta::Replace,
                        }),
                    }
                }
            }
        }
    }
    out
}

// ---- the identity table, one comparison per kind ----------------------------------------------

/// A listener keeps its address; a protocol change needs a new listener.
fn compare_listener(a: &Listener, b: &Listener) -> Delta {
    if a == b {
        Delta::Same
    } else if a.protocol != b.protocol {
        Delta::Replace
    } else {
        Delta::InPlace
    }
}

/// Everything a cluster holds changes in place.
fn compare_cluster(a: &Cluster, b: &Cluster) -> Delta {
    if a == b {
        Delta::Same
    } else {
        Delta::InPlace
    }
}

/// Weight and backup flag change in place; a new address is a new backend.
fn compare_backend(a: &Backend, b: &Backend) -> Delta {
    if a == b {
        Delta::Same
    } else if a.address != b.address {
        Delta::Replace
    } else {
        Delta::InPlace
    }
}

/// A certificate is its whole identity (its name is an alias, not content); only its owner
/// changes in place, by replacing it with itself (`ReplaceCertificate` to the same fingerprint).
fn compare_certificate(a: &Certificate, b: &Certificate) -> Delta {
    if a.owner == b.owner {
        Delta::Same
    } else {
        Delta::InPlace
    }
}

/// A frontend's identity is its whole route; only its owner, which is not part of it, changes
/// in place (`UpdateFrontend`). The diff compares map keys, which carry the owner.
fn compare_frontend(a: &Frontend, b: &Frontend) -> Delta {
    if a.owner == b.owner {
        Delta::Same
    } else {
        Delta::InPlace
    }
}

/// A comparison of values as a comparison of (key, value) pairs, for the kinds whose key is
/// only an index into the value.
fn values<K, V>(compare: fn(&V, &V) -> Delta) -> impl Fn((&K, &V), (&K, &V)) -> Delta {
    move |(_, a), (_, b)| compare(a, b)
}

/// Turns the entries of one kind into [`ResourceChange`]s.
fn collect<'a, K: Ord, V>(
    out: &mut Vec<ResourceChange>,
    entries: Vec<Entry<'a, K, V>>,
    names: &Names,
    wrap: impl Fn(&'a K, &'a V) -> Resource,
) {
    for entry in entries {
        let (action, before, after) = match entry {
            Entry::Added(k, v) => (Action::Add, None, Some(wrap(k, v))),
            Entry::Removed(k, v) => (Action::Remove, Some(wrap(k, v)), None),
            Entry::Changed {
                key,
                desired_key,
                before,
                after,
                replace,
            } => (
                if replace {
                    Action::Replace
                } else {
                    Action::Update
                },
                Some(wrap(key, before)),
                Some(wrap(desired_key, after)),
            ),
        };
        let address = match (&after, &before) {
            (Some(r), _) | (None, Some(r)) => names.address(r),
            (None, None) => continue,
        };
        out.push(ResourceChange {
            address,
            action,
            before,
            after,
        });
    }
}

/// Every resource that differs between `live` and `desired`, typed by what happens to it, in
/// the order listeners, clusters, backends, certificates, frontends (each by identity).
pub fn diff(live: &State, desired: &State) -> Vec<ResourceChange> {
    let names = Names::of(live, desired);
    diff_with(live, desired, &names)
}

pub(crate) fn diff_with(live: &State, desired: &State, names: &Names) -> Vec<ResourceChange> {
    let mut out = Vec::new();
    collect(
        &mut out,
        keyed_diff(
            &live.listeners,
            &desired.listeners,
            values(compare_listener),
        ),
        names,
        |_, l| Resource::Listener(l.clone()),
    );
    collect(
        &mut out,
        keyed_diff(&live.clusters, &desired.clusters, values(compare_cluster)),
        names,
        |_, c| Resource::Cluster(c.clone()),
    );
    collect(
        &mut out,
        keyed_diff(&live.backends, &desired.backends, values(compare_backend)),
        names,
        |_, b| Resource::Backend(b.clone()),
    );
    collect(
        &mut out,
        keyed_diff(
            &live.certificates,
            &desired.certificates,
            values(compare_certificate),
        ),
        names,
        |_, c| Resource::Certificate(Box::new(c.clone())),
    );
    collect(
        &mut out,
        keyed_diff(&live.frontends, &desired.frontends, |(a, _), (b, _)| {
            compare_frontend(a, b)
        }),
        names,
        |f, _| Resource::Frontend(f.clone()),
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weir_schema::model::{BackendId, BackendKey, ClusterId, Frontend};
    use weir_schema::{Change, ListenerSettings, LoadBalancing, Protocol};

    fn listener(port: u16, protocol: Protocol) -> Listener {
        Listener {
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            protocol,
            name: format!("l{port}"),
            settings: ListenerSettings::default(),
            owner: None,
        }
    }

    fn backend(id: &str, port: u16) -> Backend {
        Backend {
            key: BackendKey {
                cluster: ClusterId("shop".into()),
                id: BackendId(id.into()),
            },
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            weight: 100,
            backup: false,
            owner: None,
        }
    }

    fn frontend(port: u16, host: &str) -> Frontend {
        Frontend {
            listener: format!("127.0.0.1:{port}").parse().unwrap(),
            hostname: Some(host.into()),
            path: "/".into(),
            cluster: ClusterId("shop".into()),
            certificate: None,
            options: Default::default(),
            owner: None,
        }
    }

    fn state(changes: Vec<Change>) -> State {
        let mut s = State::new();
        for c in changes {
            s.apply_change(&c, None).unwrap();
        }
        s
    }

    /// Each change as (address, action), in diff order.
    fn actions(changes: &[ResourceChange]) -> Vec<(String, Action)> {
        changes
            .iter()
            .map(|c| (c.address.to_string(), c.action))
            .collect()
    }

    #[test]
    fn each_kind_follows_the_identity_table() {
        let live = state(vec![
            Change::AddListener(listener(18001, Protocol::Http)),
            Change::AddListener(listener(18002, Protocol::Http)),
            Change::AddListener(listener(18003, Protocol::Http)),
            Change::AddCluster(Cluster::new("shop")),
            Change::AddCluster(Cluster::new("old")),
            Change::AddBackend(backend("blue", 19001)),
            Change::AddBackend(backend("green", 19002)),
            Change::AddBackend(backend("same", 19003)),
            Change::AddFrontend(frontend(18001, "a.test")),
            Change::AddFrontend(frontend(18001, "b.test")),
        ]);
        let mut timeout = listener(18001, Protocol::Http);
        timeout.settings.front_timeout = Some(Duration::from_secs(9));
        let mut shop = Cluster::new("shop");
        shop.load_balancing = LoadBalancing::LeastConnections;
        let mut heavy = backend("blue", 19001);
        heavy.weight = 300;
        let desired = state(vec![
            // A setting changes in place; a protocol needs a new listener.
            Change::AddListener(timeout),
            Change::AddListener(listener(18002, Protocol::Tcp)),
            Change::AddListener(listener(18003, Protocol::Http)),
            Change::AddCluster(shop),
            Change::AddCluster(Cluster::new("new")),
            // A weight changes in place; a new address is a new backend.
            Change::AddBackend(heavy),
            Change::AddBackend(backend("green", 19012)),
            Change::AddBackend(backend("same", 19003)),
            Change::AddFrontend(frontend(18001, "a.test")),
            Change::AddFrontend(frontend(18001, "c.test")),
        ]);
        let changes = diff(&live, &desired);
        assert_eq!(
            actions(&changes),
            vec![
                ("listener.l18001".to_owned(), Action::Update),
                ("listener.l18002".to_owned(), Action::Replace),
                ("cluster.new".to_owned(), Action::Add),
                ("cluster.old".to_owned(), Action::Remove),
                ("cluster.shop".to_owned(), Action::Update),
                ("backend.shop/blue".to_owned(), Action::Update),
                ("backend.shop/green".to_owned(), Action::Replace),
                ("frontend.l18001/b.test/ -> shop".to_owned(), Action::Remove),
                ("frontend.l18001/c.test/ -> shop".to_owned(), Action::Add),
            ]
        );
        // Before is the live value, after the desired one.
        for c in &changes {
            let live_has = c.action != Action::Add;
            let desired_has = c.action != Action::Remove;
            assert_eq!(c.before.is_some(), live_has, "{}", c.address);
            assert_eq!(c.after.is_some(), desired_has, "{}", c.address);
        }
        assert_eq!(diff(&live, &live), vec![]);
        assert_eq!(diff(&desired, &desired), vec![]);
    }

    #[test]
    fn a_frontend_whose_owner_alone_differs_is_updated_in_place() {
        let base = vec![
            Change::AddListener(listener(18001, Protocol::Http)),
            Change::AddCluster(Cluster::new("shop")),
        ];
        let with = |f: Frontend| {
            let mut changes = base.clone();
            changes.push(Change::AddFrontend(f));
            state(changes)
        };
        let mut owned = frontend(18001, "a.test");
        owned.owner = Some(weir_schema::Owner("platform".into()));
        let live = with(frontend(18001, "a.test"));
        let desired = with(owned.clone());
        let changes = diff(&live, &desired);
        assert_eq!(
            actions(&changes),
            vec![("frontend.l18001/a.test/ -> shop".to_owned(), Action::Update)]
        );
        // Before carries the live owner, after the desired one.
        let owner_of = |r: &Option<Resource>| match r {
            Some(Resource::Frontend(f)) => f.owner.clone(),
            other => panic!("not a frontend: {other:?}"),
        };
        assert_eq!(owner_of(&changes[0].before), None);
        assert_eq!(owner_of(&changes[0].after), owned.owner);
        assert_eq!(diff(&desired, &desired), vec![]);
    }

    #[test]
    fn actions_read_as_terraform_does() {
        let all = [Action::Add, Action::Update, Action::Replace, Action::Remove];
        let words: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
        let symbols: Vec<&str> = all.iter().map(|a| a.symbol()).collect();
        assert_eq!(words, ["add", "update", "replace", "remove"]);
        assert_eq!(symbols, ["+", "~", "-/+", "-"]);
    }

    #[test]
    fn keyed_diff_merges_in_order() {
        let live: BTreeMap<u32, &str> = [(1, "a"), (2, "b"), (4, "d")].into();
        let desired: BTreeMap<u32, &str> = [(2, "B"), (3, "c"), (4, "d")].into();
        let entries = keyed_diff(&live, &desired, |(_, a), (_, b)| {
            if a == b {
                Delta::Same
            } else {
                Delta::InPlace
            }
        });
        assert_eq!(
            entries,
            vec![
                Entry::Removed(&1, &"a"),
                Entry::Changed {
                    key: &2,
                    desired_key: &2,
                    before: &"b",
                    after: &"B",
                    replace: false
                },
                Entry::Added(&3, &"c"),
            ]
        );
    }
}
