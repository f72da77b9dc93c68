//! Owners: carried by every resource through the wire and saved states, part of the
//! fingerprint, never part of a frontend's identity.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use common::*;
use weir_schema::{Change, Owner, Protocol, State};

fn owner(name: &str) -> Option<Owner> {
    Some(Owner(name.to_owned()))
}

/// Team a's route on platform's listener, with a certificate and a backend.
fn owned() -> State {
    let mut s = State::new();
    let mut l = listener("127.0.0.1:8080", Protocol::Http);
    l.owner = owner("platform");
    let mut c = cluster("shop");
    c.owner = owner("a");
    let mut b = backend("shop", "blue", "127.0.0.1:9001");
    b.owner = owner("a");
    let mut cert = cert_a();
    cert.owner = owner("platform");
    let mut f = http_frontend("127.0.0.1:8080", "shop.example.com", "/", "shop");
    f.owner = owner("a");
    for change in [
        Change::AddListener(l),
        Change::AddCluster(c),
        Change::AddBackend(b),
        Change::AddCertificate(Box::new(cert)),
        Change::AddFrontend(f),
    ] {
        s.apply_change(&change, None).unwrap();
    }
    s
}

#[test]
fn owners_survive_the_wire_and_saved_states() {
    let state = owned();
    let back = State::from_snapshot(&state.snapshot(weir_schema::PrivateKeys::Included)).unwrap();
    assert_eq!(back, state);
    let frontend = back.frontends.keys().next().unwrap();
    assert_eq!(frontend.owner, owner("a"));
    assert_eq!(
        back.certificates.values().next().unwrap().owner,
        owner("platform")
    );
    // A redacted answer (what `weir plan` reads) keeps owners too.
    let redacted = State::from_snapshot(&state.to_snapshot()).unwrap();
    assert_eq!(redacted.fingerprint(), state.fingerprint());
    assert_eq!(
        redacted.certificates.values().next().unwrap().owner,
        owner("platform")
    );
}

#[test]
fn the_fingerprint_sees_owners_so_a_plan_sees_what_to_adopt() {
    let state = owned();
    for strip in 0..5 {
        let mut other = state.clone();
        match strip {
            0 => other.listeners.values_mut().for_each(|l| l.owner = None),
            1 => other.clusters.values_mut().for_each(|c| c.owner = None),
            2 => other.backends.values_mut().for_each(|b| b.owner = None),
            3 => other.certificates.values_mut().for_each(|c| c.owner = None),
            _ => {
                other.frontends = state
                    .frontends
                    .iter()
                    .map(|(f, seq)| {
                        let mut f = f.clone();
                        f.owner = None;
                        (f, *seq)
                    })
                    .collect();
            }
        }
        assert_ne!(other.fingerprint(), state.fingerprint(), "kind {strip}");
    }
}

#[test]
fn a_frontends_owner_is_not_its_identity() {
    let state = owned();
    let mut same_route = state.frontends.keys().next().unwrap().clone();
    same_route.owner = owner("b");
    assert!(state.frontends.contains_key(&same_route));
    let mut again = state.clone();
    let err = again
        .apply_change(&Change::AddFrontend(same_route), None)
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn a_certificate_changes_only_its_owner_by_replacing_itself() {
    let mut state = owned();
    let mut cert = cert_a();
    cert.owner = owner("a");
    state
        .apply_change(
            &Change::ReplaceCertificate {
                old: cert.fingerprint,
                new: Box::new(cert.clone()),
            },
            None,
        )
        .unwrap();
    assert_eq!(state.certificates[&cert.fingerprint].owner, owner("a"));
    assert_eq!(state.frontends.len(), 1, "its frontend stays");
}
