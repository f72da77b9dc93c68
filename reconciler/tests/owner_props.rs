//! Property test of ownership scopes: random owners, each with random desired states, applied
//! (planned with `--owner`, every step replayed through `State::apply_change`) in a random
//! order, any number of times.
//!
//! Invariants: no apply removes or changes a resource of another owner; an apply's own plan
//! is empty right after it; once every owner has applied, the live state is the union of the
//! desired states each owner applied last, and each resource is owned by the owner whose
//! files define it (the shared listener by the first owner to apply it).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use proptest::prelude::*;
use weir_reconciler::owner::{scoped_desired, Scope};
use weir_reconciler::plan;
use weir_schema::model::{Backend, BackendId, BackendKey, Cluster, ClusterId, Frontend};
use weir_schema::{Change, Listener, ListenerSettings, Owner, Protocol, State};

const OWNERS: usize = 3;

fn shared_listener() -> Listener {
    let address: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    Listener {
        address,
        protocol: Protocol::Http,
        name: "web".to_owned(),
        settings: ListenerSettings::default(),
        owner: None,
    }
}

/// One owner's desired state, decoded from random bits: up to two clusters of its own, each
/// with up to two backends (weight 50 or 100), and up to two routes on the shared listener.
fn desired(owner: usize, bits: u16) -> State {
    let bit = |n: u16| bits & (1 << n) != 0;
    let mut changes = vec![Change::AddListener(shared_listener())];
    let mut clusters = Vec::new();
    for c in 0..2u16 {
        if !bit(c) {
            continue;
        }
        let id = ClusterId(format!("o{owner}-c{c}"));
        changes.push(Change::AddCluster(Cluster::new(&id.0)));
        for b in 0..2u16 {
            if bit(2 + c * 2 + b) {
                changes.push(Change::AddBackend(Backend {
                    key: BackendKey {
                        cluster: id.clone(),
                        id: BackendId(format!("b{b}")),
                    },
                    address: format!("127.0.0.1:{}", 9000 + c * 10 + b).parse().unwrap(),
                    weight: if bit(6 + b) { 50 } else { 100 },
                    backup: false,
                    owner: None,
                }));
            }
        }
        clusters.push(id);
    }
    for h in 0..2u16 {
        if bit(8 + h) && !clusters.is_empty() {
            let cluster = clusters[usize::from(bit(10 + h)) % clusters.len()].clone();
            changes.push(Change::AddFrontend(Frontend {
                listener: shared_listener().address,
                hostname: Some(format!("h{h}.o{owner}.example.com")),
                path: "/".to_owned(),
                cluster,
                certificate: None,
                options: Default::default(),
                owner: None,
            }));
        }
    }
    let mut state = State::new();
    for change in &changes {
        state.apply_change(change, None).unwrap();
    }
    state
}

fn owner(n: usize) -> Owner {
    Owner(format!("team{n}"))
}

/// The resources not held by `who`, as a fingerprint (owners included).
fn others(state: &State, who: &Owner) -> weir_schema::Fingerprint {
    let theirs = |o: &Option<Owner>| o.as_ref() != Some(who);
    let mut s = state.clone();
    s.listeners.retain(|_, l| theirs(&l.owner));
    s.clusters.retain(|_, c| theirs(&c.owner));
    s.backends.retain(|_, b| theirs(&b.owner));
    s.frontends.retain(|f, _| theirs(&f.owner));
    s.fingerprint()
}

/// The state with every owner cleared: what routes where.
fn content(state: &State) -> weir_schema::Fingerprint {
    let mut s = state.clone();
    s.listeners.values_mut().for_each(|l| l.owner = None);
    s.clusters.values_mut().for_each(|c| c.owner = None);
    s.backends.values_mut().for_each(|b| b.owner = None);
    s.frontends = state
        .frontends
        .iter()
        .map(|(f, seq)| {
            let mut f = f.clone();
            f.owner = None;
            (f, *seq)
        })
        .collect();
    s.fingerprint()
}

/// Plans `files` for `who` against `live` and replays the plan, checking every step.
fn apply(live: &mut State, files: &State, who: &Owner) {
    let scope = Scope {
        owner: who.clone(),
        adopt: false,
    };
    let target = scoped_desired(live, files, &scope).unwrap();
    for step in plan(live, &target, &[]).steps() {
        live.apply_change(&step.change, None)
            .unwrap_or_else(|e| panic!("{}: {e}", step.change));
    }
    let again = scoped_desired(live, files, &scope).unwrap();
    assert!(plan(live, &again, &[]).is_empty(), "a second plan is empty");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn owners_converge_to_the_union_and_never_touch_each_other(
        versions in proptest::collection::vec(any::<u16>(), OWNERS * 2),
        order in proptest::collection::vec((0..OWNERS, 0..2usize), 0..12),
    ) {
        // Every owner applies at least once, after the random prefix.
        let mut sequence = order.clone();
        sequence.extend((0..OWNERS).map(|o| (o, order.len() % 2)));
        let mut live = State::new();
        let mut last: Vec<Option<State>> = vec![None; OWNERS];
        let mut listener_owner = None;
        for (o, v) in sequence {
            let who = owner(o);
            let files = desired(o, versions[o * 2 + v]);
            let before = others(&live, &who);
            apply(&mut live, &files, &who);
            prop_assert_eq!(others(&live, &who), before, "{} changed another owner's resource", who);
            listener_owner.get_or_insert_with(|| who.clone());
            last[o] = Some(files);
        }
        let mut union = State::new();
        for files in last.iter().flatten() {
            union.listeners.extend(files.listeners.clone());
            union.clusters.extend(files.clusters.clone());
            union.backends.extend(files.backends.clone());
            union.frontends.extend(files.frontends.clone());
        }
        prop_assert_eq!(content(&live), content(&union));
        prop_assert_eq!(&live.listeners[&shared_listener().address].owner, &listener_owner);
        for c in live.clusters.values() {
            prop_assert_eq!(c.owner.as_ref().map(|o| &o.0[4..5]), Some(&c.id.0[1..2]));
        }
        for f in live.frontends.keys() {
            prop_assert_eq!(f.owner.as_ref().map(|o| &o.0[4..5]), Some(&f.cluster.0[1..2]));
        }
    }
}
