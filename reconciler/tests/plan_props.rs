//! Property tests of plans: random (live, desired) pairs over a small universe of ids, each
//! plan replayed step by step with the schema's `State::apply_change`.
//!
//! Invariants: every step is valid where it runs; the end state has the desired fingerprint;
//! a route (listener, hostname, path) present before and after the plan is present at every
//! step (unless its listener is re-created for a protocol change, which the plan notes); a
//! cluster with backends before and after always has one; a targeted plan is valid too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use weir_reconciler::{plan, Address};
use weir_schema::model::{Backend, BackendId, BackendKey, Cluster, ClusterId, Frontend};
use weir_schema::{
    Certificate, Change, Listener, ListenerSettings, LoadBalancing, Protocol, State,
};

fn certs() -> Vec<Certificate> {
    ["a", "b"]
        .iter()
        .map(|n| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
            let pem = std::fs::read_to_string(format!("{dir}{n}.pem")).unwrap();
            let key = std::fs::read_to_string(format!("{dir}{n}.key")).unwrap();
            Certificate::from_pem(&format!("cert-{n}"), &pem, &key).unwrap()
        })
        .collect()
}

fn listener_addr(i: usize) -> SocketAddr {
    format!("127.0.0.1:{}", 18001 + i).parse().unwrap()
}

/// A state described by small numbers, built through `State::apply_change` so that it is
/// valid; parts that would be invalid (a frontend on the wrong protocol) are skipped.
#[derive(Debug, Clone)]
struct Spec {
    listeners: Vec<Option<(u8, bool, bool)>>, // protocol, name alias, timeout
    clusters: Vec<Option<u8>>,                // load balancing
    backends: Vec<Vec<Option<(u8, bool, bool)>>>, // address, heavy weight, backup
    certs: Vec<bool>,
    frontends: Vec<(usize, usize, usize, usize, usize)>, // listener, host, path, cluster, cert
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Http, Protocol::Https, Protocol::Tcp];

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(prop::option::of((0u8..3, any::<bool>(), any::<bool>())), 2),
        prop::collection::vec(prop::option::weighted(0.8, 0u8..4), 3),
        prop::collection::vec(
            prop::collection::vec(prop::option::of((0u8..3, any::<bool>(), any::<bool>())), 3),
            3,
        ),
        prop::collection::vec(any::<bool>(), 2),
        prop::collection::vec(
            (0usize..2, 0usize..2, 0usize..2, 0usize..3, 0usize..2),
            0..8,
        ),
    )
        .prop_map(|(listeners, clusters, backends, certs, frontends)| Spec {
            listeners,
            clusters,
            backends,
            certs,
            frontends,
        })
}

fn build(spec: &Spec, all_certs: &[Certificate]) -> State {
    let mut s = State::new();
    let apply = |s: &mut State, c: Change| {
        let _ = s.apply_change(&c, None);
    };
    for (i, l) in spec.listeners.iter().enumerate() {
        if let Some((p, alias, timeout)) = l {
            let address = listener_addr(i);
            apply(
                &mut s,
                Change::AddListener(Listener {
                    address,
                    protocol: PROTOCOLS[usize::from(*p)],
                    name: if *alias {
                        format!("l{i}")
                    } else {
                        address.to_string()
                    },
                    settings: ListenerSettings {
                        front_timeout: timeout.then_some(Duration::from_secs(30)),
                        ..ListenerSettings::default()
                    },
                }),
            );
        }
    }
    for (i, c) in spec.clusters.iter().enumerate() {
        if let Some(lb) = c {
            let mut cluster = Cluster::new(&format!("c{i}"));
            cluster.load_balancing = LoadBalancing::ALL[usize::from(*lb)];
            apply(&mut s, Change::AddCluster(cluster));
        }
    }
    for (ci, bs) in spec.backends.iter().enumerate() {
        for (bi, b) in bs.iter().enumerate() {
            if let Some((addr, heavy, backup)) = b {
                apply(
                    &mut s,
                    Change::AddBackend(Backend {
                        key: BackendKey {
                            cluster: ClusterId(format!("c{ci}")),
                            id: BackendId(format!("b{bi}")),
                        },
                        address: format!("127.0.0.1:{}", 19001 + u16::from(*addr))
                            .parse()
                            .unwrap(),
                        weight: if *heavy { 100 } else { 1 },
                        backup: *backup,
                    }),
                );
            }
        }
    }
    for (i, present) in spec.certs.iter().enumerate() {
        if *present {
            apply(
                &mut s,
                Change::AddCertificate(Box::new(all_certs[i].clone())),
            );
        }
    }
    for &(l, h, p, c, cert) in &spec.frontends {
        let address = listener_addr(l);
        let protocol = s.listeners.get(&address).map(|l| l.protocol);
        let (hostname, path, certificate) = match protocol {
            Some(Protocol::Tcp) => (None, "/".to_owned(), None),
            Some(Protocol::Http) => (
                Some(["a.test", "b.test"][h].to_owned()),
                ["/", "/api"][p].to_owned(),
                None,
            ),
            _ => (
                Some(["a.test", "b.test"][h].to_owned()),
                ["/", "/api"][p].to_owned(),
                Some(all_certs[cert].fingerprint),
            ),
        };
        apply(
            &mut s,
            Change::AddFrontend(Frontend {
                listener: address,
                hostname,
                path,
                cluster: ClusterId(format!("c{c}")),
                certificate,
                options: Default::default(),
            }),
        );
    }
    s
}

type RouteKey = (SocketAddr, Option<String>, String);

fn routes(s: &State) -> BTreeSet<RouteKey> {
    s.frontends
        .keys()
        .map(|f| (f.listener, f.hostname.clone(), f.path.clone()))
        .collect()
}

fn backed(s: &State) -> BTreeSet<ClusterId> {
    s.backends.keys().map(|k| k.cluster.clone()).collect()
}

fn routed(s: &State) -> BTreeSet<ClusterId> {
    s.frontends.keys().map(|f| f.cluster.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn plans_are_valid_complete_and_make_before_break(live_spec in spec(), desired_spec in spec()) {
        let certs = certs();
        let live = build(&live_spec, &certs);
        let desired = build(&desired_spec, &certs);
        let p = plan(&live, &desired, &[]);

        // Routes and clusters that must stay up throughout.
        let recreated: BTreeSet<SocketAddr> = live.listeners.iter()
            .filter(|(a, l)| desired.listeners.get(*a).is_some_and(|d| d.protocol != l.protocol))
            .map(|(a, _)| *a)
            .collect();
        let keep_routes: BTreeSet<RouteKey> = routes(&live).intersection(&routes(&desired))
            .filter(|(l, _, _)| !recreated.contains(l))
            .cloned()
            .collect();
        let keep_backed: BTreeSet<ClusterId> = backed(&live).intersection(&backed(&desired))
            .filter(|c| routed(&live).contains(*c) && routed(&desired).contains(*c))
            .cloned()
            .collect();

        let mut state = live.clone();
        for (i, step) in p.steps().iter().enumerate() {
            let version = state.version;
            state.apply_change(&step.change, Some(version))
                .map_err(|e| TestCaseError::fail(format!("step {} ({}) invalid: {e}", i + 1, step.change)))?;
            let now = routes(&state);
            for r in &keep_routes {
                prop_assert!(now.contains(r), "route {r:?} unrouted after step {} ({})", i + 1, step.change);
            }
            let now = backed(&state);
            for c in &keep_backed {
                prop_assert!(now.contains(c), "cluster {c} without backend after step {} ({})", i + 1, step.change);
            }
        }
        prop_assert_eq!(state.fingerprint(), desired.fingerprint());
        prop_assert_eq!(p.to_fingerprint(), Some(desired.fingerprint()));
        prop_assert_eq!(p.is_empty(), live.fingerprint() == desired.fingerprint());
    }

    #[test]
    fn targeted_plans_are_valid(live_spec in spec(), desired_spec in spec(), pick in 0usize..64) {
        let certs = certs();
        let live = build(&live_spec, &certs);
        let desired = build(&desired_spec, &certs);
        let full = plan(&live, &desired, &[]);
        if full.changes().is_empty() {
            return Ok(());
        }
        let target: Address = full.changes()[pick % full.changes().len()].address.clone();
        let p = plan(&live, &desired, std::slice::from_ref(&target));
        prop_assert!(p.changes().iter().any(|c| c.address == target));
        let mut state = live.clone();
        for step in p.steps() {
            state.apply_change(&step.change, None)
                .map_err(|e| TestCaseError::fail(format!("targeted step invalid: {e} ({})", step.change)))?;
        }
    }
}
